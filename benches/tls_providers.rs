//! rustls's two crypto providers side by side, in memory, to choose percore's: the server's
//! share of a full TLS 1.3 handshake (ECDSA P-256 certificate) and of sealing and opening a
//! 1 KiB record, for aws-lc-rs with X25519MLKEM768 (what current browsers offer), aws-lc-rs
//! with X25519 alone, and ring with X25519 (ring has no ML-KEM).
//!
//! `cargo bench --bench tls_providers -- [HANDSHAKES]` (pin it: `taskset -c 1 …`)

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

fn main() {
    let handshakes: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(400);
    let x25519_only = |mut provider: CryptoProvider| {
        provider
            .kx_groups
            .retain(|group| group.name() == rustls::NamedGroup::X25519);
        provider
    };
    let providers = [
        (
            "aws-lc-rs, X25519MLKEM768",
            rustls::crypto::aws_lc_rs::default_provider(),
        ),
        (
            "aws-lc-rs, X25519",
            x25519_only(rustls::crypto::aws_lc_rs::default_provider()),
        ),
        (
            "ring, X25519",
            x25519_only(rustls::crypto::ring::default_provider()),
        ),
    ];
    println!(
        "server's share, {handshakes} full TLS 1.3 handshakes and 20,000 records of 1 KiB each"
    );
    for (name, provider) in providers {
        let (server, client) = configs(provider);
        let handshake = server_handshake_time(&server, &client, handshakes);
        let (open, seal) = record_times(&server, &client, 20_000);
        println!(
            "{name:28} handshake {:7.1} µs   open 1 KiB {:5.0} ns   seal 1 KiB {:5.0} ns",
            micros(handshake) / f64::from(handshakes),
            micros(open) * 1000.0 / 20_000.0,
            micros(seal) * 1000.0 / 20_000.0,
        );
    }
}

fn micros(time: Duration) -> f64 {
    time.as_secs_f64() * 1e6
}

/// A server with a fresh ECDSA P-256 certificate, and a client trusting it, on `provider`.
fn configs(provider: CryptoProvider) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der = CertificateDer::from(cert.der().to_vec());
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(provider);
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], private)
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(der).unwrap();
    let client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

fn client_for(config: &Arc<ClientConfig>) -> ClientConnection {
    ClientConnection::new(config.clone(), ServerName::try_from("localhost").unwrap()).unwrap()
}

/// Everything `from` has to send, as bytes.
fn outgoing(from: &mut dyn FnMut(&mut Vec<u8>) -> bool) -> Vec<u8> {
    let mut bytes = Vec::new();
    while from(&mut bytes) {}
    bytes
}

/// Time spent in the server's calls over `count` full handshakes.
fn server_handshake_time(
    server: &Arc<ServerConfig>,
    client: &Arc<ClientConfig>,
    count: u32,
) -> Duration {
    let mut spent = Duration::ZERO;
    for _ in 0..count {
        handshake(server, client, &mut spent);
    }
    spent
}

/// A client and a server connection with their handshake done in memory; the time spent in
/// the server's calls is added to `spent`.
fn handshake(
    server: &Arc<ServerConfig>,
    client: &Arc<ClientConfig>,
    spent: &mut Duration,
) -> (ClientConnection, ServerConnection) {
    let mut c = client_for(client);
    let started = Instant::now();
    let mut s = ServerConnection::new(server.clone()).unwrap();
    *spent += started.elapsed();
    while c.is_handshaking() || s.is_handshaking() {
        let hello = outgoing(&mut |out| c.wants_write() && c.write_tls(out).unwrap() > 0);
        let started = Instant::now();
        feed_server(&mut s, &hello);
        let reply = outgoing(&mut |out| s.wants_write() && s.write_tls(out).unwrap() > 0);
        *spent += started.elapsed();
        feed_client(&mut c, &reply);
    }
    (c, s)
}

fn feed_server(s: &mut ServerConnection, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        s.read_tls(&mut bytes).unwrap();
        s.process_new_packets().unwrap();
    }
}

fn feed_client(c: &mut ClientConnection, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        c.read_tls(&mut bytes).unwrap();
        c.process_new_packets().unwrap();
    }
}

/// Time the server spends opening `count` 1 KiB records, and sealing as many.
fn record_times(
    server: &Arc<ServerConfig>,
    client: &Arc<ClientConfig>,
    count: u32,
) -> (Duration, Duration) {
    let mut handshake_time = Duration::ZERO;
    let (mut c, mut s) = handshake(server, client, &mut handshake_time);
    let data = [b'x'; 1024];
    let mut plain = [0u8; 4096];
    let (mut open, mut seal) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..count {
        c.writer().write_all(&data).unwrap();
        let record = outgoing(&mut |out| c.wants_write() && c.write_tls(out).unwrap() > 0);
        let started = Instant::now();
        feed_server(&mut s, &record);
        let got = s.reader().read(&mut plain).unwrap();
        open += started.elapsed();
        assert_eq!(got, data.len());
        let started = Instant::now();
        s.writer().write_all(&data).unwrap();
        let sealed = outgoing(&mut |out| s.wants_write() && s.write_tls(out).unwrap() > 0);
        seal += started.elapsed();
        feed_client(&mut c, &sealed);
        let _ = c.reader().read(&mut plain);
    }
    (open, seal)
}
