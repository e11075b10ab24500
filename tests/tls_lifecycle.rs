//! The `percore` binary with TLS, as a process: certificates swapped by SIGHUP under
//! keep-alive TLS clients (none loses a request; a broken pair leaves the old one serving),
//! SIGTERM's drain ending TLS connections with close_notify, start-up and `--check` errors
//! that name the key, and a server with no cleartext listener at all.

#[path = "common/clients.rs"]
mod clients;
mod common;
#[path = "common/tls.rs"]
mod tls;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clients::{status_of, Load, StopOnDrop};
use common::{output_within, wait_child, wait_until_read_by_server, Percore};
use rustls::pki_types::CertificateDer;
use rustls::ClientConfig;
use tls::{
    config_file, https_addr, signal, wait_until_refused, Pki, TlsClient, DEFAULT_NAMES, EXIT, TLS13,
};

/// Waits (at most 20 s) until `GET path` over cleartext answers `status`.
#[track_caller]
fn wait_for_status(addr: SocketAddr, path: &str, status: u16) {
    common::wait_until(
        &format!("{path} answers {status}"),
        Duration::from_secs(20),
        || status_of(addr, path) == status,
    );
}

/// A configuration with a TLS listener on a free port, the certificate and key named
/// relative to the file, `stats` as the stats path; `extra` lines go in `[server]`.
fn write_config(dir: &Path, stats: &str, extra: &str) -> String {
    let text = format!(
        "[server]\nport = 0\ncores = [0]\n{extra}\n\n\
         [report]\ninterval_ms = 0\nstats_path = \"{stats}\"\n\n\
         [tls]\nport = 0\ncertificate = \"server.pem\"\nprivate_key = \"server.key\"\n"
    );
    config_file(dir, &text).to_str().unwrap().to_string()
}

/// The server's next stderr line about SIGHUP.
fn reload_note(server: &Percore) -> String {
    server
        .stderr
        .find("the note on the reload", |line| line.contains("SIGHUP"))
}

/// The leaf certificate a new TLS connection is shown.
fn leaf_of(addr: SocketAddr, pki: &Pki) -> Vec<u8> {
    let mut client = TlsClient::connect(addr, "localhost", &pki.client(TLS13));
    assert_eq!(client.get("/echo?name=leaf").text(), "Hi, leaf!");
    client.peer_leaf().to_vec()
}

