//! Binary upgrade on SIGUSR2, through the real binary: the binary at the original path is
//! started again with the listening sockets, and once it serves (and has rewritten the PID
//! file) the old process drains and exits. Clients that keep going lose nothing. TLS ticket
//! keys handed over that are malformed or from a later period stop the new binary's start.

#[path = "common/clients.rs"]
mod clients;
mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clients::{keep_alive_client, new_connection_client, one_request, status_of, Load, StopOnDrop};
use common::{output_within, Percore, EXIT_WAIT};

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

/// Runs the binary as a predecessor would start it, with `bytes` in the pipe of the TLS
/// ticket keys (`PERCORE_TICKET_FD`, descriptor 3) and no sockets: its status and stderr.
fn start_with_handed_keys(bytes: &[u8]) -> (std::process::ExitStatus, String) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two descriptors on success.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: two fresh descriptors, owned from here on.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    std::fs::File::from(write).write_all(bytes).unwrap();
    // Above 3, so that the child's dup2 onto 3 is a real move (which clears close-on-exec).
    // SAFETY: fcntl duplicating a descriptor this test owns.
    let high = unsafe { libc::fcntl(read.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    assert!(high >= 10);
    // SAFETY: a fresh descriptor.
    let high = unsafe { OwnedFd::from_raw_fd(high) };
    drop(read);
    let source = high.as_raw_fd();
    let mut command = Command::new(env!("CARGO_BIN_EXE_percore"));
    command
        .args(["--port", "0", "--cores", "0"])
        .env("PERCORE_TICKET_FD", "3");
    // SAFETY: only dup2 (async-signal-safe) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(source, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let output = output_within(&mut command, Duration::from_secs(30));
    drop(high);
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Ticket keys handed over in a form no percore writes, or for a period after the clock's
/// (the clock went back between the two processes), stop the start with one line.
#[test]
fn handed_ticket_keys_malformed_or_from_a_later_period_stop_the_start_in_one_line() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut later = b"PTK1".to_vec();
    later.extend_from_slice(&3600u32.to_be_bytes());
    later.extend_from_slice(&(now as u32 / 3600 + 2).to_be_bytes());
    later.extend_from_slice(&[7; 64]);
    for (bytes, expect) in [
        (
            &b"not keys"[..],
            "percore: error: the TLS ticket keys handed over are malformed (8 bytes)",
        ),
        (
            &later[..],
            "percore: error: the TLS ticket keys handed over are for period",
        ),
    ] {
        let (status, stderr) = start_with_handed_keys(bytes);
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
        assert!(stderr.starts_with(expect), "{stderr:?}");
    }
}
