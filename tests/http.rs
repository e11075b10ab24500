//! HTTP/1.1 behaviour over real sockets. (What the binary's `/echo` answers is tested
//! through the binary, in `routes.rs`.)

mod common;

use std::io::Write;

use common::TestServer;

#[test]
fn request_split_byte_by_byte_is_answered() {
    let server = TestServer::start();
    let mut client = server.client();
    for byte in b"GET /echo?name=slow HTTP/1.1\r\nHost: t\r\n\r\n" {
        client.send([*byte]);
    }
    assert_eq!(client.response().text(), "Hi, slow!");
}

#[test]
fn hundred_pipelined_requests_in_one_write_are_answered_in_order() {
    let server = TestServer::start();
    let mut client = server.client();
    let batch: String = (0..100)
        .map(|i| format!("GET /echo?name=r{i} HTTP/1.1\r\nHost: t\r\n\r\n"))
        .collect();
    client.send(batch);
    for i in 0..100 {
        assert_eq!(client.response().text(), format!("Hi, r{i}!"));
    }
}

#[test]
fn many_pipelined_requests_beyond_one_batch_all_arrive() {
    let server = TestServer::start();
    let mut client = server.client();
    let batch: String = (0..3000)
        .map(|i| format!("GET /echo?name={i} HTTP/1.1\r\nHost: t\r\n\r\n"))
        .collect();
    let mut writer = client.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(batch.as_bytes()).unwrap());
    for i in 0..3000 {
        assert_eq!(client.response().text(), format!("Hi, {i}!"));
    }
    sender.join().unwrap();
}

#[test]
fn http10_closes_unless_keep_alive_is_asked_for() {
    let server = TestServer::start();
    let mut client = server.client();
    client.send("GET /echo?name=a HTTP/1.0\r\n\r\n");
    let response = client.response();
    assert_eq!(response.text(), "Hi, a!");
    assert_eq!(response.header("connection"), Some("close"));
    assert!(client.is_closed());

    let mut client = server.client();
    for name in ["b", "c"] {
        client.send(format!(
            "GET /echo?name={name} HTTP/1.0\r\nConnection: keep-alive\r\nHost: x\r\n\r\n"
        ));
        let response = client.response();
        assert_eq!(response.text(), format!("Hi, {name}!"));
        assert_eq!(response.header("connection"), Some("keep-alive"));
    }
}

