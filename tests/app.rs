//! The library API over real sockets: an [`App`]'s routes, requests, responses, async
//! handlers, per-core state and panics, each served by a real server on 127.0.0.1 port 0.

mod common;

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::serve::{serve, serve_with, start, test_config, Running};
use common::{Client, TempDir};
use percore::config::{Config, CoreSpec};
use percore::internals::usable_cores;
use percore::Version;
use percore::{App, BoxError, Files, Reply, Setup, Status};

/// Sends `request` (which should ask for `Connection: close`) on a fresh connection and
/// returns every byte the server sends until it closes.
fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(request).expect("write");
    let mut out = Vec::new();
    stream
        .read_to_end(&mut out)
        .expect("the server answers and closes within 20 s");
    String::from_utf8_lossy(&out).into_owned()
}

/// How many times the field `name` appears in a response head.
fn count_fields(response: &common::Response, name: &str) -> usize {
    response
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .count()
}

fn routing_app() -> App<()> {
    App::new(|_| Ok(()))
        .get("/hello/{name}", |req, res, _| {
            let name = req.param("name").unwrap_or_default();
            res.text(&format!("Hello, {name}!"));
        })
        .get("/hello/world", |_, res, _| {
            res.text("the literal route");
        })
        .get("/raw/{value}", |req, res, _| {
            let raw = req.param_raw("value").unwrap_or("-");
            let decoded = req.param("value").unwrap_or_default();
            res.text(&format!("{raw}|{decoded}"));
        })
        .get("/pair/{first}/{second}", |req, res, _| {
            let all: Vec<String> = req.params().map(|(n, v)| format!("{n}={v}")).collect();
            res.text(&all.join(","));
        })
        .get("/files/{*rest}", |req, res, _| {
            let rest = req.param("rest").unwrap_or_default();
            res.text(&format!("rest=[{rest}]"));
        })
        .get("/items", |_, res, _| {
            res.text("list");
        })
        .post("/items", |_, res, _| {
            res.text("added");
        })
        .route("PURGE", "/cache/{*key}", |_, res, _| {
            res.status(Status::NO_CONTENT);
        })
}

/// Parameters arrive percent-decoded (and raw on request), a literal route beats a
/// parameter, a catch-all takes its prefix with or without a rest, and what matches nothing
/// is 404.
#[test]
fn routes_take_parameters_and_catch_alls_most_specific_first() {
    let server = serve(routing_app());
    let mut client = server.client();

    let response = client.get("/hello/J%C3%BCrgen");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "Hello, Jürgen!");
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(client.get("/hello/world").text(), "the literal route");
    assert_eq!(client.get("/hello/worlds").text(), "Hello, worlds!");
    assert_eq!(client.get("/raw/a%20b%2Fc").text(), "a%20b%2Fc|a b/c");
    assert_eq!(client.get("/pair/x/y%21").text(), "first=x,second=y!");

    assert_eq!(client.get("/files/a/b.txt").text(), "rest=[a/b.txt]");
    assert_eq!(client.get("/files/").text(), "rest=[]");
    assert_eq!(client.get("/files").text(), "rest=[]");
    // A query is no part of the path a pattern sees.
    assert_eq!(client.get("/files/x?y=/z").text(), "rest=[x]");

    for missing in [
        "/nope",
        "/hello/",
        "/hello",
        "/hello/a/b",
        "/filesx",
        "/items/1",
    ] {
        let response = client.get(missing);
        assert_eq!(response.status, 404, "{missing}");
        assert_eq!(response.header("allow"), None, "{missing}");
    }
    // The connection survived every 404.
    assert_eq!(client.get("/items").text(), "list");
}

