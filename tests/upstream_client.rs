//! The client for handlers over real sockets: async handlers of an in-process server call
//! raw-byte backends (which answer exactly what a case needs and record what they got)
//! through the core's upstream pools, and answer with what they saw.

#[path = "common/backend.rs"]
mod backend;
mod common;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use backend::{Backend, Request};
use common::{Client, TestServer};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use percore::config::{Config, CoreSpec};
use percore::{App, OwnedRequest, Reply, Upstream, UpstreamError};

/// What each core's handlers call: the upstream `backend`.
struct State {
    backend: Upstream,
}

/// Answers the handler's view of a call: `status|X-Backend|body`, or `error: ...`.
fn seen(outcome: Result<(u16, Option<String>, Vec<u8>), UpstreamError>) -> Reply {
    match outcome {
        Ok((status, field, body)) => Reply::text(format!(
            "{status}|{}|{}",
            field.unwrap_or_default(),
            String::from_utf8_lossy(&body)
        )),
        Err(error) => Reply::text(format!("error: {error:?}")),
    }
}

/// The app under test: `/get/*` and `/head/*` call the backend with that path, `/post/*`
/// posts the request's body there, `/count/*` reads a body chunk by chunk and answers its
/// length, `/quick/*` calls with a 300 ms timeout.
fn app() -> App<State> {
    App::new(|setup| {
        Ok(State {
            backend: setup.upstream("backend")?,
        })
    })
    .get_async("/get/{*rest}", |request, state| async move {
        let target = target(&request);
        let call = state.backend.get(&target).header("X-Call", "yes").unwrap();
        seen(read(call).await)
    })
    .get_async("/head/{*rest}", |request, state| async move {
        let target = target(&request);
        seen(read(state.backend.head(&target)).await)
    })
    .post_async("/post/{*rest}", |request, state| async move {
        let target = target(&request);
        let call = state.backend.post(&target).body(request.body().to_vec());
        seen(read(call).await)
    })
    .get_async("/quick/{*rest}", |request, state| async move {
        let target = target(&request);
        let call = state
            .backend
            .get(&target)
            .timeout(Duration::from_millis(300));
        seen(read(call).await)
    })
    .get_async("/raw/{n}", |request, state| async move {
        // Sends `n` bytes on a raw connection while reading what comes back, then closes
        // its side and reads to the end: answers the bytes read and their sum.
        let n: usize = request.param("n").and_then(|n| n.parse().ok()).unwrap_or(0);
        let outcome = async {
            let stream = state.backend.connect().await?;
            let (mut reader, mut writer) = futures_lite::io::split(stream);
            let write = async move {
                let data: Vec<u8> = (0..n).map(|i| (i % 241) as u8).collect();
                writer.write_all(&data).await?;
                writer.close().await?;
                Ok::<_, std::io::Error>(())
            };
            let read = async move {
                let mut back = Vec::new();
                reader.read_to_end(&mut back).await?;
                Ok::<_, std::io::Error>(back)
            };
            let (written, back) = futures_lite::future::zip(write, read).await;
            written?;
            back
        };
        match outcome.await {
            Ok(back) => {
                let sum: u64 = back.iter().map(|&b| u64::from(b)).sum();
                Reply::text(format!("{} {sum}", back.len()))
            }
            Err(error) => Reply::text(format!("error: {:?}", error.kind())),
        }
    })
    .get_async("/count/{*rest}", |request, state| async move {
        let target = target(&request);
        let outcome = async {
            let mut response = state.backend.get(&target).send().await?;
            let (mut total, mut sum) = (0usize, 0u64);
            while let Some(chunk) = response.chunk().await? {
                total += chunk.len();
                sum += chunk.iter().map(|&b| u64::from(b)).sum::<u64>();
            }
            Ok::<_, UpstreamError>((total, sum))
        };
        match outcome.await {
            Ok((total, sum)) => Reply::text(format!("{total} {sum}")),
            Err(error) => Reply::text(format!("error: {error:?}")),
        }
    })
}

/// The backend's target for a request to `/{route}/{*rest}`: `/rest`, and the query.
fn target(request: &OwnedRequest) -> String {
    let view = request.view();
    let rest = view.param("rest").unwrap_or_default();
    match view.query() {
        Some(query) => format!("/{rest}?{query}"),
        None => format!("/{rest}"),
    }
}

