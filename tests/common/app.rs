//! The app the in-process tests serve: the routes the `percore` binary has (`GET /echo`,
//! `/stats`, `/metrics`, `/healthz`, the static files), built here on the library's public
//! API, so that a test can start a server in its own process (and read its shutdown summary,
//! or count its allocations) without compiling the binary's source.
//!
//! The binary's own routes are tested through the binary (`tests/routes.rs`); here `/echo`
//! is the workload the engine's tests drive, and answers as the binary's does.

use percore::{App, Request, Response, Status};

/// `GET /echo`, and the built-in statistics, metrics, health and static-file routes.
pub fn app() -> App<()> {
    App::new(|_| Ok(()))
        .get("/echo", echo)
        .stats()
        .metrics()
        .health()
        .static_files()
}

/// Answers `GET /echo?name=X` with `Hi, X!`, `X` the first `name` parameter percent-decoded
/// (`+` stays a plus) straight into the response buffer, so that nothing is allocated; no
/// `name` or a broken escape is a 400.
pub fn echo<S>(request: &Request<'_>, response: &mut Response<'_>, _: &S) {
    let name = request.query_bytes().and_then(|query| {
        query
            .split(|&b| b == b'&')
            .find_map(|pair| pair.strip_prefix(b"name="))
    });
    let Some(name) = name else {
        response
            .status(Status::BAD_REQUEST)
            .text("missing query parameter: name\n");
        return;
    };
    response.plain();
    let body = response.body_mut();
    body.extend_from_slice(b"Hi, ");
    if percore::percent_decode(name, body).is_err() {
        response
            .status(Status::BAD_REQUEST)
            .text("invalid percent-encoding in name\n");
        return;
    }
    body.push(b'!');
}