#[test]
fn sighup_swaps_the_certificate_under_keep_alive_tls_clients() {
    let pki = Pki::new("reload");
    let dir = pki.dir.0.clone();
    let first = pki.leaf("server", DEFAULT_NAMES);
    let config = write_config(&dir, "/stats-0", "drain_idle_grace_ms = 500");
    let mut server = Percore::start(&["--config", &config]);
    let http: SocketAddr = server.addr.parse().unwrap();
    let https = https_addr(&server);
    assert_eq!(leaf_of(https, &pki), first.der.to_vec());

    let load = Load::new();
    let _stop = StopOnDrop(load.clone());
    // One client resumes its sessions (tickets open on the new cores too), one makes a
    // full handshake on every connection (and so is shown the certificate of the moment).
    let resuming = pki.client(tls::BOTH);
    let mut full = (*pki.client(tls::BOTH)).clone();
    full.resumption = rustls::client::Resumption::disabled();
    let clients: Vec<_> = [resuming, std::sync::Arc::new(full)]
        .into_iter()
        .map(|config| tls_keep_alive_client(https, config, load.clone()))
        .collect();
    load.wait_for_answers(50, "the TLS clients run before the reload");

    // A new pair from the same CA, in the same files.
    let second = pki.leaf("server", DEFAULT_NAMES);
    write_config(&dir, "/stats-1", "drain_idle_grace_ms = 500");
    signal(&server, libc::SIGHUP);
    let note = reload_note(&server);
    assert!(note.contains("SIGHUP: reloaded"), "{note}");
    assert!(note.contains(&format!("https://{https}")), "{note}");
    wait_for_status(http, "/stats-1", 200);
    // The old cores have stopped accepting once their stats path is gone.
    wait_for_status(http, "/stats-0", 404);
    for _ in 0..5 {
        assert!(
            leaf_of(https, &pki) == second.der.to_vec(),
            "a new connection after the reload was shown the old certificate"
        );
    }
    load.wait_for_answers(100, "the TLS clients run on after the reload");

    // A certificate that is not the key's: not reloaded, the current pair keeps serving.
    let stray = pki.leaf("stray", DEFAULT_NAMES);
    std::fs::copy(&stray.cert, dir.join("server.pem")).unwrap();
    write_config(&dir, "/stats-2", "drain_idle_grace_ms = 500");
    signal(&server, libc::SIGHUP);
    let note = reload_note(&server);
    assert!(note.contains("SIGHUP: not reloaded"), "{note}");
    assert!(note.contains("tls.certificate: "), "{note}");
    assert!(note.contains("server.key does not match"), "{note}");
    assert!(leaf_of(https, &pki) == second.der.to_vec());
    assert_eq!(status_of(http, "/stats-1"), 200);
    assert_eq!(status_of(http, "/stats-2"), 404);
    load.wait_for_answers(50, "the TLS clients run on after the refused reload");

    load.stop();
    let tallies: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    for tally in &tallies {
        assert!(tally.failures.is_empty(), "failures: {:?}", tally.failures);
    }
    let (resuming, full) = (&tallies[0], &tallies[1]);
    // Each reload ends the old cores' keep-alive connections: both clients reconnected.
    assert!(
        resuming.resumed >= 1,
        "the resuming client never resumed: {resuming:?}"
    );
    assert!(full.resumed == 0 && full.leaves.len() >= 2, "{full:?}");
    assert!(full.leaves[0] == first.der);
    assert!(
        full.leaves.contains(&second.der),
        "no reconnection after the reload was shown the new certificate"
    );
    assert!(!full.leaves.contains(&stray.der));
    let last_first = full.leaves.iter().rposition(|l| *l == first.der).unwrap();
    let first_second = full.leaves.iter().position(|l| *l == second.der).unwrap();
    assert!(last_first < first_second, "the old certificate came back");
    eprintln!(
        "{} TLS requests on {} connections ({} resumed) through two reloads, none lost",
        resuming.ok + full.ok,
        resuming.leaves.len() + full.leaves.len() + resuming.resumed as usize,
        resuming.resumed
    );
    server.stop_with(libc::SIGTERM);
    // The refused reload said so in one line, and nothing else did.
    let rest = server.stderr.rest();
    assert!(
        !rest
            .iter()
            .any(|line| line.contains("tls.") || line.contains("certificate")),
        "{rest:?}"
    );
}

