//! Static files: `static.root` served under `static.mount`, the way nginx serves a `root`.
//!
//! A request path is percent-decoded one segment at a time and refused (400) when a segment
//! is `.` or `..`, or decodes to a `/`, a `\` or a NUL. What is left is opened with `openat2`
//! beneath the root directory (`RESOLVE_BENEATH`), so that nothing, symlinks included, reaches
//! outside it: such a path is refused with 403. From the file's metadata this handler decides
//! the whole response: its validators (`ETag`, `Last-Modified`), the conditional requests
//! (RFC 9110 section 13) and a single byte range (section 14).
//!
//! The body comes from this core's cache of small files when it holds the file unchanged;
//! otherwise it returns a [`FileBody`] for the driver to read (from
//! the page cache, or through glommio) and send, since a handler cannot wait. Small files read that way are put in the
//! cache. A cached file is checked with one `stat` per request and read again once changed.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::echo::percent_decode;
use crate::config::StaticConfig;
use crate::http::date::{format_imf_fixdate, parse_http_date, unix_now};
use crate::http::request::{Method, Request};
use crate::http::response::{Response, Status};

/// A file changed this recently (by its mtime or ctime) is not cached: file times tick
/// coarsely, so a second change within the same tick would leave them equal and the cache
/// blind to it (the "racy clean" problem git has with its index).
const RACY_SECONDS: i64 = 2;

/// Content type of files whose extension the table does not know.
const OCTET_STREAM: &str = "application/octet-stream";

/// One core's view of the static root: the directory, its cache, the settings.
#[derive(Debug)]
pub struct StaticFiles {
    root: OwnedFd,
    /// The mount without its trailing `/` (empty for `/`).
    mount: Box<[u8]>,
    index: Box<[u8]>,
    cache: FileCache,
    cache_file_max: u64,
    directio: u64,
    /// The decoded path of the request being answered, relative to the root.
    path: Vec<u8>,
    /// Requests answered from the cache since start.
    cache_hits: u64,
}

/// A file body the driver must send after the response head already written.
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

/// A cache entry waiting for its bytes.
#[derive(Debug)]
pub struct CacheFill {
    key: Box<[u8]>,
    entry: CachedFile,
}

/// What identifies one version of a file: if none of these changed, its bytes did not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileId {
    fn of(stat: &libc::stat) -> FileId {
        FileId {
            dev: stat.st_dev,
            ino: stat.st_ino,
            size: stat.st_size as u64,
            mtime: (stat.st_mtime, stat.st_mtime_nsec),
            ctime: (stat.st_ctime, stat.st_ctime_nsec),
        }
    }

    /// A strong validator: any change of content changes the size, mtime or ctime.
    fn etag(&self) -> String {
        format!(
            "\"{:x}-{:x}-{:x}.{:x}\"",
            self.ino, self.size, self.mtime.0, self.mtime.1
        )
    }

    fn changed_recently(&self, now: i64) -> bool {
        self.mtime.0.max(self.ctime.0) > now - RACY_SECONDS
    }
}

/// A small file held in memory.
#[derive(Debug)]
struct CachedFile {
    /// The path that was opened, relative to the root and NUL-terminated (for a directory
    /// URL, its index file).
    opened: Box<[u8]>,
    id: FileId,
    meta: Meta,
    body: Box<[u8]>,
    /// When it was inserted, to tell its place in the eviction order from a stale one.
    generation: u64,
}

/// What a response says about the file besides its bytes.
#[derive(Clone, Debug)]
struct Meta {
    content_type: &'static str,
    etag: String,
    last_modified: [u8; 29],
    modified: i64,
    size: u64,
}

