//! The access log: one line per response, in nginx's/Apache's combined format (plus the
//! request's duration in µs and the core) or as JSON.
//!
//! Each core appends its lines to a buffer of its own (no lock, no system call on the
//! request path) and hands the buffer, once per report tick and at shutdown, to a writer
//! thread that appends it to the file. A core never waits for the disk: a buffer that is full
//! drops further lines until the next hand-over and counts them (`access_log_dropped` in
//! `/stats`). SIGUSR1 makes the writer reopen the file, for logrotate, as nginx does.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender};
use std::thread::JoinHandle;

use serde::Deserialize;

use crate::http::date::civil_from_unix;

/// How lines are written (`log.format`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// nginx's `combined`, then the duration in µs and the core.
    #[default]
    Combined,
    /// One JSON object per line with the same fields.
    Json,
}

/// What one line says.
pub struct Entry<'a> {
    /// The client (the PROXY header's, or the socket's peer).
    pub client: Option<SocketAddr>,
    /// The request line as received, without its CRLF (`-` when none could be read).
    pub request: &'a [u8],
    /// The response status.
    pub status: u16,
    /// Bytes of the response (head and body).
    pub bytes: u64,
    /// The `Referer` field.
    pub referer: Option<&'a [u8]>,
    /// The `User-Agent` field.
    pub user_agent: Option<&'a [u8]>,
    /// From the request's arrival to its response, µs.
    pub micros: u64,
}

/// One core's log buffer.
#[derive(Debug)]
pub struct CoreLog {
    core: usize,
    format: LogFormat,
    buf: Vec<u8>,
    limit: usize,
    /// Lines dropped because the buffer was full.
    pub dropped: u64,
    /// The time of day rendered for the current second.
    second: i64,
    stamp: String,
}

impl CoreLog {
    /// A buffer for `core` holding at most `limit` bytes between hand-overs.
    pub fn new(core: usize, format: LogFormat, limit: usize) -> CoreLog {
        CoreLog {
            core,
            format,
            buf: Vec::with_capacity(limit.min(64 * 1024)),
            limit,
            dropped: 0,
            second: i64::MIN,
            stamp: String::new(),
        }
    }

    /// Appends one line, or counts it dropped when the buffer is full.
    pub fn record(&mut self, entry: &Entry<'_>) {
        let now = crate::http::date::unix_now();
        if now != self.second {
            self.second = now;
            self.stamp = match self.format {
                LogFormat::Combined => clf_time(now),
                LogFormat::Json => iso_time(now),
            };
        }
        let mark = self.buf.len();
        let client = Client(entry.client);
        let _ = match self.format {
            LogFormat::Combined => {
                let _ = write!(self.buf, "{client} - - [{}] \"", self.stamp);
                escape_into(&mut self.buf, entry.request, false);
                let _ = write!(self.buf, "\" {} {} \"", entry.status, entry.bytes);
                escape_into(&mut self.buf, entry.referer.unwrap_or(b"-"), false);
                self.buf.extend_from_slice(b"\" \"");
                escape_into(&mut self.buf, entry.user_agent.unwrap_or(b"-"), false);
                writeln!(self.buf, "\" {} {}", entry.micros, self.core)
            }
            LogFormat::Json => {
                let _ = write!(
                    self.buf,
                    "{{\"time\":\"{}\",\"client\":\"{client}\",\"request\":\"",
                    self.stamp
                );
                escape_into(&mut self.buf, entry.request, true);
                let _ = write!(
                    self.buf,
                    "\",\"status\":{},\"bytes\":{},\"referer\":",
                    entry.status, entry.bytes
                );
                json_string_or_null(&mut self.buf, entry.referer);
                self.buf.extend_from_slice(b",\"user_agent\":");
                json_string_or_null(&mut self.buf, entry.user_agent);
                writeln!(
                    self.buf,
                    ",\"duration_us\":{},\"core\":{}}}",
                    entry.micros, self.core
                )
            }
        };
        if self.buf.len() > self.limit {
            self.buf.truncate(mark);
            self.dropped += 1;
        }
    }

    /// The lines since the last hand-over (the buffer starts again empty).
    pub fn take(&mut self) -> Vec<u8> {
        let capacity = self.buf.capacity();
        std::mem::replace(&mut self.buf, Vec::with_capacity(capacity))
    }
}

/// The client's address in a line (without allocating): its IP, or `-`.
struct Client(Option<SocketAddr>);

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{}", addr.ip()),
            None => f.write_str("-"),
        }
    }
}

