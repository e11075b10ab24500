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

mod request;
mod response;
pub(crate) mod router;

use std::future::Future;
use std::os::fd::{OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;

use futures_lite::FutureExt;
use serde::de::DeserializeOwned;

pub use request::{OwnedRequest, Request};
pub use response::{HeaderError, Reply, Response};
pub use router::MAX_PARAMS;

use crate::access_log::{CoreLog, Entry};
use crate::config::{Config, ConfigError, StaticConfig};
use crate::http::request::{self as http_request, Method};
use crate::http::response::{self as http_response, Persistence, Status};
use crate::http::session::Service;
use crate::metrics::{prometheus_text, stats_json, StatsBoard};
use crate::routes::static_files::{FileBody, StaticFiles};
use crate::server::Server;
use request::Peer;
use response::Scratch;
use router::{Lookup, Params, Router};

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
}

impl<S> Clone for Handler<S> {
    fn clone(&self) -> Self {
        match self {
            Handler::Sync(h) => Handler::Sync(h.clone()),
            Handler::Async(h) => Handler::Async(h.clone()),
            Handler::Files => Handler::Files,
            Handler::Health => Handler::Health,
        }
    }
}

/// What one core's factory is given.
#[derive(Debug)]
pub struct Setup<'a> {
    /// The CPU this core runs on.
    pub core: usize,
    /// Its position among the server's cores, from 0.
    pub index: usize,
    /// The server's configuration.
    pub config: &'a Config,
}

impl Setup<'_> {
    /// The `[app]` table of the configuration file, read as `T`.
    ///
    /// ```
    /// # use percore::{config::Config, App, Setup};
    /// #[derive(serde::Deserialize)]
    /// struct Settings { greeting: String }
    ///
    /// let config = Config::from_toml("[app]\ngreeting = \"Hello\"\n", "test").unwrap();
    /// let setup = Setup { core: 0, index: 0, config: &config };
    /// assert_eq!(setup.settings::<Settings>().unwrap().greeting, "Hello");
    /// ```
    pub fn settings<T: DeserializeOwned>(&self) -> Result<T, BoxError> {
        let table = toml::Value::Table(self.config.app.clone());
        T::deserialize(table).map_err(|e| format!("[app]: {e}").into())
    }
}

/// A core's own static files, for [`Response::file`]: a root directory with percore's
/// validators, ranges and cache of small files. Build one per core in the state factory
/// (in a `RefCell`, since serving fills its cache).
#[derive(Debug)]
pub struct Files(StaticFiles);

impl Files {
    /// Files beneath `root`, with the `[static]` settings (`cache_file_max_bytes`,
    /// `cache_bytes`, `chunk_bytes`, `directio_bytes`; its `root` and `mount` are not used).
    pub fn open(
        root: impl AsRef<std::path::Path>,
        settings: &StaticConfig,
    ) -> std::io::Result<Files> {
        let config = StaticConfig {
            root: root.as_ref().to_path_buf(),
            mount: "/".into(),
            ..settings.clone()
        };
        let fd = StaticFiles::open_root(&config)?;
        Ok(Files(StaticFiles::new(&config, fd)))
    }

