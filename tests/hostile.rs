//! Slow, greedy, broken and vanishing clients: the server keeps serving everyone else.

mod common;

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::{Client, Percore, TestServer};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn client_that_never_reads_cannot_grow_server_memory() {
    let server = TestServer::with(|c| c.http.write_timeout_ms = 60_000);
    let connected = Instant::now();
    let mut greedy = server.client();
    let before = rss_kib();
    // Pipeline without reading until the kernel buffers are full and writes stall: the
    // server stopped reading because its responses cannot be sent.
    greedy.flood_until_held("greedy", Duration::from_millis(500));
    // It did stop: its send is held up, its unread requests wait in its socket.
    let stall = common::wait_until_send_stalled(&greedy.stream, connected);
    assert!(stall.server.rx_queue > 0, "{stall:?}");
    let grown = rss_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "RSS grew {grown} KiB");
    // Everyone else is served meanwhile.
    for i in 0..10 {
        let mut other = server.client();
        assert_eq!(
            other.get(&format!("/echo?name={i}")).text(),
            format!("Hi, {i}!")
        );
    }
}

#[test]
fn connection_limit_refuses_with_503_then_recovers() {
    let server = TestServer::with(|c| c.server.max_connections_per_core = 2);
    let mut first = server.client();
    let mut second = server.client();
    assert_eq!(first.get("/echo?name=1").status, 200);
    assert_eq!(second.get("/echo?name=2").status, 200);
    let mut refused = server.client();
    let response = refused.response();
    assert_eq!(response.status, 503);
    assert!(refused.is_closed());
    // The connections already open are still served.
    assert_eq!(first.get("/echo?name=again").text(), "Hi, again!");
    drop(second);
    // Once a slot frees, new connections are served again.
    let recovered = (0..200).find_map(|_| {
        let mut client = server.client();
        client.send("GET /echo?name=back HTTP/1.1\r\nHost: t\r\n\r\n");
        let response = client.response();
        (response.status == 200).then_some(response)
    });
    assert_eq!(recovered.expect("a slot freed").text(), "Hi, back!");
}

#[test]
fn stalled_body_gets_408() {
    let server = TestServer::with(|c| c.http.body_timeout_ms = 200);
    let mut client = server.client();
    client.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
    assert_eq!(client.response().status, 408);
    assert!(client.is_closed());
}

/// A client that stops reading: once the server's send to it is held up (its socket full of
/// answers the client's closed window keeps there, its requests left unread), the core still
/// serves others, and the connection is cut `http.write_timeout_ms` after the send last made
/// progress: not before, and not much later.
#[test]
fn client_that_stops_reading_is_cut_off_after_the_write_timeout() {
    // Long enough that the stall is established (a flood, then 300 ms unchanged) well inside it.
    const WRITE_TIMEOUT: Duration = Duration::from_millis(3000);
    let server = TestServer::with(|c| c.http.write_timeout_ms = WRITE_TIMEOUT.as_millis() as u64);
    let connected = Instant::now();
    let mut greedy = common::small_window_client(server.addr);
    greedy.flood_until_held("greedy", Duration::from_millis(200));
    let stall = common::wait_until_send_stalled(&greedy.stream, connected);
    // The server holds answers it cannot send and requests it has not read: it stopped
    // reading because its send cannot finish.
    assert!(
        stall.server.tx_queue > 0 && stall.server.rx_queue > 0,
        "{stall:?}"
    );
    // Everyone else is served meanwhile (well inside the write timeout).
    for i in 0..5 {
        let mut other = server.client();
        assert_eq!(
            other.get(&format!("/echo?name={i}")).text(),
            format!("Hi, {i}!")
        );
    }
    let cut = common::wait_for_hang_up(&greedy.stream, WRITE_TIMEOUT + Duration::from_secs(20))
        .expect("the server never cut off a client that does not read");
    // The server's clock counts whole milliseconds: a little slack.
    let earliest = stall.progress_not_before + WRITE_TIMEOUT;
    assert!(
        cut + Duration::from_millis(20) >= earliest,
        "cut {:?} after the send last progressed, before the write timeout of {WRITE_TIMEOUT:?}",
        cut.duration_since(stall.progress_not_before)
    );
    let latest = stall.progress_not_after + WRITE_TIMEOUT + Duration::from_secs(5);
    assert!(
        cut <= latest,
        "cut {:?} after the send last progressed, for a write timeout of {WRITE_TIMEOUT:?}",
        cut.duration_since(stall.progress_not_after)
    );
    // Cut, not closed in order: the server's end is gone (reset), and writes fail.
    assert!(common::server_end(&greedy.stream).is_none_or(|row| row.state != 1));
    let mut failed = false;
    for _ in 0..100 {
        if greedy.stream.write_all(b"GET / HTTP/1.1\r\n\r\n").is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed, "writes still go through after the cut");
}

