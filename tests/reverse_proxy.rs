//! The reverse proxy over real sockets: percore in front of raw-byte backends that send
//! exactly the bytes a case needs and record exactly what they received.

#[path = "common/backend.rs"]
mod backend;
#[path = "common/clients.rs"]
mod clients;
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::Duration;

use backend::{connect, Backend, Request};
use common::{wait_until, Client, Percore, TestServer};
use percore::config::Config;

/// A server proxying `/api/` to `backend`, with `extra` TOML lines in its `[[upstream]]`.
fn proxy_to(backend: SocketAddr, extra: &str) -> TestServer {
    proxy_to_server(&backend.to_string(), extra)
}

/// A server proxying `/api/` to `server` (as `servers` gives it).
fn proxy_to_server(server: &str, extra: &str) -> TestServer {
    with_toml(&format!(
        "[[upstream]]\nname = \"app\"\nservers = [\"{server}\"]\n{extra}\n\
         [[proxy]]\npath = \"/api/\"\nupstream = \"app\"\n"
    ))
}

/// A server with the `[[upstream]]` and `[[proxy]]` tables of `toml`.
fn with_toml(toml: &str) -> TestServer {
    let parsed = Config::from_toml(toml, "test").expect("the proxy configuration parses");
    TestServer::with(|config| {
        config.upstream = parsed.upstream;
        config.proxy = parsed.proxy;
    })
}

fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Backend: yes\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads one response whose body is chunked (decoded), or has a Content-Length.
fn read_any(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed inside a head");
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let lower = head.to_ascii_lowercase();
    let mut body = Vec::new();
    if lower.contains("transfer-encoding: chunked") {
        loop {
            let mut line = Vec::new();
            while !line.ends_with(b"\r\n") {
                assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed inside a chunk");
                line.push(byte[0]);
            }
            let size =
                usize::from_str_radix(std::str::from_utf8(&line[..line.len() - 2]).unwrap(), 16)
                    .unwrap();
            if size == 0 {
                // The trailer section's lines (skipped), up to the blank line.
                let mut line = Vec::new();
                while line != b"\r\n" {
                    line.clear();
                    while !line.ends_with(b"\r\n") {
                        assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed in a trailer");
                        line.push(byte[0]);
                    }
                }
                break;
            }
            let mut data = vec![0u8; size + 2];
            stream.read_exact(&mut data).unwrap();
            assert_eq!(&data[size..], b"\r\n", "a chunk ends with CRLF");
            body.extend_from_slice(&data[..size]);
        }
    } else if let Some(at) = lower.find("content-length: ") {
        let len: usize = lower[at + 16..]
            .split("\r\n")
            .next()
            .unwrap()
            .parse()
            .unwrap();
        body = vec![0u8; len];
        stream.read_exact(&mut body).unwrap();
    }
    (head, body)
}

