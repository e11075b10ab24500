//! percore's TLS record layer after the handshake, against rustls's own `ServerConnection`
//! given the same client.
//!
//! Two in-memory handshakes are made with the same client configuration: one with percore's
//! server side (`internals::TlsServer`, rustls's handshake then percore's record layer), one
//! with a rustls `ServerConnection`. The client's keys are then taken over by the tests' own
//! record tool (`tests/common/records.rs`), and the fuzzer's input says what the client sends
//! next: records of any inner type and payload, well-formed key updates, alerts,
//! renegotiation ClientHellos, handshake messages split over records, padding, outer types,
//! versions and lengths that lie, flipped bytes, replayed records and raw garbage. Each
//! operation is applied to both clients, so both streams have the same shape and differ only
//! in their ciphertext. They are then delivered in chunks the input chooses.
//!
//! Input: the first byte picks the version and suite (TLS 1.3: AES-128-GCM, AES-256-GCM,
//! ChaCha20-Poly1305; TLS 1.2 ECDHE-ECDSA with the same three), the second how the stream is
//! cut into chunks; the rest is a sequence of operations (an opcode byte, then its
//! arguments).
//!
//! Checks:
//! - no panic;
//! - what percore sends back after the handshake opens under the client's keys, holds at most
//!   one fatal alert, and that last, and is bounded by the input (at most its length plus one
//!   alert's worth);
//! - the verdict (open, closed by `close_notify`, failed) and the application data delivered
//!   are rustls's, but where percore is stricter or more lenient on purpose, as the README
//!   says: percore refuses a zero-length handshake record (rustls skips it), a record whose
//!   version is not 3.3 (rustls takes in TLS 1.2 any version it knows, SSL 2's included) or,
//!   in TLS 1.3, whose type is not application data (percore authenticates the header as
//!   sent, RFC 8446 section 5.2; rustls authenticates the header it expects, and so takes a
//!   record whose outer type or version was changed on the way), and a record whose header it
//!   will not take as soon as the header arrives (rustls may wait for the body of a record
//!   that is cut short at the end of the input); and it answers a first
//!   renegotiation ClientHello with its warning without parsing it (rustls refuses a
//!   malformed one).
#![no_main]

use std::io::{Read, Write};
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use percore::config::TlsConfig;
use percore::internals::{TlsEnded, TlsServer};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, ServerConnection};
use rustls::{SignatureScheme, SupportedCipherSuite};

#[path = "../../common/records.rs"]
mod records;

use records::{ClientRecords, Shape, Version};

/// What every input shares: the certificate, percore's TLS configuration, rustls's server
/// configuration and a client configuration per version and suite.
struct Fixture {
    percore: TlsConfig,
    rustls: Arc<ServerConfig>,
    clients: Vec<Arc<ClientConfig>>,
    /// Keeps the certificate files for the process's life.
    _dir: std::path::PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let dir = std::env::temp_dir().join(format!("percore-fuzz-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        let percore = TlsConfig::new(dir.join("cert.pem"), dir.join("key.pem"));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut rustls = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            )
            .unwrap();
        rustls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let suite = |name: &str| -> SupportedCipherSuite {
            *provider
                .cipher_suites
                .iter()
                .find(|s| s.suite().as_str() == Some(name))
                .unwrap()
        };
        let clients = [
            "TLS13_AES_128_GCM_SHA256",
            "TLS13_AES_256_GCM_SHA384",
            "TLS13_CHACHA20_POLY1305_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        ]
        .into_iter()
        .map(|name| {
            let suite = suite(name);
            let version = suite.version();
            let client_provider = CryptoProvider {
                cipher_suites: vec![suite],
                kx_groups: vec![rustls::crypto::aws_lc_rs::kx_group::X25519],
                ..(*provider).clone()
            };
            let mut config = ClientConfig::builder_with_provider(Arc::new(client_provider))
                .with_protocol_versions(&[version])
                .unwrap()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Blind))
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            records::extractable(&config)
        })
        .collect();
        Fixture {
            percore,
            rustls: Arc::new(rustls),
            clients,
            _dir: dir,
        }
    })
}

