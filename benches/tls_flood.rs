//! A flood of TLS ClientHellos, for the load benchmark's flood row: connections that each
//! send a client's first flight, read the server's answer (which made the server do a key
//! exchange and sign) and leave without finishing, as fast as they can, from several
//! threads, for a given time.
//!
//! `cargo bench --bench tls_flood -- ADDR SECONDS [THREADS]`

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

// The flood never verifies anything: it leaves before the handshake ends.
#[path = "support/blind.rs"]
mod blind;
use blind::Blind;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some(addr) = args.first().cloned() else {
        // `cargo test --all-targets` runs this target without arguments: nothing to measure.
        println!("usage: cargo bench --bench tls_flood -- ADDR SECONDS [THREADS]");
        return;
    };
    let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let threads: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(4);
    let config = Arc::new(
        ClientConfig::builder_with_provider(
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs offers TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Blind))
        .with_no_client_auth(),
    );
    let until = Instant::now() + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (addr, config) = (addr.clone(), config.clone());
            std::thread::spawn(move || {
                let mut hellos = 0u64;
                let mut answer = [0u8; 16384];
                while Instant::now() < until {
                    let name = ServerName::try_from("localhost").expect("a name");
                    let mut client = ClientConnection::new(config.clone(), name).expect("a client");
                    let mut hello = Vec::new();
                    client.write_tls(&mut hello).expect("a ClientHello");
                    let Ok(mut stream) = TcpStream::connect(&addr) else {
                        continue;
                    };
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    if stream.write_all(&hello).is_ok() && stream.read(&mut answer).is_ok() {
                        hellos += 1;
                    }
                }
                hellos
            })
        })
        .collect();
    let hellos: u64 = workers
        .into_iter()
        .map(|w| w.join().expect("a worker"))
        .sum();
    println!(
        "{hellos} ClientHellos answered in {seconds} s ({:.0} per second)",
        hellos as f64 / seconds as f64
    );
}
