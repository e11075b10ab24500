//! Reading a static file's bytes for the driver: from the page cache at once when they are
//! there, through glommio (io_uring reads, buffered or direct) when they would wait.
//!
//! The driver never waits: it copies what `preadv2(RWF_NOWAIT)` returns and hands whatever
//! would block to a glommio task ([`read_slow`]), which reports back through the core's
//! mailbox. A ring read returns a buffer of its own, freshly allocated per read; at tens of
//! concurrent transfers their page faults cost more than a copy into a pooled buffer, which
//! is why the page-cache path comes first.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use glommio::io::{BufferedFile, DmaFile};

/// A file opened for glommio: buffered reads through the page cache, or direct I/O.
pub enum FileSource {
    /// Page-cache reads through the ring.
    Buffered(BufferedFile),
    /// `O_DIRECT` reads, for files at least `static.directio_bytes` long.
    Direct(DmaFile),
}

impl FileSource {
    /// Takes over `fd`. Direct I/O opens the same file again through `/proc/self/fd` (glommio
    /// sets it up itself); where that fails, the file is read buffered.
    pub async fn open(fd: OwnedFd, direct: bool) -> FileSource {
        if direct {
            let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
            if let Ok(file) = DmaFile::open(&path).await {
                return FileSource::Direct(file);
            }
        }
        // SAFETY: the descriptor is ours and handed over whole.
        FileSource::Buffered(unsafe { BufferedFile::from_raw_fd(fd.into_raw_fd()) })
    }

    /// Appends `file[pos..pos + len]` to `out` through the ring; end of file before that is
    /// an error, since the response head already promised the bytes.
    pub async fn read_into(&self, pos: u64, len: usize, out: &mut Vec<u8>) -> io::Result<()> {
        out.reserve(len);
        let mut done = 0;
        while done < len {
            if let FileSource::Buffered(file) = self {
                done += read_cached(file.as_raw_fd(), pos + done as u64, len - done, out)?;
                if done == len {
                    break;
                }
            }
            let at = pos + done as u64;
            let data = match self {
                FileSource::Buffered(file) => file.read_at(at, len - done).await,
                FileSource::Direct(file) => file.read_at(at, len - done).await,
            }
            .map_err(io::Error::from)?;
            if data.is_empty() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let take = data.len().min(len - done);
            out.extend_from_slice(&data[..take]);
            done += take;
        }
        Ok(())
    }
}

/// Appends to `out` as much of `file[pos..pos + len]` as the page cache holds, from `pos` on;
/// returns how many bytes (fewer than `len` when the next would wait for the disk). End of
/// file before `len` is an error, since the response head already promised the bytes.
pub fn read_cached(fd: RawFd, pos: u64, len: usize, out: &mut Vec<u8>) -> io::Result<usize> {
    let mut done = 0;
    while done < len {
        match read_nowait(fd, pos + done as u64, len - done, out) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// `preadv2(fd, …, pos, RWF_NOWAIT)` into the spare capacity of `out` (at most `len` bytes):
/// `WouldBlock` when the bytes are not all in the page cache.
fn read_nowait(fd: RawFd, pos: u64, len: usize, out: &mut Vec<u8>) -> io::Result<usize> {
    out.reserve(len);
    let spare = &mut out.spare_capacity_mut()[..len];
    let iov = libc::iovec {
        iov_base: spare.as_mut_ptr().cast(),
        iov_len: spare.len(),
    };
    loop {
        // SAFETY: `iov` describes writable memory owned by `out`; the kernel writes at most
        // its length, and only the bytes it reports are marked initialised below.
        let n = unsafe { libc::preadv2(fd, &iov, 1, pos as libc::off_t, libc::RWF_NOWAIT) };
        if n >= 0 {
            let n = n as usize;
            // SAFETY: the kernel initialised these `n` bytes of spare capacity.
            unsafe { out.set_len(out.len() + n) };
            return Ok(n);
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EINTR) => continue,
            // Not every file system takes RWF_NOWAIT: the ring reads those.
            Some(libc::EOPNOTSUPP) => return Err(io::ErrorKind::WouldBlock.into()),
            _ => return Err(error),
        }
    }
}

/// Reads `len` bytes at `pos` into `buf` through glommio, opening the file for it first when
/// `source` is `None` (`fd` is then a duplicate the source takes over). Returns the source
/// for the transfer's next reads, with the buffer and the outcome.
pub async fn read_slow(
    source: Option<std::rc::Rc<FileSource>>,
    fd: Option<OwnedFd>,
    direct: bool,
    pos: u64,
    len: usize,
    mut buf: Vec<u8>,
) -> (Option<std::rc::Rc<FileSource>>, Vec<u8>, io::Result<()>) {
    let source = match (source, fd) {
        (Some(source), _) => source,
        (None, Some(fd)) => std::rc::Rc::new(FileSource::open(fd, direct).await),
        (None, None) => return (None, buf, Err(io::ErrorKind::BrokenPipe.into())),
    };
    let result = source.read_into(pos, len, &mut buf).await;
    (Some(source), buf, result)
}
