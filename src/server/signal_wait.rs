//! The main thread's wait for signals, with a time limit: it wakes for the next signal or
//! when the limit runs out, whichever comes first (the TLS ticket keys it keeps for a
//! successor move on with the periods, so it cannot sleep until a signal comes).
//!
//! signal-hook's iterator only waits without a limit; its `SignalDelivery` underneath hands
//! over the read end of its self-pipe, which a signal's handler writes a byte to: a `poll`
//! on it with a timeout is the wait.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use signal_hook::iterator::backend::SignalDelivery;
use signal_hook::iterator::exfiltrator::SignalOnly;

/// Signals caught for this process, waited for one at a time.
pub(super) struct SignalWait {
    delivery: SignalDelivery<UnixStream, SignalOnly>,
    /// Signals that arrived together, not yet returned.
    queued: VecDeque<libc::c_int>,
}

impl SignalWait {
    /// Catches `signals` from now on.
    pub(super) fn new(signals: &[libc::c_int]) -> io::Result<SignalWait> {
        let (read, write) = UnixStream::pair()?;
        Ok(SignalWait {
            delivery: SignalDelivery::with_pipe(read, write, SignalOnly, signals)?,
            queued: VecDeque::new(),
        })
    }

    /// The next signal, waiting at most `within` (without a limit for `None`); `None` once
    /// the time is up.
    pub(super) fn next(&mut self, within: Option<Duration>) -> Option<libc::c_int> {
        let deadline = within.map(|within| Instant::now() + within);
        loop {
            if self.queued.is_empty() {
                self.queued.extend(self.delivery.pending());
            }
            if let Some(signal) = self.queued.pop_front() {
                return Some(signal);
            }
            let timeout = match deadline {
                None => -1,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    // Rounded up, so that the wait does not end just before the limit.
                    left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32
                }
            };
            let mut poll = libc::pollfd {
                fd: self.delivery.get_read().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one pollfd, valid for the call. Whatever it returns (a byte from a
            // handler, the time up, EINTR), the loop looks again.
            unsafe { libc::poll(&mut poll, 1, timeout) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_ends_the_wait_and_otherwise_the_time_does() {
        // SIGWINCH: ignored by default, so that a test process is not stopped by one that
        // arrives after this test's handler is gone.
        let mut wait = SignalWait::new(&[libc::SIGWINCH]).unwrap();
        let start = Instant::now();
        assert_eq!(wait.next(Some(Duration::from_millis(50))), None);
        assert!(start.elapsed() >= Duration::from_millis(50));
        signal_hook::low_level::raise(libc::SIGWINCH).unwrap();
        assert_eq!(
            wait.next(Some(Duration::from_secs(10))),
            Some(libc::SIGWINCH)
        );
    }
}