#[test]
fn a_request_goes_upstream_with_forwarded_fields_and_its_answer_comes_back() {
    let backend = Backend::start(|_| (ok("hello"), false));
    let server = proxy_to(backend.addr, "");
    let mut client = server.client();
    let response = client.get("/api/items?x=1");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "hello");
    assert_eq!(response.header("x-backend"), Some("yes"));
    let seen = backend.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].line(), "GET /api/items?x=1 HTTP/1.1");
    assert_eq!(seen[0].fields("host"), ["test"]);
    assert_eq!(seen[0].fields("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen[0].fields("x-forwarded-proto"), ["http"]);
    assert_eq!(seen[0].fields("x-forwarded-host"), ["test"]);
    assert_eq!(seen[0].fields("via"), ["1.1 percore"]);
    // The app's own routes still answer outside the prefix.
    assert_eq!(client.get("/echo?name=Abcde").text(), "Hi, Abcde!");
}

#[test]
fn keep_alive_connections_upstream_are_reused() {
    let backend = Backend::start(|_| (ok("again"), false));
    let server = proxy_to(backend.addr, "keepalive = 4");
    let mut client = server.client();
    for _ in 0..50 {
        assert_eq!(client.get("/api/x").text(), "again");
    }
    let mut other = server.client();
    for _ in 0..10 {
        assert_eq!(other.get("/api/y").text(), "again");
    }
    assert_eq!(backend.seen().len(), 60);
    assert_eq!(
        backend.connections.load(Ordering::SeqCst),
        1,
        "sixty requests one after another need one upstream connection"
    );
}

#[test]
fn hop_by_hop_fields_stop_at_the_proxy_both_ways() {
    let backend = Backend::start(|_| {
        let body = "ok";
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: X-Hop\r\nX-Hop: 1\r\n\
             Keep-Alive: timeout=5\r\nX-End: 2\r\n\r\n{body}"
        );
        (answer.into_bytes(), false)
    });
    let server = proxy_to(backend.addr, "");
    let mut client = server.client();
    client.send(
        "GET /api/h HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n\
         Keep-Alive: 5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\nX-Kept: 3\r\n\
         X-Forwarded-For: 10.0.0.1\r\n\r\n",
    );
    let response = client.response();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-hop"), None);
    assert_eq!(response.header("keep-alive"), None);
    assert_eq!(response.header("x-end"), Some("2"));
    let seen = &backend.seen()[0];
    for gone in [
        "x-secret",
        "keep-alive",
        "te",
        "proxy-connection",
        "connection",
    ] {
        assert!(
            seen.fields(gone).is_empty(),
            "{gone} was forwarded: {}",
            seen.head
        );
    }
    assert_eq!(seen.fields("x-kept"), ["3"]);
    assert_eq!(seen.fields("x-forwarded-for"), ["10.0.0.1, 127.0.0.1"]);
}

#[test]
fn a_chunked_or_close_delimited_answer_reaches_the_client_chunked() {
    let backend = Backend::start(|request| {
        if request.line().contains("/api/chunked") {
            let answer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                          5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
            (answer.as_bytes().to_vec(), false)
        } else {
            let answer = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end";
            (answer.as_bytes().to_vec(), true)
        }
    });
    let server = proxy_to(backend.addr, "");
    let mut stream = connect(server.addr);
    for (path, body) in [
        ("/api/chunked", "hello world"),
        ("/api/close", "until the end"),
        ("/api/chunked", "hello world"),
    ] {
        write!(stream, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let (head, got) = read_any(&mut stream);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "{head}"
        );
        assert_eq!(String::from_utf8(got).unwrap(), body);
    }
}

#[test]
fn bodies_are_forwarded_with_a_length_of_percores_own() {
    let backend = Backend::start(|request| (ok(&format!("{}", request.body.len())), false));
    let server = proxy_to(backend.addr, "");
    let mut client = server.client();
    client.send("POST /api/p HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world");
    assert_eq!(client.response().text(), "11");
    client.send(
        "POST /api/p HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    );
    assert_eq!(client.response().text(), "11");
    let seen = backend.seen();
    assert_eq!(seen[1].body, b"hello world");
    assert_eq!(seen[1].fields("content-length"), ["11"]);
    assert!(seen[1].fields("transfer-encoding").is_empty());
}

#[test]
fn an_unreachable_server_is_a_502_and_a_silent_one_a_504() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let server = proxy_to(dead, "max_fails = 0");
    let mut client = server.client();
    let response = client.get("/api/x");
    assert_eq!(response.status, 502);
    // The connection goes on.
    assert_eq!(client.get("/echo?name=A").text(), "Hi, A!");

    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let held = thread::spawn(move || {
        let (stream, _) = silent.accept().unwrap();
        thread::sleep(Duration::from_secs(3));
        drop(stream);
    });
    let server = proxy_to(addr, "read_timeout_ms = 300");
    let mut client = server.client();
    let started = std::time::Instant::now();
    assert_eq!(client.get("/api/slow").status, 504);
    assert!(started.elapsed() < Duration::from_secs(3));
    held.join().unwrap();
}

