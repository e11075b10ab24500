//! TLS records whose framing a client gets wrong after the handshake, over real sockets,
//! against the rules of percore's record layer (issue 25): inner plaintext over the limit,
//! empty records, tampered and replayed records, headers the connection does not use or that
//! announce too much. Each must end its connection with the fatal alert the rules name, with
//! a bounded answer, while another connection on the core keeps being answered; and the
//! record tool itself is checked against percore's TLS in memory.

mod common;
#[path = "common/hostile.rs"]
mod hostile;
#[path = "common/tls.rs"]
mod tls;

use std::io::{Read, Write};
use std::sync::Arc;

use percore::config::TlsConfig;
use rustls::ClientConfig;

use common::records::{
    self, key_update, ClientRecords, Shape, ALERT, APPLICATION_DATA, BAD_RECORD_MAC, DECODE_ERROR,
    FATAL, HANDSHAKE, HEADER, MAX_FRAGMENT, PROTOCOL_VERSION, RECORD_OVERFLOW, TAG,
    UNEXPECTED_MESSAGE,
};
use hostile::*;
use tls::{Pki, TlsServer, DEFAULT_NAMES, TLS12, TLS13};

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
    let config = TlsConfig::new(&leaf.cert, &leaf.key);
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
