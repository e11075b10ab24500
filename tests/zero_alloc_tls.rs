//! Warm TLS keep-alive requests allocate nothing on the server's core: decryption in place,
//! parse, route, encode, encryption, send. A counting allocator counts the allocations of the
//! core's thread only (the state factory, which runs on that thread, marks it), while the
//! test's own TLS client (rustls, which allocates per record) drives 50 warm connections.

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use percore::config::{Config, CoreSpec, TlsConfig};
use percore::App;
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

mod common;
#[path = "common/counting.rs"]
mod counting;
#[path = "common/tls.rs"]
mod tls;

thread_local! {
    /// This thread is the server's core.
    static CORE: Cell<bool> = const { Cell::new(false) };
}

/// Allocations made by the core's thread while the gate was open.
static ALLOCATIONS: counting::Gate = counting::Gate::new();

fn count() {
    if CORE.with(Cell::get) {
        ALLOCATIONS.count();
    }
}

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting(count);

const CONNECTIONS: usize = 50;
const PIPELINED: usize = 8;
const WARM_UP_ROUNDS: usize = 100;
const MEASURED_ROUNDS: usize = 25;
const REQUEST: &[u8] = b"GET /echo?name=Abcde HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// Reads responses until `count` whole ones have arrived (each ends with the echo's body).
fn read_responses(stream: &mut impl Read, count: usize) {
    let mut seen = 0;
    let mut buf = [0u8; 16384];
    let mut tail = Vec::new();
    while seen < count {
        let n = stream.read(&mut buf).expect("a response");
        assert!(n > 0, "closed after {seen} of {count} responses");
        tail.extend_from_slice(&buf[..n]);
        seen += tail.windows(10).filter(|w| w == b"Hi, Abcde!").count();
        let keep = tail.len().min(9);
        tail.drain(..tail.len() - keep);
    }
    assert_eq!(seen, count, "more responses than requests");
}

#[test]
fn warm_tls_keep_alive_requests_allocate_nothing_on_the_core() {
    let pki = tls::Pki::new("zero-alloc");
    let leaf = pki.leaf("server", tls::DEFAULT_NAMES);
    let mut config = Config::default();
    config.server.port = 0;
    config.server.cores = CoreSpec::First(1);
    config.report.enabled = false;
    config.report.interval_ms = 0;
    let mut tls = TlsConfig::new(leaf.cert, leaf.key);
    tls.port = 0;
    config.tls = Some(tls);
    let app = App::new(|_| {
        CORE.with(|core| core.set(true));
        Ok(())
    })
    .get("/echo", common::app::echo);
    let server = app.start(config).expect("server starts");
    let addr = server.tls_addr().expect("a TLS listener");

    let client = pki.client(tls::BOTH);
    let mut streams: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let tcp = TcpStream::connect(addr).unwrap();
            tcp.set_nodelay(true).unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            StreamOwned::new(ClientConnection::new(client.clone(), name).unwrap(), tcp)
        })
        .collect();
    let batch = REQUEST.repeat(PIPELINED);
    let round = |streams: &mut Vec<StreamOwned<ClientConnection, TcpStream>>| {
        for stream in streams.iter_mut() {
            stream.write_all(&batch).unwrap();
        }
        for stream in streams.iter_mut() {
            read_responses(stream, PIPELINED);
        }
    };
    for _ in 0..WARM_UP_ROUNDS {
        round(&mut streams);
    }
    ALLOCATIONS.open();
    for _ in 0..MEASURED_ROUNDS {
        round(&mut streams);
    }
    ALLOCATIONS.close();
    let allocations = ALLOCATIONS.counted();
    let requests = CONNECTIONS * PIPELINED * MEASURED_ROUNDS;
    drop(streams);
    let parks = server.shutdown().cores[0].counters.parks;
    eprintln!(
        "{allocations} allocations on the core for {requests} TLS requests; {parks} loop parks \
         in the whole run"
    );
    // Each time the loop finds nothing to do it sleeps, and glommio's own sleep may cost an
    // allocation or two (its preemption timers): none to 4 on a quiet machine, 12 to 18 with
    // both CPUs busy (the core parks more often). Answering requests must cost none: one
    // per request, per record, or per connection and round would be a thousand or more.
    // Parks are counted over the whole run, so the first bound is loose; the second is the
    // real check.
    assert!(
        allocations <= 2 * parks,
        "{allocations} allocations but only {parks} parks"
    );
    assert!(
        allocations * 100 < requests as u64,
        "{allocations} allocations on the core for {requests} warm TLS requests"
    );
}
