//! Binary upgrade on SIGUSR2, through the real binary: the binary at the original path is
//! started again with the listening sockets, and once it serves (and has rewritten the PID
//! file) the old process drains and exits. Clients that keep going lose nothing.

#[path = "common/clients.rs"]
mod clients;
mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clients::{keep_alive_client, new_connection_client, one_request, status_of, Load, StopOnDrop};
use common::{Percore, EXIT_WAIT};

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

fn wait_until(what: &str, done: impl FnMut() -> bool) {
    common::wait_until(what, Duration::from_secs(30), done);
}

/// Kills (SIGKILL) whichever process the PID file names when dropped, if it still runs:
/// the processes an upgrade starts are not this test's children, and a failing test must
/// not leave them serving.
struct KillNamedOnDrop<'a>(&'a Path);

impl Drop for KillNamedOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(pid) = pid_in(self.0) {
            if !gone(pid) {
                signal(pid, libc::SIGKILL);
            }
        }
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
    let _kill = KillNamedOnDrop(&pid_file);
    let addr: SocketAddr = first.addr.parse().unwrap();
    let load = Load::new();
    let _stop = StopOnDrop(load.clone());
    let clients = [
        keep_alive_client(addr, load.clone()),
        new_connection_client(addr, load.clone()),
    ];
    let mut pid = first.child.id() as i32;
    assert_eq!(pid_in(&pid_file), Some(pid));
    for round in 1..=3 {
        // The clients are at work on the server of the round before.
        load.wait_for_answers(50, "the clients run before the reload");
        let stats = format!("/stats-{round}");
        write_config_with_stats(&config, &pid_file, &stats);
        signal(pid, libc::SIGHUP);
        wait_until("the reloaded file is in force", || {
            status_of(addr, &stats) == 200
        });
    }
    for round in 1..=3 {
        load.wait_for_answers(50, "the clients run before the upgrade");
        signal(pid, libc::SIGUSR2);
        let old = pid;
        wait_until("the PID file names the new process", || {
            pid_in(&pid_file).is_some_and(|p| p != old)
        });
        pid = pid_in(&pid_file).unwrap();
        if round == 1 {
            // The first one is this test's child: reap it.
            let status =
                common::wait_child(&mut first.child, EXIT_WAIT, "the first process's exit");
            assert!(status.success(), "{status}");
        }
        wait_until("the old process is gone", || gone(old));
    }
    load.wait_for_answers(50, "the clients run on the last process");
    load.stop();
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
    let _kill = KillNamedOnDrop(&pid_file);
    let addr: SocketAddr = server.addr.parse().unwrap();
    // The new process will read this and refuse to start.
    std::fs::write(&config, "[server]\nportt = 1\n").unwrap();
    signal(server.child.id() as i32, libc::SIGUSR2);
    let note = server
        .stderr
        .find("the note on the upgrade", |line| line.contains("SIGUSR2"));
    assert!(note.contains("not upgraded"), "{note}");
    assert_eq!(pid_in(&pid_file), Some(server.child.id() as i32));
    one_request(addr, 1).unwrap();
    server.stop_with(libc::SIGTERM);
    let _ = std::fs::remove_file(&config);
}