/// Sends `call` and reads its status, `X-Backend` field and whole body.
async fn read(call: percore::Call) -> Result<(u16, Option<String>, Vec<u8>), UpstreamError> {
    let response = call.send().await?;
    let status = response.status().code();
    let field = response.header("x-backend").map(str::to_string);
    Ok((status, field, response.bytes().await?))
}

/// A server whose upstream `backend` is `servers`, with `extra` TOML lines in it.
fn serve(servers: &[String], extra: &str) -> TestServer {
    let list: Vec<String> = servers.iter().map(|s| format!("{s:?}")).collect();
    let toml = format!(
        "[[upstream]]\nname = \"backend\"\nservers = [{}]\n{extra}\n",
        list.join(", ")
    );
    let parsed = Config::from_toml(&toml, "test").expect("the configuration parses");
    let mut config = Config::default();
    config.server.port = 0;
    config.server.cores = CoreSpec::First(1);
    config.report.interval_ms = 0;
    config.upstream = parsed.upstream;
    let server = app().start(config).expect("server starts");
    let addr = server.local_addr();
    TestServer {
        server: Some(server),
        addr,
    }
}

fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Backend: yes\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A port nothing listens on.
fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

#[test]
fn a_handler_calls_a_backend_on_one_pooled_connection() {
    let backend = Backend::start(|r: &Request| (ok(&format!("you asked {}", r.line())), false));
    let server = serve(&[backend.addr.to_string()], "");
    let mut client = server.client();
    for i in 0..30 {
        let response = client.get(&format!("/get/users/{i}?full=yes"));
        assert_eq!(response.status, 200);
        assert_eq!(
            response.text(),
            format!("200|yes|you asked GET /users/{i}?full=yes HTTP/1.1")
        );
    }
    let seen = backend.seen();
    assert_eq!(seen.len(), 30);
    assert_eq!(
        backend.connections.load(Ordering::SeqCst),
        1,
        "one keep-alive connection carried every call"
    );
    assert_eq!(seen[0].fields("host"), [backend.addr.to_string()]);
    assert_eq!(seen[0].fields("x-call"), ["yes"]);
    assert!(
        seen[0].fields("content-length").is_empty(),
        "a GET has no body"
    );
}

#[test]
fn a_post_body_goes_with_its_length_and_chunked_or_closing_answers_are_read_whole() {
    let backend = Backend::start(|r: &Request| {
        match r.line() {
        l if l.starts_with("POST") => (ok(&format!("got {} bytes", r.body.len())), false),
        l if l.contains("/chunked") => (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n".to_vec(),
            false,
        ),
        _ => (
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end".to_vec(),
            true,
        ),
    }
    });
    let server = serve(&[backend.addr.to_string()], "");
    let mut client = server.client();
    let body = "x".repeat(70_000);
    client.send(format!(
        "POST /post/items HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    assert_eq!(client.response().text(), "200|yes|got 70000 bytes");
    let post = &backend.seen()[0];
    assert_eq!(post.fields("content-length"), ["70000"]);
    assert_eq!(post.body, body.as_bytes());
    assert_eq!(client.get("/get/chunked").text(), "200||hello world");
    assert_eq!(client.get("/get/close").text(), "200||until the end");
    assert_eq!(client.get("/get/chunked").text(), "200||hello world");
}

#[test]
fn a_large_body_streams_chunk_by_chunk() {
    const LEN: usize = 8 * 1024 * 1024;
    let backend = Backend::start(|_: &Request| {
        let mut answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {LEN}\r\n\r\n").into_bytes();
        answer.extend((0..LEN).map(|i| (i % 251) as u8));
        (answer, false)
    });
    let server = serve(&[backend.addr.to_string()], "");
    let expected: u64 = (0..LEN).map(|i| (i % 251) as u64).sum();
    let mut client = server.client();
    for _ in 0..2 {
        assert_eq!(client.get("/count/big").text(), format!("{LEN} {expected}"));
    }
}

#[test]
fn failures_are_told_apart() {
    let dead = closed_port().to_string();
    let refused = serve(std::slice::from_ref(&dead), "");
    assert_eq!(
        refused.client().get("/get/x").text(),
        "error: Unavailable",
        "nothing listens"
    );

    let backend = Backend::start(|r: &Request| match r.line() {
        l if l.contains("/silent") => {
            std::thread::sleep(Duration::from_secs(3));
            (ok("late"), false)
        }
        l if l.contains("/garbage") => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(),
            true,
        ),
        l if l.contains("/short") => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this".to_vec(),
            true,
        ),
        _ => (ok("fine"), false),
    });
    let server = serve(&[backend.addr.to_string()], "");
    let mut client = server.client();
    let started = Instant::now();
    assert_eq!(client.get("/quick/silent").text(), "error: Timeout");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(2500),
        "the call's own timeout ({took:?})"
    );
    assert_eq!(client.get("/get/garbage").text(), "error: BadResponse");
    assert_eq!(client.get("/get/short").text(), "error: Truncated");
    assert_eq!(client.get("/get/after").text(), "200|yes|fine");
}

