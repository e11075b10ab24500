//! Static files: a root directory served the way nginx serves a `root`.
//!
//! A request path is percent-decoded one segment at a time and refused (400) when a segment
//! is `.` or `..`, or decodes to a `/`, a `\` or a NUL. What is left is opened beneath the
//! root (`open`), so that nothing, symlinks included, reaches outside it: such a path is
//! refused with 403. From the file's metadata (`meta`) the whole response is decided: its
//! validators, the conditional requests and a single byte range (`conditional`, `range`).
//!
//! The body comes from this core's cache of small files (`cache`) when it holds the file
//! unchanged; otherwise [`serve`] returns a [`FileBody`] for the engine to read (`read`: from
//! the page cache, or through glommio) and send, since answering cannot wait. Small files
//! read that way are put in the cache. A cached file is checked with one `stat` per request
//! and read again once changed.
//!
//! This layer is used by the engine (which sends a [`FileBody`]) and by the library (the
//! static route and `Response::file`); it knows neither.

mod cache;
mod conditional;
mod meta;
mod open;
mod range;
pub(crate) mod read;

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;

pub use cache::CacheFill;
use cache::{CachedFile, FileCache, SharedCache};
use conditional::respond;
use meta::{FileId, Meta};
use open::{fstat, fstat_at, open_beneath};

use crate::config::StaticConfig;
use crate::http::request::RawRequest;
use crate::http::response::ResponseWriter;
use crate::http::status::Status;
use crate::support::civil_time::unix_now;
use crate::support::percent::{decode_strict, Plus};

/// One core's view of the static root: the directory, its cache, the settings.
#[derive(Debug)]
pub struct StaticFiles {
    root: OwnedFd,
    /// The mount without its trailing `/` (empty for `/`).
    mount: Box<[u8]>,
    index: Box<[u8]>,
    cache: SharedCache,
    cache_file_max: u64,
    directio: u64,
    /// The decoded path of the request being answered, relative to the root.
    path: Vec<u8>,
}

/// A file body the engine sends after the response head already written.
#[derive(Debug)]
pub struct FileBody {
    /// The open file.
    pub fd: OwnedFd,
    /// First byte to send.
    pub offset: u64,
    /// Bytes to send.
    pub len: u64,
    /// Read with direct I/O (the file is at least `static.directio_bytes`).
    pub direct: bool,
    /// Put the bytes in the core's cache once read (the whole of a small file); boxed, as
    /// every connection's session has room for one `FileBody`.
    pub fill: Option<Box<CacheFill>>,
}

impl FileBody {
    /// Puts the bytes read, the whole file, in the cache the body came from, if it is to be
    /// cached.
    pub fn fill_cache(&mut self, bytes: &[u8]) {
        if let Some(fill) = self.fill.take() {
            fill.fill(bytes);
        }
    }
}

/// Why a path was not served.
enum Refusal {
    /// Not a well-formed path inside the mount (400).
    BadPath,
    /// Nothing there (404).
    Missing,
    /// There, but not to be served: outside the root, unreadable, not a regular file (403).
    Forbidden,
    /// A directory URL without its trailing `/` (301 to the one with it).
    Directory,
    /// The file system failed (500).
    Failed,
}

impl From<io::Error> for Refusal {
    fn from(error: io::Error) -> Refusal {
        match error.raw_os_error() {
            Some(libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG) => Refusal::Missing,
            // EXDEV: the path (a symlink or `..` in one) leads outside the root.
            Some(libc::EXDEV | libc::ELOOP | libc::EACCES | libc::EPERM) => Refusal::Forbidden,
            _ => Refusal::Failed,
        }
    }
}

impl StaticFiles {
    /// Opens the root directory (once per core; the error names what is missing).
    pub fn open_root(root: &Path) -> io::Result<OwnedFd> {
        open::open_root(root)
    }

    /// One core's static files, served from `root` (see [`StaticFiles::open_root`]).
    pub fn new(config: &StaticConfig, root: OwnedFd) -> StaticFiles {
        StaticFiles {
            root,
            mount: config.mount.trim_end_matches('/').as_bytes().into(),
            index: config.index.as_bytes().into(),
            cache: Rc::new(RefCell::new(FileCache::with_capacity(config.cache_bytes))),
            cache_file_max: config.cache_file_max_bytes as u64,
            directio: config.directio_bytes,
            path: Vec::new(),
        }
    }

