//! The misbehaving TLS client of `tls_hostile.rs` and `tls_framing.rs`: a client that seals
//! its records itself (`records.rs`, written apart from percore's record layer) on the keys
//! rustls's handshake gave it, sends an attack, and opens what the server sends until the
//! server closes ([`Ending`]: the records, the alert, how it ended); a bystander on the same
//! core that must keep being answered meanwhile ([`Bystander`]). Every read has a deadline.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rustls::{ClientConfig, SupportedProtocolVersion};

use crate::common::records::{
    self, ClientRecords, Opened, APPLICATION_DATA, FATAL, HANDSHAKE, KEY_UPDATE, NEW_SESSION_TICKET,
};
use crate::common::Response;
use crate::tls::{tcp, TlsClient, TlsServer};

/// How long an attacked connection has to end after the attack was sent: far beyond what
/// percore takes; past it the test fails (the server kept the connection open).
pub const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// Most bytes percore may send back to one attack once it is under way (a KeyUpdate, a
/// warning and a fatal alert are under 100): whatever the attack's size.
pub const OUTPUT_BOUND: usize = 256;

/// `GET /echo?name=NAME`, keep-alive.
pub fn echo(name: &str) -> String {
    format!("GET /echo?name={name} HTTP/1.1\r\nHost: localhost\r\n\r\n")
}

/// The ciphertext a client with its own records has read: opened as it is read, the
/// application data kept for HTTP, every other record logged.
pub struct Wire {
    pub stream: TcpStream,
    pub records: ClientRecords,
    /// Read, not yet opened (a record's start).
    pub cipher: Vec<u8>,
    /// Application data opened, not yet read.
    pub plain: Vec<u8>,
    /// Ciphertext bytes read from the socket since the handshake.
    pub received: usize,
    /// Every record opened that was not application data, in order.
    pub log: Vec<Opened>,
    /// The first alert seen (what HTTP reads fail with, once the data before it is read).
    pub alert: Option<[u8; 2]>,
}

impl Wire {
    /// Opens every whole record read so far.
    pub fn open(&mut self) -> Result<(), String> {
        for record in self.records.open_all(&mut self.cipher)? {
            if record.content_type == APPLICATION_DATA {
                self.plain.extend_from_slice(&record.data);
                continue;
            }
            if self.alert.is_none() {
                self.alert = record.alert();
            }
            self.log.push(record);
        }
        Ok(())
    }

    /// Reads once more from the socket (the socket's deadline applies); 0 at its end.
    pub fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 16384];
        let n = self.stream.read(&mut chunk)?;
        self.received += n;
        self.cipher.extend_from_slice(&chunk[..n]);
        Ok(n)
    }
}

/// Application data, for `tls::read_response`.
impl Read for Wire {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if !self.plain.is_empty() {
                let n = out.len().min(self.plain.len());
                out[..n].copy_from_slice(&self.plain[..n]);
                self.plain.drain(..n);
                return Ok(n);
            }
            if let Some(alert) = self.alert {
                return Err(std::io::Error::other(format!("alert {alert:?}")));
            }
            if self.fill()? == 0 {
                return Ok(0);
            }
            self.open().map_err(std::io::Error::other)?;
        }
    }
}

/// A client that makes its records itself, to misbehave.
pub struct Hostile {
    pub wire: Wire,
    /// Plaintext read past the last response.
    pub http: Vec<u8>,
    /// Where the attack began: bytes received, records logged.
    pub mark: (usize, usize),
    /// A write the server did not take (it may close before the attack is all sent).
    pub write_error: Option<String>,
}

impl Hostile {
    /// A handshake with `server` as `localhost` under `config`; then the bytes after it
    /// (none are expected: the server speaks after the client's Finished).
    pub fn connect_with(server: &TlsServer, config: &ClientConfig) -> Hostile {
        let mut stream = tcp(server.https);
        let (records, after) = records::connect(config, "localhost", &mut stream)
            .unwrap_or_else(|e| panic!("the record tool's handshake: {e}"));
        let mut wire = Wire {
            stream,
            records,
            cipher: after,
            plain: Vec::new(),
            received: 0,
            log: Vec::new(),
            alert: None,
        };
        wire.received = wire.cipher.len();
        Hostile {
            wire,
            http: Vec::new(),
            mark: (0, 0),
            write_error: None,
        }
    }

