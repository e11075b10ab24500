//! Configuration: the TOML file, the command-line flags over it, and their validation.
//!
//! Owns the shape of `config/percore.toml` (every table and key, `sections`), the defaults
//! used when no file is given (they equal the shipped file), the flags (`flags`), and
//! turning a core specification into the list of CPUs to pin executors to (`cores`).
//! Everything that can be wrong with the user's input is caught here and reported as one
//! line naming the file, the line and the key. From the tables it builds the plain limit
//! structs the layers below take (`http::request::Limits`). It binds no socket and starts
//! no executor (see `server`).

mod compression;
pub(crate) mod cores;
mod flags;
mod sections;
mod tls;
mod upstream;
mod validate;
mod websocket;

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

pub use compression::CompressionConfig;
pub use cores::CoreSpec;
pub(crate) use cores::{format_cores, usable_cores};
pub(crate) use flags::Args;
#[cfg(feature = "plots")]
pub(crate) use flags::Command;
/// An address or network, as `server.proxy_from` holds them.
pub use ipnet::IpNet;
pub use sections::{
    HttpConfig, IdleWait, LogConfig, LogFormat, ReportConfig, ReportFormat, RuntimeConfig,
    ServerConfig, StaticConfig,
};
pub use tls::{Cleartext, SniCertificate, TlsConfig};
pub use upstream::{
    parse_server, server_tls_name, Balance, ProxyConfig, ServerAddr, UpstreamConfig,
};
pub use websocket::WebSocketConfig;

use crate::http::request::{Limits, MAX_HEADERS_LIMIT};

/// The whole configuration, one field per table of the file.
///
/// Its tables grow with new keys (they are `#[non_exhaustive]`): a program that builds one
/// in code starts from [`Config::default`] (the shipped file's values) or a file, and sets
/// fields. [`App::start`](crate::App::start) validates what it is given as a file is
/// validated when read.
///
/// ```
/// let mut config = percore::Config::default();
/// config.server.port = 0;
/// config.http.max_body_bytes = 1 << 20;
/// assert!(config.validate("in code").is_ok());
/// config.http.max_headers = 0;
/// let error = config.validate("in code").unwrap_err();
/// assert_eq!(error.to_string(), "in code: http.max_headers must be between 1 and 256");
/// ```
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// `[server]`: where to listen and on which cores.
    pub server: ServerConfig,
    /// `[http]`: protocol limits and timeouts.
    pub http: HttpConfig,
    /// `[report]`: live and shutdown reports.
    pub report: ReportConfig,
    /// `[runtime]`: executor and ring settings.
    pub runtime: RuntimeConfig,
    /// `[static]`: files served from a directory.
    #[serde(rename = "static")]
    pub static_files: StaticConfig,
    /// `[log]`: the access log.
    pub log: LogConfig,
    /// `[tls]`: HTTPS; none without the table.
    pub tls: Option<TlsConfig>,
    /// `[[upstream]]`: servers requests are forwarded to.
    pub upstream: Vec<UpstreamConfig>,
    /// `[[proxy]]`: which requests go to which upstream (the longest matching path prefix).
    pub proxy: Vec<ProxyConfig>,
    /// `[websocket]`: WebSocket connections' limits and timers.
    pub websocket: WebSocketConfig,
    /// `[compression]`: content codings of responses (precompressed files, coding on the fly).
    pub compression: CompressionConfig,
    /// `[app]`: settings of the application built on percore, handed as they are to its
    /// per-core state factory (`Setup::settings`); percore reads none of them.
    pub app: toml::Table,
}