#[test]
fn ambiguous_or_broken_answers_are_502s() {
    let backend = Backend::start(|request| {
        let answer: &[u8] = if request.line().contains("two-lengths") {
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc"
        } else if request.line().contains("both") {
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        } else {
            b"HTTP/1.1 2x0 OK\r\n\r\n"
        };
        (answer.to_vec(), true)
    });
    let server = proxy_to(backend.addr, "max_fails = 0");
    for path in ["/api/two-lengths", "/api/both", "/api/garbage"] {
        let mut client = server.client();
        assert_eq!(client.get(path).status, 502, "{path}");
    }
}

#[test]
fn trailer_fields_of_a_chunked_answer_pass_on_without_framing_ones() {
    let backend = Backend::start(|_| {
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n\
              5\r\nhello\r\n0\r\nX-Checksum: 5d41\r\nContent-Length: 99\r\nServer-Timing: db;dur=5\r\n\r\n"
                .to_vec(),
            false,
        )
    });
    let server = proxy_to(backend.addr, "");
    let mut stream = connect(server.addr);
    stream
        .write_all(b"GET /api/t HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("Transfer-Encoding: chunked\r\n"), "{text}");
    assert!(
        text.ends_with("5\r\nhello\r\n0\r\nX-Checksum: 5d41\r\nServer-Timing: db;dur=5\r\n\r\n"),
        "the trailer's fields, but its Content-Length: {text}"
    );
    // An HTTP/1.0 client gets the body up to the close: no chunks, no trailer.
    let mut stream = connect(server.addr);
    stream
        .write_all(b"GET /api/t HTTP/1.0\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(text.ends_with("\r\n\r\nhello"), "{text}");
}

#[test]
fn a_body_cut_short_leaves_the_client_with_a_truncated_response() {
    let backend = Backend::start(|_| {
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b".to_vec(),
            true,
        )
    });
    let server = proxy_to(backend.addr, "");
    let mut stream = connect(server.addr);
    stream
        .write_all(b"GET /api/cut HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).unwrap_or_default();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("Content-Length: 100"), "{text}");
    assert!(
        text.ends_with("only ten b"),
        "the client sees it truncated: {text}"
    );
}

#[test]
fn a_pooled_connection_the_server_closed_is_never_a_client_error() {
    // The server closes every connection after its response, without saying so.
    let backend = Backend::start(|_| (ok("fresh"), true));
    let server = proxy_to(backend.addr, "");
    let mut client = server.client();
    for i in 0..30 {
        let response = client.get("/api/again");
        assert_eq!(response.status, 200, "request {i}");
        assert_eq!(response.text(), "fresh");
    }
}

#[test]
fn a_post_is_never_sent_twice() {
    // Reads the request, then resets the connection without answering.
    let backend = Backend::start(|_| (Vec::new(), true));
    let server = proxy_to(backend.addr, "max_fails = 0");
    let mut client = server.client();
    client.send("POST /api/once HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!(client.response().status, 502);
    wait_until("the backend saw the POST", Duration::from_secs(5), || {
        !backend.seen().is_empty()
    });
    assert_eq!(
        backend.seen().len(),
        1,
        "a POST that may have arrived is not sent again"
    );
    // A GET may be: it was sent twice (and failed twice).
    assert_eq!(client.get("/api/get").status, 502);
    wait_until("the GET was retried", Duration::from_secs(5), || {
        backend.seen().len() == 3
    });
}

#[test]
fn head_204_and_304_answers_carry_no_body_and_the_connection_goes_on() {
    let backend = Backend::start(|request| {
        let answer: &[u8] = if request.line().starts_with("HEAD /api/chunked") {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        } else if request.line().starts_with("HEAD") {
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
        } else if request.line().contains("204") {
            b"HTTP/1.1 204 No Content\r\n\r\n"
        } else {
            b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"
        };
        (answer.to_vec(), false)
    });
    let server = proxy_to(backend.addr, "");
    let mut client = server.client();
    client.send("HEAD /api/h HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = client.head_response();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("100"));
    client.send("HEAD /api/chunked HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = client.head_response();
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        None,
        "a HEAD says what the GET would"
    );
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    assert_eq!(client.get("/api/204").status, 204);
    let not_modified = client.get("/api/304");
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.header("etag"), Some("\"x\""));
    assert_eq!(client.get("/echo?name=B").text(), "Hi, B!");
    assert_eq!(backend.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn pipelined_requests_come_back_in_order() {
    let backend = Backend::start(|request| {
        let path = request.line().split(' ').nth(1).unwrap_or("").to_string();
        (ok(&path), false)
    });
    let server = proxy_to(backend.addr, "");
    let mut client = server.client();
    let batch: String = (0..8)
        .map(|i| format!("GET /api/{i} HTTP/1.1\r\nHost: t\r\n\r\n"))
        .chain(std::iter::once(
            "GET /echo?name=Z HTTP/1.1\r\nHost: t\r\n\r\n".into(),
        ))
        .collect();
    client.send(batch);
    for i in 0..8 {
        assert_eq!(client.response().text(), format!("/api/{i}"));
    }
    assert_eq!(client.response().text(), "Hi, Z!");
}

#[test]
fn a_large_answer_passes_through_to_a_slow_reader() {
    const SIZE: usize = 8 << 20;
    let backend = Backend::start(|_| {
        let mut answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n").into_bytes();
        answer.extend((0..SIZE).map(|i| (i % 251) as u8));
        (answer, false)
    });
    let server = proxy_to(backend.addr, "");
    let mut stream = connect(server.addr);
    stream
        .write_all(b"GET /api/big HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    thread::sleep(Duration::from_millis(300));
    let (_, body) = read_any(&mut stream);
    assert_eq!(body.len(), SIZE);
    assert!(body.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
}

#[test]
fn the_binary_proxies_with_the_proxy_flag() {
    let backend = Backend::start(|_| (ok("from the flag"), false));
    let url = format!("/=http://{}", backend.addr);
    let percore = Percore::spawn(&["--port", "0", "--proxy", &url, "--cores", "0"]);
    let mut client = Client::connect(percore.addr.parse().expect("an address"));
    let response = client.get("/anything");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "from the flag");
    assert_eq!(backend.seen()[0].line(), "GET /anything HTTP/1.1");
}

#[test]
fn proxy_configuration_mistakes_are_one_line_errors() {
    for (toml, expected) in [
        (
            "[[proxy]]\npath = \"/x/\"\nupstream = \"nope\"\n",
            "names no [[upstream]]",
        ),
        (
            "[[upstream]]\nname = \"a\"\nservers = [\"https://127.0.0.1:1\"]\ntls_ca = \"/no/such/ca.pem\"\n",
            "upstream[0].tls_ca",
        ),
        ("[[upstream]]\nname = \"a\"\nservers = []\n", "at least one server"),
        (
            "[[upstream]]\nname = \"a\"\nservers = [\"127.0.0.1:1\"]\n[[proxy]]\npath = \"x\"\nupstream = \"a\"\n",
            "starting with /",
        ),
    ] {
        let error = Config::from_toml(toml, "test").unwrap_err().to_string();
        assert!(error.contains(expected), "{toml}: {error}");
    }
}

#[test]
fn smuggling_attempts_reach_the_backend_once_with_one_framing_or_not_at_all() {
    let backend = Backend::start(|_| (ok("seen"), false));
    let server = proxy_to(backend.addr, "");
    for attack in [
        // CL.TE and TE.CL: both framings at once.
        "POST /api/a HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
        "POST /api/a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
        // TE.TE: a coding that is not chunked last, an obfuscated one.
        "POST /api/a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        "POST /api/a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        // Bare LF inside the chunked coding, obs-fold in a field.
        "POST /api/a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
        "GET /api/a HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n b\r\n\r\n",
        // Two lengths.
        "POST /api/a HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    ] {
        let mut stream = connect(server.addr);
        stream.write_all(attack.as_bytes()).unwrap();
        // Then a request of its own on the same connection, if it is still open.
        let _ = stream.write_all(b"GET /api/after HTTP/1.1\r\nHost: t\r\n\r\n");
        let mut got = Vec::new();
        let _ = stream.read_to_end(&mut got);
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 400") || text.starts_with("HTTP/1.1 501"), "{attack:?} got {text}");
    }
    // None of them reached the backend: each was refused before it was forwarded.
    assert!(backend.seen().is_empty(), "{:?}", backend.seen());
    // And a chunked request percore accepts is forwarded once, with one framing.
    let mut client = server.client();
    client.send("POST /api/ok HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    assert_eq!(client.response().text(), "seen");
    let seen = backend.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].fields("content-length"), ["3"]);
    assert!(seen[0].fields("transfer-encoding").is_empty());
    assert_eq!(seen[0].body, b"abc");
}

#[test]
fn a_backend_on_a_unix_socket() {
    let dir = std::env::temp_dir().join(format!("percore-proxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("backend.sock");
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let served = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&chunk[..n]);
        }
        stream.write_all(&ok("over unix")).unwrap();
        String::from_utf8_lossy(&buf).into_owned()
    });
    let server = proxy_to_server(&format!("unix:{}", path.display()), "");
    let mut client = server.client();
    assert_eq!(client.get("/api/u").text(), "over unix");
    assert!(served
        .join()
        .unwrap()
        .starts_with("GET /api/u HTTP/1.1\r\n"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn requests_take_turns_and_a_failed_server_is_left_out() {
    let a = Backend::start(|_| (ok("a"), false));
    let b = Backend::start(|_| (ok("b"), false));
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let toml = format!(
        "[[upstream]]\nname = \"app\"\nservers = [\"{}\", \"{}\", \"{dead}\"]\nmax_fails = 1\nfail_timeout_ms = 60000\n\
         [[proxy]]\npath = \"/api/\"\nupstream = \"app\"\n",
        a.addr, b.addr
    );
    let server = with_toml(&toml);
    let mut client = server.client();
    let answers: Vec<String> = (0..12).map(|_| client.get("/api/t").text()).collect();
    // Every request was answered (the dead server's turn went to another), and both live
    // servers took turns.
    assert!(answers.iter().all(|x| x == "a" || x == "b"), "{answers:?}");
    let (na, nb) = (a.seen().len(), b.seen().len());
    assert_eq!(na + nb, 12);
    assert!(na >= 4 && nb >= 4, "round robin: a {na}, b {nb}");
}

#[test]
fn the_access_log_line_of_a_proxied_request_counts_its_whole_body() {
    let body = "x".repeat(100_000);
    let answer = format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let backend = Backend::start(move |_| (answer.clone().into_bytes(), false));
    let dir = std::env::temp_dir().join(format!("percore-proxy-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("access.log");
    let toml = format!(
        "[[upstream]]\nname = \"app\"\nservers = [\"{}\"]\n[[proxy]]\npath = \"/api/\"\nupstream = \"app\"\n",
        backend.addr
    );
    let parsed = Config::from_toml(&toml, "test").unwrap();
    let path = log.clone();
    let server = TestServer::with(move |config| {
        config.upstream = parsed.upstream;
        config.proxy = parsed.proxy;
        config.log.access = path;
    });
    let mut stream = connect(server.addr);
    stream
        .write_all(b"GET /api/logged HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let (_, got) = read_any(&mut stream);
    assert_eq!(got.len(), 100_000);
    let mut line = String::new();
    wait_until("the access log line", Duration::from_secs(10), || {
        line = std::fs::read_to_string(&log).unwrap_or_default();
        line.contains("/api/logged")
    });
    let bytes: u64 = line
        .split("\" 200 ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no status and bytes in {line:?}"));
    assert!(bytes > 100_000, "the line counts the body relayed: {line}");
    let upstream = format!(
        " upstream={} upstream_status=200 upstream_time_us=",
        backend.addr
    );
    assert!(line.contains(&upstream), "the upstream's fields: {line}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Answers `GET /echo?name=X` as percore's own route does.
fn echo_like(request: &Request) -> (Vec<u8>, bool) {
    let name = request
        .line()
        .split(' ')
        .nth(1)
        .and_then(|target| target.split_once("name="))
        .map_or("", |(_, name)| name);
    (ok(&format!("Hi, {name}!")), false)
}

/// A reload (SIGHUP) that moves `/echo` from one backend to another, under a keep-alive
/// client and a client opening a connection per request: none of their requests fails, and
/// the new backend takes the traffic.
#[test]
fn a_reload_moves_the_traffic_to_a_changed_upstream_losing_no_request() {
    let first = Backend::start(echo_like);
    let second = Backend::start(echo_like);
    let file =
        std::env::temp_dir().join(format!("percore-proxy-reload-{}.toml", std::process::id()));
    let write = |backend: SocketAddr| {
        let text = format!(
            "[server]\nport = 0\ncores = [0]\ndrain_idle_grace_ms = 500\n[report]\ninterval_ms = 0\n\
             [[upstream]]\nname = \"echo\"\nservers = [\"{backend}\"]\n\
             [[proxy]]\npath = \"/echo\"\nupstream = \"echo\"\n"
        );
        std::fs::write(&file, text).unwrap();
    };
    write(first.addr);
    let mut server = Percore::spawn(&["--config", file.to_str().unwrap()]);
    let addr: SocketAddr = server.addr.parse().unwrap();
    let load = clients::Load::new();
    let _stop = clients::StopOnDrop(load.clone());
    let runners = [
        clients::keep_alive_client(addr, load.clone()),
        clients::new_connection_client(addr, load.clone()),
    ];
    load.wait_for_answers(50, "the clients run through the first backend");
    write(second.addr);
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    let note = server
        .stderr
        .find("the note on the reload", |line| line.contains("SIGHUP"));
    assert!(note.contains("reloaded"), "{note}");
    wait_until(
        "the second backend takes requests",
        Duration::from_secs(20),
        || second.seen().len() >= 50,
    );
    let before = first.seen().len();
    load.wait_for_answers(100, "the clients run on after the reload");
    assert_eq!(
        first.seen().len(),
        before,
        "the old upstream gets nothing more"
    );
    load.stop();
    for runner in runners {
        let tally = runner.join().unwrap();
        assert!(tally.failures.is_empty(), "failures: {:?}", tally.failures);
        assert!(tally.ok > 0);
    }
    server.stop_with(libc::SIGTERM);
    let _ = std::fs::remove_file(&file);
}

#[test]
fn stats_and_metrics_show_the_upstreams_latency_and_counts() {
    let backend = Backend::start(|_| (ok("timed"), false));
    let server = proxy_to(backend.addr, "");
    let mut client = server.client();
    for _ in 0..5 {
        assert_eq!(client.get("/api/t").text(), "timed");
    }
    let mut stats = String::new();
    wait_until(
        "/stats counts the proxied requests",
        Duration::from_secs(10),
        || {
            stats = client.get("/stats").text();
            stats.contains("\"upstream_latency_us\":{\"count\":5,")
        },
    );
    assert!(stats.contains("\"requests\":5"), "{stats}");
    assert!(stats.contains("\"connects\":1"), "{stats}");
    let metrics = client.get("/metrics").text();
    assert!(
        metrics.contains("percore_upstream_duration_seconds_count{core=\"0\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("percore_upstream_requests_total{core=\"0\"} 5"),
        "{metrics}"
    );
    // Per server: requests, responses by class, connections opened and reused.
    let servers = format!(
        "{{\"upstream\":\"app\",\"server\":\"{}\",\"requests\":5,\"responses\":{{\"1xx\":0,\"2xx\":5,\
         \"3xx\":0,\"4xx\":0,\"5xx\":0}},\"connects\":1,\"reused\":4,\"failures\":0,\"retries\":0,\
         \"marked_down\":0}}",
        backend.addr
    );
    assert!(stats.contains(&servers), "{stats}");
    let series = format!(
        "percore_upstream_server_reused_total{{core=\"0\",upstream=\"app\",server=\"{}\"}} 4",
        backend.addr
    );
    assert!(metrics.contains(&series), "{metrics}");
    let series = format!(
        "percore_upstream_server_responses_total{{core=\"0\",upstream=\"app\",server=\"{}\",class=\"2xx\"}} 5",
        backend.addr
    );
    assert!(metrics.contains(&series), "{metrics}");
}

#[test]
fn a_failing_server_is_counted_and_marked_down() {
    let dead = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let backend = Backend::start(|_| (ok("up"), false));
    let server = with_toml(&format!(
        "[[upstream]]\nname = \"app\"\nservers = [\"{dead}\", \"{}\"]\nmax_fails = 1\n\
         fail_timeout_ms = 60000\n[[proxy]]\npath = \"/api/\"\nupstream = \"app\"\n",
        backend.addr
    ));
    let mut client = server.client();
    for _ in 0..4 {
        assert_eq!(client.get("/api/x").text(), "up");
    }
    let mut stats = String::new();
    let dead_entry = format!(
        "{{\"upstream\":\"app\",\"server\":\"{dead}\",\"requests\":1,\"responses\":{{\"1xx\":0,\"2xx\":0,\
         \"3xx\":0,\"4xx\":0,\"5xx\":0}},\"connects\":1,\"reused\":0,\"failures\":1,\"retries\":1,\
         \"marked_down\":1}}"
    );
    wait_until(
        "/stats counts the dead server",
        Duration::from_secs(10),
        || {
            stats = client.get("/stats").text();
            stats.contains(&dead_entry)
        },
    );
    let live = format!("\"server\":\"{}\",\"requests\":4,", backend.addr);
    assert!(stats.contains(&live), "{stats}");
}

#[test]
fn an_http_1_0_client_gets_a_chunked_answer_up_to_the_close_and_expect_is_percores() {
    let backend = Backend::start(|request| {
        if request.line().contains("/api/chunked") {
            let answer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nold \r\n6\r\nclient\r\n0\r\n\r\n";
            (answer.as_bytes().to_vec(), false)
        } else {
            (ok(&format!("{} bytes", request.body.len())), false)
        }
    });
    let server = proxy_to(backend.addr, "");
    let mut stream = connect(server.addr);
    stream
        .write_all(b"GET /api/chunked HTTP/1.0\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        !text.to_ascii_lowercase().contains("transfer-encoding"),
        "{text}"
    );
    assert!(text.contains("Connection: close\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nold client"), "{text}");

    let mut client = server.client();
    client.send(
        "POST /api/upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    );
    let interim = client.response();
    assert_eq!(interim.status, 100);
    client.send("hello");
    assert_eq!(client.response().text(), "5 bytes");
    let seen = backend.seen();
    let upload = seen
        .iter()
        .find(|r| r.line().contains("/api/upload"))
        .unwrap();
    assert!(upload.fields("expect").is_empty(), "{}", upload.head);
    assert_eq!(upload.body, b"hello");
}

/// The run's report keeps the upstream servers' latencies apart: `upstream.hgrm`, a curve
/// of its own in `latency.svg`, and the summary's upstream rows.
#[test]
fn the_report_shows_where_the_time_went() {
    let backend = Backend::start(|_| (ok("r"), false));
    let dir = std::env::temp_dir().join(format!("percore-proxy-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let toml = format!(
        "[[upstream]]\nname = \"app\"\nservers = [\"{}\"]\n[[proxy]]\npath = \"/api/\"\nupstream = \"app\"\n",
        backend.addr
    );
    let parsed = Config::from_toml(&toml, "test").unwrap();
    let report = dir.clone();
    let mut server = TestServer::with(move |config| {
        config.upstream = parsed.upstream;
        config.proxy = parsed.proxy;
        config.report.dir = report;
    });
    let mut client = server.client();
    for _ in 0..20 {
        assert_eq!(client.get("/api/r").text(), "r");
    }
    drop(client);
    let summary = server.server.take().unwrap().shutdown();
    let upstream = summary
        .merged_upstream_latency()
        .expect("upstream latencies");
    assert_eq!(upstream.len(), 20);
    assert_eq!(
        summary.cores[0].upstream_latency.as_ref().map(|h| h.len()),
        Some(20)
    );
    let hgrm = std::fs::read_to_string(dir.join("upstream.hgrm")).expect("upstream.hgrm");
    assert!(hgrm.contains("Total count    =           20"), "{hgrm}");
    if let Ok(svg) = std::fs::read_to_string(dir.join("latency.svg")) {
        // With the `plots` feature (the default): the curve is named in the legend.
        let legend: Vec<&str> = svg.lines().map(str::trim).collect();
        assert!(legend.contains(&"upstream"), "{svg}");
        // And per interval in the timeline, beside the clients' latencies.
        let timeline = std::fs::read_to_string(dir.join("timeline.svg")).expect("timeline.svg");
        let lines: Vec<&str> = timeline.lines().map(str::trim).collect();
        assert!(lines.contains(&"upstream p99"), "{timeline}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn forwarded_is_sent_when_asked_after_the_clients_own() {
    let backend = Backend::start(|_| (ok("f"), false));
    let server = with_toml(&format!(
        "[[upstream]]\nname = \"app\"\nservers = [\"{}\"]\n\
         [[proxy]]\npath = \"/api/\"\nupstream = \"app\"\nforwarded = true\n\
         [[proxy]]\npath = \"/plain/\"\nupstream = \"app\"\n",
        backend.addr
    ));
    let mut client = server.client();
    client.send(
        "GET /api/f HTTP/1.1\r\nHost: example.com:8080\r\nForwarded: for=192.0.2.60;proto=https\r\n\r\n",
    );
    assert_eq!(client.response().text(), "f");
    client.send("GET /api/g HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(client.response().text(), "f");
    client.send("GET /plain/h HTTP/1.1\r\nHost: t\r\nForwarded: for=unknown\r\n\r\n");
    assert_eq!(client.response().text(), "f");
    let seen = backend.seen();
    assert_eq!(
        seen[0].fields("forwarded"),
        ["for=192.0.2.60;proto=https, for=127.0.0.1;proto=http;host=\"example.com:8080\""]
    );
    assert_eq!(
        seen[1].fields("forwarded"),
        ["for=127.0.0.1;proto=http;host=example.com"]
    );
    // Not asked for on this route: the client's own field passes as it came, nothing added.
    assert_eq!(seen[2].fields("forwarded"), ["for=unknown"]);
}

#[test]
fn a_pooled_connection_past_its_lifetime_is_replaced_without_a_failure() {
    let backend = Backend::start(|_| (ok("l"), false));
    let server = proxy_to(backend.addr, "keepalive_time_ms = 300");
    let mut client = server.client();
    let mut sent = 0;
    wait_until(
        "a second upstream connection",
        Duration::from_secs(10),
        || {
            assert_eq!(client.get("/api/l").text(), "l");
            sent += 1;
            backend.connections.load(Ordering::SeqCst) >= 2
        },
    );
    assert_eq!(backend.seen().len(), sent, "every request went once");
}
