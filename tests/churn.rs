//! Memory under connection churn: a server whose clients open a connection per request
//! (health checks, many API clients) must not grow with its connection rate. A closed
//! connection leaves nothing behind: not in the table, not in the timing wheel (whose
//! per-slot lists once kept every closed connection until its keep-alive deadline, 60 s
//! later, and grew by about 4.5 MB per 100,000 connections).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Percore;

/// Connections per batch: enough that the old wheel's 16 bytes per connection (and its
/// vectors' slack) would pass the bound below several times over.
const BATCH: usize = 25_000;

/// RSS the server may gain from the first batch's end to the last's.
const BOUND_KIB: u64 = 512;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// `count` connections, one request each, from four threads.
fn churn(addr: &str, count: usize) {
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let addr = addr.to_string();
            std::thread::spawn(move || {
                let mut reply = Vec::with_capacity(512);
                for _ in 0..count / 4 {
                    let mut stream = TcpStream::connect(&addr).expect("connect");
                    stream
                        .set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    stream
                        .write_all(b"GET /echo?name=churn HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                        .unwrap();
                    reply.clear();
                    stream.read_to_end(&mut reply).expect("a whole response");
                    assert!(reply.ends_with(b"Hi, churn!"), "{:?}", String::from_utf8_lossy(&reply));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("client thread");
    }
}

#[test]
fn connection_churn_does_not_grow_the_servers_memory() {
    let mut server = Percore::spawn(&["--port", "0", "--cores", "0"]);
    let pid = server.child.id();
    let started = Instant::now();
    churn(&server.addr, BATCH);
    let warm = rss_kib(pid);
    let mut after = Vec::new();
    for _ in 0..3 {
        churn(&server.addr, BATCH);
        after.push(rss_kib(pid));
    }
    let grown = after.iter().max().unwrap().saturating_sub(warm);
    eprintln!(
        "churn: {} connections in {:.1} s, RSS {warm} KiB after the warm-up, then {after:?} KiB",
        4 * BATCH,
        started.elapsed().as_secs_f64()
    );
    assert!(
        grown <= BOUND_KIB,
        "RSS grew {grown} KiB over {} connections after the warm-up ({warm} → {after:?})",
        3 * BATCH
    );
    server.stop_with(libc::SIGTERM);
}