    /// Requests answered from this cache.
    pub fn cache_hits(&self) -> u64 {
        self.0.cache_hits()
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
/// use percore::{App, Reply};
///
/// let app = App::new(|_| Ok(()))
///     .get("/hello/{name}", |request, response, _| {
///         let name = request.param("name").unwrap_or_default();
///         response.text(&format!("Hello, {name}!"));
///     })
///     .route("PURGE", "/cache/{*key}", |_, response, _| {
///         response.status(204);
///     })
///     .get_async("/later", |_request, _state| async {
///         percore::glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
///         Reply::text("later\n")
///     });
/// ```
pub struct App<S: 'static> {
    factory: Arc<Factory<S>>,
    router: Router<Handler<S>>,
    stats: bool,
    metrics: bool,
    health: bool,
    files: bool,
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
            stats: false,
            metrics: false,
            health: false,
            files: false,
        }
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
        self.stats = true;
        self
    }

    /// Serves the server's metrics in Prometheus' text format on `GET report.metrics_path`,
    /// unless that is empty: requests, responses by status class, bytes, connections,
    /// protocol errors, handler panics and a request latency histogram, each per core (as
    /// the cores last published them, once per report tick).
    pub fn metrics(mut self) -> App<S> {
        self.metrics = true;
        self
    }

    /// Serves the health route on `GET report.health_path` (unless empty), for load
    /// balancers: `200 ok` while the server serves, `503 draining` from the moment its drain
    /// begins (SIGTERM, a reload or an upgrade replacing it) while requests in flight finish.
    pub fn health(mut self) -> App<S> {
        self.health = true;
        self
    }

    /// Serves the files of `static.root` under `static.mount` (`GET` and `HEAD`), unless
    /// the root is empty: validators, conditional requests, ranges, a per-core cache of
    /// small files. More specific routes answer first.
    pub fn static_files(mut self) -> App<S> {
        self.files = true;
        self
    }

    /// The route table with the built-in routes the configuration asks for; their own
    /// routes of the app's win over them.
    fn router(
        &self,
        config: &Config,
        board: Option<(&Arc<StatsBoard>, &[usize])>,
    ) -> Result<Router<Handler<S>>, ConfigError> {
        let mut router = self.router.clone();
        let path = &config.report.stats_path;
        if let (true, false, Some((board, cores))) = (self.stats, path.is_empty(), board) {
            let (board, cores) = (board.clone(), cores.to_vec());
            let handler = move |_: &Request<'_>, response: &mut Response<'_>, _: &S| {
                let body = stats_json(&board, &cores);
                let _ = response.content_type("application/json");
                let _ = response.header("Cache-Control", "no-store");
                response.body(body.as_bytes());
            };
            let _ = router.add("GET", path, Handler::Sync(Arc::new(handler)));
        }
        let path = &config.report.metrics_path;
        if let (true, false, Some((board, cores))) = (self.metrics, path.is_empty(), board) {
            let (board, cores) = (board.clone(), cores.to_vec());
            let handler = move |_: &Request<'_>, response: &mut Response<'_>, _: &S| {
                let body = prometheus_text(&board, &cores);
                let _ = response.content_type("text/plain; version=0.0.4; charset=utf-8");
                let _ = response.header("Cache-Control", "no-store");
                response.body(body.as_bytes());
            };
            let _ = router.add("GET", path, Handler::Sync(Arc::new(handler)));
        }
        let path = &config.report.health_path;
        if self.health && !path.is_empty() {
            let _ = router.add("GET", path, Handler::Health);
        }
        if self.files && !config.files.root.as_os_str().is_empty() {
            let mount = config.files.mount.trim_end_matches('/');
            let pattern = format!("{mount}/{{*path}}");
            if let Err(problem) = router.add("GET", &pattern, Handler::Files) {
                if !problem.contains("twice") {
                    return Err(ConfigError(format!("static.mount {mount:?}: {problem}")));
                }
            }
        }
        Ok(router)
    }

    /// One core's service without a server, for tests and benchmarks that drive a
    /// session directly: the app's routes and state (built for core 0) and its static
    /// files, without `/stats`.
    pub fn service(&self, config: &Config) -> Result<CoreService<S>, BoxError> {
        let setup = Setup {
            core: 0,
            index: 0,
            config,
        };
        let state = (self.factory)(&setup)?;
        Ok(CoreService::new(
            Arc::new(self.router(config, None)?),
            state,
            None,
        ))
    }

    /// Checks `config` as [`App::start`] would, without serving: the cores exist and are
    /// usable, the address is one of this machine's (and its port free, or held by
    /// `SO_REUSEPORT` sockets of this user, such as a running percore's), the static root
    /// opens, the routes the configuration adds are well formed. The state factory is not
    /// run.
    pub fn check(&self, config: &Config) -> Result<(), ConfigError> {
        crate::server::check(config, self.files)?;
        let board = StatsBoard::new(1);
        self.router(config, Some((&board, &[0]))).map(drop)
    }

    /// Binds, starts one executor per configured core (each building its state), and
    /// returns once all serve.
    pub fn start(self, config: Config) -> Result<Server, ConfigError> {
        let parts = self.into_parts();
        Server::start_app(config, parts)
    }

    fn into_parts(self) -> AppParts<S> {
        AppParts {
            app: Arc::new(self),
        }
    }

    /// Serves until SIGINT or SIGTERM, then drains and prints the run's summary. SIGHUP
    /// starts new cores with the same configuration and drains the old ones ([`App::main`]
    /// re-reads the file).
    pub fn run(self, config: Config) -> anyhow::Result<()> {
        let again = config.clone();
        crate::server::run_app(config, self.into_parts(), move || Ok(again.clone()))
    }

    /// The whole program: reads percore's flags (`--config`, `--port`, `--cores`…, see
    /// `percore --help`), serves until SIGINT or SIGTERM, and turns an error into one line
    /// on stderr and exit status 1.
    pub fn main(self) -> ExitCode {
        self.main_from(std::env::args_os())
    }

    /// [`App::main`] with the command line given (program name first).
    pub fn main_from<I, T>(self, args: I) -> ExitCode
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::Parser;
        let args = match crate::cli::Args::try_parse_from(args) {
            Ok(args) => args,
            // Help, version and usage errors, printed as clap prints them.
            Err(error) => error.exit(),
        };
        if let Some(crate::cli::Command::Report { dir }) = &args.command {
            return match crate::report::report_dir(dir) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("percore: error: {error}");
                    ExitCode::FAILURE
                }
            };
        }
        if args.check {
            return match args.load().and_then(|config| Ok(self.check(&config)?)) {
                Ok(()) => {
                    println!("configuration ok");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("percore: error: {error}");
                    ExitCode::FAILURE
                }
            };
        }
        let result = args.load().and_then(|config| {
            // SIGHUP reads the file again, with the same flags over it.
            crate::server::run_app(config, self.into_parts(), move || args.load())
        });
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("percore: error: {error}");
                ExitCode::FAILURE
            }
        }
    }
}

