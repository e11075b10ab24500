//! percore's own lines: report text on stdout, and on stderr the `percore: …` notes and the
//! timestamped, rate-limited error lines.
//!
//! Error lines (accept failures, handler panics, requests refused for a protocol error) are
//! written by the core that met the error, so their path must not couple the cores: each
//! thread keeps its own budget of lines per second (no lock shared between cores, not even
//! the one `std::io::Stderr` takes), formats the line into a stack buffer (no allocation) and
//! hands it to the kernel with one `write(2)`, which keeps a line of this size whole.
//! Lines over the budget are counted, and the count goes out with the thread's next line.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::Write as _;

use super::civil_time::{iso8601, unix_now};

/// Error lines the whole server may print per second; each core gets its share (at least
/// one a second), other threads the whole of it.
pub(crate) const ERROR_LINES_PER_SECOND: u32 = 20;

/// The longest line written; a longer one is cut (its end replaced by `…`).
const LINE_BYTES: usize = 512;

/// Writes report text to stdout. A closed stdout (`percore | head`) must not stop the
/// server, so errors are ignored.
pub(crate) fn emit(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// Writes `percore: <text>` to stderr (start-up, reload, shutdown notes).
pub(crate) fn note(text: fmt::Arguments<'_>) {
    let mut line = Line::new();
    let _ = write!(line, "percore: {text}");
    line.write_out();
}

/// One thread's error-line budget.
struct Budget {
    per_second: u32,
    second: i64,
    used: u32,
    suppressed: u64,
}

thread_local! {
    static BUDGET: RefCell<Budget> = const {
        RefCell::new(Budget { per_second: ERROR_LINES_PER_SECOND, second: 0, used: 0, suppressed: 0 })
    };
}

/// Gives this thread (a core's) its share of the server's error lines: `cores` threads
/// share [`ERROR_LINES_PER_SECOND`].
pub(crate) fn share_budget(cores: usize) {
    let share = (ERROR_LINES_PER_SECOND / cores.max(1) as u32).max(1);
    BUDGET.with(|budget| budget.borrow_mut().per_second = share);
}

/// Writes `percore: <time> core <core>: <text>` to stderr (`core` `None`: the server as a
/// whole), unless this thread's budget for the second is spent.
pub(crate) fn error_line(core: Option<usize>, text: fmt::Arguments<'_>) {
    let now = unix_now();
    let suppressed = BUDGET.with(|budget| {
        let mut budget = budget.borrow_mut();
        if budget.second != now {
            budget.second = now;
            budget.used = 0;
        }
        if budget.used >= budget.per_second {
            budget.suppressed += 1;
            return None;
        }
        budget.used += 1;
        Some(std::mem::take(&mut budget.suppressed))
    });
    let Some(suppressed) = suppressed else {
        return;
    };
    let mut line = Line::new();
    let time = iso8601(now);
    let _ = line.write_str("percore: ");
    line.push(&time);
    let _ = match core {
        Some(core) => write!(line, " core {core}: {text}"),
        None => write!(line, " {text}"),
    };
    if suppressed > 0 {
        let _ = write!(line, " ({suppressed} earlier error lines not printed)");
    }
    line.write_out();
}

/// A line being formatted on the stack.
struct Line {
    buf: [u8; LINE_BYTES],
    len: usize,
}

impl Line {
    fn new() -> Line {
        Line {
            buf: [0; LINE_BYTES],
            len: 0,
        }
    }

    /// Appends what fits (one byte is kept for the line feed).
    fn push(&mut self, bytes: &[u8]) {
        let room = LINE_BYTES - 1 - self.len;
        let take = bytes.len().min(room);
        self.buf[self.len..self.len + take].copy_from_slice(&bytes[..take]);
        self.len += take;
        if take < bytes.len() {
            const CUT: &[u8] = "…".as_bytes();
            self.buf[LINE_BYTES - 1 - CUT.len()..LINE_BYTES - 1].copy_from_slice(CUT);
        }
    }

    /// Hands the line, with its line feed, to the kernel in one write.
    fn write_out(mut self) {
        self.buf[self.len] = b'\n';
        let mut rest = &self.buf[..self.len + 1];
        while !rest.is_empty() {
            // SAFETY: writing initialised bytes of our own buffer to descriptor 2.
            let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
            match n {
                n if n > 0 => rest = &rest[n as usize..],
                _ if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => {}
                // A closed or failing stderr must not stop the server.
                _ => return,
            }
        }
    }
}

impl fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_line_is_cut_and_keeps_room_for_its_line_feed() {
        let mut line = Line::new();
        let long = "x".repeat(2 * LINE_BYTES);
        let _ = write!(line, "{long}");
        assert_eq!(line.len, LINE_BYTES - 1);
        assert!(std::str::from_utf8(&line.buf[..line.len])
            .unwrap()
            .ends_with('…'));
    }

    #[test]
    fn a_core_gets_its_share_of_the_budget() {
        std::thread::spawn(|| {
            share_budget(8);
            BUDGET.with(|b| assert_eq!(b.borrow().per_second, 2));
            share_budget(64);
            BUDGET.with(|b| assert_eq!(b.borrow().per_second, 1));
        })
        .join()
        .unwrap();
    }
}
