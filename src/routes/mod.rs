//! The route table: which path answers what, and the replies every route shares
//! (404 for unknown paths, 405 with `Allow` for methods a route does not take, OPTIONS).
//!
//! A route is a path and a handler that writes one response. Handlers get the parsed
//! request and a response writer; they never see sockets or buffers of other requests.

mod echo;

use crate::http::request::{Method, Request};
use crate::http::response::{Response, Status};

/// Methods every route answers; the value of `Allow` on 405 and OPTIONS.
pub const ALLOW: &str = "GET, HEAD, OPTIONS";

/// Per-core scratch space lent to handlers, so that building a body allocates nothing once
/// it has grown to its working size.
#[derive(Debug, Default)]
pub struct Scratch {
    /// Reusable bytes.
    pub bytes: Vec<u8>,
}

/// Writes the response for one request into `response`.
pub type Handler = fn(&Request<'_>, &mut Response<'_>, &mut Scratch);

/// Exact paths and their handlers.
const ROUTES: &[(&[u8], Handler)] = &[(b"/echo", echo::echo)];

/// Answers `request`: the route's handler, or the shared replies.
pub fn dispatch(request: &Request<'_>, response: &mut Response<'_>, scratch: &mut Scratch) {
    if request.head.asterisk {
        // `OPTIONS *` asks about the server as a whole.
        response.send(Status::NO_CONTENT, None, &[("Allow", ALLOW)], &[]);
        return;
    }
    let path = request.path();
    let Some((_, handler)) = ROUTES.iter().find(|(route, _)| *route == path) else {
        response.send_status(Status::NOT_FOUND, &[]);
        return;
    };
    match request.head.method {
        Method::Get | Method::Head => handler(request, response, scratch),
        Method::Options => response.send(Status::NO_CONTENT, None, &[("Allow", ALLOW)], &[]),
        _ => response.send_status(Status::METHOD_NOT_ALLOWED, &[("Allow", ALLOW)]),
    }
}