impl Meta {
    fn new(id: &FileId, opened: &[u8], now: i64) -> Meta {
        let name = opened.strip_suffix(b"\0").unwrap_or(opened);
        let content_type = mime_guess::from_path(Path::new(OsStr::from_bytes(name)))
            .first_raw()
            .unwrap_or(OCTET_STREAM);
        // RFC 9110 section 8.8.2.1: a modification time in the future is sent as now; one
        // before 1970 as 1970 (the date format has no earlier years to spare).
        let modified = id.mtime.0.clamp(0, now);
        Meta {
            content_type,
            etag: id.etag(),
            last_modified: format_imf_fixdate(modified),
            modified,
            size: id.size,
        }
    }
}

/// Small files by request path, bounded in total bytes (bodies, keys and a fixed cost per
/// entry), dropped oldest first when full.
#[derive(Debug, Default)]
struct FileCache {
    entries: HashMap<Box<[u8]>, CachedFile>,
    /// Keys in insertion order with the generation they were inserted with; a key removed
    /// or inserted again since leaves a stale pair that eviction skips.
    order: VecDeque<(Box<[u8]>, u64)>,
    generation: u64,
    bytes: usize,
    capacity: usize,
}

/// Memory an entry costs besides its body and key: map slot, path, validators.
const ENTRY_OVERHEAD: usize = 256;

impl FileCache {
    fn cost(key: &[u8], entry: &CachedFile) -> usize {
        entry.body.len() + key.len() + entry.opened.len() + entry.meta.etag.len() + ENTRY_OVERHEAD
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some(old) = self.entries.remove(key) {
            self.bytes -= Self::cost(key, &old);
        }
    }

    fn insert(&mut self, key: Box<[u8]>, mut entry: CachedFile) {
        self.remove(&key);
        let cost = Self::cost(&key, &entry);
        if cost > self.capacity {
            return;
        }
        while self.bytes + cost > self.capacity {
            let Some((oldest, generation)) = self.order.pop_front() else {
                break;
            };
            if self
                .entries
                .get(&oldest)
                .is_some_and(|e| e.generation == generation)
            {
                self.remove(&oldest);
            }
        }
        if self.order.len() > 2 * self.entries.len() + 64 {
            // Many stale pairs (files changed and read again): drop them.
            let entries = &self.entries;
            self.order.retain(|(key, generation)| {
                entries
                    .get(key)
                    .is_some_and(|e| e.generation == *generation)
            });
        }
        self.generation += 1;
        entry.generation = self.generation;
        self.bytes += cost;
        self.order.push_back((key.clone(), self.generation));
        self.entries.insert(key, entry);
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

/// What the validators and the `Range` field make of a request.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Full,
    Partial { start: u64, len: u64 },
    NotModified,
    PreconditionFailed,
    Unsatisfiable,
}

impl StaticFiles {
    /// Opens the root directory; checks that this kernel can open files beneath it.
    pub fn open_root(config: &StaticConfig) -> io::Result<OwnedFd> {
        let path = std::ffi::CString::new(config.root.as_os_str().as_bytes())
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

    /// One core's static files, served from `root` (see [`StaticFiles::open_root`]).
    pub fn new(config: &StaticConfig, root: OwnedFd) -> StaticFiles {
        StaticFiles {
            root,
            mount: config.mount.trim_end_matches('/').as_bytes().into(),
            index: config.index.as_bytes().into(),
            cache: FileCache {
                capacity: config.cache_bytes,
                ..FileCache::default()
            },
            cache_file_max: config.cache_file_max_bytes as u64,
            directio: config.directio_bytes,
            path: Vec::new(),
            cache_hits: 0,
        }
    }

    /// Requests answered from this core's cache since start.
    pub fn cache_hits(&self) -> u64 {
        self.cache_hits
    }

    /// Whether `path` (as requested, still encoded) lies under the mount.
    pub fn mounts(&self, path: &[u8]) -> bool {
        path.strip_prefix(&*self.mount)
            .is_some_and(|rest| rest.is_empty() || rest[0] == b'/')
    }

    /// Stores the bytes of a file read for `fill`.
    pub fn fill_cache(&mut self, fill: CacheFill, bytes: &[u8]) {
        let CacheFill { key, mut entry } = fill;
        entry.body = bytes.into();
        self.cache.insert(key, entry);
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
            } else if !percent_decode(segment, &mut self.path) {
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
    request: &Request<'_>,
    response: &mut Response<'_>,
    rest: &[u8],
    encoded: bool,
) -> Option<FileBody> {
    let slash = match files.decode(rest, encoded) {
        Ok(slash) => slash,
        Err(refusal) => return refuse(refusal, request, response),
    };
    let key_len = files.path.len();
    files.path.extend_from_slice(if slash { b"/" } else { b"" });
    if let Some(cached) = files.cache.entries.get(&*files.path) {
        let fresh =
            fstat_at(&files.root, &cached.opened).is_ok_and(|s| FileId::of(&s) == cached.id);
        if fresh {
            files.cache_hits += 1;
            if let Some((start, len)) = respond(request, response, &cached.meta) {
                let start = start as usize;
                response
                    .out
                    .extend_from_slice(&cached.body[start..start + len as usize]);
            }
            return None;
        }
        files.cache.remove(&files.path);
    }
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
            Box::new(CacheFill {
                key,
                entry: CachedFile {
                    opened: opened.into(),
                    id,
                    meta,
                    body: Box::default(),
                    generation: 0,
                },
            })
        }),
    })
}

