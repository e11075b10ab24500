//! Values that parse but make no sense (a zero timeout, a ring depth that is not a power
//! of two, a mount with dot segments): refused with one line naming the key.

use super::{Config, ConfigError};
use crate::http::request::MAX_HEADERS_LIMIT;

impl Config {
    /// Checks values that parse but make no sense; `origin` names the file in the error.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("{origin}: {key} {why}")));
        let http = &self.http;
        if http.max_request_head_bytes < 64 {
            return bad("http.max_request_head_bytes", "must be at least 64");
        }
        if http.max_request_head_bytes > 1024 * 1024 {
            return bad("http.max_request_head_bytes", "must be at most 1048576");
        }
        if http.max_headers == 0 || http.max_headers > MAX_HEADERS_LIMIT {
            return bad("http.max_headers", "must be between 1 and 256");
        }
        if http.max_target_bytes == 0 || http.max_target_bytes >= http.max_request_head_bytes {
            return bad(
                "http.max_target_bytes",
                "must be above 0 and below http.max_request_head_bytes",
            );
        }
        for (key, value) in [
            ("http.header_timeout_ms", http.header_timeout_ms),
            ("http.body_timeout_ms", http.body_timeout_ms),
            ("http.keepalive_timeout_ms", http.keepalive_timeout_ms),
            ("http.write_timeout_ms", http.write_timeout_ms),
            ("server.drain_timeout_ms", self.server.drain_timeout_ms),
        ] {
            if value == 0 {
                return bad(key, "must be above 0");
            }
        }
        if let Err((key, why)) = self.websocket.check() {
            return bad(key, why);
        }
        if let Err((key, why)) = self.compression.check() {
            return bad(key, &why);
        }
        if self.server.max_connections_per_core == 0 {
            return bad("server.max_connections_per_core", "must be above 0");
        }
        if self.server.backlog == 0 {
            return bad("server.backlog", "must be above 0");
        }
        if self.runtime.ring_depth < 8 || !self.runtime.ring_depth.is_power_of_two() {
            return bad("runtime.ring_depth", "must be a power of two, at least 8");
        }
        let stats = &self.report.stats_path;
        // Braces would read as route parameters.
        if !stats.is_empty()
            && (!stats.starts_with('/') || stats.contains(['?', '#', ' ', '{', '}']))
        {
            return bad(
                "report.stats_path",
                "must be empty or a path starting with /, without braces",
            );
        }
        for (key, path) in [
            ("report.metrics_path", &self.report.metrics_path),
            ("report.health_path", &self.report.health_path),
        ] {
            if !path.is_empty()
                && (!path.starts_with('/') || path.contains(['?', '#', ' ', '{', '}']))
            {
                return bad(
                    key,
                    "must be empty or a path starting with /, without braces",
                );
            }
        }
        let files = &self.static_files;
        let mount = &files.mount;
        if !mount.starts_with('/')
            || mount.contains(['?', '#', ' ', '%', '\\', '{', '}', '*'])
            || mount
                .split('/')
                .any(|segment| segment == "." || segment == "..")
        {
            return bad(
                "static.mount",
                "must be a path starting with /, without dot segments, escapes or braces",
            );
        }
        if files.index.is_empty() || files.index.contains(['/', '\0']) || files.index == ".." {
            return bad("static.index", "must be a file name");
        }
        if files.chunk_bytes < 4096
            || files.chunk_bytes > 16 << 20
            || !files.chunk_bytes.is_multiple_of(4096)
        {
            return bad(
                "static.chunk_bytes",
                "must be a multiple of 4096 between 4096 and 16777216",
            );
        }
        if files.cache_file_max_bytes > files.cache_bytes {
            return bad(
                "static.cache_file_max_bytes",
                "must be at most static.cache_bytes",
            );
        }
        if let Some(tls) = &self.tls {
            if let Err((key, why)) = tls.validate() {
                return Err(ConfigError(format!("{origin}: {key} {why}")));
            }
            let same_port = tls.port == self.server.port && tls.port != 0;
            if same_port && tls.cleartext != super::Cleartext::Off {
                return bad("tls.port", "must differ from server.port");
            }
        }
        let runtime = &self.runtime;
        if runtime.recv_buffers == 0 || !runtime.recv_buffers.is_power_of_two() {
            return bad("runtime.recv_buffers", "must be a power of two up to 32768");
        }
        if runtime.recv_buffer_bytes < 256 || runtime.recv_buffer_bytes > 1 << 20 {
            return bad(
                "runtime.recv_buffer_bytes",
                "must be between 256 and 1048576",
            );
        }
        if self.runtime.io_memory_kb < 64 {
            return bad("runtime.io_memory_kb", "must be at least 64");
        }
        if let Err(why) = super::upstream::validate(&self.upstream, &self.proxy) {
            return Err(ConfigError(format!("{origin}: {why}")));
        }
        Ok(())
    }
}