/// The client believes any certificate: what is tested comes after the handshake.
#[derive(Debug)]
struct Blind;

impl ServerCertVerifier for Blind {
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
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ECDSA_NISTP256_SHA256]
    }
}

/// How a server ends up after the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Open,
    Closed,
    Failed,
}

/// A server in memory, as the client's handshake talks to it.
trait Server {
    /// Takes `bytes`; false once it takes no more.
    fn take(&mut self, bytes: &[u8]) -> bool;
    /// What it sent and the client has not read.
    fn sent(&mut self) -> &mut Vec<u8>;
    fn verdict(&self) -> Verdict;
    /// The application data it received.
    fn plain(&self) -> &[u8];
}

/// percore's server side, fed as the engine feeds it (unused bytes kept for the next call).
struct Percore {
    tls: TlsServer,
    held: Vec<u8>,
    wire: Vec<u8>,
    plain: Vec<u8>,
    verdict: Verdict,
}

impl Server for Percore {
    fn take(&mut self, bytes: &[u8]) -> bool {
        if self.verdict != Verdict::Open {
            return false;
        }
        self.held.extend_from_slice(bytes);
        let plain = &mut self.plain;
        match self
            .tls
            .receive(&mut self.held, &mut self.wire, &mut |data| {
                plain.extend_from_slice(data)
            }) {
            Ok(used) => {
                assert!(used <= self.held.len());
                self.held.drain(..used);
            }
            Err(TlsEnded::Closed) => self.verdict = Verdict::Closed,
            Err(TlsEnded::Failed) => self.verdict = Verdict::Failed,
        }
        self.verdict == Verdict::Open
    }
    fn sent(&mut self) -> &mut Vec<u8> {
        &mut self.wire
    }
    fn verdict(&self) -> Verdict {
        self.verdict
    }
    fn plain(&self) -> &[u8] {
        &self.plain
    }
}

/// rustls's own server connection.
struct Rustls {
    conn: ServerConnection,
    wire: Vec<u8>,
    plain: Vec<u8>,
    verdict: Verdict,
    /// Why it failed.
    error: Option<rustls::Error>,
}

impl Server for Rustls {
    fn take(&mut self, mut bytes: &[u8]) -> bool {
        while self.verdict == Verdict::Open && !bytes.is_empty() {
            match self.conn.read_tls(&mut bytes) {
                Ok(0) => self.verdict = Verdict::Closed,
                Ok(_) => {}
                Err(e) => panic!("rustls took no more bytes: {e}"),
            }
            let processed = self.conn.process_new_packets();
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = self.conn.reader().read(&mut chunk) {
                self.plain.extend_from_slice(&chunk[..n]);
            }
            match processed {
                Ok(state) if state.peer_has_closed() => self.verdict = Verdict::Closed,
                Ok(_) => {}
                Err(e) => {
                    self.verdict = Verdict::Failed;
                    self.error = Some(e);
                }
            }
            while self.conn.wants_write() {
                self.conn.write_tls(&mut self.wire).unwrap();
            }
        }
        self.verdict == Verdict::Open
    }
    fn sent(&mut self) -> &mut Vec<u8> {
        &mut self.wire
    }
    fn verdict(&self) -> Verdict {
        self.verdict
    }
    fn plain(&self) -> &[u8] {
        &self.plain
    }
}

/// A server as the client's handshake sees it: a socket that answers each write.
struct Wire<'a, S>(&'a mut S);

impl<S: Server> Write for Wire<'_, S> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self.0.take(bytes) {
            true => Ok(bytes.len()),
            false => Err(std::io::Error::other("the server ended the handshake")),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<S: Server> Read for Wire<'_, S> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let sent = self.0.sent();
        let n = out.len().min(sent.len());
        out[..n].copy_from_slice(&sent[..n]);
        sent.drain(..n);
        Ok(n)
    }
}