/// An app on its way to the cores.
pub(crate) struct AppParts<S: 'static> {
    app: Arc<App<S>>,
}

impl<S: 'static> AppParts<S> {
    /// The route table every core shares (read-only).
    pub(crate) fn router(
        &self,
        config: &Config,
        board: &Arc<StatsBoard>,
        cores: &[usize],
    ) -> Result<Arc<Router<Handler<S>>>, ConfigError> {
        self.app.router(config, Some((board, cores))).map(Arc::new)
    }

    /// Whether the app serves `static.root`.
    pub(crate) fn serves_files(&self) -> bool {
        self.app.files
    }

    pub(crate) fn share(&self) -> AppParts<S> {
        AppParts {
            app: self.app.clone(),
        }
    }

    /// Builds one core's service on that core's thread.
    pub(crate) fn core_service(
        &self,
        router: Arc<Router<Handler<S>>>,
        setup: &Setup<'_>,
        static_root: Option<OwnedFd>,
    ) -> Result<CoreService<S>, String> {
        let state = (self.app.factory)(setup).map_err(|e| e.to_string())?;
        let files = static_root.map(|root| Files(StaticFiles::new(&setup.config.files, root)));
        Ok(CoreService::new(router, state, files))
    }
}

impl<S> CoreService<S> {
    fn new(router: Arc<Router<Handler<S>>>, state: S, files: Option<Files>) -> CoreService<S> {
        CoreService {
            router,
            state: Rc::new(state),
            scratch: Scratch::default(),
            params: Params::default(),
            allow: String::new(),
            socket: -1,
            client: None,
            read_at: std::time::Instant::now(),
            log: None,
            draining: false,
            files,
        }
    }
}

