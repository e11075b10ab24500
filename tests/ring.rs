//! The io_uring network path under pressure, over real sockets: a provided-buffer ring that
//! runs dry (`ENOBUFS`) and is re-armed without losing or reordering a byte, a ring far
//! smaller than the connections using it, and connections reset while a send is in flight.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{Client, TempDir, TestServer};
use percore::config::IdleWait;

/// The body of a 405.
const NOT_ALLOWED: &str = "Method Not Allowed\n";

/// A connection's `index`-th request and what must come back for it. Names are distinct and
/// of varying length (some heads are longer than a 256-byte receive buffer); every fifth
/// request carries a Content-Length body and every seventh a chunked one, both longer than
/// a receive buffer, which must be read to their end for the next request to parse.
fn request(connection: usize, index: usize) -> (Vec<u8>, u16, String) {
    let pad: String = (0..(index * 37 + connection * 11) % 300)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let name = format!("c{connection}-r{index}-{pad}");
    if index % 5 == 4 {
        let body = name.repeat(3);
        let head = format!(
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        return ([head, body].concat().into_bytes(), 405, NOT_ALLOWED.into());
    }
    if index % 7 == 6 {
        let chunk = format!("{name}{name}");
        let bytes = format!(
            "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
             {:x}\r\n{chunk}\r\n{:x};ext=1\r\n{name}\r\n0\r\n\r\n",
            chunk.len(),
            name.len()
        );
        return (bytes.into_bytes(), 405, NOT_ALLOWED.into());
    }
    let bytes = format!("GET /echo?name={name} HTTP/1.1\r\nHost: t\r\n\r\n");
    (bytes.into_bytes(), 200, format!("Hi, {name}!"))
}

/// Deterministic chunk lengths from 1 to `max` bytes (xorshift), so that writes split
/// requests anywhere: inside a method, a field name, a CRLF, a chunk size, a body.
struct Splits(u64);

impl Splits {
    fn next(&mut self, max: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        1 + (self.0 % max as u64) as usize
    }
}

/// The ring has 2 receive buffers of 256 bytes for 64 connections writing at once: receives
/// keep ending with `ENOBUFS` and must be armed again once buffers come back, with every
/// byte kept in order.
#[test]
fn a_ring_of_two_small_buffers_loses_and_reorders_nothing() {
    const CONNECTIONS: usize = 64;
    const REQUESTS: usize = 150;
    let mut server = TestServer::with(|c| {
        c.runtime.recv_buffers = 2;
        c.runtime.recv_buffer_bytes = 256;
    });
    let addr = server.addr;
    std::thread::scope(|scope| {
        for connection in 0..CONNECTIONS {
            scope.spawn(move || {
                let mut client = Client::connect(addr);
                let mut writer = client.stream.try_clone().unwrap();
                let expected: Vec<(u16, String)> = (0..REQUESTS)
                    .map(|i| {
                        let (_, status, body) = request(connection, i);
                        (status, body)
                    })
                    .collect();
                let bytes: Vec<u8> = (0..REQUESTS)
                    .flat_map(|i| request(connection, i).0)
                    .collect();
                // Written from a thread of its own while this one reads, so that neither
                // side waits on the other's buffers.
                let sender = std::thread::spawn(move || {
                    let mut splits = Splits(0x9e37_79b9_7f4a_7c15 ^ connection as u64);
                    let mut rest = &bytes[..];
                    while !rest.is_empty() {
                        let n = splits.next(700).min(rest.len());
                        writer.write_all(&rest[..n]).unwrap();
                        rest = &rest[n..];
                    }
                });
                for (i, (status, body)) in expected.iter().enumerate() {
                    let response = client.response();
                    assert_eq!(
                        (response.status, &response.text()),
                        (*status, body),
                        "connection {connection}, request {i}"
                    );
                }
                sender.join().unwrap();
            });
        }
    });
    let summary = server.server.take().unwrap().shutdown();
    let counters = summary.cores[0].counters;
    assert_eq!(counters.requests(), (CONNECTIONS * REQUESTS) as u64);
    assert_eq!(counters.protocol_errors, 0);
    assert_eq!(counters.accepted, CONNECTIONS as u64);
}

/// 1,000 connections share 4 receive buffers: all connect, then all send a request, then
/// all read their answer.
#[test]
fn a_thousand_connections_share_four_receive_buffers() {
    const CONNECTIONS: usize = 1000;
    let mut server = TestServer::with(|c| c.runtime.recv_buffers = 4);
    let mut clients: Vec<Client> = (0..CONNECTIONS).map(|_| server.client()).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        client.send(format!(
            "GET /echo?name=conn{i} HTTP/1.1\r\nHost: t\r\n\r\n"
        ));
    }
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(client.response().text(), format!("Hi, conn{i}!"));
    }
    drop(clients);
    let summary = server.server.take().unwrap().shutdown();
    let counters = summary.cores[0].counters;
    assert_eq!(counters.accepted, CONNECTIONS as u64);
    assert_eq!(counters.requests(), CONNECTIONS as u64);
}