#[test]
fn a_pooled_connection_the_server_closed_is_retried_but_a_post_never_twice() {
    // Every answer closes its connection: the next call finds its pooled connection gone
    // (or sees it close as it writes) and goes again on a new one.
    let backend = Backend::start(|r: &Request| match r.line() {
        l if l.starts_with("POST") => (Vec::new(), true),
        _ => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Backend: yes\r\n\r\nok".to_vec(),
            true,
        ),
    });
    let server = serve(&[backend.addr.to_string()], "");
    let mut client = server.client();
    for _ in 0..20 {
        assert_eq!(client.get("/get/again").text(), "200|yes|ok");
    }
    client.send("POST /post/once HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(client.response().text(), "error: Unavailable");
    let posts = backend
        .seen()
        .iter()
        .filter(|r| r.line().starts_with("POST"))
        .count();
    assert_eq!(posts, 1, "a POST that may have arrived is not sent again");
}

#[test]
fn a_dead_server_is_passed_over_for_a_live_one() {
    let backend = Backend::start(|_: &Request| (ok("alive"), false));
    let servers = [closed_port().to_string(), backend.addr.to_string()];
    let server = serve(&servers, "max_fails = 1\nfail_timeout_ms = 60000");
    let mut client = server.client();
    for _ in 0..6 {
        assert_eq!(client.get("/get/who").text(), "200|yes|alive");
    }
}

#[test]
fn a_head_call_has_no_body_and_its_connection_goes_on() {
    let backend = Backend::start(|r: &Request| match r.line() {
        l if l.starts_with("HEAD") => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nX-Backend: yes\r\n\r\n".to_vec(),
            false,
        ),
        _ => (ok("after"), false),
    });
    let server = serve(&[backend.addr.to_string()], "");
    let mut client = server.client();
    assert_eq!(client.get("/head/thing").text(), "200|yes|");
    assert_eq!(client.get("/get/thing").text(), "200|yes|after");
    assert_eq!(backend.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn an_unknown_upstream_stops_the_start_with_its_name() {
    let mut config = Config::default();
    config.server.port = 0;
    config.server.cores = CoreSpec::First(1);
    let Err(error) = app().start(config) else {
        panic!("a server started whose app calls an upstream the configuration lacks");
    };
    let message = error.to_string();
    assert!(message.contains("backend"), "{message}");
}

#[test]
fn the_calls_are_counted_with_the_proxys() {
    let backend = Backend::start(|_: &Request| (ok("x"), false));
    let mut server = serve(&[backend.addr.to_string()], "");
    let mut client: Client = server.client();
    for _ in 0..5 {
        assert_eq!(client.get("/get/n").text(), "200|yes|x");
    }
    drop(client);
    let summary = server.server.take().expect("running").shutdown();
    let counters = summary.merged_counters();
    assert_eq!(counters.upstream_requests, 5);
    assert_eq!(counters.upstream_connects, 1);
    assert_eq!(counters.upstream_failures, 0);
}

/// A raw echo server: every byte back, until the client closes its side.
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut reader = stream.try_clone().unwrap();
                let _ = std::io::copy(&mut reader, &mut stream);
                let _ = stream.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

#[test]
fn a_raw_connection_carries_bytes_both_ways_and_its_close() {
    let echo = echo_server();
    let server = serve(&[echo.to_string()], "");
    let mut client = server.client();
    for n in [5usize, 70_000, 3 * 1024 * 1024] {
        let sum: u64 = (0..n).map(|i| (i % 241) as u64).sum();
        assert_eq!(
            client.get(&format!("/raw/{n}")).text(),
            format!("{n} {sum}")
        );
    }
    let refused = serve(&[closed_port().to_string()], "");
    assert_eq!(
        refused.client().get("/raw/10").text(),
        "error: ConnectionRefused"
    );
}
