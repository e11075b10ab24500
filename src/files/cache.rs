//! One core's cache of small files: their bytes and response metadata by request path (a
//! coded variant's key adds its coding, so a file and its variants are held apart), bounded
//! in bytes, oldest dropped first.
//!
//! A file is served from the cache only while one `stat` finds it unchanged. A file read
//! for a response is put in the cache once its bytes are in ([`CacheFill`]): the engine
//! reads them after the head is written, and the fill finds its way back to the cache it
//! came from through a weak handle, whatever owns that cache (the static route, or a
//! handler's `Files`).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::{Rc, Weak};

use super::meta::{FileId, Meta};

/// A small file held in memory.
#[derive(Debug)]
pub(crate) struct CachedFile {
    /// The path that was opened, relative to the root and NUL-terminated (for a directory
    /// URL, its index file).
    pub(crate) opened: Box<[u8]>,
    pub(crate) id: FileId,
    pub(crate) meta: Meta,
    pub(crate) body: Box<[u8]>,
    /// When it was inserted, to tell its place in the eviction order from a stale one.
    pub(crate) generation: u64,
}

/// Small files by request path, bounded in total bytes (bodies, keys and a fixed cost per
/// entry), dropped oldest first when full.
#[derive(Debug, Default)]
pub(crate) struct FileCache {
    pub(crate) entries: HashMap<Box<[u8]>, CachedFile>,
    /// Keys in insertion order with the generation they were inserted with; a key removed
    /// or inserted again since leaves a stale pair that eviction skips.
    order: VecDeque<(Box<[u8]>, u64)>,
    generation: u64,
    bytes: usize,
    pub(crate) capacity: usize,
}

impl FileCache {
    /// An empty cache holding at most `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> FileCache {
        FileCache {
            capacity,
            ..FileCache::default()
        }
    }
}

/// Memory an entry costs besides its body and key: map slot, path, validators.
const ENTRY_OVERHEAD: usize = 256;

impl FileCache {
    fn cost(key: &[u8], entry: &CachedFile) -> usize {
        entry.body.len() + key.len() + entry.opened.len() + entry.meta.etag.len() + ENTRY_OVERHEAD
    }

    pub(crate) fn remove(&mut self, key: &[u8]) {
        if let Some(old) = self.entries.remove(key) {
            self.bytes -= Self::cost(key, &old);
        }
    }

    /// Whether `entry` under `key` could be held at all (it is no bigger than the cache).
    pub(crate) fn fits(&self, key: &[u8], entry: &CachedFile) -> bool {
        Self::cost(key, entry) <= self.capacity
    }

    pub(crate) fn insert(&mut self, key: Box<[u8]>, mut entry: CachedFile) {
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

/// The cache a [`CacheFill`] goes back to.
pub(crate) type SharedCache = Rc<RefCell<FileCache>>;

/// A cache entry waiting for its bytes: the engine reads them, then calls
/// [`CacheFill::fill`].
#[derive(Debug)]
pub struct CacheFill {
    cache: Weak<RefCell<FileCache>>,
    key: Box<[u8]>,
    entry: CachedFile,
}

impl CacheFill {
    pub(crate) fn new(cache: &SharedCache, key: Box<[u8]>, entry: CachedFile) -> CacheFill {
        CacheFill {
            cache: Rc::downgrade(cache),
            key,
            entry,
        }
    }

    /// Stores `bytes`, the whole file, in the cache it came from (if that still exists).
    pub fn fill(self, bytes: &[u8]) {
        let CacheFill {
            cache,
            key,
            mut entry,
        } = self;
        if let Some(cache) = cache.upgrade() {
            entry.body = bytes.into();
            cache.borrow_mut().insert(key, entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
