//! TLS under numbers and under clients that misbehave: a thousand connections open at once,
//! session tickets that resume whichever core a client lands on, handshakes that stall or
//! vanish (cut at the head timeout, never holding up the core), and the bound on handshakes
//! under way.

mod common;
#[path = "common/tls.rs"]
mod tls;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use percore::config::CoreSpec;
use percore::internals::usable_cores;
use rustls::pki_types::ServerName;
use rustls::ClientConnection;

use common::{require, wait_for_hang_up, wait_until_read_by_server};
use tls::{fact, tcp, tls_count, total, TlsClient, TlsServer, TLS12, TLS13};

/// Raises this process's open-file limit to at least `want` descriptors; false if the hard
/// limit does not allow it.
fn raise_nofile(want: u64) -> bool {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a struct of ours.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur >= want {
            return true;
        }
        if limit.rlim_max < want {
            return false;
        }
        limit.rlim_cur = want;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
    }
}

#[test]
fn a_thousand_concurrent_tls_connections_handshake_are_answered_and_close() {
    const THREADS: usize = 8;
    const EACH: usize = 130;
    const ALL: u64 = (THREADS * EACH) as u64;
    // Both ends of every connection are in this process, and the server's own descriptors.
    if !require(
        raise_nofile(2 * ALL + 1024),
        "the open-file limit's hard bound is under 3,104 descriptors",
    ) {
        return;
    }
    let server = TlsServer::start("thousand", |_| {});
    let config = server.client_config();
    let https = server.https;
    // Connected / answered / closed, each step with all threads and the test together.
    let step = Arc::new(Barrier::new(THREADS + 1));
    let started = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (config, step) = (config.clone(), step.clone());
            std::thread::spawn(move || {
                let mut clients: Vec<TlsClient> = (0..EACH)
                    .map(|_| TlsClient::connect(https, "localhost", &config))
                    .collect();
                step.wait();
                step.wait();
                for (i, client) in clients.iter_mut().enumerate() {
                    let response = client.get(&format!("/echo?name=t{t}c{i}"));
                    assert_eq!(response.text(), format!("Hi, t{t}c{i}!"));
                }
                step.wait();
                // Half close with close_notify, half without a word.
                for (i, mut client) in clients.into_iter().enumerate() {
                    if i % 2 == 0 {
                        client.tls.conn.send_close_notify();
                        client.tls.flush().unwrap();
                    }
                }
            })
        })
        .collect();
    step.wait();
    let connected = started.elapsed();
    // All of them open at once, every handshake complete.
    let stats = server.wait_for_stats("every connection open", |s| {
        s["total"]["open"].as_u64().unwrap() >= ALL && total(s, "handshakes") == ALL
    });
    assert_eq!(stats["total"]["connections"]["refused"], 0, "{stats}");
    step.wait();
    step.wait();
    let answered = started.elapsed();
    for thread in threads {
        thread.join().expect("a client thread failed");
    }
    let stats = server.wait_for_stats("every connection closed", |s| {
        s["total"]["open"].as_u64().unwrap() <= 1
    });
    for failure in tls::FAILURES {
        assert_eq!(total(&stats, &format!("failed.{failure}")), 0, "{stats}");
    }
    assert_eq!(stats["total"]["protocol_errors"], 0, "{stats}");
    assert!(stats["total"]["requests"].as_u64().unwrap() >= ALL);
    eprintln!(
        "{ALL} TLS connections: all open after {connected:?}, all answered after {answered:?}; \
         {} full and {} resumed handshakes",
        total(&stats, "full"),
        total(&stats, "resumed")
    );
}

#[test]
fn tickets_resume_whichever_core_accepts_the_connection() {
    if !require(
        usable_cores().len() >= 2,
        "resumption across cores needs two usable cores",
    ) {
        return;
    }
    let server = TlsServer::start("resume", |config| {
        config.server.cores = CoreSpec::First(2);
    });
    const EACH: u64 = 40;
    for (versions, version) in [(TLS13, "TLSv1.3"), (TLS12, "TLSv1.2")] {
        // One client configuration: its resumption store keeps the tickets it is given.
        let config = server.pki.client(versions);
        let mut resumed = 0;
        for i in 0..EACH {
            let mut client = TlsClient::connect(server.https, "localhost", &config);
            // Reading the response reads the TLS 1.3 ticket sent before it.
            let facts = client.get("/tls").text();
            assert_eq!(fact(&facts, "version"), version);
            let said = fact(&facts, "resumed") == "true";
            assert_eq!(
                said,
                client.resumed(),
                "{version} #{i}: the server and the client disagree"
            );
            resumed += u64::from(client.resumed());
            client.tls.conn.send_close_notify();
            client.tls.flush().unwrap();
        }
        assert_eq!(
            resumed,
            EACH - 1,
            "{version}: every handshake after the first resumes"
        );
    }
    let stats = server.wait_for_stats("every handshake", |s| total(s, "handshakes") == 2 * EACH);
    assert_eq!(total(&stats, "full"), 2, "{stats}");
    assert_eq!(total(&stats, "resumed"), 2 * (EACH - 1), "{stats}");
    let cores = stats["cores"].as_array().unwrap();
    assert_eq!(cores.len(), 2);
    for core in cores {
        // 80 connections spread by the kernel's hash: each core resumed tickets it may not
        // have issued.
        assert!(
            tls_count(core, "resumed") > 0,
            "core {} resumed none: {stats}",
            core["core"]
        );
    }
}