/// The PID a PID file names, once it names one.
fn pid_in(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Ends (SIGKILL) the process a PID file names when dropped: the binary an upgrade starts
/// is not this test's child, and a failing test must not leave it serving.
struct KillNamedOnDrop(std::path::PathBuf);

impl Drop for KillNamedOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = pid_in(&self.0) {
            // SAFETY: kill(2); the process may be gone already.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[test]
fn sigusr2_upgrade_hands_over_the_tls_listener_and_the_ticket_keys() {
    let pki = Pki::new("upgrade");
    let dir = pki.dir.0.clone();
    let leaf = pki.leaf("server", DEFAULT_NAMES);
    let pid_file = dir.join("percore.pid");
    let extra = format!(
        "drain_idle_grace_ms = 500\npid_file = {:?}",
        pid_file.display().to_string()
    );
    let config = write_config(&dir, "/stats", &extra);
    let mut server = Percore::start(&["--config", &config]);
    let _kill = KillNamedOnDrop(pid_file.clone());
    let old = server.child.id() as i32;
    let https = https_addr(&server);
    common::wait_until("the PID file", Duration::from_secs(20), || {
        pid_in(&pid_file) == Some(old)
    });

    // A session made with the old process, to be resumed by the new one.
    let resuming = pki.client(TLS13);
    let mut client = TlsClient::connect(https, "localhost", &resuming);
    assert_eq!(client.get("/echo?name=before").text(), "Hi, before!");
    assert!(!client.resumed());
    drop(client);

    let load = Load::new();
    let _stop = StopOnDrop(load.clone());
    let mut full = (*pki.client(tls::BOTH)).clone();
    full.resumption = rustls::client::Resumption::disabled();
    let clients: Vec<_> = [pki.client(tls::BOTH), Arc::new(full)]
        .into_iter()
        .map(|config| tls_keep_alive_client(https, config, load.clone()))
        .collect();
    load.wait_for_answers(50, "the TLS clients run before the upgrade");

    signal(&server, libc::SIGUSR2);
    common::wait_until("the new process's PID", Duration::from_secs(20), || {
        pid_in(&pid_file).is_some_and(|pid| pid != old)
    });
    let new = pid_in(&pid_file).unwrap();
    // The old process drains and exits; from then on only the new one accepts.
    let status = wait_child(&mut server.child, EXIT, "the old process's exit");
    assert!(status.success(), "the old process exited with {status}");
    load.wait_for_answers(100, "the TLS clients run on after the upgrade");

    let mut again = TlsClient::connect(https, "localhost", &resuming);
    assert!(
        again.resumed(),
        "a ticket of the old process did not resume on the new one"
    );
    assert_eq!(again.get("/echo?name=after").text(), "Hi, after!");
    let mut fresh = TlsClient::connect(https, "localhost", &pki.client(TLS13));
    assert!(
        fresh.peer_leaf() == leaf.der,
        "the new process's certificate"
    );
    assert_eq!(fresh.get("/echo?name=fresh").text(), "Hi, fresh!");

    load.stop();
    for client in clients {
        let tally = client.join().unwrap();
        assert!(tally.failures.is_empty(), "failures: {:?}", tally.failures);
        assert!(tally.ok > 0);
    }
    // SAFETY: kill(2) on the process the upgrade started.
    unsafe { libc::kill(new, libc::SIGTERM) };
    common::wait_until("the new process's exit", EXIT, || {
        std::fs::metadata(format!("/proc/{new}")).is_err()
            || std::fs::read_to_string(format!("/proc/{new}/stat"))
                .is_ok_and(|stat| stat.contains(") Z "))
    });
}

#[test]
fn sigterm_drains_tls_clients_with_close_notify() {
    let pki = Pki::new("drain");
    let dir = pki.dir.0.clone();
    pki.leaf("server", DEFAULT_NAMES);
    // A static file large enough to be on its way when the drain begins.
    let big: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::create_dir_all(dir.join("root")).unwrap();
    std::fs::write(dir.join("root/big.bin"), &big).unwrap();
    let config = write_config(&dir, "/stats", "drain_idle_grace_ms = 3000");
    let root = dir.join("root");
    let mut server = Percore::start(&["--config", &config, "--root", root.to_str().unwrap()]);
    let http: SocketAddr = server.addr.parse().unwrap();
    let https = https_addr(&server);
    let client = pki.client(tls::BOTH);
    let connect = || TlsClient::connect(https, "localhost", &client);
    let (mut talker, mut silent, mut partial, mut downloading) =
        (connect(), connect(), connect(), connect());
    for c in [&mut talker, &mut silent, &mut partial] {
        assert_eq!(c.get("/echo?name=before").text(), "Hi, before!");
    }
    // Half a request head, read by the server before the drain.
    partial.send("GET /echo?name=partial HTTP/1.1\r\nHo");
    wait_until_read_by_server(&partial.tls.sock);
    // A 4 MB response asked for, not read yet: it cannot all be sent before the drain.
    downloading.send("GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n");

    let sent = Instant::now();
    signal(&server, libc::SIGTERM);
    server
        .stderr
        .find("the drain's note", |l| l.contains("SIGTERM, draining"));
    wait_until_refused(https);
    wait_until_refused(http);

    let big_response = downloading.response();
    assert_eq!(big_response.status, 200);
    assert!(
        big_response.body == big,
        "the file in flight came back changed"
    );
    partial.send("st: localhost\r\n\r\n");
    let last = partial.response();
    assert_eq!(last.text(), "Hi, partial!");
    assert_eq!(last.header("connection"), Some("close"));
    partial
        .clean_close()
        .expect("close_notify after the last response");
    let last = talker.get("/echo?name=during");
    assert_eq!(last.text(), "Hi, during!");
    assert_eq!(last.header("connection"), Some("close"));
    talker
        .clean_close()
        .expect("close_notify after the last response");
    silent
        .clean_close()
        .expect("the silent connection ends with close_notify");
    downloading
        .clean_close()
        .expect("the download's connection ends with close_notify");
    let status = wait_child(&mut server.child, EXIT, "percore's exit after the drain");
    assert!(status.success(), "percore exited with {status}");
    eprintln!("drained in {:?}", sent.elapsed());
}

/// Runs the binary to its end with `args`: its status and stderr.
fn run_percore(args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let output = output_within(
        Command::new(env!("CARGO_BIN_EXE_percore")).args(args),
        Duration::from_secs(30),
    );
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_key_that_is_missing_or_not_the_certificates_stops_the_start_in_one_line() {
    let pki = Pki::new("config-errors");
    let good = pki.leaf("server", DEFAULT_NAMES);
    let other = pki.leaf("other", &["other.test"]);
    let missing = pki.dir.0.join("missing.key");
    let cert = good.cert.to_str().unwrap();
    for (key, expect) in [
        (
            missing.to_str().unwrap(),
            format!("percore: error: tls.certificate: {}: ", missing.display()),
        ),
        (
            other.key.to_str().unwrap(),
            format!(
                "percore: error: tls.certificate: {} does not match {}",
                other.key.display(),
                good.cert.display()
            ),
        ),
    ] {
        let flags = [
            "--port",
            "0",
            "--tls-port",
            "0",
            "--tls-cert",
            cert,
            "--tls-key",
            key,
        ];
        for check in [false, true] {
            let mut args = flags.to_vec();
            if check {
                args.push("--check");
            }
            let (status, stdout, stderr) = run_percore(&args);
            assert_eq!(status.code(), Some(1), "{args:?}: {stdout}{stderr}");
            assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
            assert!(stderr.starts_with(&expect), "{args:?}: {stderr:?}");
            assert!(!stdout.contains("listening"), "{stdout}");
        }
    }
    // An SNI entry's key that is not its certificate's names its entry.
    let text = "[server]\nport = 0\n[tls]\nport = 0\ncertificate = \"server.pem\"\nprivate_key = \"server.key\"\n\
         [[tls.sni]]\nnames = [\"other.test\"]\ncertificate = \"other.pem\"\nprivate_key = \"server.key\"\n";
    let file = config_file(&pki.dir.0, text);
    let (status, _, stderr) = run_percore(&["--config", file.to_str().unwrap(), "--check"]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(
        stderr.starts_with("percore: error: tls.sni[0]: "),
        "{stderr}"
    );
    assert!(stderr.contains("does not match"), "{stderr}");
    // The right pair passes the check.
    let (status, stdout, stderr) = run_percore(&[
        "--port",
        "0",
        "--tls-port",
        "0",
        "--tls-cert",
        cert,
        "--tls-key",
        good.key.to_str().unwrap(),
        "--check",
    ]);
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout, "configuration ok\n");
}

#[test]
fn cleartext_off_listens_on_the_tls_port_only() {
    let pki = Pki::new("off");
    let leaf = pki.leaf("server", DEFAULT_NAMES);
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let text = format!(
        "[server]\nport = {port}\ncores = [0]\n[report]\ninterval_ms = 0\n\
         [tls]\nport = 0\ncleartext = \"off\"\ncertificate = \"server.pem\"\nprivate_key = \"server.key\"\n"
    );
    let file = config_file(&pki.dir.0, &text);
    let file = file.to_str().unwrap();
    let (status, stdout, stderr) = run_percore(&["--config", file, "--check"]);
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout, "configuration ok\n");

    let mut server = Percore::start(&["--config", file]);
    assert!(
        server.addr.is_empty(),
        "a cleartext address: {}",
        server.banner
    );
    assert!(!server.banner.contains("http://"), "{}", server.banner);
    let https = https_addr(&server);
    let refused = TcpStream::connect(("127.0.0.1", port));
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused),
        "server.port {port} accepts: {refused:?}"
    );
    let mut client = TlsClient::connect(https, "localhost", &pki.client(TLS13));
    assert!(client.peer_leaf() == leaf.der);
    assert_eq!(client.get("/echo?name=off").text(), "Hi, off!");
    // The statistics are served over TLS.
    let stats = client.get("/stats");
    let stats: serde_json::Value = serde_json::from_slice(&stats.body).unwrap();
    assert!(tls::total(&stats, "handshakes") <= 1, "{stats}");
    drop(client);
    server.stop_with(libc::SIGTERM);
}

