//! The access log: one line per response, in nginx's/Apache's combined format (plus the
//! request's duration in µs and the core) or as JSON.
//!
//! Each core appends its lines to a buffer of its own (no lock, no system call on the
//! request path) and hands the buffer, once per report tick and at shutdown, to a writer
//! thread (`writer`) that appends it to the file. A core never waits for the disk: a buffer
//! that is full drops further lines until the next hand-over and counts them
//! (`access_log_dropped` in `/stats`).

mod writer;

use std::io::Write;
use std::net::SocketAddr;

pub use writer::{LogMsg, LogWriter};

pub use crate::config::LogFormat;
use crate::config::ServerAddr;
use crate::support::civil_time::{common_log, iso8601, unix_now};

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
    /// The connection's TLS version and cipher suite (`TLSv1.3`,
    /// `TLS13_AES_128_GCM_SHA256`); none on cleartext connections. JSON lines carry them.
    pub tls: Option<(&'static str, &'static str)>,
    /// For a request a proxy route sent upstream: where, what came back, how long it took.
    pub upstream: Option<UpstreamEntry<'a>>,
    /// For a WebSocket (its line is written when it ends): its messages and close code.
    pub websocket: Option<WebSocketEntry>,
    /// The content coding of the response's body (`gzip`, `br`, `zstd`); none for a body
    /// sent as it is.
    pub coding: Option<&'a str>,
}

/// What the access log says of a WebSocket connection, when it ends.
#[derive(Clone, Copy, Debug, Default)]
pub struct WebSocketEntry {
    /// Messages received whole.
    pub messages_in: u64,
    /// Messages sent.
    pub messages_out: u64,
    /// The code of the client's close frame; none when it sent none.
    pub close: Option<u16>,
}

/// What the access log says of a request sent to an upstream server (nginx's
/// `$upstream_addr`, `$upstream_status`, `$upstream_response_time`).
#[derive(Clone, Copy, Debug)]
pub struct UpstreamEntry<'a> {
    /// The server that last had the request.
    pub addr: &'a ServerAddr,
    /// The status the server answered; none when no response head came.
    pub status: Option<u16>,
    /// From the request first going out to the response's end (or the failure), µs.
    pub micros: u64,
}

/// One core's log buffer.
#[derive(Debug)]
pub struct LogBuffer {
    core: usize,
    format: LogFormat,
    buf: Vec<u8>,
    limit: usize,
    /// Lines dropped because the buffer was full.
    pub dropped: u64,
    /// The time rendered for the current second (common log or ISO 8601 format).
    second: i64,
    stamp: [u8; 26],
    stamp_len: usize,
}

impl LogBuffer {
    /// A buffer for `core` holding at most `limit` bytes between hand-overs.
    pub fn new(core: usize, format: LogFormat, limit: usize) -> LogBuffer {
        LogBuffer {
            core,
            format,
            buf: Vec::with_capacity(limit.min(64 * 1024)),
            limit,
            dropped: 0,
            second: i64::MIN,
            stamp: [0; 26],
            stamp_len: 0,
        }
    }