/// What a core's service leaves for the driver.
pub enum Deferred {
    /// A file's bytes, behind the head written.
    File(Box<FileBody>),
    /// A whole response an async handler is making (`Err` if it panicked), and what the
    /// access log will say of its request once it is written.
    Task(
        Pin<Box<dyn Future<Output = std::thread::Result<Reply>>>>,
        Option<Box<LateLog>>,
    ),
}

/// The request of an async handler, as the access log needs it once the response is made.
#[derive(Debug)]
pub struct LateLog {
    request: Vec<u8>,
    referer: Option<Vec<u8>>,
    user_agent: Option<Vec<u8>>,
    client: Option<std::net::SocketAddr>,
    read_at: std::time::Instant,
}

impl std::fmt::Debug for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Deferred::File(body) => f.debug_tuple("File").field(body).finish(),
            Deferred::Task(..) => f.write_str("Task"),
        }
    }
}

/// One core's service: the shared route table, the core's state and buffers.
pub struct CoreService<S: 'static> {
    router: Arc<Router<Handler<S>>>,
    state: Rc<S>,
    scratch: Scratch,
    params: Params,
    allow: String,
    /// The socket of the connection being answered, for [`Request::peer_addr`].
    socket: RawFd,
    /// The client a PROXY header named for that connection (or, with an access log, its
    /// socket's peer).
    client: Option<std::net::SocketAddr>,
    /// When the bytes now being answered were reaped (for the access log's durations).
    read_at: std::time::Instant,
    /// This core's access log, when one is kept.
    log: Option<CoreLog>,
    /// The core has begun draining (the health route answers 503).
    draining: bool,
    files: Option<Files>,
}

impl<S: 'static> CoreService<S> {
    /// The connection whose requests are answered next, and the client a PROXY header
    /// named for it.
    pub(crate) fn set_socket(
        &mut self,
        fd: RawFd,
        client: Option<std::net::SocketAddr>,
        read_at: std::time::Instant,
    ) {
        self.socket = fd;
        self.client = client;
        self.read_at = read_at;
    }

    /// Keeps an access log on this core.
    pub(crate) fn set_log(&mut self, log: CoreLog) {
        self.log = Some(log);
    }

    /// The log lines since the last call, if there are any.
    pub(crate) fn take_log(&mut self) -> Option<Vec<u8>> {
        let log = self.log.as_mut()?;
        let lines = log.take();
        (!lines.is_empty()).then_some(lines)
    }

    /// Log lines dropped for want of room.
    pub(crate) fn log_dropped(&self) -> u64 {
        self.log.as_ref().map_or(0, |log| log.dropped)
    }

    /// Logs the late response of an async handler: `status`, `bytes` written.
    pub(crate) fn log_late(&mut self, late: &LateLog, status: Status, bytes: u64) {
        if let Some(log) = self.log.as_mut() {
            log.record(&Entry {
                client: late.client,
                request: &late.request,
                status: status.0,
                bytes,
                referer: late.referer.as_deref(),
                user_agent: late.user_agent.as_deref(),
                micros: late.read_at.elapsed().as_micros() as u64,
            });
        }
    }

    /// Logs a response the protocol layer made for a request it could not read (400, 408,
    /// 413…): the request line is unknown.
    pub(crate) fn log_refusal(&mut self, status: Status, bytes: u64) {
        let (client, read_at) = (self.client, self.read_at);
        if let Some(log) = self.log.as_mut() {
            log.record(&Entry {
                client,
                request: b"-",
                status: status.0,
                bytes,
                referer: None,
                user_agent: None,
                micros: read_at.elapsed().as_micros() as u64,
            });
        }
    }

    /// The core has begun draining.
    pub(crate) fn set_draining(&mut self) {
        self.draining = true;
    }

    /// The core's static files, when it serves them.
    pub(crate) fn files(&self) -> Option<&StaticFiles> {
        self.files.as_ref().map(|files| &files.0)
    }

    /// The core's static files (to fill their cache).
    pub(crate) fn files_mut(&mut self) -> Option<&mut StaticFiles> {
        self.files.as_mut().map(|files| &mut files.0)
    }

    /// This core's state.
    pub fn state(&self) -> &S {
        &self.state
    }
}

