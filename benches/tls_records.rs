//! The record layer after the handshake, three ways, in memory, on the same keys' kind
//! (TLS 1.3, AES-128-GCM, aws-lc-rs): rustls's buffered `ServerConnection`, rustls's
//! unbuffered `UnbufferedServerConnection`, and percore's own record layer on the keys
//! rustls hands over (what a core runs). For each, the server's time and heap allocations
//! to open one client record and to seal one response, for 1 KiB and 16 KiB of plaintext.
//!
//! `cargo bench --bench tls_records -- [RECORDS]` (pin it: `taskset -c 1 …`)

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use percore::config::TlsConfig;
use percore::internals::TlsServer;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, UnbufferedStatus};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

#[path = "../tests/common/counting.rs"]
mod counting;

/// Allocations while the gate is open: around the server's calls only.
static ALLOCATIONS: counting::Gate = counting::Gate::new();

fn count() {
    ALLOCATIONS.count();
}

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting(count);

/// Time and allocations spent in the server's calls.
#[derive(Default)]
struct Spent {
    time: Duration,
    allocations: u64,
}

impl Spent {
    fn measure<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let before = ALLOCATIONS.counted();
        ALLOCATIONS.open();
        let started = Instant::now();
        let value = f();
        self.time += started.elapsed();
        ALLOCATIONS.close();
        self.allocations += ALLOCATIONS.counted() - before;
        value
    }
}

/// Makes a server and a client connection to it, their handshake done.
type Connect = fn(&Keys) -> (Box<dyn Server>, ClientConnection);

/// A server's side of the record layer.
trait Server {
    /// Opens the client's `record` (one whole record); returns its plaintext's length.
    fn open(&mut self, record: &[u8], spent: &mut Spent) -> usize;
    /// Seals `plain` as application data; returns the ciphertext.
    fn seal(&mut self, plain: &[u8], spent: &mut Spent) -> &[u8];
}

fn main() {
    let records: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let keys = Keys::new();
    println!(
        "server's share per record, TLS 1.3 AES-128-GCM on aws-lc-rs, {records} records each way"
    );
    for size in [1024, 16 * 1024] {
        let servers: [(&str, Connect); 3] = [
            ("rustls buffered", Keys::buffered),
            ("rustls unbuffered", Keys::unbuffered),
            ("percore record layer", Keys::percore),
        ];
        for (name, connect) in servers {
            // A fresh connection, its handshake done.
            let (mut server, mut client) = connect(&keys);
            let (open, seal) = run(&mut *server, &mut client, size, records);
            println!(
                "{name:21} {:>2} KiB   open {:6.0} ns {:4.2} allocations   seal {:6.0} ns {:4.2} allocations",
                size / 1024,
                open.time.as_secs_f64() * 1e9 / f64::from(records),
                open.allocations as f64 / f64::from(records),
                seal.time.as_secs_f64() * 1e9 / f64::from(records),
                seal.allocations as f64 / f64::from(records),
            );
        }
    }
}

/// Sends `records` records of `size` bytes each way through `server`, after a warm-up.
fn run(
    server: &mut dyn Server,
    client: &mut ClientConnection,
    size: usize,
    records: u32,
) -> (Spent, Spent) {
    let data = vec![b'x'; size];
    let (mut open, mut seal) = (Spent::default(), Spent::default());
    let mut plain = vec![0u8; 32 * 1024];
    for round in 0..records + 1000 {
        if round == 1000 {
            (open, seal) = (Spent::default(), Spent::default());
        }
        client.writer().write_all(&data).unwrap();
        let record = client_output(client);
        assert_eq!(server.open(&record, &mut open), size);
        let mut sealed = server.seal(&data, &mut seal);
        while !sealed.is_empty() {
            client.read_tls(&mut sealed).unwrap();
            client.process_new_packets().unwrap();
        }
        let mut got = 0;
        while got < size {
            got += client.reader().read(&mut plain).unwrap();
        }
    }
    (open, seal)
}

fn client_output(client: &mut ClientConnection) -> Vec<u8> {
    let mut bytes = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut bytes).unwrap();
    }
    bytes
}

