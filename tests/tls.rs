//! HTTPS over real sockets with real clients: curl, `openssl s_client`, Python's `ssl` and
//! rustls; SNI and ALPN; what handlers learn of the TLS; ciphertext split at every byte and
//! a hundred requests in one record; the TLS port's answer to cleartext and to garbage;
//! close_notify both ways; the cleartext listener's redirect, or none. Certificates are made
//! by each test (rcgen), never read from the repository.
//!
//! Process-level behaviour (reload, drain, start-up errors) is in `tls_lifecycle.rs`;
//! concurrency, resumption and handshakes that stall in `tls_load.rs`; clients that
//! misbehave after the handshake in `tls_hostile.rs` and `tls_framing.rs`.

mod common;
#[path = "common/tls.rs"]
mod tls;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use percore::config::Cleartext;
use rustls::pki_types::ServerName;
use rustls::ClientConnection;

use common::{output_with_input, output_within, wait_until_read_by_server};
use tls::{
    any_certificate_client, fact, require_tool, tcp, total, TlsClient, TlsServer, FAILURES, TLS12,
    TLS13,
};

/// How long a client tool may run before the test fails.
const TOOL_WAIT: Duration = Duration::from_secs(30);

/// The exact answer of the TLS port to a cleartext request.
const CLEARTEXT_400: &str = "HTTP/1.1 400 Bad Request\r\nServer: percore\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 59\r\nConnection: close\r\n\r\nThis port speaks HTTPS: the request was sent in cleartext.\n";

/// curl against the TLS port as `localhost` (resolved to 127.0.0.1 by curl itself).
fn curl(server: &TlsServer, args: &[&str]) -> std::process::Output {
    let port = server.https.port();
    let resolve = format!("localhost:{port}:127.0.0.1");
    let mut command = Command::new("curl");
    command
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(&server.pki.ca_pem)
        .args(["--resolve", &resolve])
        .args(args);
    let output = output_within(&mut command, TOOL_WAIT);
    assert!(
        output.status.success(),
        "curl {args:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn url(server: &TlsServer, path: &str) -> String {
    format!("https://localhost:{}{path}", server.https.port())
}

#[test]
fn curl_gets_posts_and_keeps_the_connection_alive() {
    if !require_tool("curl", &["--version"]) {
        return;
    }
    let server = TlsServer::start("curl", |_| {});
    // Two URLs on one command: the second reuses the first's connection (0 new connects).
    let format = "|%{num_connects} %{http_code} %{http_version} %{ssl_verify_result}\n";
    let both = curl(
        &server,
        &[
            "-w",
            format,
            &url(&server, "/echo?name=one"),
            &url(&server, "/echo?name=two"),
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&both.stdout),
        "Hi, one!|1 200 1.1 0\nHi, two!|0 200 1.1 0\n"
    );
    let stats = server.wait_for_stats("curl's handshake", |s| total(s, "handshakes") >= 1);
    assert_eq!(
        total(&stats, "handshakes"),
        1,
        "one connection for two URLs: {stats}"
    );
    assert_eq!(total(&stats, "full"), 1, "{stats}");

    // POST, small and over many records (and more than one receive buffer).
    let post = curl(&server, &["-d", "hello=tls", &url(&server, "/body")]);
    assert_eq!(post.stdout, b"hello=tls");
    let big: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let file = server.pki.dir.write("body.bin", &big);
    let data = format!("@{}", file.display());
    let post = curl(
        &server,
        &[
            "--data-binary",
            &data,
            "-H",
            "Content-Type: application/octet-stream",
            &url(&server, "/body"),
        ],
    );
    assert!(
        post.stdout == big,
        "the 300,000-byte body came back changed ({} bytes)",
        post.stdout.len()
    );

    let facts = curl(&server, &[&url(&server, "/tls")]);
    let facts = String::from_utf8_lossy(&facts.stdout);
    assert_eq!(
        fact(&facts, "alpn"),
        "http/1.1",
        "curl offers h2 too: {facts}"
    );
    assert_eq!(fact(&facts, "sni"), "localhost", "{facts}");
}

/// `curl --http1.0` offers ALPN `http/1.0` alone: percore must let the handshake through
/// (nginx agrees on `http/1.0`) and answer the HTTP/1.0 request, then close.
#[test]
fn curl_http_1_0_is_answered() {
    if !require_tool("curl", &["--version"]) {
        return;
    }
    let server = TlsServer::start("curl-1-0", |_| {});
    let target = url(&server, "/echo?name=old");
    let old = curl(&server, &["--http1.0", "-i", &target]);
    let text = String::from_utf8_lossy(&old.stdout);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nHi, old!"), "{text}");
}

/// What `curl --http1.0` does, with rustls: ALPN offers `http/1.0` alone. The handshake
/// must not end in a no_application_protocol alert: percore serves HTTP/1.0.
#[test]
fn a_client_offering_alpn_http_1_0_alone_is_served() {
    let server = TlsServer::start("alpn-1-0", |_| {});
    for versions in [TLS13, TLS12] {
        let mut config = (*server.pki.client(versions)).clone();
        config.alpn_protocols = vec![b"http/1.0".to_vec()];
        let client = TlsClient::try_connect(server.https, "localhost", &Arc::new(config));
        let mut client = client.unwrap_or_else(|e| {
            panic!("{versions:?}: the handshake offering ALPN http/1.0 failed: {e}")
        });
        client.send("GET /echo?name=ten HTTP/1.0\r\nHost: localhost\r\n\r\n");
        assert_eq!(client.response().text(), "Hi, ten!");
        client.clean_close().expect("close_notify after HTTP/1.0");
    }
}

/// An HTTP/1.0 request over TLS (ALPN `http/1.1`): answered, then the connection ends with
/// close_notify; with `Connection: keep-alive` it stays open.
#[test]
fn http_1_0_requests_over_tls() {
    let server = TlsServer::start("http-1-0", |_| {});
    let mut client = server.connect();
    client.send("GET /echo?name=ten HTTP/1.0\r\nHost: localhost\r\n\r\n");
    assert_eq!(client.response().text(), "Hi, ten!");
    client
        .clean_close()
        .expect("close_notify after an HTTP/1.0 response");
    let mut client = server.connect();
    for i in 0..3 {
        client.send(format!(
            "GET /echo?name={i} HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n"
        ));
        assert_eq!(client.response().text(), format!("Hi, {i}!"));
    }
}

/// `openssl s_client` with a request on its stdin; its whole output.
fn s_client(server: &TlsServer, args: &[&str], request: &str) -> std::process::Output {
    let connect = server.https.to_string();
    let mut command = Command::new("openssl");
    command
        .args(["s_client", "-connect", &connect, "-CAfile"])
        .arg(&server.pki.ca_pem)
        .args(args);
    output_with_input(&mut command, request.as_bytes(), TOOL_WAIT)
}

#[test]
fn openssl_s_client_speaks_tls_1_2_and_1_3_and_tls_1_1_is_refused() {
    if !require_tool("openssl", &["version"]) {
        return;
    }
    let server = TlsServer::start("openssl", |_| {});
    let request = "GET /tls HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    for (flag, version) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
        let args = [
            flag,
            "-servername",
            "localhost",
            "-verify_hostname",
            "localhost",
            "-verify_return_error",
            "-alpn",
            "http/1.1",
            // Keep reading after stdin ends, until percore closes (Connection: close).
            "-ign_eof",
        ];
        let output = s_client(&server, &args, request);
        let out = String::from_utf8_lossy(&output.stdout);
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "s_client {flag}: {}\n{out}\n{err}",
            output.status
        );
        assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
        assert!(out.contains("ALPN protocol: http/1.1"), "{out}");
        assert!(out.contains(&format!("New, {version}, Cipher is")), "{out}");
        let body = out
            .split_once("HTTP/1.1 200 OK\r\n")
            .unwrap_or_else(|| panic!("no response in {out}"))
            .1;
        assert!(body.contains("Connection: close\r\n"), "{body}");
        assert_eq!(fact(body, "version"), version, "{body}");
        assert_eq!(fact(body, "sni"), "localhost", "{body}");
        assert_eq!(fact(body, "alpn"), "http/1.1", "{body}");
    }
    let before = server.wait_for_stats("the two handshakes", |s| total(s, "handshakes") == 2);
    assert_eq!(total(&before, "failed.protocol"), 0, "{before}");

    // TLS 1.1: offered alone (the security level lowered so that OpenSSL will send it).
    let output = s_client(&server, &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"], "");
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "TLS 1.1 was accepted: {out}\n{err}"
    );
    assert!(
        !out.contains("Cipher is") || out.contains("Cipher is (NONE)"),
        "{out}"
    );
    let after = server.wait_for_stats("the refused TLS 1.1 handshake", |s| {
        total(s, "failed.protocol") == 1
    });
    assert_eq!(total(&after, "handshakes"), 2, "{after}");
}