impl<S: 'static> Service for CoreService<S> {
    type Deferred = Deferred;

    fn wants_body(&mut self, request: &http_request::Request<'_>) -> bool {
        let found = self.router.find(
            request.method(),
            request.path(),
            &mut self.params,
            &mut self.allow,
        );
        matches!(found, Lookup::Handler(Handler::Sync(_) | Handler::Async(_)))
    }

    fn call(
        &mut self,
        request: &http_request::Request<'_>,
        response: &mut http_response::Response<'_>,
    ) -> Option<Deferred> {
        let mut deferred = self.answer(request, response);
        if self.log.is_some() {
            self.log_answer(request, response, &mut deferred);
        }
        deferred
    }
}

/// The request line: the head's first line, without its line end.
fn request_line<'a>(request: &http_request::Request<'a>) -> &'a [u8] {
    let bytes = request.bytes;
    let end = bytes
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(bytes.len());
    &bytes[..end]
}

impl<S: 'static> CoreService<S> {
    /// Logs the answer to `request` (an async handler's when its response is written).
    #[inline(never)]
    fn log_answer(
        &mut self,
        request: &http_request::Request<'_>,
        response: &http_response::Response<'_>,
        deferred: &mut Option<Deferred>,
    ) {
        let (client, read_at) = (self.client, self.read_at);
        let referer = request.header(b"referer");
        let user_agent = request.header(b"user-agent");
        if let Some(Deferred::Task(_, late)) = deferred {
            *late = Some(Box::new(LateLog {
                request: request_line(request).to_vec(),
                referer: referer.map(<[u8]>::to_vec),
                user_agent: user_agent.map(<[u8]>::to_vec),
                client,
                read_at,
            }));
            return;
        }
        let file = match deferred {
            Some(Deferred::File(body)) => body.len,
            _ => 0,
        };
        let Some(log) = self.log.as_mut() else {
            return;
        };
        log.record(&Entry {
            client,
            request: request_line(request),
            status: response.sent.map_or(500, |s| s.0),
            bytes: (response.out.len() - response.start) as u64 + file,
            referer,
            user_agent,
            micros: read_at.elapsed().as_micros() as u64,
        });
    }

    /// Answers `request` (see [`Service::call`]).
    fn answer(
        &mut self,
        request: &http_request::Request<'_>,
        response: &mut http_response::Response<'_>,
    ) -> Option<Deferred> {
        if request.head.asterisk {
            // `OPTIONS *` asks about the server as a whole.
            self.router.all_methods(&mut self.allow);
            response.send(Status::NO_CONTENT, None, &[("Allow", &self.allow)], &[]);
            return None;
        }
        let found = self.router.find(
            request.method(),
            request.path(),
            &mut self.params,
            &mut self.allow,
        );
        let handler = match found {
            Lookup::Handler(handler) => handler,
            Lookup::NotFound => {
                response.send_status(Status::NOT_FOUND, &[]);
                return None;
            }
            Lookup::NotAllowed if request.head.method == Method::Options => {
                response.send(Status::NO_CONTENT, None, &[("Allow", &self.allow)], &[]);
                return None;
            }
            Lookup::NotAllowed => {
                response.send_status(Status::METHOD_NOT_ALLOWED, &[("Allow", &self.allow)]);
                return None;
            }
        };
        let user_request = Request {
            inner: *request,
            params: &self.params,
            peer: match self.client {
                Some(client) => Peer::Known(Some(client)),
                None => Peer::Socket(self.socket),
            },
        };
        match handler {
            Handler::Async(handler) => {
                let state = self.state.clone();
                start_task(&**handler, user_request, state, response)
            }
            Handler::Sync(handler) => {
                let mut user = Response::new(
                    &mut *response.out,
                    &mut self.scratch,
                    response.head_only,
                    response.persistence,
                );
                user.http10 = request.head.version == http_request::Version::Http10;
                let state = &*self.state;
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    handler(&user_request, &mut user, state);
                    user.finish()
                }));
                let parts = Parts::of(user);
                settle(outcome.ok(), parts, response)
            }
            Handler::Health => {
                let (status, body): (Status, &[u8]) = match self.draining {
                    false => (Status::OK, b"ok\n"),
                    true => (Status::SERVICE_UNAVAILABLE, b"draining\n"),
                };
                let text = Some(http_response::TEXT_PLAIN);
                response.send(status, text, &[("Cache-Control", "no-store")], &[body]);
                None
            }
            Handler::Files => serve_files(
                self.files.as_mut(),
                &mut self.scratch,
                &user_request,
                response,
            ),
        }
    }
}

