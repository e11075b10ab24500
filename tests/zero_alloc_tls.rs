//! Warm TLS keep-alive requests allocate nothing on the server's core: decryption in place,
//! parse, route, encode, encryption, send. A counting allocator counts the allocations of the
//! core's thread only (the state factory, which runs on that thread, marks it), while the
//! test's own TLS client (rustls, which allocates per record) drives 50 warm connections.

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use percore::config::{Config, CoreSpec, TlsConfig};
use percore::App;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

#[path = "common/counting.rs"]
mod counting;

#[path = "../src/bin/percore/routes.rs"]
#[allow(dead_code)]
mod routes;

thread_local! {
    /// This thread is the server's core.
    static CORE: Cell<bool> = const { Cell::new(false) };
}

/// Counting is on.
static COUNTING: AtomicBool = AtomicBool::new(false);
/// Allocations made by the core's thread while counting was on.
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

fn count() {
    if COUNTING.load(Ordering::Relaxed) && CORE.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting(count);

const CONNECTIONS: usize = 50;
const PIPELINED: usize = 8;
const WARM_UP_ROUNDS: usize = 100;
const MEASURED_ROUNDS: usize = 25;
const REQUEST: &[u8] = b"GET /echo?name=Abcde HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// A CA, and a leaf for `localhost` signed by it, as PEM files in a fresh directory.
fn certificates(dir: &std::path::Path) -> CertificateDer<'static> {
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    ca.der().clone()
}

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
    let dir = std::env::temp_dir().join(format!("percore-zero-alloc-tls-{}", std::process::id()));
    let ca = certificates(&dir);
    let mut config = Config::default();
    config.server.port = 0;
    config.server.cores = CoreSpec::First(1);
    config.report.enabled = false;
    config.report.interval_ms = 0;
    config.tls = Some(TlsConfig {
        port: 0,
        certificate: dir.join("cert.pem"),
        private_key: dir.join("key.pem"),
        ..TlsConfig::default()
    });
    let app = App::new(|_| {
        CORE.with(|core| core.set(true));
        Ok(())
    })
    .get("/echo", routes::echo);
    let server = app.start(config).expect("server starts");
    let addr = server.tls_addr().expect("a TLS listener");

    let mut roots = RootCertStore::empty();
    roots.add(ca).unwrap();
    let client = Arc::new(
        ClientConfig::builder_with_provider(
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs offers TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
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
    COUNTING.store(true, Ordering::Relaxed);
    for _ in 0..MEASURED_ROUNDS {
        round(&mut streams);
    }
    COUNTING.store(false, Ordering::Relaxed);
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    let requests = CONNECTIONS * PIPELINED * MEASURED_ROUNDS;
    drop(streams);
    server.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("{allocations} allocations on the core for {requests} TLS requests");
    // A few may come from glommio's own sleep when the core finds nothing to do between
    // rounds; one per request (or per record) would be thousands.
    assert!(
        allocations <= 8,
        "{allocations} allocations on the core for {requests} warm TLS requests"
    );
}