/// The first half of a ClientHello, as a rustls client writes it.
fn half_a_client_hello(server: &TlsServer) -> Vec<u8> {
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(server.pki.client(TLS13), name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    assert_eq!(hello[0], 0x16, "a handshake record");
    hello.truncate(hello.len() / 2);
    hello
}

/// Every byte the server sends until it ends the connection (a FIN or a reset).
fn rest_of(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n @ 1..) = stream.read(&mut chunk) {
        all.extend_from_slice(&chunk[..n]);
    }
    all
}

#[test]
fn stalled_and_vanishing_handshakes_cost_their_connection_only() {
    const HEAD_MS: u64 = 3000;
    let server = TlsServer::start("stall", |config| {
        config.http.header_timeout_ms = HEAD_MS;
    });
    let hello = half_a_client_hello(&server);
    let sent = Instant::now();
    let mut stalled = tcp(server.https);
    stalled.write_all(&hello).unwrap();
    wait_until_read_by_server(&stalled);
    // One client leaves with a FIN, one with a reset, both halfway through their hello.
    let gone = tcp(server.https);
    (&gone).write_all(&hello).unwrap();
    wait_until_read_by_server(&gone);
    drop(gone);
    let reset = tcp(server.https);
    (&reset).write_all(&hello).unwrap();
    wait_until_read_by_server(&reset);
    socket2::SockRef::from(&reset)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(reset);

    // Meanwhile the core serves a TLS client as usual.
    let asked = Instant::now();
    let mut client = server.connect();
    assert_eq!(client.get("/echo?name=meanwhile").text(), "Hi, meanwhile!");
    let served = asked.elapsed();
    assert!(
        wait_for_hang_up(&stalled, Duration::ZERO).is_none(),
        "the stalled handshake was cut before a normal request was served ({served:?})"
    );

    let cut = wait_for_hang_up(&stalled, Duration::from_millis(HEAD_MS + 8000))
        .expect("the stalled handshake is cut");
    let after = cut - sent;
    assert!(
        after >= Duration::from_millis(HEAD_MS - 100),
        "cut after {after:?}, before the head timeout"
    );
    assert!(
        rest_of(&mut stalled).is_empty(),
        "nothing is said to a stalled client"
    );
    eprintln!("a normal request served in {served:?}; the stalled handshake cut after {after:?}");

    let stats = server.wait_for_stats("the failed handshakes", |s| {
        total(s, "failed.timeout") == 1 && total(s, "failed.closed") == 2
    });
    assert_eq!(total(&stats, "handshakes"), 1, "{stats}");
    assert_eq!(total(&stats, "failed.protocol"), 0, "{stats}");
    // The connection served meanwhile is still good.
    assert_eq!(client.get("/echo?name=after").text(), "Hi, after!");
}

#[test]
fn at_the_handshake_bound_new_tls_connections_wait_in_the_queue() {
    const HEAD_MS: u64 = 1500;
    let server = TlsServer::start("bound", |config| {
        config.http.header_timeout_ms = HEAD_MS;
        config.tls.as_mut().unwrap().max_handshakes_per_core = 2;
    });
    let hello = half_a_client_hello(&server);
    let stalled: Vec<TcpStream> = (0..2)
        .map(|_| {
            let stream = tcp(server.https);
            (&stream).write_all(&hello).unwrap();
            wait_until_read_by_server(&stream);
            stream
        })
        .collect();
    // Two handshakes under way: the TLS listener stops accepting; a third client waits.
    let config = server.client_config();
    let https = server.https;
    let watched: Vec<TcpStream> = stalled.iter().map(|s| s.try_clone().unwrap()).collect();
    let started = Instant::now();
    let third = std::thread::spawn(move || {
        let mut client = TlsClient::connect(https, "localhost", &config);
        // Whether a stalled handshake had ended by the time this one was done.
        let freed = watched
            .iter()
            .any(|s| wait_for_hang_up(s, Duration::ZERO).is_some());
        (client.get("/echo?name=third").text(), freed)
    });
    // The cleartext listener is not held back.
    let mut plain = common::Client::connect(server.http());
    assert_eq!(plain.get("/echo?name=plain").text(), "Hi, plain!");
    for stream in &stalled {
        wait_for_hang_up(stream, Duration::from_secs(20)).expect("cut at the head timeout");
    }
    let (text, freed) = third.join().unwrap();
    assert_eq!(text, "Hi, third!");
    assert!(
        freed,
        "the third handshake completed while two were under way ({:?} after it began)",
        started.elapsed()
    );
    let stats = server.wait_for_stats("the handshakes", |s| {
        total(s, "failed.timeout") == 2 && total(s, "handshakes") == 1
    });
    assert_eq!(stats["total"]["connections"]["refused"], 0, "{stats}");
}
