//! Clients that misbehave after the TLS handshake, for the load benchmark's abuse row: each
//! connection completes a handshake, then sends what the mode says as fast as it can,
//! reading nothing, until the server ends it; then the next connection. From several
//! threads, for a given time.
//!
//! Modes:
//! - `keyupdates`: TLS 1.3 KeyUpdate requests, each followed by an empty application-data
//!   record, forever: within percore's limits (the empty record resets the count of key
//!   updates), so the connection lives and every pair costs the server a key derivation and
//!   two records to open: the most a client can make percore do per byte without being cut.
//! - `keyupdate-limit`: 1,000 KeyUpdate requests in a row: the 33rd is fatal.
//! - `renegotiate`: TLS 1.2 renegotiation ClientHellos: the second is fatal.
//!
//! Prints how many records were sent and how many connections the server ended.
//!
//! `cargo bench --bench tls_abuse -- ADDR SECONDS MODE [THREADS]`

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ClientConfig;

#[path = "support/blind.rs"]
mod blind;
#[path = "../tests/common/records.rs"]
mod records;
use blind::Blind;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    KeyUpdates,
    KeyUpdateLimit,
    Renegotiate,
}

/// What one thread did: records sent, connections the server ended.
#[derive(Default)]
struct Tally {
    records: u64,
    ended: u64,
}

/// One connection: the handshake, then the abuse until the server ends it or time is up.
fn abuse(addr: &str, config: &ClientConfig, mode: Mode, until: Instant, tally: &mut Tally) {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok((mut client, _)) = records::connect(config, "localhost", &mut stream) else {
        return;
    };
    let mut batch = Vec::new();
    while Instant::now() < until {
        batch.clear();
        let sent = match mode {
            Mode::KeyUpdates => {
                for _ in 0..64 {
                    batch.extend(client.seal(records::HANDSHAKE, &records::key_update(true)));
                    batch.extend(client.seal(records::APPLICATION_DATA, &[]));
                }
                128
            }
            Mode::KeyUpdateLimit => {
                for _ in 0..1000 {
                    batch.extend(client.seal(records::HANDSHAKE, &records::key_update(true)));
                }
                1000
            }
            Mode::Renegotiate => {
                for i in 0..100u8 {
                    let hello = records::renegotiation_client_hello([i; 32]);
                    batch.extend(client.seal(records::HANDSHAKE, &hello));
                }
                100
            }
        };
        if stream.write_all(&batch).is_err() {
            tally.ended += 1;
            return;
        }
        tally.records += sent;
        if mode != Mode::KeyUpdates {
            // The server ends the connection: read to its close.
            let mut sink = [0u8; 4096];
            while let Ok(1..) = stream.read(&mut sink) {}
            tally.ended += 1;
            return;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (Some(addr), Some(mode)) = (args.first().cloned(), args.get(2)) else {
        // `cargo test --all-targets` runs this target without arguments: nothing to measure.
        println!("usage: cargo bench --bench tls_abuse -- ADDR SECONDS keyupdates|keyupdate-limit|renegotiate [THREADS]");
        return;
    };
    let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let mode = match mode.as_str() {
        "keyupdates" => Mode::KeyUpdates,
        "keyupdate-limit" => Mode::KeyUpdateLimit,
        "renegotiate" => Mode::Renegotiate,
        other => panic!("no mode {other:?}"),
    };
    let threads: usize = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(2);
    let version = match mode {
        Mode::Renegotiate => &rustls::version::TLS12,
        _ => &rustls::version::TLS13,
    };
    let config = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[version])
    .expect("aws-lc-rs offers TLS 1.2 and 1.3")
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(Blind))
    .with_no_client_auth();
    let config = records::extractable(&config);
    let until = Instant::now() + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (addr, config) = (addr.clone(), config.clone());
            std::thread::spawn(move || {
                let mut tally = Tally::default();
                while Instant::now() < until {
                    abuse(&addr, &config, mode, until, &mut tally);
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::default();
    for worker in workers {
        let tally = worker.join().expect("a worker");
        total.records += tally.records;
        total.ended += tally.ended;
    }
    println!(
        "{} records sent in {seconds} s ({:.0} per second), {} connections ended by the server",
        total.records,
        total.records as f64 / seconds as f64,
        total.ended
    );
}
