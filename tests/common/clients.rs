//! Clients that keep going while a server reloads or is replaced, counting every response:
//! one keep-alive connection after another, and one connection per request.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The status of `GET path` on a new connection.
pub fn status_of(addr: SocketAddr, path: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).unwrap();
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
/// `Connection: close`), until `stop`.
pub fn keep_alive_client(addr: SocketAddr, stop: Arc<AtomicBool>) -> JoinHandle<Tally> {
    std::thread::spawn(move || {
        let mut tally = Tally::default();
        let mut n = 0u64;
        'connections: while !stop.load(Ordering::Relaxed) {
            let mut stream = match TcpStream::connect(addr) {
                Ok(stream) => stream,
                Err(e) => {
                    tally.failures.push(format!("connect: {e}"));
                    continue;
                }
            };
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let mut buf = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let request = format!("GET /echo?name=k{n} HTTP/1.1\r\nHost: t\r\n\r\n");
                if let Err(e) = stream.write_all(request.as_bytes()) {
                    tally.failures.push(format!("write: {e}"));
                    continue 'connections;
                }
                match read_response(&mut stream, &mut buf) {
                    Ok((status, close, body)) => {
                        if status != "HTTP/1.1 200 OK" || body != format!("Hi, k{n}!").as_bytes() {
                            tally.failures.push(format!("{status}: {body:?}"));
                        } else {
                            tally.ok += 1;
                        }
                        if close {
                            continue 'connections;
                        }
                    }
                    Err(e) => {
                        tally.failures.push(e);
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

/// A client that opens a new connection for every request, until `stop`.
pub fn new_connection_client(addr: SocketAddr, stop: Arc<AtomicBool>) -> JoinHandle<Tally> {
    std::thread::spawn(move || {
        let mut tally = Tally::default();
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            match one_request(addr, n) {
                Ok(()) => tally.ok += 1,
                Err(e) => tally.failures.push(e),
            }
        }
        tally
    })
}
