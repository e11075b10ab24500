//! TLS clients that misbehave after the handshake, over real sockets, against the rules of
//! percore's record layer (issue 25): floods of KeyUpdates, KeyUpdates that do not end their
//! record or that span two, renegotiations, warnings, records over the size limits, empty
//! records, tampered and replayed records. Each attack must end its connection with the
//! fatal alert the rules name, while the server sends a bounded amount back; and another
//! connection on the same core (the servers here have one) keeps being answered meanwhile.
//!
//! The attacking client seals its records itself (`common/records.rs`, written apart from
//! percore's record layer) on the keys rustls's handshake gave it, and opens what the server
//! sends until the server closes: every read has a deadline.
//!
//! Also here: the SNI name of a handshake that failed must not reach the next connection
//! on the core, and the latency other connections see during a flood of attacks (printed,
//! not asserted).

mod common;
#[path = "common/tls.rs"]
mod tls;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use percore::config::TlsConfig;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, SupportedProtocolVersion};

use common::records::{
    self, key_update, renegotiation_client_hello, ClientRecords, Opened, Shape, ALERT,
    APPLICATION_DATA, BAD_CERTIFICATE, BAD_RECORD_MAC, CLOSE_NOTIFY, DECODE_ERROR, FATAL,
    HANDSHAKE, HEADER, ILLEGAL_PARAMETER, KEY_UPDATE, MAX_FRAGMENT, NEW_SESSION_TICKET,
    NO_RENEGOTIATION, PROTOCOL_VERSION, RECORD_OVERFLOW, TAG, UNEXPECTED_MESSAGE, USER_CANCELED,
    WARNING,
};
use common::Response;
use tls::{fact, tcp, Pki, TlsClient, TlsServer, DEFAULT_NAMES, SNI_NAMES, TLS12, TLS13};

/// How long an attacked connection has to end after the attack was sent: far beyond what
/// percore takes; past it the test fails (the server kept the connection open).
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// Most bytes percore may send back to one attack once it is under way (a KeyUpdate, a
/// warning and a fatal alert are under 100): whatever the attack's size.
const OUTPUT_BOUND: usize = 256;

/// `GET /echo?name=NAME`, keep-alive.
fn echo(name: &str) -> String {
    format!("GET /echo?name={name} HTTP/1.1\r\nHost: localhost\r\n\r\n")
}

/// The ciphertext a client with its own records has read: opened as it is read, the
/// application data kept for HTTP, every other record logged.
struct Wire {
    stream: TcpStream,
    records: ClientRecords,
    /// Read, not yet opened (a record's start).
    cipher: Vec<u8>,
    /// Application data opened, not yet read.
    plain: Vec<u8>,
    /// Ciphertext bytes read from the socket since the handshake.
    received: usize,
    /// Every record opened that was not application data, in order.
    log: Vec<Opened>,
    /// The first alert seen (what HTTP reads fail with, once the data before it is read).
    alert: Option<[u8; 2]>,
}

