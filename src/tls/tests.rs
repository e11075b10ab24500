//! The TLS layer against rustls's client, in memory: handshakes of both versions and every
//! suite, data both ways split at every byte, key updates, resumption on another core,
//! close_notify, and tampered records.

use std::io::{Read, Write};

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use std::rc::Rc;

use super::setup::{provider, ServerConfigs, TlsSetup};
use super::{Event, Failure, TicketKeys, TlsConn};
use crate::config::{SniCertificate, TlsConfig};

/// A CA and a leaf for `names`, written as PEM files into a fresh directory.
pub(crate) struct TestPki {
    pub(crate) dir: std::path::PathBuf,
    pub(crate) ca: CertificateDer<'static>,
}

impl TestPki {
    pub(crate) fn new(tag: &str) -> TestPki {
        let dir = std::env::temp_dir().join(format!("percore-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        let pki = TestPki {
            dir,
            ca: ca.der().clone(),
        };
        for (name, names) in [
            ("default", vec!["localhost"]),
            ("other", vec!["other.test", "*.wild.test"]),
        ] {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let params = rcgen::CertificateParams::new(
                names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            )
            .unwrap();
            let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
            std::fs::write(pki.dir.join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(pki.dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        }
        pki
    }

    pub(crate) fn config(&self) -> TlsConfig {
        TlsConfig {
            certificate: self.dir.join("default.pem"),
            private_key: self.dir.join("default.key"),
            sni: vec![SniCertificate {
                names: vec!["other.test".into(), "*.wild.test".into()],
                certificate: self.dir.join("other.pem"),
                private_key: self.dir.join("other.key"),
            }],
            ..TlsConfig::default()
        }
    }

    fn client(&self, versions: &[&'static rustls::SupportedProtocolVersion]) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        let mut config = ClientConfig::builder_with_provider(Arc::new(provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The server side as the engine drives it: ciphertext in (kept while a record is
/// incomplete), plaintext out, wire bytes to send.
struct Server {
    tls: TlsConn,
    held: Vec<u8>,
    wire: Vec<u8>,
    plain: Vec<u8>,
    info: Option<Box<super::TlsInfo>>,
    peer_closed: bool,
}

impl Server {
    fn new(core: &Rc<ServerConfigs>) -> Server {
        Server {
            tls: TlsConn::new(core),
            held: Vec::new(),
            wire: Vec::new(),
            plain: Vec::new(),
            info: None,
            peer_closed: false,
        }
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        self.held.extend_from_slice(bytes);
        let mut buf = std::mem::take(&mut self.held);
        let mut used = 0;
        loop {
            let step = self.tls.step(&mut buf, used, &mut self.wire);
            let step = step.inspect_err(|_| self.held = Vec::new())?;
            used = step.next;
            match step.event {
                Event::Waiting => break,
                Event::Established(established) => {
                    assert!(
                        self.plain.is_empty(),
                        "data before the handshake was announced"
                    );
                    self.info = Some(established);
                }
                Event::Data(range) => {
                    assert!(
                        self.info.is_some(),
                        "data before the handshake was announced"
                    );
                    self.plain.extend_from_slice(&buf[range]);
                }
                Event::Closed => {
                    self.peer_closed = true;
                    break;
                }
            }
        }
        buf.drain(..used);
        self.held = buf;
        Ok(())
    }
}

/// Moves everything each side has to send to the other, `step` bytes at a time into the
/// server, until nothing moves.
fn exchange(
    client: &mut ClientConnection,
    server: &mut Server,
    step: usize,
) -> Result<(), Failure> {
    exchange_into(client, server, step, &mut Vec::new())
}

/// [`exchange`], keeping what the client reads in `got`.
fn exchange_into(
    client: &mut ClientConnection,
    server: &mut Server,
    step: usize,
    got: &mut Vec<u8>,
) -> Result<(), Failure> {
    for _ in 0..64 {
        let mut out = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut out).unwrap();
        }
        for chunk in out.chunks(step.max(1)) {
            server.feed(chunk)?;
        }
        let wire = std::mem::take(&mut server.wire);
        let mut slice = &wire[..];
        while !slice.is_empty() {
            client.read_tls(&mut slice).unwrap();
            client.process_new_packets().unwrap();
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = client.reader().read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
        }
        if out.is_empty() && wire.is_empty() {
            return Ok(());
        }
    }
    panic!("the exchange did not settle");
}

fn connect(
    pki: &TestPki,
    core: &Rc<ServerConfigs>,
    client: &Arc<ClientConfig>,
    name: &str,
) -> (ClientConnection, Server) {
    let mut c = ClientConnection::new(
        client.clone(),
        ServerName::try_from(name.to_string()).unwrap(),
    )
    .unwrap();
    let mut s = Server::new(core);
    exchange(&mut c, &mut s, usize::MAX).unwrap();
    assert!(!c.is_handshaking(), "handshake with {name} ({:?})", pki.dir);
    assert!(s.info.is_some());
    (c, s)
}

/// One core's configurations, its tickets under `keys`.
fn core(pki: &TestPki, keys: &TicketKeys) -> Rc<ServerConfigs> {
    let setup = TlsSetup::load(&pki.config()).unwrap();
    Rc::new(setup.core_configs(keys.clone()).unwrap())
}

fn keys() -> TicketKeys {
    TicketKeys::generate(3600, crate::support::civil_time::unix_now()).unwrap()
}

#[test]
fn both_versions_and_every_suite_carry_data_both_ways_however_split() {
    let pki = TestPki::new("suites");
    let core = core(&pki, &keys());
    let name = |suite: &rustls::SupportedCipherSuite| suite.suite().as_str().unwrap_or_default();
    // The test certificates are ECDSA: TLS 1.2's RSA suites cannot be negotiated with them.
    let suites = provider()
        .cipher_suites
        .into_iter()
        .filter(|s| !name(s).contains("_RSA_"));
    let mut seen = 0;
    for suite in suites {
        seen += 1;
        let version = suite.version();
        let mut restricted = provider();
        restricted.cipher_suites = vec![suite];
        let mut roots = RootCertStore::empty();
        roots.add(pki.ca.clone()).unwrap();
        let client = Arc::new(
            ClientConfig::builder_with_provider(Arc::new(restricted))
                .with_protocol_versions(&[version])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        for step in [usize::MAX, 1, 7] {
            let mut c =
                ClientConnection::new(client.clone(), ServerName::try_from("localhost").unwrap())
                    .unwrap();
            let mut s = Server::new(&core);
            exchange(&mut c, &mut s, step).unwrap();
            let info = s.info.as_ref().unwrap();
            assert_eq!(info.cipher_suite, suite.suite().as_str().unwrap());
            let request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".repeat(40);
            c.writer().write_all(&request).unwrap();
            exchange(&mut c, &mut s, step).unwrap();
            assert_eq!(s.plain, request, "{suite:?} step {step}");
            // A response larger than one record.
            let response: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
            assert!(s.tls.seal(&response, &mut s.wire));
            let mut got = Vec::new();
            exchange_into(&mut c, &mut s, step, &mut got).unwrap();
            assert_eq!(got, response, "{suite:?}");
        }
    }
    assert_eq!(seen, 6, "three TLS 1.3 suites and three TLS 1.2 ECDSA ones");
}

#[test]
fn key_updates_from_the_client_are_followed_in_both_directions() {
    let pki = TestPki::new("keyupdate");
    let core = core(&pki, &keys());
    let client = pki.client(&[&rustls::version::TLS13]);
    let (mut c, mut s) = connect(&pki, &core, &client, "localhost");
    for round in 0..3u8 {
        c.refresh_traffic_keys().unwrap();
        c.writer().write_all(&[b'a' + round; 10]).unwrap();
        exchange(&mut c, &mut s, usize::MAX).unwrap();
        assert!(s.tls.seal(&[b'z' + round - 2; 5], &mut s.wire));
        let mut got = Vec::new();
        exchange_into(&mut c, &mut s, usize::MAX, &mut got).unwrap();
        assert_eq!(got, [b'z' + round - 2; 5]);
    }
    assert_eq!(s.plain, b"aaaaaaaaaabbbbbbbbbbcccccccccc");
}

#[test]
fn sni_picks_the_certificate_and_alpn_is_http_1_1() {
    let pki = TestPki::new("sni");
    let core = core(&pki, &keys());
    let client = pki.client(&[&rustls::version::TLS13, &rustls::version::TLS12]);
    for name in ["other.test", "deep.wild.test", "localhost"] {
        let (c, s) = connect(&pki, &core, &client, name);
        let info = s.info.unwrap();
        assert_eq!(info.server_name.as_deref(), Some(name));
        assert_eq!(info.alpn.as_deref(), Some(&b"http/1.1"[..]));
        assert_eq!(c.alpn_protocol(), Some(&b"http/1.1"[..]));
    }
}

#[test]
fn a_ticket_from_one_core_resumes_on_another() {
    let pki = TestPki::new("resume");
    let keys = keys();
    let (core_a, core_b) = (core(&pki, &keys), core(&pki, &keys));
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let client = pki.client(&[version]);
        let (mut c, mut s) = connect(&pki, &core_a, &client, "localhost");
        assert!(!s.info.as_ref().unwrap().resumed);
        // TLS 1.3 tickets come after the handshake, with the first exchange.
        c.writer().write_all(b"x").unwrap();
        exchange(&mut c, &mut s, usize::MAX).unwrap();
        let (_, s2) = connect(&pki, &core_b, &client, "localhost");
        assert!(s2.info.unwrap().resumed, "{version:?}");
    }
}

#[test]
fn close_notify_goes_both_ways() {
    let pki = TestPki::new("close");
    let core = core(&pki, &keys());
    let client = pki.client(&[&rustls::version::TLS13]);
    let (mut c, mut s) = connect(&pki, &core, &client, "localhost");
    c.send_close_notify();
    exchange(&mut c, &mut s, usize::MAX).unwrap();
    assert!(s.peer_closed);
    assert!(s.tls.owes_close_notify());
    s.tls.close_notify(&mut s.wire);
    assert!(!s.tls.owes_close_notify());
    let wire = std::mem::take(&mut s.wire);
    let mut slice = &wire[..];
    c.read_tls(&mut slice).unwrap();
    let state = c.process_new_packets().unwrap();
    assert!(state.peer_has_closed());
}

#[test]
fn a_tampered_record_ends_the_connection_with_an_alert() {
    let pki = TestPki::new("tamper");
    let core = core(&pki, &keys());
    let client = pki.client(&[&rustls::version::TLS13]);
    let (mut c, mut s) = connect(&pki, &core, &client, "localhost");
    c.writer().write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut out = Vec::new();
    c.write_tls(&mut out).unwrap();
    let last = out.len() - 1;
    out[last] ^= 0x40;
    assert!(matches!(s.feed(&out), Err(Failure::Record)));
    assert!(s.plain.is_empty());
    let mut slice = &s.wire[..];
    c.read_tls(&mut slice).unwrap();
    assert!(
        c.process_new_packets().is_err(),
        "the client reads the alert"
    );
}

#[test]
fn a_key_that_does_not_match_its_certificate_is_refused_by_name() {
    let pki = TestPki::new("mismatch");
    let mut config = pki.config();
    config.private_key = pki.dir.join("other.key");
    let error = TlsSetup::load(&config)
        .err()
        .expect("a mismatched key is refused");
    assert!(error.contains("does not match"), "{error}");
    config.certificate = pki.dir.join("missing.pem");
    let error = TlsSetup::load(&config).err().unwrap();
    assert!(error.starts_with("tls.certificate: "), "{error}");
}

/// Whether the client reads a fatal alert with `description` in what the server sent.
fn client_reads_alert(c: &mut ClientConnection, wire: &[u8], description: u8) -> bool {
    let mut slice = wire;
    c.read_tls(&mut slice).unwrap();
    let expected = rustls::AlertDescription::from(description);
    matches!(
        c.process_new_packets(),
        Err(rustls::Error::AlertReceived(got)) if got == expected
    )
}

#[test]
fn key_updates_are_limited_between_application_data_records() {
    let pki = TestPki::new("keyupdate-limit");
    let core = core(&pki, &keys());
    let client = pki.client(&[&rustls::version::TLS13]);
    // 32 in a row, then data: taken; again 32 and data: the count starts over.
    let (mut c, mut s) = connect(&pki, &core, &client, "localhost");
    for round in 0..2 {
        for _ in 0..super::traffic::MAX_KEY_UPDATES {
            c.refresh_traffic_keys().unwrap();
        }
        c.writer().write_all(b"data").unwrap();
        exchange(&mut c, &mut s, usize::MAX).unwrap_or_else(|e| panic!("round {round}: {e:?}"));
    }
    assert_eq!(s.plain, b"datadata");
    // The 33rd in a row is refused with unexpected_message.
    for _ in 0..super::traffic::MAX_KEY_UPDATES + 1 {
        c.refresh_traffic_keys().unwrap();
    }
    let mut out = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut out).unwrap();
    }
    assert!(matches!(s.feed(&out), Err(Failure::Record)));
    assert!(client_reads_alert(
        &mut c,
        &s.wire,
        super::record::UNEXPECTED_MESSAGE
    ));
}

#[test]
fn update_requested_is_answered_once_until_percore_sends_data() {
    let pki = TestPki::new("keyupdate-answer");
    let core = core(&pki, &keys());
    let client = pki.client(&[&rustls::version::TLS13]);
    let (mut c, mut s) = connect(&pki, &core, &client, "localhost");
    for _ in 0..10 {
        c.refresh_traffic_keys().unwrap();
    }
    let mut out = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut out).unwrap();
    }
    s.feed(&out).unwrap();
    // One KeyUpdate back (one record: header, 4 + 1 bytes, type, tag), not ten.
    assert_eq!(
        s.wire.len(),
        5 + 5 + 1 + 16,
        "one key update answers ten requests"
    );
    // Data both ways under the keys that followed, then the next request is answered again.
    assert!(s.tls.seal(b"reply", &mut s.wire));
    let mut got = Vec::new();
    exchange_into(&mut c, &mut s, usize::MAX, &mut got).unwrap();
    assert_eq!(got, b"reply");
    c.refresh_traffic_keys().unwrap();
    let mut out = Vec::new();
    c.write_tls(&mut out).unwrap();
    s.feed(&out).unwrap();
    assert_eq!(
        s.wire.len(),
        5 + 5 + 1 + 16,
        "answered again after data was sent"
    );
}

