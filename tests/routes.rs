//! The `percore` binary's routes, README's table, through the binary itself: each test
//! starts the built `percore` on 127.0.0.1 port 0 on one core and talks to it over a
//! socket. (The in-process tests serve a stand-in with the same routes, `common/app.rs`.)

mod common;

use common::{Client, Percore, TempDir};

/// The binary on one core, with `args` added, and a client connected to it.
fn percore(args: &[&str]) -> (Percore, Client) {
    let mut all = vec!["--port", "0", "--workers", "1"];
    all.extend_from_slice(args);
    let server = Percore::spawn(&all);
    let client = Client::connect(server.addr.parse().unwrap());
    (server, client)
}

/// Stops the binary the way an operator does, after letting go of `client`: it exits 0.
fn stop(mut server: Percore, client: Client) {
    drop(client);
    server.stop_with(libc::SIGTERM);
}

#[test]
fn echo_answers_with_the_decoded_name_and_standard_fields() {
    let (server, mut client) = percore(&[]);
    let response = client.get("/echo?name=Abcde");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "Hi, Abcde!");
    assert_eq!(response.header("content-length"), Some("10"));
    assert_eq!(response.header("server"), Some("percore"));
    assert!(response
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let date = response.header("date").unwrap();
    assert!(date.ends_with(" GMT") && date.len() == 29, "{date}");

    let response = client.get("/echo?x=1&name=J%C3%BCrgen%20K+L&name=second");
    assert_eq!(response.text(), "Hi, Jürgen K+L!");
    stop(server, client);
}

#[test]
fn echo_without_name_or_with_bad_escape_is_400_and_keeps_the_connection() {
    let (server, mut client) = percore(&[]);
    assert_eq!(client.get("/echo").status, 400);
    assert_eq!(client.get("/echo?name=%zz").status, 400);
    assert_eq!(client.get("/echo?name=ok").text(), "Hi, ok!");
    stop(server, client);
}

/// `/echo` takes GET and HEAD (and OPTIONS, which percore answers); any other method is 405
/// with `Allow`, any other path 404.
#[test]
fn echo_takes_get_head_and_options_and_other_paths_are_404() {
    let (server, mut client) = percore(&[]);
    client.send("HEAD /echo?name=Abcde HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = client.head_response();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("10"));
    for target in ["*", "/echo"] {
        client.send(format!("OPTIONS {target} HTTP/1.1\r\nHost: t\r\n\r\n"));
        let options = client.head_response();
        assert_eq!(options.status, 204, "OPTIONS {target}");
        assert_eq!(options.header("allow"), Some("GET, HEAD, OPTIONS"));
    }
    for method in ["DELETE", "BREW"] {
        client.send(format!("{method} /echo?name=a HTTP/1.1\r\nHost: t\r\n\r\n"));
        let refused = client.response();
        assert_eq!(refused.status, 405, "{method}");
        assert_eq!(refused.header("allow"), Some("GET, HEAD, OPTIONS"));
    }
    assert_eq!(client.get("/nope").status, 404);
    assert_eq!(client.get("/echo/").status, 404);
    // The connection is still in step: nothing above left a body behind.
    assert_eq!(client.get("/echo?name=z").text(), "Hi, z!");
    stop(server, client);
}

/// `/stats` is JSON, `/metrics` Prometheus text, `/healthz` `ok`: the binary registers the
/// library's built-in routes at their default paths.
#[test]
fn stats_metrics_and_health_answer_at_their_paths() {
    let (server, mut client) = percore(&[]);
    let stats = client.get("/stats");
    assert_eq!(stats.status, 200);
    assert_eq!(stats.header("content-type"), Some("application/json"));
    let json: serde_json::Value = serde_json::from_slice(&stats.body).unwrap();
    assert_eq!(json["server"], "percore", "{json}");
    let metrics = client.get("/metrics");
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metrics.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(
        metrics.text().contains("percore_requests_total"),
        "{}",
        metrics.text()
    );
    let health = client.get("/healthz");
    assert_eq!(health.status, 200);
    assert_eq!(health.text(), "ok\n");
    stop(server, client);
}

/// Any other path is a file beneath `--root`; the routes answer first, so files named like
/// them are not served.
#[test]
fn files_beneath_the_root_answer_below_the_routes() {
    let dir = TempDir::new("routes");
    dir.write("page.txt", "a page\n");
    for shadowed in ["echo", "stats", "metrics", "healthz"] {
        dir.write(shadowed, "the file, not the route\n");
    }
    let root = dir.0.to_str().unwrap().to_string();
    let (server, mut client) = percore(&["--root", &root]);
    let page = client.get("/page.txt");
    assert_eq!(page.status, 200);
    assert_eq!(page.body, b"a page\n");
    assert_eq!(client.get("/missing.txt").status, 404);
    assert_eq!(client.get("/echo?name=x").text(), "Hi, x!");
    assert_eq!(client.get("/healthz").text(), "ok\n");
    for route in ["/stats", "/metrics"] {
        let response = client.get(route);
        assert_eq!(response.status, 200, "{route}");
        assert!(
            !response.text().contains("the file"),
            "{route}: {}",
            response.text()
        );
    }
    stop(server, client);
}
