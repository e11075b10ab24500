//! Configuration: the TOML file, the command-line overrides and their validation.
//!
//! Owns the shape of `config/percore.toml` (every section and key), the defaults used when
//! no file is given (they equal the shipped file), and turning a core specification into the
//! concrete list of CPUs to pin executors to. Everything that can be wrong with the user's
//! input is caught here and reported as one line naming the file, the key or the core.
//! It does not bind sockets or start executors (see `server`).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The whole configuration, one field per TOML section.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[server]`: where to listen and on which cores.
    pub server: ServerConfig,
    /// `[http]`: protocol limits and timeouts.
    pub http: HttpConfig,
    /// `[report]`: live and shutdown reports.
    pub report: ReportConfig,
    /// `[runtime]`: glommio executor settings.
    pub runtime: RuntimeConfig,
    /// `[static]`: files served from a directory.
    #[serde(rename = "static")]
    pub files: StaticConfig,
    /// `[log]`: the access log.
    pub log: LogConfig,
    /// `[app]`: settings of the application built on percore, handed as they are to its
    /// per-core state factory (`Setup::settings`); percore reads none of them.
    pub app: toml::Table,
}

/// `[log]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// File the access log is appended to; empty: no access log.
    pub access: PathBuf,
    /// `combined` (nginx's, plus duration in µs and core) or `json`.
    pub format: crate::access_log::LogFormat,
    /// Bytes of log lines one core keeps between two hand-overs to the writer (one report
    /// tick); past it lines are dropped and counted, never waited for.
    pub buffer_bytes: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            access: PathBuf::new(),
            format: crate::access_log::LogFormat::Combined,
            buffer_bytes: 4 * 1024 * 1024,
        }
    }
}

/// `[server]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on, IPv4 or IPv6 (`"::"` for all IPv6 addresses).
    pub host: IpAddr,
    /// TCP port; 0 picks a free one (tests use this).
    pub port: u16,
    /// Cores to run one executor on each: `"all"`, a list `[0, 2]` or `"0-3,6"`.
    pub cores: CoreSpec,
    /// Open connections one core keeps; past it new connections get a minimal 503 and close.
    pub max_connections_per_core: usize,
    /// Listen backlog of each core's socket (the kernel caps it at `net.core.somaxconn`).
    pub backlog: u32,
    /// On SIGINT/SIGTERM, how long busy connections may take to finish before being cut.
    pub drain_timeout_ms: u64,
    /// While draining, how long an idle keep-alive connection is kept for its client's next
    /// request (answered with `Connection: close`) before it is closed.
    pub drain_idle_grace_ms: u64,
    /// Accept a connection only once its first bytes arrive (`TCP_DEFER_ACCEPT`).
    pub defer_accept: bool,
    /// File the serving process writes its PID to once it serves, and removes at exit;
    /// empty: none.
    pub pid_file: PathBuf,
    /// Every connection starts with a PROXY protocol header (version 1 or 2) naming the
    /// client, as a load balancer sends it; one that does not is closed.
    pub proxy_protocol: bool,
    /// Sources allowed to send PROXY headers: addresses or networks (`10.0.0.0/8`); a
    /// connection from anywhere else is closed.
    pub proxy_from: Vec<String>,
}

/// `[http]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Request line plus headers; a bigger head is answered 431.
    pub max_request_head_bytes: usize,
    /// Header fields per request; more are answered 431.
    pub max_headers: usize,
    /// Request target length; a longer one is answered 414.
    pub max_target_bytes: usize,
    /// Request body (Content-Length or chunked total); a bigger one is answered 413.
    pub max_body_bytes: u64,
    /// Memory one core may hold for request bodies still arriving (gathered for their
    /// handlers); past it the request that would grow it is answered 503 and its connection
    /// closed.
    pub body_buffer_bytes_per_core: usize,
    /// Time from the first byte of a request head to its end; past it the client gets 408.
    pub header_timeout_ms: u64,
    /// Longest wait for more body bytes before the connection is cut with 408.
    pub body_timeout_ms: u64,
    /// How long an idle persistent connection is kept before it is closed.
    pub keepalive_timeout_ms: u64,
    /// Longest wait for a client to accept more response bytes before the connection is cut.
    pub write_timeout_ms: u64,
    /// Requests served on one connection before it is closed politely (0: no limit).
    pub max_requests_per_connection: u64,
}

