//! Binary upgrade on SIGUSR2, through the real binary: the binary at the original path is
//! started again with the listening sockets, and once it serves (and has rewritten the PID
//! file) the old process drains and exits. Clients that keep going lose nothing.

mod common;

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::Percore;

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("percore-upgrade-{}-{name}", std::process::id()))
}

fn write_config(path: &Path, pid_file: &Path) {
    write_config_with_stats(path, pid_file, "/stats");
}

fn write_config_with_stats(path: &Path, pid_file: &Path, stats: &str) {
    let text = format!(
        "[server]\nport = 0\ncores = [0]\ndrain_idle_grace_ms = 500\npid_file = {:?}\n\n\
         [report]\ninterval_ms = 0\nstats_path = {stats:?}\n",
        pid_file.display().to_string()
    );
    std::fs::write(path, text).unwrap();
}

/// The status of `GET path` on a new connection.
fn status_of(addr: SocketAddr, path: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply[9..12].parse().unwrap()
}

/// The PID the file names, once it names one.
fn pid_in(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether `pid` is gone (or a zombie nobody reaps, which serves nothing either).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

fn signal(pid: i32, signal: i32) {
    // SAFETY: kill(2) on a process this test started (directly or through an upgrade).
    unsafe { libc::kill(pid, signal) };
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    failures: Vec<String>,
}

/// One request on a new connection, read to the server's close.
fn one_request(addr: SocketAddr, n: u64) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let request = format!("GET /echo?name=c{n} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut reply = Vec::new();
    stream
        .read_to_end(&mut reply)
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&reply);
    if text.starts_with("HTTP/1.1 200 OK\r\n") && text.ends_with(&format!("Hi, c{n}!")) {
        Ok(())
    } else {
        Err(format!("incomplete or wrong: {text:?}"))
    }
}

/// A client opening a connection per request, until `stop`.
fn new_connection_client(addr: SocketAddr, stop: Arc<AtomicBool>) -> JoinHandle<Tally> {
    std::thread::spawn(move || {
        let mut tally = Tally::default();
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            match one_request(addr, n) {
                Ok(()) => tally.ok += 1,
                Err(e) => tally.failures.push(e),
            }
        }
        tally
    })
}

/// A keep-alive client: request after request, a new connection when a response says
/// `Connection: close`, until `stop`.
fn keep_alive_client(addr: SocketAddr, stop: Arc<AtomicBool>) -> JoinHandle<Tally> {
    std::thread::spawn(move || {
        let mut tally = Tally::default();
        let mut n = 0u64;
        'connections: while !stop.load(Ordering::Relaxed) {
            let mut stream = match TcpStream::connect(addr) {
                Ok(stream) => stream,
                Err(e) => {
                    tally.failures.push(format!("connect: {e}"));
                    continue;
                }
            };
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let request = format!("GET /echo?name=k{n} HTTP/1.1\r\nHost: t\r\n\r\n");
                if let Err(e) = stream.write_all(request.as_bytes()) {
                    tally.failures.push(format!("write: {e}"));
                    continue 'connections;
                }
                let mut status = String::new();
                let mut close = false;
                let mut length = None;
                loop {
                    let mut line = String::new();
                    match reader.read_line(&mut line) {
                        Ok(0) => {
                            tally.failures.push(format!("closed before response {n}"));
                            continue 'connections;
                        }
                        Err(e) => {
                            tally.failures.push(format!("read: {e}"));
                            continue 'connections;
                        }
                        Ok(_) => {}
                    }
                    if status.is_empty() {
                        status = line.trim_end().to_string();
                    } else if line == "\r\n" {
                        break;
                    } else if let Some(v) = line.strip_prefix("Content-Length: ") {
                        length = v.trim().parse::<usize>().ok();
                    } else if line.eq_ignore_ascii_case("connection: close\r\n") {
                        close = true;
                    }
                }
                let mut body = vec![0u8; length.unwrap_or(0)];
                if let Err(e) = reader.read_exact(&mut body) {
                    tally.failures.push(format!("body: {e}"));
                    continue 'connections;
                }
                if status == "HTTP/1.1 200 OK" && body == format!("Hi, k{n}!").as_bytes() {
                    tally.ok += 1;
                } else {
                    tally.failures.push(format!("{status}: {body:?}"));
                }
                if close {
                    continue 'connections;
                }
            }
        }
        tally
    })
}

