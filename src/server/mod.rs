//! Start-up and shutdown of the whole server: one pinned executor thread per chosen core.
//!
//! The main thread resolves the cores, creates every listening socket (`sockets`), prepares
//! what the cores share, then starts one thread per core (`thread`), each of which builds
//! its executor, its ring and the application's service for that core and reports success
//! or a clear error back before serving. [`Server`] is the handle: its address, and
//! shutdown on request or on drop. `signals` adds what a process needs around it: signals,
//! reload, binary upgrade (`handover` passes the listening sockets on), the PID file.
//!
//! The server serves whatever it is given: a [`ServiceFactory`] makes each core's
//! `engine::Application`.

mod handover;
mod parked;
mod pid_file;
mod signal_wait;
mod signals;
mod sockets;
mod thread;

use std::io;
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use socket2::Socket;

pub(crate) use signals::serve;
pub(crate) use sockets::check_address;

use crate::access_log::{LogMsg, LogWriter};
use crate::config::{usable_cores, Cleartext, Config, ConfigError, ReportFormat};
use crate::engine::{self, Application, Links, RingMode};
use crate::metrics::{server_labels, StatsBoard};
use crate::report::{self, RunSummary};
use crate::tls::{TicketKeys, TlsSetup};

/// Why a server did not start: one line for the user.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration or the flags are wrong.
    Config(ConfigError),
    /// A listening socket could not be made: the address, the port, the permissions.
    Listen(String),
    /// A core could not start: its executor or ring, or the application's state for it.
    Core(String),
    /// The application refused the configuration (a route it adds, its settings, its files).
    App(String),
    /// A TLS certificate or key does not load, or they do not belong together.
    Tls(String),
    /// The system refused something else: a thread, a socket pair, a file.
    System(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(error) => error.fmt(f),
            StartError::Listen(line)
            | StartError::Core(line)
            | StartError::App(line)
            | StartError::Tls(line)
            | StartError::System(line) => f.write_str(line),
        }
    }
}

impl std::error::Error for StartError {}

impl From<ConfigError> for StartError {
    fn from(error: ConfigError) -> StartError {
        StartError::Config(error)
    }
}

/// What one core's service is made from, on that core's thread.
pub(crate) struct CoreSetup<'a> {
    /// The CPU the core runs on.
    pub(crate) cpu: usize,
    /// Its position among the server's cores, from 0.
    pub(crate) index: usize,
    /// The server's configuration.
    pub(crate) config: &'a Config,
    /// With `tls.cleartext = "redirect"`: the TLS listener's port, to which the cleartext
    /// listener's requests are sent.
    pub(crate) https_redirect: Option<u16>,
    /// Where the core's tasks call its upstreams.
    pub(crate) door: &'a crate::engine::Outbound,
    /// Where its tasks reach its WebSockets and publish to groups.
    pub(crate) hub: &'a crate::engine::Hub,
}

/// What the server serves: prepared once per start on the main thread (where a bad
/// configuration is still a start-up error), then made into one service per core, on that
/// core's thread (a service is not `Send`: it holds the core's own state).
pub(crate) trait ServiceFactory: Send + Sync + 'static {
    /// What every core's service is made from.
    type Prepared: Clone + Send + 'static;
    /// One core's service.
    type Service: Application;

    /// Checks `config` and prepares what the cores share; `board` is where the cores
    /// publish their totals, `cores` the CPUs serving.
    fn prepare(
        &self,
        config: &Config,
        board: &Arc<StatsBoard>,
        cores: &[usize],
    ) -> Result<Self::Prepared, StartError>;

    /// Makes one core's service.
    fn make(prepared: &Self::Prepared, setup: &CoreSetup<'_>) -> Result<Self::Service, String>;
}

/// Listening sockets, cleartext and TLS.
#[derive(Default)]
pub(crate) struct Sockets {
    pub(crate) http: Vec<Socket>,
    pub(crate) https: Vec<Socket>,
}

/// A running server.
pub struct Server {
    /// The cleartext listener's address, when there is one.
    http_addr: Option<SocketAddr>,
    /// The TLS listener's address, when there is one.
    tls_addr: Option<SocketAddr>,
    cores: Vec<usize>,
    cores_running: Vec<CoreHandle>,
    reporter: Option<JoinHandle<RunSummary>>,
    /// The access log's writer thread, when a log is kept.
    log: Option<LogWriter>,
    format: ReportFormat,
    mode: RingMode,
    /// The listening sockets, kept to hand to the server that replaces this one (a reload,
    /// an upgrade): queued connections then stay queued instead of being reset.
    sockets: Sockets,
}