#[test]
fn every_connection_reports_its_own_server_name_resumed_or_not() {
    let pki = TestPki::new("sni-leak");
    let core = core(&pki, &keys());
    // A client that sends no SNI gets a ticket: its next handshake is resumed, and the
    // certificate resolver, which sees the SNI name, does not run for it.
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let mut no_sni = (*pki.client(&[version])).clone();
        no_sni.enable_sni = false;
        let no_sni = Arc::new(no_sni);
        let (mut c, mut s) = connect(&pki, &core, &no_sni, "localhost");
        c.writer().write_all(b"x").unwrap();
        exchange(&mut c, &mut s, usize::MAX).unwrap();
        // A client that names other.test and offers only h2: refused after the resolver ran.
        let mut h2_only = (*pki.client(&[version])).clone();
        h2_only.alpn_protocols = vec![b"h2".to_vec()];
        let mut c = ClientConnection::new(
            Arc::new(h2_only),
            ServerName::try_from("other.test").unwrap(),
        )
        .unwrap();
        let mut s = Server::new(&core);
        assert!(matches!(
            exchange(&mut c, &mut s, usize::MAX),
            Err(Failure::Handshake)
        ));
        // Then, on the same core, the first client comes back without SNI.
        let (_, s) = connect(&pki, &core, &no_sni, "localhost");
        let info = s.info.unwrap();
        assert!(info.resumed, "{version:?}");
        assert_eq!(info.server_name, None, "{version:?}");
        // A resumed handshake that sends a name reports it, as a full one does.
        let named = pki.client(&[version]);
        let (mut c, mut s) = connect(&pki, &core, &named, "Other.Test");
        c.writer().write_all(b"x").unwrap();
        exchange(&mut c, &mut s, usize::MAX).unwrap();
        let (_, s) = connect(&pki, &core, &named, "Other.Test");
        let info = s.info.unwrap();
        assert!(info.resumed, "{version:?}");
        assert_eq!(
            info.server_name.as_deref(),
            Some("other.test"),
            "{version:?}"
        );
    }
}

/// Found by the `tls_records` fuzz target: a header is judged field by field as it arrives,
/// as rustls judges it, not once all five bytes are there.
#[test]
fn a_record_type_no_connection_takes_is_refused_at_its_first_byte() {
    let pki = TestPki::new("partial-header");
    let core = core(&pki, &keys());
    for (version, refused) in [
        (&rustls::version::TLS13, &[0xdf][..]),
        (&rustls::version::TLS13, &[23, 3, 1][..]),
        (&rustls::version::TLS12, &[20][..]),
        (&rustls::version::TLS12, &[23, 3, 1][..]),
        (&rustls::version::TLS12, &[21, 3, 2][..]),
    ] {
        let client = pki.client(&[version]);
        let (mut c, mut s) = connect(&pki, &core, &client, "localhost");
        s.feed(&refused[..refused.len() - 1]).unwrap();
        assert!(
            matches!(s.feed(&refused[refused.len() - 1..]), Err(Failure::Record)),
            "{version:?} {refused:?}"
        );
        let fatal = match refused.len() {
            3 => super::record::PROTOCOL_VERSION,
            _ => super::record::UNEXPECTED_MESSAGE,
        };
        assert!(client_reads_alert(&mut c, &s.wire, fatal), "{refused:?}");
    }
}
