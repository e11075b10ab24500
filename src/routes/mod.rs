//! The route table: which path answers what, and the replies every route shares
//! (404 for unknown paths, 405 with `Allow` for methods a route does not take, OPTIONS).
//!
//! A route is a path and a handler that writes one response. Handlers get the parsed
//! request and a response writer; they never see sockets or buffers of other requests.
//! Exact routes answer first; every other path under `static.mount` goes to the static
//! files (`static_files`), the rest is 404.

mod echo;
pub mod static_files;

use std::sync::Arc;

use crate::http::request::{Method, Request};
use crate::http::response::{Response, Status};
use crate::http::session::Service;
use crate::metrics::{stats_json, StatsBoard};
pub use static_files::{FileBody, StaticFiles};

/// Methods every route answers; the value of `Allow` on 405 and OPTIONS.
pub const ALLOW: &str = "GET, HEAD, OPTIONS";

/// Per-core state lent to handlers.
#[derive(Debug, Default)]
pub struct Context {
    /// Reusable bytes, so that building a body allocates nothing once it has grown to its
    /// working size.
    pub bytes: Vec<u8>,
    /// The statistics route, when enabled.
    pub stats: Option<StatsRoute>,
    /// The static files, when `static.root` is set.
    pub files: Option<StaticFiles>,
    /// A file body the last handler left for the connection to send after its head.
    pub file: Option<FileBody>,
}

/// Where `/stats` is served and what it reads.
#[derive(Debug)]
pub struct StatsRoute {
    /// The route's path (`report.stats_path`).
    pub path: String,
    /// The cores' published totals.
    pub board: Arc<StatsBoard>,
    /// The server's cores, in board order.
    pub cores: Vec<usize>,
}

/// Writes the response for one request into `response`.
pub type Handler = fn(&Request<'_>, &mut Response<'_>, &mut Context);

/// Exact paths and their handlers.
const ROUTES: &[(&[u8], Handler)] = &[(b"/echo", echo::echo)];

/// `/stats`: every core's counters and latency percentiles as last published (each core
/// publishes once per report tick).
fn stats_handler(_: &Request<'_>, response: &mut Response<'_>, context: &mut Context) {
    let Some(stats) = &context.stats else {
        return response.send_status(Status::NOT_FOUND, &[]);
    };
    let body = stats_json(&stats.board, &stats.cores);
    response.send(
        Status::OK,
        Some("application/json"),
        &[("Cache-Control", "no-store")],
        &[body.as_bytes()],
    );
}

impl Service for Context {
    /// Boxed: every connection's session has room for one, and most never hold any.
    type Deferred = Box<FileBody>;

    fn call(
        &mut self,
        request: &Request<'_>,
        response: &mut Response<'_>,
    ) -> Option<Box<FileBody>> {
        dispatch(request, response, self);
        self.file.take().map(Box::new)
    }
}

/// Answers `request`: the route's handler, or the shared replies.
pub fn dispatch(request: &Request<'_>, response: &mut Response<'_>, context: &mut Context) {
    if request.head.asterisk {
        // `OPTIONS *` asks about the server as a whole.
        response.send(Status::NO_CONTENT, None, &[("Allow", ALLOW)], &[]);
        return;
    }
    let path = request.path();
    let stats = context.stats.as_ref().filter(|s| s.path.as_bytes() == path);
    let handler: Handler = match stats {
        Some(_) => stats_handler,
        None => match ROUTES.iter().find(|(route, _)| *route == path) {
            Some((_, handler)) => *handler,
            None if context.files.as_ref().is_some_and(|f| f.mounts(path)) => static_files::serve,
            None => {
                response.send_status(Status::NOT_FOUND, &[]);
                return;
            }
        },
    };
    match request.head.method {
        Method::Get | Method::Head => handler(request, response, context),
        Method::Options => response.send(Status::NO_CONTENT, None, &[("Allow", ALLOW)], &[]),
        _ => response.send_status(Status::METHOD_NOT_ALLOWED, &[("Allow", ALLOW)]),
    }
}
