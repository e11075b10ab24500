//! The configuration a core's connections work with, taken out of [`Config`] once, and the
//! sizes of the buffers it implies.

use ipnet::IpNet;

use crate::config::{Config, WebSocketConfig};
use crate::http::request::Limits;

/// The configuration a core works with, taken out of [`Config`] once.
pub(super) struct Settings {
    pub(super) limits: Limits,
    pub(super) header_timeout_ms: u64,
    pub(super) body_timeout_ms: u64,
    pub(super) keepalive_timeout_ms: u64,
    pub(super) write_timeout_ms: u64,
    pub(super) drain_timeout_ms: u64,
    pub(super) drain_idle_grace_ms: u64,
    pub(super) max_connections: usize,
    /// Unprocessed input past which a connection stops receiving: a whole head.
    pub(super) input_cap: usize,
    pub(super) chunk_bytes: u64,
    /// With `server.proxy_protocol`: the sources allowed to send PROXY headers.
    pub(super) proxy_from: Option<Vec<IpNet>>,
    pub(super) websocket: WebSocketConfig,
}

impl Settings {
    pub(super) fn of(config: &Config) -> Settings {
        let http = &config.http;
        Settings {
            limits: config.limits(),
            header_timeout_ms: http.header_timeout_ms,
            body_timeout_ms: http.body_timeout_ms,
            keepalive_timeout_ms: http.keepalive_timeout_ms,
            write_timeout_ms: http.write_timeout_ms,
            drain_timeout_ms: config.server.drain_timeout_ms,
            drain_idle_grace_ms: config.server.drain_idle_grace_ms,
            max_connections: config.server.max_connections_per_core,
            input_cap: input_cap(config),
            chunk_bytes: config.static_files.chunk_bytes as u64,
            proxy_from: config
                .server
                .proxy_protocol
                .then(|| config.server.proxy_from.clone()),
            websocket: config.websocket.clone(),
        }
    }
}

/// Bytes of a file chunk buffer: a chunk, and on a TLS core the records it becomes.
pub(super) fn chunk_buffer_bytes(config: &Config, tls: bool) -> usize {
    let chunk = config.static_files.chunk_bytes;
    match tls {
        true => chunk + chunk.div_ceil(crate::tls::MAX_FRAGMENT) * crate::tls::MAX_OVERHEAD,
        false => chunk,
    }
}

/// Size of a partial-input buffer, and the input a connection holds before it stops
/// receiving: a whole head always fits.
pub(super) fn input_cap(config: &Config) -> usize {
    config.http.max_request_head_bytes.max(16 * 1024)
}