/// The client's handshake with `server`; what the server sent after it (session tickets) is
/// read, so that what it sends next is what the stream made it send.
fn connect(config: &Arc<ClientConfig>, server: &mut impl Server) -> ClientRecords {
    let (mut client, mut after) = records::connect(config, "localhost", &mut Wire(server))
        .unwrap_or_else(|e| panic!("the handshake: {e}"));
    after.append(server.sent());
    client
        .open_all(&mut after)
        .expect("the server's records after the handshake");
    assert!(after.is_empty(), "the server sent part of a record");
    client
}

/// Reads the fuzzer's input front to back; zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&first, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        first
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        taken.to_vec()
    }
}

/// The most a stream grows to (further operations are not read).
const MAX_STREAM: usize = 256 * 1024;

/// The two clients and what each has sent, operation by operation.
struct Streams {
    clients: [ClientRecords; 2],
    streams: [Vec<u8>; 2],
    /// Where the last record each client sealed lies in its stream.
    last: Option<std::ops::Range<usize>>,
    /// A zero-length handshake record was sealed.
    empty_handshake: bool,
}

impl Streams {
    /// Both clients seal the same record.
    fn seal(&mut self, content_type: u8, payload: &[u8], shape: &Shape) {
        let effective = shape
            .outer_type
            .filter(|_| self.tls12())
            .unwrap_or(content_type);
        let inner_empty = match self.tls12() {
            true => payload.is_empty(),
            false => payload.is_empty() && !shape.no_inner_type,
        };
        if effective == records::HANDSHAKE && inner_empty {
            self.empty_handshake = true;
        }
        let start = self.streams[0].len();
        for (client, stream) in self.clients.iter_mut().zip(&mut self.streams) {
            let record = client.seal_shaped(content_type, payload, shape);
            stream.extend_from_slice(&record);
        }
        self.last = Some(start..self.streams[0].len());
    }

    /// Both streams get the same bytes.
    fn raw(&mut self, bytes: &[u8]) {
        self.last = None;
        for stream in &mut self.streams {
            stream.extend_from_slice(bytes);
        }
    }

    fn tls12(&self) -> bool {
        self.clients[0].version() == Version::Tls12
    }

