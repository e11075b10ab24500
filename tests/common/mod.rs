//! Test support: a real server on 127.0.0.1 port 0 and a raw HTTP/1.1 client, child
//! processes that are killed when a test lets go of them, waits that all have a deadline,
//! and the one way a test says it cannot run ([`require`]).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use percore::config::{Config, CoreSpec};
use percore::Server;

/// The app the in-process server serves: the binary's routes, on the public API.
pub mod app;

/// Serving an app of a test's own.
pub mod serve;

/// A TLS client's own record layer, for clients that misbehave after the handshake.
pub mod records;

/// A raw WebSocket client.
pub mod ws;

/// Decoders for coded bodies.
pub mod coded;

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
        let server = app::app().start(config).expect("server starts");
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

impl Drop for TestServer {
    /// A test that ends (or fails) with its server still up stops it: [`Server`]'s own drop
    /// stops accepting, drains the cores (bounded by `server.drain_timeout_ms`) and joins
    /// their threads, so no core outlives its test.
    fn drop(&mut self) {
        drop(self.server.take());
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
        Client::over(TcpStream::connect(addr).expect("connect"))
    }

    /// A client on a connected `stream`: Nagle off, and timeouts on reads and writes.
    pub fn over(stream: TcpStream) -> Client {
        stream.set_nodelay(true).unwrap();
        // Generous: a test that waits this long has failed anyway. Writes too: a server that
        // stops reading must not leave a test blocked in a write.
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Pipelines `GET /echo?name=NAME` requests without reading until a write makes no
    /// progress for `patience` (the server stopped reading them: its answers cannot leave).
    /// The writes keep that timeout. Fails if the server reads 1 GiB without holding back.
    pub fn flood_until_held(&mut self, name: &str, patience: Duration) {
        self.stream.set_write_timeout(Some(patience)).unwrap();
        let batch = format!("GET /echo?name={name} HTTP/1.1\r\nHost: t\r\n\r\n").repeat(1000);
        let mut sent = 0usize;
        while self.stream.write_all(batch.as_bytes()).is_ok() {
            sent += batch.len();
            assert!(
                sent < 1 << 30,
                "the server kept reading 1 GiB without sending"
            );
        }
    }

    /// The same client, its reads failing after `timeout` instead.
    pub fn reading_within(self, timeout: Duration) -> Client {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
        self
    }

    pub fn send(&mut self, bytes: impl AsRef<[u8]>) -> &mut Client {
        self.stream.write_all(bytes.as_ref()).expect("write");
        self
    }

    /// Sends `method target` with a Host field and `fields` (whole field lines), and reads
    /// the response (a HEAD's without a body).
    pub fn request(&mut self, method: &str, target: &str, fields: &[&str]) -> Response {
        let mut request = format!("{method} {target} HTTP/1.1\r\nHost: t\r\n");
        for field in fields {
            request.push_str(field);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        self.send(request);
        match method {
            "HEAD" => self.head_response(),
            _ => self.response(),
        }
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

    /// The bytes up to and including `end`.
    pub fn until(&mut self, end: &[u8]) -> Vec<u8> {
        loop {
            if let Some(i) = self.buf.windows(end.len()).position(|w| w == end) {
                return self.buf.drain(..i + end.len()).collect();
            }
            assert!(
                self.fill() > 0,
                "closed: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    /// A response head as it came, up to and including its blank line.
    pub fn head(&mut self) -> String {
        String::from_utf8(self.until(b"\r\n\r\n")).unwrap()
    }

    /// The next chunk's data of a chunked body; `None` for the last chunk.
    pub fn chunk(&mut self) -> Option<Vec<u8>> {
        let line = self.until(b"\r\n");
        let size = std::str::from_utf8(&line[..line.len() - 2]).unwrap();
        let size = usize::from_str_radix(size, 16).expect("a hex chunk size");
        if size == 0 {
            return None;
        }
        while self.buf.len() < size + 2 {
            assert!(self.fill() > 0, "closed inside a chunk");
        }
        let data: Vec<u8> = self.buf.drain(..size).collect();
        assert_eq!(self.buf.drain(..2).collect::<Vec<_>>(), b"\r\n");
        Some(data)
    }

    /// The rest of a chunked body (its data) and its trailer section.
    pub fn rest(&mut self) -> (Vec<u8>, String) {
        let mut body = Vec::new();
        while let Some(data) = self.chunk() {
            body.extend_from_slice(&data);
        }
        let mut trailer = String::from_utf8(self.until(b"\r\n")).unwrap();
        while !trailer.ends_with("\r\n\r\n") && trailer != "\r\n" {
            trailer += &String::from_utf8(self.until(b"\r\n")).unwrap();
        }
        (body, trailer)
    }

    /// Everything up to the server's close.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        while self.fill() > 0 {}
        std::mem::take(&mut self.buf)
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

/// The `percore` binary running as a child process; killed (SIGKILL) if the test lets go of
/// it while it still runs, so that a failing test leaves no server behind.
pub struct Percore {
    pub child: Child,
    /// The address it printed at start.
    pub addr: String,
    /// The line it printed at start (address, cores, ring mode).
    pub banner: String,
    /// Its stdout (reports) as lines, until [`Percore::stdout_lines`] takes them. Read from
    /// the start, so that a server whose reports nobody reads never blocks on a full pipe.
    pub stdout: Option<Lines>,
    /// Its stderr after the start-up line, as lines: the server writes its notes here
    /// (reloads, upgrades, shutdown).
    pub stderr: Lines,
}

impl Percore {
    /// Starts the binary with `args` and waits (at most `EXIT_WAIT`) for its
    /// "listening on http://…" line.
    pub fn spawn(args: &[&str]) -> Percore {
        let percore = Percore::start(args);
        assert!(
            !percore.addr.is_empty(),
            "no address in {:?}",
            percore.banner
        );
        percore
    }

    /// Like [`Percore::spawn`], but also when the binary has no cleartext listener (its
    /// start-up line names `https://` alone): `addr` is then empty.
    pub fn start(args: &[&str]) -> Percore {
        let mut child = Command::new(env!("CARGO_BIN_EXE_percore"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Lines::new(std::io::BufReader::new(child.stderr.take().unwrap()));
        let stdout = Lines::new(std::io::BufReader::new(child.stdout.take().unwrap()));
        let mut percore = Percore {
            child,
            addr: String::new(),
            banner: String::new(),
            stdout: Some(stdout),
            stderr,
        };
        // On failure `percore` is dropped, which kills the child.
        let line = percore.stderr.next("percore's start-up line");
        assert!(
            line.contains("listening on"),
            "not a start-up line: {line:?}"
        );
        percore.addr = address_after(&line, "http://").unwrap_or_default();
        percore.banner = line;
        percore
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
        self.stdout.take().expect("stdout not taken yet")
    }

    /// Sends `signal` and checks the process exits successfully, within `EXIT_WAIT`.
    pub fn stop_with(&mut self, signal: i32) {
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let status = wait_child(
            &mut self.child,
            EXIT_WAIT,
            &format!("percore's exit after signal {signal}"),
        );
        assert!(status.success(), "percore exited with {status}");
    }
}

impl Drop for Percore {
    fn drop(&mut self) {
        kill_child(&mut self.child);
    }
}

/// Kills `child` (SIGKILL) and reaps it, unless it has exited already.
pub fn kill_child(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A child process that is killed (SIGKILL) and reaped when dropped, unless it has exited:
/// a failing test leaves nothing running.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        kill_child(&mut self.0);
    }
}

/// Waits for `child` to exit, at most `within`; past it the child is killed and the test
/// fails, naming `what` it waited for.
pub fn wait_child(child: &mut Child, within: Duration, what: &str) -> ExitStatus {
    let exited = poll(within, POLL_EVERY, || {
        child.try_wait().expect("try_wait").ok_or(())
    });
    exited.unwrap_or_else(|()| {
        kill_child(child);
        panic!("waited {within:?} in vain for {what}; the process was killed");
    })
}

/// Reads `reader` to its end on a thread of its own.
fn read_on_thread(
    mut reader: impl Read + Send + 'static,
) -> std::thread::JoinHandle<std::io::Result<Vec<u8>>> {
    std::thread::spawn(move || {
        let mut all = Vec::new();
        reader.read_to_end(&mut all).map(|_| all)
    })
}

/// Runs `command` to its end like [`Command::output`], with `input` on its stdin, but fails
/// the test (killing the process) if it has not exited `within`.
pub fn output_with_input(command: &mut Command, input: &[u8], within: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        // A process may exit without reading all of it: that is for its exit status to say.
        let _ = stdin.write_all(&input);
    });
    let stdout = read_on_thread(child.stdout.take().unwrap());
    let stderr = read_on_thread(child.stderr.take().unwrap());
    let status = wait_child(&mut child, within, &format!("exit of {command:?}"));
    writer.join().unwrap();
    Output {
        status,
        stdout: stdout.join().unwrap().unwrap(),
        stderr: stderr.join().unwrap().unwrap(),
    }
}

/// Runs `command` to its end like [`Command::output`] (nothing on its stdin), but fails the
/// test (killing the process) if it has not exited `within`.
pub fn output_within(command: &mut Command, within: Duration) -> Output {
    output_with_input(command, b"", within)
}

/// Whether `tool` can be run here: `tool args` starts and exits successfully within 30 s.
pub fn have_tool(tool: &str, args: &[&str]) -> bool {
    let Ok(mut child) = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    wait_child(
        &mut child,
        Duration::from_secs(30),
        &format!("exit of `{tool} {}`", args.join(" ")),
    )
    .success()
}

/// Whether this is a CI run (`CI=true`, as `.ci/run` and CI services set it): there, every
/// test must run.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// The one gate for a test that cannot always run (a tool or a second core missing).
/// Returns `available`. When it is false: under `CI=true` the test fails, saying `why`;
/// elsewhere this prints `SKIPPED: <test>: <why>` on stderr (uncaptured, so it shows in
/// every run) and returns false, for the test to return at once. A skipped test still shows
/// as `ok` in the summary: the line is the sign that it did not run.
#[track_caller]
pub fn require(available: bool, why: &str) -> bool {
    if available {
        return true;
    }
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("this test");
    assert!(
        !ci(),
        "{test} cannot run: {why}; CI=true requires every test to run"
    );
    // Straight to the process's stderr: the test harness captures `eprintln!` of a test
    // that passes, and a skip must show in every run's output.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {test}: {why} (under CI=true this fails)"
    );
    false
}

/// Polls `done` every 10 ms until it holds; fails the test, naming `what`, after `within`.
#[track_caller]
pub fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    if poll(within, POLL_EVERY, || if done() { Ok(()) } else { Err(()) }).is_err() {
        panic!("waited {within:?} in vain until {what}");
    }
}

/// Polls `ready` every 10 ms until it gives `Ok`, and returns its value; fails the test after
/// `within`, naming `what` and the last `Err` (what `ready` saw instead).
#[track_caller]
pub fn wait_for<T, E: std::fmt::Display>(
    what: &str,
    within: Duration,
    ready: impl FnMut() -> Result<T, E>,
) -> T {
    poll(within, POLL_EVERY, ready)
        .unwrap_or_else(|last| panic!("waited {within:?} in vain until {what}; last saw: {last}"))
}

/// How often [`wait_until`] and [`wait_for`] look.
const POLL_EVERY: Duration = Duration::from_millis(10);

/// The one polling loop under every wait here: calls `ready` every `every` until it gives
/// `Ok`, or until `within` has passed, then gives its last `Err`.
fn poll<T, E>(
    within: Duration,
    every: Duration,
    mut ready: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let deadline = Instant::now() + within;
    loop {
        match ready() {
            Ok(value) => return Ok(value),
            Err(last) if Instant::now() >= deadline => return Err(last),
            Err(_) => std::thread::sleep(every),
        }
    }
}

/// How long a stopped server may take to drain and exit, and how long a test waits for a
/// line of output, before the test fails: far beyond what either takes when it works.
pub const EXIT_WAIT: Duration = Duration::from_secs(30);

/// Lines of a child's output, read on a thread of their own (to the end, listened to or not)
/// so that a test waits for each with a bound and fails, instead of blocking forever on a
/// pipe that stays silent, and the child never blocks on a pipe nobody reads.
pub struct Lines(std::sync::mpsc::Receiver<String>);

impl Lines {
    pub fn new(reader: impl std::io::BufRead + Send + 'static) -> Lines {
        let (lines, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in reader.lines() {
                let Ok(line) = line else { break };
                // Read to the end even once nobody listens, so that the writer never blocks
                // on a full pipe.
                let _ = lines.send(line);
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
            Err(RecvTimeoutError::Timeout) => panic!("{what} did not come within {EXIT_WAIT:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("the output ended before {what}"),
        }
    }

    /// The first line from now on for which `wanted` holds, the others passed over; fails
    /// the test, naming `what`, if none comes within `EXIT_WAIT` or the output ends.
    pub fn find(&self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        use std::sync::mpsc::RecvTimeoutError;
        let deadline = Instant::now() + EXIT_WAIT;
        let mut passed = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.0.recv_timeout(left) {
                Ok(line) if wanted(&line) => return line,
                Ok(line) => passed.push(line),
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{what} did not come within {EXIT_WAIT:?}; other lines: {passed:?}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("the output ended before {what}; other lines: {passed:?}")
                }
            }
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

/// One TCP socket as the kernel reports it (`ss`, `/proc/net/tcp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRow {
    /// The state (`1` established, `3` SYN_RECV, `7` closed, …).
    pub state: u8,
    /// Bytes written to the socket and not yet acknowledged by the peer: on loopback, bytes
    /// the peer's closed receive window keeps in this socket's send buffer.
    pub tx_queue: u64,
    /// Bytes received and not yet read by the socket's owner.
    pub rx_queue: u64,
}

/// The kernel's record of the IPv4 TCP socket whose own end is `local` and whose peer is
/// `remote`, if it exists. For the server's end of a client's `stream`:
/// `tcp_row(stream.peer_addr(), stream.local_addr())`.
///
/// Asked through sock_diag netlink for that one socket (what `ss` uses), a hash lookup in
/// the kernel: reading `/proc/net/tcp` instead costs a walk of every socket, and with the
/// thousands of connections (and their TIME_WAIT remains) other tests make, polling it
/// slows to seconds.
pub fn tcp_row(local: SocketAddr, remote: SocketAddr) -> Option<TcpRow> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLMSG_ERROR: u16 = 2;
    let (SocketAddr::V4(local), SocketAddr::V4(remote)) = (local, remote) else {
        panic!("tcp_row looks up IPv4 sockets only: {local} {remote}");
    };
    // struct nlmsghdr (16 bytes), then struct inet_diag_req_v2 (56 bytes).
    let mut request = Vec::with_capacity(72);
    request.extend_from_slice(&72u32.to_ne_bytes());
    request.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    request.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    request.extend_from_slice(&[0; 8]); // sequence, port id
    request.extend_from_slice(&[libc::AF_INET as u8, libc::IPPROTO_TCP as u8, 0, 0]);
    request.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
                                                        // struct inet_diag_sockid: ports and addresses in network order.
    request.extend_from_slice(&local.port().to_be_bytes());
    request.extend_from_slice(&remote.port().to_be_bytes());
    request.extend_from_slice(&local.ip().octets());
    request.extend_from_slice(&[0; 12]);
    request.extend_from_slice(&remote.ip().octets());
    request.extend_from_slice(&[0; 12]);
    request.extend_from_slice(&0u32.to_ne_bytes()); // any interface
    request.extend_from_slice(&[0xff; 8]); // INET_DIAG_NOCOOKIE
    assert_eq!(request.len(), 72);
    // SAFETY: socket(2); the descriptor is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    assert!(fd >= 0, "netlink: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor, owned from here on.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sends `request`, a buffer of its length, to the kernel (the default address).
    let sent = unsafe { libc::send(fd.as_raw_fd(), request.as_ptr().cast(), request.len(), 0) };
    assert_eq!(sent, 72, "netlink: {}", std::io::Error::last_os_error());
    let mut reply = [0u8; 1024];
    // SAFETY: receives into `reply`, a buffer of its length. The kernel answers at once.
    let n = unsafe { libc::recv(fd.as_raw_fd(), reply.as_mut_ptr().cast(), reply.len(), 0) };
    assert!(n >= 16, "netlink: {}", std::io::Error::last_os_error());
    let u16_at = |i: usize| u16::from_ne_bytes([reply[i], reply[i + 1]]);
    let u32_at = |i: usize| u32::from_ne_bytes(reply[i..i + 4].try_into().unwrap());
    match u16_at(4) {
        NLMSG_ERROR => {
            // struct nlmsgerr: a negative errno; ENOENT when there is no such socket.
            let error = -(u32_at(16) as i32);
            assert_eq!(
                error,
                libc::ENOENT,
                "sock_diag: {}",
                std::io::Error::from_raw_os_error(error)
            );
            None
        }
        SOCK_DIAG_BY_FAMILY => {
            // struct inet_diag_msg after the header: state at 1, then the socket id (48
            // bytes), expires, rqueue at 56, wqueue at 60.
            assert!(n as usize >= 16 + 72, "a short sock_diag answer: {n} bytes");
            Some(TcpRow {
                state: reply[16 + 1],
                rx_queue: u64::from(u32_at(16 + 56)),
                tx_queue: u64::from(u32_at(16 + 60)),
            })
        }
        other => panic!("sock_diag answered with message type {other}"),
    }
}

/// The server's end of the connection `stream` is the client end of; `None` once there is
/// none (or once `stream` is no longer connected: reset).
pub fn server_end(stream: &TcpStream) -> Option<TcpRow> {
    tcp_row(stream.peer_addr().ok()?, stream.local_addr().ok()?)
}

/// Bytes waiting in `stream`'s receive queue.
pub fn unread(stream: &TcpStream) -> usize {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    assert_eq!(
        unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONREAD, &mut n) },
        0
    );
    n as usize
}

/// `TcpRow::state` of an established connection.
pub const ESTABLISHED: u8 = 1;
/// `TcpRow::state` of a connection whose handshake the server's kernel has not completed
/// yet: with `TCP_DEFER_ACCEPT` it stays so, its client's ACK dropped, until data arrives.
pub const SYN_RECV: u8 = 3;

/// Waits (at most 20 s) until the server has read everything sent on `stream` so far: its
/// end's receive queue is empty (or the server has closed its end). A test that means the
/// server to see bytes in separate reads waits for this between its writes. Looks every
/// 100 µs, so that bytes written one at a time (a TLS handshake) do not take 10 ms each.
#[track_caller]
pub fn wait_until_read_by_server(stream: &TcpStream) {
    let read = poll(Duration::from_secs(20), Duration::from_micros(100), || {
        let read = server_end(stream).is_none_or(|row| match row.state {
            ESTABLISHED => row.rx_queue == 0,
            SYN_RECV => false,
            _ => true,
        });
        if read {
            Ok(())
        } else {
            Err(())
        }
    });
    assert!(
        read.is_ok(),
        "the server did not read what was sent within 20 s"
    );
}

/// A client connection whose receive buffer is as small as the kernel allows (a few KiB),
/// so that a server sending to it while it does not read is soon held up.
pub fn small_window_client(addr: SocketAddr) -> Client {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    // Before connecting, so that the window offered in the handshake is small too.
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).expect("connect");
    Client::over(socket.into())
}

/// What [`wait_until_send_stalled`] saw.
#[derive(Debug, Clone, Copy)]
pub struct Stall {
    /// The server's end of the connection once stalled.
    pub server: TcpRow,
    /// Bytes waiting, unread, in the client's receive queue.
    pub unread: usize,
    /// The server's send last made progress (bytes entered or left its socket) no earlier
    /// than this…
    pub progress_not_before: Instant,
    /// …and no later than this.
    pub progress_not_after: Instant,
}

/// Waits until the server's output to `stream`, whose owner does not read, is held up:
/// the server's end holds bytes it could not send (`tx_queue` > 0) and nothing has moved on
/// either end for 300 ms: on loopback, bytes left unsent that long mean the client's
/// receive window is closed, so whatever the server sends next waits in a send of its own.
/// `since` is an instant before the connection's first byte was sent. Fails after 20 s.
pub fn wait_until_send_stalled(stream: &TcpStream, since: Instant) -> Stall {
    let sample = || (server_end(stream), unread(stream));
    let mut last = sample();
    let mut polled = Instant::now();
    // Bounds of the last change seen: between the poll before it and the poll that saw it.
    let mut changed = (since, polled);
    wait_for(
        "the server's output to a client that does not read is held up",
        Duration::from_secs(20),
        || {
            let before = polled;
            let now = sample();
            polled = Instant::now();
            if now != last {
                changed = (before, polled);
                last = now;
                return Err(format!("{now:?}"));
            }
            match now {
                (Some(server), unread)
                    if server.state == ESTABLISHED
                        && server.tx_queue > 0
                        && unread > 0
                        && polled.duration_since(changed.1) >= Duration::from_millis(300) =>
                {
                    Ok(Stall {
                        server,
                        unread,
                        progress_not_before: changed.0,
                        progress_not_after: changed.1,
                    })
                }
                _ => Err(format!("{now:?}")),
            }
        },
    )
}

/// Waits (at most `within`) until `stream`'s connection is ended by the other side, a reset
/// or a FIN, without reading from it (bytes waiting there stay unread). Returns when that
/// was seen, or `None` when it was not within `within`.
pub fn wait_for_hang_up(stream: &TcpStream, within: Duration) -> Option<Instant> {
    use std::os::fd::AsRawFd;
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut poll = libc::pollfd {
            fd: stream.as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        };
        let wait = left.as_millis().min(100) as libc::c_int;
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut poll, 1, wait) };
        assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
        if n > 0 && poll.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0 {
            return Some(Instant::now());
        }
        if left.is_zero() {
            return None;
        }
    }
}

/// The address after `scheme` in a start-up line (`http://` does not match `https://`).
pub fn address_after(line: &str, scheme: &str) -> Option<String> {
    line.split(scheme)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_string)
}
