//! The PROXY protocol over real sockets: with `server.proxy_protocol` on, versions 1 and 2
//! are taken (split anywhere), their client address is the one handlers see, and a
//! connection without a valid header, or from a source not in `server.proxy_from`, is closed
//! without an answer.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use percore::config::{Config, CoreSpec};
use percore::{App, Server};

/// A server whose `/peer` answers the address a handler sees.
fn start(adjust: impl FnOnce(&mut Config)) -> (Server, SocketAddr) {
    let mut config = Config::default();
    config.server.port = 0;
    config.server.cores = CoreSpec::First(1);
    config.report.interval_ms = 0;
    config.server.proxy_protocol = true;
    adjust(&mut config);
    let server = App::new(|_| Ok(()))
        .get("/peer", |request, response, _| {
            let peer = request
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            response.text(&peer);
        })
        .start(config)
        .expect("server starts");
    let addr = server.local_addr();
    (server, addr)
}

const REQUEST: &[u8] = b"GET /peer HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

/// Sends `bytes` one write per piece, each once the server has read the one before (so
/// that it meets them in separate reads), reads to the server's close; `None` if the server
/// closed (or reset) without a byte.
fn exchange(addr: SocketAddr, pieces: &[&[u8]]) -> Option<String> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.set_nodelay(true).unwrap();
    for piece in pieces {
        if stream.write_all(piece).is_err() {
            break;
        }
        common::wait_until_read_by_server(&stream);
    }
    let mut reply = Vec::new();
    match stream.read_to_end(&mut reply) {
        Ok(_) if reply.is_empty() => None,
        Ok(_) => Some(String::from_utf8_lossy(&reply).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
        Err(e) => panic!("read: {e}"),
    }
}

fn v2(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.push(0x20 | command);
    header.push(family);
    header.extend_from_slice(&(block.len() as u16).to_be_bytes());
    header.extend_from_slice(block);
    header
}

#[test]
fn version_1_names_the_client() {
    let (_server, addr) = start(|_| {});
    let header = b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 80\r\n";
    let reply = exchange(addr, &[&[&header[..], REQUEST].concat()]).expect("an answer");
    assert!(reply.ends_with("\r\n\r\n203.0.113.7:51234"), "{reply}");
    let six = b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 443\r\n";
    let reply = exchange(addr, &[six, REQUEST]).expect("an answer");
    assert!(reply.ends_with("[2001:db8::7]:4000"), "{reply}");
}

#[test]
fn version_2_names_the_client_and_local_keeps_the_socket_peer() {
    let (_server, addr) = start(|_| {});
    let four = v2(1, 0x11, &[203, 0, 113, 9, 192, 0, 2, 1, 0x1f, 0x90, 0, 80]);
    let reply = exchange(addr, &[&[&four[..], REQUEST].concat()]).expect("an answer");
    assert!(reply.ends_with("203.0.113.9:8080"), "{reply}");
    // LOCAL: the balancer's own connection (a health check): the socket's peer is shown.
    let local = v2(0, 0x00, &[]);
    let reply = exchange(addr, &[&[&local[..], REQUEST].concat()]).expect("an answer");
    assert!(reply.contains("\r\n\r\n127.0.0.1:"), "{reply}");
}

#[test]
fn a_header_split_anywhere_works() {
    let (_server, addr) = start(|_| {});
    let header = b"PROXY TCP4 198.51.100.2 192.0.2.1 1234 80\r\n";
    let whole = [&header[..], REQUEST].concat();
    let bytes: Vec<&[u8]> = whole.chunks(1).take(header.len() + 3).collect();
    let mut pieces = bytes.clone();
    pieces.push(&whole[header.len() + 3..]);
    let reply = exchange(addr, &pieces).expect("an answer");
    assert!(reply.ends_with("198.51.100.2:1234"), "{reply}");
    let four = v2(1, 0x11, &[198, 51, 100, 3, 192, 0, 2, 1, 0, 7, 0, 80]);
    let whole = [&four[..], REQUEST].concat();
    let pieces: Vec<&[u8]> = vec![&whole[..5], &whole[5..14], &whole[14..20], &whole[20..]];
    let reply = exchange(addr, &pieces).expect("an answer");
    assert!(reply.ends_with("198.51.100.3:7"), "{reply}");
}

#[test]
fn missing_or_malformed_headers_are_closed_unanswered() {
    let (server, addr) = start(|_| {});
    for bad in [
        REQUEST.to_vec(),
        [&b"PROXY TCP4 garbage\r\n"[..], REQUEST].concat(),
        [
            &b"PROXY TCP4 203.0.113.7 192.0.2.1 99999 80\r\n"[..],
            REQUEST,
        ]
        .concat(),
        [&v2(1, 0x11, &[1, 2, 3])[..], REQUEST].concat(),
    ] {
        assert_eq!(
            exchange(addr, &[&bad]),
            None,
            "{:?}",
            String::from_utf8_lossy(&bad)
        );
    }
    // The server goes on serving good connections.
    let good = [&b"PROXY TCP4 203.0.113.7 192.0.2.1 1 80\r\n"[..], REQUEST].concat();
    assert!(exchange(addr, &[&good]).unwrap().ends_with("203.0.113.7:1"));
    let summary = server.shutdown();
    assert_eq!(summary.merged_counters().protocol_errors, 4);
}

#[test]
fn untrusted_sources_are_refused() {
    let (_server, addr) =
        start(|config| config.server.proxy_from = vec!["10.0.0.0/8".parse().unwrap()]);
    let good = [&b"PROXY TCP4 203.0.113.7 192.0.2.1 1 80\r\n"[..], REQUEST].concat();
    assert_eq!(
        exchange(addr, &[&good]),
        None,
        "loopback is not in 10.0.0.0/8"
    );
}

#[test]
fn proxy_from_must_hold_addresses_or_networks() {
    let error = Config::from_toml("[server]\nproxy_from = [\"10.0.0.0/40\"]\n", "test")
        .unwrap_err()
        .to_string();
    assert!(error.contains("server.proxy_from"), "{error}");
}

/// The access log names the client of the PROXY header, not the balancer.
#[test]
fn the_access_log_names_the_proxied_client() {
    let path = std::env::temp_dir().join(format!("percore-proxy-log-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let (server, addr) = start(|config| config.log.access = path.clone());
    let header = b"PROXY TCP4 198.51.100.77 192.0.2.1 4242 80\r\n";
    let reply = exchange(addr, &[&[&header[..], REQUEST].concat()]).expect("an answer");
    assert!(reply.ends_with("198.51.100.77:4242"), "{reply}");
    server.shutdown();
    let log = std::fs::read_to_string(&path).unwrap();
    assert!(log.starts_with("198.51.100.77 - - ["), "{log}");
    assert!(log.contains("\"GET /peer HTTP/1.1\" 200 "), "{log}");
    let _ = std::fs::remove_file(&path);
}