#[test]
fn http11_connection_close_is_honoured() {
    let server = TestServer::start();
    let mut client = server.client();
    client.send("GET /echo?name=a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let response = client.response();
    assert_eq!(response.header("connection"), Some("close"));
    assert!(client.is_closed());
}

#[test]
fn head_has_the_get_fields_and_no_body() {
    let server = TestServer::start();
    let mut client = server.client();
    client.send("HEAD /echo?name=Abcde HTTP/1.1\r\nHost: t\r\n\r\n");
    let response = client.head_response();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-length"), Some("10"));
    // The next response starts right after the head: no body bytes were sent.
    assert_eq!(client.get("/echo?name=next").text(), "Hi, next!");
}

#[test]
fn unknown_path_is_404_and_other_methods_405_with_allow() {
    let server = TestServer::start();
    let mut client = server.client();
    assert_eq!(client.get("/nope").status, 404);
    assert_eq!(client.get("/echo/").status, 404);
    client.send("DELETE /echo?name=a HTTP/1.1\r\nHost: t\r\n\r\n");
    let response = client.response();
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET, HEAD, OPTIONS"));
    client.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(client.response().status, 405);
    // The body was consumed: the connection is still in sync.
    assert_eq!(client.get("/echo?name=z").text(), "Hi, z!");
}

#[test]
fn options_lists_the_allowed_methods() {
    let server = TestServer::start();
    let mut client = server.client();
    client.send("OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n");
    let response = client.head_response();
    assert_eq!(response.status, 204);
    assert_eq!(response.header("allow"), Some("GET, HEAD, OPTIONS"));
    assert_eq!(client.get("/echo?name=o").text(), "Hi, o!");
}

#[test]
fn absolute_form_target_is_accepted() {
    let server = TestServer::start();
    let mut client = server.client();
    client.send("GET http://example.com/echo?name=abs HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(client.response().text(), "Hi, abs!");
}

#[test]
fn content_length_and_chunked_bodies_keep_the_connection_in_sync() {
    let server = TestServer::start();
    let mut client = server.client();
    client.send(
        "POST /echo?name=a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
         4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nTrailer-Field: x\r\n\r\n\
         GET /echo?name=after HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(client.response().status, 405);
    assert_eq!(client.response().text(), "Hi, after!");

    // A body split across writes, byte by byte.
    client.send("PUT /nowhere HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n");
    for byte in b"hello world" {
        client.send([*byte]);
    }
    assert_eq!(client.response().status, 404);
    assert_eq!(client.get("/echo?name=b").text(), "Hi, b!");
}

#[test]
fn expect_100_continue_gets_an_interim_response() {
    let server = TestServer::start();
    let mut client = server.client();
    client
        .send("PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(client.response().status, 100);
    client.send("data");
    assert_eq!(client.response().status, 405);
}

#[test]
fn max_requests_per_connection_closes_politely() {
    let server = TestServer::with(|c| c.http.max_requests_per_connection = 2);
    let mut client = server.client();
    let first = client.get("/echo?name=1");
    assert_eq!(first.header("connection"), None);
    let second = client.get("/echo?name=2");
    assert_eq!(second.text(), "Hi, 2!");
    assert_eq!(second.header("connection"), Some("close"));
    assert!(client.is_closed());
}

/// Sends `request` on a new connection and checks the status and that the server closes.
fn assert_refused(server: &TestServer, request: &[u8], status: u16) {
    let mut client = server.client();
    client.send(request);
    let response = client.response();
    assert_eq!(
        response.status,
        status,
        "{:?}",
        String::from_utf8_lossy(&request[..request.len().min(200)])
    );
    assert_eq!(response.header("connection"), Some("close"));
    assert!(client.is_closed(), "{:?}", String::from_utf8_lossy(request));
}

#[test]
fn malformed_requests_are_400_and_close() {
    let server = TestServer::start();
    let cases: &[&[u8]] = &[
        b"GET /echo?name=a HTTP/1.1\r\n\r\n",
        b"GET /echo?name=a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /echo?name=a HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"GET /echo?name=a HTTP/1.1\r\nHost : a\r\n\r\n",
        b"GET /echo?name=a HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n b\r\n\r\n",
        b"GET /echo?name=a HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n",
        b"GET /echo?name=a HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
        b"GET  /echo HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET echo HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /echo HTTP/1.1 extra\r\nHost: a\r\n\r\n",
        b"GET /echo HTTP/x\r\nHost: a\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc",
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n",
    ];
    for request in cases {
        assert_refused(&server, request, 400);
    }
}

#[test]
fn each_limit_has_its_status() {
    let server = TestServer::with(|c| {
        c.http.max_body_bytes = 1000;
        c.http.max_headers = 10;
        c.http.max_request_head_bytes = 4096;
        c.http.max_target_bytes = 1000;
    });
    assert_refused(
        &server,
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n",
        413,
    );
    let big_chunks = format!(
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n200\r\n{0}\r\n200\r\n{0}\r\n0\r\n\r\n",
        "x".repeat(0x200)
    );
    assert_refused(&server, big_chunks.as_bytes(), 413);
    let long_target = format!(
        "GET /echo?name={} HTTP/1.1\r\nHost: a\r\n\r\n",
        "a".repeat(1000)
    );
    assert_refused(&server, long_target.as_bytes(), 414);
    let endless_line = format!("GET /{}", "a".repeat(5000));
    assert_refused(&server, endless_line.as_bytes(), 414);
    let huge_header = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "v".repeat(5000)
    );
    assert_refused(&server, huge_header.as_bytes(), 431);
    let many: String = (0..11).map(|i| format!("X-{i}: v\r\n")).collect();
    let many_headers = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
    assert_refused(&server, many_headers.as_bytes(), 431);
}

#[test]
fn unsupported_features_have_their_status() {
    let server = TestServer::start();
    assert_refused(
        &server,
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: rot13, chunked\r\n\r\n",
        501,
    );
    assert_refused(
        &server,
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        501,
    );
    assert_refused(
        &server,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: a\r\n\r\n",
        501,
    );
    // Any other method token reaches the routes: /echo takes GET only.
    let mut client = server.client();
    let brew = client
        .send(b"BREW /echo HTTP/1.1\r\nHost: a\r\n\r\n")
        .response();
    assert_eq!(brew.status, 405);
    assert_eq!(brew.header("allow"), Some("GET, HEAD, OPTIONS"));
    assert_refused(&server, b"GET /echo HTTP/2.0\r\nHost: a\r\n\r\n", 505);
    assert_refused(&server, b"GET /echo HTTP/0.9\r\nHost: a\r\n\r\n", 505);
    assert_refused(
        &server,
        b"PUT /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: teapot\r\n\r\n",
        417,
    );
}

#[test]
fn error_after_pipelined_good_requests_keeps_their_answers() {
    let server = TestServer::start();
    let mut client = server.client();
    client.send(
        "GET /echo?name=1 HTTP/1.1\r\nHost: t\r\n\r\nGET /echo?name=2 HTTP/1.1\r\nHost: t\r\n\r\nGARBAGE\r\n\r\nGET /echo?name=3 HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(client.response().text(), "Hi, 1!");
    assert_eq!(client.response().text(), "Hi, 2!");
    assert_eq!(client.response().status, 400);
    assert!(client.is_closed());
}

#[test]
fn leading_blank_lines_are_ignored() {
    let server = TestServer::start();
    let mut client = server.client();
    client.send("\r\n\r\nGET /echo?name=blank HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(client.response().text(), "Hi, blank!");
}

#[test]
fn abrupt_disconnects_do_not_disturb_other_clients() {
    let server = TestServer::start();
    for partial in [
        &b"GET /echo?na"[..],
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc",
        b"GET /echo?name=x HTTP/1.1\r\nHost: t\r\n\r\n",
    ] {
        let mut client = server.client();
        client.send(partial);
        // Reset rather than close: SO_LINGER 0.
        let socket = socket2::SockRef::from(&client.stream);
        socket.set_linger(Some(std::time::Duration::ZERO)).unwrap();
        drop(client);
    }
    assert_eq!(server.client().get("/echo?name=ok").text(), "Hi, ok!");
}

#[test]
fn half_closed_client_still_gets_its_response() {
    let server = TestServer::start();
    let mut client = server.client();
    client.send("GET /echo?name=half HTTP/1.1\r\nHost: t\r\n\r\n");
    client.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(client.response().text(), "Hi, half!");
    assert!(client.is_closed());
}

#[test]
fn slow_head_gets_408_and_idle_connection_is_closed() {
    let server = TestServer::with(|c| {
        c.http.header_timeout_ms = 300;
        c.http.keepalive_timeout_ms = 300;
    });
    let mut client = server.client();
    client.send("GET /echo?name=slow HTTP/1.1\r\n");
    let response = client.response();
    assert_eq!(response.status, 408);
    assert!(client.is_closed());

    let mut idle = server.client();
    assert_eq!(idle.get("/echo?name=i").text(), "Hi, i!");
    assert!(idle.is_closed());
}

/// SO_REUSEPORT spreads connections over the cores by a hash of their addresses: with
/// enough connections from distinct source ports, each core gets some and answers them.
#[test]
fn two_cores_serve_the_same_port() {
    const CONNECTIONS: usize = 200;
    let usable = percore::internals::usable_cores();
    if !common::require(
        usable.len() >= 2,
        &format!("needs two usable cores, this process may use {usable:?}: the test did not run"),
    ) {
        return;
    }
    let mut server = TestServer::with(|c| {
        c.server.cores = percore::config::CoreSpec::List(usable[..2].to_vec())
    });
    assert_eq!(server.server.as_ref().unwrap().cores(), &usable[..2]);
    // One request per connection, each from a new source port. The chance that all of them
    // hash to the same core is 2^-199.
    for i in 0..CONNECTIONS {
        let mut client = server.client();
        assert_eq!(
            client.get(&format!("/echo?name={i}")).text(),
            format!("Hi, {i}!")
        );
    }
    let summary = server.server.take().unwrap().shutdown();
    let per_core: Vec<(usize, u64, u64)> = summary
        .cores
        .iter()
        .map(|c| (c.core, c.counters.accepted, c.counters.requests()))
        .collect();
    assert_eq!(
        per_core.iter().map(|c| c.0).collect::<Vec<_>>(),
        &usable[..2]
    );
    for &(core, accepted, requests) in &per_core {
        assert!(
            accepted > 0 && requests == accepted,
            "core {core} accepted {accepted} and answered {requests} (all cores: {per_core:?})"
        );
    }
    let answered: u64 = per_core.iter().map(|c| c.2).sum();
    assert_eq!(answered, CONNECTIONS as u64, "{per_core:?}");
}

#[test]
fn shutdown_closes_idle_connections() {
    let mut server = TestServer::start();
    let mut client = server.client();
    assert_eq!(client.get("/echo?name=a").text(), "Hi, a!");
    server.stop();
    assert!(client.is_closed());
}
