//! percore as a library: an [`App`] is a route table of handlers plus a factory for each
//! core's state, served on percore's engine.
//!
//! - **Synchronous handlers** (`Fn(&Request, &mut Response, &S)`) run inline on the core's
//!   ring loop, between a request's arrival and its response's send, allocating nothing.
//! - **Async handlers** (`Fn(OwnedRequest, Rc<S>) -> impl Future<Output = Reply>`) run as
//!   glommio tasks on the same core while their connection waits; they may sleep on glommio
//!   timers, read files, call a backend over TCP. A pipelined request behind one waits, so
//!   responses leave in request order.
//! - **Per-core state**: the factory runs once on each core, on that core's thread, with the
//!   configuration (and its `[app]` table); handlers get a reference to that core's value.
//!   Nothing is shared between cores unless the state shares it.
//! - **A handler that panics** gets its request a 500 and its connection closed; the panic
//!   is counted (`handler_panics` in `/stats`) and the core goes on.
//!
//! Inside: `router` matches paths, `builtin` adds the routes the configuration asks for
//! (statistics, metrics, health, static files), `service` is one core's service (the
//! engine's `Application`), `compress` codes handlers' bodies as the request accepts and
//! `decode` decodes coded request bodies, `factory` makes one per core for the server,
//! `program` is what [`App::main`] does with the command line.
//!
//! ```no_run
//! use std::cell::Cell;
//! use percore::App;
//!
//! struct Core {
//!     hits: Cell<u64>,
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     App::new(|_setup| Ok(Core { hits: Cell::new(0) }))
//!         .get("/hits", |_request, response, core: &Core| {
//!             core.hits.set(core.hits.get() + 1);
//!             response.text(&format!("{} on this core\n", core.hits.get()));
//!         })
//!         .main()
//! }
//! ```

mod body;
mod builtin;
mod client;
mod compress;
mod decode;
mod events;
pub(crate) mod factory;
mod files;
mod groups;
mod program;
mod proxy;
mod redirect;
mod reply;
mod request;
mod response;
pub(crate) mod router;
pub(crate) mod service;
mod setup;
mod stream;
mod websocket;
mod websocket_async;

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

pub use body::{BodyClosed, BodySender};
pub use client::{Call, Upstream, UpstreamResponse};
pub use events::{Event, EventSender};
pub use files::Files;
pub use groups::Groups;
pub use reply::Reply;
pub use request::{OwnedRequest, Request};
pub use response::{HeaderError, Response};
pub use setup::Setup;
pub use stream::UpstreamStream;
pub use websocket::{Message, SendError, WebSocket, WebSocketHandler};
pub use websocket_async::{AsyncWebSocket, OwnedMessage, INBOX_HIGH_WATER};

use router::Router;

/// The error a state factory may return; it stops the server from starting.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

type SyncHandler<S> = dyn Fn(&Request<'_>, &mut Response<'_>, &S) + Send + Sync;
type TaskFuture = Pin<Box<dyn Future<Output = Reply>>>;
type AsyncHandler<S> = dyn Fn(OwnedRequest, Rc<S>) -> TaskFuture + Send + Sync;
type Factory<S> = dyn Fn(&Setup<'_>) -> Result<S, BoxError> + Send + Sync;

/// A route's handler.
pub(crate) enum Handler<S> {
    Sync(Arc<SyncHandler<S>>),
    Async(Arc<AsyncHandler<S>>),
    /// The core's static files (`static.root` under `static.mount`).
    Files,
    /// The health route: 200 while the core serves, 503 once it drains.
    Health,
    /// A WebSocket route: the subprotocols it speaks (its preference first), and what makes
    /// each connection's handler.
    Socket(&'static [&'static str], Arc<websocket::SocketFactory<S>>),
}

