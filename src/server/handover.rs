//! Listening sockets that outlive a process: taken from systemd (socket activation) or from
//! the percore this one replaces (binary upgrade, SIGUSR2), and handed to a successor.
//!
//! Both use the same convention: the sockets are descriptors 3, 4, … of the new process and
//! an environment variable says how many (`LISTEN_FDS`, with `LISTEN_PID` naming the process
//! they are for, as systemd sets them; `PERCORE_LISTEN_FDS` from a percore predecessor). A
//! successor also gets the write end of a pipe (`PERCORE_READY_FD`): it writes one line once it
//! serves, and only then does its predecessor drain and exit. If the successor fails, the pipe
//! closes without that line and the predecessor keeps serving.
//!
//! With TLS, the last `PERCORE_TLS_FDS` of the sockets are the TLS listeners. The read end of
//! a pipe (`PERCORE_TICKET_FD`) holds the TLS ticket keys as the predecessor's main thread
//! held them: the current and the previous period's keys and the period's number (see
//! `tls::TicketKeys::handover`), so the successor opens the tickets its predecessor issued
//! and resumption survives the upgrade. The successor moves them on if a period began since;
//! keys of a later period than its clock's, or bytes of no known form, stop its start-up.
//! The descriptors are parked above their places before the child moves them in
//! (`parked`).

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use socket2::Socket;

use zeroize::Zeroizing;

use super::parked::{Parked, FIRST_FD};
use crate::support::stderr::note;
use crate::tls::{TicketKeys, HANDOVER_BYTES};
const LISTEN_FDS: &str = "LISTEN_FDS";
const LISTEN_PID: &str = "LISTEN_PID";
const PERCORE_LISTEN_FDS: &str = "PERCORE_LISTEN_FDS";
const PERCORE_READY_FD: &str = "PERCORE_READY_FD";
const PERCORE_TLS_FDS: &str = "PERCORE_TLS_FDS";
const PERCORE_TICKET_FD: &str = "PERCORE_TICKET_FD";

/// What a process is handed at start: listening sockets (cleartext, then TLS) and the TLS
/// ticket keys.
#[derive(Default)]
pub(crate) struct Handed {
    pub(crate) http: Vec<Socket>,
    pub(crate) https: Vec<Socket>,
    pub(crate) tickets: Option<TicketKeys>,
}

/// Where the listening sockets came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// systemd's socket activation.
    Systemd,
    /// The percore process this one replaces.
    Predecessor,
}

/// Takes the listening sockets passed to this process, if any (and removes the variables, so
/// that they are not passed on by mistake).
pub(crate) fn inherited() -> Result<Handed, String> {
    let tls = take_var(PERCORE_TLS_FDS);
    let tickets = take_var(PERCORE_TICKET_FD)
        .map(|fd| read_tickets(&fd))
        .transpose()?
        .flatten();
    let Some((_, mut http)) = sockets()? else {
        return Ok(Handed {
            tickets,
            ..Handed::default()
        });
    };
    let tls: usize = match tls {
        Some(count) => count
            .parse()
            .ok()
            .filter(|&n| n <= http.len())
            .ok_or_else(|| format!("{count:?} passed TLS sockets is not a number percore takes"))?,
        None => 0,
    };
    let https = http.split_off(http.len() - tls);
    Ok(Handed {
        http,
        https,
        tickets,
    })
}