/// Writes the response head for a file; returns the byte range whose bytes must follow.
fn respond(request: &Request<'_>, response: &mut Response<'_>, meta: &Meta) -> Option<(u64, u64)> {
    let last_modified = std::str::from_utf8(&meta.last_modified).unwrap_or_default();
    let validators = [
        ("ETag", meta.etag.as_str()),
        ("Last-Modified", last_modified),
    ];
    let content_type = Some(meta.content_type);
    let range = match decide(request, meta) {
        Answer::Full => {
            let extra = [validators[0], validators[1], ("Accept-Ranges", "bytes")];
            response.send_head(Status::OK, content_type, &extra, meta.size);
            (0, meta.size)
        }
        Answer::Partial { start, len } => {
            let content_range = format!("bytes {}-{}/{}", start, start + len - 1, meta.size);
            let extra = [
                validators[0],
                validators[1],
                ("Accept-Ranges", "bytes"),
                ("Content-Range", content_range.as_str()),
            ];
            response.send_head(Status::PARTIAL_CONTENT, content_type, &extra, len);
            (start, len)
        }
        Answer::NotModified => {
            response.send_head(Status::NOT_MODIFIED, None, &validators, 0);
            return None;
        }
        Answer::PreconditionFailed => {
            response.send_status(Status::PRECONDITION_FAILED, &[]);
            return None;
        }
        Answer::Unsatisfiable => {
            let content_range = format!("bytes */{}", meta.size);
            let extra = [("Content-Range", content_range.as_str())];
            response.send_status(Status::RANGE_NOT_SATISFIABLE, &extra);
            return None;
        }
    };
    (response.body_wanted() && range.1 > 0).then_some(range)
}

/// RFC 9110 section 13.2.2: preconditions in their order, then the range.
fn decide(request: &Request<'_>, meta: &Meta) -> Answer {
    let etag = meta.etag.as_bytes();
    let get_or_head = matches!(request.head.method, Method::Get | Method::Head);
    if request.headers(b"if-match").next().is_some() {
        if !request
            .headers(b"if-match")
            .any(|v| etag_list_matches(v, etag, true))
        {
            return Answer::PreconditionFailed;
        }
    } else if let Some(date) = request
        .header(b"if-unmodified-since")
        .and_then(parse_http_date)
    {
        if meta.modified > date {
            return Answer::PreconditionFailed;
        }
    }
    if request.headers(b"if-none-match").next().is_some() {
        if request
            .headers(b"if-none-match")
            .any(|v| etag_list_matches(v, etag, false))
        {
            return if get_or_head {
                Answer::NotModified
            } else {
                Answer::PreconditionFailed
            };
        }
    } else if let Some(date) = request
        .header(b"if-modified-since")
        .and_then(parse_http_date)
    {
        if get_or_head && meta.modified <= date {
            return Answer::NotModified;
        }
    }
    if request.head.method != Method::Get {
        return Answer::Full;
    }
    let Some(range) = request.header(b"range") else {
        return Answer::Full;
    };
    if let Some(condition) = request.header(b"if-range") {
        let holds = if condition.starts_with(b"\"") {
            condition == etag
        } else {
            parse_http_date(condition) == Some(meta.modified)
        };
        if !holds {
            return Answer::Full;
        }
    }
    match parse_range(range, meta.size) {
        RangeSpec::Ignore => Answer::Full,
        RangeSpec::Satisfiable { start, len } => Answer::Partial { start, len },
        RangeSpec::Unsatisfiable => Answer::Unsatisfiable,
    }
}