#[test]
fn the_server_chooses_aes_128_unless_the_client_lists_chacha20_first() {
    if !require_tool("openssl", &["version"]) {
        return;
    }
    let server = TlsServer::start("suites", |_| {});
    let request = "GET /tls HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    for (version, option, offered, chosen) in [
        (
            "-tls1_3",
            "-ciphersuites",
            "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256",
            "TLS_AES_128_GCM_SHA256",
        ),
        (
            "-tls1_3",
            "-ciphersuites",
            "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256",
            "TLS_CHACHA20_POLY1305_SHA256",
        ),
        (
            "-tls1_3",
            "-ciphersuites",
            "TLS_AES_256_GCM_SHA384",
            "TLS_AES_256_GCM_SHA384",
        ),
        (
            "-tls1_2",
            "-cipher",
            "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256",
            "ECDHE-ECDSA-AES128-GCM-SHA256",
        ),
        (
            "-tls1_2",
            "-cipher",
            "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256",
            "ECDHE-ECDSA-CHACHA20-POLY1305",
        ),
    ] {
        let args = [
            version,
            option,
            offered,
            "-servername",
            "localhost",
            "-ign_eof",
        ];
        let output = s_client(&server, &args, request);
        let out = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{offered}: {out}");
        assert!(
            out.contains(&format!("Cipher is {chosen}")),
            "offered {offered}, expected {chosen}: {out}"
        );
        assert!(out.contains("HTTP/1.1 200 OK"), "{out}");
    }
}