impl<S> Clone for Handler<S> {
    fn clone(&self) -> Self {
        match self {
            Handler::Sync(h) => Handler::Sync(h.clone()),
            Handler::Async(h) => Handler::Async(h.clone()),
            Handler::Files => Handler::Files,
            Handler::Health => Handler::Health,
            Handler::Socket(protocols, make) => Handler::Socket(protocols, make.clone()),
        }
    }
}

/// A server under construction: routes, and the factory of each core's state `S`.
///
/// Handlers are registered by method and path pattern: literal segments, `{name}`
/// parameters (one segment) and a final `{*name}` catch-all (the rest of the path). The
/// most specific pattern that takes the method answers; a path no pattern matches is 404,
/// one matched without the method is 405 with `Allow`. HEAD is answered by GET handlers
/// (without the body), OPTIONS by percore unless routed.
///
/// ```
/// use percore::{App, Reply, Status};
///
/// let app = App::new(|_| Ok(()))
///     .get("/hello/{name}", |request, response, _| {
///         let name = request.param("name").unwrap_or_default();
///         response.text(&format!("Hello, {name}!"));
///     })
///     .route("PURGE", "/cache/{*key}", |_, response, _| {
///         response.status(Status::NO_CONTENT);
///     })
///     .get_async("/later", |_request, _state| async {
///         percore::glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
///         Reply::text("later\n")
///     });
/// ```
pub struct App<S: 'static> {
    factory: Arc<Factory<S>>,
    router: Router<Handler<S>>,
    builtin: builtin::Builtin,
    /// Proxy routes given in code: `(prefix, upstream, strip_prefix)`.
    proxies: Vec<(String, String, bool)>,
    /// Handlers get request bodies sent in a content coding decoded.
    decode_bodies: bool,
}

