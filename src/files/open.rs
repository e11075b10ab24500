//! Opening files beneath the root: `openat2` with `RESOLVE_BENEATH`, so that the kernel
//! itself refuses anything, symlinks included, that resolves outside the root.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Opens the root directory; checks that this kernel can open files beneath it.
pub(crate) fn open_root(root: &Path) -> io::Result<OwnedFd> {
    let path = std::ffi::CString::new(root.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `path` is NUL-terminated; the result is checked before use.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let root = unsafe { OwnedFd::from_raw_fd(fd) };
    // openat2 arrived in Linux 5.6; without it confinement to the root cannot be had.
    open_beneath(&root, b".\0", libc::O_PATH).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("openat2 with RESOLVE_BENEATH is needed (Linux 5.6 or later): {e}"),
        )
    })?;
    Ok(root)
}

/// The kernel's `struct open_how` (libc marks its own non-exhaustive).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `openat2(root, path, flags)` confined beneath `root`; `path` is NUL-terminated.
pub(crate) fn open_beneath(root: &OwnedFd, path: &[u8], flags: libc::c_int) -> io::Result<OwnedFd> {
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: `path` is NUL-terminated and `how` is a valid open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

pub(crate) fn fstat(fd: &OwnedFd) -> io::Result<libc::stat> {
    // SAFETY: an all-zero stat is valid; the kernel fills it.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `stat` is writable for its size.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat)
}

/// `stat` of a NUL-terminated path relative to `root`. A cache hit needs the file it names
/// to be the very inode once opened beneath the root, so following links here cannot reveal
/// anything outside it.
pub(crate) fn fstat_at(root: &OwnedFd, path: &[u8]) -> io::Result<libc::stat> {
    // SAFETY: as in `fstat`.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `stat` is writable for its size.
    if unsafe { libc::fstatat(root.as_raw_fd(), path.as_ptr().cast(), &mut stat, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat)
}

/// Takes back the `O_NONBLOCK` a file was opened with (only for the open: a FIFO would
/// block it). Left on, it would make ring reads fail with EAGAIN on file systems without
/// non-blocking reads.
pub(crate) fn reset_flags(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, libc::O_RDONLY) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