struct CoreHandle {
    /// Dropping this end tells the core to stop.
    stop: Option<UnixStream>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts `factory`'s services on `inherited` listening sockets (a previous server's,
    /// already bound to the configured addresses), or on new ones where there are none;
    /// returns once every core serves. `tickets` are the process's TLS ticket keys: moved
    /// on to now (new ones if `tls.ticket_lifetime_s` changed), then each core gets a copy.
    pub(crate) fn start<F: ServiceFactory>(
        config: Config,
        factory: &F,
        inherited: Sockets,
        tickets: &mut TicketKeys,
    ) -> Result<Server, StartError> {
        let cores = config.server.cores.resolve(&usable_cores())?;
        let tls = match &config.tls {
            Some(tls) => {
                let now = crate::support::civil_time::unix_now();
                tickets
                    .fit(tls.ticket_lifetime_s, now)
                    .map_err(StartError::Tls)?;
                Some(Arc::new(TlsSetup::load(tls).map_err(StartError::Tls)?))
            }
            None => None,
        };
        let listen = |addr: Option<SocketAddr>, inherited: Vec<Socket>| match addr {
            None => Ok(Vec::new()),
            Some(addr) if inherited.is_empty() => {
                sockets::bind_listeners(&config, addr, cores.len())
            }
            Some(_) => sockets::adopt_listeners(&config, cores.len(), inherited),
        };
        let http = listen(
            config.serves_cleartext().then(|| config.listen_addr()),
            inherited.http,
        )?;
        let https = listen(config.tls_addr(), inherited.https)?;
        let system = |what: &str, e: io::Error| StartError::System(format!("{what}: {e}"));
        let duplicate = |sockets: &[Socket]| {
            sockets
                .iter()
                .map(Socket::try_clone)
                .collect::<io::Result<Vec<_>>>()
                .map_err(|e| system("cannot duplicate a listening socket", e))
        };
        let kept = Sockets {
            http: duplicate(&http)?,
            https: duplicate(&https)?,
        };
        let bound = |sockets: &[Socket]| {
            sockets.first().map(|socket| {
                socket
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_socket())
                    .ok_or_else(|| StartError::Listen("cannot read the bound address".into()))
            })
        };
        let http_addr = bound(&kept.http).transpose()?;
        let tls_addr = bound(&kept.https).transpose()?;
        let redirect_port = config
            .tls
            .as_ref()
            .filter(|tls| tls.cleartext == Cleartext::Redirect)
            .and(tls_addr)
            .map(|addr| addr.port());
        // Core i serves sockets i, i + cores, i + 2 × cores… of each kind (more sockets
        // than cores only when a server with more cores handed its sockets over).
        let mut listeners: Vec<Vec<(Socket, bool)>> =
            (0..cores.len()).map(|_| Vec::new()).collect();
        for (secure, sockets) in [(false, http), (true, https)] {
            for (i, socket) in sockets.into_iter().enumerate() {
                listeners[i % cores.len()].push((socket, secure));
            }
        }

