//! Pipelined requests through the reverse proxy: a client's `GET`s and `HEAD`s behind one
//! waiting for its upstream go out behind it on the same connection, as a batch, and the
//! responses come back in request order, whatever the server does with its connections.

#[path = "common/backend.rs"]
mod backend;
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use backend::{connect, Backend, Request};
use common::TestServer;
use percore::config::Config;

/// A server with the `[[upstream]]` and `[[proxy]]` tables of `toml`.
fn with_toml(toml: &str) -> TestServer {
    let parsed = Config::from_toml(toml, "test").expect("the proxy configuration parses");
    TestServer::with(|config| {
        config.upstream = parsed.upstream;
        config.proxy = parsed.proxy;
    })
}

/// A server proxying `/api/` to `backend`, with `extra` lines in its `[[upstream]]`.
fn proxy_to(backend: SocketAddr, extra: &str) -> TestServer {
    with_toml(&format!(
        "[[upstream]]\nname = \"app\"\nservers = [\"{backend}\"]\n{extra}\n\
         [[proxy]]\npath = \"/api/\"\nupstream = \"app\"\n"
    ))
}

fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The path of a request line.
fn path(request: &Request) -> String {
    request.line().split(' ').nth(1).unwrap_or("").to_string()
}

/// Reads `count` responses with `Content-Length` bodies (none for `heads`, the indexes of
/// responses to HEAD): their status lines and bodies.
fn read_responses(stream: &mut TcpStream, count: usize, heads: &[usize]) -> Vec<(String, String)> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut chunk = [0u8; 65536];
    while out.len() < count {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = match heads.contains(&out.len()) {
                true => 0,
                false => head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .map_or(0, |v| v.trim().parse().unwrap()),
            };
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                out.push((head.lines().next().unwrap().to_string(), body));
                buf.drain(..end + 4 + len);
                continue;
            }
        }
        let n = stream
            .read(&mut chunk)
            .expect("the responses within the deadline");
        assert!(n > 0, "closed after {} responses: {:?}", out.len(), out);
        buf.extend_from_slice(&chunk[..n]);
    }
    out
}