/// `[report]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportConfig {
    /// Measure request latencies at all; false also stops live lines, `/stats` updates and
    /// histogram files (the benchmark uses it to price the measuring).
    pub enabled: bool,
    /// Period of the live per-core report lines; 0 turns them off.
    pub interval_ms: u64,
    /// Directory for the shutdown histogram files and the interval log; empty: none.
    pub dir: PathBuf,
    /// Live and summary lines as aligned text or as JSON Lines.
    pub format: ReportFormat,
    /// Live lines for every core as well as the total line (on many cores, the total alone
    /// keeps the view readable; `/stats`, `/metrics` and the summary are per core anyway).
    pub per_core: bool,
    /// Path of the JSON statistics route; empty turns it off.
    pub stats_path: String,
    /// Path of the Prometheus metrics route; empty turns it off.
    pub metrics_path: String,
    /// Path of the health route for load balancers: 200 while serving, 503 from the moment
    /// a drain begins; empty turns it off.
    pub health_path: String,
}

/// How reports are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    /// Aligned columns for people.
    #[default]
    Text,
    /// One JSON object per line for scripts.
    Json,
}

/// `[runtime]` section: glommio executor knobs.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Memory each executor registers with io_uring; it counts against RLIMIT_MEMLOCK.
    pub io_memory_kb: usize,
    /// Entries in each io_uring submission queue.
    pub ring_depth: usize,
    /// Microseconds an idle executor spins before sleeping in the kernel (0: sleep at once).
    pub spin_before_park_us: u64,
    /// Receive buffers in each core's provided-buffer ring (a power of two, at most 32768).
    /// Connections hold none while they wait; past this many receiving at once, receives
    /// wait for a buffer to come back (`ENOBUFS`, then armed again).
    pub recv_buffers: u16,
    /// Bytes of one receive buffer; a receive takes at most this many bytes at a time.
    pub recv_buffer_bytes: usize,
    /// Where a core with nothing to do sleeps: in its own ring when glommio has nothing of
    /// its to run, or always through glommio (the ring's eventfd).
    pub idle_wait: IdleWait,
}

/// Where an idle core sleeps (`runtime.idle_wait`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdleWait {
    /// In percore's ring (one enter that waits), unless glommio is reading a file for it.
    #[default]
    Ring,
    /// Always through glommio, woken by the ring's eventfd.
    Glommio,
}

/// `[static]` section: a directory served under a path prefix.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaticConfig {
    /// Directory whose files are served; empty turns static files off. A relative path in a
    /// config file is taken relative to that file's directory.
    pub root: PathBuf,
    /// URL path prefix the root is served under (`"/"`: the whole site).
    pub mount: String,
    /// File answered for a directory's own URL (`/dir/`).
    pub index: String,
    /// Files up to this size are kept in memory per core after their first read, and checked
    /// against the file system (one `stat`) on every hit; 0 turns the cache off.
    pub cache_file_max_bytes: usize,
    /// Memory each core's file cache may hold; past it older entries are dropped.
    pub cache_bytes: usize,
    /// Bytes read from a file and written to the client per step: the memory one transfer
    /// holds, whatever the file's size.
    pub chunk_bytes: usize,
    /// Files of at least this size are read with direct I/O (`O_DIRECT`), bypassing the page
    /// cache so that one huge download does not evict the hot small files; 0: never.
    pub directio_bytes: u64,
}