    /// One operation of the input; false once the input is spent.
    fn operate(&mut self, input: &mut Input<'_>) -> bool {
        if input.0.is_empty() || self.streams[0].len() > MAX_STREAM {
            return false;
        }
        let plain = Shape::default();
        match input.byte() % 12 {
            // Application data: a few bytes of the input, or a long run of one byte.
            0 => {
                let code = input.u16();
                let payload = match code & 0x8000 {
                    0 => input.bytes(usize::from(code % 65)),
                    _ => vec![
                        input.byte();
                        usize::from(code & 0x7fff) % (records::MAX_FRAGMENT + 300)
                    ],
                };
                self.seal(records::APPLICATION_DATA, &payload, &plain);
            }
            // Handshake bytes of the input's choice.
            1 => {
                let len = usize::from(input.byte() % 48);
                let payload = input.bytes(len);
                self.seal(records::HANDSHAKE, &payload, &plain);
            }
            // A key update, its request byte the input's.
            2 => {
                let request = match input.byte() {
                    b @ 0..=1 => b,
                    2..=200 => 1,
                    b => b,
                };
                let message = records::handshake_message(records::KEY_UPDATE, &[request]);
                self.seal(records::HANDSHAKE, &message, &plain);
            }
            // An alert of zero to three bytes.
            3 => {
                let len = usize::from(input.byte() % 4);
                let mut payload = input.bytes(len);
                if let [level, _] = &mut payload[..] {
                    *level %= 4;
                }
                self.seal(records::ALERT, &payload, &plain);
            }
            // A record shaped as the input says.
            4 => {
                let content_type = match input.byte() % 8 {
                    0 => records::APPLICATION_DATA,
                    1 => records::HANDSHAKE,
                    2 => records::ALERT,
                    3 => records::CHANGE_CIPHER_SPEC,
                    _ => input.byte(),
                };
                let len = usize::from(input.byte() % 32);
                let payload = input.bytes(len);
                let flags = input.byte();
                let shape = Shape {
                    outer_type: (flags & 1 != 0).then(|| input.byte()),
                    version: (flags & 2 != 0).then(|| input.u16()),
                    padding: match flags & 4 {
                        0 => usize::from(input.byte() % 8),
                        _ => usize::from(input.u16()) % (records::MAX_FRAGMENT + 300),
                    },
                    no_inner_type: flags & 8 != 0,
                    length: (flags & 16 != 0).then(|| input.u16()),
                    flips: Vec::new(),
                };
                self.seal(content_type, &payload, &shape);
            }
            // The last record tampered with.
            5 => {
                let (at, mask) = (usize::from(input.u16()), input.byte().max(1));
                if let Some(last) = self.last.clone() {
                    for stream in &mut self.streams {
                        stream[last.start + at % last.len()] ^= mask;
                    }
                }
            }
            // The last record again.
            6 => {
                if let Some(last) = self.last.clone() {
                    for stream in &mut self.streams {
                        stream.extend_from_within(last.clone());
                    }
                }
            }
            // Bytes that are no record of this client's.
            7 => {
                let len = usize::from(input.byte() % 24);
                let garbage = input.bytes(len);
                self.raw(&garbage);
            }
            // A renegotiation ClientHello, over one to three records.
            8 => {
                let mut random = [0u8; 32];
                random[..4].copy_from_slice(&input.bytes(4).try_into().unwrap_or([0; 4]));
                let hello = records::renegotiation_client_hello(random);
                let pieces = usize::from(input.byte() % 3) + 1;
                for piece in hello.chunks(hello.len().div_ceil(pieces)) {
                    self.seal(records::HANDSHAKE, piece, &plain);
                }
            }
            // A key update split over two records at the input's point.
            9 => {
                let message = records::key_update(input.byte() & 1 == 1);
                let at = usize::from(input.byte()) % (message.len() - 1) + 1;
                self.seal(records::HANDSHAKE, &message[..at], &plain);
                self.seal(records::HANDSHAKE, &message[at..], &plain);
            }
            // An empty application-data record.
            10 => self.seal(records::APPLICATION_DATA, &[], &plain),
            // Several key updates in one record.
            _ => {
                let count = input.byte() % 6 + 1;
                let requests = input.byte();
                let payload: Vec<u8> = (0..count)
                    .flat_map(|i| records::key_update(requests >> i & 1 == 1))
                    .collect();
                self.seal(records::HANDSHAKE, &payload, &plain);
            }
        }
        true
    }
}

/// The chunks the stream is delivered in: whole, byte by byte, in sevens, or in sizes drawn
/// from a generator the input seeds.
fn chunks(stream: &[u8], mode: u8) -> Vec<&[u8]> {
    match mode % 4 {
        0 => vec![stream],
        1 => stream.chunks(1).collect(),
        2 => stream.chunks(7).collect(),
        _ => {
            let mut state = u32::from(mode) | 0x9e37_0000;
            let mut out = Vec::new();
            let mut rest = stream;
            while !rest.is_empty() {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let n = (state as usize % 300 + 1).min(rest.len());
                let (chunk, after) = rest.split_at(n);
                out.push(chunk);
                rest = after;
            }
            out
        }
    }
}

/// The record headers of a stream, walking it from the start (the last may be cut short).
fn headers(stream: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        let header = stream
            .get(at..)?
            .get(..records::HEADER.min(stream.len() - at))?;
        if header.is_empty() {
            return None;
        }
        at += records::HEADER;
        if let [_, _, _, hi, lo] = *header {
            at += usize::from(u16::from_be_bytes([hi, lo]));
        }
        Some(header)
    })
}

/// Whether the stream ends inside a record (a header or body cut short).
fn ends_inside_a_record(stream: &[u8]) -> bool {
    let end: usize = headers(stream)
        .map(|h| match *h {
            [_, _, _, hi, lo] => records::HEADER + usize::from(u16::from_be_bytes([hi, lo])),
            _ => records::HEADER,
        })
        .sum();
    end != stream.len()
}