/// A configuration error: one line for the user, naming the file, line and key.
#[derive(Debug)]
#[non_exhaustive]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and validates a TOML file. Relative paths in it (`static.root`, …) are taken
    /// relative to the file's directory.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config {}: {e}", path.display())))?;
        let mut config = Config::from_toml(&text, &path.display().to_string())?;
        let dir = path.parent().unwrap_or(Path::new(""));
        let root = &config.static_files.root;
        if root.is_relative() && !root.as_os_str().is_empty() {
            config.static_files.root = dir.join(root);
        }
        if let Some(tls) = config.tls.as_mut() {
            for path in tls.paths_mut() {
                if path.is_relative() && !path.as_os_str().is_empty() {
                    *path = dir.join(&*path);
                }
            }
        }
        Ok(config)
    }

    /// Parses TOML text; `origin` names the file in error messages, which read
    /// `FILE line N: table.key: what is wrong`.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let deserializer = toml::Deserializer::new(text);
        let config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let line = inner
                .span()
                .map(|span| format!(" line {}", 1 + text[..span.start].matches('\n').count()))
                .unwrap_or_default();
            let message = inner.message().trim().replace('\n', " ");
            // An unknown key names itself; any other error is about the key at `key`.
            let key = match key.as_str() {
                "." | "" => String::new(),
                _ if message.starts_with("unknown field") => String::new(),
                key => format!("{key}: "),
            };
            ConfigError(format!("{origin}{line}: {key}{message}"))
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    /// The address every core listens on (for cleartext HTTP).
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.server.host, self.server.port)
    }

    /// The address of the TLS listener, when there is one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls
            .as_ref()
            .map(|tls| SocketAddr::new(self.server.host, tls.port))
    }

    /// Whether the cleartext listener is on (it is unless `tls.cleartext = "off"`).
    pub fn serves_cleartext(&self) -> bool {
        self.tls
            .as_ref()
            .is_none_or(|tls| tls.cleartext != Cleartext::Off)
    }

    /// The limits requests are checked against.
    pub(crate) fn limits(&self) -> Limits {
        let http = &self.http;
        Limits {
            max_head_bytes: http.max_request_head_bytes,
            max_headers: http.max_headers.min(MAX_HEADERS_LIMIT),
            max_target_bytes: http.max_target_bytes,
            max_body_bytes: http.max_body_bytes,
            max_requests: http.max_requests_per_connection,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn unknown_key_names_the_key_and_the_file() {
        let err = Config::from_toml("[server]\nporrt = 1\n", "x.toml").unwrap_err();
        assert!(
            err.0.starts_with("x.toml line 2: unknown field `porrt`"),
            "{err}"
        );
    }

    #[test]
    fn a_wrong_type_names_the_key() {
        let err = Config::from_toml("[server]\nport = \"eighty\"\n", "x.toml").unwrap_err();
        assert_eq!(
            err.0,
            "x.toml line 2: server.port: invalid type: string \"eighty\", expected u16"
        );
        let err = Config::from_toml("[http]\n\nmax_headers = -1\n", "f").unwrap_err();
        assert!(err.0.starts_with("f line 3: http.max_headers: "), "{err}");
        let err = Config::from_toml("[server]\ncores = \"x\"\n", "f").unwrap_err();
        assert!(err.0.starts_with("f line 2: server.cores: "), "{err}");
        let err =
            Config::from_toml("[server]\nproxy_from = [\"::1\", \"nope\"]\n", "f").unwrap_err();
        assert!(err.0.starts_with("f line 2: server.proxy_from"), "{err}");
        assert!(err.0.contains("\"nope\" is not an address"), "{err}");
    }

    /// The shipped file serves its `public_html/`; the built-in defaults serve no files, as
    /// there is no file to resolve a relative root against. Every other value is equal.
    #[test]
    fn shipped_config_equals_the_defaults() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut file = Config::from_file(&dir.join("percore.toml")).unwrap();
        assert_eq!(file.static_files.root, dir.join("public_html"));
        assert!(file.static_files.root.join("index.html").is_file());
        file.static_files.root = PathBuf::new();
        assert_eq!(format!("{file:?}"), format!("{:?}", Config::default()));
    }
}
