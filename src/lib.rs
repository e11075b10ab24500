//! percore: a thread-per-core, shared-nothing HTTP/1.1 server on io_uring (glommio).
//!
//! `server` resolves the configured cores and binds one SO_REUSEPORT listener per core, then
//! starts one glommio executor pinned to each. From there every core is on its own: its
//! `shard` accepts from its own listener, keeps its own connection table, buffer pools and
//! shutdown state, and runs one task per connection. A connection (`conn`) reads into a
//! pooled buffer, hands the bytes to its `http::session`, which parses each request head
//! (`http::request`), consumes any body (`http::chunked`), routes it (`routes`) and encodes the
//! response (`http::response`); `conn` then writes the whole batch at once and records its
//! latency in the core's own `metrics`. Nothing on that path is shared between cores: no
//! locks, no atomics, no cross-core messages. Once per report tick each core hands a snapshot
//! to the `report` thread, which prints live lines and, at shutdown, the run's summary.
//!
//! Modules, in the order data flows through them:
//! - [`config`]: TOML file and flags → validated [`config::Config`]
//! - [`server`]: sockets, one executor thread per core, signals, shutdown
//! - [`shard`]: one core: accept loop, connection table, buffer pools, drain
//! - [`conn`]: one connection: read → session → batched write, timeouts
//! - [`http`]: the protocol without I/O (request, chunked, session, response, error)
//! - [`routes`]: the route table and its handlers (echo, `/stats`, static files; a file's
//!   bytes are read and sent by `conn`)
//! - [`metrics`]: per-core counters and latency histograms, snapshots, `/stats`
//! - [`report`]: the reporter thread: live lines, interval log, summary, `.hgrm` files

#![deny(missing_docs)]

pub mod config;
pub mod driver;
mod file_io;
pub mod http;
pub mod metrics;
mod pool;
pub mod report;
pub mod ring;
pub mod routes;
pub mod server;
pub mod wheel;

pub use config::Config;
pub use server::Server;