#[test]
fn resets_mid_head_and_mid_body_leave_the_core_serving() {
    let server = TestServer::start();
    for _ in 0..50 {
        for partial in [
            &b"GET /echo?name=x HTTP/1.1\r\nHo"[..],
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        ] {
            let mut client = server.client();
            client.send(partial);
            socket2::SockRef::from(&client.stream)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
    }
    assert_eq!(server.client().get("/echo?name=alive").text(), "Hi, alive!");
}

#[test]
fn smuggling_attempts_are_refused_and_closed() {
    let server = TestServer::start();
    let attempts: &[&[u8]] = &[
        // CL.TE and TE.CL
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
        // duplicate, differing Content-Length
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\n",
        // chunked not last, or hidden behind other codings
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n",
        // obs-fold hiding a Transfer-Encoding
        b"POST /echo HTTP/1.1\r\nHost: t\r\nX: y\r\n Transfer-Encoding: chunked\r\n\r\n",
        // whitespace before the colon
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        // NUL and bare CR in field values
        b"GET /echo?name=a HTTP/1.1\r\nHost: t\r\nX: a\0\r\n\r\n",
        b"GET /echo?name=a HTTP/1.1\r\nHost: t\r\nX: a\rTransfer-Encoding: chunked\r\n\r\n",
        // bare LF inside chunked framing
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n",
    ];
    for attempt in attempts {
        let mut client = server.client();
        client.send(attempt);
        let response = client.response();
        assert_eq!(
            response.status,
            400,
            "{:?}",
            String::from_utf8_lossy(attempt)
        );
        assert_eq!(response.header("connection"), Some("close"));
        assert!(client.is_closed(), "{:?}", String::from_utf8_lossy(attempt));
    }
}

#[test]
fn drain_finishes_a_request_in_flight_and_closes_idle_connections() {
    let mut server = TestServer::start();
    let addr = server.addr;
    let mut idle = server.client();
    assert_eq!(idle.get("/echo?name=idle").status, 200);
    let mut busy = server.client();
    busy.send(
        "PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n",
    );
    // The interim response proves the server holds this head: the request is in flight.
    assert_eq!(busy.response().status, 100);
    let stopper = std::thread::spawn(move || server.stop());
    // Draining has begun once the listener is gone.
    common::wait_until(
        "the listener stops accepting after shutdown began",
        Duration::from_secs(10),
        || TcpStream::connect(addr).is_err(),
    );
    assert!(idle.is_closed());
    busy.send("helloworld");
    assert_eq!(busy.response().status, 405);
    assert!(busy.is_closed());
    stopper.join().unwrap();
}

#[test]
fn drain_gives_up_on_hung_clients_at_its_deadline() {
    let mut server = TestServer::with(|c| c.server.drain_timeout_ms = 200);
    let mut hung = server.client();
    hung.send(
        "PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n",
    );
    assert_eq!(hung.response().status, 100);
    // Returns only if the deadline cuts the hung connection.
    server.stop();
    assert!(hung.is_closed());
}

#[test]
fn ten_thousand_concurrent_connections_each_get_an_answer() {
    const CONNECTIONS: usize = 10_000;
    let mut server = Percore::spawn(&["--port", "0", "--workers", "1"]);
    let addr = server.addr.clone();
    let mut clients = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        clients.push(Client::connect(addr.parse().unwrap()));
    }
    for (i, client) in clients.iter_mut().enumerate() {
        client.send(format!("GET /echo?name={i} HTTP/1.1\r\nHost: t\r\n\r\n"));
    }
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(client.response().text(), format!("Hi, {i}!"));
    }
    drop(clients);
    server.stop_with(libc::SIGTERM);
}

