//! percore: a thread-per-core, shared-nothing HTTP/1.1 server on io_uring, and the library
//! to build one: an [`App`] is routes with handlers plus a factory of each core's state (see
//! the README's "Write your own handlers").
//!
//! # Architecture
//!
//! `server` resolves the configured cores and binds one `SO_REUSEPORT` listener per core,
//! then starts one glommio executor pinned to each. From there every core is on its own:
//! its `engine` makes the core's own io_uring and runs one loop in the executor. Each turn
//! makes one `io_uring_enter` that submits the turn's sends and reaps every completion:
//! multishot accepts, multishot receives from the core's provided-buffer ring, sends.
//! Connections are records in the engine's table, not tasks; their timeouts are deadlines
//! in the core's timing wheel. Received bytes go to the connection's `http` session, which
//! parses each request head, gathers any body, asks its service for the answer and encodes
//! the response; the service is the application behind the engine's one trait (the
//! library's per-core service, `app`: route table, handlers, the core's state). Files go out
//! through `files`; an async handler's answer comes later from a glommio task. Nothing on
//! that path is shared between cores: no locks, no atomics, no cross-core messages. Once per
//! tick each core hands its `metrics` to the `report` thread and its `access_log` lines to
//! the log's writer.
//!
//! Modules are layers, and imports only point down:
//!
//! ```text
//! app          the library: App, router, Request/Response/Reply, each core's service
//! server       sockets, a thread per core, signals, reload, upgrade
//! engine       one core's ring loop: accept, receive, exchange, send, files, tasks, drain
//! files  metrics  access_log  report
//! config       TOML + flags + validation
//! http  proxy_protocol     the protocols, without I/O
//! support      time formats, percent-decoding, error lines
//! ```
//!
//! The public API is what a program on the library needs; `internals` (behind the cargo
//! feature of that name, off by default) reaches the layers below for percore's own tests,
//! benches and fuzz targets, and is not part of it.

#![deny(missing_docs)]

mod access_log;
mod app;
pub mod config;
mod engine;
mod files;
mod http;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals;
mod metrics;
mod proxy_protocol;
mod report;
mod server;
mod support;
mod tls;

pub use app::{
    App, AsyncWebSocket, BodyClosed, BodySender, BoxError, Call, Event, EventSender, Files, Groups,
    HeaderError, Message, OwnedMessage, OwnedRequest, Reply, Request, Response, SendError, Setup,
    Upstream, UpstreamResponse, UpstreamStream, WebSocket, WebSocketHandler, INBOX_HIGH_WATER,
};
pub use config::{Config, ConfigError};
pub use engine::UpstreamError;
pub use http::request::Version;
pub use http::status::Status;
pub use metrics::{Counters, TlsFailure};
pub use report::{CoreSummary, RunSummary};
pub use server::{Server, StartError};
pub use support::percent::{percent_decode, Malformed};
pub use tls::TlsInfo;

/// The executor percore runs on, for async handlers' timers, files and sockets.
pub use glommio;
