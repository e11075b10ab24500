//! [`Files`]: a handler's own static files, served with percore's machinery.

use crate::config::{CompressionConfig, StaticConfig};
use crate::files::StaticFiles;

/// A core's own static files, for [`crate::Response::file`]: a root directory with percore's
/// validators, ranges and cache of small files, and (once [`Files::compressed`] asks for
/// it) precompressed variants. Build one per core in the state factory (in a `RefCell`,
/// since serving fills its cache).
#[derive(Debug)]
pub struct Files(pub(crate) StaticFiles);

impl Files {
    /// Files beneath `root`, with the `[static]` settings (`cache_file_max_bytes`,
    /// `cache_bytes`, `chunk_bytes`, `directio_bytes`; its `root` and `mount` are not used).
    /// Their bodies go out as they are; see [`Files::compressed`].
    pub fn open(
        root: impl AsRef<std::path::Path>,
        settings: &StaticConfig,
    ) -> std::io::Result<Files> {
        let config = StaticConfig {
            root: root.as_ref().to_path_buf(),
            mount: "/".into(),
            ..settings.clone()
        };
        let fd = StaticFiles::open_root(&config.root)?;
        let files = StaticFiles::new(&config, &CompressionConfig::default(), fd);
        Ok(Files(files.without_coding()))
    }

    /// The same files with their bodies coded as the `[compression]` settings say (a
    /// precompressed `file.css.gz` beside `file.css`, …), as the static route does.
    pub fn compressed(self, settings: &CompressionConfig) -> Files {
        let Files(files) = self;
        Files(files.with_coding(settings))
    }
}