/// A backend that answers nothing until it holds `batch` request heads on one connection,
/// then answers them all, in order; the number of heads it found together is sent back.
fn batch_backend(batch: usize) -> (SocketAddr, mpsc::Receiver<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (found, seen) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let found = found.clone();
            thread::spawn(move || {
                stream
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 65536];
                loop {
                    let heads = buf.windows(4).filter(|w| *w == b"\r\n\r\n").count();
                    if heads >= batch {
                        let _ = found.send(heads);
                        let text = String::from_utf8_lossy(&buf).to_string();
                        let mut answers = Vec::new();
                        for head in text.split("\r\n\r\n").filter(|h| !h.is_empty()) {
                            let path = head.split(' ').nth(1).unwrap_or("").to_string();
                            answers.extend_from_slice(&ok(&path));
                        }
                        buf.clear();
                        if stream.write_all(&answers).is_err() {
                            return;
                        }
                        continue;
                    }
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (addr, seen)
}

#[test]
fn pipelined_gets_reach_the_server_as_a_batch_on_one_connection() {
    // The server answers only once it holds eight requests: one at a time, nothing would
    // ever come back.
    let (backend, found) = batch_backend(8);
    let server = proxy_to(backend, "");
    let mut stream = connect(server.addr);
    let mut requests = String::new();
    for i in 0..8 {
        requests.push_str(&format!("GET /api/{i} HTTP/1.1\r\nHost: t\r\n\r\n"));
    }
    stream.write_all(requests.as_bytes()).unwrap();
    let responses = read_responses(&mut stream, 8, &[]);
    for (i, (line, body)) in responses.iter().enumerate() {
        assert_eq!(line, "HTTP/1.1 200 OK");
        assert_eq!(body, &format!("/api/{i}"));
    }
    assert_eq!(found.recv_timeout(Duration::from_secs(5)).unwrap(), 8);
}

#[test]
fn heads_posts_and_other_upstreams_keep_their_place_in_line() {
    let app = Backend::start(|r: &Request| match r.line().starts_with("HEAD") {
        true => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".to_vec(),
            false,
        ),
        false => (ok(&format!("app {} {}", path(r), r.body.len())), false),
    });
    let other = Backend::start(|r: &Request| (ok(&format!("other {}", path(r))), false));
    let server = with_toml(&format!(
        "[[upstream]]\nname = \"app\"\nservers = [\"{}\"]\n\
         [[upstream]]\nname = \"other\"\nservers = [\"{}\"]\n\
         [[proxy]]\npath = \"/api/\"\nupstream = \"app\"\n\
         [[proxy]]\npath = \"/other/\"\nupstream = \"other\"\n",
        app.addr, other.addr
    ));
    let mut stream = connect(server.addr);
    stream
        .write_all(
            b"GET /api/a HTTP/1.1\r\nHost: t\r\n\r\n\
              HEAD /api/h HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /other/b HTTP/1.1\r\nHost: t\r\n\r\n\
              POST /api/p HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nxyz\
              GET /api/c HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /echo?name=local HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /api/d HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .unwrap();
    let responses = read_responses(&mut stream, 7, &[1]);
    let bodies: Vec<&str> = responses.iter().map(|(_, b)| b.as_str()).collect();
    assert_eq!(
        bodies,
        [
            "app /api/a 0",
            "",
            "other /other/b",
            "app /api/p 3",
            "app /api/c 0",
            "Hi, local!",
            "app /api/d 0"
        ]
    );
    assert!(responses[1].0.starts_with("HTTP/1.1 200"), "{responses:?}");
    assert_eq!(app.seen().len(), 5, "each request once");
    assert_eq!(other.seen().len(), 1);
}

#[test]
fn a_server_closing_after_each_answer_still_answers_every_pipelined_request() {
    let backend = Backend::start(|r: &Request| {
        let body = path(r);
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        (answer.into_bytes(), true)
    });
    let server = proxy_to(backend.addr, "");
    let mut stream = connect(server.addr);
    let mut requests = String::new();
    for i in 0..10 {
        requests.push_str(&format!("GET /api/{i} HTTP/1.1\r\nHost: t\r\n\r\n"));
    }
    stream.write_all(requests.as_bytes()).unwrap();
    let responses = read_responses(&mut stream, 10, &[]);
    for (i, (line, body)) in responses.iter().enumerate() {
        assert_eq!(line, "HTTP/1.1 200 OK", "{i}");
        assert_eq!(body, &format!("/api/{i}"));
    }
    // Each connection answered one request: those sent behind it went again, once each
    // answered.
    let mut answered: Vec<String> = backend.seen().iter().map(path).collect();
    answered.dedup();
    assert_eq!(answered.len(), 10, "{answered:?}");
    assert!(backend.connections.load(Ordering::SeqCst) >= 10);
}

#[test]
fn a_failed_answer_in_the_middle_is_a_502_in_its_place() {
    let backend = Backend::start(|r: &Request| match path(r).as_str() {
        "/api/bad" => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(),
            true,
        ),
        p => (ok(p), false),
    });
    let server = proxy_to(backend.addr, "max_fails = 0");
    let mut stream = connect(server.addr);
    stream
        .write_all(
            b"GET /api/one HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /api/bad HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /api/three HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .unwrap();
    let responses = read_responses(&mut stream, 3, &[]);
    assert_eq!(responses[0].1, "/api/one");
    assert!(responses[1].0.starts_with("HTTP/1.1 502"), "{responses:?}");
    assert_eq!(responses[2].1, "/api/three");
}

/// A backend that reads one request with a chunked or `Content-Length` body, says when
/// its head has come (through `heads`), and answers the body's length and byte sum.
fn body_backend() -> (SocketAddr, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (heads, seen) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let heads = heads.clone();
            thread::spawn(move || {
                stream
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .unwrap();
                let mut buf = Vec::new();
                let mut chunk = vec![0u8; 65536];
                let end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    let n = stream.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                let _ = heads.send(head.clone());
                buf.drain(..end);
                let mut body = Vec::new();
                let mut more = |buf: &mut Vec<u8>| {
                    let n = stream.read(&mut chunk).unwrap_or(0);
                    buf.extend_from_slice(&chunk[..n]);
                    n > 0
                };
                if head
                    .to_ascii_lowercase()
                    .contains("transfer-encoding: chunked")
                {
                    loop {
                        while !buf.windows(2).any(|w| w == b"\r\n") {
                            assert!(more(&mut buf), "closed in a chunk line");
                        }
                        let line_end = buf.windows(2).position(|w| w == b"\r\n").unwrap();
                        let size = usize::from_str_radix(
                            std::str::from_utf8(&buf[..line_end]).unwrap(),
                            16,
                        )
                        .unwrap();
                        while buf.len() < line_end + 2 + size + 2 {
                            assert!(more(&mut buf), "closed in a chunk");
                        }
                        body.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
                        buf.drain(..line_end + 2 + size + 2);
                        if size == 0 {
                            break;
                        }
                    }
                } else {
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    while buf.len() < len {
                        assert!(more(&mut buf), "closed in a body");
                    }
                    body = buf[..len].to_vec();
                }
                let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
                let _ = stream.write_all(&ok(&format!("{} {sum}", body.len())));
            });
        }
    });
    (addr, seen)
}

