//! TLS to upstream servers over real sockets: percore proxies to an `https://` backend (a
//! rustls server made here, with a certificate from a test CA) that answers each request
//! with the name the client asked for (SNI). Verification against a given CA, refusal of
//! an unknown one or a wrong name, the way around both when named so, and the pooled TLS
//! connection reused.

mod common;
#[path = "common/tls.rs"]
mod tls;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::TestServer;
use percore::config::Config;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use tls::{Leaf, Pki};

/// A TLS backend: each connection's requests (heads, and `Content-Length` bodies) are
/// answered `200` with the body `sni=NAME body=N`.
struct TlsBackend {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl TlsBackend {
    fn start(leaf: &Leaf) -> TlsBackend {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&leaf.cert)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(&leaf.key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                counted.fetch_add(1, Ordering::SeqCst);
                let config = config.clone();
                thread::spawn(move || serve(stream, config));
            }
        });
        TlsBackend { addr, connections }
    }
}

fn serve(stream: TcpStream, config: Arc<ServerConfig>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let Ok(conn) = ServerConnection::new(config) else {
        return;
    };
    let mut tls = StreamOwned::new(conn, stream);
    let mut buf = Vec::new();
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 16384];
            match tls.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len: usize = head
            .split("\r\n")
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        while buf.len() < end + len {
            let mut chunk = [0u8; 16384];
            match tls.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..end + len);
        let sni = tls.conn.server_name().unwrap_or("-").to_string();
        let body = format!("sni={sni} body={len}");
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if tls.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// A server proxying `/api/` to `server`, with `extra` lines in its `[[upstream]]`.
fn proxy_to(server: &str, extra: &str) -> TestServer {
    let toml = format!(
        "[[upstream]]\nname = \"app\"\nservers = [\"{server}\"]\nmax_fails = 0\n{extra}\n\
         [[proxy]]\npath = \"/api/\"\nupstream = \"app\"\n"
    );
    let parsed = Config::from_toml(&toml, "test").expect("the configuration parses");
    TestServer::with(|config| {
        config.upstream = parsed.upstream;
        config.proxy = parsed.proxy;
    })
}

#[test]
fn an_https_backend_verified_against_its_ca_on_a_pooled_connection() {
    let pki = Pki::new("upstream-ca");
    let backend = TlsBackend::start(&pki.leaf("backend", &["localhost"]));
    let url = format!("https://localhost:{}", backend.addr.port());
    let ca = format!("tls_ca = {:?}", pki.ca_pem.display().to_string());
    let server = proxy_to(&url, &ca);
    let mut client = server.client();
    for _ in 0..10 {
        let response = client.get("/api/hello");
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.text(), "sni=localhost body=0");
    }
    let body = "b".repeat(100_000);
    client.send(format!(
        "POST /api/up HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    assert_eq!(client.response().text(), "sni=localhost body=100000");
    assert_eq!(
        backend.connections.load(Ordering::SeqCst),
        1,
        "one TLS connection carried every request"
    );
}

#[test]
fn an_unknown_ca_or_a_wrong_name_is_a_502_unless_named_otherwise() {
    let pki = Pki::new("upstream-refused");
    let backend = TlsBackend::start(&pki.leaf("other", &["other.test"]));
    let url = format!("https://localhost:{}", backend.addr.port());
    let ca = format!("tls_ca = {:?}", pki.ca_pem.display().to_string());

    // The system's roots know nothing of the test CA.
    let server = proxy_to(&url, "");
    assert_eq!(server.client().get("/api/x").status, 502);
    // The CA is known, but the certificate names other.test, not localhost.
    let server = proxy_to(&url, &ca);
    assert_eq!(server.client().get("/api/x").status, 502);
    // Asked for as other.test: SNI and verification both use that name.
    let server = proxy_to(&url, &format!("{ca}\ntls_server_name = \"other.test\""));
    assert_eq!(
        server.client().get("/api/x").text(),
        "sni=other.test body=0"
    );
    // Any certificate, when named so.
    let server = proxy_to(&url, "tls_insecure_skip_verify = true");
    assert_eq!(server.client().get("/api/x").text(), "sni=localhost body=0");
}

#[test]
fn roots_that_cannot_be_read_stop_the_start() {
    let dir = common::TempDir::new("upstream-bad-ca");
    let garbage = dir.write("ca.pem", "not a certificate\n");
    let toml = format!(
        "[[upstream]]\nname = \"app\"\nservers = [\"https://localhost:1\"]\ntls_ca = {:?}\n",
        garbage.display().to_string()
    );
    let mut config = Config::from_toml(&toml, "test").expect("the file exists");
    config.server.port = 0;
    let error = common::app::app()
        .check(&config)
        .expect_err("unreadable roots");
    assert!(error.to_string().contains("tls_ca"), "{error}");
}
