//! Raw-byte backends for the upstream tests: each answers exactly what its script says
//! and records exactly what it received, request by request.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// A client connection to `addr` whose reads give up after 20 s.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

/// What a backend does with one request: the bytes to answer, and whether to close the
/// connection afterwards.
type Script = dyn Fn(&Request) -> (Vec<u8>, bool) + Send + Sync;

/// A request as the backend received it.
#[derive(Clone, Debug)]
pub struct Request {
    pub head: String,
    pub body: Vec<u8>,
}

impl Request {
    pub fn line(&self) -> &str {
        self.head.lines().next().unwrap_or("")
    }

    pub fn fields(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }
}

/// A backend on 127.0.0.1: one thread per connection, requests recorded in order.
pub struct Backend {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Request>>>,
    pub connections: Arc<AtomicUsize>,
}

impl Backend {
    pub fn start(script: impl Fn(&Request) -> (Vec<u8>, bool) + Send + Sync + 'static) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let script: Arc<Script> = Arc::new(script);
        let (s, c) = (seen.clone(), connections.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                c.fetch_add(1, Ordering::SeqCst);
                let (s, script) = (s.clone(), script.clone());
                thread::spawn(move || serve(stream, &s, &*script));
            }
        });
        Backend {
            addr,
            seen,
            connections,
        }
    }

    pub fn seen(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

/// Reads requests (Content-Length bodies) and answers each as `script` says.
fn serve(mut stream: TcpStream, seen: &Mutex<Vec<Request>>, script: &Script) {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = Vec::new();
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 65536];
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let request = Request {
            head: head.clone(),
            body: Vec::new(),
        };
        let len: usize = request
            .fields("content-length")
            .first()
            .map_or(0, |v| v.parse().unwrap());
        while buf.len() < end + len {
            let mut chunk = [0u8; 65536];
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let request = Request {
            head,
            body: buf[end..end + len].to_vec(),
        };
        buf.drain(..end + len);
        seen.lock().unwrap().push(request.clone());
        let (answer, close) = script(&request);
        if stream.write_all(&answer).is_err() || close {
            return;
        }
    }
}
