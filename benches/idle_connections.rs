//! Opens N keep-alive connections to a server, sends one request on each and reads its
//! answer, then holds them all open until stdin closes. benches/load.sh reads the server's
//! RSS meanwhile to get memory per idle connection. With `--tls CAFILE` the connections
//! speak TLS (the certificate must name `localhost`); with `--ws PATH` each becomes a
//! WebSocket (the handshake on PATH, then one message echoed) before it is held.
//!
//! `cargo bench --bench idle_connections -- ADDR N [--tls CAFILE] [--ws PATH]`

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// A connection held open: cleartext, or TLS.
enum Held {
    // Kept only to hold the connection open.
    #[allow(dead_code)]
    Plain(TcpStream),
    #[allow(dead_code)]
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

fn tls_config(ca: &str) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("the CA file") {
        roots
            .add(cert.expect("a PEM certificate"))
            .expect("a CA certificate");
    }
    Arc::new(
        ClientConfig::builder_with_provider(
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs offers TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// Sends one request on `stream` and reads its answer.
fn ask(stream: &mut impl ReadWrite, i: usize) {
    let request = b"GET /echo?name=Abcde HTTP/1.1\r\nHost: bench\r\n\r\n";
    let mut reply = [0u8; 1024];
    stream.write_all(request).expect("send");
    let mut got = 0;
    while !reply[..got].ends_with(b"Hi, Abcde!") {
        let n = stream.read(&mut reply[got..]).expect("read");
        assert!(n > 0, "connection {i} closed before its answer");
        got += n;
    }
}

/// Opens a WebSocket on `stream` (the handshake on `path`) and has one message echoed.
fn ask_ws(stream: &mut impl ReadWrite, i: usize, path: &str) {
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .expect("send");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("read");
        assert!(n > 0, "connection {i} closed before its 101");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101 "),
        "connection {i} not upgraded"
    );
    // A masked text message, "Abcde"; its echo comes back unmasked.
    let key = [7u8, 1, 2, 3];
    let mut frame = vec![0x81, 0x85];
    frame.extend_from_slice(&key);
    frame.extend(b"Abcde".iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    stream.write_all(&frame).expect("send");
    let mut echo = [0u8; 7];
    stream.read_exact(&mut echo).expect("the echo");
    assert_eq!(&echo, b"\x81\x05Abcde", "connection {i}'s echo");
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some(addr) = args.first().map(String::as_str) else {
        // `cargo test --all-targets` runs this target without arguments: nothing to measure.
        println!("usage: cargo bench --bench idle_connections -- ADDR [N]");
        return;
    };
    let count: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let tls = args
        .iter()
        .position(|a| a == "--tls")
        .and_then(|i| args.get(i + 1))
        .map(|ca| tls_config(ca));
    let ws = args
        .iter()
        .position(|a| a == "--ws")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let ask = |stream: &mut dyn ReadWrite, i: usize| match &ws {
        Some(path) => ask_ws(&mut &mut *stream, i, path),
        None => ask(&mut &mut *stream, i),
    };
    raise_fd_limit(count as u64 + 1024);

    let mut open = Vec::with_capacity(count);
    for i in 0..count {
        let stream =
            TcpStream::connect(addr).unwrap_or_else(|e| panic!("connection {i} to {addr}: {e}"));
        match &tls {
            None => {
                let mut stream = stream;
                ask(&mut stream, i);
                open.push(Held::Plain(stream));
            }
            Some(config) => {
                let name = ServerName::try_from("localhost").expect("a name");
                let conn = ClientConnection::new(config.clone(), name).expect("a client");
                let mut stream = StreamOwned::new(conn, stream);
                ask(&mut stream, i);
                open.push(Held::Tls(Box::new(stream)));
            }
        }
    }
    println!("holding {} connections", open.len());
    std::io::stdout().flush().unwrap();
    // Wait until the script closes our stdin.
    let mut line = String::new();
    while std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map(|n| n > 0)
        .unwrap_or(false)
    {}
}

fn raise_fd_limit(want: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        if limit.rlim_cur < want {
            limit.rlim_cur = want.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
