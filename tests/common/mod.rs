//! Test support: a real server on 127.0.0.1 port 0 and a raw HTTP/1.1 client.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use percore::config::{Config, CoreSpec};
use percore::Server;

/// The `percore` binary's own routes, built here the way the binary builds them.
#[path = "../../src/bin/percore/routes.rs"]
pub mod routes;

/// The server under test; stops (draining) when dropped.
pub struct TestServer {
    pub server: Option<Server>,
    pub addr: SocketAddr,
}

impl TestServer {
    /// One core, defaults otherwise.
    pub fn start() -> TestServer {
        TestServer::with(|_| {})
    }

    /// One core, with `adjust` applied to the default configuration.
    pub fn with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = Config::default();
        config.server.port = 0;
        config.server.cores = CoreSpec::First(1);
        // Live report lines would interleave with the test output; tests that want them set it.
        config.report.interval_ms = 0;
        adjust(&mut config);
        let server = routes::percore_app().start(config).expect("server starts");
        let addr = server.local_addr();
        TestServer {
            server: Some(server),
            addr,
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Stops the server, waiting for the drain.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
    }
}

/// A parsed response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A blocking client that writes raw bytes and parses responses.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        // Generous: a test that waits this long has failed anyway.
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: impl AsRef<[u8]>) -> &mut Client {
        self.stream.write_all(bytes.as_ref()).expect("write");
        self
    }

    /// Sends a GET for `target` with a Host field.
    pub fn get(&mut self, target: &str) -> Response {
        self.send(format!("GET {target} HTTP/1.1\r\nHost: test\r\n\r\n"));
        self.response()
    }

    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 65536];
        let n = self.stream.read(&mut chunk).expect("read");
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    /// Reads one response with a body of Content-Length bytes.
    pub fn response(&mut self) -> Response {
        self.read_response(false)
    }

    /// Reads one response to a HEAD request (no body whatever Content-Length says).
    pub fn head_response(&mut self) -> Response {
        self.read_response(true)
    }

    fn read_response(&mut self, head_only: bool) -> Response {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(
                self.fill() > 0,
                "connection closed before a response head: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).expect("ASCII head");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
        let status = status_line[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').expect("field has a colon");
                (n.to_string(), v.trim().to_string())
            })
            .collect();
        self.buf.drain(..end);
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        let len: usize = match response.header("content-length") {
            Some(v) => v.parse().unwrap(),
            None => 0,
        };
        if !head_only && status != 100 {
            while self.buf.len() < len {
                assert!(self.fill() > 0, "connection closed inside a body");
            }
            response.body = self.buf.drain(..len).collect();
        }
        response
    }

    /// True when the server has closed: the next read is end-of-file (or a reset) and no
    /// stray bytes are left.
    pub fn is_closed(&mut self) -> bool {
        let mut chunk = [0u8; 1024];
        let closed = match self.stream.read(&mut chunk) {
            Ok(0) => true,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                false
            }
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        };
        closed && self.buf.is_empty()
    }

    /// True when the server has closed in order: the next read is end-of-file (its FIN), not
    /// a reset, the socket holds no error, and no stray bytes are left.
    pub fn closed_in_order(&mut self) -> bool {
        let mut chunk = [0u8; 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => {}
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                return false;
            }
            Err(e) => panic!("expected the server's FIN, the read failed: {e}"),
        }
        matches!(self.stream.take_error(), Ok(None)) && self.buf.is_empty()
    }
}

/// The `percore` binary running as a child process.
pub struct Percore {
    pub child: std::process::Child,
    /// The address it printed at start.
    pub addr: String,
    /// The line it printed at start (address, cores, ring mode).
    pub banner: String,
    /// Its stdout (reports), when piped.
    pub stdout: Option<std::io::BufReader<std::process::ChildStdout>>,
    /// Kept open: the server writes its shutdown notes here.
    pub stderr: std::io::BufReader<std::process::ChildStderr>,
}

impl Percore {
    /// Starts the binary with `args` and waits for its "listening on http://…" line.
    pub fn spawn(args: &[&str]) -> Percore {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_percore"))
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        let stdout = child.stdout.take().map(std::io::BufReader::new);
        Percore {
            child,
            addr,
            banner: line,
            stdout,
            stderr,
        }
    }

    /// The cores it serves on, as its start-up line lists them (`0`, `0-3`, `0,2`).
    pub fn cores(&self) -> &str {
        self.banner
            .split("core(s): ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no cores in {:?}", self.banner))
    }

    /// Its stdout as lines read on a thread of their own (see [`Lines`]).
    pub fn stdout_lines(&mut self) -> Lines {
        Lines::new(
            self.stdout
                .take()
                .expect("stdout is piped and not taken yet"),
        )
    }

    /// Sends `signal` and checks the process exits successfully, within `EXIT_WAIT`.
    pub fn stop_with(&mut self, signal: i32) {
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let deadline = std::time::Instant::now() + EXIT_WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("percore did not exit within {EXIT_WAIT:?} of signal {signal}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(status.success(), "percore exited with {status}");
    }
}

/// How long a stopped server may take to drain and exit, and how long a test waits for a
/// line of output, before the test fails: far beyond what either takes when it works.
pub const EXIT_WAIT: Duration = Duration::from_secs(30);

/// Lines of a child's output, read on a thread of their own so that a test waits for each
/// with a bound and fails, instead of blocking forever on a pipe that stays silent.
pub struct Lines(std::sync::mpsc::Receiver<String>);

impl Lines {
    pub fn new(reader: impl std::io::BufRead + Send + 'static) -> Lines {
        let (lines, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in reader.lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        Lines(receiver)
    }

    /// The next line; fails the test, naming `what` was awaited, if none comes in time or
    /// the output ends.
    pub fn next(&self, what: &str) -> String {
        use std::sync::mpsc::RecvTimeoutError;
        match self.0.recv_timeout(EXIT_WAIT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!("no {what} within {EXIT_WAIT:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("the output ended before {what}"),
        }
    }

    /// The next line if one comes within `wait`.
    pub fn next_within(&self, wait: Duration) -> Option<String> {
        self.0.recv_timeout(wait).ok()
    }

    /// Every line left until the output ends (the process has exited or closed it).
    pub fn rest(&self) -> Vec<String> {
        use std::sync::mpsc::RecvTimeoutError;
        let mut rest = Vec::new();
        loop {
            match self.0.recv_timeout(EXIT_WAIT) {
                Ok(line) => rest.push(line),
                Err(RecvTimeoutError::Disconnected) => return rest,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("the output did not end within {EXIT_WAIT:?}; so far: {rest:?}")
                }
            }
        }
    }
}

/// A directory under the system's temporary directory, removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("percore-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    /// Writes `bytes` to `relative` (parents created) and returns its path.
    pub fn write(&self, relative: &str, bytes: impl AsRef<[u8]>) -> std::path::PathBuf {
        let path = self.0.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