/// Whether a field value (`*` or a list of entity tags) matches `etag`; strong comparison
/// refuses weak tags (`W/"…"`), weak comparison ignores the prefix.
fn etag_list_matches(value: &[u8], etag: &[u8], strong: bool) -> bool {
    if value.trim_ascii() == b"*" {
        return true;
    }
    value
        .split(|&b| b == b',')
        .map(|tag| tag.trim_ascii())
        .any(|tag| match tag.strip_prefix(b"W/") {
            Some(weak) => !strong && weak == etag,
            None => tag == etag,
        })
}

#[derive(Debug, PartialEq, Eq)]
enum RangeSpec {
    /// Not a single byte range this server takes (or malformed): send the whole file.
    Ignore,
    Satisfiable {
        start: u64,
        len: u64,
    },
    Unsatisfiable,
}

/// Parses `bytes=a-b`, `bytes=a-` or `bytes=-n` against a file of `size` bytes. Several
/// ranges are answered with the whole file, which RFC 9110 section 14.2 allows.
fn parse_range(value: &[u8], size: u64) -> RangeSpec {
    let Some(spec) = value
        .split_at_checked(6)
        .filter(|(unit, _)| unit.eq_ignore_ascii_case(b"bytes="))
        .map(|(_, spec)| spec.trim_ascii())
    else {
        return RangeSpec::Ignore;
    };
    if spec.contains(&b',') {
        return RangeSpec::Ignore;
    }
    let Some(dash) = spec.iter().position(|&b| b == b'-') else {
        return RangeSpec::Ignore;
    };
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    let number = |digits: &[u8]| -> Option<u64> {
        if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        digits.iter().try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
    };
    if first.is_empty() {
        let Some(suffix) = number(last) else {
            return RangeSpec::Ignore;
        };
        if suffix == 0 || size == 0 {
            return RangeSpec::Unsatisfiable;
        }
        let len = suffix.min(size);
        return RangeSpec::Satisfiable {
            start: size - len,
            len,
        };
    }
    let Some(start) = number(first) else {
        return RangeSpec::Ignore;
    };
    let end = if last.is_empty() {
        None
    } else {
        match number(last) {
            Some(end) if end >= start => Some(end),
            _ => return RangeSpec::Ignore,
        }
    };
    if start >= size {
        return RangeSpec::Unsatisfiable;
    }
    let end = end.unwrap_or(u64::MAX).min(size - 1);
    RangeSpec::Satisfiable {
        start,
        len: end - start + 1,
    }
}

