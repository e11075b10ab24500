//! `[[upstream]]` and `[[proxy]]`: the servers percore forwards requests to, and which
//! requests go where. `--proxy PREFIX=URL` adds one of each from the command line.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use serde::Deserialize;

/// `[[upstream]]`: a named group of servers, with its per-core connection pool.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct UpstreamConfig {
    /// The name `[[proxy]]` entries (and `App::proxy`) refer to it by.
    pub name: String,
    /// Its servers: `host:port`, `[v6]:port`, `http://host:port` or `unix:/path`; a host
    /// name is resolved once, when the configuration is read.
    pub servers: Vec<String>,
    /// Which server takes the next request, chosen on each core by itself (no counter is
    /// shared between cores).
    pub balance: Balance,
    /// Idle connections each core keeps open per server (nginx's `keepalive`); 0: a new
    /// connection per request.
    pub keepalive: usize,
    /// Requests one upstream connection carries before it is closed.
    pub keepalive_requests: u64,
    /// How long an idle pooled connection is kept.
    pub keepalive_timeout_ms: u64,
    /// How long one upstream connection is used at most (nginx's `keepalive_time`): past it,
    /// it is closed once its current request is through.
    pub keepalive_time_ms: u64,
    /// How long connecting may take.
    pub connect_timeout_ms: u64,
    /// How long the server may take between two reads of its response (and to start it).
    pub read_timeout_ms: u64,
    /// How long sending the request may take.
    pub send_timeout_ms: u64,
    /// Failures (connect refused, reset, timeout) within `fail_timeout_ms` that take a
    /// server out of the rotation for `fail_timeout_ms`; 0: never.
    pub max_fails: u32,
    /// See `max_fails`.
    pub fail_timeout_ms: u64,
    /// `Host` sent upstream in place of the client's.
    pub host: Option<String>,
    /// For `https://` servers: the roots their certificates must chain to, a PEM file
    /// (default: the system's, `SSL_CERT_FILE` or `/etc/ssl/certs/ca-certificates.crt`).
    pub tls_ca: Option<PathBuf>,
    /// For `https://` servers: the name sent as SNI and checked in their certificates, in
    /// place of the URL's host.
    pub tls_server_name: Option<String>,
    /// For `https://` servers: accept any certificate (the handshake's signatures are still
    /// checked). Only for tests and private networks where nothing else can be had.
    pub tls_insecure_skip_verify: bool,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            name: String::new(),
            servers: Vec::new(),
            balance: Balance::RoundRobin,
            keepalive: 32,
            keepalive_requests: 1000,
            keepalive_timeout_ms: 60_000,
            keepalive_time_ms: 3_600_000,
            connect_timeout_ms: 1000,
            read_timeout_ms: 60_000,
            send_timeout_ms: 60_000,
            max_fails: 1,
            fail_timeout_ms: 10_000,
            host: None,
            tls_ca: None,
            tls_server_name: None,
            tls_insecure_skip_verify: false,
        }
    }
}

/// How an upstream's servers share its requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Each in turn.
    #[default]
    RoundRobin,
    /// The one with the fewest requests under way on this core.
    LeastConn,
}

/// `[[proxy]]`: requests whose path starts with `path` go to `upstream`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ProxyConfig {
    /// A path prefix; the longest matching one wins.
    pub path: String,
    /// The `[[upstream]]` by name.
    pub upstream: String,
    /// Forward `/api/x` as `/x` for `path = "/api/"`.
    pub strip_prefix: bool,
    /// Also send `Forwarded` (RFC 7239: `for`, `proto`, `host`), after the client's own.
    pub forwarded: bool,
}

/// Where an upstream server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerAddr {
    /// TCP.
    Tcp(SocketAddr),
    /// A Unix socket.
    Unix(PathBuf),
}

impl std::fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerAddr::Tcp(addr) => write!(f, "{addr}"),
            ServerAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Reads a server as `[[upstream]]` gives it.
