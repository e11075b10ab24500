//! What identifies one version of a file and what a response says about it: the
//! validators (`ETag`, `Last-Modified`) and the content type.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::http::coding::Coding;
use crate::support::civil_time::imf_fixdate;

/// A file changed this recently (by its mtime or ctime) is not cached: file times tick
/// coarsely, so a second change within the same tick would leave them equal and the cache
/// blind to it (the "racy clean" problem git has with its index).
const RACY_SECONDS: i64 = 2;

/// Content type of files whose extension the table does not know.
const OCTET_STREAM: &str = "application/octet-stream";

/// What identifies one version of a file: if none of these changed, its bytes did not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileId {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) size: u64,
    pub(crate) mtime: (i64, i64),
    pub(crate) ctime: (i64, i64),
}

impl FileId {
    pub(crate) fn of(stat: &libc::stat) -> FileId {
        FileId {
            dev: stat.st_dev,
            ino: stat.st_ino,
            size: stat.st_size as u64,
            mtime: (stat.st_mtime, stat.st_mtime_nsec),
            ctime: (stat.st_ctime, stat.st_ctime_nsec),
        }
    }

    /// A strong validator: any change of content changes the size, mtime or ctime. A coded
    /// variant's names its coding too, so that it never equals an identity body's.
    fn etag(&self, coding: Option<Coding>) -> String {
        let (dash, token) = coding.map_or(("", ""), |c| ("-", c.token()));
        format!(
            "\"{:x}-{:x}-{:x}.{:x}{dash}{token}\"",
            self.ino, self.size, self.mtime.0, self.mtime.1
        )
    }

    /// Whether a variant with this identity is as new as `original` or newer (an older one
    /// was made from an earlier version of the file, and is not served).
    pub(crate) fn is_not_older_than(&self, original: &FileId) -> bool {
        self.mtime >= original.mtime
    }

    pub(crate) fn changed_recently(&self, now: i64) -> bool {
        self.mtime.0.max(self.ctime.0) > now - RACY_SECONDS
    }
}

/// What a response says about the file besides its bytes.
#[derive(Clone, Debug)]
pub(crate) struct Meta {
    pub(crate) content_type: &'static str,
    pub(crate) etag: String,
    pub(crate) last_modified: [u8; 29],
    pub(crate) modified: i64,
    pub(crate) size: u64,
}

impl Meta {
    /// The metadata of the file `id` opened as `opened`, whose type its name gives.
    pub(crate) fn new(id: &FileId, opened: &[u8], now: i64) -> Meta {
        Meta::coded(id, opened, now, None)
    }

    /// The same file's metadata for its body in `coding`: only the entity tag differs.
    pub(crate) fn in_coding(mut self, id: &FileId, coding: Coding) -> Meta {
        self.etag = id.etag(Some(coding));
        self
    }

    /// The metadata of `id`, a body in `coding` (none: identity) of the file named `opened`,
    /// whose type that name gives.
    pub(crate) fn coded(id: &FileId, opened: &[u8], now: i64, coding: Option<Coding>) -> Meta {
        let name = opened.strip_suffix(b"\0").unwrap_or(opened);
        let content_type = mime_guess::from_path(Path::new(OsStr::from_bytes(name)))
            .first_raw()
            .unwrap_or(OCTET_STREAM);
        // RFC 9110 section 8.8.2.1: a modification time in the future is sent as now; one
        // before 1970 as 1970 (the date format has no earlier years to spare).
        let modified = id.mtime.0.clamp(0, now);
        Meta {
            content_type,
            etag: id.etag(coding),
            last_modified: imf_fixdate(modified),
            modified,
            size: id.size,
        }
    }
}
