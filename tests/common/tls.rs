//! TLS test support: a CA and its leaves made with rcgen (PEM files in a temporary
//! directory, never committed), rustls clients over real sockets (whole records, or one
//! byte per write), an app whose handler tells what `Request::tls()` says, the binary
//! started with a TLS listener, and the TLS counters of `/stats`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use percore::config::{Cleartext, Config, CoreSpec, SniCertificate, TlsConfig};
use percore::{App, Server};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore};

use crate::common::{address_after, Percore, Response, TempDir, EXIT_WAIT};

/// How long a test client waits on a read or a write before the test fails.
pub const IO_WAIT: Duration = Duration::from_secs(20);

/// The names of the default test certificate and of the `[[tls.sni]]` one.
pub const DEFAULT_NAMES: &[&str] = &["localhost", "127.0.0.1"];
pub const SNI_NAMES: &[&str] = &["other.test", "*.wild.test"];

/// A test CA (ECDSA P-256) and the directory its files are written to.
pub struct Pki {
    pub dir: TempDir,
    ca_cert: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
    /// The CA certificate as PEM (`--cacert`, `-CAfile`, `cafile=`).
    pub ca_pem: PathBuf,
    pub ca_der: CertificateDer<'static>,
}

/// A leaf certificate the CA signed, and its key, as PEM files.
#[derive(Clone, Debug)]
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The certificate as a server sends it.
    pub der: CertificateDer<'static>,
}

impl Pki {
    pub fn new(tag: &str) -> Pki {
        let dir = TempDir::new(&format!("tls-{tag}"));
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "percore test CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        // What strict verifiers (Python 3.13's VERIFY_X509_STRICT) ask of a CA.
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = params.self_signed(&ca_key).unwrap();
        let ca_pem = dir.write("ca.pem", ca_cert.pem());
        let ca_der = ca_cert.der().clone();
        Pki {
            dir,
            ca_cert,
            ca_key,
            ca_pem,
            ca_der,
        }
    }