/// Three reloads, then three upgrades, in a row under a keep-alive client and a client
/// opening a connection per request: every response complete, none failed or reset, each
/// reload's file in force, each old process gone.
#[test]
fn three_reloads_and_three_upgrades_under_load_lose_no_request() {
    let config = temp("load.toml");
    let pid_file = temp("load.pid");
    write_config(&config, &pid_file);
    let mut first = Percore::spawn(&["--config", config.to_str().unwrap()]);
    let addr: SocketAddr = first.addr.parse().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let clients = [
        keep_alive_client(addr, stop.clone()),
        new_connection_client(addr, stop.clone()),
    ];
    let mut pid = first.child.id() as i32;
    assert_eq!(pid_in(&pid_file), Some(pid));
    for round in 1..=3 {
        std::thread::sleep(Duration::from_millis(200));
        let stats = format!("/stats-{round}");
        write_config_with_stats(&config, &pid_file, &stats);
        signal(pid, libc::SIGHUP);
        wait_until("the reloaded file is in force", || {
            status_of(addr, &stats) == 200
        });
    }
    for round in 1..=3 {
        std::thread::sleep(Duration::from_millis(200));
        signal(pid, libc::SIGUSR2);
        let old = pid;
        wait_until("the PID file names the new process", || {
            pid_in(&pid_file).is_some_and(|p| p != old)
        });
        pid = pid_in(&pid_file).unwrap();
        if round == 1 {
            // The first one is this test's child: reap it.
            let status = first.child.wait().unwrap();
            assert!(status.success(), "{status}");
        }
        wait_until("the old process is gone", || gone(old));
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for client in clients {
        let tally = client.join().unwrap();
        assert!(tally.failures.is_empty(), "failures: {:?}", tally.failures);
        assert!(tally.ok > 0);
        total += tally.ok;
    }
    // The upgraded processes read the last file.
    assert_eq!(status_of(addr, "/stats-3"), 200);
    eprintln!("{total} requests through 3 reloads and 3 binary upgrades, none lost");
    signal(pid, libc::SIGTERM);
    wait_until("the last process is gone", || gone(pid));
    assert!(!pid_file.exists(), "the last process left its PID file");
    let _ = std::fs::remove_file(&config);
}

/// A new process that cannot start leaves the old one serving, with one line saying why.
#[test]
fn a_failed_upgrade_keeps_the_old_process_serving() {
    let config = temp("fail.toml");
    let pid_file = temp("fail.pid");
    write_config(&config, &pid_file);
    let mut server = Percore::spawn(&["--config", config.to_str().unwrap()]);
    let addr: SocketAddr = server.addr.parse().unwrap();
    // The new process will read this and refuse to start.
    std::fs::write(&config, "[server]\nportt = 1\n").unwrap();
    signal(server.child.id() as i32, libc::SIGUSR2);
    let mut note = String::new();
    loop {
        note.clear();
        server.stderr.read_line(&mut note).unwrap();
        assert!(!note.is_empty(), "the server's stderr ended");
        if note.contains("SIGUSR2") {
            break;
        }
    }
    assert!(note.contains("not upgraded"), "{note}");
    assert_eq!(pid_in(&pid_file), Some(server.child.id() as i32));
    one_request(addr, 1).unwrap();
    server.stop_with(libc::SIGTERM);
    let _ = std::fs::remove_file(&config);
}
