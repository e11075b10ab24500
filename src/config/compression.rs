//! The `[compression]` table: which content codings responses may be sent in, in which
//! order of preference, for which types and sizes, and at which levels.

use serde::Deserialize;

use crate::http::coding::Coding;

/// `[compression]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CompressionConfig {
    /// Send coded bodies at all; false: every body goes out as it is, precompressed files
    /// included, and no `Vary: Accept-Encoding` is added.
    pub enabled: bool,
    /// The codings offered (`zstd`, `br`, `gzip`), in the server's order of preference among
    /// those a client accepts with the same weight.
    pub codings: Vec<String>,
    /// gzip's level when compressing on the fly: 1 (fastest) to 9 (smallest), as zlib (and
    /// nginx's `gzip_comp_level`) means them.
    pub gzip_level: u32,
    /// Brotli's level when compressing on the fly: 0 (fastest) to 11 (smallest).
    pub brotli_level: u32,
    /// Zstandard's level when compressing on the fly: 1 (fastest) to 22 (smallest).
    pub zstd_level: i32,
    /// Bodies shorter than this are not compressed on the fly (their coded form would save
    /// little or even grow).
    pub min_bytes: u64,
    /// Media types compressed on the fly: `type/subtype`, or `type/*` for all of a type;
    /// compared without parameters and in any case.
    pub types: Vec<String>,
    /// Serve `file.ext.zst`, `.br` or `.gz` beside a static `file.ext` to a client that
    /// accepts its coding, when it is not older than the file.
    pub precompressed: bool,
    /// Keep a static file compressed on the fly in the core's file cache beside the file,
    /// made once per version; false: compress it again for every response (as nginx's
    /// `gzip` does; the benchmark's per-response rows), costing CPU per response.
    pub cache_variants: bool,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        CompressionConfig {
            enabled: true,
            codings: Coding::ALL.iter().map(|c| c.token().into()).collect(),
            gzip_level: 6,
            brotli_level: 4,
            zstd_level: 3,
            min_bytes: 512,
            types: [
                "text/*",
                "application/json",
                "application/javascript",
                "image/svg+xml",
                "application/xml",
            ]
            .map(String::from)
            .to_vec(),
            precompressed: true,
            cache_variants: true,
        }
    }
}

impl CompressionConfig {
    /// The codings offered, in the server's order (as validated: each known, each once).
    pub fn offered(&self) -> Vec<Coding> {
        let mut offered = Vec::with_capacity(self.codings.len());
        for coding in self
            .codings
            .iter()
            .filter_map(|c| Coding::from_token(c.as_bytes()))
        {
            if !offered.contains(&coding) {
                offered.push(coding);
            }
        }
        offered
    }

    /// Whether bodies of `content_type` (parameters allowed) are compressed on the fly.
    pub fn compresses(&self, content_type: &str) -> bool {
        let essence = content_type.split(';').next().unwrap_or("").trim();
        let Some((kind, _)) = essence.split_once('/') else {
            return false;
        };
        self.types
            .iter()
            .any(|pattern| match pattern.strip_suffix("/*") {
                Some(pattern_kind) => pattern_kind.eq_ignore_ascii_case(kind),
                None => pattern.eq_ignore_ascii_case(essence),
            })
    }

    /// Values that parse but make no sense: the key and why.
    pub(super) fn check(&self) -> Result<(), (&'static str, String)> {
        let mut seen = Vec::new();
        for name in &self.codings {
            let Some(coding) = Coding::from_token(name.as_bytes()) else {
                let why = format!("names {name:?}; the codings are \"zstd\", \"br\" and \"gzip\"");
                return Err(("compression.codings", why));
            };
            if name != coding.token() {
                let why = format!("names {name:?}, which is written {:?}", coding.token());
                return Err(("compression.codings", why));
            }
            if seen.contains(&coding) {
                return Err(("compression.codings", format!("names {name:?} twice")));
            }
            seen.push(coding);
        }
        if seen.is_empty() {
            let why = "must name at least one coding (enabled = false turns compression off)";
            return Err(("compression.codings", why.into()));
        }
        if !(1..=9).contains(&self.gzip_level) {
            return Err(("compression.gzip_level", "must be between 1 and 9".into()));
        }
        if self.brotli_level > 11 {
            return Err((
                "compression.brotli_level",
                "must be between 0 and 11".into(),
            ));
        }
        if !(1..=22).contains(&self.zstd_level) {
            return Err(("compression.zstd_level", "must be between 1 and 22".into()));
        }
        for pattern in &self.types {
            if !is_media_range(pattern) {
                return Err((
                    "compression.types",
                    format!("names {pattern:?}; each must be \"type/subtype\" or \"type/*\""),
                ));
            }
        }
        Ok(())
    }
}

/// `type/subtype` or `type/*`, each a token.
fn is_media_range(pattern: &str) -> bool {
    let token = |s: &str| !s.is_empty() && s.bytes().all(crate::http::is_tchar);
    match pattern.split_once('/') {
        Some((kind, subtype)) => token(kind) && kind != "*" && (subtype == "*" || token(subtype)),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_match_by_essence_and_wildcard() {
        let config = CompressionConfig::default();
        assert!(config.compresses("text/css"));
        assert!(config.compresses("Text/HTML; charset=utf-8"));
        assert!(config.compresses("application/json"));
        assert!(config.compresses("image/svg+xml"));
        assert!(!config.compresses("image/png"));
        assert!(!config.compresses("application/gzip"));
        assert!(!config.compresses("nonsense"));
    }

    #[test]
    fn codings_levels_and_types_are_checked() {
        let checked = |adjust: fn(&mut CompressionConfig)| {
            let mut config = CompressionConfig::default();
            adjust(&mut config);
            config.check().map_err(|(key, why)| format!("{key} {why}"))
        };
        assert_eq!(checked(|_| {}), Ok(()));
        assert_eq!(
            checked(|c| c.codings = vec!["gzip".into(), "deflate".into()]),
            Err("compression.codings names \"deflate\"; the codings are \"zstd\", \"br\" and \"gzip\"".into())
        );
        assert_eq!(
            checked(|c| c.codings = vec!["br".into(), "br".into()]),
            Err("compression.codings names \"br\" twice".into())
        );
        assert!(checked(|c| c.codings.clear()).is_err());
        assert!(checked(|c| c.codings = vec!["GZIP".into()]).is_err());
        assert!(checked(|c| c.gzip_level = 0).is_err());
        assert!(checked(|c| c.gzip_level = 10).is_err());
        assert!(checked(|c| c.brotli_level = 12).is_err());
        assert!(checked(|c| c.brotli_level = 0).is_ok());
        assert!(checked(|c| c.zstd_level = 23).is_err());
        assert!(checked(|c| c.types = vec!["text".into()]).is_err());
        assert!(checked(|c| c.types = vec!["*/*".into()]).is_err());
        assert!(checked(|c| c.types = vec!["font/woff2".into()]).is_ok());
        let order = CompressionConfig {
            codings: vec!["gzip".into(), "zstd".into()],
            ..CompressionConfig::default()
        };
        assert_eq!(order.offered(), [Coding::Gzip, Coding::Zstd]);
    }
}
