//! Binary upgrade on SIGUSR2, through the real binary: the binary at the original path is
//! started again with the listening sockets, and once it serves (and has rewritten the PID
//! file) the old process drains and exits. Clients that keep going lose nothing.

#[path = "common/clients.rs"]
mod clients;
mod common;

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clients::{keep_alive_client, new_connection_client, one_request, status_of};
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
