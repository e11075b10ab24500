//! Coded variants of a static file: what `[compression]` lets the files layer send, and
//! the precompressed files beside a file (`style.css.gz` beside `style.css`, as nginx's
//! `gzip_static` and Caddy's `precompressed` serve them).
//!
//! A variant is opened beneath the root like any file, and served only while it is not
//! older than the file it was made from: an older one was made from an earlier version. It
//! is served with the file's type and its own validators (an `ETag` naming its coding), so
//! ranges and conditional requests apply to the coded bytes. Choosing the coding is the
//! http layer's ([`crate::http::coding`]); serving the bytes is the caller's.

use std::os::fd::OwnedFd;

use super::meta::FileId;
use super::on_the_fly::MADE;
use super::open::{fstat, open_beneath, reset_flags};
use crate::config::CompressionConfig;
use crate::http::coding::{Acceptance, Coding, Ranked};
use crate::http::encoder::Levels;
use crate::http::request::RawRequest;

/// What one core's static files do about content codings.
#[derive(Debug)]
pub(crate) struct CodingPolicy {
    settings: CompressionConfig,
    offered: Box<[Coding]>,
}

impl CodingPolicy {
    /// The policy `settings` describe.
    pub(crate) fn new(settings: &CompressionConfig) -> CodingPolicy {
        CodingPolicy {
            settings: settings.clone(),
            offered: settings.offered().into(),
        }
    }

    /// No coding at all: every body as it is, no `Vary`.
    pub(crate) fn off() -> CodingPolicy {
        CodingPolicy::new(&CompressionConfig {
            enabled: false,
            ..CompressionConfig::default()
        })
    }

    /// The codings offered that `request` accepts, best first: none when compression is
    /// off.
    pub(crate) fn ranked(&self, request: &RawRequest<'_>) -> Ranked {
        if !self.settings.enabled {
            return Ranked::default();
        }
        Acceptance::parse(request.headers(b"accept-encoding")).ranked(&self.offered)
    }

    /// Whether precompressed variants are looked for.
    pub(crate) fn precompressed(&self) -> bool {
        self.settings.enabled && self.settings.precompressed
    }

    /// The coding a body of `content_type` and `len` bytes is compressed in on the fly for
    /// a request that accepts `ranked`: the best of them made on the fly, when the type is
    /// one of `compression.types` and the body not below `min_bytes`.
    pub(crate) fn on_the_fly(
        &self,
        ranked: &Ranked,
        content_type: &str,
        len: usize,
    ) -> Option<Coding> {
        let settings = &self.settings;
        let wanted = settings.enabled
            && len as u64 >= settings.min_bytes
            && settings.compresses(content_type);
        ranked
            .as_slice()
            .iter()
            .find(|coding| MADE.contains(coding))
            .filter(|_| wanted)
            .copied()
    }

    /// Whether a static file's coded copy made on the fly is kept in the core's cache
    /// (`compression.cache_variants`).
    pub(crate) fn caches_variants(&self) -> bool {
        self.settings.cache_variants
    }

    /// Whether anything is coded at all (`compression.enabled`).
    pub(crate) fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// Bodies shorter than this are not compressed on the fly.
    pub(crate) fn min_bytes(&self) -> u64 {
        self.settings.min_bytes
    }

    /// Whether bodies of `content_type` are compressed on the fly (their type is listed).
    pub(crate) fn compresses(&self, content_type: &str) -> bool {
        self.settings.compresses(content_type)
    }

    /// The levels bodies are compressed at.
    pub(crate) fn levels(&self) -> Levels {
        let settings = &self.settings;
        Levels {
            gzip: settings.gzip_level,
            brotli: settings.brotli_level,
            zstd: settings.zstd_level,
        }
    }

    /// Whether a response with a body of `content_type` says `Vary: Accept-Encoding`: when
    /// another request could have had it coded. With precompressed files on that is every
    /// file (a variant may be put beside any file at any moment); otherwise the types
    /// compressed on the fly.
    pub(crate) fn varies(&self, content_type: &str) -> bool {
        let settings = &self.settings;
        settings.enabled && (settings.precompressed || settings.compresses(content_type))
    }
}

/// Writes into `path` the name of `opened`'s variant in `coding` (both NUL-terminated).
pub(crate) fn variant_path(path: &mut Vec<u8>, opened: &[u8], coding: Coding) {
    path.clear();
    path.extend_from_slice(opened.strip_suffix(b"\0").unwrap_or(opened));
    path.extend_from_slice(coding.suffix().as_bytes());
    path.push(0);
}

/// Writes into `key` the cache key of a request path's variant in `coding`: a request path
/// decodes to no NUL, so the key cannot be a file's own.
pub(crate) fn variant_key(key: &mut Vec<u8>, coding: Coding) {
    key.push(0);
    key.extend_from_slice(coding.token().as_bytes());
}

/// Opens the variant at `path` (NUL-terminated, relative to `root`): a regular file not
/// older than `original`. None when there is none to serve, for whatever reason: the file
/// itself is served then.
pub(crate) fn open_variant(
    root: &OwnedFd,
    path: &[u8],
    original: &FileId,
) -> Option<(OwnedFd, FileId)> {
    let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY;
    let fd = open_beneath(root, path, flags).ok()?;
    let stat = fstat(&fd).ok()?;
    let id = FileId::of(&stat);
    let usable = stat.st_mode & libc::S_IFMT == libc::S_IFREG && id.is_not_older_than(original);
    (usable && reset_flags(&fd).is_ok()).then_some((fd, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_variant_is_named_beside_its_file_and_keyed_apart() {
        let mut path = Vec::new();
        variant_path(&mut path, b"dir/index.html\0", Coding::Br);
        assert_eq!(path, b"dir/index.html.br\0");
        variant_path(&mut path, b"a.css", Coding::Zstd);
        assert_eq!(path, b"a.css.zst\0");
        let mut key = b"/docs/".to_vec();
        variant_key(&mut key, Coding::Gzip);
        assert_eq!(key, b"/docs/\0gzip");
    }

    #[test]
    fn vary_follows_the_settings() {
        let mut settings = CompressionConfig::default();
        assert!(CodingPolicy::new(&settings).varies("image/png"));
        settings.precompressed = false;
        assert!(!CodingPolicy::new(&settings).varies("image/png"));
        assert!(CodingPolicy::new(&settings).varies("text/css"));
        assert!(!CodingPolicy::off().varies("text/css"));
    }
}