    /// The part of a request path under the mount (which [`StaticFiles::mounts`] said it is
    /// under), still encoded.
    pub fn under_mount<'p>(&self, path: &'p [u8]) -> &'p [u8] {
        &path[self.mount.len()..]
    }

    /// Decodes `rest`, a path relative to the root (percent-encoded when `encoded`), into
    /// `self.path`. Returns whether it ended with `/`.
    fn decode(&mut self, rest: &[u8], encoded: bool) -> Result<bool, Refusal> {
        self.path.clear();
        for segment in rest.split(|&b| b == b'/').filter(|s| !s.is_empty()) {
            if !self.path.is_empty() {
                self.path.push(b'/');
            }
            let start = self.path.len();
            if !encoded {
                self.path.extend_from_slice(segment);
            } else if decode_strict(segment, Plus::Keep, &mut self.path).is_err() {
                return Err(Refusal::BadPath);
            }
            let decoded = &self.path[start..];
            if decoded == b"." || decoded == b".." || decoded.iter().any(|b| b"/\\\0".contains(b)) {
                return Err(Refusal::BadPath);
            }
        }
        Ok(rest.ends_with(b"/"))
    }

    /// Opens the file a decoded path names: for a directory, its index file.
    fn open_file(&mut self, slash: bool) -> Result<(OwnedFd, FileId, Vec<u8>), Refusal> {
        let mut opened = if self.path.is_empty() {
            b".".to_vec()
        } else {
            self.path.clone()
        };
        opened.push(0);
        let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY;
        let mut fd = open_beneath(&self.root, &opened, flags)?;
        let mut stat = fstat(&fd)?;
        if stat.st_mode & libc::S_IFMT == libc::S_IFDIR {
            if !slash {
                return Err(Refusal::Directory);
            }
            opened.pop();
            opened.push(b'/');
            opened.extend_from_slice(&self.index);
            opened.push(0);
            fd = open_beneath(&self.root, &opened, flags).map_err(|e| match Refusal::from(e) {
                // Like nginx without autoindex: a directory without an index is not listed.
                Refusal::Missing => Refusal::Forbidden,
                other => other,
            })?;
            stat = fstat(&fd)?;
        } else if slash {
            // `/file.txt/` names a directory that is not there.
            return Err(Refusal::Missing);
        }
        if stat.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(Refusal::Forbidden);
        }
        // O_NONBLOCK was only for the open (a FIFO would block it). Left on, it would make
        // ring reads fail with EAGAIN on file systems without non-blocking reads.
        // SAFETY: fcntl on a descriptor we own.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, libc::O_RDONLY) } < 0 {
            return Err(Refusal::Failed);
        }
        Ok((fd, FileId::of(&stat), opened))
    }
}

/// Answers `request` with the file at `rest` beneath the root (percent-encoded when
/// `encoded`, as the part of a request path under the mount is). Returns the file body to
/// send after the head written, unless it was all written (from the cache) or none is due.
pub fn serve(
    files: &mut StaticFiles,
    request: &RawRequest<'_>,
    response: &mut ResponseWriter,
    rest: &[u8],
    encoded: bool,
) -> Option<FileBody> {
    let slash = match files.decode(rest, encoded) {
        Ok(slash) => slash,
        Err(refusal) => return refuse(refusal, request, response),
    };
    let key_len = files.path.len();
    files.path.extend_from_slice(if slash { b"/" } else { b"" });
    let mut cache = files.cache.borrow_mut();
    if let Some(cached) = cache.entries.get(&*files.path) {
        let fresh =
            fstat_at(&files.root, &cached.opened).is_ok_and(|s| FileId::of(&s) == cached.id);
        if fresh {
            response.mark_from_cache();
            if let Some((start, len)) = respond(request, response, &cached.meta) {
                let start = start as usize;
                response
                    .out()
                    .extend_from_slice(&cached.body[start..start + len as usize]);
            }
            return None;
        }
        cache.remove(&files.path);
    }
    drop(cache);
    let key: Box<[u8]> = files.path.as_slice().into();
    files.path.truncate(key_len);
    let (fd, id, opened) = match files.open_file(slash) {
        Ok(found) => found,
        Err(refusal) => return refuse(refusal, request, response),
    };
    let now = unix_now();
    let meta = Meta::new(&id, &opened, now);
    let (offset, len) = respond(request, response, &meta)?;
    let whole = offset == 0 && len == id.size;
    let cacheable = whole && id.size <= files.cache_file_max && !id.changed_recently(now);
    Some(FileBody {
        fd,
        offset,
        len,
        direct: files.directio != 0 && id.size >= files.directio,
        fill: cacheable.then(|| {
            let entry = CachedFile {
                opened: opened.into(),
                id,
                meta,
                body: Box::default(),
                generation: 0,
            };
            Box::new(CacheFill::new(&files.cache, key, entry))
        }),
    })
}

fn refuse(
    refusal: Refusal,
    request: &RawRequest<'_>,
    response: &mut ResponseWriter,
) -> Option<FileBody> {
    match refusal {
        Refusal::BadPath => response.send_status(Status::BAD_REQUEST, &[]),
        Refusal::Missing => response.send_status(Status::NOT_FOUND, &[]),
        Refusal::Forbidden => response.send_status(Status::FORBIDDEN, &[]),
        Refusal::Failed => response.send_status(Status::INTERNAL_SERVER_ERROR, &[]),
        Refusal::Directory => {
            let location = directory_location(request.path(), request.query());
            response.send_status(Status::MOVED_PERMANENTLY, &[("Location", &location)]);
        }
    }
    None
}

/// Where a directory URL without its trailing `/` is sent: the same path with runs of `/`
/// collapsed (so that `//host` cannot become a protocol-relative URL to another host) and
/// bytes outside visible ASCII percent-encoded, then `/` and the query.
fn directory_location(path: &[u8], query: Option<&[u8]>) -> String {
    let mut location = String::with_capacity(path.len() + 2);
    let push = |bytes: &[u8], location: &mut String| {
        for &b in bytes {
            if (0x21..0x7f).contains(&b) {
                location.push(char::from(b));
            } else {
                location.push_str(&format!("%{b:02X}"));
            }
        }
    };
    for segment in path.split(|&b| b == b'/').filter(|s| !s.is_empty()) {
        location.push('/');
        push(segment, &mut location);
    }
    location.push('/');
    if let Some(query) = query {
        location.push('?');
        push(query, &mut location);
    }
    location
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_redirects_stay_on_this_host() {
        assert_eq!(
            directory_location(b"//evil.example", None),
            "/evil.example/"
        );
        assert_eq!(directory_location(b"/a//b", Some(b"x=1")), "/a/b/?x=1");
        assert_eq!(directory_location("/é".as_bytes(), None), "/%C3%A9/");
    }
}