fn refuse(
    refusal: Refusal,
    request: &Request<'_>,
    response: &mut Response<'_>,
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

/// The kernel's `struct open_how` (libc marks its own non-exhaustive).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `openat2(root, path, flags)` confined beneath `root`; `path` is NUL-terminated.
fn open_beneath(root: &OwnedFd, path: &[u8], flags: libc::c_int) -> io::Result<OwnedFd> {
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

fn fstat(fd: &OwnedFd) -> io::Result<libc::stat> {
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
fn fstat_at(root: &OwnedFd, path: &[u8]) -> io::Result<libc::stat> {
    // SAFETY: as in `fstat`.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `stat` is writable for its size.
    if unsafe { libc::fstatat(root.as_raw_fd(), path.as_ptr().cast(), &mut stat, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        use RangeSpec::*;
        let sat = |start, len| Satisfiable { start, len };
        assert_eq!(parse_range(b"bytes=0-0", 10), sat(0, 1));
        assert_eq!(parse_range(b"bytes=2-", 10), sat(2, 8));
        assert_eq!(parse_range(b"bytes=5-100", 10), sat(5, 5));
        assert_eq!(parse_range(b"bytes=-3", 10), sat(7, 3));
        assert_eq!(parse_range(b"bytes=-30", 10), sat(0, 10));
        assert_eq!(parse_range(b"BYTES=1-2", 10), sat(1, 2));
        assert_eq!(parse_range(b"bytes=10-", 10), Unsatisfiable);
        assert_eq!(parse_range(b"bytes=-0", 10), Unsatisfiable);
        assert_eq!(parse_range(b"bytes=0-", 0), Unsatisfiable);
        for ignored in [
            &b"bytes=3-2"[..],
            b"bytes=0-1,4-5",
            b"items=0-1",
            b"bytes=a-b",
            b"bytes=-",
            b"bytes=99999999999999999999-",
            b"bytes",
        ] {
            assert_eq!(parse_range(ignored, 10), Ignore, "{ignored:?}");
        }
    }

    #[test]
    fn cache_stays_within_its_capacity_and_drops_the_oldest() {
        let entry = |body: usize| CachedFile {
            opened: b"f\0".as_slice().into(),
            id: FileId {
                dev: 0,
                ino: 0,
                size: body as u64,
                mtime: (0, 0),
                ctime: (0, 0),
            },
            meta: Meta::new(
                &FileId {
                    dev: 0,
                    ino: 0,
                    size: 0,
                    mtime: (0, 0),
                    ctime: (0, 0),
                },
                b"f\0",
                0,
            ),
            body: vec![0; body].into(),
            generation: 0,
        };
        let mut cache = FileCache {
            capacity: 4 * (1000 + 300),
            ..FileCache::default()
        };
        for round in 0..100u32 {
            let key: Box<[u8]> = round.to_string().into_bytes().into();
            cache.insert(key.clone(), entry(1000));
            // Re-inserting the same key leaves stale order pairs behind.
            cache.insert(key, entry(1000));
            assert!(cache.bytes <= cache.capacity);
            let counted: usize = cache
                .entries
                .iter()
                .map(|(k, e)| FileCache::cost(k, e))
                .sum();
            assert_eq!(counted, cache.bytes);
            assert!(cache.order.len() <= 2 * cache.entries.len() + 66);
        }
        assert!(cache.entries.contains_key(b"99".as_slice()));
        assert!(!cache.entries.contains_key(b"0".as_slice()));
        cache.insert(b"huge".as_slice().into(), entry(10_000));
        assert!(!cache.entries.contains_key(b"huge".as_slice()));
    }

    #[test]
    fn directory_redirects_stay_on_this_host() {
        assert_eq!(
            directory_location(b"//evil.example", None),
            "/evil.example/"
        );
        assert_eq!(directory_location(b"/a//b", Some(b"x=1")), "/a/b/?x=1");
        assert_eq!(directory_location("/é".as_bytes(), None), "/%C3%A9/");
    }

    #[test]
    fn entity_tags_compare_strongly_or_weakly() {
        let etag = b"\"a-1\"";
        assert!(etag_list_matches(b"\"x\", \"a-1\"", etag, true));
        assert!(etag_list_matches(b"*", etag, true));
        assert!(!etag_list_matches(b"W/\"a-1\"", etag, true));
        assert!(etag_list_matches(b"W/\"a-1\"", etag, false));
        assert!(!etag_list_matches(b"\"a-2\"", etag, false));
    }
}
