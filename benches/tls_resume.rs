//! The load benchmark's resumed-handshake row: connections that each resume a TLS session
//! (a ticket from an earlier one), send one request and close, from several threads.
//! Prints how many of the handshakes resumed.
//!
//! `cargo bench --bench tls_resume -- ADDR CAFILE [CONNECTIONS] [THREADS] [KX]`
//!
//! KX is `classic` (the default: X25519, then P-256, as OpenSSL 3.0 offers, so that every
//! server does the same key exchange) or `hybrid` (rustls's default offer, X25519MLKEM768
//! first, which nginx with OpenSSL 3.0 cannot take).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, RootCertStore, StreamOwned};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (Some(addr), Some(ca)) = (args.first(), args.get(1)) else {
        // `cargo test --all-targets` runs this target without arguments: nothing to measure.
        println!(
            "usage: cargo bench --bench tls_resume -- ADDR CAFILE [CONNECTIONS] [THREADS] [classic|hybrid]"
        );
        return;
    };
    let total: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let threads: usize = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(8);
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    match args.get(4).map(String::as_str) {
        None | Some("classic") => {
            provider.kx_groups = vec![
                rustls::crypto::aws_lc_rs::kx_group::X25519,
                rustls::crypto::aws_lc_rs::kx_group::SECP256R1,
            ]
        }
        Some("hybrid") => {}
        Some(other) => panic!("KX is classic or hybrid, not {other:?}"),
    }
    let provider = Arc::new(provider);
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("the CA file") {
        roots
            .add(cert.expect("a PEM certificate"))
            .expect("a CA certificate");
    }
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (addr, roots, provider) = (addr.clone(), roots.clone(), provider.clone());
            std::thread::spawn(move || {
                // Each thread its own client configuration, and so its own ticket store.
                let config = Arc::new(
                    ClientConfig::builder_with_provider(provider)
                        .with_safe_default_protocol_versions()
                        .expect("TLS 1.2 and 1.3")
                        .with_root_certificates(roots)
                        .with_no_client_auth(),
                );
                // The first connection is a full handshake: it brings the tickets.
                one(&addr, &config);
                let mut resumed = 0;
                for _ in 0..total / threads {
                    resumed += usize::from(one(&addr, &config));
                }
                resumed
            })
        })
        .collect();
    let resumed: usize = workers
        .into_iter()
        .map(|w| w.join().expect("a worker"))
        .sum();
    let done = total / threads * threads;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{done} connections, {resumed} resumed ({:.2}%), {:.0} per second",
        100.0 * resumed as f64 / done as f64,
        done as f64 / seconds
    );
}

/// One connection: handshake, one request, its answer, close. Returns whether it resumed.
fn one(addr: &str, config: &Arc<ClientConfig>) -> bool {
    let name = ServerName::try_from("localhost").expect("a name");
    let conn = ClientConnection::new(config.clone(), name).expect("a client");
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let mut stream = StreamOwned::new(conn, tcp);
    stream
        .write_all(b"GET /echo?name=Abcde HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut reply = Vec::with_capacity(256);
    // A server that closes without close_notify is not an error for this count.
    let _ = stream.read_to_end(&mut reply);
    assert!(
        reply.ends_with(b"Hi, Abcde!"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    stream.conn.handshake_kind() == Some(HandshakeKind::Resumed)
}