/// Writes `bytes` inside a quoted field: `"` and `\` escaped, control bytes and (for JSON)
/// bytes above 0x7e as `\xHH` or `\u00HH`, so that no client can forge a line.
fn escape_into(out: &mut Vec<u8>, bytes: &[u8], json: bool) {
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                out.push(b'\\');
                out.push(b);
            }
            0x20..=0x7e => out.push(b),
            _ if json => {
                let _ = write!(out, "\\u{:04x}", b);
            }
            _ => {
                let _ = write!(out, "\\x{:02X}", b);
            }
        }
    }
}

fn json_string_or_null(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(value) => {
            out.push(b'"');
            escape_into(out, value, true);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
}

/// `10/Oct/2000:13:55:36 +0000`.
fn clf_time(unix: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (year, month, day) = civil_from_unix(unix);
    let seconds = unix.rem_euclid(86_400);
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000",
        MONTHS[month as usize - 1],
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// `2000-10-10T13:55:36Z`.
pub fn iso_time(unix: i64) -> String {
    let (year, month, day) = civil_from_unix(unix);
    let seconds = unix.rem_euclid(86_400);
    format!(
        "{year}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// What the writer thread is sent.
pub enum LogMsg {
    /// A core's lines, to append.
    Lines(Vec<u8>),
    /// Reopen the file (after logrotate moved it).
    Reopen,
}

/// The writer thread of one server.
pub struct LogWriter {
    /// Its inbox.
    pub sender: Sender<LogMsg>,
    thread: Option<JoinHandle<()>>,
}

impl LogWriter {
    /// Opens `path` for appending and starts the thread.
    pub fn start(path: PathBuf) -> io::Result<LogWriter> {
        let file = open(&path)?;
        let (sender, inbox) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("percore-log".into())
            .spawn(move || write_lines(path, file, inbox))?;
        Ok(LogWriter {
            sender,
            thread: Some(thread),
        })
    }

    /// Waits for every line sent so far to be written (the senders must be gone).
    pub fn finish(mut self) {
        drop(std::mem::replace(
            &mut self.sender,
            std::sync::mpsc::channel().0,
        ));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn open(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn write_lines(path: PathBuf, mut file: File, inbox: Receiver<LogMsg>) {
    for message in inbox {
        match message {
            LogMsg::Lines(lines) => {
                if let Err(e) = file.write_all(&lines) {
                    crate::report::error_line(None, &format!("access log {}: {e}", path.display()));
                }
            }
            LogMsg::Reopen => match open(&path) {
                Ok(reopened) => file = reopened,
                Err(e) => crate::report::error_line(
                    None,
                    &format!("access log {}: cannot reopen: {e}", path.display()),
                ),
            },
        }
    }
    let _ = file.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(request: &'a [u8], agent: Option<&'a [u8]>) -> Entry<'a> {
        Entry {
            client: Some("203.0.113.7:5000".parse().unwrap()),
            request,
            status: 200,
            bytes: 123,
            referer: None,
            user_agent: agent,
            micros: 42,
        }
    }

    #[test]
    fn combined_lines_escape_what_clients_send() {
        let mut log = CoreLog::new(3, LogFormat::Combined, 1 << 16);
        log.record(&entry(b"GET /a\"b HTTP/1.1", Some(b"curl/8 \x01\"x")));
        let line = String::from_utf8(log.take()).unwrap();
        assert!(line.starts_with("203.0.113.7 - - ["), "{line}");
        assert!(
            line.ends_with("] \"GET /a\\\"b HTTP/1.1\" 200 123 \"-\" \"curl/8 \\x01\\\"x\" 42 3\n"),
            "{line}"
        );
        assert_eq!(line.lines().count(), 1);
    }

    #[test]
    fn json_lines_parse_and_a_full_buffer_drops() {
        let mut log = CoreLog::new(0, LogFormat::Json, 400);
        for _ in 0..10 {
            log.record(&entry(b"GET / HTTP/1.1", Some(b"\xff\n")));
        }
        assert!(log.dropped > 0);
        let text = String::from_utf8(log.take()).unwrap();
        assert_eq!(text.lines().count() as u64 + log.dropped, 10);
        assert!(text.len() <= 400);
        assert!(text.contains("\"user_agent\":\"\\u00ff\\u000a\""), "{text}");
        assert!(text.contains("\"referer\":null"), "{text}");
    }

    #[test]
    fn times() {
        assert_eq!(clf_time(971_186_136), "10/Oct/2000:13:55:36 +0000");
        assert_eq!(iso_time(971_186_136), "2000-10-10T13:55:36Z");
    }
}