/// A client that sends its requests and then its FIN (shutdown of its write side) is still
/// owed every answer; once they are out the server closes its side in order (a FIN, not a
/// reset that could destroy answers still in flight).
#[test]
fn half_closed_pipelining_client_gets_every_response() {
    let mut server = TestServer::start();
    let mut client = server.client();
    client.send(
        "GET /echo?name=a HTTP/1.1\r\nHost: t\r\n\r\nGET /echo?name=b HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    client.stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(client.response().text(), "Hi, a!");
    assert_eq!(client.response().text(), "Hi, b!");
    assert!(client.closed_in_order());
    drop(client);
    let summary = server.server.take().unwrap().shutdown();
    assert_eq!(summary.cores[0].counters.requests(), 2);
}

/// With `server.defer_accept` the kernel holds a new connection until its first bytes
/// arrive: while its client is silent, the server's end of it stays SYN_RECV in the kernel's
/// table (the handshake's last ACK dropped) and percore has accepted nothing; once it sends,
/// percore accepts it and answers. A client silent past the deferral is accepted anyway (the
/// kernel completes the handshake at its first SYN-ACK retransmission), and served.
///
/// With the option off the kernel completes the connection as the ACK arrives and percore
/// accepts it at once: the first look fails.
#[test]
fn a_silent_client_is_held_by_the_kernel_until_it_sends() {
    let mut attempt = 0;
    let (server, mut stats, [mut early, mut late]) = loop {
        attempt += 1;
        let server = TestServer::with(|c| c.report.interval_ms = 10);
        let mut stats = Stats::new(server.client());
        let before = stats.current()["connections"]["accepted"].clone();
        assert_eq!(before, 1, "only the /stats client is connected yet");
        let opened = Instant::now();
        let silent = [server.client(), server.client()];
        if held_while_silent(&silent, &mut stats, opened) {
            break (server, stats, silent);
        }
        // Descheduled past the deferral before a conclusive look: this attempt proves
        // nothing either way.
        assert!(
            attempt < 5,
            "five attempts in a row could not look within {DEFERRAL_SURELY:?} of connecting"
        );
    };

    // Once it sends, percore accepts it and answers.
    assert_eq!(early.get("/echo?name=early").text(), "Hi, early!");
    // The other one stays silent: once the deferral ends, the kernel completes its
    // handshake and percore accepts it without a byte from it; then it is served.
    common::wait_for(
        "the kernel ends the deferral and percore accepts the silent client",
        Duration::from_secs(20),
        || {
            let state = common::server_end(&late.stream).map(|row| row.state);
            let total = stats.current();
            if state == Some(common::ESTABLISHED) && total["connections"]["accepted"] == 3 {
                Ok(())
            } else {
                Err(format!("server's end {state:?}; {total}"))
            }
        },
    );
    assert_eq!(late.get("/echo?name=late").text(), "Hi, late!");
    drop((early, late, stats));
    drop(server);
}

/// How long after connecting [`held_while_silent`] watches: with `defer_accept` off, the
/// kernel would have completed the connection and percore accepted it (and published the
/// count, every 10 ms) long before.
const WATCH: Duration = Duration::from_millis(300);

/// The kernel holds a silent connection until its first SYN-ACK retransmission, 1 s after
/// the SYN came (`DEFER_ACCEPT_SECONDS`, src/server/sockets.rs); a look that ends later
/// than this after connecting may see it completed, and proves nothing.
const DEFERRAL_SURELY: Duration = Duration::from_millis(900);

/// Looks at the `silent` clients (connected, never sending, since `opened`) until a look
/// begun [`WATCH`] after `opened` concludes: each look finds each client's connection
/// SYN_RECV on the server's side and `/stats` counting only the `/stats` connection as
/// accepted, or fails the test. True once a look proves it; false when the looks came too
/// late to (after [`DEFERRAL_SURELY`]: this thread was descheduled that long).
fn held_while_silent(silent: &[Client], stats: &mut Stats, opened: Instant) -> bool {
    // The first `/stats` request sent after `WATCH`: totals that count it were published
    // after then.
    let mut proof_from = None;
    common::wait_for(
        "a look at the silent clients after the watch",
        Duration::from_secs(20),
        || {
            let began = opened.elapsed();
            if began >= WATCH && proof_from.is_none() {
                proof_from = Some(stats.asked + 1);
            }
            let states: Vec<Option<u8>> = silent
                .iter()
                .map(|client| common::server_end(&client.stream).map(|row| row.state))
                .collect();
            let total = stats.latest();
            if opened.elapsed() >= DEFERRAL_SURELY {
                return Ok(false);
            }
            for state in states {
                assert_eq!(
                    state,
                    Some(common::SYN_RECV),
                    "{began:?} after connecting, before sending a byte, a client's connection \
                     was not held by the kernel (server's end: state {state:?}): \
                     server.defer_accept is not in effect"
                );
            }
            assert_eq!(
                total["connections"]["accepted"], 1,
                "{began:?} after connecting, before sending a byte, percore accepted a \
                 silent client: server.defer_accept is not in effect; {total}"
            );
            match proof_from {
                Some(request) if total["requests"].as_u64().unwrap() >= request => Ok(true),
                _ => Err(format!("{began:?} after connecting: {total}")),
            }
        },
    )
}

/// `/stats`'s totals, asked on a connection of its own. The requests it makes are the only
/// requests counted while the test looks, so the count in a total tells which of them it
/// was published after.
struct Stats {
    client: Client,
    /// `/stats` requests made so far.
    asked: u64,
}

impl Stats {
    fn new(client: Client) -> Stats {
        Stats { client, asked: 0 }
    }

    /// The totals as last published (once per report tick).
    fn latest(&mut self) -> serde_json::Value {
        let response = self.client.get("/stats");
        self.asked += 1;
        assert_eq!(response.status, 200);
        let stats: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        stats["total"].clone()
    }

    /// The totals, asked until published after this call began (they count its request).
    fn current(&mut self) -> serde_json::Value {
        let asking = self.asked + 1;
        common::wait_for(
            "/stats counts its own request",
            Duration::from_secs(20),
            || {
                let total = self.latest();
                if total["requests"].as_u64().unwrap() >= asking {
                    Ok(total)
                } else {
                    Err(total)
                }
            },
        )
    }
}
