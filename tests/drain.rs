//! Draining (SIGTERM, and the old server of a reload) without the keep-alive close race: an
//! idle connection is not closed under a client that may be sending, its next request is
//! answered with `Connection: close`, and one that stays silent is closed in order (a FIN,
//! never a reset) after `server.drain_idle_grace_ms`.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::TestServer;

/// Waits until the server's listener is gone: a new connection is refused.
fn wait_for_drain(addr: std::net::SocketAddr) {
    common::wait_until(
        "the server stops accepting",
        Duration::from_secs(20),
        || TcpStream::connect(addr).is_err(),
    );
}

#[test]
fn idle_keep_alive_connections_get_their_next_request_answered_then_close() {
    let mut server = TestServer::with(|config| {
        // Long enough that the test's next request surely comes inside it.
        config.server.drain_idle_grace_ms = 5000;
    });
    let addr = server.addr;
    let mut talker = server.client();
    let mut silent = server.client();
    assert_eq!(talker.get("/echo?name=1").text(), "Hi, 1!");
    assert_eq!(silent.get("/echo?name=2").text(), "Hi, 2!");

    let stopping = std::thread::spawn({
        let inner = server.server.take().unwrap();
        move || inner.shutdown()
    });
    wait_for_drain(addr);

    // The idle connection was kept: its next request is answered, and it is the last.
    let last = talker.get("/echo?name=3");
    assert_eq!(last.status, 200);
    assert_eq!(last.text(), "Hi, 3!");
    assert_eq!(last.header("connection"), Some("close"));
    assert!(
        talker.closed_in_order(),
        "not closed in order after its last response"
    );

    // The silent one is closed once the grace is over: in order, not reset.
    assert!(
        silent.closed_in_order(),
        "the silent connection was not closed in order"
    );
    let summary = stopping.join().unwrap();
    assert_eq!(summary.merged_counters().requests(), 3);
    server.stop();
}

/// The health route answers 200 while serving and 503 from the moment the drain begins,
/// while the requests of connections still open are answered.
#[test]
fn health_turns_503_when_the_drain_begins() {
    let mut server = TestServer::with(|config| config.server.drain_idle_grace_ms = 5000);
    let addr = server.addr;
    let mut client = server.client();
    let healthy = client.get("/healthz");
    assert_eq!(healthy.status, 200);
    assert_eq!(healthy.text(), "ok\n");
    assert_eq!(healthy.header("cache-control"), Some("no-store"));
    let stopping = std::thread::spawn({
        let inner = server.server.take().unwrap();
        move || inner.shutdown()
    });
    wait_for_drain(addr);
    let draining = client.get("/healthz");
    assert_eq!(draining.status, 503);
    assert_eq!(draining.text(), "draining\n");
    assert_eq!(draining.header("connection"), Some("close"));
    stopping.join().unwrap();
    server.stop();
}