const PYTHON_CLIENT: &str = r#"
import socket, ssl, sys
port, ca, name = int(sys.argv[1]), sys.argv[2], sys.argv[3]
context = ssl.create_default_context(cafile=ca)
context.set_alpn_protocols(["http/1.1"])
with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
    with context.wrap_socket(raw, server_hostname=name) as tls:
        tls.sendall(b"GET /tls HTTP/1.1\r\nHost: " + name.encode() + b"\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = tls.recv(65536)  # SSLEOFError unless percore sends close_notify
            if not chunk:
                break
            data += chunk
        print("version", tls.version())
        print("alpn", tls.selected_alpn_protocol())
        print("peer", tls.getpeercert()["subjectAltName"])
        sys.stdout.write(data.decode())
"#;

#[test]
fn python_ssl_verifies_sends_sni_and_agrees_on_http_1_1() {
    if !require_tool("python3", &["-c", "import ssl"]) {
        return;
    }
    let server = TlsServer::start("python", |_| {});
    for (name, san) in [
        ("localhost", "localhost"),
        ("deep.wild.test", "*.wild.test"),
    ] {
        let port = server.https.port().to_string();
        let mut command = Command::new("python3");
        command
            .args(["-c", PYTHON_CLIENT, &port])
            .arg(&server.pki.ca_pem)
            .arg(name);
        let output = output_within(&mut command, TOOL_WAIT);
        let out = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "python as {name}: {out}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(out.contains("version TLSv1.3\n"), "{out}");
        assert!(out.contains("alpn http/1.1\n"), "{out}");
        assert!(out.contains(&format!("('DNS', '{san}')")), "{out}");
        assert!(out.contains("HTTP/1.1 200 OK\r\n"), "{out}");
        assert_eq!(fact(&out, "sni"), name, "{out}");
        assert_eq!(fact(&out, "alpn"), "http/1.1", "{out}");
    }
}

#[test]
fn sni_picks_the_certificate_by_name_with_the_default_for_the_rest() {
    let server = TlsServer::start("sni", |_| {});
    let verified = server.client_config();
    for version in [TLS13, TLS12] {
        let unverified = any_certificate_client(version);
        let verified_only = server.pki.client(version);
        for (name, leaf, config) in [
            ("localhost", &server.default, &verified_only),
            ("other.test", &server.other, &verified_only),
            ("a.wild.test", &server.other, &verified_only),
            ("A.WILD.TEST", &server.other, &verified_only),
            // An IP address: no SNI at all.
            ("127.0.0.1", &server.default, &verified_only),
            // Names no certificate has: the default one (not valid for them, so the
            // client here checks signatures only).
            ("unknown.test", &server.default, &unverified),
            ("wild.test", &server.default, &unverified),
            ("a.b.wild.test", &server.default, &unverified),
        ] {
            let mut client = TlsClient::connect(server.https, name, config);
            assert!(
                client.peer_leaf() == leaf.der,
                "{name} got the wrong certificate"
            );
            let facts = client.get("/tls").text();
            let sent = match name.parse::<std::net::IpAddr>() {
                Ok(_) => "-".to_string(),
                Err(_) => name.to_ascii_lowercase(),
            };
            assert_eq!(fact(&facts, "sni").to_ascii_lowercase(), sent, "{facts}");
        }
    }
    // A verifying client refuses the default certificate for a name it does not carry.
    assert!(TlsClient::try_connect(server.https, "unknown.test", &verified).is_err());
}

#[test]
fn handlers_see_the_tls_facts_and_alpn_is_http_1_1() {
    let server = TlsServer::start("facts", |_| {});
    for (versions, version) in [(TLS13, "TLSv1.3"), (TLS12, "TLSv1.2")] {
        let config = server.pki.client(versions);
        let mut client = TlsClient::connect(server.https, "localhost", &config);
        assert_eq!(client.conn().alpn_protocol(), Some(&b"http/1.1"[..]));
        let suite = client.suite();
        let facts = client.get("/tls").text();
        assert_eq!(fact(&facts, "version"), version, "{facts}");
        assert_eq!(fact(&facts, "cipher"), suite, "{facts}");
        assert_eq!(fact(&facts, "sni"), "localhost", "{facts}");
        assert_eq!(fact(&facts, "alpn"), "http/1.1", "{facts}");
        assert_eq!(fact(&facts, "resumed"), "false", "{facts}");
        // The same facts for every request of the connection, and for an async handler.
        assert_eq!(client.get("/tls").text(), facts);
        assert_eq!(client.get("/later").text(), facts);
        assert_eq!(
            fact(&facts, "peer"),
            client.tls.sock.local_addr().unwrap().to_string()
        );
        drop(client);
        // A second connection with the same client configuration resumes.
        let mut again = TlsClient::connect(server.https, "localhost", &config);
        assert!(again.resumed(), "{version}: not resumed");
        assert_eq!(fact(&again.get("/tls").text(), "resumed"), "true");
    }
    // Without ALPN: none agreed, and the request is served all the same.
    let mut config = (*server.pki.client(TLS13)).clone();
    config.alpn_protocols.clear();
    let mut client = TlsClient::connect(server.https, "localhost", &Arc::new(config));
    assert_eq!(client.conn().alpn_protocol(), None);
    assert_eq!(fact(&client.get("/tls").text(), "alpn"), "-");
    // Offering only a protocol percore does not speak fails the handshake.
    let mut config = (*server.pki.client(TLS13)).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    assert!(TlsClient::try_connect(server.https, "localhost", &Arc::new(config)).is_err());
    // Cleartext requests have no TLS facts.
    let facts = common::Client::connect(server.http()).get("/tls").text();
    assert!(facts.starts_with("cleartext\n"), "{facts}");
}

/// Writes every byte the client has to send in a write of its own, each read by the server
/// before the next is written.
fn send_bytewise(conn: &mut ClientConnection, stream: &mut TcpStream) -> usize {
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    for byte in &out {
        stream.write_all(std::slice::from_ref(byte)).unwrap();
        wait_until_read_by_server(stream);
    }
    out.len()
}

/// Reads one batch of the server's records (the handshake's next flight, or part of it).
fn receive(conn: &mut ClientConnection, stream: &mut TcpStream) {
    let n = conn.read_tls(stream).expect("read");
    assert!(n > 0, "the server closed during the handshake");
    conn.process_new_packets().expect("the server's records");
}

#[test]
fn ciphertext_split_at_every_byte_is_put_back_together() {
    let server = TlsServer::start("bytewise", |_| {});
    // X25519 alone keeps the ClientHello short (a post-quantum share is over 1 KiB).
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
    for versions in [TLS13, TLS12] {
        let config = server.pki.client_with(versions, provider.clone());
        let mut stream = tcp(server.https);
        let name = ServerName::try_from("localhost").unwrap();
        let mut conn = ClientConnection::new(config, name).unwrap();
        let mut sent = 0;
        while conn.is_handshaking() {
            match conn.wants_write() {
                true => sent += send_bytewise(&mut conn, &mut stream),
                false => receive(&mut conn, &mut stream),
            }
        }
        sent += send_bytewise(&mut conn, &mut stream);
        let request = "GET /echo?name=bytewise HTTP/1.1\r\nHost: localhost\r\n\r\nGET /tls HTTP/1.1\r\nHost: localhost\r\n\r\n";
        conn.writer().write_all(request.as_bytes()).unwrap();
        sent += send_bytewise(&mut conn, &mut stream);
        let mut tls = rustls::Stream::new(&mut conn, &mut stream);
        let mut buf = Vec::new();
        let first = tls::read_response(&mut tls, &mut buf).unwrap();
        assert_eq!(first.text(), "Hi, bytewise!");
        let facts = tls::read_response(&mut tls, &mut buf).unwrap().text();
        let version = versions[0].version;
        eprintln!("{version:?}: {sent} bytes sent one at a time, {facts:?}");
        assert!(sent > 300, "{sent}");
        assert_eq!(
            fact(&facts, "version"),
            if version == rustls::ProtocolVersion::TLSv1_3 {
                "TLSv1.3"
            } else {
                "TLSv1.2"
            }
        );
    }
    let stats = server.wait_for_stats("two handshakes", |s| total(s, "handshakes") == 2);
    assert!(
        FAILURES
            .iter()
            .all(|f| total(&stats, &format!("failed.{f}")) == 0),
        "{stats}"
    );
}

#[test]
fn a_hundred_requests_in_one_record_are_answered_in_order() {
    let server = TlsServer::start("pipelined", |_| {});
    for versions in [TLS13, TLS12] {
        let config = server.pki.client(versions);
        let mut client = TlsClient::connect(server.https, "localhost", &config);
        let requests: String = (0..100)
            .map(|i| format!("GET /echo?name=p{i} HTTP/1.1\r\nHost: localhost\r\n\r\n"))
            .collect();
        assert!(requests.len() < 16384, "more than one record's worth");
        client
            .tls
            .conn
            .writer()
            .write_all(requests.as_bytes())
            .unwrap();
        let mut record = Vec::new();
        while client.tls.conn.wants_write() {
            client.tls.conn.write_tls(&mut record).unwrap();
        }
        // One application-data record: its header, then all of it.
        assert_eq!(record[0], 23, "an application-data record");
        let len = u16::from_be_bytes([record[3], record[4]]) as usize;
        assert_eq!(
            record.len(),
            5 + len,
            "one record holds the hundred requests"
        );
        client.tls.sock.write_all(&record).unwrap();
        for i in 0..100 {
            let response = client.response();
            assert_eq!(response.status, 200);
            assert_eq!(response.text(), format!("Hi, p{i}!"));
        }
        // And the connection goes on.
        assert_eq!(client.get("/echo?name=after").text(), "Hi, after!");
    }
}

/// Every byte the server sends on `stream` until it closes, and whether it closed with a
/// FIN (`Ok`) or a reset (`Err`).
fn read_to_close(stream: &mut TcpStream) -> (Vec<u8>, Result<(), std::io::Error>) {
    let mut all = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return (all, Ok(())),
            Ok(n) => all.extend_from_slice(&chunk[..n]),
            Err(e) => return (all, Err(e)),
        }
    }
}

