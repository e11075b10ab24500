//! Static files: a root directory served the way nginx serves a `root`.
//!
//! A request path is percent-decoded one segment at a time and refused (400) when a segment
//! is `.` or `..`, or decodes to a `/`, a `\` or a NUL. What is left is opened beneath the
//! root (`open`), so that nothing, symlinks included, reaches outside it: such a path is
//! refused with 403. From the file's metadata (`meta`) the whole response is decided: its
//! validators, the conditional requests and a single byte range (`conditional`, `range`).
//! A client that accepts a content coding may get a precompressed variant beside the file
//! instead (`variants`: `style.css.gz` for `style.css`), with validators and ranges of its
//! own.
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
mod coded_stream;
mod conditional;
mod meta;
mod on_the_fly;
mod open;
mod range;
pub(crate) mod read;
mod variants;

use std::cell::RefCell;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::rc::Rc;

pub use cache::CacheFill;
use cache::{CachedFile, FileCache, SharedCache};
pub use coded_stream::FileCoder;
use conditional::{respond, Representation};
use meta::{FileId, Meta};
use open::{fstat, fstat_at, open_beneath, reset_flags};
pub(crate) use variants::CodingPolicy;
use variants::{open_variant, variant_key, variant_path};

use crate::config::{CompressionConfig, StaticConfig};
use crate::http::encoder::Encoder;
use crate::http::request::RawRequest;
use crate::http::response::ResponseWriter;
use crate::http::status::Status;
use crate::http::stream_coder::StreamCoder;
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
    coding: CodingPolicy,
    /// The core's coders for files compressed on the fly.
    encoder: Encoder,
    /// The decoded path of the request being answered, relative to the root.
    path: Vec<u8>,
    /// Its cache key: the path, a `/` for a directory URL, and a variant's coding.
    key: Vec<u8>,
    /// The path of the file answering it, as opened (for a directory URL, its index file).
    opened: Vec<u8>,
    /// The path of a variant of that file.
    variant: Vec<u8>,
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
    /// Code the bytes as they are read (a whole file too large for the cache, compressed
    /// on the fly): each chunk coded and framed before it is sent.
    pub coder: Option<Box<FileCoder>>,
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

    /// One core's static files, served from `root` (see [`StaticFiles::open_root`]), their
    /// bodies coded as `compression` allows.
    pub fn new(
        config: &StaticConfig,
        compression: &CompressionConfig,
        root: OwnedFd,
    ) -> StaticFiles {
        let coding = CodingPolicy::new(compression);
        StaticFiles {
            root,
            mount: config.mount.trim_end_matches('/').as_bytes().into(),
            index: config.index.as_bytes().into(),
            cache: Rc::new(RefCell::new(FileCache::with_capacity(config.cache_bytes))),
            cache_file_max: config.cache_file_max_bytes as u64,
            directio: config.directio_bytes,
            encoder: Encoder::new(coding.levels()),
            coding,
            path: Vec::new(),
            key: Vec::new(),
            opened: Vec::new(),
            variant: Vec::new(),
        }
    }

    /// Sends every body as it is (no coding, no `Vary`).
    pub fn without_coding(mut self) -> StaticFiles {
        self.coding = CodingPolicy::off();
        self
    }

    /// Codes bodies as `compression` allows.
    pub fn with_coding(mut self, compression: &CompressionConfig) -> StaticFiles {
        self.coding = CodingPolicy::new(compression);
        self.encoder = Encoder::new(self.coding.levels());
        self
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
        reset_flags(&fd).map_err(|_| Refusal::Failed)?;
        Ok((fd, FileId::of(&stat), opened))
    }
}

