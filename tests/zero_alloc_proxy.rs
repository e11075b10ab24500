//! What a warm proxied request costs the heap, counted: a counting global allocator watches
//! every thread of the process while keep-alive clients send requests through percore's
//! proxy to a backend (a second percore, the binary's `/echo`, which allocates nothing per
//! request itself: `tests/zero_alloc_loop.rs`).
//!
//! A proxied request allocates once, named here and in the README: the request as it is
//! forwarded (a vector the application writes, kept until the response is through, to be
//! sent again after a failure). The relay that carries it reuses the box of one that ended;
//! nothing else on the way, both legs included, may allocate: the bound is one per
//! request.
//!
//! Its own test binary with a single test: the allocator counts every thread.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use percore::config::{Config, CoreSpec};

#[path = "common/counting.rs"]
mod counting;

#[path = "common/app.rs"]
mod app;

/// Allocations (and reallocations) made by any thread while the gate was open.
static ALLOCATIONS: counting::Gate = counting::Gate::new();

fn count() {
    ALLOCATIONS.count();
}

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting(count);

const CONNECTIONS: usize = 20;
const WARM_UP_ROUNDS: usize = 300;
const MEASURED_ROUNDS: usize = 50;
const REQUEST: &[u8] = b"GET /echo?name=Abcde HTTP/1.1\r\nHost: h\r\n\r\n";

/// The allocations a proxied request is allowed (see the file's comment).
const PER_REQUEST: u64 = 1;

fn one_core() -> Config {
    let mut config = Config::default();
    config.server.port = 0;
    config.server.cores = CoreSpec::First(1);
    config.report.enabled = false;
    config.report.interval_ms = 0;
    config
}

/// Sends one request on each stream, then reads each answer (`len` bytes) into `buf`.
/// Returns how many were not `Hi, Abcde!` answers. Allocates nothing.
fn round(streams: &mut [TcpStream], buf: &mut [u8]) -> usize {
    for stream in streams.iter_mut() {
        stream.write_all(REQUEST).unwrap();
    }
    let mut wrong = 0;
    for stream in streams.iter_mut() {
        stream.read_exact(buf).unwrap();
        if !buf.ends_with(b"Hi, Abcde!") {
            wrong += 1;
        }
    }
    wrong
}

#[test]
fn a_warm_proxied_request_allocates_only_its_forwarded_bytes() {
    let backend = app::app().start(one_core()).expect("backend starts");
    let toml = format!(
        "[[upstream]]\nname = \"backend\"\nservers = [\"{}\"]\nkeepalive = 64\n\
         [[proxy]]\npath = \"/\"\nupstream = \"backend\"\n",
        backend.local_addr()
    );
    let parsed = Config::from_toml(&toml, "test").unwrap();
    let mut config = one_core();
    config.upstream = parsed.upstream;
    config.proxy = parsed.proxy;
    let proxy = app::app().start(config).expect("proxy starts");
    let mut streams: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| {
            let stream = TcpStream::connect(proxy.local_addr()).unwrap();
            stream.set_nodelay(true).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            stream
        })
        .collect();
    // Learn the answer's length (its Date changes, its length does not).
    streams[0].write_all(REQUEST).unwrap();
    let mut first = Vec::new();
    let mut chunk = [0u8; 4096];
    while !first.ends_with(b"Hi, Abcde!") {
        let n = streams[0].read(&mut chunk).unwrap();
        assert!(n > 0, "closed before an answer");
        first.extend_from_slice(&chunk[..n]);
    }
    let mut buf = vec![0u8; first.len()];
    for _ in 0..WARM_UP_ROUNDS {
        assert_eq!(round(&mut streams, &mut buf), 0);
    }

    ALLOCATIONS.open();
    let mut wrong = 0;
    for _ in 0..MEASURED_ROUNDS {
        wrong += round(&mut streams, &mut buf);
    }
    ALLOCATIONS.close();
    let allocations = ALLOCATIONS.counted();
    assert_eq!(wrong, 0);

    drop(streams);
    let summary = proxy.shutdown();
    drop(backend.shutdown());
    let counters = summary.cores[0].counters;
    let requests = (CONNECTIONS * MEASURED_ROUNDS) as u64;
    eprintln!(
        "measured: {allocations} allocations for {requests} proxied requests ({:.2} each); \
         {} upstream connections opened in the whole run",
        allocations as f64 / requests as f64,
        counters.upstream_connects
    );
    // Parks (each may cost glommio an allocation or two) are few under this load; the
    // bound is the one named allocation per request, and a little for the parks.
    assert!(
        allocations <= PER_REQUEST * requests + 2 * counters.parks,
        "{allocations} allocations for {requests} requests ({} parks)",
        counters.parks
    );
    assert!(counters.upstream_connects <= CONNECTIONS as u64);
}
