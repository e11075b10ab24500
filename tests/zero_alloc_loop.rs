//! The whole ring loop allocates nothing per request: a counting global allocator watches
//! every thread of the process (the core's loop, glommio, the reporter, this test) while 50
//! warm keep-alive connections exchange pipelined requests with a real server.
//!
//! This file is its own test binary with a single test, because the allocator it installs
//! counts the allocations of every thread: another test running meanwhile would be counted.

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

const CONNECTIONS: usize = 50;
const PIPELINED: usize = 8;
const WARM_UP_ROUNDS: usize = 200;
const MEASURED_ROUNDS: usize = 20;
const REQUEST: &[u8] = b"GET /echo?name=Abcde HTTP/1.1\r\nHost: h\r\n\r\n";

/// One response as it must come back, but for the value of its Date field.
struct Expected {
    bytes: Vec<u8>,
    /// Where the Date value lies in `bytes` (it changes every second).
    date: std::ops::Range<usize>,
}

impl Expected {
    /// Learns the response from one request on `stream`.
    fn learn(stream: &mut TcpStream) -> Expected {
        stream.write_all(REQUEST).unwrap();
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 4096];
        let (head_end, length) = loop {
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0, "closed before a response");
            bytes.extend_from_slice(&chunk[..n]);
            if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&bytes[..end]).to_string();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .expect("a Content-Length")
                    .parse()
                    .unwrap();
                break (end + 4, length);
            }
        };
        while bytes.len() < head_end + length {
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0, "closed inside a body");
            bytes.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(bytes.len(), head_end + length, "one request, one response");
        assert!(bytes.ends_with(b"Hi, Abcde!"), "{bytes:?}");
        let start = bytes.windows(8).position(|w| w == b"\r\nDate: ").unwrap() + 8;
        Expected {
            bytes,
            date: start..start + 29,
        }
    }

    /// Whether `got` holds `PIPELINED` copies of this response (any Date values). Allocates
    /// nothing.
    fn matches(&self, got: &[u8]) -> bool {
        got.chunks(self.bytes.len()).all(|response| {
            response.len() == self.bytes.len()
                && response[..self.date.start] == self.bytes[..self.date.start]
                && response[self.date.end..] == self.bytes[self.date.end..]
        })
    }
}

/// Every connection sends `PIPELINED` requests in one write, then every connection reads
/// all its answers into `buf`. Returns how many answers did not match. Allocates nothing.
fn round(streams: &mut [TcpStream], batch: &[u8], buf: &mut [u8], expected: &Expected) -> usize {
    for stream in streams.iter_mut() {
        stream.write_all(batch).unwrap();
    }
    let mut mismatches = 0;
    for stream in streams.iter_mut() {
        stream.read_exact(buf).unwrap();
        if !expected.matches(buf) {
            mismatches += 1;
        }
    }
    mismatches
}

#[test]
fn warm_keep_alive_connections_cost_the_whole_loop_no_allocation_per_request() {
    let mut config = Config::default();
    config.server.port = 0;
    config.server.cores = CoreSpec::First(1);
    config.report.enabled = false;
    config.report.interval_ms = 0;
    let server = app::app().start(config).expect("server starts");
    let mut streams: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| {
            let stream = TcpStream::connect(server.local_addr()).unwrap();
            stream.set_nodelay(true).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            stream
        })
        .collect();
    let expected = Expected::learn(&mut streams[0]);
    let batch = REQUEST.repeat(PIPELINED);
    let mut buf = vec![0u8; expected.bytes.len() * PIPELINED];
    for _ in 0..WARM_UP_ROUNDS {
        assert_eq!(round(&mut streams, &batch, &mut buf, &expected), 0);
    }

    ALLOCATIONS.open();
    let mut mismatches = 0;
    for _ in 0..MEASURED_ROUNDS {
        mismatches += round(&mut streams, &batch, &mut buf, &expected);
    }
    ALLOCATIONS.close();
    let allocations = ALLOCATIONS.counted();
    assert_eq!(mismatches, 0, "answers did not match {:?}", expected.bytes);

    drop(streams);
    let summary = server.shutdown();
    let counters = summary.cores[0].counters;
    let requests = (CONNECTIONS * PIPELINED * MEASURED_ROUNDS) as u64;
    assert_eq!(
        counters.requests(),
        1 + (CONNECTIONS * PIPELINED * (WARM_UP_ROUNDS + MEASURED_ROUNDS)) as u64
    );
    eprintln!(
        "measured: {allocations} allocations for {requests} requests; {} loop parks in the \
         whole run",
        counters.parks
    );
    // Each time the loop finds nothing to do it sleeps, and glommio's own sleep may cost an
    // allocation or two (its preemption timers); answering requests must cost none. Parks are
    // counted over the whole run (nothing publishes them mid-run with reports off), so the
    // first bound is loose; the second is the real check: one allocation per pump or per
    // request would break it many times over.
    assert!(
        allocations <= 2 * counters.parks,
        "{allocations} allocations but only {} parks",
        counters.parks
    );
    assert!(
        allocations * 20 < requests,
        "{allocations} allocations for {requests} requests"
    );
}