impl Wire {
    /// Opens every whole record read so far.
    fn open(&mut self) -> Result<(), String> {
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
    fn fill(&mut self) -> std::io::Result<usize> {
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
struct Hostile {
    wire: Wire,
    /// Plaintext read past the last response.
    http: Vec<u8>,
    /// Where the attack began: bytes received, records logged.
    mark: (usize, usize),
    /// A write the server did not take (it may close before the attack is all sent).
    write_error: Option<String>,
}

impl Hostile {
    /// A handshake with `server` as `localhost` under `config`; then the bytes after it
    /// (none are expected: the server speaks after the client's Finished).
    fn connect_with(server: &TlsServer, config: &ClientConfig) -> Hostile {
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
    fn connect(server: &TlsServer, versions: &[&'static SupportedProtocolVersion]) -> Hostile {
        Hostile::connect_with(server, &server.pki.client(versions))
    }

    fn records(&mut self) -> &mut ClientRecords {
        &mut self.wire.records
    }

    /// A record of `content_type` with `payload`, sealed and sent.
    fn send_record(&mut self, content_type: u8, payload: &[u8]) {
        let record = self.records().seal(content_type, payload);
        self.send(&record);
    }

    /// Sends `bytes`; a write the server refuses (it closed already) is kept, not fatal:
    /// what the server sent before tells whether it was right to.
    fn send(&mut self, bytes: &[u8]) {
        if self.write_error.is_some() {
            return;
        }
        if let Err(e) = self.wire.stream.write_all(bytes) {
            self.write_error = Some(e.to_string());
        }
    }

    /// The response to the request in `record` (application data), sent.
    fn exchange(&mut self, record: &[u8]) -> Response {
        self.send(record);
        if let Some(e) = &self.write_error {
            panic!(
                "a request could not be sent: {e}; the server sent {:?}",
                self.log()
            );
        }
        tls::read_response(&mut self.wire, &mut self.http)
            .unwrap_or_else(|e| panic!("no response: {e}; the server sent {:?}", self.log()))
    }

    /// `GET /echo?name=NAME` in a record of its own: answered, or the test fails.
    fn echo(&mut self, name: &str) {
        let record = self.records().seal(APPLICATION_DATA, echo(name).as_bytes());
        let response = self.exchange(&record);
        assert_eq!(response.text(), format!("Hi, {name}!"), "{response:?}");
    }

    /// The records the server sent so far other than application data and session tickets
    /// (their number is the server's to choose), in short.
    fn log(&self) -> Vec<String> {
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
    fn attack_begins(&mut self) {
        self.mark = (
            self.wire.received - self.wire.cipher.len(),
            self.wire.log.len(),
        );
    }

    /// Reads on until the server ends the connection (or [`CLOSE_WAIT`] passes), opening
    /// its records: what it sent since [`Hostile::attack_begins`].
    fn ending(mut self) -> Ending {
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

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Whether `record` holds session tickets and nothing else.
fn is_ticket(record: &Opened) -> bool {
    let types = record.handshake_types();
    !types.is_empty() && types.iter().all(|&kind| kind == NEW_SESSION_TICKET)
}

/// A record in short: `alert(2,10)`, `handshake[24]`, `data(12)`.
fn describe(record: &Opened) -> String {
    match (record.alert(), record.content_type) {
        (Some([level, description]), _) => format!("alert({level},{description})"),
        (None, HANDSHAKE) => format!("handshake{:?}", record.handshake_types()),
        (None, APPLICATION_DATA) => format!("data({})", record.data.len()),
        (None, other) => format!("type {other} ({} bytes)", record.data.len()),
    }
}

/// How the stream of an attacked connection ended.
enum End {
    /// The server closed it (a FIN).
    Eof,
    /// A reset, or another error.
    Reset(String),
    /// Still open at the deadline.
    Timeout,
}

/// What the server sent from the attack on, to the end of the connection.
struct Ending {
    /// The records opened, in order (application data as one entry at the end).
    records: Vec<Opened>,
    /// Ciphertext bytes received.
    bytes: usize,
    /// Bytes at the end that were not a whole record.
    unopened: usize,
    /// A record that did not open, and why (nothing after it was opened).
    broken: Option<String>,
    end: End,
    write_error: Option<String>,
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
fn runs(records: &[Opened]) -> Vec<String> {
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
    fn alerts(&self) -> Vec<[u8; 2]> {
        self.records.iter().filter_map(Opened::alert).collect()
    }

    /// KeyUpdate messages the server sent.
    fn key_updates(&self) -> usize {
        self.records
            .iter()
            .flat_map(Opened::handshake_types)
            .filter(|&kind| kind == KEY_UPDATE)
            .count()
    }

    /// The alerts were exactly `alerts`, the last the last record, and the server closed.
    #[track_caller]
    fn expect_alerts(&self, alerts: &[[u8; 2]], what: &str) {
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
    fn expect_fatal(&self, description: u8, what: &str) {
        self.expect_alerts(&[[FATAL, description]], what);
    }

    /// The server sent at most `bound` bytes and `key_updates` KeyUpdates.
    #[track_caller]
    fn expect_at_most(&self, bound: usize, key_updates: usize, what: &str) {
        assert!(
            self.bytes <= bound && self.key_updates() <= key_updates,
            "{what}: expected at most {bound} bytes and {key_updates} KeyUpdate(s) back; \
             the server sent {self:?}"
        );
    }
}

/// A normal rustls client on the attacked server's core, asking `GET /echo` now and then.
struct Bystander {
    client: TlsClient,
    asked: usize,
}

impl Bystander {
    fn new(server: &TlsServer) -> Bystander {
        let mut bystander = Bystander {
            client: server.connect(),
            asked: 0,
        };
        bystander.check();
        bystander
    }

    /// One request on the same connection: answered, and right.
    #[track_caller]
    fn check(&mut self) {
        self.asked += 1;
        let name = format!("bystander{}", self.asked);
        let response = ask(&mut self.client, &echo(&name))
            .unwrap_or_else(|e| panic!("the other connection on the core: {e}"));
        assert_eq!(response.text(), format!("Hi, {name}!"));
    }
}

/// `request` sent on `client`, and its response.
fn ask(client: &mut TlsClient, request: &str) -> Result<Response, String> {
    client.try_send(request)?;
    client.try_response()
}

/// Sends the attack made by `attack` on a new connection of `versions` (after one request,
/// answered, which also shows the record tool right), with another connection on the same
/// core asking before, during and after; returns what the server sent from the attack on.
fn attack(
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
fn records_of(
    records: &mut ClientRecords,
    count: usize,
    mut record: impl FnMut(&mut ClientRecords) -> Vec<u8>,
) -> Vec<u8> {
    (0..count).flat_map(|_| record(records)).collect()
}

#[test]
fn the_33rd_key_update_in_a_row_is_fatal_and_at_most_one_is_answered() {
    let server = TlsServer::start("hostile-key-updates", |_| {});
    let ending = attack(&server, TLS13, |records| {
        records_of(records, 1000, |r| r.seal(HANDSHAKE, &key_update(true)))
    });
    let what = "1,000 KeyUpdate(update_requested) records";
    ending.expect_fatal(UNEXPECTED_MESSAGE, what);
    ending.expect_at_most(OUTPUT_BOUND, 1, what);
}

#[test]
fn thirty_two_key_updates_in_a_row_then_a_request_are_answered_with_one() {
    let server = TlsServer::start("hostile-32-key-updates", |_| {});
    let mut bystander = Bystander::new(&server);
    let mut hostile = Hostile::connect(&server, TLS13);
    let mut attack = records_of(hostile.records(), 32, |r| {
        r.seal(HANDSHAKE, &key_update(true))
    });
    attack.extend(
        hostile
            .records()
            .seal(APPLICATION_DATA, echo("after32").as_bytes()),
    );
    let response = hostile.exchange(&attack);
    assert_eq!(response.text(), "Hi, after32!");
    bystander.check();
    assert_eq!(
        hostile.log(),
        ["handshake[24]"],
        "one KeyUpdate answering 32"
    );
    hostile.echo("next");
}

#[test]
fn two_hundred_key_updates_in_one_record_are_fatal() {
    let server = TlsServer::start("hostile-key-updates-one-record", |_| {});
    let ending = attack(&server, TLS13, |records| {
        let messages: Vec<u8> = (0..200).flat_map(|_| key_update(true)).collect();
        records.seal(HANDSHAKE, &messages)
    });
    let what = "200 KeyUpdates in one record";
    ending.expect_fatal(UNEXPECTED_MESSAGE, what);
    ending.expect_at_most(OUTPUT_BOUND, 1, what);
}

#[test]
fn a_key_update_that_does_not_end_its_record_is_fatal() {
    let server = TlsServer::start("hostile-key-update-not-last", |_| {});
    let cases: [(&str, &[u8]); 3] = [
        (
            "a KeyUpdate, then a handshake header's start",
            &[24, 0, 0, 1, 1, 24, 0, 0],
        ),
        ("two KeyUpdates", &[24, 0, 0, 1, 1, 24, 0, 0, 1, 1]),
        (
            "a KeyUpdate not requesting one, then one byte",
            &[24, 0, 0, 1, 0, 24],
        ),
    ];
    for (what, messages) in cases {
        let ending = attack(&server, TLS13, |records| records.seal(HANDSHAKE, messages));
        ending.expect_fatal(UNEXPECTED_MESSAGE, what);
        ending.expect_at_most(OUTPUT_BOUND, 1, what);
    }
}

#[test]
fn a_malformed_key_update_is_refused() {
    let server = TlsServer::start("hostile-key-update-malformed", |_| {});
    let cases: [(&str, &[u8], u8); 3] = [
        (
            "a KeyUpdate of two bytes",
            &[24, 0, 0, 2, 1, 0],
            DECODE_ERROR,
        ),
        ("an empty KeyUpdate", &[24, 0, 0, 0], DECODE_ERROR),
        (
            "a KeyUpdate of value 2",
            &[24, 0, 0, 1, 2],
            ILLEGAL_PARAMETER,
        ),
    ];
    for (what, message, alert) in cases {
        let ending = attack(&server, TLS13, |records| records.seal(HANDSHAKE, message));
        ending.expect_fatal(alert, what);
        ending.expect_at_most(OUTPUT_BOUND, 0, what);
    }
}

#[test]
fn renegotiation_gets_one_warning_and_the_second_is_fatal() {
    let server = TlsServer::start("hostile-renegotiation", |_| {});
    let ending = attack(&server, TLS12, |records| {
        let mut random = [7u8; 32];
        records_of(records, 100, |r| {
            random[0] = random[0].wrapping_add(1);
            r.seal(HANDSHAKE, &renegotiation_client_hello(random))
        })
    });
    let what = "100 renegotiation ClientHellos";
    ending.expect_alerts(
        &[[WARNING, NO_RENEGOTIATION], [FATAL, UNEXPECTED_MESSAGE]],
        what,
    );
    ending.expect_at_most(OUTPUT_BOUND, 0, what);
}

/// A TLS 1.3 ClientHello after the handshake is just another handshake message.
#[test]
fn a_client_hello_after_a_tls13_handshake_is_unexpected() {
    let server = TlsServer::start("hostile-tls13-hello", |_| {});
    let ending = attack(&server, TLS13, |records| {
        records.seal(HANDSHAKE, &renegotiation_client_hello([1; 32]))
    });
    let what = "a ClientHello after a TLS 1.3 handshake";
    ending.expect_fatal(UNEXPECTED_MESSAGE, what);
    ending.expect_at_most(OUTPUT_BOUND, 0, what);
}

#[test]
fn a_tls13_warning_other_than_user_canceled_is_decode_error() {
    let server = TlsServer::start("hostile-tls13-warning", |_| {});
    let ending = attack(&server, TLS13, |records| {
        records.seal(ALERT, &[WARNING, BAD_CERTIFICATE])
    });
    let what = "a warning bad_certificate in TLS 1.3";
    ending.expect_fatal(DECODE_ERROR, what);
    ending.expect_at_most(OUTPUT_BOUND, 0, what);
}

/// Four warnings, then a request (answered), then the fifth warning: fatal.
fn four_warnings_then_the_fifth_is_fatal(
    server: &TlsServer,
    versions: &[&'static SupportedProtocolVersion],
    warnings: [u8; 5],
) {
    let mut bystander = Bystander::new(server);
    let mut hostile = Hostile::connect(server, versions);
    hostile.echo("before");
    let mut four: Vec<u8> = Vec::new();
    for description in &warnings[..4] {
        four.extend(hostile.records().seal(ALERT, &[WARNING, *description]));
    }
    four.extend(
        hostile
            .records()
            .seal(APPLICATION_DATA, echo("warned").as_bytes()),
    );
    let response = hostile.exchange(&four);
    assert_eq!(
        response.text(),
        "Hi, warned!",
        "four warnings are tolerated"
    );
    assert_eq!(hostile.wire.alert, None, "no alert: {:?}", hostile.log());
    hostile.attack_begins();
    hostile.send_record(ALERT, &[WARNING, warnings[4]]);
    bystander.check();
    let ending = hostile.ending();
    let what = "a fifth warning";
    ending.expect_fatal(UNEXPECTED_MESSAGE, what);
    ending.expect_at_most(OUTPUT_BOUND, 0, what);
    bystander.check();
}

#[test]
fn tls13_user_canceled_warnings_are_tolerated_four_times() {
    let server = TlsServer::start("hostile-user-canceled", |_| {});
    four_warnings_then_the_fifth_is_fatal(&server, TLS13, [USER_CANCELED; 5]);
}

#[test]
fn tls12_warnings_are_tolerated_four_times() {
    let server = TlsServer::start("hostile-tls12-warnings", |_| {});
    let warnings = [
        USER_CANCELED,
        BAD_CERTIFICATE,
        NO_RENEGOTIATION,
        USER_CANCELED,
        BAD_CERTIFICATE,
    ];
    four_warnings_then_the_fifth_is_fatal(&server, TLS12, warnings);
}

/// TLS 1.3 inner plaintext (content, type, padding) of `inner` bytes carrying `content`.
fn padded_to(records: &mut ClientRecords, content: &[u8], inner: usize) -> Vec<u8> {
    records.seal_padded(APPLICATION_DATA, content, inner - content.len() - 1)
}

#[test]
fn tls13_inner_plaintext_over_2_14_plus_1_is_record_overflow() {
    let server = TlsServer::start("hostile-inner-overflow", |_| {});
    let ending = attack(&server, TLS13, |records| {
        padded_to(records, echo("padded").as_bytes(), MAX_FRAGMENT + 2)
    });
    let what = "a request padded to 2^14+2 bytes of inner plaintext";
    ending.expect_fatal(RECORD_OVERFLOW, what);
    ending.expect_at_most(OUTPUT_BOUND, 0, what);
}

#[test]
fn tls13_content_over_2_14_is_record_overflow() {
    let server = TlsServer::start("hostile-content-overflow", |_| {});
    let ending = attack(&server, TLS13, |records| {
        records.seal(APPLICATION_DATA, &[b'x'; MAX_FRAGMENT + 1])
    });
    let what = "2^14+1 bytes of content";
    ending.expect_fatal(RECORD_OVERFLOW, what);
    ending.expect_at_most(OUTPUT_BOUND, 0, what);
}

/// `POST /body` with a body that makes the whole request `len` bytes.
fn post_of_len(len: usize) -> Vec<u8> {
    let head = |body: usize| {
        format!("POST /body HTTP/1.1\r\nHost: localhost\r\nContent-Length: {body}\r\n\r\n")
    };
    let body = len - head(len).len();
    let mut request = head(body).into_bytes();
    assert_eq!(request.len() + body, len);
    request.resize(len, b'b');
    request
}

#[test]
fn tls13_inner_plaintext_of_2_14_plus_1_is_accepted() {
    let server = TlsServer::start("hostile-inner-limit", |_| {});
    let mut bystander = Bystander::new(&server);
    let mut hostile = Hostile::connect(&server, TLS13);
    // A small request padded with zeros to the limit.
    let record = padded_to(
        hostile.records(),
        echo("limit").as_bytes(),
        MAX_FRAGMENT + 1,
    );
    assert_eq!(record.len(), HEADER + MAX_FRAGMENT + 1 + TAG);
    let response = hostile.exchange(&record);
    assert_eq!(response.text(), "Hi, limit!");
    // 2^14 bytes of content and the type.
    let post = post_of_len(MAX_FRAGMENT);
    let record = hostile.records().seal(APPLICATION_DATA, &post);
    let response = hostile.exchange(&record);
    let head = post.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, post[head..]);
    bystander.check();
    hostile.echo("after");
}

#[test]
fn an_empty_handshake_record_is_unexpected_message() {
    let server = TlsServer::start("hostile-empty-handshake", |_| {});
    for versions in [TLS13, TLS12] {
        let ending = attack(&server, versions, |records| records.seal(HANDSHAKE, &[]));
        let what = format!("an empty handshake record ({:?})", versions[0].version);
        ending.expect_fatal(UNEXPECTED_MESSAGE, &what);
        ending.expect_at_most(OUTPUT_BOUND, 0, &what);
    }
}

#[test]
fn an_empty_alert_record_is_decode_error() {
    let server = TlsServer::start("hostile-empty-alert", |_| {});
    for versions in [TLS13, TLS12] {
        let ending = attack(&server, versions, |records| records.seal(ALERT, &[]));
        let what = format!("an empty alert record ({:?})", versions[0].version);
        ending.expect_fatal(DECODE_ERROR, &what);
        ending.expect_at_most(OUTPUT_BOUND, 0, &what);
    }
}

#[test]
fn thirty_two_empty_data_records_are_tolerated_and_the_33rd_is_fatal() {
    let server = TlsServer::start("hostile-empty-data", |_| {});
    for versions in [TLS13, TLS12] {
        let mut hostile = Hostile::connect(&server, versions);
        let mut records = records_of(hostile.records(), 32, |r| r.seal(APPLICATION_DATA, &[]));
        records.extend(
            hostile
                .records()
                .seal(APPLICATION_DATA, echo("empty32").as_bytes()),
        );
        assert_eq!(hostile.exchange(&records).text(), "Hi, empty32!");
        let ending = attack(&server, versions, |records| {
            records_of(records, 33, |r| r.seal(APPLICATION_DATA, &[]))
        });
        let what = format!("33 empty data records ({:?})", versions[0].version);
        ending.expect_fatal(UNEXPECTED_MESSAGE, &what);
        ending.expect_at_most(OUTPUT_BOUND, 0, &what);
    }
}

/// A TLS 1.2 client offering only `suite`.
fn tls12_client(server: &TlsServer, suite: rustls::CipherSuite) -> Arc<ClientConfig> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites.retain(|s| s.suite() == suite);
    server.pki.client_with(TLS12, provider)
}

/// The TLS 1.2 suites (AES-GCM with its explicit nonce, ChaCha20-Poly1305 without), and
/// TLS 1.3.
fn every_kind_of_keys(server: &TlsServer) -> Vec<Arc<ClientConfig>> {
    vec![
        tls12_client(
            server,
            rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ),
        tls12_client(
            server,
            rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
        server.pki.client(TLS13),
    ]
}

#[test]
fn a_tampered_record_is_bad_record_mac() {
    let server = TlsServer::start("hostile-tampered", |_| {});
    for config in every_kind_of_keys(&server) {
        let mut bystander = Bystander::new(&server);
        let mut hostile = Hostile::connect_with(&server, &config);
        let suite = hostile.records().suite();
        hostile.echo("before");
        hostile.attack_begins();
        let mut record = hostile
            .records()
            .seal(APPLICATION_DATA, echo("tampered").as_bytes());
        // The last byte of the request's ciphertext.
        let at = record.len() - TAG - 1;
        record[at] ^= 1;
        hostile.send(&record);
        bystander.check();
        let ending = hostile.ending();
        let what = format!("a flipped bit ({suite})");
        ending.expect_fatal(BAD_RECORD_MAC, &what);
        ending.expect_at_most(OUTPUT_BOUND, 0, &what);
    }
}

#[test]
fn a_replayed_record_is_bad_record_mac() {
    let server = TlsServer::start("hostile-replayed", |_| {});
    for config in every_kind_of_keys(&server) {
        let mut bystander = Bystander::new(&server);
        let mut hostile = Hostile::connect_with(&server, &config);
        let suite = hostile.records().suite();
        let record = hostile
            .records()
            .seal(APPLICATION_DATA, echo("replayed").as_bytes());
        assert_eq!(hostile.exchange(&record).text(), "Hi, replayed!");
        hostile.attack_begins();
        hostile.send(&record);
        bystander.check();
        let ending = hostile.ending();
        let what = format!("the same record twice ({suite})");
        ending.expect_fatal(BAD_RECORD_MAC, &what);
        ending.expect_at_most(OUTPUT_BOUND, 0, &what);
    }
}

#[test]
fn a_key_update_split_across_two_records_is_joined() {
    let server = TlsServer::start("hostile-split-key-update", |_| {});
    let mut bystander = Bystander::new(&server);
    let mut hostile = Hostile::connect(&server, TLS13);
    hostile.echo("before");
    let message = key_update(true);
    let mut records = hostile.records().seal(HANDSHAKE, &message[..4]);
    records.extend(hostile.records().seal(HANDSHAKE, &message[4..]));
    // Under the client's next key: the tool switched once the message was whole.
    records.extend(
        hostile
            .records()
            .seal(APPLICATION_DATA, echo("split").as_bytes()),
    );
    let response = hostile.exchange(&records);
    assert_eq!(response.text(), "Hi, split!");
    assert_eq!(hostile.log(), ["handshake[24]"], "one KeyUpdate");
    bystander.check();
    hostile.echo("after");
    assert_eq!(hostile.records().key_updates_received(), 1);
}

#[test]
fn key_updates_between_requests_are_followed_both_ways() {
    let server = TlsServer::start("hostile-key-updates-between", |_| {});
    let mut bystander = Bystander::new(&server);
    // One exchange at a time: each update_requested is answered before the response.
    let mut hostile = Hostile::connect(&server, TLS13);
    for round in 0..64 {
        let mut records = hostile.records().seal(HANDSHAKE, &key_update(true));
        let name = format!("k{round}");
        records.extend(
            hostile
                .records()
                .seal(APPLICATION_DATA, echo(&name).as_bytes()),
        );
        assert_eq!(hostile.exchange(&records).text(), format!("Hi, {name}!"));
        assert_eq!(hostile.records().key_updates_received(), round + 1);
    }
    assert_eq!(hostile.wire.alert, None);
    bystander.check();
    // All 64 pairs in one write: answered in order, each KeyUpdate at most once.
    let mut hostile = Hostile::connect(&server, TLS13);
    let mut records = Vec::new();
    for round in 0..64 {
        records.extend(hostile.records().seal(HANDSHAKE, &key_update(true)));
        let request = echo(&format!("p{round}"));
        records.extend(hostile.records().seal(APPLICATION_DATA, request.as_bytes()));
    }
    hostile.send(&records);
    for round in 0..64 {
        let response = tls::read_response(&mut hostile.wire, &mut hostile.http)
            .unwrap_or_else(|e| panic!("response {round}: {e}; {:?}", hostile.log()));
        assert_eq!(response.text(), format!("Hi, p{round}!"));
    }
    let updates = hostile.records().key_updates_received();
    assert!((1..=64).contains(&updates), "{updates} KeyUpdates back");
    assert_eq!(hostile.wire.alert, None);
    bystander.check();
    hostile.echo("after");
}

/// Control for the alert reading: a close_notify the tool sealed is answered with
/// percore's own (a warning-level close_notify, as percore sends it) and a clean close.
#[test]
fn close_notify_from_the_record_tool_is_answered_with_close_notify() {
    let server = TlsServer::start("hostile-close-notify", |_| {});
    for versions in [TLS13, TLS12] {
        let ending = attack(&server, versions, |records| {
            records.seal(ALERT, &[WARNING, CLOSE_NOTIFY])
        });
        let what = format!("close_notify ({:?})", versions[0].version);
        ending.expect_alerts(&[[WARNING, CLOSE_NOTIFY]], &what);
        assert!(matches!(ending.end, End::Eof), "{what}: {ending:?}");
        ending.expect_at_most(OUTPUT_BOUND, 0, &what);
    }
}

/// After the handshake every record says version 3.3 (TLS 1.2's, TLS 1.3's legacy one), and
/// a TLS 1.3 record says application data. rustls takes in TLS 1.2 any version it knows,
/// SSL 2's 0x0002 included (found by the tls_records fuzz target); percore refuses them, as
/// OpenSSL and BoringSSL do.
#[test]
fn an_outer_header_the_connection_does_not_use_is_refused() {
    let server = TlsServer::start("hostile-outer-header", |_| {});
    let cases = [
        (
            TLS13,
            "outer type handshake",
            Some(HANDSHAKE),
            None,
            UNEXPECTED_MESSAGE,
        ),
        (
            TLS13,
            "outer version 0x0301",
            None,
            Some(0x0301),
            PROTOCOL_VERSION,
        ),
        (
            TLS12,
            "outer version 0x0301",
            None,
            Some(0x0301),
            PROTOCOL_VERSION,
        ),
        (
            TLS12,
            "outer version 0x0002",
            None,
            Some(0x0002),
            PROTOCOL_VERSION,
        ),
    ];
    for (versions, what, outer_type, version, alert) in cases {
        let ending = attack(&server, versions, |records| {
            let shape = Shape {
                outer_type,
                version,
                ..Shape::default()
            };
            records.seal_shaped(APPLICATION_DATA, echo("outer").as_bytes(), &shape)
        });
        let what = format!("{what} ({:?})", versions[0].version);
        ending.expect_fatal(alert, &what);
        ending.expect_at_most(OUTPUT_BOUND, 0, &what);
    }
}

#[test]
fn a_header_announcing_too_much_is_record_overflow_at_once() {
    let server = TlsServer::start("hostile-long-header", |_| {});
    for (versions, most) in [(TLS13, MAX_FRAGMENT + 256), (TLS12, MAX_FRAGMENT + 2048)] {
        // Only the header: the body is not waited for.
        let ending = attack(&server, versions, |_| {
            let [hi, lo] = ((most + 1) as u16).to_be_bytes();
            vec![APPLICATION_DATA, 3, 3, hi, lo]
        });
        let what = format!("a header of {} bytes ({:?})", most + 1, versions[0].version);
        ending.expect_fatal(RECORD_OVERFLOW, &what);
        ending.expect_at_most(OUTPUT_BOUND, 0, &what);
    }
}

/// The SNI name rustls's certificate resolver saw for a handshake that then failed (ALPN
/// `h2` only, which percore refuses after choosing the certificate) must not become the
/// server name of another connection's handshake on the core: neither one that starts
/// after it, nor one under way while it fails.
#[test]
fn a_failed_handshakes_server_name_does_not_reach_another_connection() {
    let server = TlsServer::start("hostile-sni", |_| {});
    let mut h2_only = (*server.pki.client(TLS13)).clone();
    h2_only.alpn_protocols = vec![b"h2".to_vec()];
    let h2_only = Arc::new(h2_only);
    let fail_with_sni = || {
        let refused = TlsClient::try_connect(server.https, SNI_NAMES[0], &h2_only);
        let error = refused.err().expect("ALPN h2 alone is refused");
        assert!(error.contains("NoApplicationProtocol"), "{error}");
    };
    let no_sni = server.pki.client(TLS13);
    // As "127.0.0.1": rustls sends no SNI for an address.
    let address = DEFAULT_NAMES[1];
    // Before any failure, no name (the check is not blind).
    let mut first = TlsClient::connect(server.https, address, &no_sni);
    let before = fact(&first.get("/tls").text(), "sni").to_string();
    // The failure and then a whole handshake (a new client: no ticket to resume).
    fail_with_sni();
    let no_sni = server.pki.client(TLS13);
    let mut after = TlsClient::connect(server.https, address, &no_sni);
    let sequential = fact(&after.get("/tls").text(), "sni").to_string();
    // A handshake whose ClientHello was processed before the failure and its Finished after.
    let name = ServerName::try_from(address).unwrap();
    let mut conn = ClientConnection::new(no_sni.clone(), name).unwrap();
    let mut stream = tcp(server.https);
    conn.write_tls(&mut stream).unwrap();
    while conn.is_handshaking() && !conn.wants_write() {
        conn.read_tls(&mut stream).unwrap();
        conn.process_new_packets().unwrap();
    }
    // The server has answered the ClientHello: its resolver ran for this connection.
    fail_with_sni();
    let tls = rustls::StreamOwned::new(conn, stream);
    let mut straddling = TlsClient::from_stream(tls);
    let interleaved = fact(&straddling.get("/tls").text(), "sni").to_string();
    // And a handshake with SNI still shows it (the check is not blind).
    let mut named = TlsClient::connect(server.https, SNI_NAMES[0], &no_sni);
    let own = fact(&named.get("/tls").text(), "sni").to_string();
    assert_eq!(
        [&before, &sequential, &interleaved, &own],
        ["-", "-", "-", SNI_NAMES[0]],
        "the SNI name handlers saw: before a failure, after it, across it, and asked for"
    );
}

/// One attack of the flood: 1,000 KeyUpdates (TLS 1.3) or 100 renegotiations (TLS 1.2) on a
/// new connection, then what the server sends until it closes (or stops sending for
/// `idle`). Returns whether it ended with a fatal alert.
fn flood_once(server: &TlsServer, renegotiate: bool, idle: Duration) -> bool {
    let versions = if renegotiate { TLS12 } else { TLS13 };
    let mut hostile = Hostile::connect(server, versions);
    let records = hostile.records();
    let attack = if renegotiate {
        records_of(records, 100, |r| {
            r.seal(HANDSHAKE, &renegotiation_client_hello([9; 32]))
        })
    } else {
        records_of(records, 1000, |r| r.seal(HANDSHAKE, &key_update(true)))
    };
    hostile.send(&attack);
    hostile.wire.stream.set_read_timeout(Some(idle)).unwrap();
    let mut fatal = false;
    while let Ok(n) = hostile.wire.fill() {
        if n == 0 || hostile.wire.open().is_err() {
            break;
        }
        fatal |= hostile
            .wire
            .log
            .iter()
            .any(|r| r.alert().is_some_and(|a| a[0] == FATAL));
    }
    fatal
}

/// While attackers flood the core for about 2 s, a keep-alive client on it is answered
/// every time; the latency it saw is printed (speed is not asserted here).
#[test]
fn other_connections_are_answered_during_a_flood_of_attacks() {
    let server = Arc::new(TlsServer::start("hostile-flood", |_| {}));
    let stop = Arc::new(AtomicBool::new(false));
    let attacks = Arc::new(AtomicUsize::new(0));
    let fatal = Arc::new(AtomicUsize::new(0));
    let flooder = {
        let (server, stop, attacks, fatal) =
            (server.clone(), stop.clone(), attacks.clone(), fatal.clone());
        std::thread::spawn(move || {
            let mut renegotiate = false;
            while !stop.load(Ordering::Relaxed) {
                if flood_once(&server, renegotiate, Duration::from_millis(500)) {
                    fatal.fetch_add(1, Ordering::Relaxed);
                }
                attacks.fetch_add(1, Ordering::Relaxed);
                renegotiate = !renegotiate;
            }
        })
    };
    let mut client = server.connect();
    let mut latencies = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) || attacks.load(Ordering::Relaxed) < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "two attacks did not finish in 60 s"
        );
        let name = format!("f{}", latencies.len());
        let sent = Instant::now();
        let response = ask(&mut client, &echo(&name))
            .unwrap_or_else(|e| panic!("request {} during the flood: {e}", latencies.len()));
        latencies.push(sent.elapsed());
        assert_eq!(response.text(), format!("Hi, {name}!"));
    }
    stop.store(true, Ordering::Relaxed);
    flooder.join().expect("the flooding thread");
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    // Straight to stderr, so that it shows in a passing run.
    let _ = writeln!(
        std::io::stderr(),
        "during {} attacks ({} ended with a fatal alert): {} requests, p50 {:?}, p99 {:?}, max {:?}",
        attacks.load(Ordering::Relaxed),
        fatal.load(Ordering::Relaxed),
        latencies.len(),
        at(0.5),
        at(0.99),
        latencies[latencies.len() - 1]
    );
}

/// A server in memory for the record tool: percore's TLS as a core runs it, without
/// sockets (what a fuzz target drives). Each write is received at once; reads give what it
/// sent.
struct InMemory {
    server: percore::internals::TlsServer,
    /// Ciphertext written, not yet used by the server.
    inbound: Vec<u8>,
    /// What the server sent, not yet read.
    outbound: Vec<u8>,
    /// The application data the server received.
    plain: Vec<u8>,
}

impl Write for InMemory {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.inbound.extend_from_slice(bytes);
        let InMemory {
            server,
            inbound,
            outbound,
            plain,
        } = self;
        let used = server
            .receive(inbound, outbound, &mut |data| plain.extend_from_slice(data))
            .map_err(|ended| {
                std::io::Error::other(format!("the server ended the connection: {ended:?}"))
            })?;
        inbound.drain(..used);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Read for InMemory {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = out.len().min(self.outbound.len());
        out[..n].copy_from_slice(&self.outbound[..n]);
        self.outbound.drain(..n);
        Ok(n)
    }
}

/// The record tool against percore's TLS in memory, as a fuzz target would drive it: the
/// handshake, data both ways, and a KeyUpdate followed both ways.
#[test]
fn the_record_tool_talks_to_percore_in_memory() {
    let pki = Pki::new("records-in-memory");
    let leaf = pki.leaf("default", DEFAULT_NAMES);
    let config = TlsConfig {
        certificate: leaf.cert.clone(),
        private_key: leaf.key.clone(),
        ..TlsConfig::default()
    };
    for versions in [TLS13, TLS12] {
        let mut io = InMemory {
            server: percore::internals::TlsServer::new(&config).unwrap(),
            inbound: Vec::new(),
            outbound: Vec::new(),
            plain: Vec::new(),
        };
        let (mut client, after) = records::connect(&pki.client(versions), "localhost", &mut io)
            .unwrap_or_else(|e| panic!("{versions:?}: {e}"));
        assert!(after.is_empty());
        let tls13 = client.version() == records::Version::Tls13;
        let record = client.seal(APPLICATION_DATA, b"ping");
        io.write_all(&record).unwrap();
        assert_eq!(io.plain, b"ping");
        io.server.seal(b"pong", &mut io.outbound);
        let opened = client.open_all(&mut io.outbound).unwrap();
        let kinds: Vec<String> = opened
            .iter()
            .filter(|record| !is_ticket(record))
            .map(describe)
            .collect();
        assert_eq!(kinds, ["data(4)"]);
        assert_eq!(opened.last().unwrap().data, b"pong");
        // TLS 1.3 tickets come after the handshake, through the tool; TLS 1.2's within it.
        assert_eq!(client.tickets_received() > 0, tls13);
        if tls13 {
            io.write_all(&client.seal(HANDSHAKE, &key_update(true)))
                .unwrap();
            let opened = client.open_all(&mut io.outbound).unwrap();
            assert_eq!(
                opened.iter().map(describe).collect::<Vec<_>>(),
                ["handshake[24]"]
            );
            assert_eq!(client.key_updates_received(), 1);
        }
        io.plain.clear();
        io.write_all(&client.seal(APPLICATION_DATA, b"again"))
            .unwrap();
        assert_eq!(io.plain, b"again");
        io.server.seal(b"again", &mut io.outbound);
        let opened = client.open_all(&mut io.outbound).unwrap();
        assert_eq!(opened[0].data, b"again");
        assert!(io.outbound.is_empty());
        // A flipped bit: the server ends the connection.
        let mut record = client.seal(APPLICATION_DATA, b"tampered");
        record[HEADER] ^= 1;
        assert!(io.write_all(&record).is_err());
        let opened = client.open_all(&mut io.outbound).unwrap();
        assert_eq!(opened[0].alert(), Some([FATAL, BAD_RECORD_MAC]));
    }
}