    /// The same, offering `versions` only.
    pub fn connect(server: &TlsServer, versions: &[&'static SupportedProtocolVersion]) -> Hostile {
        Hostile::connect_with(server, &server.pki.client(versions))
    }

    pub fn records(&mut self) -> &mut ClientRecords {
        &mut self.wire.records
    }

    /// A record of `content_type` with `payload`, sealed and sent.
    pub fn send_record(&mut self, content_type: u8, payload: &[u8]) {
        let record = self.records().seal(content_type, payload);
        self.send(&record);
    }

    /// Sends `bytes`; a write the server refuses (it closed already) is kept, not fatal:
    /// what the server sent before tells whether it was right to.
    pub fn send(&mut self, bytes: &[u8]) {
        if self.write_error.is_some() {
            return;
        }
        if let Err(e) = self.wire.stream.write_all(bytes) {
            self.write_error = Some(e.to_string());
        }
    }

    /// The response to the request in `record` (application data), sent.
    pub fn exchange(&mut self, record: &[u8]) -> Response {
        self.send(record);
        if let Some(e) = &self.write_error {
            panic!(
                "a request could not be sent: {e}; the server sent {:?}",
                self.log()
            );
        }
        crate::tls::read_response(&mut self.wire, &mut self.http)
            .unwrap_or_else(|e| panic!("no response: {e}; the server sent {:?}", self.log()))
    }

    /// `GET /echo?name=NAME` in a record of its own: answered, or the test fails.
    pub fn echo(&mut self, name: &str) {
        let record = self.records().seal(APPLICATION_DATA, echo(name).as_bytes());
        let response = self.exchange(&record);
        assert_eq!(response.text(), format!("Hi, {name}!"), "{response:?}");
    }

    /// The records the server sent so far other than application data and session tickets
    /// (their number is the server's to choose), in short.
    pub fn log(&self) -> Vec<String> {
        let log: Vec<Opened> = self
            .wire
            .log
            .iter()
            .filter(|record| !is_ticket(record))
            .cloned()
            .collect();
        runs(&log)
    }

    /// From here on is the attack: what the server sends is counted from here.
    pub fn attack_begins(&mut self) {
        self.mark = (
            self.wire.received - self.wire.cipher.len(),
            self.wire.log.len(),
        );
    }

    /// Reads on until the server ends the connection (or [`CLOSE_WAIT`] passes), opening
    /// its records: what it sent since [`Hostile::attack_begins`].
    pub fn ending(mut self) -> Ending {
        let deadline = Instant::now() + CLOSE_WAIT;
        let mut broken = self.wire.open().err();
        let end = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break End::Timeout;
            }
            self.wire.stream.set_read_timeout(Some(left)).unwrap();
            match self.wire.fill() {
                Ok(0) => break End::Eof,
                Ok(_) if broken.is_some() => {}
                Ok(_) => broken = self.wire.open().err(),
                Err(e) if is_timeout(&e) => break End::Timeout,
                Err(e) => break End::Reset(e.to_string()),
            }
        };
        let mut records: Vec<Opened> = self.wire.log.drain(self.mark.1..).collect();
        if !self.wire.plain.is_empty() {
            records.push(Opened {
                content_type: APPLICATION_DATA,
                data: std::mem::take(&mut self.wire.plain),
                wire_len: 0,
            });
        }
        Ending {
            records,
            bytes: self.wire.received - self.mark.0,
            unopened: self.wire.cipher.len(),
            broken,
            end,
            write_error: self.write_error,
        }
    }
}

pub fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Whether `record` holds session tickets and nothing else.
pub fn is_ticket(record: &Opened) -> bool {
    let types = record.handshake_types();
    !types.is_empty() && types.iter().all(|&kind| kind == NEW_SESSION_TICKET)
}

/// A record in short: `alert(2,10)`, `handshake[24]`, `data(12)`.
pub fn describe(record: &Opened) -> String {
    match (record.alert(), record.content_type) {
        (Some([level, description]), _) => format!("alert({level},{description})"),
        (None, HANDSHAKE) => format!("handshake{:?}", record.handshake_types()),
        (None, APPLICATION_DATA) => format!("data({})", record.data.len()),
        (None, other) => format!("type {other} ({} bytes)", record.data.len()),
    }
}

/// How the stream of an attacked connection ended.
pub enum End {
    /// The server closed it (a FIN).
    Eof,
    /// A reset, or another error.
    Reset(String),
    /// Still open at the deadline.
    Timeout,
}

/// What the server sent from the attack on, to the end of the connection.
pub struct Ending {
    /// The records opened, in order (application data as one entry at the end).
    pub records: Vec<Opened>,
    /// Ciphertext bytes received.
    pub bytes: usize,
    /// Bytes at the end that were not a whole record.
    pub unopened: usize,
    /// A record that did not open, and why (nothing after it was opened).
    pub broken: Option<String>,
    pub end: End,
    pub write_error: Option<String>,
}

impl std::fmt::Debug for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Eof => write!(f, "then the server closed"),
            End::Reset(e) => write!(f, "then {e}"),
            End::Timeout => write!(f, "and the connection still open after {CLOSE_WAIT:?}"),
        }
    }
}