/// Answers `request` with the file at `rest` beneath the root (percent-encoded when
/// `encoded`, as the part of a request path under the mount is), or with a precompressed
/// variant of it in the best coding the request accepts. Returns the file body to send
/// after the head written, unless it was all written (from the cache) or none is due.
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
    files.key.clear();
    files.key.extend_from_slice(&files.path);
    files.key.extend_from_slice(if slash { b"/" } else { b"" });
    let key_len = files.key.len();
    // The file itself: from the cache while one stat finds it unchanged, or opened.
    let (original, fd) = match fresh_entry(&files.cache, &files.root, &files.key) {
        Some(id) => {
            let cache = files.cache.borrow();
            files.opened.clear();
            files
                .opened
                .extend_from_slice(&cache.entries[&*files.key].opened);
            (id, None)
        }
        None => match files.open_file(slash) {
            Ok((fd, id, opened)) => {
                files.opened = opened;
                (id, Some(fd))
            }
            Err(refusal) => return refuse(refusal, request, response),
        },
    };
    let now = unix_now();
    let ranked = files.coding.ranked(request);
    let precompressed = if files.coding.precompressed() {
        ranked.as_slice()
    } else {
        &[]
    };
    for coding in precompressed {
        let representation = Representation::coded(*coding);
        variant_key(&mut files.key, *coding);
        let cached = fresh_entry(&files.cache, &files.root, &files.key);
        if let Some(id) = cached.filter(|id| id.is_not_older_than(&original)) {
            let saved = original.size.saturating_sub(id.size);
            let cache = files.cache.borrow();
            let entry = &cache.entries[&*files.key];
            send_cached(entry, request, response, representation, saved);
            return None;
        }
        variant_path(&mut files.variant, &files.opened, *coding);
        if let Some((fd, id)) = open_variant(&files.root, &files.variant, &original) {
            let meta = Meta::coded(&id, &files.opened, now, Some(*coding));
            let saved = original.size.saturating_sub(id.size);
            let opened = files.variant.as_slice().into();
            let file = Opened {
                fd,
                id,
                meta,
                opened,
            };
            return send_opened(files, file, request, response, representation, saved);
        }
        files.key.truncate(key_len);
    }
    if fd.is_none()
        && on_the_fly::send_compressed(files, &ranked, &original, request, response, now)
    {
        return None;
    }
    match fd {
        None => {
            let cache = files.cache.borrow();
            let entry = &cache.entries[&*files.key];
            let vary = files.coding.varies(entry.meta.content_type);
            let representation = Representation { coding: None, vary };
            send_cached(entry, request, response, representation, 0);
            None
        }
        Some(fd) => {
            let meta = Meta::new(&original, &files.opened, now);
            if let Some(coding) =
                coded_stream::coding_for(files, &ranked, &original, &meta, request)
            {
                if let Some(coder) = StreamCoder::new(coding, files.coding.levels()) {
                    let meta = meta.in_coding(&original, coding);
                    let coded = (coding, coder);
                    return coded_stream::send(
                        files, fd, &original, &meta, coded, request, response,
                    );
                }
            }
            let vary = files.coding.varies(meta.content_type);
            let representation = Representation { coding: None, vary };
            let opened = std::mem::take(&mut files.opened).into();
            let file = Opened {
                fd,
                id: original,
                meta,
                opened,
            };
            send_opened(files, file, request, response, representation, 0)
        }
    }
}

/// The identity of the file cached under `key`, if there is an entry and one `stat` finds
/// its file unchanged; a changed file's entry is dropped.
fn fresh_entry(cache: &SharedCache, root: &OwnedFd, key: &[u8]) -> Option<FileId> {
    let mut cache = cache.borrow_mut();
    let cached = cache.entries.get(key)?;
    if fstat_at(root, &cached.opened).is_ok_and(|s| FileId::of(&s) == cached.id) {
        return Some(cached.id);
    }
    cache.remove(key);
    None
}

/// Answers from a cache entry (`saved`: bytes its coding saves over the file's own).
fn send_cached(
    entry: &CachedFile,
    request: &RawRequest<'_>,
    response: &mut ResponseWriter,
    representation: Representation,
    saved: u64,
) {
    response.mark_from_cache();
    let range = respond(request, response, &entry.meta, representation);
    note_coding(response, representation, saved);
    if let Some((start, len)) = range {
        let start = start as usize;
        response
            .out()
            .extend_from_slice(&entry.body[start..start + len as usize]);
    }
}

/// A file opened to answer a request: the file itself or a variant.
struct Opened {
    fd: OwnedFd,
    id: FileId,
    meta: Meta,
    /// Its path relative to the root, NUL-terminated.
    opened: Box<[u8]>,
}

/// Answers with an opened file, whose bytes the engine reads (and puts in the cache under
/// `files.key` when it is small and whole).
fn send_opened(
    files: &StaticFiles,
    file: Opened,
    request: &RawRequest<'_>,
    response: &mut ResponseWriter,
    representation: Representation,
    saved: u64,
) -> Option<FileBody> {
    let Opened {
        fd,
        id,
        meta,
        opened,
    } = file;
    let range = respond(request, response, &meta, representation);
    note_coding(response, representation, saved);
    let (offset, len) = range?;
    let whole = offset == 0 && len == id.size;
    let cacheable = whole && id.size <= files.cache_file_max && !id.changed_recently(unix_now());
    Some(FileBody {
        fd,
        offset,
        len,
        direct: files.directio != 0 && id.size >= files.directio,
        fill: cacheable.then(|| {
            let entry = CachedFile {
                opened,
                id,
                meta,
                body: Box::default(),
                generation: 0,
            };
            let key = files.key.as_slice().into();
            Box::new(CacheFill::new(&files.cache, key, entry))
        }),
        coder: None,
    })
}

/// Tells the response its body's coding, when it carries a coded body (200 or 206), and
/// the bytes the coding saved when the whole body goes out.
fn note_coding(response: &mut ResponseWriter, representation: Representation, saved: u64) {
    let Some(coding) = representation.coding else {
        return;
    };
    match response.sent() {
        Some(Status::OK) => {
            let saved = if response.body_wanted() { saved } else { 0 };
            response.mark_coded(coding.token(), saved);
        }
        Some(Status::PARTIAL_CONTENT) => response.mark_coded(coding.token(), 0),
        _ => {}
    }
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