impl Default for StaticConfig {
    fn default() -> Self {
        StaticConfig {
            root: PathBuf::new(),
            mount: "/".into(),
            index: "index.html".into(),
            cache_file_max_bytes: 64 * 1024,
            cache_bytes: 8 * 1024 * 1024,
            chunk_bytes: 256 * 1024,
            directio_bytes: 16 * 1024 * 1024,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 8080,
            cores: CoreSpec::All,
            max_connections_per_core: 20_000,
            backlog: 4096,
            drain_timeout_ms: 10_000,
            drain_idle_grace_ms: 1000,
            defer_accept: true,
            pid_file: PathBuf::new(),
            proxy_protocol: false,
            proxy_from: vec!["127.0.0.1".into(), "::1".into()],
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_request_head_bytes: 16 * 1024,
            max_headers: 100,
            max_target_bytes: 8 * 1024,
            max_body_bytes: 1024 * 1024,
            body_buffer_bytes_per_core: 256 * 1024 * 1024,
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            keepalive_timeout_ms: 60_000,
            write_timeout_ms: 30_000,
            max_requests_per_connection: 0,
        }
    }
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            enabled: true,
            interval_ms: 1000,
            dir: PathBuf::new(),
            format: ReportFormat::Text,
            per_core: false,
            stats_path: "/stats".into(),
            metrics_path: "/metrics".into(),
            health_path: "/healthz".into(),
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            io_memory_kb: 1024,
            ring_depth: 256,
            spin_before_park_us: 0,
            recv_buffers: 1024,
            recv_buffer_bytes: 4096,
            idle_wait: IdleWait::Ring,
        }
    }
}

/// Upper bound on `max_headers`: the parser keeps header slots on the stack.
pub const MAX_HEADERS_LIMIT: usize = 256;

/// A start-up error: one line for the user.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn error(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

impl Config {
    /// Reads and validates a TOML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| error(format!("cannot read config {}: {e}", path.display())))?;
        let mut config = Config::from_toml(&text, &path.display().to_string())?;
        let root = &config.files.root;
        if root.is_relative() && !root.as_os_str().is_empty() {
            let dir = path.parent().unwrap_or(Path::new(""));
            config.files.root = dir.join(root);
        }
        Ok(config)
    }

    /// Parses TOML text; `origin` names the file in error messages.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|span| format!(" line {}", 1 + text[..span.start].matches('\n').count()))
                .unwrap_or_default();
            let message = e.message().trim().replace('\n', " ");
            error(format!("{origin}{line}: {message}"))
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(error(format!("{origin}: {key} {why}")));
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
        if let Some(bad_source) = self
            .server
            .proxy_from
            .iter()
            .find(|s| crate::proxy::Network::parse(s).is_none())
        {
            return Err(error(format!(
                "{origin}: server.proxy_from {bad_source:?} is not an address or a network like 10.0.0.0/8"
            )));
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
        let files = &self.files;
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
        Ok(())
    }

    /// The address every core listens on.
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.server.host, self.server.port)
    }

    /// Milliseconds to a `Duration`, for the timeout fields.
    pub fn millis(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }
}

/// Which cores to run on, as written by the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoreSpec {
    /// Every core in the process's affinity mask.
    All,
    /// These cores, in this order.
    List(Vec<usize>),
    /// The first N usable cores (`--workers N`).
    First(usize),
}