/// The ticket keys in the pipe whose read end is `fd`, moved on to now; `None` from a
/// percore of the earlier format (said on stderr).
fn read_tickets(fd: &str) -> Result<Option<TicketKeys>, String> {
    let fd: RawFd = fd
        .parse()
        .map_err(|_| format!("{fd:?} is not a descriptor of TLS ticket keys"))?;
    // SAFETY: the pipe's read end, passed to this process for this one read.
    let mut pipe = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    // One byte more than the keys take, to tell too many bytes from enough.
    let mut bytes = Zeroizing::new([0u8; HANDOVER_BYTES + 1]);
    let mut len = 0;
    while len < bytes.len() {
        match pipe.read(&mut bytes[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot read the TLS ticket keys passed on: {e}")),
        }
    }
    let now = crate::support::civil_time::unix_now();
    let tickets = TicketKeys::from_handover(&bytes[..len], now)?;
    if tickets.is_none() {
        note(format_args!(
            "the percore this one replaces passed a TLS ticket secret of an earlier form: \
             the tickets it issued do not resume here"
        ));
    }
    Ok(tickets)
}

/// The listening sockets passed by systemd or a predecessor.
fn sockets() -> Result<Option<(Origin, Vec<Socket>)>, String> {
    let (origin, count) = if let Some(count) = take_var(PERCORE_LISTEN_FDS) {
        (Origin::Predecessor, count)
    } else if let Some(count) = take_var(LISTEN_FDS) {
        let pid = take_var(LISTEN_PID);
        std::env::remove_var("LISTEN_FDNAMES");
        if pid.as_deref() != Some(&std::process::id().to_string()) {
            // Meant for another process (a shell that started us, say).
            return Ok(None);
        }
        (Origin::Systemd, count)
    } else {
        return Ok(None);
    };
    let count: RawFd = count
        .parse()
        .ok()
        .filter(|&n| n > 0 && n < 1024)
        .ok_or_else(|| format!("{count:?} passed sockets is not a number percore takes"))?;
    let mut sockets = Vec::new();
    for fd in FIRST_FD..FIRST_FD + count {
        if !is_listening_socket(fd) {
            return Err(format!(
                "descriptor {fd} passed as a listening socket is not one"
            ));
        }
        // SAFETY: a descriptor handed to this process for it to own, checked above.
        let socket = unsafe { Socket::from_raw_fd(fd) };
        // Ours now: not to leak into anything this process starts.
        let _ = set_cloexec(fd);
        sockets.push(socket);
    }
    Ok(Some((origin, sockets)))
}

fn take_var(name: &str) -> Option<String> {
    let value = std::env::var(name).ok();
    std::env::remove_var(name);
    value
}

fn is_listening_socket(fd: RawFd) -> bool {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: an int-valued option read into a local of the right size.
    let result = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    result == 0 && value != 0
}

fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor this process owns.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Tells the predecessor, if there is one waiting, that this process serves now.
pub(crate) fn announce_ready() {
    let Some(fd) = take_var(PERCORE_READY_FD).and_then(|fd| fd.parse::<RawFd>().ok()) else {
        return;
    };
    // SAFETY: the pipe's write end, passed to this process for this one line.
    let pipe = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut file = std::fs::File::from(pipe);
    let _ = io::Write::write_all(&mut file, b"ready\n");
}

/// The command line this process was started with, to start its successor the same way.
pub(crate) struct Origins {
    exe: PathBuf,
    args: Vec<OsString>,
}

impl Origins {
    /// Recorded at start: the binary's path (a new one may be installed there later) and
    /// the arguments.
    pub(crate) fn record() -> io::Result<Origins> {
        Ok(Origins {
            exe: std::env::current_exe()?,
            args: std::env::args_os().skip(1).collect(),
        })
    }

    /// The binary at the original path. `current_exe` reads `/proc/self/exe`, which names
    /// a replaced file "… (deleted)": the path is what was there.
    fn path(&self) -> PathBuf {
        let text = self.exe.to_string_lossy();
        match text.strip_suffix(" (deleted)") {
            Some(path) => PathBuf::from(path),
            None => self.exe.clone(),
        }
    }

    /// Starts the binary found at the original path with the same arguments, handing it
    /// `sockets` and `tickets` (moved on to now by the caller), and waits (at most `wait`)
    /// for it to say it serves. On success the successor's PID; otherwise why not (and the
    /// successor, if it started, is stopped).
    pub(crate) fn start_successor(
        &self,
        http: Vec<Socket>,
        https: Vec<Socket>,
        tickets: &TicketKeys,
        wait: Duration,
    ) -> Result<u32, String> {
        let tls = https.len();
        let mut sockets = http;
        sockets.extend(https);
        // The keys wait in a pipe (76 bytes fit its buffer) for the successor to read.
        let (tickets_read, tickets_write) =
            pipe().map_err(|e| format!("cannot create a pipe: {e}"))?;
        std::fs::File::from(tickets_write)
            .write_all(&tickets.handover())
            .map_err(|e| format!("cannot pass the TLS ticket keys on: {e}"))?;
        let (read, write) = pipe().map_err(|e| format!("cannot create a pipe: {e}"))?;
        // The successor's descriptors: the sockets, then the ready pipe, then the keys' pipe.
        let mut fds: Vec<RawFd> = sockets.iter().map(AsRawFd::as_raw_fd).collect();
        fds.extend([write.as_raw_fd(), tickets_read.as_raw_fd()]);
        let parked = Parked::park(&fds).map_err(|e| format!("dup: {e}"))?;
        drop((write, tickets_read));
        let count = sockets.len() as RawFd;
        let ready_fd = FIRST_FD + count;
        let tickets_fd = ready_fd + 1;
        let moves = parked.moves();
        let mut command = Command::new(self.path());
        command
            .args(&self.args)
            .env(PERCORE_LISTEN_FDS, count.to_string())
            .env(PERCORE_READY_FD, ready_fd.to_string())
            .env(PERCORE_TLS_FDS, tls.to_string())
            .env(PERCORE_TICKET_FD, tickets_fd.to_string())
            .env_remove(LISTEN_FDS)
            .env_remove(LISTEN_PID);
        // SAFETY: the moves run in the child between fork and exec, while `parked` holds the
        // copies open here; they make only dup2 calls (async-signal-safe).
        unsafe {
            command.pre_exec(move || moves.apply());
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.path().display()))?;
        drop(parked);
        match wait_for_line(read, wait) {
            Ok(()) => Ok(child.id()),
            Err(why) => Err(stop(child, why)),
        }
    }
}

/// Stops a successor that did not come up; returns `why` with how it ended.
fn stop(mut child: Child, why: String) -> String {
    if let Ok(Some(status)) = child.try_wait() {
        return format!("{why} (it exited: {status})");
    }
    let _ = child.kill();
    let _ = child.wait();
    format!("{why} (it was stopped)")
}

/// Waits for the successor's line on the pipe.
fn wait_for_line(read: OwnedFd, wait: Duration) -> Result<(), String> {
    let mut poll = libc::pollfd {
        fd: read.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd, valid for the call.
    let ready = unsafe { libc::poll(&mut poll, 1, wait.as_millis().min(i32::MAX as u128) as i32) };
    if ready <= 0 {
        return Err(format!("the new process did not serve within {wait:?}"));
    }
    let mut line = [0u8; 6];
    let mut file = std::fs::File::from(read);
    match file.read(&mut line) {
        Ok(n) if &line[..n] == b"ready\n" => Ok(()),
        _ => Err("the new process ended before serving".into()),
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two descriptors on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: two fresh descriptors, owned from here on.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