/// Clients reset their connections (or close them with unread bytes, which resets them too)
/// while the server's sends to them are in flight, blocked on full buffers: the sends fail,
/// the records go, the core serves on and shuts down with every connection closed.
#[test]
fn connections_reset_while_their_send_is_in_flight_are_released() {
    const LARGE: u64 = 15 << 20;
    const DIRECT: u64 = 64 << 20;
    let dir = TempDir::new("reset");
    dir.write("small.txt", "small");
    for (name, size) in [("large.bin", LARGE), ("direct.bin", DIRECT)] {
        // Sparse: nothing to write, all to read.
        std::fs::File::create(dir.0.join(name))
            .unwrap()
            .set_len(size)
            .unwrap();
    }
    let root = dir.0.clone();
    let mut server = TestServer::with(move |c| {
        c.static_files.root = root;
        // Only the client ends these connections, never the server's own timeout.
        c.http.write_timeout_ms = 60_000;
        c.report.interval_ms = 50;
    });
    assert!(DIRECT >= server_directio_bytes());
    let started = Instant::now();
    let mut made = 0u64;
    // Small receive windows: the server's sends are held up after a few hundred KiB.
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut client = common::small_window_client(server.addr);
        client.flood_until_held("flood", Duration::from_millis(200));
        stalled.push((client, None));
    }
    for path in ["/large.bin", "/direct.bin", "/large.bin", "/direct.bin"] {
        let mut client = common::small_window_client(server.addr);
        // Twice, pipelined: the second waits behind the first.
        let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
        client.send(request.repeat(2));
        let size = if path == "/large.bin" { LARGE } else { DIRECT };
        stalled.push((client, Some(size)));
    }
    // Each send is really held up: the server's end keeps bytes it cannot send, unchanged,
    // while it has more to send: requests it has not read yet (the floods), or the rest of
    // a file no buffer on the way can hold (the downloads).
    std::thread::scope(|scope| {
        for (client, file) in &stalled {
            scope.spawn(move || {
                let stall = common::wait_until_send_stalled(&client.stream, started);
                match file {
                    None => assert!(stall.server.rx_queue > 0, "{stall:?}"),
                    Some(size) => assert!(
                        stall.server.tx_queue + (stall.unread as u64) < *size,
                        "{stall:?}"
                    ),
                }
            });
        }
    });
    made += stalled.len() as u64;
    for (i, (client, _)) in stalled.into_iter().enumerate() {
        if i % 2 == 0 {
            // SO_LINGER 0: close sends a reset at once.
            socket2::SockRef::from(&client.stream)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
        drop(client);
    }
    // The core serves new connections as before.
    for i in 0..3 {
        let mut client = server.client();
        assert_eq!(
            client.get(&format!("/echo?name=after{i}")).text(),
            format!("Hi, after{i}!")
        );
        made += 1;
    }
    let mut client = server.client();
    assert_eq!(client.get("/small.txt").body, b"small");
    drop(client);
    made += 1;
    // Every record is released: once a tick has counted all connections made (this one
    // included), the only one open is this one.
    let mut stats = server.client();
    made += 1;
    common::wait_for(
        "every connection but this one is closed after the resets",
        Duration::from_secs(20),
        || {
            let response = stats.get("/stats");
            assert_eq!(response.status, 200);
            let json: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
            let total = &json["total"];
            if total["connections"]["accepted"] == made && total["open"] == 1 {
                Ok(())
            } else {
                Err(total.clone())
            }
        },
    );
    drop(stats);
    // Shutdown completes, with every connection accepted also closed.
    let summary = server.server.take().unwrap().shutdown();
    let counters = summary.cores[0].counters;
    assert_eq!(counters.accepted, made);
    assert_eq!(counters.closed, made);
}