#[test]
fn a_request_body_goes_upstream_as_it_arrives() {
    let (backend, heads) = body_backend();
    let server = proxy_to(backend, "");
    let mut stream = connect(server.addr);
    stream
        .write_all(
            b"POST /api/up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        )
        .unwrap();
    // The server has the head (and the first chunk is on its way) while the client has
    // not sent the rest: gathered first, nothing would have gone yet.
    let head = heads
        .recv_timeout(Duration::from_secs(10))
        .expect("the head went upstream before the body was complete");
    assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("content-length"),
        "{head}"
    );
    stream.write_all(b"6\r\n world\r\n0\r\n\r\n").unwrap();
    let sum: u64 = b"hello world".iter().map(|&b| u64::from(b)).sum();
    assert_eq!(
        read_responses(&mut stream, 1, &[])[0].1,
        format!("11 {sum}")
    );
}

#[test]
fn a_large_upload_streams_in_bounded_memory() {
    // Twenty mebibytes through a core that may hold one mebibyte of gathered bodies:
    // gathered, it would be refused (503); streamed, it passes.
    const LEN: usize = 20 * 1024 * 1024;
    let (backend, _heads) = body_backend();
    let toml = format!(
        "[[upstream]]\nname = \"app\"\nservers = [\"{backend}\"]\n\
         [[proxy]]\npath = \"/api/\"\nupstream = \"app\"\n"
    );
    let parsed = Config::from_toml(&toml, "test").unwrap();
    let server = TestServer::with(|config| {
        config.upstream = parsed.upstream;
        config.proxy = parsed.proxy;
        config.http.max_body_bytes = 64 * 1024 * 1024;
        config.http.body_buffer_bytes_per_core = 1024 * 1024;
    });
    let mut stream = connect(server.addr);
    let mut writer = stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let head = format!("PUT /api/big HTTP/1.1\r\nHost: t\r\nContent-Length: {LEN}\r\n\r\n");
        writer.write_all(head.as_bytes()).unwrap();
        let data: Vec<u8> = (0..LEN).map(|i| (i % 253) as u8).collect();
        for piece in data.chunks(256 * 1024) {
            writer.write_all(piece).unwrap();
        }
    });
    let sum: u64 = (0..LEN).map(|i| (i % 253) as u64).sum();
    let responses = read_responses(&mut stream, 1, &[]);
    sender.join().unwrap();
    assert_eq!(responses[0].0, "HTTP/1.1 200 OK");
    assert_eq!(responses[0].1, format!("{LEN} {sum}"));
}

#[test]
fn an_answer_before_the_body_is_through_reaches_the_client_and_the_rest_is_dropped() {
    // The server answers 413 at a POST's head, before its body; the client sends its body
    // anyway, then a GET, which must go on another upstream connection.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    buf.drain(..end);
                    if head.starts_with("POST") {
                        // Answered at once, then the body is waited for (as a server that
                        // keeps its connection must): a request sent on this connection
                        // now would be taken for body bytes and never answered.
                        let answer =
                            b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n\r\nnope";
                        let _ = stream.write_all(answer);
                        let mut left = 100_000usize.saturating_sub(buf.len());
                        buf.clear();
                        while left > 0 {
                            match stream.read(&mut chunk) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => left = left.saturating_sub(n),
                            }
                        }
                        continue;
                    }
                    let path = head.split(' ').nth(1).unwrap_or("").to_string();
                    if stream.write_all(&ok(&path)).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let server = proxy_to(backend, "");
    let mut stream = connect(server.addr);
    stream
        .write_all(b"POST /api/up HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n")
        .unwrap();
    let first = read_responses(&mut stream, 1, &[]);
    assert!(first[0].0.starts_with("HTTP/1.1 413"), "{first:?}");
    stream.write_all(&vec![b'x'; 100_000]).unwrap();
    stream
        .write_all(b"GET /api/after HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let second = read_responses(&mut stream, 1, &[]);
    assert_eq!(second[0].1, "/api/after");
}