/// Records in short, a run of the same written once with its count: `handshake[24] x200`.
pub fn runs(records: &[Opened]) -> Vec<String> {
    let mut runs: Vec<(String, usize)> = Vec::new();
    for record in records.iter().map(describe) {
        match runs.last_mut() {
            Some((last, count)) if *last == record => *count += 1,
            _ => runs.push((record, 1)),
        }
    }
    runs.into_iter()
        .map(|(record, count)| match count {
            1 => record,
            _ => format!("{record} x{count}"),
        })
        .collect()
}

impl std::fmt::Debug for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let records = runs(&self.records);
        write!(
            f,
            "records {records:?}, {} bytes ({} not a whole record) {:?}",
            self.bytes, self.unopened, self.end
        )?;
        if let Some(broken) = &self.broken {
            write!(f, ", then {broken}")?;
        }
        if let Some(e) = &self.write_error {
            write!(f, "; the attack's write failed: {e}")?;
        }
        Ok(())
    }
}

impl Ending {
    pub fn alerts(&self) -> Vec<[u8; 2]> {
        self.records.iter().filter_map(Opened::alert).collect()
    }

    /// KeyUpdate messages the server sent.
    pub fn key_updates(&self) -> usize {
        self.records
            .iter()
            .flat_map(Opened::handshake_types)
            .filter(|&kind| kind == KEY_UPDATE)
            .count()
    }

    /// The alerts were exactly `alerts`, the last the last record, and the server closed.
    #[track_caller]
    pub fn expect_alerts(&self, alerts: &[[u8; 2]], what: &str) {
        let closed = matches!(self.end, End::Eof | End::Reset(_));
        let last_is_alert = self.records.last().and_then(Opened::alert) == alerts.last().copied();
        assert!(
            self.broken.is_none()
                && self.unopened == 0
                && closed
                && last_is_alert
                && self.alerts() == alerts,
            "{what}: expected the alerts {alerts:?}, the last one ending the connection; \
             the server sent {self:?}"
        );
    }

    /// The connection ended with the fatal alert `description` and no other.
    #[track_caller]
    pub fn expect_fatal(&self, description: u8, what: &str) {
        self.expect_alerts(&[[FATAL, description]], what);
    }

    /// The server sent at most `bound` bytes and `key_updates` KeyUpdates.
    #[track_caller]
    pub fn expect_at_most(&self, bound: usize, key_updates: usize, what: &str) {
        assert!(
            self.bytes <= bound && self.key_updates() <= key_updates,
            "{what}: expected at most {bound} bytes and {key_updates} KeyUpdate(s) back; \
             the server sent {self:?}"
        );
    }
}

/// A normal rustls client on the attacked server's core, asking `GET /echo` now and then.
pub struct Bystander {
    pub client: TlsClient,
    pub asked: usize,
}

impl Bystander {
    pub fn new(server: &TlsServer) -> Bystander {
        let mut bystander = Bystander {
            client: server.connect(),
            asked: 0,
        };
        bystander.check();
        bystander
    }

    /// One request on the same connection: answered, and right.
    #[track_caller]
    pub fn check(&mut self) {
        self.asked += 1;
        let name = format!("bystander{}", self.asked);
        let response = ask(&mut self.client, &echo(&name))
            .unwrap_or_else(|e| panic!("the other connection on the core: {e}"));
        assert_eq!(response.text(), format!("Hi, {name}!"));
    }
}

/// `request` sent on `client`, and its response.
pub fn ask(client: &mut TlsClient, request: &str) -> Result<Response, String> {
    client.try_send(request)?;
    client.try_response()
}

/// Sends the attack made by `attack` on a new connection of `versions` (after one request,
/// answered, which also shows the record tool right), with another connection on the same
/// core asking before, during and after; returns what the server sent from the attack on.
pub fn attack(
    server: &TlsServer,
    versions: &[&'static SupportedProtocolVersion],
    make: impl FnOnce(&mut ClientRecords) -> Vec<u8>,
) -> Ending {
    let mut bystander = Bystander::new(server);
    let mut hostile = Hostile::connect(server, versions);
    hostile.echo("before");
    hostile.attack_begins();
    let bytes = make(hostile.records());
    hostile.send(&bytes);
    bystander.check();
    let ending = hostile.ending();
    bystander.check();
    ending
}

/// `count` copies of what `record` seals, one record each.
pub fn records_of(
    records: &mut ClientRecords,
    count: usize,
    mut record: impl FnMut(&mut ClientRecords) -> Vec<u8>,
) -> Vec<u8> {
    (0..count).flat_map(|_| record(records)).collect()
}
