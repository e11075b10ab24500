//! Descriptors a child process is to have as 3, 4, …: copies parked above that range in the
//! parent, then moved into place in the child between fork and exec.
//!
//! The child's moves are `dup2(copy, 3 + i)` in order. A copy numbered inside the range
//! `3 .. 3 + n` would be overwritten by an earlier move before its own turn (the successor
//! then gets the wrong socket in that place, or a socket where the TLS tickets' pipe should
//! be), so every copy is made at `3 + n` or above ([`Parked::park`], `F_DUPFD_CLOEXEC` with
//! that minimum): no move can reach a copy, whatever `n`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The first descriptor a child is handed (after stdin, stdout, stderr).
pub(super) const FIRST_FD: RawFd = 3;

/// Close-on-exec copies of the descriptors a child is to have as [`FIRST_FD`], and on.
pub(super) struct Parked {
    copies: Vec<OwnedFd>,
}

/// The moves that put the parked copies in their places, for the child to make.
#[derive(Clone, Debug)]
pub(super) struct Moves {
    sources: Vec<RawFd>,
}

impl Parked {
    /// Copies of `fds`, in order, each numbered above the range they are to take.
    pub(super) fn park(fds: &[RawFd]) -> io::Result<Parked> {
        let end = RawFd::try_from(fds.len())
            .ok()
            .and_then(|n| FIRST_FD.checked_add(n))
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EMFILE))?;
        let copies = fds
            .iter()
            .map(|&fd| dup_at_least(fd, end))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Parked { copies })
    }

    /// The child's moves (the copies must stay open until the child has made them: keep
    /// `self` until the child has started).
    pub(super) fn moves(&self) -> Moves {
        Moves {
            sources: self.copies.iter().map(AsRawFd::as_raw_fd).collect(),
        }
    }
}

impl Moves {
    /// Puts each copy in its place: the `i`th at `FIRST_FD + i`, open across `exec` (`dup2`
    /// clears close-on-exec). Only `dup2`, which is async-signal-safe, and no allocation.
    ///
    /// # Safety
    ///
    /// Call it only in a child between `fork` and `exec`, while the parent still holds the
    /// [`Parked`] copies: it closes whatever descriptors 3 and on were, which only a process
    /// about to become another program may do to descriptors it did not open for this.
    pub(super) unsafe fn apply(&self) -> io::Result<()> {
        for (i, &source) in self.sources.iter().enumerate() {
            if libc::dup2(source, FIRST_FD + i as RawFd) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// A close-on-exec duplicate of `fd` numbered at least `at_least`.
fn dup_at_least(fd: RawFd, at_least: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: fcntl duplicating a descriptor this process owns.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, at_least) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    /// What identifies an open file: its device and inode.
    fn identity(fd: RawFd) -> Option<(u64, u64)> {
        // SAFETY: fstat into a local; zeroes are a valid `stat`.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above; fstat is async-signal-safe (the child calls this too).
        if unsafe { libc::fstat(fd, &mut stat) } < 0 {
            return None;
        }
        Some((stat.st_dev as u64, stat.st_ino as u64))
    }

    /// In the forked child: makes the moves, then returns 0 if every place holds what it
    /// should, open across exec, or 1 + the first place that does not. Async-signal-safe
    /// calls only, no allocation, no panic.
    fn child_check(moves: &Moves, expected: &[(u64, u64)]) -> u32 {
        // SAFETY: called in a forked child that exits right after.
        if unsafe { moves.apply() }.is_err() {
            return u32::MAX;
        }
        for (i, &want) in expected.iter().enumerate() {
            let fd = FIRST_FD + i as RawFd;
            // SAFETY: reading a descriptor's flags.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            if identity(fd) != Some(want) || flags < 0 || flags & libc::FD_CLOEXEC != 0 {
                return i as u32 + 1;
            }
        }
        0
    }

    fn pipe() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills the two descriptors on success.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: two fresh descriptors.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    /// Issue 25: copies were parked at the lowest free descriptors from 100 on, the ticket
    /// pipe's first, while 96 sockets or more took places up to 100 and beyond, so a
    /// socket's move overwrote the pipe's copy before its own move. Here 200 sockets, then a
    /// pipe's write end and another's read end, as an upgrade hands them over, all held from
    /// 300 on so that the places and the descriptors around 100 are free, as a process's low
    /// descriptors are once it has closed connections there. The moves are made in a forked
    /// child, which checks each place and reports through a pipe; every copy must also have
    /// been parked above the places, whatever order the moves take.
    #[test]
    fn descriptors_past_the_hundredth_reach_their_places_in_the_child() {
        let high = |fd: &dyn AsRawFd| dup_at_least(fd.as_raw_fd(), 300).unwrap();
        let sockets: Vec<OwnedFd> = (0..100)
            .flat_map(|_| {
                let (a, b) = UnixStream::pair().unwrap();
                [high(&a), high(&b)]
            })
            .collect();
        let (ready_read, ready_write) = pipe();
        let (keys_read, keys_write) = pipe();
        let (ready_write, keys_read) = (high(&ready_write), high(&keys_read));
        let mut fds: Vec<RawFd> = sockets.iter().map(AsRawFd::as_raw_fd).collect();
        fds.push(ready_write.as_raw_fd());
        fds.push(keys_read.as_raw_fd());
        let expected: Vec<(u64, u64)> = fds.iter().map(|&fd| identity(fd).unwrap()).collect();
        let parked = Parked::park(&fds).unwrap();
        let moves = parked.moves();
        let (report_read, report_write) = pipe();
        // Above the places too: the moves would overwrite a lower one.
        let report_write =
            dup_at_least(report_write.as_raw_fd(), FIRST_FD + fds.len() as RawFd).unwrap();
        // SAFETY: the child makes async-signal-safe calls only, then _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            let code = child_check(&moves, &expected).to_ne_bytes();
            // SAFETY: a write of four bytes from a local, then the child ends.
            unsafe {
                libc::write(report_write.as_raw_fd(), code.as_ptr().cast(), code.len());
                libc::_exit(0);
            }
        }
        drop(report_write);
        let mut poll = libc::pollfd {
            fd: report_read.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd, valid for the call; the deadline is 10 s.
        let ready = unsafe { libc::poll(&mut poll, 1, 10_000) };
        let mut code = [0u8; 4];
        // SAFETY: a read of at most four bytes into a local.
        let read = if ready == 1 {
            unsafe { libc::read(report_read.as_raw_fd(), code.as_mut_ptr().cast(), 4) }
        } else {
            // SAFETY: the child this test forked, which did not answer in time.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            -1
        };
        let mut status = 0;
        // SAFETY: reaping the child this test forked (it has exited or was killed).
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(read, 4, "the child reported within 10 s");
        let code = u32::from_ne_bytes(code);
        assert_eq!(
            code,
            0,
            "place {} does not hold its descriptor",
            code.wrapping_sub(1)
        );
        // Where the copies were parked: above every place.
        let end = FIRST_FD + fds.len() as RawFd;
        assert!(moves.sources.iter().all(|&fd| fd >= end));
        drop((
            parked,
            sockets,
            ready_read,
            ready_write,
            keys_read,
            keys_write,
        ));
    }
}