pub fn parse_server(text: &str) -> Result<ServerAddr, String> {
    if let Some(path) = text.strip_prefix("unix:") {
        if !path.starts_with('/') {
            return Err(format!("{text:?}: a Unix socket's path must be absolute"));
        }
        return Ok(ServerAddr::Unix(PathBuf::from(path)));
    }
    let bare = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
        .unwrap_or(text);
    let bare = bare.strip_suffix('/').unwrap_or(bare);
    if bare.contains('/') {
        return Err(format!("{text:?}: a server is host:port, without a path"));
    }
    if let Ok(addr) = bare.parse::<SocketAddr>() {
        return Ok(ServerAddr::Tcp(addr));
    }
    let mut found = bare
        .to_socket_addrs()
        .map_err(|e| format!("{text:?}: not host:port ({e})"))?;
    found
        .next()
        .map(ServerAddr::Tcp)
        .ok_or_else(|| format!("{text:?}: the name has no address"))
}

/// The name a server written `https://host:port` is asked for by TLS (SNI) and checked
/// against (its host, an IPv6 literal without brackets); none for a cleartext server.
pub fn server_tls_name(text: &str) -> Option<String> {
    let rest = text.strip_prefix("https://")?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let host = match rest.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => rest.rsplit_once(':').map_or(rest, |(host, _)| host),
    };
    Some(host.to_string())
}

/// Reads `--proxy PREFIX=URL`.
pub fn parse_proxy_flag(text: &str) -> Result<(String, String), String> {
    let (prefix, url) = text
        .split_once('=')
        .ok_or_else(|| format!("--proxy {text:?}: expected PREFIX=URL"))?;
    if !prefix.starts_with('/') {
        return Err(format!("--proxy {text:?}: the prefix must start with /"));
    }
    parse_server(url).map_err(|e| format!("--proxy: {e}"))?;
    Ok((prefix.to_string(), url.to_string()))
}

/// Checks the `[[upstream]]` and `[[proxy]]` entries; the error names the key.
pub(super) fn validate(
    upstreams: &[UpstreamConfig],
    proxies: &[ProxyConfig],
) -> Result<(), String> {
    for (i, upstream) in upstreams.iter().enumerate() {
        let key = format!("upstream[{i}]");
        if upstream.name.is_empty() {
            return Err(format!("{key}.name must be given"));
        }
        if upstreams[..i].iter().any(|u| u.name == upstream.name) {
            return Err(format!("{key}.name {:?} is given twice", upstream.name));
        }
        if upstream.servers.is_empty() {
            return Err(format!("{key}.servers must name at least one server"));
        }
        for server in &upstream.servers {
            parse_server(server).map_err(|why| format!("{key}.servers: {why}"))?;
        }
        for (name, value) in [
            ("connect_timeout_ms", upstream.connect_timeout_ms),
            ("read_timeout_ms", upstream.read_timeout_ms),
            ("send_timeout_ms", upstream.send_timeout_ms),
            ("keepalive_timeout_ms", upstream.keepalive_timeout_ms),
            ("keepalive_time_ms", upstream.keepalive_time_ms),
            ("keepalive_requests", upstream.keepalive_requests),
        ] {
            if value == 0 {
                return Err(format!("{key}.{name} must be above 0"));
            }
        }
        if let Some(ca) = &upstream.tls_ca {
            if !ca.is_file() {
                return Err(format!("{key}.tls_ca {}: no such file", ca.display()));
            }
        }
        if let Some(host) = &upstream.host {
            if host.is_empty() || host.bytes().any(|b| b.is_ascii_control() || b == b' ') {
                return Err(format!("{key}.host must be a host name, without spaces"));
            }
        }
    }
    for (i, proxy) in proxies.iter().enumerate() {
        let key = format!("proxy[{i}]");
        if !proxy.path.starts_with('/') || proxy.path.contains(['?', '#', ' ']) {
            return Err(format!("{key}.path must be a path prefix starting with /"));
        }
        if !upstreams.iter().any(|u| u.name == proxy.upstream) {
            return Err(format!(
                "{key}.upstream {:?} names no [[upstream]]",
                proxy.upstream
            ));
        }
    }
    Ok(())
}