#[test]
fn cleartext_on_the_tls_port_gets_a_cleartext_400_and_garbage_nothing() {
    let server = TlsServer::start("cleartext", |_| {});
    let mut plain = tcp(server.https);
    plain
        .write_all(b"GET /echo?name=x HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let (answer, end) = read_to_close(&mut plain);
    assert_eq!(String::from_utf8_lossy(&answer), CLEARTEXT_400);
    end.expect("closed in order after the 400");

    for garbage in [
        &b"\x00\x01\x02 not TLS"[..],
        b"\x80\x2e\x01\x03\x01",
        b"get / HTTP/1.1\r\n\r\n",
    ] {
        let mut stream = tcp(server.https);
        stream.write_all(garbage).unwrap();
        let (answer, _) = read_to_close(&mut stream);
        assert!(answer.is_empty(), "{garbage:?} was answered: {answer:?}");
    }
    let stats = server.wait_for_stats("the failures", |s| {
        total(s, "failed.cleartext") == 1 && total(s, "failed.not_tls") == 3
    });
    assert_eq!(total(&stats, "handshakes"), 0, "{stats}");
    assert_eq!(total(&stats, "failed.protocol"), 0, "{stats}");
    let metrics = common::Client::connect(server.http())
        .get("/metrics")
        .text();
    for line in [
        "percore_tls_handshake_failures_total{core=\"0\",reason=\"cleartext\"} 1",
        "percore_tls_handshake_failures_total{core=\"0\",reason=\"not_tls\"} 3",
        "percore_tls_handshakes_total{core=\"0\",kind=\"full\"} 0",
    ] {
        let core = server.server.as_ref().unwrap().cores()[0];
        let line = line.replace("core=\"0\"", &format!("core=\"{core}\""));
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in\n{metrics}"
        );
    }
    // The port still serves TLS.
    assert_eq!(server.connect().get("/echo?name=ok").text(), "Hi, ok!");
}

