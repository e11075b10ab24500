//! The routes percore adds to an app's own when asked to ([`crate::App::stats`] and its
//! siblings), at the paths the configuration gives: statistics (JSON), metrics (Prometheus'
//! text format), health for load balancers, and the static files. An app's own routes win
//! over them.

use std::sync::Arc;

use super::router::Router;
use super::{Handler, Request, Response};
use crate::config::Config;
use crate::metrics::{prometheus_text, stats_json, StatsBoard};

/// Which built-in routes an app serves.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Builtin {
    pub(crate) stats: bool,
    pub(crate) metrics: bool,
    pub(crate) health: bool,
    pub(crate) files: bool,
}

impl Builtin {
    /// Whether the app serves `static.root` (and the root is set).
    pub(crate) fn serves_files(&self, config: &Config) -> bool {
        self.files && !config.static_files.root.as_os_str().is_empty()
    }

    /// `routes` with the built-in routes the configuration asks for; `board` and `cores`
    /// are what the statistics and metrics routes read.
    pub(crate) fn add_to<S: 'static>(
        &self,
        routes: &Router<Handler<S>>,
        config: &Config,
        board: &Arc<StatsBoard>,
        cores: &[usize],
    ) -> Result<Router<Handler<S>>, String> {
        let mut router = routes.clone();
        let report = &config.report;
        if self.stats && !report.stats_path.is_empty() {
            let (board, cores) = (board.clone(), cores.to_vec());
            let handler = move |_: &Request<'_>, response: &mut Response<'_>, _: &S| {
                let body = stats_json(&board, &cores);
                let _ = response.content_type("application/json");
                let _ = response.header("Cache-Control", "no-store");
                response.body(body.as_bytes());
            };
            let _ = router.add("GET", &report.stats_path, Handler::Sync(Arc::new(handler)));
        }
        if self.metrics && !report.metrics_path.is_empty() {
            let (board, cores) = (board.clone(), cores.to_vec());
            let handler = move |_: &Request<'_>, response: &mut Response<'_>, _: &S| {
                let body = prometheus_text(&board, &cores);
                let _ = response.content_type("text/plain; version=0.0.4; charset=utf-8");
                let _ = response.header("Cache-Control", "no-store");
                response.body(body.as_bytes());
            };
            let _ = router.add(
                "GET",
                &report.metrics_path,
                Handler::Sync(Arc::new(handler)),
            );
        }
        if self.health && !report.health_path.is_empty() {
            let _ = router.add("GET", &report.health_path, Handler::Health);
        }
        if self.serves_files(config) {
            let mount = config.static_files.mount.trim_end_matches('/');
            let pattern = format!("{mount}/{{*path}}");
            if let Err(problem) = router.add("GET", &pattern, Handler::Files) {
                if !problem.contains("twice") {
                    return Err(format!("static.mount {mount:?}: {problem}"));
                }
            }
        }
        Ok(router)
    }
}
