//! Upgrades through the reverse proxy over real sockets: a request asking to switch
//! protocols (a WebSocket handshake) is passed on, a server's `101` makes the exchange a
//! byte tunnel both ways, and any other answer leaves the client connection speaking HTTP.
//! The backends here are raw: they read the head, answer exactly the bytes a case needs,
//! then echo, or answer as HTTP.

#[path = "common/backend.rs"]
mod backend;
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use backend::connect;
use common::TestServer;
use percore::config::Config;

const HANDSHAKE: &str = "GET /ws/chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\
    Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

/// What the backend does after reading a request head.
#[derive(Clone, Copy)]
enum Then {
    /// Answers `101`, then echoes every byte back, prefixed once with `echo:`, until the
    /// client's side closes; then closes.
    Switch,
    /// Answers `101`, sends `bye`, and closes at once.
    SwitchAndLeave,
    /// Answers `200 no` and goes on reading requests as HTTP.
    Refuse,
}

/// A backend that treats each connection as `then` says; the request heads it read come
/// back through the channel.
fn backend(then: Then) -> (SocketAddr, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (heads, seen) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let heads = heads.clone();
            thread::spawn(move || serve(stream, then, &heads));
        }
    });
    (addr, seen)
}

fn serve(stream: TcpStream, then: Then, heads: &mpsc::Sender<String>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let _ = heads.send(head);
        match then {
            Then::Refuse => {
                let answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno";
                writer.write_all(answer.as_bytes()).unwrap();
                continue;
            }
            Then::Switch | Then::SwitchAndLeave => {}
        }
        let answer = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
            Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        writer.write_all(answer.as_bytes()).unwrap();
        if let Then::SwitchAndLeave = then {
            writer.write_all(b"bye").unwrap();
            return;
        }
        writer.write_all(b"echo:").unwrap();
        // What the BufReader already holds is the tunnel's too.
        let held = reader.buffer().to_vec();
        reader.consume(held.len());
        writer.write_all(&held).unwrap();
        let mut buf = vec![0u8; 65536];
        loop {
            match reader.get_mut().read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if writer.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// A server proxying `/ws/` to `backend`.
fn proxy_to(backend: SocketAddr) -> TestServer {
    let toml = format!(
        "[[upstream]]\nname = \"ws\"\nservers = [\"{backend}\"]\nread_timeout_ms = 5000\n\
         [[proxy]]\npath = \"/ws/\"\nupstream = \"ws\"\n"
    );
    let parsed = Config::from_toml(&toml, "test").expect("the proxy configuration parses");
    TestServer::with(|config| {
        config.upstream = parsed.upstream;
        config.proxy = parsed.proxy;
    })
}

/// Reads a response head, byte by byte (nothing after it is taken).
fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed inside a head");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

fn read_exactly(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    stream.read_exact(&mut buf).unwrap();
    buf
}

#[test]
fn an_accepted_upgrade_becomes_a_tunnel_both_ways() {
    let (backend, heads) = backend(Then::Switch);
    let server = proxy_to(backend);
    let mut stream = connect(server.addr);
    // Bytes of the new protocol right behind the handshake go through too.
    stream
        .write_all(format!("{HANDSHAKE}early").as_bytes())
        .unwrap();
    let head = read_head(&mut stream);
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert!(head.contains("Upgrade: websocket\r\n"), "{head}");
    assert!(head.contains("Connection: upgrade\r\n"), "{head}");
    assert!(
        head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{head}"
    );
    assert!(
        !head.contains("Content-Length") && !head.contains("Transfer-Encoding"),
        "{head}"
    );

    let forwarded = heads.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        forwarded.starts_with("GET /ws/chat HTTP/1.1\r\n"),
        "{forwarded}"
    );
    assert!(forwarded.contains("Upgrade: websocket\r\n"), "{forwarded}");
    assert!(forwarded.contains("Connection: upgrade\r\n"), "{forwarded}");
    assert!(forwarded.contains("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));

    assert_eq!(read_exactly(&mut stream, 10), b"echo:early");
    // HTTP-looking bytes are the new protocol's now: echoed, never parsed.
    stream.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_exactly(&mut stream, 18), b"GET / HTTP/1.1\r\n\r\n");
    // The client's close reaches the server, whose close reaches the client.
    stream.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn megabytes_pass_both_ways_at_once() {
    const LEN: usize = 4 * 1024 * 1024;
    let (backend, _heads) = backend(Then::Switch);
    let server = proxy_to(backend);
    let mut stream = connect(server.addr);
    stream.write_all(HANDSHAKE.as_bytes()).unwrap();
    read_head(&mut stream);
    assert_eq!(read_exactly(&mut stream, 5), b"echo:");
    let mut writer = stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let data: Vec<u8> = (0..LEN).map(|i| (i % 253) as u8).collect();
        for piece in data.chunks(100_000) {
            writer.write_all(piece).unwrap();
        }
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut echoed = Vec::new();
    stream.read_to_end(&mut echoed).unwrap();
    sender.join().unwrap();
    assert_eq!(echoed.len(), LEN);
    assert!(echoed
        .iter()
        .enumerate()
        .all(|(i, &b)| b == (i % 253) as u8));
}

#[test]
fn the_servers_close_ends_the_tunnel_after_its_last_bytes() {
    let (backend, _heads) = backend(Then::SwitchAndLeave);
    let server = proxy_to(backend);
    let mut stream = connect(server.addr);
    stream.write_all(HANDSHAKE.as_bytes()).unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"bye");
}

#[test]
fn a_refused_upgrade_leaves_the_connection_speaking_http() {
    let (backend, heads) = backend(Then::Refuse);
    let server = proxy_to(backend);
    let mut stream = connect(server.addr);
    // A request that would be smuggled if the refused upgrade opened a tunnel anyway.
    stream
        .write_all(format!("{HANDSHAKE}GET /ws/next HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(read_exactly(&mut stream, 2), b"no");
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(read_exactly(&mut stream, 2), b"no");
    let first = heads.recv_timeout(Duration::from_secs(10)).unwrap();
    let second = heads.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(first.starts_with("GET /ws/chat "), "{first}");
    assert!(second.starts_with("GET /ws/next "), "{second}");
    assert!(!second.contains("Upgrade"), "{second}");
}

#[test]
fn a_request_that_did_not_ask_is_never_switched() {
    // The server answers 101 to everything: without an upgrade asked, that is a 502.
    let (backend, heads) = backend(Then::Switch);
    let server = proxy_to(backend);
    for request in [
        // No `Connection: upgrade`: `Upgrade` alone is dropped, as any hop-by-hop field.
        "GET /ws/a HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\r\n",
        // HTTP/1.0 cannot switch.
        "GET /ws/b HTTP/1.0\r\nHost: t\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
    ] {
        let mut stream = connect(server.addr);
        stream.write_all(request.as_bytes()).unwrap();
        let head = read_head(&mut stream);
        assert!(head.starts_with("HTTP/1.1 502 "), "{request:?}: {head}");
        let forwarded = heads.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(!forwarded.contains("Upgrade"), "{forwarded}");
    }
}
