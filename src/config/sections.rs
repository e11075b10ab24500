//! The tables of the configuration file, one struct per table, with their defaults (equal
//! to `config/percore.toml`). Each field's doc says what it does and what happens at its
//! limit; `validate` checks the values, `mod.rs` reads them.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

use super::cores::CoreSpec;
use crate::http::request::Limits;

/// `[log]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct LogConfig {
    /// File the access log is appended to; empty: no access log.
    pub access: PathBuf,
    /// `combined` (nginx's, plus duration in µs and core) or `json`.
    pub format: LogFormat,
    /// Bytes of log lines one core keeps between two hand-overs to the writer (one report
    /// tick); past it lines are dropped and counted, never waited for.
    pub buffer_bytes: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            access: PathBuf::new(),
            format: LogFormat::Combined,
            buffer_bytes: 4 * 1024 * 1024,
        }
    }
}

/// `[server]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
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
    #[serde(deserialize_with = "networks")]
    pub proxy_from: Vec<IpNet>,
}

/// `[http]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
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
#[non_exhaustive]
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
#[non_exhaustive]
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
#[non_exhaustive]
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
#[non_exhaustive]
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
#[non_exhaustive]
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
            proxy_from: vec![
                IpNet::from(IpAddr::from([127, 0, 0, 1])),
                IpNet::from(IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
            ],
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        let limits = Limits::default();
        HttpConfig {
            max_request_head_bytes: limits.max_head_bytes,
            max_headers: limits.max_headers,
            max_target_bytes: limits.max_target_bytes,
            max_body_bytes: limits.max_body_bytes,
            body_buffer_bytes_per_core: 256 * 1024 * 1024,
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            keepalive_timeout_ms: 60_000,
            write_timeout_ms: 30_000,
            max_requests_per_connection: limits.max_requests,
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

/// How access log lines are written (`log.format`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LogFormat {
    /// nginx's `combined`, then the duration in µs and the core.
    #[default]
    Combined,
    /// One JSON object per line with the same fields.
    Json,
}

/// `server.proxy_from`: addresses (`127.0.0.1`) or networks (`10.0.0.0/8`), read once here.
fn networks<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<IpNet>, D::Error> {
    let texts = Vec::<String>::deserialize(deserializer)?;
    texts
        .iter()
        .map(|text| {
            crate::proxy_protocol::parse_network(text).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "{text:?} is not an address or a network like 10.0.0.0/8"
                ))
            })
        })
        .collect()
}