    /// A new leaf for `names` (DNS names, `*.` wildcards, IP addresses), written to
    /// `STEM.pem` and `STEM.key` (replacing files of that name).
    pub fn leaf(&self, stem: &str, names: &[&str]) -> Leaf {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.ca_cert, &self.ca_key).unwrap();
        Leaf {
            cert: self.dir.write(&format!("{stem}.pem"), cert.pem()),
            key: self.dir.write(&format!("{stem}.key"), key.serialize_pem()),
            der: cert.der().clone(),
        }
    }

    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        roots
    }

    /// A client trusting this CA only, offering `versions` and ALPN `http/1.1`. Its
    /// resumption store (rustls's default) keeps the tickets it is given.
    pub fn client(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<ClientConfig> {
        self.client_with(versions, rustls::crypto::aws_lc_rs::default_provider())
    }

    /// [`Pki::client`] with its own crypto provider (fewer groups or suites).
    pub fn client_with(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        provider: rustls::crypto::CryptoProvider,
    ) -> Arc<ClientConfig> {
        let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(self.roots())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// Both TLS versions.
pub const BOTH: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];
pub const TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
pub const TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

/// A client that accepts any certificate (and checks every signature): to see which
/// certificate a server sends for a name no certificate has.
pub fn any_certificate_client(
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TCP connection to `addr` with the test timeouts, Nagle off.
pub fn tcp(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(IO_WAIT)).unwrap();
    stream.set_write_timeout(Some(IO_WAIT)).unwrap();
    stream
}

/// A rustls client connection over a real socket.
pub struct TlsClient {
    pub tls: rustls::StreamOwned<ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl TlsClient {
    /// Connects to `addr` asking for `name` (SNI unless an IP address) and completes the
    /// handshake; fails the test if it does not.
    pub fn connect(addr: SocketAddr, name: &str, config: &Arc<ClientConfig>) -> TlsClient {
        TlsClient::try_connect(addr, name, config)
            .unwrap_or_else(|e| panic!("TLS handshake with {addr} as {name}: {e}"))
    }

    pub fn try_connect(
        addr: SocketAddr,
        name: &str,
        config: &Arc<ClientConfig>,
    ) -> Result<TlsClient, String> {
        let stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(IO_WAIT)).unwrap();
        stream.set_write_timeout(Some(IO_WAIT)).unwrap();
        let server_name = ServerName::try_from(name.to_string()).unwrap();
        let conn = ClientConnection::new(config.clone(), server_name).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, stream);
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .map_err(|e| format!("handshake: {e}"))?;
        }
        Ok(TlsClient {
            tls,
            buf: Vec::new(),
        })
    }

    /// A connection already under way.
    pub fn from_stream(tls: rustls::StreamOwned<ClientConnection, TcpStream>) -> TlsClient {
        TlsClient {
            tls,
            buf: Vec::new(),
        }
    }

    pub fn conn(&self) -> &ClientConnection {
        &self.tls.conn
    }

    /// The name of the cipher suite the handshake settled on.
    pub fn suite(&self) -> &'static str {
        let suite = self.conn().negotiated_cipher_suite().expect("a suite");
        suite.suite().as_str().expect("a suite with a name")
    }

    /// The leaf certificate the server sent.
    pub fn peer_leaf(&self) -> CertificateDer<'static> {
        self.conn().peer_certificates().expect("a certificate")[0].clone()
    }

    pub fn resumed(&self) -> bool {
        self.conn().handshake_kind() == Some(rustls::HandshakeKind::Resumed)
    }

    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.try_send(bytes).expect("TLS write");
    }

    pub fn try_send(&mut self, bytes: impl AsRef<[u8]>) -> Result<(), String> {
        self.tls
            .write_all(bytes.as_ref())
            .and_then(|()| self.tls.flush())
            .map_err(|e| format!("write: {e}"))
    }

    /// `GET target` (keep-alive), and its response.
    pub fn get(&mut self, target: &str) -> Response {
        self.send(format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n"));
        self.response()
    }

    pub fn response(&mut self) -> Response {
        self.try_response().unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_response(&mut self) -> Result<Response, String> {
        read_response(&mut self.tls, &mut self.buf)
    }

    /// Reads on until the server ends the connection, and says how: `Ok(())` for a clean
    /// TLS close (its close_notify, then the end of the stream), `Err` otherwise (bytes
    /// after the close, a truncation, a reset, a timeout).
    pub fn clean_close(&mut self) -> Result<(), String> {
        if !self.buf.is_empty() {
            return Err(format!("{} unread bytes before the close", self.buf.len()));
        }
        let mut chunk = [0u8; 4096];
        match self.tls.read(&mut chunk) {
            // rustls reads 0 only after the peer's close_notify.
            Ok(0) => {}
            Ok(n) => return Err(format!("{n} more bytes instead of a close")),
            Err(e) => return Err(format!("not a clean TLS close: {e}")),
        }
        let state = self
            .tls
            .conn
            .process_new_packets()
            .map_err(|e| format!("after close_notify: {e}"))?;
        if !state.peer_has_closed() {
            return Err("read 0 bytes, but no close_notify was seen".into());
        }
        // Then the TCP stream itself ends: a FIN, not a reset, and nothing after it.
        match self.tls.sock.read(&mut chunk) {
            Ok(0) => Ok(()),
            Ok(n) => Err(format!("{n} bytes after close_notify")),
            Err(e) => Err(format!("the socket after close_notify: {e}")),
        }
    }
}

/// One response (Content-Length framed) read from `stream`, keeping what follows in `buf`.
pub fn read_response(stream: &mut impl Read, buf: &mut Vec<u8>) -> Result<Response, String> {
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        fill(stream, buf, "before a response head")?;
    };
    let head = String::from_utf8(buf[..end].to_vec()).map_err(|_| "a head not in ASCII")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    if !status_line.starts_with("HTTP/1.1 ") || status_line.len() < 12 {
        return Err(format!("not a status line: {status_line:?}"));
    }
    let status = status_line[9..12]
        .parse()
        .map_err(|_| format!("no status in {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_string(), v.trim().to_string()))
        .collect();
    buf.drain(..end);
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let len: usize = match response.header("content-length") {
        Some(v) => v.parse().map_err(|_| format!("Content-Length {v:?}"))?,
        None => 0,
    };
    while buf.len() < len {
        fill(stream, buf, "inside a body")?;
    }
    response.body = buf.drain(..len).collect();
    Ok(response)
}

fn fill(stream: &mut impl Read, buf: &mut Vec<u8>, when: &str) -> Result<(), String> {
    let mut chunk = [0u8; 16384];
    match stream.read(&mut chunk) {
        Ok(0) => Err(format!(
            "connection closed {when} (after {:?})",
            String::from_utf8_lossy(buf)
        )),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) => Err(format!("read {when}: {e}")),
    }
}

/// What `GET /tls` answers: the request's TLS facts, one `key=value` a line.
fn tls_facts(request: &percore::Request<'_>) -> String {
    let peer = request
        .peer_addr()
        .map_or_else(|| "-".to_string(), |a| a.to_string());
    match request.tls() {
        None => format!("cleartext\npeer={peer}\n"),
        Some(tls) => format!(
            "peer={peer}\nversion={}\ncipher={}\nsni={}\nalpn={}\nresumed={}\n",
            tls.version,
            tls.cipher_suite,
            tls.server_name.as_deref().unwrap_or("-"),
            tls.alpn
                .as_deref()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .unwrap_or_else(|| "-".into()),
            tls.resumed
        ),
    }
}

/// One fact of a `GET /tls` body.
pub fn fact<'a>(body: &'a str, key: &str) -> &'a str {
    body.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|l| l.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key} in {body:?}"))
}