/// Gives the client everything in `bytes`.
fn client_input(client: &mut ClientConnection, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        client.read_tls(&mut bytes).unwrap();
        client.process_new_packets().unwrap();
    }
}

/// One certificate, the same for every server, and a client offering AES-128-GCM only.
struct Keys {
    dir: std::path::PathBuf,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    client: Arc<ClientConfig>,
}

impl Keys {
    fn new() -> Keys {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let dir = std::env::temp_dir().join(format!("percore-tls-records-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        let der = CertificateDer::from(cert.der().to_vec());
        let mut roots = RootCertStore::empty();
        roots.add(der.clone()).unwrap();
        let mut provider = provider();
        provider
            .cipher_suites
            .retain(|suite| suite.suite() == rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        let client = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Keys {
            dir,
            cert: der,
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            client: Arc::new(client),
        }
    }

    fn new_client(&self) -> ClientConnection {
        let name = ServerName::try_from("localhost").unwrap();
        ClientConnection::new(self.client.clone(), name).unwrap()
    }

    fn rustls_config(&self) -> Arc<ServerConfig> {
        let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], self.key.clone_key())
            .unwrap();
        config.send_tls13_tickets = 0;
        Arc::new(config)
    }

    fn buffered(&self) -> (Box<dyn Server>, ClientConnection) {
        let mut client = self.new_client();
        let mut server = ServerConnection::new(self.rustls_config()).unwrap();
        while client.is_handshaking() || server.is_handshaking() {
            let mut hello = &client_output(&mut client)[..];
            while !hello.is_empty() {
                server.read_tls(&mut hello).unwrap();
                server.process_new_packets().unwrap();
            }
            let mut reply = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut reply).unwrap();
            }
            client_input(&mut client, &reply);
        }
        let server = Buffered {
            server,
            plain: vec![0; 32 * 1024],
            out: Vec::new(),
        };
        (Box::new(server), client)
    }

    fn unbuffered(&self) -> (Box<dyn Server>, ClientConnection) {
        let mut client = self.new_client();
        let mut server = Unbuffered {
            conn: UnbufferedServerConnection::new(self.rustls_config()).unwrap(),
            incoming: Vec::new(),
            out: Vec::new(),
        };
        while client.is_handshaking() || server.conn.is_handshaking() {
            server
                .incoming
                .extend_from_slice(&client_output(&mut client));
            server.out.clear();
            server.handshake();
            client_input(&mut client, &server.out);
        }
        (Box::new(server), client)
    }

    fn percore(&self) -> (Box<dyn Server>, ClientConnection) {
        let config = TlsConfig::new(self.dir.join("cert.pem"), self.dir.join("key.pem"));
        let mut server = Percore {
            conn: TlsServer::new(&config).expect("percore's TLS loads the certificate"),
            buf: vec![0; 64 * 1024],
            out: Vec::new(),
        };
        let mut client = self.new_client();
        let mut pending = Vec::new();
        while client.is_handshaking() {
            pending.extend_from_slice(&client_output(&mut client));
            let mut wire = Vec::new();
            let used = server
                .conn
                .receive(&mut pending, &mut wire, &mut |_| {})
                .expect("the handshake goes on");
            pending.drain(..used);
            client_input(&mut client, &wire);
        }
        (Box::new(server), client)
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn provider() -> CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

struct Buffered {
    server: ServerConnection,
    plain: Vec<u8>,
    out: Vec<u8>,
}

impl Server for Buffered {
    fn open(&mut self, mut record: &[u8], spent: &mut Spent) -> usize {
        let (server, plain) = (&mut self.server, &mut self.plain);
        spent.measure(|| {
            while !record.is_empty() {
                server.read_tls(&mut record).unwrap();
                server.process_new_packets().unwrap();
            }
            server.reader().read(plain).unwrap()
        })
    }

    fn seal(&mut self, plain: &[u8], spent: &mut Spent) -> &[u8] {
        let (server, out) = (&mut self.server, &mut self.out);
        out.clear();
        spent.measure(|| {
            server.writer().write_all(plain).unwrap();
            while server.wants_write() {
                server.write_tls(out).unwrap();
            }
        });
        &self.out
    }
}

struct Unbuffered {
    conn: UnbufferedServerConnection,
    /// Ciphertext from the client not yet discarded.
    incoming: Vec<u8>,
    out: Vec<u8>,
}

impl Unbuffered {
    /// Runs the handshake over `incoming`, its answers appended to `out`.
    fn handshake(&mut self) {
        loop {
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(&mut self.incoming);
            let blocked = match state.unwrap() {
                ConnectionState::EncodeTlsData(mut encode) => {
                    encode_into(&mut self.out, |out| encode.encode(out));
                    false
                }
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    false
                }
                ConnectionState::BlockedHandshake | ConnectionState::WriteTraffic(_) => true,
                _ => panic!("nothing else is expected during the handshake"),
            };
            self.incoming.drain(..discard);
            if blocked {
                return;
            }
        }
    }
}