/// Calls an async handler: its future, made here, becomes the deferred part.
#[inline(never)]
fn start_task<S>(
    handler: &AsyncHandler<S>,
    request: Request<'_>,
    state: Rc<S>,
    response: &mut http_response::Response<'_>,
) -> Option<Deferred> {
    let made = catch_unwind(AssertUnwindSafe(|| handler(request.to_owned(), state)));
    match made {
        Ok(future) => Some(Deferred::Task(
            Box::pin(AssertUnwindSafe(future).catch_unwind()),
            None,
        )),
        Err(_) => {
            fail(response);
            None
        }
    }
}

/// Answers from the core's static files.
#[inline(never)]
fn serve_files(
    files: Option<&mut Files>,
    scratch: &mut Scratch,
    request: &Request<'_>,
    response: &mut http_response::Response<'_>,
) -> Option<Deferred> {
    let mut user = Response::new(
        &mut *response.out,
        scratch,
        response.head_only,
        response.persistence,
    );
    let outcome = match files {
        Some(files) => {
            let rest = files.0.under_mount(request.inner.path());
            catch_unwind(AssertUnwindSafe(|| {
                user.serve_file(files, request, rest, true);
                user.finish()
            }))
            .ok()
        }
        None => None,
    };
    let parts = Parts::of(user);
    settle(outcome, parts, response)
}

/// What a finished user response hands back.
struct Parts {
    persistence: Persistence,
    file: Option<FileBody>,
    start: usize,
}

impl Parts {
    fn of(mut user: Response<'_>) -> Parts {
        Parts {
            persistence: user.persistence,
            file: user.file.take(),
            start: user.start,
        }
    }
}

/// Copies a handler's outcome to the session's response: its status and persistence and
/// any file body; or, when it panicked, a 500 in place of what it wrote.
fn settle(
    outcome: Option<Status>,
    parts: Parts,
    response: &mut http_response::Response<'_>,
) -> Option<Deferred> {
    match outcome {
        Some(status) => {
            response.sent = Some(status);
            response.persistence = parts.persistence;
            // An interim response moved where the final one starts.
            response.start = parts.start;
            parts.file.map(|file| Deferred::File(Box::new(file)))
        }
        None => {
            response.out.truncate(response.start);
            fail(response);
            None
        }
    }
}

/// A handler panicked: its request gets a 500 and its connection closes.
fn fail(response: &mut http_response::Response<'_>) {
    response.persistence = Persistence::Close;
    response.own = 0;
    response.failed = true;
    response.send_status(Status::INTERNAL_SERVER_ERROR, &[]);
}

/// Writes the late response of an async handler (or a 500 if it panicked).
pub(crate) fn write_late(
    result: &std::thread::Result<Reply>,
    response: &mut http_response::Response<'_>,
) {
    match result {
        Ok(reply) => reply.write(response),
        Err(_) => fail(response),
    }
}
