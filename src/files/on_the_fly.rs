//! Compression on the fly of small static files: a file whose bytes are in the core's
//! cache, of a type in `compression.types` and at least `compression.min_bytes` long, is
//! compressed once per version and coding, and the coded bytes are cached beside it (under
//! the same byte budget, `static.cache_bytes`), so that later requests cost one `stat` and
//! a copy, as the file itself does. With `compression.cache_variants = false` the coded bytes
//! are made again for every response instead (and not kept), as nginx's `gzip` does.
//!
//! gzip, Brotli and Zstandard are made, each at its `compression.*_level`, by the files'
//! [`Encoder`](crate::http::encoder::Encoder) (the core's coders, reused). A request with a
//! `Range` field gets the file itself, so that ranges keep meaning the bytes on disk. A file
//! not yet cached (its first request, one changed in the last 2 seconds, one above
//! `static.cache_file_max_bytes`) goes out as it is.

use super::cache::CachedFile;
use super::conditional::Representation;
use super::meta::{FileId, Meta};
use super::{send_cached, StaticFiles};
use crate::http::coding::{Coding, Ranked};
use crate::http::request::RawRequest;
use crate::http::response::ResponseWriter;

/// The codings made on the fly.
pub(crate) const MADE: [Coding; 3] = Coding::ALL;

/// Answers `request` with the cached file under `files.key` (unchanged, as `original`
/// says) compressed in the best coding of `ranked` made on the fly, compressing it first if
/// the cache holds no coded copy of this version. Returns false, having written nothing,
/// when the file is not to be compressed for this request.
pub(super) fn send_compressed(
    files: &mut StaticFiles,
    ranked: &Ranked,
    original: &FileId,
    request: &RawRequest<'_>,
    response: &mut ResponseWriter,
    now: i64,
) -> bool {
    if request.header(b"range").is_some() {
        return false;
    }
    let key_len = files.key.len();
    let mut cache = files.cache.borrow_mut();
    let Some(identity) = cache.entries.get(&*files.key) else {
        return false;
    };
    let Some(coding) =
        files
            .coding
            .on_the_fly(ranked, identity.meta.content_type, identity.body.len())
    else {
        return false;
    };
    let representation = Representation::coded(coding);
    made_key(&mut files.key, coding);
    let keep = files.coding.caches_variants();
    match cache.entries.get(&*files.key).filter(|_| keep) {
        // Made from this very version of the file (whose stat was just checked).
        Some(coded) if coded.id == *original => {
            let saved = original.size.saturating_sub(coded.body.len() as u64);
            send_cached(coded, request, response, representation, saved);
            files.key.truncate(key_len);
            return true;
        }
        Some(_) => cache.remove(&files.key),
        None => {}
    }
    let identity = &cache.entries[&files.key[..key_len]];
    let mut body = Vec::with_capacity(identity.body.len() / 2);
    if !files.encoder.compress(coding, &identity.body, &mut body)
        || body.len() >= identity.body.len()
    {
        files.key.truncate(key_len);
        return false;
    }
    let mut meta = Meta::coded(original, &identity.opened, now, Some(coding));
    meta.size = body.len() as u64;
    let coded = CachedFile {
        opened: identity.opened.clone(),
        id: *original,
        meta,
        body: body.into(),
        generation: 0,
    };
    let saved = original.size - coded.body.len() as u64;
    let key: Box<[u8]> = files.key.as_slice().into();
    files.key.truncate(key_len);
    if keep && cache.fits(&key, &coded) {
        cache.insert(key.clone(), coded);
        send_cached(
            &cache.entries[&key],
            request,
            response,
            representation,
            saved,
        );
    } else {
        send_cached(&coded, request, response, representation, saved);
    }
    true
}

/// The cache key of a file's body made in `coding` on the fly: apart from a precompressed
/// variant's (a variant put beside the file later is then served, not hidden by this).
fn made_key(key: &mut Vec<u8>, coding: Coding) {
    key.push(0);
    key.extend_from_slice(coding.token().as_bytes());
    key.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_keys_differ_from_variants() {
        let mut key = b"a.css".to_vec();
        made_key(&mut key, Coding::Gzip);
        assert_eq!(key, b"a.css\0gzip\0");
    }
}