/// The app the in-process TLS tests serve: `GET /echo?name=X` (as the binary answers it),
/// `POST /body` (the body back), `GET /tls` (what `Request::tls()` says; `GET /later` the
/// same from an async handler), `/stats`, `/metrics`, and the files under `static.root` when
/// one is set.
pub fn tls_app() -> App<()> {
    App::new(|_| Ok(()))
        .get("/echo", crate::common::app::echo)
        .post("/body", |request, response, _| {
            response.body(request.body());
        })
        .get("/tls", |request, response, _| {
            response.text(&tls_facts(request));
        })
        .get_async("/later", |request, _| async move {
            percore::glommio::timer::sleep(Duration::from_millis(5)).await;
            percore::Reply::text(tls_facts(&request.view()))
        })
        .stats()
        .metrics()
        .static_files()
}

/// The `[tls]` table of the tests: `default` for every name, `other` for the SNI names.
pub fn tls_config(default: &Leaf, other: &Leaf) -> TlsConfig {
    let mut tls = TlsConfig::new(&default.cert, &default.key);
    tls.port = 0;
    tls.sni = vec![SniCertificate::new(SNI_NAMES, &other.cert, &other.key)];
    tls
}

/// [`tls_app`] served in this process with a TLS listener; stops (draining) when dropped.
pub struct TlsServer {
    pub server: Option<Server>,
    /// The cleartext listener, unless `tls.cleartext = "off"`.
    pub http: Option<SocketAddr>,
    pub https: SocketAddr,
    pub pki: Pki,
    /// The default certificate (`localhost`, `127.0.0.1`).
    pub default: Leaf,
    /// The `[[tls.sni]]` certificate (`other.test`, `*.wild.test`).
    pub other: Leaf,
}

impl TlsServer {
    /// One core, port 0 for both listeners, no live report lines, then `adjust`.
    pub fn start(tag: &str, adjust: impl FnOnce(&mut Config)) -> TlsServer {
        let pki = Pki::new(tag);
        let default = pki.leaf("default", DEFAULT_NAMES);
        let other = pki.leaf("other", SNI_NAMES);
        let mut config = Config::default();
        config.server.port = 0;
        config.server.cores = CoreSpec::First(1);
        config.report.interval_ms = 0;
        config.tls = Some(tls_config(&default, &other));
        adjust(&mut config);
        let cleartext = config.tls.as_ref().map(|t| t.cleartext);
        let server = tls_app().start(config).expect("the TLS server starts");
        let https = server.tls_addr().expect("a TLS listener");
        let http = (cleartext != Some(Cleartext::Off)).then(|| server.local_addr());
        TlsServer {
            server: Some(server),
            http,
            https,
            pki,
            default,
            other,
        }
    }