impl<S: 'static> App<S> {
    /// An app whose cores each get the state `factory` returns (run once per core, on the
    /// core's thread, before it serves). An error stops the server with that message.
    pub fn new<F>(factory: F) -> App<S>
    where
        F: Fn(&Setup<'_>) -> Result<S, BoxError> + Send + Sync + 'static,
    {
        App {
            factory: Arc::new(factory),
            router: Router::default(),
            builtin: builtin::Builtin::default(),
            proxies: Vec::new(),
            decode_bodies: false,
        }
    }

    /// Decodes request bodies sent with `Content-Encoding: gzip`, `br` or `zstd` before
    /// handlers see them ([`Request::body`] is then the decoded bytes; the request's fields
    /// stay as sent), within `http.max_body_bytes` of *decoded* bytes: a body that decodes
    /// to more is answered 413 (a decompression bomb costs at most that), one that does not
    /// decode 400, one in another coding 415. Without this, a handler's request whose body
    /// is coded is answered `415 Unsupported Media Type` with `Accept-Encoding: identity`
    /// (RFC 9110 section 15.5.16) rather than handed coded bytes. Proxied requests are
    /// forwarded as they came either way.
    ///
    /// ```
    /// # use percore::App;
    /// let app = App::new(|_| Ok(()))
    ///     .post("/upload", |request, response, _| {
    ///         response.text(&format!("{} bytes decoded\n", request.body().len()));
    ///     })
    ///     .decode_request_bodies();
    /// # drop(app);
    /// ```
    pub fn decode_request_bodies(mut self) -> App<S> {
        self.decode_bodies = true;
        self
    }

    /// Forwards requests whose path starts with `prefix` to the `[[upstream]]` named
    /// `upstream` (as a `[[proxy]]` entry of the configuration does): the longest matching
    /// prefix wins, and a proxy route answers before the app's routes and static files. The
    /// upstream must be in the configuration the app starts with.
    pub fn proxy(mut self, prefix: &str, upstream: &str) -> App<S> {
        self.proxies
            .push((prefix.to_string(), upstream.to_string(), false));
        self
    }

    /// [`App::proxy`], forwarding `/api/x` under prefix `/api/` as `/x`.
    pub fn proxy_stripped(mut self, prefix: &str, upstream: &str) -> App<S> {
        self.proxies
            .push((prefix.to_string(), upstream.to_string(), true));
        self
    }

    fn add(mut self, method: &str, pattern: &str, handler: Handler<S>) -> App<S> {
        if let Err(problem) = self.router.add(method, pattern, handler) {
            panic!("{problem}");
        }
        self
    }

    /// Routes `method` (any token: `PUT`, `PURGE`…) on `pattern` to a synchronous
    /// handler. Panics on a malformed pattern or a method routed twice on one pattern.
    pub fn route<H>(self, method: &str, pattern: &str, handler: H) -> App<S>
    where
        H: Fn(&Request<'_>, &mut Response<'_>, &S) + Send + Sync + 'static,
    {
        self.add(method, pattern, Handler::Sync(Arc::new(handler)))
    }

    /// Routes `method` on `pattern` to an async handler, which gets the request as an
    /// [`OwnedRequest`] and this core's state as an `Rc`, and runs as a glommio task on the
    /// core.
    pub fn route_async<H, F>(self, method: &str, pattern: &str, handler: H) -> App<S>
    where
        H: Fn(OwnedRequest, Rc<S>) -> F + Send + Sync + 'static,
        F: Future<Output = Reply> + 'static,
    {
        let boxed = move |request, state| -> TaskFuture { Box::pin(handler(request, state)) };
        self.add(method, pattern, Handler::Async(Arc::new(boxed)))
    }

    /// `GET` (and so `HEAD`) on `pattern`.
    pub fn get<H>(self, pattern: &str, handler: H) -> App<S>
    where
        H: Fn(&Request<'_>, &mut Response<'_>, &S) + Send + Sync + 'static,
    {
        self.route("GET", pattern, handler)
    }

    /// `POST` on `pattern`.
    pub fn post<H>(self, pattern: &str, handler: H) -> App<S>
    where
        H: Fn(&Request<'_>, &mut Response<'_>, &S) + Send + Sync + 'static,
    {
        self.route("POST", pattern, handler)
    }

    /// `PUT` on `pattern`.
    pub fn put<H>(self, pattern: &str, handler: H) -> App<S>
    where
        H: Fn(&Request<'_>, &mut Response<'_>, &S) + Send + Sync + 'static,
    {
        self.route("PUT", pattern, handler)
    }

    /// `DELETE` on `pattern`.
    pub fn delete<H>(self, pattern: &str, handler: H) -> App<S>
    where
        H: Fn(&Request<'_>, &mut Response<'_>, &S) + Send + Sync + 'static,
    {
        self.route("DELETE", pattern, handler)
    }

    /// `PATCH` on `pattern`.
    pub fn patch<H>(self, pattern: &str, handler: H) -> App<S>
    where
        H: Fn(&Request<'_>, &mut Response<'_>, &S) + Send + Sync + 'static,
    {
        self.route("PATCH", pattern, handler)
    }

    /// A WebSocket route (RFC 6455): a valid upgrade on `pattern` is answered `101` and its
    /// connection carried on with the handler `make` returns for it (given the request,
    /// the subprotocol chosen, and this core's state); the handler is called inline on the
    /// core's loop for each message. `protocols` are the subprotocols the route speaks, its
    /// preference first: the first the client offers is chosen (none if it offers none of
    /// them). A request that is not a valid upgrade gets 426 (no upgrade, or a version other
    /// than 13, with `Sec-WebSocket-Version: 13`), 400 (a malformed handshake) or 405.
    ///
    /// ```
    /// use percore::{App, Message, WebSocket, WebSocketHandler};
    ///
    /// struct Echo;
    ///
    /// impl WebSocketHandler for Echo {
    ///     fn on_message(&mut self, message: Message<'_>, socket: &mut WebSocket<'_>) {
    ///         if socket.send(message).is_err() {
    ///             socket.close(1008, "too slow");
    ///         }
    ///     }
    /// }
    ///
    /// let app = App::new(|_| Ok(())).websocket("/ws/echo", &[], |_request, _protocol, _| Echo);
    /// # drop(app);
    /// ```
    pub fn websocket<H, F>(
        self,
        pattern: &str,
        protocols: &'static [&'static str],
        make: F,
    ) -> App<S>
    where
        H: WebSocketHandler,
        F: Fn(&Request<'_>, Option<&'static str>, &S) -> H + Send + Sync + 'static,
    {
        self.add(
            "GET",
            pattern,
            Handler::Socket(protocols, websocket::factory(make)),
        )
    }

    /// A WebSocket route whose connections are each served by a task (see
    /// [`App::websocket`] for the handshake): `make` is given the request, the subprotocol
    /// chosen, this core's state and the connection, and returns the task, which runs on
    /// the core once the `101` is written. The task awaits messages
    /// ([`AsyncWebSocket::recv`]) and sends when it likes; when it returns, the connection
    /// is closed (1000; 1011 if it panicked). Each message is copied for the task: for the
    /// most messages per core, use the inline form.
    ///
    /// ```
    /// use percore::App;
    ///
    /// let app = App::new(|_| Ok(())).websocket_async("/ws/later", &[], |_, _, _, mut socket| {
    ///     async move {
    ///         while let Some(message) = socket.recv().await {
    ///             glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
    ///             if socket.send(message.as_message()).await.is_err() {
    ///                 break;
    ///             }
    ///         }
    ///     }
    /// });
    /// # drop(app);
    /// ```
    pub fn websocket_async<F, Fut>(
        self,
        pattern: &str,
        protocols: &'static [&'static str],
        make: F,
    ) -> App<S>
    where
        F: Fn(&Request<'_>, Option<&'static str>, Rc<S>, AsyncWebSocket) -> Fut
            + Send
            + Sync
            + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        self.add(
            "GET",
            pattern,
            Handler::Socket(protocols, websocket_async::factory(make)),
        )
    }

    /// An async `GET` handler (see [`App::route_async`]).
    pub fn get_async<H, F>(self, pattern: &str, handler: H) -> App<S>
    where
        H: Fn(OwnedRequest, Rc<S>) -> F + Send + Sync + 'static,
        F: Future<Output = Reply> + 'static,
    {
        self.route_async("GET", pattern, handler)
    }

    /// An async `POST` handler (see [`App::route_async`]).
    pub fn post_async<H, F>(self, pattern: &str, handler: H) -> App<S>
    where
        H: Fn(OwnedRequest, Rc<S>) -> F + Send + Sync + 'static,
        F: Future<Output = Reply> + 'static,
    {
        self.route_async("POST", pattern, handler)
    }

    /// Serves the server's statistics (JSON: every core's counters and latency
    /// percentiles) on `GET report.stats_path`, unless that is empty.
    pub fn stats(mut self) -> App<S> {
        self.builtin.stats = true;
        self
    }

    /// Serves the server's metrics in Prometheus' text format on `GET report.metrics_path`,
    /// unless that is empty: requests, responses by status class, bytes, connections,
    /// protocol errors, handler panics and a request latency histogram, each per core (as
    /// the cores last published them, once per report tick).
    pub fn metrics(mut self) -> App<S> {
        self.builtin.metrics = true;
        self
    }

    /// Serves the health route on `GET report.health_path` (unless empty), for load
    /// balancers: `200 ok` while the server serves, `503 draining` from the moment its drain
    /// begins (SIGTERM, a reload or an upgrade replacing it) while requests in flight finish.
    pub fn health(mut self) -> App<S> {
        self.builtin.health = true;
        self
    }

    /// Serves the files of `static.root` under `static.mount` (`GET` and `HEAD`), unless
    /// the root is empty: validators, conditional requests, ranges, a per-core cache of
    /// small files. More specific routes answer first.
    pub fn static_files(mut self) -> App<S> {
        self.builtin.files = true;
        self
    }
}