#[test]
fn the_tls_flags_turn_tls_on() {
    let pki = Pki::new("flags");
    let leaf = pki.leaf("server", DEFAULT_NAMES);
    let mut server = Percore::start(&[
        "--port",
        "0",
        "--workers",
        "1",
        "--tls-port",
        "0",
        "--tls-cert",
        leaf.cert.to_str().unwrap(),
        "--tls-key",
        leaf.key.to_str().unwrap(),
    ]);
    assert!(
        server.banner.contains(" and https://127.0.0.1:"),
        "{}",
        server.banner
    );
    let https = https_addr(&server);
    let mut client = TlsClient::connect(https, "localhost", &pki.client(tls::BOTH));
    assert_eq!(client.get("/echo?name=flags").text(), "Hi, flags!");
    drop(client);
    server.stop_with(libc::SIGTERM);
}

/// A handshake under way when the drain begins is not cut short: it completes, and its
/// first request is answered (the last, with `Connection: close`), then close_notify.
#[test]
fn a_handshake_under_way_when_the_drain_begins_completes_and_is_answered() {
    let mut server = tls::TlsServer::start("drain-handshake", |config| {
        config.server.drain_idle_grace_ms = 5000;
    });
    let https = server.https;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(server.pki.client(TLS13), name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    let mut stream = tls::tcp(https);
    let half = hello.len() / 2;
    stream.write_all(&hello[..half]).unwrap();
    wait_until_read_by_server(&stream);

    let stopping = std::thread::spawn({
        let inner = server.server.take().unwrap();
        move || inner.shutdown()
    });
    wait_until_refused(https);
    stream.write_all(&hello[half..]).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, stream);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .expect("the handshake completes during the drain");
    }
    let mut client = TlsClient::from_stream(tls);
    let response = client.get("/echo?name=late");
    assert_eq!(response.text(), "Hi, late!");
    assert_eq!(response.header("connection"), Some("close"));
    client
        .clean_close()
        .expect("close_notify after the last response");
    let summary = stopping.join().unwrap();
    assert_eq!(summary.merged_counters().requests(), 1);
}