    pub fn http(&self) -> SocketAddr {
        self.http.expect("a cleartext listener")
    }

    /// A client of both versions, trusting the test CA.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.pki.client(BOTH)
    }

    /// A TLS connection as `localhost`, handshake done.
    pub fn connect(&self) -> TlsClient {
        TlsClient::connect(self.https, "localhost", &self.client_config())
    }

    /// `/stats`, over cleartext.
    pub fn stats(&self) -> serde_json::Value {
        stats_of(self.http())
    }

    /// Polls `/stats` (published once per report tick) until `done` holds; fails the test,
    /// naming `what`, after 20 s.
    #[track_caller]
    pub fn wait_for_stats(
        &self,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        wait_for_stats(self.http(), what, done)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        drop(self.server.take());
    }
}

/// `GET /stats` on a new cleartext connection.
pub fn stats_of(http: SocketAddr) -> serde_json::Value {
    let response = crate::common::Client::connect(http).get("/stats");
    assert_eq!(response.status, 200, "/stats: {}", response.text());
    serde_json::from_slice(&response.body).expect("/stats is JSON")
}

/// Polls `/stats` at `http` until `done` holds; fails the test, naming `what`, after 20 s.
#[track_caller]
pub fn wait_for_stats(
    http: SocketAddr,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    crate::common::wait_for(
        &format!("/stats shows {what}"),
        Duration::from_secs(20),
        || {
            let stats = stats_of(http);
            if done(&stats) {
                Ok(stats)
            } else {
                Err(stats)
            }
        },
    )
}

/// A TLS counter of a `/stats` object (`total` or one core's): `handshakes`, `full`,
/// `resumed`, or `failed.REASON`.
pub fn tls_count(of: &serde_json::Value, counter: &str) -> u64 {
    let tls = &of["tls"];
    let value = match counter.strip_prefix("failed.") {
        Some(reason) => &tls["failed"][reason],
        None => &tls[counter],
    };
    value
        .as_u64()
        .unwrap_or_else(|| panic!("no tls.{counter} in {of}"))
}

/// The same counter in `/stats`'s `total`.
pub fn total(stats: &serde_json::Value, counter: &str) -> u64 {
    tls_count(&stats["total"], counter)
}

/// Every `failed` reason.
pub const FAILURES: &[&str] = &["protocol", "timeout", "closed", "cleartext", "not_tls"];

/// Whether `tool args` runs here; under CI=true its absence fails the test.
pub fn require_tool(tool: &str, args: &[&str]) -> bool {
    crate::common::require(
        crate::common::have_tool(tool, args),
        &format!("`{tool}` is not installed (apt-get install {tool})"),
    )
}

/// Whether curl is here (for a check that adds to a test that does not need it).
pub fn have_curl() -> bool {
    require_tool("curl", &["--version"])
}

/// The TLS listener's address in the binary's start line.
pub fn https_addr(percore: &Percore) -> SocketAddr {
    address_after(&percore.banner, "https://")
        .unwrap_or_else(|| panic!("no https:// address in {:?}", percore.banner))
        .parse()
        .unwrap()
}

/// Sends `signal` to the binary.
pub fn signal(percore: &Percore, signal: i32) {
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(percore.child.id() as i32, signal) };
}

/// Waits (at most 20 s) until nothing accepts connections at `addr` any more.
#[track_caller]
pub fn wait_until_refused(addr: SocketAddr) {
    crate::common::wait_until(
        &format!("{addr} refuses connections"),
        Duration::from_secs(20),
        || TcpStream::connect(addr).is_err(),
    );
}

/// A config file `percore.toml` in `dir` with `text`; its path.
pub fn config_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("percore.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// How long a binary has to exit after a signal.
pub const EXIT: Duration = EXIT_WAIT;
