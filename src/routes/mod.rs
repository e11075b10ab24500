//! percore's own routes, registered through the public API like any user's: `/echo`, the
//! statistics route and the static files.

pub mod echo;
pub mod static_files;

pub use static_files::{FileBody, StaticFiles};

use crate::app::App;

/// The `percore` binary's app: `GET /echo`, `GET report.stats_path`,
/// `GET report.metrics_path`, `GET report.health_path` and the static files under
/// `static.mount`, with no state of its own.
pub fn percore_app() -> App<()> {
    App::new(|_| Ok(()))
        .get("/echo", echo::echo)
        .stats()
        .metrics()
        .health()
        .static_files()
}
