//! percore: a thread-per-core, shared-nothing HTTP/1.1 server on io_uring, and the library
//! to build one: an [`App`] is routes with handlers plus a factory of each core's state (see
//! [`app`], and the README's "Write your own handlers").
//!
//! `server` resolves the configured cores and binds one SO_REUSEPORT listener per core, then
//! starts one glommio executor pinned to each. From there every core is on its own: its
//! `driver` makes the core's own io_uring (`ring`) and runs one loop in the executor. Each
//! turn makes one `io_uring_enter` that submits the turn's sends and reaps every completion:
//! multishot accepts, multishot receives from the core's provided-buffer ring, sends.
//! Connections are records in the driver's table, not tasks; their timeouts are deadlines in
//! the core's timing wheel (`wheel`). Received bytes go to the connection's `http::session`,
//! which parses each request head (`http::request`), gathers any body (`http::chunked`),
//! asks its service (the core's [`app::CoreService`]: route table, handlers, the core's
//! state) for the answer and encodes the response (`http::response`); an async handler's
//! answer comes later from a glommio task, and the connection waits for it;
//! the driver sends the batch and records its latency in the core's own `metrics`. glommio
//! stays the executor for what must wait: file reads that are not in the page cache
//! (`file_io`) and the loop's own sleep when it has nothing to do. Nothing on that path is
//! shared between cores: no locks, no atomics, no cross-core messages. Once per report tick
//! each core hands a snapshot to the `report` thread, which prints live lines and, at
//! shutdown, the run's summary.
//!
//! Modules, in the order data flows through them:
//! - [`app`]: the library's API: [`App`], [`Request`], [`Response`], [`Reply`], and each
//!   core's service built from them
//! - [`cli`]: the flags every program built on [`App`] takes
//! - [`config`]: TOML file and flags → validated [`config::Config`]
//! - [`server`]: sockets, one executor thread per core, signals, shutdown, reload (SIGHUP)
//!   and binary upgrade (SIGUSR2; `handover` passes the listening sockets on, and takes
//!   systemd's)
//! - [`driver`]: one core's ring loop: accept, receive, send, connection records, deadlines,
//!   files on their way, drain
//! - [`ring`]: the core's io_uring: set-up, provided buffers, enter, eventfd
//! - [`wheel`]: the core's timing wheel of connection deadlines
//! - [`http`]: the protocol without I/O (request, chunked, session, response, error); the
//!   session is generic over a [`http::session::Service`]
//! - [`routes`]: the `percore` binary's own routes on [`App`] (echo, `/stats`, static files;
//!   a file's bytes are read and sent by the driver)
//! - [`metrics`]: per-core counters and latency histograms, snapshots, `/stats`
//! - [`report`]: the reporter thread: live lines, interval log, summary, `.hgrm` files
//! - [`plots`]: `latency.svg` and `timeline.svg` from a report directory

#![deny(missing_docs)]

pub mod access_log;
pub mod app;
pub mod cli;
pub mod config;
pub mod driver;
mod file_io;
mod handover;
pub mod http;
pub mod metrics;
pub mod plots;
mod pool;
pub mod proxy;
pub mod report;
pub mod ring;
pub mod routes;
pub mod server;
pub mod wheel;

pub use app::{App, BoxError, Files, HeaderError, OwnedRequest, Reply, Request, Response, Setup};
pub use config::Config;
pub use http::response::Status;
pub use server::Server;

/// The executor percore runs on, for async handlers' timers, files and sockets.
pub use glommio;