/// What a TLS keep-alive client saw.
#[derive(Debug, Default)]
pub struct Tally {
    pub ok: u64,
    /// The leaf certificate each full handshake was shown (a resumed one is shown none: the
    /// session's certificate is the one of the handshake that made it).
    pub leaves: Vec<CertificateDer<'static>>,
    /// Connections that resumed a session.
    pub resumed: u64,
    pub failures: Vec<String>,
}

/// A TLS keep-alive client: request after request on one connection until a response says
/// `Connection: close` (then the close must be clean, close_notify first) or the server
/// closes an idle connection cleanly; then a new connection. Every request sent must be
/// answered in full. Runs until `load` says stop.
pub fn tls_keep_alive_client(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    load: Arc<Load>,
) -> std::thread::JoinHandle<Tally> {
    std::thread::spawn(move || {
        let mut tally = Tally::default();
        let mut n = 0u64;
        'connections: while !load.stopping() {
            let mut client = match TlsClient::try_connect(addr, "localhost", &config) {
                Ok(client) => client,
                Err(e) => {
                    tally.failures.push(format!("connection: {e}"));
                    continue;
                }
            };
            match client.resumed() {
                true => tally.resumed += 1,
                false => tally.leaves.push(client.peer_leaf()),
            }
            while !load.stopping() {
                n += 1;
                let request = format!("GET /echo?name=k{n} HTTP/1.1\r\nHost: localhost\r\n\r\n");
                if let Err(e) = client.try_send(request) {
                    tally.failures.push(format!("request k{n}: {e}"));
                    continue 'connections;
                }
                match client.try_response() {
                    Ok(response)
                        if response.status == 200
                            && response.body == format!("Hi, k{n}!").as_bytes() =>
                    {
                        tally.ok += 1;
                        load.answer();
                        if response.header("connection") == Some("close") {
                            if let Err(e) = client.clean_close() {
                                tally.failures.push(format!("after k{n}: {e}"));
                            }
                            continue 'connections;
                        }
                    }
                    Ok(response) => {
                        tally.failures.push(format!(
                            "k{n}: {} {:?}",
                            response.status,
                            response.text()
                        ));
                    }
                    Err(e) => {
                        tally.failures.push(format!("k{n}: {e}"));
                        continue 'connections;
                    }
                }
            }
        }
        tally
    })
}