/// A path matched without the method is 405 with the exact `Allow` value (HEAD after GET,
/// OPTIONS last); OPTIONS is answered 204 with the same `Allow`, and `OPTIONS *` lists every
/// method the app takes.
#[test]
fn wrong_method_is_405_with_allow_and_options_is_answered() {
    let server = serve(routing_app());
    let mut client = server.client();

    client.send("DELETE /items HTTP/1.1\r\nHost: t\r\n\r\n");
    let response = client.response();
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET, HEAD, POST, OPTIONS"));

    client.send("POST /files/a HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    let response = client.response();
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET, HEAD, OPTIONS"));

    client.send("OPTIONS /items HTTP/1.1\r\nHost: t\r\n\r\n");
    let response = client.response();
    assert_eq!(response.status, 204);
    assert_eq!(response.header("allow"), Some("GET, HEAD, POST, OPTIONS"));
    assert_eq!(response.header("content-length"), None);
    assert!(response.body.is_empty());

    client.send("OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n");
    let response = client.response();
    assert_eq!(response.status, 204);
    let mut all: Vec<&str> = response.header("allow").unwrap().split(", ").collect();
    all.sort_unstable();
    assert_eq!(all, ["GET", "HEAD", "OPTIONS", "POST", "PURGE"]);

    client.send("OPTIONS /nowhere HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(client.response().status, 404);

    // Nothing stray was left on the connection by the bodiless answers.
    assert_eq!(client.get("/hello/again").text(), "Hello, again!");
}

/// HEAD is answered by the GET handler: the same Content-Length, and no body.
#[test]
fn head_is_answered_by_get_without_the_body() {
    let server = serve(routing_app());
    let mut client = server.client();
    client.send("HEAD /hello/x HTTP/1.1\r\nHost: t\r\n\r\n");
    let response = client.head_response();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-length"), Some("9"));
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    // Had the body been sent, it would stand where the next response should.
    assert_eq!(client.get("/hello/y").text(), "Hello, y!");

    client.send("HEAD /items HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(client.head_response().header("content-length"), Some("4"));
    assert_eq!(client.get("/items").text(), "list");
}

/// Any method token reaches the handler routed for it, which sees the token as sent;
/// tokens are case-sensitive, and one not routed is 405.
#[test]
fn any_method_token_reaches_its_handler() {
    let echo = |req: &percore::Request<'_>, res: &mut percore::Response<'_>, _: &()| {
        let id = req.param("id").unwrap_or_default();
        let body = String::from_utf8_lossy(req.body());
        res.text(&format!("{} {id} [{body}]", req.method()));
    };
    let server = serve(
        App::new(|_| Ok(()))
            .put("/m/{id}", echo)
            .delete("/m/{id}", echo)
            .patch("/m/{id}", echo)
            .route("PURGE", "/m/{id}", echo),
    );
    let mut client = server.client();
    for (method, body, expected) in [
        ("PUT", "new", "PUT 1 [new]"),
        ("DELETE", "", "DELETE 1 []"),
        ("PATCH", "delta", "PATCH 1 [delta]"),
        ("PURGE", "", "PURGE 1 []"),
    ] {
        client.send(format!(
            "{method} /m/1 HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
        let response = client.response();
        assert_eq!(response.status, 200, "{method}");
        assert_eq!(response.text(), expected);
    }
    for method in ["GET", "BREW", "purge"] {
        client.send(format!("{method} /m/1 HTTP/1.1\r\nHost: t\r\n\r\n"));
        let response = client.response();
        assert_eq!(response.status, 405, "{method}");
        assert_eq!(
            response.header("allow"),
            Some("PUT, DELETE, PATCH, PURGE, OPTIONS"),
            "{method}"
        );
    }
}

fn inspect(req: &percore::Request<'_>, res: &mut percore::Response<'_>, _: &()) {
    let mut out = String::new();
    writeln!(out, "method={} path={}", req.method(), req.path()).unwrap();
    writeln!(out, "query={}", req.query().unwrap_or("-")).unwrap();
    for (name, value) in req.query_pairs() {
        writeln!(out, "pair [{name}]=[{value}]").unwrap();
    }
    let x = req.query_param("x");
    writeln!(out, "x={}", x.as_deref().unwrap_or("-")).unwrap();
    let missing = req.query_param("nope");
    writeln!(out, "nope={}", missing.as_deref().unwrap_or("-")).unwrap();
    writeln!(out, "custom={}", req.header("x-CUSTOM").unwrap_or("-")).unwrap();
    writeln!(out, "multi={}", req.header("x-multi").unwrap_or("-")).unwrap();
    let values: Vec<String> = req
        .header_values("X-MULTI")
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    writeln!(out, "multi values={}", values.join(",")).unwrap();
    writeln!(out, "pad=[{}]", req.header("x-pad").unwrap_or("-")).unwrap();
    let fields: Vec<String> = req
        .headers()
        .map(|(n, v)| format!("{n}={}", String::from_utf8_lossy(v)))
        .collect();
    writeln!(out, "fields={}", fields.join("|")).unwrap();
    let peer = req.peer_addr().map(|a| a.to_string());
    writeln!(out, "peer={}", peer.as_deref().unwrap_or("-")).unwrap();
    res.text(&out);
}

/// A handler sees the query decoded as a form, header fields by any case (one occurrence)
/// and all of them in order, and its client's address.
#[test]
fn request_accessors_see_query_headers_and_peer() {
    let server = serve(App::new(|_| Ok(())).get("/inspect", inspect));
    let mut client = server.client();
    client.send(
        "GET /inspect?a+b%21=c%26d&flag&x=1&x=2&&e=%zz HTTP/1.1\r\nHost: t\r\n\
         X-Custom: one\r\nx-multi: a\r\nX-Multi: b\r\nX-Pad:   padded   \r\n\r\n",
    );
    let response = client.response();
    assert_eq!(response.status, 200);
    let peer = client.stream.local_addr().unwrap();
    let expected = format!(
        "method=GET path=/inspect\n\
         query=a+b%21=c%26d&flag&x=1&x=2&&e=%zz\n\
         pair [a b!]=[c&d]\n\
         pair [flag]=[]\n\
         pair [x]=[1]\n\
         pair [x]=[2]\n\
         pair [e]=[%zz]\n\
         x=1\n\
         nope=-\n\
         custom=one\n\
         multi=-\n\
         multi values=a,b\n\
         pad=[padded]\n\
         fields=Host=t|X-Custom=one|x-multi=a|X-Multi=b|X-Pad=padded\n\
         peer={peer}\n"
    );
    assert_eq!(response.text(), expected);

    client.send("GET /inspect HTTP/1.1\r\nHost: t\r\n\r\n");
    let text = client.response().text();
    assert!(text.contains("query=-\n"), "{text}");
    assert!(text.contains("fields=Host=t\n"), "{text}");
}

/// `version()` tells HTTP/1.0 from 1.1; an HTTP/1.0 client that asks for keep-alive gets
/// it (and its connection stays open), one that does not is closed.
#[test]
fn request_version_and_http10_keep_alive() {
    let server = serve(App::new(|_| Ok(())).get("/version", |req, res, _| {
        res.text(match req.version() {
            Version::Http10 => "1.0",
            Version::Http11 => "1.1",
            // `Version` may grow (it is `#[non_exhaustive]`).
            _ => "other",
        });
    }));
    let mut client = server.client();
    client.send("GET /version HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let response = client.response();
    assert_eq!(response.text(), "1.0");
    assert_eq!(response.header("connection"), Some("keep-alive"));
    client.send("GET /version HTTP/1.1\r\nHost: t\r\n\r\n");
    let response = client.response();
    assert_eq!(response.text(), "1.1");
    assert_eq!(response.header("connection"), None);

    let mut client = server.client();
    client.send("GET /version HTTP/1.0\r\n\r\n");
    let response = client.response();
    assert_eq!(response.text(), "1.0");
    assert_eq!(response.header("connection"), Some("close"));
    assert!(client.is_closed());
}

/// An app that echoes request bodies, with `http.max_body_bytes` = 1024.
fn body_server() -> Running {
    serve_with(
        App::new(|_| Ok(())).post("/echo", |req, res, _| {
            res.header("X-Len", &req.body().len().to_string()).unwrap();
            res.body(req.body());
        }),
        |c| c.http.max_body_bytes = 1024,
    )
}

/// A POST of `text` to `target`, chunked: chunks of `size` bytes with extensions on each
/// size line, and a trailer section.
fn chunked_request(target: &str, text: &[u8], size: usize) -> Vec<u8> {
    let mut out =
        format!("POST {target} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
            .into_bytes();
    for (i, chunk) in text.chunks(size).enumerate() {
        out.extend_from_slice(format!("{:X};ext={i};q=\"a b\"\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0;last\r\nTrailer-One: x\r\nTrailer-Two: y\r\n\r\n");
    out
}

/// A Content-Length body reaches the handler whole, sent in one write or byte by byte.
#[test]
fn content_length_body_arrives_whole_however_it_is_split() {
    let server = body_server();
    let mut client = server.client();
    client.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world");
    let response = client.response();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "hello world");

    let request =
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 26\r\n\r\nabcdefghijklmnopqrstuvwxyz";
    for byte in request {
        client.send([*byte]);
    }
    assert_eq!(client.response().text(), "abcdefghijklmnopqrstuvwxyz");
}

/// A chunked body (extensions, trailers) reaches the handler decoded and whole, split at
/// any point and byte by byte.
#[test]
fn chunked_body_arrives_decoded_split_anywhere() {
    let server = body_server();
    let mut client = server.client();
    let text = b"the quick brown fox jumps over the lazy dog";
    let request = chunked_request("/echo", text, 7);
    for split in 1..request.len() {
        client.send(&request[..split]);
        client.send(&request[split..]);
        let response = client.response();
        assert_eq!(response.status, 200, "split at {split}");
        assert_eq!(response.body, text, "split at {split}");
        assert_eq!(response.header("x-len"), Some("43"), "split at {split}");
    }
    for byte in &request {
        client.send([*byte]);
    }
    assert_eq!(client.response().body, text);
}

/// A request without a body, or with an empty one, gives the handler an empty body.
#[test]
fn empty_bodies_are_empty() {
    let server = body_server();
    let mut client = server.client();
    for request in [
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: t\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ] {
        client.send(request);
        let response = client.response();
        assert_eq!(response.status, 200, "{request:?}");
        assert_eq!(response.header("x-len"), Some("0"), "{request:?}");
        assert!(response.body.is_empty(), "{request:?}");
    }
}

/// A body of exactly `http.max_body_bytes` is accepted; one byte more is 413 and closes,
/// whether it is framed by Content-Length or chunked.
#[test]
fn body_limit_is_inclusive_and_one_byte_over_is_413() {
    let server = body_server();
    let full: Vec<u8> = (0..1024).map(|i| b'a' + (i % 26) as u8).collect();

    let mut client = server.client();
    client.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1024\r\n\r\n");
    client.send(&full);
    let response = client.response();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, full);
    client.send(chunked_request("/echo", &full, 1000));
    let response = client.response();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, full);

    let mut client = server.client();
    client.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1025\r\n\r\n");
    let response = client.response();
    assert_eq!(response.status, 413);
    assert_eq!(response.header("connection"), Some("close"));
    assert!(client.is_closed());

    let over: Vec<u8> = [full.as_slice(), b"z"].concat();
    let mut client = server.client();
    client.send(chunked_request("/echo", &over, 1000));
    let response = client.response();
    assert_eq!(response.status, 413);
    assert_eq!(response.header("connection"), Some("close"));
    assert!(client.is_closed());
}

/// Several POSTs with bodies (both framings) in one write are each answered with their own
/// body, in order.
#[test]
fn pipelined_posts_with_bodies_are_answered_in_order() {
    let server = body_server();
    let mut client = server.client();
    let mut batch = Vec::new();
    for i in 0..6 {
        let body = format!("body number {i}");
        if i % 2 == 0 {
            batch.extend_from_slice(
                format!(
                    "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        } else {
            batch.extend_from_slice(&chunked_request("/echo", body.as_bytes(), 4));
        }
    }
    client.send(batch);
    for i in 0..6 {
        assert_eq!(client.response().text(), format!("body number {i}"));
    }
}

fn responses_app() -> App<()> {
    App::new(|_| Ok(()))
        .post("/things", |_, res, _| {
            res.status(Status::CREATED)
                .header("Location", "/things/7")
                .unwrap()
                .text("made\n");
        })
        .get("/odd", |_, res, _| {
            res.status(Status::new(299).unwrap()).text("odd");
        })
        .get("/reason", |_, res, _| {
            res.status(Status::PAYMENT_REQUIRED)
                .reason("Pay Up")
                .unwrap()
                .text("pay");
        })
        .get("/empty", |_, res, _| {
            res.status(Status::NO_CONTENT).text("never sent");
        })
        .get("/inject", |_, res, _| {
            let refused = [
                res.header("X-Split", "a\r\nSet-Cookie: evil=1").err(),
                res.header("X-Lf", "a\nInjected: 1").err(),
                res.header("X-Cr", "a\rInjected: 1").err(),
                res.header("X-Nul", "a\0b").err(),
                res.header("X-Del", "a\x7fb").err(),
                res.header("Bad Name", "v").err(),
                res.header("X-Name\r\nInjected", "v").err(),
                res.header("", "v").err(),
                res.reason("OK\r\nInjected: 1").err(),
                res.header("X-Fine", "tab\there").err(),
            ];
            res.text(&format!("{refused:?}"));
        })
        .get("/reserved", |_, res, _| {
            let refused = [
                res.header("Content-Length", "5").err(),
                res.header("transfer-encoding", "chunked").err(),
                res.header("CONNECTION", "keep-alive").err(),
            ];
            res.text(&format!("{refused:?}"));
        })
        .get("/server", |_, res, _| {
            res.header("Server", "mine/1.0").unwrap();
            res.header("Date", "Thu, 01 Jan 1970 00:00:00 GMT").unwrap();
            res.text("own fields");
        })
        .get("/static", |_, res, _| {
            res.body_static(b"static bytes\n");
        })
        .get("/long", |_, res, _| {
            res.text("a long body that must not leak into the next response");
        })
        .get("/built", |_, res, _| {
            write!(res.body_mut(), "{}-{}", 1, 2).unwrap();
        })
        .get("/hints", |_, res, _| {
            let refused = [
                res.interim(Status::OK, &[]).err(),
                res.interim(Status::SWITCHING_PROTOCOLS, &[]).err(),
                res.interim(Status::EARLY_HINTS, &[("Link", "a\r\nInjected: 1")])
                    .err(),
            ];
            res.header("X-Before", "1").unwrap();
            res.interim(
                Status::EARLY_HINTS,
                &[("Link", "</style.css>; rel=preload; as=style")],
            )
            .unwrap();
            res.header("X-After", "2").unwrap();
            res.text(&format!("{refused:?}"));
        })
        .get("/close", |_, res, _| {
            res.close().text("bye");
        })
}

/// A handler sets the status (registered or not, with its own reason phrase), fields and
/// body; percore writes the framing.
#[test]
fn handlers_set_status_fields_and_reason() {
    let server = serve(responses_app());
    let mut client = server.client();

    client.send("POST /things HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    let response = client.response();
    assert_eq!(response.status, 201);
    assert_eq!(response.header("location"), Some("/things/7"));
    assert_eq!(response.text(), "made\n");

    let wire = exchange(
        server.addr,
        b"GET /odd HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(wire.starts_with("HTTP/1.1 299 \r\n"), "{wire:?}");
    assert!(wire.ends_with("\r\n\r\nodd"), "{wire:?}");

    let wire = exchange(
        server.addr,
        b"GET /reason HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(wire.starts_with("HTTP/1.1 402 Pay Up\r\n"), "{wire:?}");

    client.send("GET /empty HTTP/1.1\r\nHost: t\r\n\r\n");
    let response = client.response();
    assert_eq!(response.status, 204);
    assert_eq!(response.header("content-length"), None);
    assert_eq!(response.header("transfer-encoding"), None);
    // No body went out: the next response is where it should be.
    assert_eq!(client.get("/static").text(), "static bytes\n");
    let wire = exchange(
        server.addr,
        b"GET /empty HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(wire.starts_with("HTTP/1.1 204 No Content\r\n"), "{wire:?}");
    assert!(wire.ends_with("\r\n\r\n"), "{wire:?}");
    assert!(!wire.contains("never sent"), "{wire:?}");
}

/// Header names that are not tokens and values or reasons with CR, LF, NUL or DEL are
/// refused and never reach the wire; the handler still answers.
#[test]
fn header_injection_is_refused_and_never_sent() {
    let server = serve(responses_app());
    let wire = exchange(
        server.addr,
        b"GET /inject HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(wire.starts_with("HTTP/1.1 200 OK\r\n"), "{wire:?}");
    let expected = "[Some(InvalidValue), Some(InvalidValue), Some(InvalidValue), \
                    Some(InvalidValue), Some(InvalidValue), Some(InvalidName), \
                    Some(InvalidName), Some(InvalidName), Some(InvalidValue), None]";
    assert!(wire.ends_with(&format!("\r\n\r\n{expected}")), "{wire:?}");
    let head = &wire[..wire.find("\r\n\r\n").unwrap()];
    for bad in [
        "evil", "Injected", "X-Split", "X-Lf", "X-Cr", "X-Nul", "X-Del", "Bad Name",
    ] {
        assert!(!head.contains(bad), "{bad} reached the wire: {wire:?}");
    }
    assert!(head.contains("\r\nX-Fine: tab\there\r\n"), "{wire:?}");
}

/// Content-Length, Transfer-Encoding and Connection are percore's: a handler's are refused
/// and percore's framing stands alone.
#[test]
fn reserved_fields_are_refused() {
    let server = serve(responses_app());
    let mut client = server.client();
    let response = client.get("/reserved");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.text(),
        "[Some(Reserved), Some(Reserved), Some(Reserved)]"
    );
    assert_eq!(count_fields(&response, "content-length"), 1);
    assert_eq!(
        response.header("content-length"),
        Some(response.body.len().to_string().as_str())
    );
    assert_eq!(count_fields(&response, "transfer-encoding"), 0);
    assert_eq!(count_fields(&response, "connection"), 0);
    // Still a keep-alive connection.
    assert_eq!(client.get("/static").text(), "static bytes\n");
}

/// A handler's own Server and Date replace percore's rather than joining them.
#[test]
fn server_and_date_fields_are_replaced() {
    let server = serve(responses_app());
    let mut client = server.client();
    let response = client.get("/server");
    assert_eq!(response.text(), "own fields");
    assert_eq!(count_fields(&response, "server"), 1);
    assert_eq!(response.header("server"), Some("mine/1.0"));
    assert_eq!(count_fields(&response, "date"), 1);
    assert_eq!(
        response.header("date"),
        Some("Thu, 01 Jan 1970 00:00:00 GMT")
    );
    // The next response has percore's own again.
    assert_eq!(client.get("/static").header("server"), Some("percore"));
}

/// `body_static` sends its bytes; `body_mut` starts empty even after a longer body on the
/// same core.
#[test]
fn static_and_built_bodies() {
    let server = serve(responses_app());
    let mut client = server.client();
    let response = client.get("/static");
    assert_eq!(response.body, b"static bytes\n");
    assert_eq!(response.header("content-length"), Some("13"));
    assert!(client.get("/long").text().starts_with("a long body"));
    assert_eq!(client.get("/built").text(), "1-2");
}

/// `interim` sends 103 Early Hints (only its own fields) before the final response, which
/// keeps the fields staged before and after; bad interim statuses and fields are refused.
#[test]
fn interim_early_hints_go_before_the_final_response() {
    let server = serve(responses_app());
    let wire = exchange(
        server.addr,
        b"GET /hints HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let interim = "HTTP/1.1 103 Early Hints\r\n\
                   Link: </style.css>; rel=preload; as=style\r\n\r\n";
    assert!(wire.starts_with(interim), "{wire:?}");
    let last = &wire[interim.len()..];
    assert!(last.starts_with("HTTP/1.1 200 OK\r\n"), "{wire:?}");
    let (head, body) = last.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("\r\nX-Before: 1\r\n"), "{wire:?}");
    assert!(head.contains("\r\nX-After: 2\r\n"), "{wire:?}");
    assert!(head.contains("\r\nConnection: close"), "{wire:?}");
    assert!(!wire.contains("Injected"), "{wire:?}");
    assert_eq!(
        body,
        "[Some(InvalidStatus), Some(InvalidStatus), Some(InvalidValue)]"
    );
}

/// `close()` sends `Connection: close` and closes the connection after the response.
#[test]
fn close_ends_the_connection_after_the_response() {
    let server = serve(responses_app());
    let mut client = server.client();
    let response = client.get("/close");
    assert_eq!(response.text(), "bye");
    assert_eq!(response.header("connection"), Some("close"));
    assert!(client.is_closed());
}

struct FileState {
    files: RefCell<Files>,
}

/// `Response::file` with a core's own `Files`: validators, 304 on If-None-Match, 206 for a
/// range, 404 for a missing file, and no way out of the root.
#[test]
fn files_from_per_core_state_have_validators_and_ranges() {
    let dir = TempDir::new("app-files");
    dir.write("root/a.txt", "0123456789");
    dir.write("secret.txt", "TOP SECRET\n");
    let root = dir.0.join("root");
    let app = App::new(move |setup: &Setup<'_>| {
        let files = Files::open(&root, &setup.config.static_files)?;
        Ok(FileState {
            files: RefCell::new(files),
        })
    })
    .get("/doc/{name}", |req, res, state: &FileState| {
        let name = req.param("name").unwrap_or_default();
        res.header("X-From-App", "yes").unwrap();
        res.file(&mut state.files.borrow_mut(), req, &name);
    });
    let server = serve(app);
    let mut client = server.client();

    let response = client.get("/doc/a.txt");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"0123456789");
    assert_eq!(response.header("x-from-app"), Some("yes"));
    assert!(response.header("last-modified").is_some());
    let etag = response.header("etag").expect("an ETag").to_string();

    client.send(format!(
        "GET /doc/a.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n"
    ));
    let response = client.response();
    assert_eq!(response.status, 304);
    assert_eq!(response.header("etag"), Some(etag.as_str()));
    assert!(response.body.is_empty());

    client.send("GET /doc/a.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-3\r\n\r\n");
    let response = client.response();
    assert_eq!(response.status, 206);
    assert_eq!(response.body, b"0123");
    assert_eq!(response.header("content-range"), Some("bytes 0-3/10"));

    client.send("HEAD /doc/a.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    let response = client.head_response();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-length"), Some("10"));

    assert_eq!(client.get("/doc/missing.txt").status, 404);

    let mut client = server.client();
    let response = client.get("/doc/..%2Fsecret.txt");
    // Documented: a path leaving the root is 400 or 403.
    assert!([400, 403].contains(&response.status), "{}", response.status);
    assert!(!response.text().contains("TOP SECRET"));
}

/// Never returns: the async handler's bug.
fn explode() -> Reply {
    panic!("async handler bug")
}

fn async_app() -> App<()> {
    App::new(|_| Ok(()))
        .get("/sync", |req, res, _| {
            res.text(&format!("sync {}", req.query().unwrap_or("")));
        })
        .get_async("/sleep", |_req, _state| async {
            percore::glommio::timer::sleep(Duration::from_millis(20)).await;
            Reply::text("slept")
        })
        .post_async("/upload/{name}", |req, _state| async move {
            percore::glommio::timer::sleep(Duration::from_millis(1)).await;
            let name = req.param("name").unwrap_or_default();
            let body = String::from_utf8_lossy(req.body()).into_owned();
            let lang = req.view().query_param("lang").map(|v| v.into_owned());
            Reply::text(format!(
                "{name} ({}): {body}",
                lang.as_deref().unwrap_or("-")
            ))
            .with_status(Status::CREATED)
            .header("X-Name", &name)
            .unwrap()
        })
        .route_async("PURGE", "/later/{key}", |_req, _state| async {
            let refused = Reply::new().header("X-Bad", "a\r\nb").err();
            Reply::text(format!("{refused:?}")).with_status(Status::ACCEPTED)
        })
        .get_async("/boom", |_req, _state| async {
            percore::glommio::timer::sleep(Duration::from_millis(5)).await;
            explode()
        })
        .get_async("/interim-reply", |_req, _state| async {
            // A 1xx is no final status: a failed handler, as one that panics.
            Reply::text("never").with_status(Status::CONTINUE)
        })
}

/// An async handler may wait on a glommio timer; a pipelined request behind it waits, so
/// responses leave in request order.
#[test]
fn async_handlers_answer_in_request_order() {
    let server = serve(async_app());
    let mut client = server.client();
    assert_eq!(client.get("/sleep").text(), "slept");

    client.send(
        "GET /sync?1 HTTP/1.1\r\nHost: t\r\n\r\n\
         GET /sleep HTTP/1.1\r\nHost: t\r\n\r\n\
         GET /sync?3 HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(client.response().text(), "sync 1");
    assert_eq!(client.response().text(), "slept");
    assert_eq!(client.response().text(), "sync 3");
    assert_eq!(client.get("/sync?after").text(), "sync after");
}

/// An async handler gets the whole body (either framing), the parameters and the query;
/// its reply's status and fields go out, and a field with a line break is refused.
#[test]
fn async_handlers_see_the_body_and_set_the_reply() {
    let server = serve(async_app());
    let mut client = server.client();
    client.send(
        "POST /upload/J%C3%BCrgen?lang=de+CH HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\nsome data",
    );
    let response = client.response();
    assert_eq!(response.status, 201);
    assert_eq!(response.text(), "Jürgen (de CH): some data");
    assert_eq!(response.header("x-name"), Some("Jürgen"));

    client.send(chunked_request("/upload/c", b"chunked upload", 5));
    let response = client.response();
    assert_eq!(response.text(), "c (-): chunked upload");

    let wire = exchange(
        server.addr,
        b"PURGE /later/k HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(wire.starts_with("HTTP/1.1 202 Accepted\r\n"), "{wire:?}");
    assert!(wire.ends_with("\r\n\r\nSome(InvalidValue)"), "{wire:?}");
    assert!(!wire.contains("X-Bad"), "{wire:?}");
}

/// A reason phrase set with `with_reason` is sent in the status line.
#[test]
fn async_reply_reason_phrase_is_sent() {
    let server = serve(
        App::new(|_| Ok(())).get_async("/queued", |_req, _state| async {
            Reply::status(Status::ACCEPTED)
                .with_reason("Queued")
                .unwrap()
        }),
    );
    let wire = exchange(
        server.addr,
        b"GET /queued HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(wire.starts_with("HTTP/1.1 202 Queued\r\n"), "{wire:?}");
    assert!(wire.contains("\r\nContent-Length: 0\r\n"), "{wire:?}");
}

/// An async handler that panics (or replies with an interim status) gets its request a 500
/// and its connection closed (a request pipelined behind it is not answered); other
/// connections go on being served, and the failure is counted in the shutdown summary.
#[test]
fn async_panic_is_500_and_closes_only_its_connection() {
    let server = serve(async_app());
    let mut bystander = server.client();
    assert_eq!(bystander.get("/sync?before").text(), "sync before");

    let mut client = server.client();
    client.send(
        "GET /boom HTTP/1.1\r\nHost: t\r\n\r\n\
         GET /sync?behind HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let response = client.response();
    assert_eq!(response.status, 500);
    assert_eq!(response.header("connection"), Some("close"));
    assert!(client.is_closed());

    assert_eq!(bystander.get("/sync?after").text(), "sync after");
    assert_eq!(server.client().get("/sleep").text(), "slept");

    let mut client = server.client();
    let response = client.get("/interim-reply");
    assert_eq!(response.status, 500);
    assert_eq!(response.header("connection"), Some("close"));
    assert!(!response.text().contains("never"));
    assert!(client.is_closed());

    let counters = server.stop().merged_counters();
    assert_eq!(counters.handler_panics, 2);
    assert_eq!(counters.by_class[5], 2);
}

struct Counter {
    hits: Cell<u64>,
}

/// Per-core state lives across connections: on one core, a counter in it counts every
/// request, whichever connection it came on; an async handler shares it through its `Rc`.
#[test]
fn per_core_state_counts_across_connections() {
    let server = serve(
        App::new(|_| Ok(Counter { hits: Cell::new(0) }))
            .get("/count", |_, res, state: &Counter| {
                state.hits.set(state.hits.get() + 1);
                res.text(&state.hits.get().to_string());
            })
            .get_async("/count-later", |_req, state| async move {
                state.hits.set(state.hits.get() + 1);
                Reply::text(state.hits.get().to_string())
            }),
    );
    for expected in ["1", "2", "3"] {
        assert_eq!(server.client().get("/count").text(), expected);
    }
    assert_eq!(server.client().get("/count-later").text(), "4");
    assert_eq!(server.client().get("/count").text(), "5");
}

#[derive(serde::Deserialize)]
struct Settings {
    greeting: String,
    repeat: usize,
}

struct Greeter {
    line: String,
    core: usize,
}

fn greeter_app() -> App<Greeter> {
    App::new(|setup: &Setup<'_>| {
        let settings: Settings = setup.settings()?;
        Ok(Greeter {
            line: settings.greeting.repeat(settings.repeat),
            core: setup.cpu,
        })
    })
    .get("/greet", |_, res, state: &Greeter| {
        res.text(&format!("{} from cpu {}", state.line, state.core));
    })
}

/// The factory reads the `[app]` table of the configuration and is told the CPU it serves;
/// an `[app]` table that does not fit fails the start with serde's reason.
#[test]
fn factory_reads_the_app_table() {
    let text = "[app]\ngreeting = \"Howdy\"\nrepeat = 2\n";
    let mut config = Config::from_toml(text, "app-test.toml").expect("config parses");
    config.server.port = 0;
    config.server.cores = CoreSpec::First(1);
    config.report.interval_ms = 0;
    let server = start(greeter_app(), config);
    let cpu = server.server.cores()[0];
    assert_eq!(
        server.client().get("/greet").text(),
        format!("HowdyHowdy from cpu {cpu}")
    );

    let config = test_config(|c| {
        c.app = toml::from_str("greeting = \"Hi\"\n").unwrap();
    });
    let error = greeter_app()
        .start(config)
        .err()
        .expect("an [app] without `repeat` fails the start");
    assert!(error.to_string().contains("[app]"), "{error}");
    assert!(error.to_string().contains("repeat"), "{error}");
}

/// A factory that fails stops the server from starting, with the factory's message.
#[test]
fn factory_error_fails_the_start() {
    let app = App::new(|_: &Setup<'_>| -> Result<(), BoxError> {
        Err("database unreachable at db:5432".into())
    })
    .get("/", |_, res, _| {
        res.text("never");
    });
    let error = app
        .start(test_config(|_| {}))
        .err()
        .expect("the start fails");
    assert!(
        error
            .to_string()
            .contains("database unreachable at db:5432"),
        "{error}"
    );
}

/// `[app]` takes any keys, but an unknown key elsewhere is still refused, by name.
#[test]
fn unknown_server_keys_are_still_refused() {
    let config = Config::from_toml("[app]\nanything = 1\n[app.nested]\nx = \"y\"\n", "ok.toml")
        .expect("[app] takes any keys");
    assert_eq!(config.app["anything"].as_integer(), Some(1));
    let error = Config::from_toml("[server]\nbogus_key = 1\n", "bad.toml")
        .expect_err("an unknown [server] key is refused");
    assert!(error.to_string().contains("bogus_key"), "{error}");
    assert!(error.to_string().contains("bad.toml"), "{error}");
}

/// A `Config` built in code is validated as a file's is (and as `--check` does): `start`,
/// `run` and `check` refuse a value that parses but makes no sense, naming the key, before
/// any core starts or any factory runs. They used to take it as it was.
#[test]
fn a_config_built_in_code_is_validated_at_start() {
    let factory_ran = Arc::new(Mutex::new(false));
    let app = || {
        let ran = factory_ran.clone();
        App::new(move |_: &Setup<'_>| -> Result<(), BoxError> {
            *ran.lock().unwrap() = true;
            Ok(())
        })
    };
    let broken = [
        ("http.max_headers", test_config(|c| c.http.max_headers = 0)),
        (
            "runtime.ring_depth",
            test_config(|c| c.runtime.ring_depth = 100),
        ),
        (
            "static.mount",
            test_config(|c| c.static_files.mount = "x".into()),
        ),
        (
            "http.keepalive_timeout_ms",
            test_config(|c| c.http.keepalive_timeout_ms = 0),
        ),
    ];
    for (key, config) in broken {
        let expected = format!("the configuration: {key} ");
        let checked = app().check(&config).expect_err("check refuses it");
        assert!(checked.to_string().starts_with(&expected), "{checked}");
        let started = app().start(config.clone()).err().expect("start refuses it");
        assert!(
            matches!(started, percore::StartError::Config(_)),
            "{started:?}"
        );
        assert!(started.to_string().starts_with(&expected), "{started}");
        let ran = app().run(config).expect_err("run refuses it");
        assert!(ran.to_string().starts_with(&expected), "{ran}");
    }
    assert!(!*factory_ran.lock().unwrap(), "a factory ran");
}

/// The `handler_panics` total that `/stats` shows, polled until it reaches `want` (it is
/// published once per report tick); fails after 10 s.
fn wait_for_panics_in_stats(client: &mut Client, want: u64) -> serde_json::Value {
    common::wait_for(
        &format!("/stats shows {want} handler panics"),
        Duration::from_secs(10),
        || {
            let response = client.get("/stats");
            assert_eq!(response.status, 200);
            assert_eq!(response.header("content-type"), Some("application/json"));
            let stats: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
            let panics = stats["total"]["handler_panics"]
                .as_u64()
                .unwrap_or_else(|| panic!("no total.handler_panics in {stats}"));
            assert!(panics <= want, "more panics than made: {stats}");
            if panics == want {
                Ok(stats)
            } else {
                Err(stats)
            }
        },
    )
}

/// A synchronous handler that panics (or leaves an interim status as its final one, which
/// fails it without a panic) gets its request a 500 with `Connection: close` in place of
/// what it had written, its connection closed, and the next connection served; each failure
/// is counted in `/stats` and in the shutdown summary.
#[test]
fn sync_panic_is_500_closes_and_is_counted() {
    let server = serve(
        App::new(|_| Ok(()))
            .stats()
            .get("/ok", |_, res, _| {
                res.text("ok");
            })
            .get("/panic", |_, res, _| {
                res.header("X-Partial", "yes").unwrap();
                res.text("partial");
                panic!("handler bug");
            })
            .get("/bad-status", |_, res, _| {
                res.header("X-Partial", "yes").unwrap();
                res.status(Status::EARLY_HINTS).text("never");
            }),
    );

    let mut client = server.client();
    client.send(
        "GET /panic HTTP/1.1\r\nHost: t\r\n\r\n\
         GET /ok HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let response = client.response();
    assert_eq!(response.status, 500);
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(response.header("x-partial"), None);
    assert!(!response.text().contains("partial"));
    assert!(client.is_closed());

    let mut client = server.client();
    let response = client.get("/bad-status");
    assert_eq!(response.status, 500);
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(response.header("x-partial"), None);
    assert!(!response.text().contains("never"));
    assert!(client.is_closed());

    let mut client = server.client();
    assert_eq!(client.get("/ok").text(), "ok");
    let stats = wait_for_panics_in_stats(&mut client, 2);
    assert!(
        stats["total"]["status"]["5xx"].as_u64().unwrap() >= 2,
        "{stats}"
    );

    let summary = server.stop();
    let counters = summary.merged_counters();
    assert_eq!(counters.handler_panics, 2);
    assert_eq!(counters.by_class[5], 2);
    assert_eq!(summary.cores[0].counters.handler_panics, 2);
}

struct Identity {
    index: usize,
    core: usize,
}

/// With two cores the factory runs once on each, with its own index and CPU, and every
/// response comes from one of those two states.
#[test]
fn two_cores_each_build_their_own_state() {
    let usable = usable_cores();
    if !common::require(
        usable.len() >= 2,
        &format!("needs two usable cores, this process may use {usable:?}: the test did not run"),
    ) {
        return;
    }
    let built = Arc::new(Mutex::new(Vec::new()));
    let record = built.clone();
    let app = App::new(move |setup: &Setup<'_>| {
        record.lock().unwrap().push((setup.index, setup.cpu));
        Ok(Identity {
            index: setup.index,
            core: setup.cpu,
        })
    })
    .get("/who", |_, res, state: &Identity| {
        res.text(&format!("{} {}", state.index, state.core));
    });
    let server = serve_with(app, |c| c.server.cores = CoreSpec::First(2));
    let cores = server.server.cores().to_vec();
    assert_eq!(cores.len(), 2);

    let mut made = built.lock().unwrap().clone();
    made.sort_unstable();
    assert_eq!(made, vec![(0, cores[0]), (1, cores[1])]);

    for _ in 0..40 {
        let text = server.client().get("/who").text();
        let (index, core) = text.split_once(' ').unwrap();
        let index: usize = index.parse().unwrap();
        let core: usize = core.parse().unwrap();
        assert!(index < 2, "{text}");
        assert_eq!(core, cores[index], "{text}");
    }
    drop(server);
    assert_eq!(built.lock().unwrap().len(), 2, "a factory ran again");
}

/// An HTTP/1.0 client is sent no interim response (it would take it for the final one).
#[test]
fn interim_responses_are_not_sent_to_http10_clients() {
    let server = serve(responses_app());
    let wire = exchange(server.addr, b"GET /hints HTTP/1.0\r\n\r\n");
    assert!(wire.starts_with("HTTP/1.1 200 OK\r\n"), "{wire:?}");
    assert!(!wire.contains("103"), "{wire:?}");
}

/// `close()` after a file's head went out does nothing: the head promised keep-alive, and the
/// connection keeps it.
#[test]
fn close_after_a_file_is_too_late_and_ignored() {
    let dir = TempDir::new("close-after-file");
    std::fs::write(dir.0.join("a.txt"), "file body").unwrap();
    let root = dir.0.clone();
    let server = serve(
        App::new(move |setup| {
            Ok(RefCell::new(Files::open(
                &root,
                &setup.config.static_files,
            )?))
        })
        .get("/a", |req, res, files: &RefCell<Files>| {
            res.file(&mut files.borrow_mut(), req, "a.txt");
            res.close();
        }),
    );
    let mut client = server.client();
    let first = client.get("/a");
    assert_eq!(first.text(), "file body");
    assert_eq!(first.header("connection"), None);
    assert_eq!(client.get("/a").text(), "file body");
}

/// A drain that begins while an async handler works makes its response the connection's last.
#[test]
fn a_late_response_during_a_drain_closes_its_connection() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let started = Arc::new(AtomicBool::new(false));
    let release = Arc::new(AtomicBool::new(false));
    let (flag, go) = (started.clone(), release.clone());
    let app = App::new(|_| Ok(())).get_async("/slow", move |_req, _state| {
        flag.store(true, Ordering::SeqCst);
        let go = go.clone();
        async move {
            // Answers once the test has seen the drain begin (or after 20 s: the test has
            // failed by then).
            let deadline = Instant::now() + Duration::from_secs(20);
            while !go.load(Ordering::SeqCst) && Instant::now() < deadline {
                percore::glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            Reply::text("slow")
        }
    });
    let running = serve(app);
    let addr = running.addr;
    let mut client = running.client();
    client.send("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    // Drain once the handler has the request.
    common::wait_until("the handler ran", Duration::from_secs(20), || {
        started.load(Ordering::SeqCst)
    });
    let stopping = std::thread::spawn(move || running.stop());
    // The drain has begun once the listener is gone: new connections are refused.
    common::wait_until("the drain began", Duration::from_secs(20), || {
        TcpStream::connect(addr).is_err()
    });
    release.store(true, Ordering::SeqCst);
    let response = client.response();
    assert_eq!(response.text(), "slow");
    assert_eq!(response.header("connection"), Some("close"));
    assert!(client.closed_in_order());
    stopping.join().unwrap();
}

/// Bodies still arriving share a per-core budget: the request that would take it past
/// `http.body_buffer_bytes_per_core` is answered 503 and closed; the others go on.
#[test]
fn gathered_bodies_have_a_per_core_budget() {
    let app = App::new(|_| Ok(())).post("/len", |req, res, _| {
        res.text(&req.body().len().to_string());
    });
    let server = serve_with(app, |config| {
        config.http.body_buffer_bytes_per_core = 12 * 1024;
    });
    let head = b"POST /len HTTP/1.1\r\nHost: t\r\nContent-Length: 8000\r\n\r\n";
    let part = vec![b'x'; 6000];
    let mut first = server.client();
    first.send(head).send(&part);
    // The first body is being gathered once the server has answered something else after
    // it on another connection (one core: it took the first bytes before these).
    let mut probe = server.client();
    probe.send(b"POST /len HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nz");
    assert_eq!(probe.response().text(), "1");
    let mut second = server.client();
    second.send(head).send(&part);
    let refused = second.response();
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("connection"), Some("close"));
    first.send(&part[..2000]);
    assert_eq!(first.response().text(), "8000");
}