#[test]
fn a_client_close_notify_is_answered_with_close_notify_and_a_clean_close() {
    let server = TlsServer::start("close-notify", |config| {
        config.http.keepalive_timeout_ms = 500;
    });
    for versions in [TLS13, TLS12] {
        let config = server.pki.client(versions);
        // The client closes first.
        let mut client = TlsClient::connect(server.https, "localhost", &config);
        assert_eq!(client.get("/echo?name=c").text(), "Hi, c!");
        client.tls.conn.send_close_notify();
        client.tls.flush().unwrap();
        client
            .clean_close()
            .expect("percore's close_notify, then its FIN");

        // Closing before any request, once the handshake is surely over on both sides.
        let mut client = TlsClient::connect(server.https, "localhost", &config);
        let _ = client.get("/echo?name=c");
        let mut client = TlsClient::connect(server.https, "localhost", &config);
        if versions == TLS13 {
            // The server's Finished (and ticket) read before closing.
            client.tls.conn.complete_io(&mut client.tls.sock).ok();
        }
        wait_until_read_by_server(&client.tls.sock);
        client.tls.conn.send_close_notify();
        client.tls.flush().unwrap();
        client
            .clean_close()
            .expect("percore's close_notify, then its FIN");

        // percore closes an idle keep-alive connection (its keep-alive timeout).
        let mut idle = TlsClient::connect(server.https, "localhost", &config);
        assert_eq!(idle.get("/echo?name=i").text(), "Hi, i!");
        let since = Instant::now();
        idle.clean_close()
            .expect("percore's close_notify after the keep-alive timeout");
        assert!(
            since.elapsed() >= Duration::from_millis(400),
            "{:?}",
            since.elapsed()
        );
    }
    let stats = server.wait_for_stats("eight handshakes", |s| total(s, "handshakes") == 8);
    assert!(
        FAILURES
            .iter()
            .all(|f| total(&stats, &format!("failed.{f}")) == 0),
        "{stats}"
    );
}

/// A TLS 1.3 client whose last flight goes out in one write with what `then` makes it send
/// right after: its Finished, then (a key update, a request, a close_notify…).
fn finished_then(server: &TlsServer, then: impl FnOnce(&mut ClientConnection)) -> TlsClient {
    let config = server.pki.client(TLS13);
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(config, name).unwrap();
    let mut stream = tcp(server.https);
    while conn.is_handshaking() {
        match conn.wants_write() {
            true => conn.write_tls(&mut stream).map(drop).unwrap(),
            false => receive(&mut conn, &mut stream),
        }
    }
    // The client is done; its Finished is not sent yet.
    then(&mut conn);
    let mut flight = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut flight).unwrap();
    }
    stream.write_all(&flight).unwrap();
    let tls = rustls::StreamOwned::new(conn, stream);
    TlsClient::from_stream(tls)
}

/// A request, then close_notify.
fn request_and_close(request: &'static str) -> impl FnOnce(&mut ClientConnection) {
    move |conn| {
        conn.writer().write_all(request.as_bytes()).unwrap();
        conn.send_close_notify();
    }
}

/// A client that closes as soon as its handshake is done (a port checker, `openssl s_client`
/// with nothing to say) sends its Finished and its close_notify together: percore must
/// answer with its own close_notify, as after any other record, and not count a failure.
#[test]
fn close_notify_right_behind_the_clients_finished() {
    let server = TlsServer::start("finished-close", |_| {});
    let mut client = finished_then(&server, request_and_close(""));
    let closed = client.clean_close();
    let stats = server.wait_for_stats("the handshake", |s| total(s, "handshakes") == 1);
    closed.unwrap_or_else(|e| panic!("percore's close_notify, then its FIN: {e}; {stats}"));
    assert_eq!(total(&stats, "failed.protocol"), 0, "{stats}");
    assert_eq!(stats["total"]["protocol_errors"], 0, "{stats}");
}

