//! What a core frees when it leaves: nothing the kernel still holds. A client that stops
//! reading keeps a large response's send in flight, with receives and an accept armed
//! beside it; the core then leaves, once by the error path (its `io_uring_enter` fails) and
//! once by a drain cut short. Every operation must be cancelled and reaped before its
//! memory is freed: the run's counters say how many the kernel held when the core left
//! (`exit_in_flight`) and how many it had not given back in time (`exit_leaked`, their
//! memory left allocated rather than freed under the kernel), and the process goes on
//! unharmed (a use after free would show as a crash or as garbage on another connection).

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{wait_until_send_stalled, Client};
use percore::config::{Config, CoreSpec};
use percore::{App, Request, Response};

/// Bytes of the response a client leaves unread: far more than the sockets between them
/// hold, so the server's send stays in flight.
const LARGE: usize = 16 << 20;

fn large(_: &Request, response: &mut Response, _: &()) {
    response.body(&vec![b'x'; LARGE]);
}

fn fail(_: &Request, response: &mut Response, _: &()) {
    percore::internals::fail_next_ring_enter();
    response.text("leaving");
}

fn app() -> App<()> {
    App::new(|_| Ok(()))
        .get("/large", large)
        .get("/fail", fail)
        .get("/small", |_, response, _| {
            response.text("small");
        })
}

fn config(drain_timeout_ms: u64) -> Config {
    let mut config = Config::default();
    config.server.port = 0;
    config.server.cores = CoreSpec::First(1);
    config.report.interval_ms = 0;
    config.server.drain_timeout_ms = drain_timeout_ms;
    config.server.drain_idle_grace_ms = 50;
    config
}

/// A client that asks for the large response and reads none of it, once the server's send
/// is held up.
fn stalled_reader(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    let since = Instant::now();
    stream
        .write_all(b"GET /large HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    wait_until_send_stalled(&stream, since);
    stream
}

#[test]
fn a_core_that_leaves_by_the_error_path_frees_nothing_the_kernel_holds() {
    let server = app().start(config(10_000)).expect("starts");
    let addr = server.local_addr();
    let _stalled = stalled_reader(addr);
    // Another connection, its receive armed, and the core's accept: in flight too.
    let mut other = Client::connect(addr);
    assert_eq!(other.get("/small").text(), "small");
    // The handler makes the loop's next io_uring_enter fail: the core leaves its loop.
    let mut failing = TcpStream::connect(addr).unwrap();
    failing
        .write_all(b"GET /fail HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    common::wait_until("the core has left", Duration::from_secs(20), || {
        other.is_closed()
    });
    let counters = server.shutdown().merged_counters();
    // The stalled send, two receives, the accept and the stop poll at least.
    assert!(
        counters.exit_in_flight >= 4,
        "the kernel held the stalled send and more: {counters:?}"
    );
    assert_eq!(
        counters.exit_leaked, 0,
        "all given back in time: {counters:?}"
    );
}

#[test]
fn a_core_whose_drain_is_cut_short_frees_nothing_the_kernel_holds() {
    let server = app().start(config(200)).expect("starts");
    let addr = server.local_addr();
    let stalled = stalled_reader(addr);
    let started = Instant::now();
    let counters = server.shutdown().merged_counters();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the drain's cut ended the stalled connection"
    );
    assert_eq!(
        counters.exit_leaked, 0,
        "all given back in time: {counters:?}"
    );
    // The client got part of the response, then the end of the connection.
    drop(stalled);
    // The process is unharmed: a new server on a new core serves as usual.
    let server = app().start(config(10_000)).expect("starts again");
    let mut client = Client::connect(server.local_addr());
    assert_eq!(client.get("/small").text(), "small");
    let counters = server.shutdown().merged_counters();
    assert_eq!(counters.exit_leaked, 0, "{counters:?}");
}