/// The size from which files are read with direct I/O, by default.
fn server_directio_bytes() -> u64 {
    percore::config::Config::default()
        .static_files
        .directio_bytes
}

/// With `runtime.idle_wait = "glommio"` an idle core always parks through glommio, woken by
/// the ring's eventfd or by a ring timeout for its next deadline: requests after pauses are
/// answered, pipelining works, and the head and keep-alive deadlines fire while it is parked.
#[test]
fn parking_through_glommio_wakes_for_requests_and_deadlines() {
    let mut server = TestServer::with(|c| {
        c.runtime.idle_wait = IdleWait::Glommio;
        c.http.header_timeout_ms = 300;
        c.http.keepalive_timeout_ms = 600;
    });
    let mut client = server.client();
    for i in 0..5 {
        // Each pause leaves the core nothing to do: it parks.
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(
            client.get(&format!("/echo?name={i}")).text(),
            format!("Hi, {i}!")
        );
    }
    client.send(
        "GET /echo?name=a HTTP/1.1\r\nHost: t\r\n\r\nGET /echo?name=b HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(client.response().text(), "Hi, a!");
    assert_eq!(client.response().text(), "Hi, b!");

    let mut slow = server.client();
    slow.send("GET /echo?name=slow HTTP/1.1\r\n");
    assert_eq!(slow.response().status, 408);
    assert!(slow.is_closed());
    // The keep-alive deadline closes the first connection without any traffic to wake the core.
    assert!(client.is_closed());

    drop(client);
    server.stop();
}

/// How often a core with nothing to do (no connection, no report tick, no access log: no
/// deadline at all) parks during an idle window of `IDLE`, with `idle_wait`.
fn parks_while_idle(idle_wait: IdleWait) -> u64 {
    let mut server = TestServer::with(|c| {
        c.runtime.idle_wait = idle_wait;
        c.report.enabled = false;
    });
    // The window measured, not a wait for anything.
    std::thread::sleep(IDLE);
    let summary = server.server.take().unwrap().shutdown();
    summary.cores[0].counters.parks
}

/// The idle window of [`parks_while_idle`].
const IDLE: Duration = Duration::from_millis(1500);

/// The `parks` counter rises on every park, whichever way the core sleeps, so `parks > 0`
/// says nothing about glommio. What does: a sleep in the core's own ring lasts at most
/// `RING_WAIT_MAX_MS` (100 ms) before the loop parks again, while a park through glommio
/// with no deadline lasts until something happens. So over an idle window of 1.5 s a core
/// waiting in its ring parks at least 15 times (the control, `idle_wait = "ring"`), and one
/// parking through glommio only a few times (start, stop). (A counter of parks through
/// glommio in the server's own counters would say it directly.)
#[test]
fn an_idle_core_parks_through_glommio_for_longer_than_a_ring_wait_lasts() {
    let ring = parks_while_idle(IdleWait::Ring);
    let glommio = parks_while_idle(IdleWait::Glommio);
    eprintln!("parks over {IDLE:?} idle: ring {ring}, glommio {glommio}");
    // Even a core starved of CPU wakes from its ring more often than this.
    assert!(
        ring >= 8,
        "the control: a core sleeping in its ring parked only {ring} times in {IDLE:?}"
    );
    assert!(
        glommio <= 4,
        "a core told to park through glommio parked {glommio} times in {IDLE:?} idle: \
         each of its sleeps lasted no longer than a ring wait"
    );
}