/// Finished, a request and close_notify in one write (a client that half-closes once its
/// request is out): the request is answered, then percore's close_notify.
#[test]
fn a_request_and_close_notify_right_behind_the_clients_finished() {
    let server = TlsServer::start("finished-request-close", |_| {});
    let mut client = finished_then(
        &server,
        request_and_close("GET /echo?name=early HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    );
    // Far longer than an answer takes; the failure is a connection left hanging.
    let wait = Duration::from_secs(10);
    client.tls.sock.set_read_timeout(Some(wait)).unwrap();
    let response = client.try_response();
    assert_eq!(
        response.map(|r| r.text()),
        Ok("Hi, early!".to_string()),
        "the request sent with the Finished and a close_notify"
    );
    client
        .clean_close()
        .expect("percore's close_notify, then its FIN");
}

#[test]
fn the_last_request_of_a_connection_ends_with_close_notify() {
    let server = TlsServer::start("last-request", |config| {
        config.http.max_requests_per_connection = 1;
    });
    for versions in [TLS13, TLS12] {
        let mut client =
            TlsClient::connect(server.https, "localhost", &server.pki.client(versions));
        let response = client.get("/echo?name=last");
        assert_eq!(response.text(), "Hi, last!");
        assert_eq!(response.header("connection"), Some("close"));
        client
            .clean_close()
            .expect("close_notify, not a truncation");
    }
    // A request that asks for the close itself.
    let server = TlsServer::start("connection-close", |_| {});
    let mut client = server.connect();
    client.send("GET /echo?name=bye HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert_eq!(client.response().text(), "Hi, bye!");
    client
        .clean_close()
        .expect("close_notify, not a truncation");
}

/// `request` on a new cleartext connection, and the response.
fn cleartext(addr: SocketAddr, request: &str) -> common::Response {
    let mut client = common::Client::connect(addr);
    client.send(request);
    client.response()
}

#[test]
fn redirect_sends_every_cleartext_request_to_https() {
    let server = TlsServer::start("redirect", |config| {
        config.tls.as_mut().unwrap().cleartext = Cleartext::Redirect;
    });
    let port = server.https.port();
    for (request, location) in [
        (
            "GET /a/b?x=1&y=%20z HTTP/1.1\r\nHost: example.org:8080\r\n\r\n".to_string(),
            format!("https://example.org:{port}/a/b?x=1&y=%20z"),
        ),
        (
            "GET / HTTP/1.1\r\nHost: example.org\r\n\r\n".into(),
            format!("https://example.org:{port}/"),
        ),
        (
            "GET /v6 HTTP/1.1\r\nHost: [::1]:80\r\n\r\n".into(),
            format!("https://[::1]:{port}/v6"),
        ),
        (
            "POST /form?q HTTP/1.1\r\nHost: example.org\r\nContent-Length: 3\r\n\r\nabc".into(),
            format!("https://example.org:{port}/form?q"),
        ),
        (
            "GET http://proxy.example/abs?k=v HTTP/1.1\r\nHost: proxy.example\r\n\r\n".into(),
            format!("https://proxy.example:{port}/abs?k=v"),
        ),
    ] {
        let response = cleartext(server.http(), &request);
        assert_eq!(response.status, 308, "{request:?}: {}", response.text());
        assert_eq!(
            response.header("location"),
            Some(location.as_str()),
            "{request:?}"
        );
    }
    // Even the stats route is redirected.
    assert_eq!(
        cleartext(server.http(), "GET /stats HTTP/1.1\r\nHost: h\r\n\r\n").status,
        308
    );
}

/// Under `cleartext = "redirect"` the TLS listener serves the application: the redirect is
/// for cleartext requests only (a 308 to the very URL asked would be a redirect loop).
#[test]
fn under_redirect_the_tls_port_serves_the_application() {
    let server = TlsServer::start("redirect-tls", |config| {
        config.tls.as_mut().unwrap().cleartext = Cleartext::Redirect;
    });
    let mut client = server.connect();
    let response = client.get("/echo?name=secure");
    assert_eq!(
        (
            response.status,
            response.header("location"),
            response.text()
        ),
        (200, None, "Hi, secure!".to_string()),
        "a request over TLS was redirected to itself"
    );
    assert_eq!(client.get("/stats").status, 200);
}

#[test]
fn cleartext_off_means_no_cleartext_listener() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let server = TlsServer::start("off", |config| {
        config.server.port = port;
        config.tls.as_mut().unwrap().cleartext = Cleartext::Off;
    });
    let running = server.server.as_ref().unwrap();
    assert_eq!(
        running.local_addr(),
        server.https,
        "local_addr is the TLS one"
    );
    let refused = TcpStream::connect(("127.0.0.1", port));
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused),
        "server.port {port} accepts: {refused:?}"
    );
    let mut client = server.connect();
    assert_eq!(client.get("/echo?name=only-tls").text(), "Hi, only-tls!");
    let stats = client.get("/stats");
    assert_eq!(stats.status, 200);
}

#[test]
fn static_files_of_every_size_go_out_sealed() {
    let root = common::TempDir::new("tls-static");
    let files: Vec<(&str, Vec<u8>)> = [
        ("small.txt", 10),
        ("mid.bin", 100_000),
        ("big.bin", 3_000_000),
    ]
    .into_iter()
    .map(|(name, len)| (name, (0..len).map(|i| (i * 7 % 251) as u8).collect()))
    .collect();
    for (name, bytes) in &files {
        root.write(name, bytes);
    }
    let dir = root.0.clone();
    let server = TlsServer::start("static", |config| config.static_files.root = dir);
    for versions in [TLS13, TLS12] {
        let mut client =
            TlsClient::connect(server.https, "localhost", &server.pki.client(versions));
        // Twice each, on one connection: from the disk, then from the cache or the page cache.
        for _ in 0..2 {
            for (name, bytes) in &files {
                let response = client.get(&format!("/{name}"));
                assert_eq!(response.status, 200, "{name}");
                assert!(response.body == *bytes, "{name} came back changed");
            }
        }
        // A range of the large one.
        client.send(
            "GET /big.bin HTTP/1.1\r\nHost: localhost\r\nRange: bytes=1000000-1000009\r\n\r\n",
        );
        let part = client.response();
        assert_eq!(part.status, 206);
        assert_eq!(part.body, files[2].1[1_000_000..1_000_010]);
        assert_eq!(client.get("/echo?name=still").text(), "Hi, still!");
    }
    if tls::have_curl() {
        let out = curl(&server, &[&url(&server, "/big.bin")]);
        assert!(out.stdout == files[2].1, "curl's copy of big.bin differs");
    }
}