/// Whether the stream holds a header percore refuses where rustls may take the record: one
/// whose version is not 3.3 (percore, as OpenSSL and BoringSSL, takes no other after the
/// handshake; rustls takes in TLS 1.2 any version it knows, and in TLS 1.3 authenticates
/// the header it expects rather than the one sent), or, in TLS 1.3, whose type is not
/// application data (RFC 8446 section 5.2: the additional data is the header as sent).
fn has_a_header_percore_refuses(stream: &[u8], tls12: bool) -> bool {
    headers(stream).any(|h| h.len() == records::HEADER && (h[1..3] != [3, 3] || (!tls12 && h[0] != 23)))
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let fixture = fixture();
    let config = &fixture.clients[usize::from(input.byte()) % fixture.clients.len()];
    let cut = input.byte();

    let mut percore = Percore {
        tls: TlsServer::new(&fixture.percore).unwrap(),
        held: Vec::new(),
        wire: Vec::new(),
        plain: Vec::new(),
        verdict: Verdict::Open,
    };
    let mut rustls = Rustls {
        conn: ServerConnection::new(fixture.rustls.clone()).unwrap(),
        wire: Vec::new(),
        plain: Vec::new(),
        verdict: Verdict::Open,
        error: None,
    };
    let mut streams = Streams {
        clients: [connect(config, &mut percore), connect(config, &mut rustls)],
        streams: [Vec::new(), Vec::new()],
        last: None,
        empty_handshake: false,
    };
    while streams.operate(&mut input) {}
    let [ours, theirs] = &streams.streams;
    assert_eq!(ours.len(), theirs.len(), "both streams have the same shape");

    for chunk in chunks(ours, cut) {
        if !percore.take(chunk) {
            break;
        }
    }
    for chunk in chunks(theirs, cut) {
        if !rustls.take(chunk) {
            break;
        }
    }

    // What percore sent opens under the client's keys: at most one fatal alert, last.
    let mut sent = std::mem::take(&mut percore.wire);
    assert!(
        sent.len() <= ours.len() + 64,
        "{} bytes sent back for {} received",
        sent.len(),
        ours.len()
    );
    let [client, _] = &mut streams.clients;
    let opened = client.open_all(&mut sent).expect("percore's records open");
    assert!(sent.is_empty(), "percore sent part of a record");
    let fatal = opened
        .iter()
        .position(|r| r.alert().is_some_and(|[level, _]| level == 2));
    if let Some(at) = fatal {
        assert_eq!(at, opened.len() - 1, "the fatal alert is the last record");
        assert_eq!(percore.verdict, Verdict::Failed);
    }
    let warned = opened
        .iter()
        .any(|r| r.alert() == Some([1, records::NO_RENEGOTIATION]));

    // The verdicts, and the data delivered, are rustls's, but where they differ on purpose.
    let (ours_plain, theirs_plain) = (percore.plain(), rustls.plain());
    match (percore.verdict(), rustls.verdict()) {
        (a, b) if a == b && a != Verdict::Failed => {
            assert_eq!(ours_plain, theirs_plain, "the same data, both {a:?}")
        }
        (Verdict::Failed, Verdict::Failed) => {
            assert!(
                theirs_plain.starts_with(ours_plain) || ours_plain.starts_with(theirs_plain),
                "data before the failure"
            );
        }
        (Verdict::Failed, _) => {
            let stricter = streams.empty_handshake
                || ends_inside_a_record(theirs)
                || has_a_header_percore_refuses(theirs, streams.tls12());
            assert!(
                stricter && theirs_plain.starts_with(ours_plain),
                "percore refused what rustls took ({:?}): {opened:?}",
                rustls.verdict()
            );
        }
        (_, Verdict::Failed) => {
            let lenient = streams.tls12()
                && warned
                && matches!(rustls.error, Some(rustls::Error::InvalidMessage(_)));
            assert!(
                lenient && ours_plain.starts_with(theirs_plain),
                "percore took what rustls refused ({:?}, {:?})",
                rustls.error,
                percore.verdict()
            );
        }
        (a, b) => panic!("percore {a:?}, rustls {b:?}"),
    }
});