        let board = StatsBoard::with_servers(cores.len(), server_labels(&config));
        let prepared = factory.prepare(&config, &board, &cores)?;
        let log = match config.log.access.as_os_str().is_empty() {
            true => None,
            false => Some(LogWriter::start(config.log.access.clone()).map_err(|e| {
                StartError::System(format!("log.access {}: {e}", config.log.access.display()))
            })?),
        };
        let (ready_tx, ready_rx) = mpsc::channel::<Result<RingMode, String>>();
        let (report_tx, report_rx) = mpsc::channel();
        let reporter = {
            let cores = cores.clone();
            let report = config.report.clone();
            let tick = engine::report_tick(&config);
            std::thread::Builder::new()
                .name("percore-report".into())
                .spawn(move || report::run(report_rx, cores, report, tick))
                .map_err(|e| system("cannot start the report thread", e))?
        };
        let mut server = Server {
            http_addr,
            tls_addr,
            cores: cores.clone(),
            cores_running: Vec::with_capacity(cores.len()),
            reporter: Some(reporter),
            format: config.report.format,
            mode: RingMode::DeferTaskrun,
            sockets: kept,
            log: None,
        };
        let tls_max = config
            .tls
            .as_ref()
            .map_or(0, |tls| tls.max_handshakes_per_core);
        // The channels between cores that carry WebSocket group messages.
        let mut meshes = crate::engine::mesh(cores.len())
            .map_err(|e| system("cannot create the cores' bells", e))?
            .into_iter();
        for (index, (&cpu, listeners)) in cores.iter().zip(listeners).enumerate() {
            let mesh = meshes.next().expect("a mesh end per core");
            let (stop, stop_core) =
                UnixStream::pair().map_err(|e| system("cannot create a socket pair", e))?;
            let config = config.clone();
            let ready = ready_tx.clone();
            let links = Links {
                index,
                cpu,
                board: board.clone(),
                reports: report_tx.clone(),
                log: log.as_ref().map(|writer| writer.sender.clone()),
            };
            let prepared = prepared.clone();
            let count = cores.len();
            let tls = tls.clone().map(|setup| thread::CoreTls {
                setup,
                tickets: tickets.clone(),
                max_handshakes: tls_max,
                redirect_port,
            });
            let thread = std::thread::Builder::new()
                .name(format!("percore-{cpu}"))
                .spawn(move || {
                    let core = thread::CoreStart {
                        listeners,
                        tls,
                        stop: stop_core,
                        links,
                        ready,
                        cores: count,
                        mesh,
                    };
                    thread::run_core::<F>(config, core, prepared)
                })
                .map_err(|e| system(&format!("cannot start a thread for core {cpu}"), e))?;
            server.cores_running.push(CoreHandle {
                stop: Some(stop),
                thread: Some(thread),
            });
        }
        drop(ready_tx);
        server.log = log;
        drop(report_tx);
        for _ in 0..cores.len() {
            match ready_rx.recv() {
                // Every core makes its ring the same way; any one that fell back is reported.
                Ok(Ok(mode)) if mode != RingMode::DeferTaskrun => server.mode = mode,
                Ok(Ok(_)) => {}
                Ok(Err(message)) => return Err(StartError::Core(message)),
                Err(_) => {
                    return Err(StartError::Core(
                        "an executor thread died at start-up".into(),
                    ))
                }
            }
        }
        Ok(server)
    }

    /// The address all cores listen on for cleartext HTTP (with the real port when 0 was
    /// asked for); the TLS listener's when there is no cleartext one.
    pub fn local_addr(&self) -> SocketAddr {
        self.http_addr
            .or(self.tls_addr)
            .expect("a server listens somewhere")
    }

    /// The address all cores listen on for HTTPS, when `[tls]` is configured.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The cleartext listener's address, when there is one.
    pub(crate) fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The cores serving, in order.
    pub fn cores(&self) -> &[usize] {
        &self.cores
    }

    /// Duplicates of the listening sockets, for a server that takes over from this one.
    pub(crate) fn hand_over(&self) -> io::Result<Sockets> {
        let duplicate = |sockets: &[Socket]| -> io::Result<Vec<Socket>> {
            sockets.iter().map(Socket::try_clone).collect()
        };
        Ok(Sockets {
            http: duplicate(&self.sockets.http)?,
            https: duplicate(&self.sockets.https)?,
        })
    }

    /// How the cores' rings run their completions.
    pub(crate) fn ring_mode(&self) -> RingMode {
        self.mode
    }

    /// How reports are printed (`report.format`).
    pub(crate) fn report_format(&self) -> ReportFormat {
        self.format
    }

    /// Stops accepting, drains every core, waits for their threads and returns the run's
    /// measurements (histogram files are written by then when `report.dir` is set).
    pub fn shutdown(mut self) -> RunSummary {
        self.stop_and_join()
            .expect("the reporter runs until shutdown")
    }

    fn stop_and_join(&mut self) -> Option<RunSummary> {
        // Unless they were handed over, the sockets close with the cores' own descriptors:
        // from then on new connections are refused, not queued for nobody.
        self.sockets = Sockets::default();
        for core in &mut self.cores_running {
            core.stop.take();
        }
        for core in &mut self.cores_running {
            if let Some(thread) = core.thread.take() {
                let _ = thread.join();
            }
        }
        if let Some(log) = self.log.take() {
            // Every core has handed over its last lines: they are written before this returns.
            log.finish();
        }
        self.reporter
            .take()
            .and_then(|reporter| reporter.join().ok())
    }

    /// Makes the access log's writer reopen its file (SIGUSR1, after logrotate).
    pub(crate) fn reopen_log(&self) {
        if let Some(log) = &self.log {
            let _ = log.sender.send(LogMsg::Reopen);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// What errors in a configuration's values are said to come from when they are found at
/// start-up (one read from a file and flags was validated there, and named them).
pub(crate) const IN_CODE: &str = "the configuration";

/// Checks what start-up checks without serving: the values (as a file's are checked when
/// it is read: a configuration built in code has not been), the cores, the addresses, the
/// TLS certificates and keys.
pub(crate) fn check(config: &Config) -> Result<(), StartError> {
    config.validate(IN_CODE)?;
    config.server.cores.resolve(&usable_cores())?;
    if config.serves_cleartext() {
        check_address(config.listen_addr())?;
    }
    if let (Some(tls), Some(addr)) = (&config.tls, config.tls_addr()) {
        TlsSetup::load(tls).map_err(StartError::Tls)?;
        check_address(addr)?;
    }
    Ok(())
}