#[test]
fn the_json_access_log_names_the_tls_version_and_cipher() {
    let log = common::TempDir::new("tls-access-log");
    let path = log.0.join("access.log");
    let file = path.clone();
    let mut server = TlsServer::start("access-log", |config| {
        config.log.access = file;
        config.log.format = percore::config::LogFormat::Json;
    });
    let mut client = TlsClient::connect(server.https, "localhost", &server.pki.client(TLS13));
    assert_eq!(client.get("/echo?name=secure").text(), "Hi, secure!");
    let suite = client.suite();
    let mut client12 = TlsClient::connect(server.https, "localhost", &server.pki.client(TLS12));
    assert_eq!(client12.get("/echo?name=twelve").text(), "Hi, twelve!");
    let suite12 = client12.suite();
    let plain = common::Client::connect(server.http()).get("/echo?name=plain");
    assert_eq!(plain.status, 200);
    drop((client, client12));
    // Stopping the server writes every line out.
    server.server.take().unwrap().shutdown();
    let text = std::fs::read_to_string(&path).expect("the access log");
    let line = |name: &str| {
        text.lines()
            .find(|l| l.contains(&format!("name={name}")))
            .unwrap_or_else(|| panic!("no line for {name} in {text}"))
            .to_string()
    };
    for (name, tail) in [
        (
            "secure",
            format!(",\"tls_version\":\"TLSv1.3\",\"tls_cipher\":\"{suite}\"}}"),
        ),
        (
            "twelve",
            format!(",\"tls_version\":\"TLSv1.2\",\"tls_cipher\":\"{suite12}\"}}"),
        ),
        (
            "plain",
            ",\"tls_version\":null,\"tls_cipher\":null}".to_string(),
        ),
    ] {
        let line = line(name);
        assert!(line.ends_with(&tail), "{line}\ndoes not end with {tail}");
        let parsed: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
        assert_eq!(parsed["status"], 200, "{line}");
    }
}

#[test]
fn async_answers_are_sealed_in_order_with_the_others() {
    let server = TlsServer::start("async", |_| {});
    for versions in [TLS13, TLS12] {
        let mut client =
            TlsClient::connect(server.https, "localhost", &server.pki.client(versions));
        client.send(
            "GET /later HTTP/1.1\r\nHost: localhost\r\n\r\n\
             GET /echo?name=between HTTP/1.1\r\nHost: localhost\r\n\r\n\
             GET /later HTTP/1.1\r\nHost: localhost\r\n\r\n",
        );
        let first = client.response().text();
        assert!(first.contains("\nresumed="), "{first}");
        assert_eq!(client.response().text(), "Hi, between!");
        assert_eq!(client.response().text(), first);
    }
}

/// A PROXY header (from a balancer passing TLS through) comes before the ClientHello, in
/// the same segment or not: the handshake follows it, and the handler sees the client the
/// header names.
#[test]
fn tls_after_a_proxy_header() {
    let server = TlsServer::start("proxy", |config| {
        config.server.proxy_protocol = true;
    });
    for (i, together) in [true, false].into_iter().enumerate() {
        let header = format!("PROXY TCP4 192.0.2.7 127.0.0.1 4000{i} 443\r\n");
        let name = ServerName::try_from("localhost").unwrap();
        let mut conn = ClientConnection::new(server.pki.client(TLS13), name).unwrap();
        let mut stream = tcp(server.https);
        let mut first = header.into_bytes();
        if together {
            conn.write_tls(&mut first).unwrap();
        }
        stream.write_all(&first).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, stream);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).expect("the handshake");
        }
        let mut client = TlsClient::from_stream(tls);
        let facts = client.get("/tls").text();
        assert_eq!(
            fact(&facts, "peer"),
            format!("192.0.2.7:4000{i}"),
            "{facts}"
        );
        assert_eq!(fact(&facts, "version"), "TLSv1.3", "{facts}");
        assert_eq!(fact(&facts, "sni"), "localhost", "{facts}");
    }
    // Without the header, nothing is answered.
    let mut bare = tcp(server.https);
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(server.pki.client(TLS13), name).unwrap();
    conn.write_tls(&mut bare).unwrap();
    let (answer, _) = read_to_close(&mut bare);
    assert!(
        answer.is_empty(),
        "answered without a PROXY header: {answer:?}"
    );
}

/// At `server.max_connections_per_core`, a connection on the TLS port is refused in a way
/// a TLS client understands: closed, or a TLS alert; never the cleartext `503` the
/// cleartext listener sends (a TLS client reads that as a corrupt record).
#[test]
fn a_tls_connection_over_the_connection_bound_gets_no_cleartext() {
    let server = TlsServer::start("refused", |config| {
        config.server.max_connections_per_core = 2;
    });
    let held = [server.connect(), server.connect()];
    for client in &held {
        wait_until_read_by_server(&client.tls.sock);
    }
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(server.pki.client(TLS13), name).unwrap();
    let mut stream = tcp(server.https);
    conn.write_tls(&mut stream).unwrap();
    let (answer, _) = read_to_close(&mut stream);
    assert!(
        answer.is_empty() || answer[0] == 0x15,
        "a TLS client was answered in cleartext: {:?}",
        String::from_utf8_lossy(&answer)
    );
    drop(held);
}