    /// Appends one line, or counts it dropped when the buffer is full.
    pub fn record(&mut self, entry: &Entry<'_>) {
        let now = unix_now();
        if now != self.second {
            self.second = now;
            self.stamp_len = match self.format {
                LogFormat::Combined => {
                    self.stamp = common_log(now);
                    26
                }
                LogFormat::Json => {
                    self.stamp[..20].copy_from_slice(&iso8601(now));
                    20
                }
            };
        }
        let stamp = &self.stamp[..self.stamp_len];
        let mark = self.buf.len();
        let client = Client(entry.client);
        let _ = match self.format {
            LogFormat::Combined => {
                let _ = write!(self.buf, "{client} - - [");
                self.buf.extend_from_slice(stamp);
                self.buf.extend_from_slice(b"] \"");
                escape_into(&mut self.buf, entry.request, false);
                let _ = write!(self.buf, "\" {} {} \"", entry.status, entry.bytes);
                escape_into(&mut self.buf, entry.referer.unwrap_or(b"-"), false);
                self.buf.extend_from_slice(b"\" \"");
                escape_into(&mut self.buf, entry.user_agent.unwrap_or(b"-"), false);
                let _ = write!(self.buf, "\" {} {}", entry.micros, self.core);
                if let Some(up) = &entry.upstream {
                    self.buf.extend_from_slice(b" upstream=");
                    write_addr(&mut self.buf, up.addr, false);
                    self.buf.extend_from_slice(b" upstream_status=");
                    let _ = match up.status {
                        Some(status) => write!(self.buf, "{status}"),
                        None => write!(self.buf, "-"),
                    };
                    let _ = write!(self.buf, " upstream_time_us={}", up.micros);
                }
                if let Some(ws) = &entry.websocket {
                    let _ = write!(
                        self.buf,
                        " ws_messages_in={} ws_messages_out={} ws_close=",
                        ws.messages_in, ws.messages_out
                    );
                    let _ = match ws.close {
                        Some(code) => write!(self.buf, "{code}"),
                        None => write!(self.buf, "-"),
                    };
                }
                if let Some(coding) = entry.coding {
                    let _ = write!(self.buf, " coding={coding}");
                }
                writeln!(self.buf)
            }
            LogFormat::Json => {
                self.buf.extend_from_slice(b"{\"time\":\"");
                self.buf.extend_from_slice(stamp);
                let _ = write!(self.buf, "\",\"client\":\"{client}\",\"request\":\"");
                escape_into(&mut self.buf, entry.request, true);
                let _ = write!(
                    self.buf,
                    "\",\"status\":{},\"bytes\":{},\"referer\":",
                    entry.status, entry.bytes
                );
                json_string_or_null(&mut self.buf, entry.referer);
                self.buf.extend_from_slice(b",\"user_agent\":");
                json_string_or_null(&mut self.buf, entry.user_agent);
                let _ = write!(
                    self.buf,
                    ",\"duration_us\":{},\"core\":{}",
                    entry.micros, self.core
                );
                if let Some(up) = &entry.upstream {
                    let _ = write!(self.buf, ",\"upstream_addr\":\"");
                    write_addr(&mut self.buf, up.addr, true);
                    let _ = write!(self.buf, "\",\"upstream_status\":");
                    let _ = match up.status {
                        Some(status) => write!(self.buf, "{status}"),
                        None => write!(self.buf, "null"),
                    };
                    let _ = write!(self.buf, ",\"upstream_time_us\":{}", up.micros);
                }
                if let Some(ws) = &entry.websocket {
                    let _ = write!(
                        self.buf,
                        ",\"ws_messages_in\":{},\"ws_messages_out\":{},\"ws_close\":",
                        ws.messages_in, ws.messages_out
                    );
                    let _ = match ws.close {
                        Some(code) => write!(self.buf, "{code}"),
                        None => write!(self.buf, "null"),
                    };
                }
                if let Some(coding) = entry.coding {
                    let _ = write!(self.buf, ",\"coding\":\"{coding}\"");
                }
                match entry.tls {
                    Some((version, cipher)) => writeln!(
                        self.buf,
                        ",\"tls_version\":\"{version}\",\"tls_cipher\":\"{cipher}\"}}"
                    ),
                    None => writeln!(self.buf, ",\"tls_version\":null,\"tls_cipher\":null}}"),
                }
            }
        };
        if self.buf.len() > self.limit {
            self.buf.truncate(mark);
            self.dropped += 1;
        }
    }

    /// No line since the last hand-over.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
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

/// An upstream server's address in a line: `ip:port`, or `unix:` and its path, escaped.
fn write_addr(out: &mut Vec<u8>, addr: &ServerAddr, json: bool) {
    match addr {
        ServerAddr::Tcp(addr) => {
            let _ = write!(out, "{addr}");
        }
        ServerAddr::Unix(path) => {
            out.extend_from_slice(b"unix:");
            escape_into(out, path.as_os_str().as_encoded_bytes(), json);
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
            tls: None,
            upstream: None,
            websocket: None,
            coding: None,
        }
    }

    #[test]
    fn combined_lines_escape_what_clients_send() {
        let mut log = LogBuffer::new(3, LogFormat::Combined, 1 << 16);
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
        let mut log = LogBuffer::new(0, LogFormat::Json, 400);
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
    fn a_proxied_requests_line_names_its_upstream_in_both_formats() {
        let tcp = ServerAddr::Tcp("10.0.0.2:9000".parse().unwrap());
        let unix = ServerAddr::Unix("/run/a\"b".into());
        let mut combined = LogBuffer::new(1, LogFormat::Combined, 1 << 16);
        let mut json = LogBuffer::new(1, LogFormat::Json, 1 << 16);
        for (addr, status) in [(&tcp, Some(200)), (&unix, None)] {
            let mut line = entry(b"GET /api HTTP/1.1", None);
            line.upstream = Some(UpstreamEntry {
                addr,
                status,
                micros: 1500,
            });
            combined.record(&line);
            json.record(&line);
        }
        let text = String::from_utf8(combined.take()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let tail = " 42 1 upstream=10.0.0.2:9000 upstream_status=200 upstream_time_us=1500";
        assert!(lines[0].ends_with(tail), "{text}");
        let tail = r#" upstream=unix:/run/a\"b upstream_status=- upstream_time_us=1500"#;
        assert!(lines[1].ends_with(tail), "{text}");
        let text = String::from_utf8(json.take()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let fields =
            r#","upstream_addr":"10.0.0.2:9000","upstream_status":200,"upstream_time_us":1500,"#;
        assert!(lines[0].contains(fields), "{text}");
        let fields = r#""upstream_addr":"unix:/run/a\"b","upstream_status":null,"#;
        assert!(lines[1].contains(fields), "{text}");
        for line in lines {
            assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
        }
    }
}