impl CoreSpec {
    /// Parses `"all"` or a taskset-style list such as `"0-3,6"`.
    pub fn parse(text: &str) -> Result<CoreSpec, ConfigError> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("all") {
            return Ok(CoreSpec::All);
        }
        let invalid = || {
            error(format!(
                "invalid core list {text:?}: expected \"all\", \"0-3,6\" or a list like [0, 2]"
            ))
        };
        let mut cores = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            let (lo, hi) = match part.split_once('-') {
                Some((lo, hi)) => (lo.trim(), hi.trim()),
                None => (part, part),
            };
            let lo: usize = lo.parse().map_err(|_| invalid())?;
            let hi: usize = hi.parse().map_err(|_| invalid())?;
            if lo > hi || hi >= 4096 {
                return Err(invalid());
            }
            cores.extend(lo..=hi);
        }
        Ok(CoreSpec::List(cores))
    }

    /// Resolves the specification against the cores this process may run on.
    pub fn resolve(&self, usable: &[usize]) -> Result<Vec<usize>, ConfigError> {
        if usable.is_empty() {
            return Err(error("no usable cores: the process affinity mask is empty"));
        }
        let chosen = match self {
            CoreSpec::All => usable.to_vec(),
            CoreSpec::First(n) => {
                if *n == 0 || *n > usable.len() {
                    return Err(error(format!(
                        "--workers {n} is not possible: {} usable cores ({})",
                        usable.len(),
                        format_cores(usable)
                    )));
                }
                usable[..*n].to_vec()
            }
            CoreSpec::List(list) => {
                if list.is_empty() {
                    return Err(error("server.cores is empty"));
                }
                let mut seen = Vec::with_capacity(list.len());
                for &core in list {
                    if !usable.contains(&core) {
                        return Err(error(format!(
                            "core {core} is not available; usable cores: {}",
                            format_cores(usable)
                        )));
                    }
                    if seen.contains(&core) {
                        return Err(error(format!("core {core} is listed twice")));
                    }
                    seen.push(core);
                }
                seen
            }
        };
        Ok(chosen)
    }
}

impl<'de> Deserialize<'de> for CoreSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            List(Vec<usize>),
        }
        let raw = Raw::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom(
                "server.cores must be \"all\", a string like \"0-3,6\" or a list like [0, 2]",
            )
        })?;
        match raw {
            Raw::Text(text) => CoreSpec::parse(&text).map_err(serde::de::Error::custom),
            Raw::List(list) => Ok(CoreSpec::List(list)),
        }
    }
}

/// The cores this process may run on, ascending.
pub fn usable_cores() -> Vec<usize> {
    let mut cores: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|id| id.id)
        .collect();
    cores.sort_unstable();
    cores
}

/// Formats cores taskset-style: `[0, 1, 2, 5]` → `"0-2,5"`.
pub fn format_cores(cores: &[usize]) -> String {
    let mut sorted = cores.to_vec();
    sorted.sort_unstable();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_spec_parses_ranges_and_lists() {
        assert_eq!(CoreSpec::parse("all").unwrap(), CoreSpec::All);
        assert_eq!(
            CoreSpec::parse("0-3,6").unwrap(),
            CoreSpec::List(vec![0, 1, 2, 3, 6])
        );
        assert!(CoreSpec::parse("3-1").is_err());
        assert!(CoreSpec::parse("a").is_err());
        assert!(CoreSpec::parse("").is_err());
    }

    #[test]
    fn unavailable_core_is_named_with_the_usable_ones() {
        let err = CoreSpec::List(vec![7]).resolve(&[0, 1]).unwrap_err();
        assert_eq!(err.0, "core 7 is not available; usable cores: 0-1");
    }

    #[test]
    fn format_cores_compacts_runs() {
        assert_eq!(format_cores(&[5, 0, 1, 2]), "0-2,5");
        assert_eq!(format_cores(&[3]), "3");
    }

    #[test]
    fn unknown_key_names_the_key_and_the_file() {
        let err = Config::from_toml("[server]\nporrt = 1\n", "x.toml").unwrap_err();
        assert!(
            err.0.starts_with("x.toml line 2: unknown field `porrt`"),
            "{err}"
        );
    }

    /// The shipped file serves its `public_html/`; the built-in defaults serve no files, as
    /// there is no file to resolve a relative root against. Every other value is equal.
    #[test]
    fn shipped_config_equals_the_defaults() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut file = Config::from_file(&dir.join("percore.toml")).unwrap();
        assert_eq!(file.files.root, dir.join("public_html"));
        assert!(file.files.root.join("index.html").is_file());
        file.files.root = PathBuf::new();
        assert_eq!(format!("{file:?}"), format!("{:?}", Config::default()));
    }
}