impl Server for Unbuffered {
    fn open(&mut self, record: &[u8], spent: &mut Spent) -> usize {
        self.incoming.clear();
        self.incoming.extend_from_slice(record);
        let (conn, incoming) = (&mut self.conn, &mut self.incoming);
        spent.measure(|| {
            let UnbufferedStatus { mut discard, state } = conn.process_tls_records(incoming);
            let ConnectionState::ReadTraffic(mut read) = state.unwrap() else {
                panic!("a record of application data was expected");
            };
            let mut len = 0;
            while let Some(record) = read.next_record() {
                let record = record.unwrap();
                discard += record.discard;
                // The plaintext is read where it lies, as percore's session reads it.
                len += record.payload.len();
            }
            assert_eq!(discard, incoming.len());
            len
        })
    }

    fn seal(&mut self, plain: &[u8], spent: &mut Spent) -> &[u8] {
        let (conn, out) = (&mut self.conn, &mut self.out);
        out.clear();
        spent.measure(|| {
            let status = conn.process_tls_records(&mut []);
            let ConnectionState::WriteTraffic(mut write) = status.state.unwrap() else {
                panic!("the connection was expected to be ready for data");
            };
            let room = plain.len() + plain.len().div_ceil(16384) * 64;
            if out.len() < room {
                out.resize(room, 0);
            }
            let written = write.encrypt(plain, out).unwrap();
            out.truncate(written);
        });
        &self.out
    }
}

/// Appends what `encode` writes to `out`, growing it to the size rustls asks for.
fn encode_into(out: &mut Vec<u8>, mut encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>) {
    let mut room = 4096;
    loop {
        let start = out.len();
        out.resize(start + room, 0);
        match encode(&mut out[start..]) {
            Ok(written) => {
                out.truncate(start + written);
                return;
            }
            Err(EncodeError::InsufficientSize(needed)) => {
                out.truncate(start);
                room = needed.required_size;
            }
            Err(e) => panic!("encoding failed: {e}"),
        }
    }
}

struct Percore {
    conn: TlsServer,
    /// Where the ring would have put the ciphertext.
    buf: Vec<u8>,
    out: Vec<u8>,
}

impl Server for Percore {
    fn open(&mut self, record: &[u8], spent: &mut Spent) -> usize {
        self.buf[..record.len()].copy_from_slice(record);
        let (conn, buf) = (&mut self.conn, &mut self.buf[..record.len()]);
        // What the server sends back (a session ticket after the handshake) goes out before
        // the response.
        let wire = &mut self.out;
        wire.clear();
        spent.measure(|| {
            let mut len = 0;
            let used = conn
                .receive(buf, wire, &mut |plain| len += plain.len())
                .expect("the record opens");
            assert_eq!(used, record.len());
            len
        })
    }

    fn seal(&mut self, plain: &[u8], spent: &mut Spent) -> &[u8] {
        let (conn, out) = (&mut self.conn, &mut self.out);
        spent.measure(|| conn.seal(plain, out));
        &self.out
    }
}
