//! Clients that keep going while a server reloads or is replaced, counting every response:
//! one keep-alive connection after another, and one connection per request.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// What the test and its client threads share: when to stop, and how far they have got.
#[derive(Debug, Default)]
pub struct Load {
    stop: AtomicBool,
    answered: AtomicU64,
    failed: AtomicU64,
}

impl Load {
    pub fn new() -> Arc<Load> {
        Arc::new(Load::default())
    }

    /// Tells the clients to stop after their request in progress.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Counts one request answered in full (by a client of another file's).
    pub fn answer(&self) {
        self.answered.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests answered in full so far, by all clients together.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// Waits until the clients have had `more` requests answered from now on; fails the
    /// test, naming `what` it waited for, after 30 s.
    #[track_caller]
    pub fn wait_for_answers(&self, more: u64, what: &str) {
        let want = self.answered() + more;
        crate::common::wait_for(what, Duration::from_secs(30), || {
            let answered = self.answered();
            if answered >= want {
                Ok(())
            } else {
                let failed = self.failed.load(Ordering::Relaxed);
                Err(format!(
                    "{answered} of {want} requests answered ({failed} failed)"
                ))
            }
        });
    }
}

/// Stops the clients when dropped: a test that fails midway leaves no client running.
pub struct StopOnDrop(pub Arc<Load>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// The status of `GET path` on a new connection.
pub fn status_of(addr: SocketAddr, path: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply[9..12].parse().unwrap()
}

/// What a client thread saw.
#[derive(Debug, Default)]
pub struct Tally {
    pub ok: u64,
    pub failures: Vec<String>,
}

impl Tally {
    fn ok(&mut self, load: &Load) {
        self.ok += 1;
        load.answered.fetch_add(1, Ordering::Relaxed);
    }

    fn failed(&mut self, load: &Load, failure: String) {
        self.failures.push(failure);
        load.failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// One response read from `stream` (Content-Length framed): its status line, whether it
/// said `Connection: close`, and its body.
fn read_response(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Result<(String, bool, Vec<u8>), String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            // Field names are case-insensitive (a proxy may lower-case them).
            let lower = head.to_ascii_lowercase();
            let length: usize = lower
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .ok_or_else(|| format!("no Content-Length in {head:?}"))?
                .parse()
                .map_err(|e| format!("{e}"))?;
            if buf.len() >= end + 4 + length {
                let body = buf[end + 4..end + 4 + length].to_vec();
                buf.drain(..end + 4 + length);
                let close = lower.contains("\r\nconnection: close");
                return Ok((head.lines().next().unwrap_or("").to_string(), close, body));
            }
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => return Err(format!("closed mid-response after {} bytes", buf.len())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// A keep-alive client sending request after request (reconnecting when a response says
/// `Connection: close`), until `load` says stop.
pub fn keep_alive_client(addr: SocketAddr, load: Arc<Load>) -> JoinHandle<Tally> {
    std::thread::spawn(move || {
        let mut tally = Tally::default();
        let mut n = 0u64;
        'connections: while !load.stopping() {
            let mut stream = match TcpStream::connect(addr) {
                Ok(stream) => stream,
                Err(e) => {
                    tally.failed(&load, format!("connect: {e}"));
                    continue;
                }
            };
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let mut buf = Vec::new();
            while !load.stopping() {
                n += 1;
                let request = format!("GET /echo?name=k{n} HTTP/1.1\r\nHost: t\r\n\r\n");
                if let Err(e) = stream.write_all(request.as_bytes()) {
                    tally.failed(&load, format!("write: {e}"));
                    continue 'connections;
                }
                match read_response(&mut stream, &mut buf) {
                    Ok((status, close, body)) => {
                        if status != "HTTP/1.1 200 OK" || body != format!("Hi, k{n}!").as_bytes() {
                            tally.failed(&load, format!("{status}: {body:?}"));
                        } else {
                            tally.ok(&load);
                        }
                        if close {
                            continue 'connections;
                        }
                    }
                    Err(e) => {
                        tally.failed(&load, e);
                        continue 'connections;
                    }
                }
            }
        }
        tally
    })
}

/// One request on a new connection, read to the server's close.
pub fn one_request(addr: SocketAddr, n: u64) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let request = format!("GET /echo?name=c{n} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut reply = Vec::new();
    stream
        .read_to_end(&mut reply)
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&reply);
    if text.starts_with("HTTP/1.1 200 OK\r\n") && text.ends_with(&format!("Hi, c{n}!")) {
        Ok(())
    } else {
        Err(format!("incomplete or wrong: {text:?}"))
    }
}

/// A client that opens a new connection for every request, until `load` says stop.
pub fn new_connection_client(addr: SocketAddr, load: Arc<Load>) -> JoinHandle<Tally> {
    std::thread::spawn(move || {
        let mut tally = Tally::default();
        let mut n = 0;
        while !load.stopping() {
            n += 1;
            match one_request(addr, n) {
                Ok(()) => tally.ok(&load),
                Err(e) => tally.failed(&load, e),
            }
        }
        tally
    })
}
