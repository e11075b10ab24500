//! The `[websocket]` table: limits and timers of WebSocket connections (the routes an
//! application registers with `App::websocket`, and the binary's `/ws/echo`).

use serde::Deserialize;

/// `[websocket]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct WebSocketConfig {
    /// The largest message a client may send (all its fragments together); past it the
    /// connection is closed with 1009. 16 MiB by default: the largest messages of the
    /// Autobahn|Testsuite's limits section (9.*) pass; a message's buffer grows only with
    /// the bytes that arrive, and one over the pool's size is freed when the message ends.
    pub max_message_bytes: usize,
    /// Bytes one connection may have waiting to be sent; a send past it is refused (the
    /// handler is told, and can wait for the queue to drain or close the connection).
    pub max_send_queue_bytes: usize,
    /// A connection quiet this long (no frame either way) is sent a ping; 0: never.
    pub idle_ping_ms: u64,
    /// A connection quiet this long is closed (1001 Going Away, then the socket).
    pub idle_timeout_ms: u64,
    /// Accept permessage-deflate (RFC 7692) when a client offers it: each message
    /// compressed on its own (no context taken over), by one compressor per core.
    pub permessage_deflate: bool,
    /// The compression level of permessage-deflate, 1 (fastest) to 9 (smallest).
    pub deflate_level: u32,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig {
            max_message_bytes: 16 * 1024 * 1024,
            max_send_queue_bytes: 1024 * 1024,
            idle_ping_ms: 30_000,
            idle_timeout_ms: 120_000,
            permessage_deflate: true,
            deflate_level: 1,
        }
    }
}

impl WebSocketConfig {
    /// Values that parse but make no sense: the key and why.
    pub(super) fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if self.max_message_bytes == 0 {
            return Err(("websocket.max_message_bytes", "must be above 0"));
        }
        if self.max_send_queue_bytes < 1024 {
            return Err(("websocket.max_send_queue_bytes", "must be at least 1024"));
        }
        if !(1..=9).contains(&self.deflate_level) {
            return Err(("websocket.deflate_level", "must be between 1 and 9"));
        }
        if self.idle_timeout_ms == 0 {
            return Err(("websocket.idle_timeout_ms", "must be above 0"));
        }
        if self.idle_ping_ms >= self.idle_timeout_ms {
            return Err((
                "websocket.idle_ping_ms",
                "must be below websocket.idle_timeout_ms (0: no pings)",
            ));
        }
        Ok(())
    }
}