#[test]
fn interim_and_error_responses_are_sealed_and_errors_end_with_close_notify() {
    let server = TlsServer::start("errors", |_| {});
    let mut client = server.connect();
    // 100 Continue, sealed like any response, then the body's answer.
    client.send(
        "POST /body HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    assert_eq!(client.response().status, 100);
    client.send("hello");
    let response = client.response();
    assert_eq!((response.status, response.text()), (200, "hello".into()));
    // A malformed head: 400, then the connection ends cleanly.
    client.send("GET /x HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n");
    assert_eq!(client.response().status, 400);
    client.clean_close().expect("close_notify after the 400");
    // A body over http.max_body_bytes: 413, then the same.
    let mut client = server.connect();
    client.send("POST /body HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2000000\r\n\r\n");
    assert_eq!(client.response().status, 413);
    client.clean_close().expect("close_notify after the 413");
    // A route that does not exist: 404, and the connection goes on.
    let mut client = server.connect();
    assert_eq!(client.get("/nowhere").status, 404);
    assert_eq!(client.get("/echo?name=on").text(), "Hi, on!");
}

#[test]
fn key_updates_from_the_client_over_a_real_socket() {
    let server = TlsServer::start("key-update", |_| {});
    let mut client = TlsClient::connect(server.https, "localhost", &server.pki.client(TLS13));
    assert_eq!(client.get("/echo?name=first").text(), "Hi, first!");
    for round in 0..5 {
        // Asks percore to update its key too.
        client.tls.conn.refresh_traffic_keys().unwrap();
        let response = client.get(&format!("/echo?name=k{round}"));
        assert_eq!(response.text(), format!("Hi, k{round}!"));
    }
    let stats = server.wait_for_stats("the handshake", |s| total(s, "handshakes") == 1);
    assert_eq!(stats["total"]["protocol_errors"], 0, "{stats}");
}

/// A key update sent right behind the client's Finished (in the same segment), asking
/// percore to update its own key: the response must come under keys the client follows,
/// after percore's own KeyUpdate.
#[test]
fn a_key_update_right_behind_the_clients_finished() {
    let server = TlsServer::start("finished-key-update", |_| {});
    let mut client = finished_then(&server, |conn| {
        conn.refresh_traffic_keys().unwrap();
        conn.writer()
            .write_all(b"GET /echo?name=updated HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
    });
    client
        .tls
        .sock
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let response = client.try_response().map(|r| r.text());
    assert_eq!(
        response,
        Ok("Hi, updated!".to_string()),
        "a response to a request sent with a key update behind the Finished"
    );
    assert_eq!(client.get("/echo?name=next").text(), "Hi, next!");
}

/// A TLS client's requests through a proxy route: forwarded with `X-Forwarded-Proto: https`,
/// answered (a length, or chunked re-framed) over the same TLS connection, kept alive.
#[test]
fn a_tls_client_is_proxied_with_its_scheme_forwarded() {
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_addr = backend.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        let (mut stream, _) = backend.accept().unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
                buf.drain(..end + 4);
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nproxy{}",
                    record.lock().unwrap().len() % 10
                );
                record.lock().unwrap().push(head);
                if stream.write_all(answer.as_bytes()).is_err() {
                    return;
                }
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    });
    let toml = format!(
        "[[upstream]]\nname = \"app\"\nservers = [\"{backend_addr}\"]\n[[proxy]]\npath = \"/api/\"\nupstream = \"app\"\n"
    );
    let parsed = percore::config::Config::from_toml(&toml, "test").unwrap();
    let server = TlsServer::start("proxied", move |config| {
        config.upstream = parsed.upstream;
        config.proxy = parsed.proxy;
    });
    let mut client = server.connect();
    for i in 0..10 {
        let response = client.get("/api/secure");
        assert_eq!(response.status, 200);
        assert_eq!(response.body, format!("proxy{i}").as_bytes());
    }
    assert_eq!(client.get("/echo?name=tls").body, b"Hi, tls!");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 10, "one upstream connection carried all ten");
    assert!(
        seen[0].contains("X-Forwarded-Proto: https\r\n"),
        "{}",
        seen[0]
    );
}

/// A TLS client's upgrade through the proxy: the `101` and the tunnelled bytes ride the
/// client's TLS connection, the backend's leg is cleartext.
#[test]
fn a_tls_client_upgrades_through_the_proxy() {
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_addr = backend.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut stream, _) = backend.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).unwrap_or(0) == 0 {
                return;
            }
            head.push(byte[0]);
        }
        let answer =
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        stream.write_all(answer.as_bytes()).unwrap();
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => stream.write_all(&chunk[..n]).unwrap(),
            }
        }
    });
    let toml = format!(
        "[[upstream]]\nname = \"ws\"\nservers = [\"{backend_addr}\"]\n[[proxy]]\npath = \"/ws/\"\nupstream = \"ws\"\n"
    );
    let parsed = percore::config::Config::from_toml(&toml, "test").unwrap();
    let server = TlsServer::start("tunnelled", move |config| {
        config.upstream = parsed.upstream;
        config.proxy = parsed.proxy;
    });
    let mut client = server.connect();
    client.send(
        "GET /ws/x HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    );
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        client.tls.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    for message in ["over tls", "and again"] {
        client.send(message);
        let mut echoed = vec![0u8; message.len()];
        client.tls.read_exact(&mut echoed).unwrap();
        assert_eq!(echoed, message.as_bytes());
    }
}
