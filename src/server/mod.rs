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
mod pid_file;
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
use crate::config::{usable_cores, Config, ConfigError, ReportFormat};
use crate::engine::{self, Application, Links, RingMode};
use crate::metrics::StatsBoard;
use crate::report::{self, RunSummary};

/// Why a server did not start: one line for the user.
#[derive(Debug)]
pub enum StartError {
    /// The configuration or the flags are wrong.
    Config(ConfigError),
    /// A listening socket could not be made: the address, the port, the permissions.
    Listen(String),
    /// A core could not start: its executor or ring, or the application's state for it.
    Core(String),
    /// The application refused the configuration (a route it adds, its settings, its files).
    App(String),
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

/// A running server.
pub struct Server {
    addr: SocketAddr,
    cores: Vec<usize>,
    cores_running: Vec<CoreHandle>,
    reporter: Option<JoinHandle<RunSummary>>,
    /// The access log's writer thread, when a log is kept.
    log: Option<LogWriter>,
    format: ReportFormat,
    mode: RingMode,
    /// The listening sockets, kept to hand to the server that replaces this one (a reload,
    /// an upgrade): queued connections then stay queued instead of being reset.
    sockets: Vec<Socket>,
}

struct CoreHandle {
    /// Dropping this end tells the core to stop.
    stop: Option<UnixStream>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts `factory`'s services on `inherited` listening sockets (a previous server's,
    /// already bound to the configured address), or on new ones when there are none; returns
    /// once every core serves.
    pub(crate) fn start<F: ServiceFactory>(
        config: Config,
        factory: &F,
        inherited: Vec<Socket>,
    ) -> Result<Server, StartError> {
        let cores = config.server.cores.resolve(&usable_cores())?;
        let sockets = match inherited.is_empty() {
            true => sockets::bind_listeners(&config, cores.len())?,
            false => sockets::adopt_listeners(&config, cores.len(), inherited)?,
        };
        let system = |what: &str, e: io::Error| StartError::System(format!("{what}: {e}"));
        let kept = sockets
            .iter()
            .map(Socket::try_clone)
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| system("cannot duplicate a listening socket", e))?;
        // Core i serves sockets i, i + cores, i + 2 × cores… (more sockets than cores only
        // when a server with more cores handed its sockets over).
        let mut listeners: Vec<Vec<Socket>> = (0..cores.len()).map(|_| Vec::new()).collect();
        for (i, socket) in sockets.into_iter().enumerate() {
            listeners[i % cores.len()].push(socket);
        }
        let addr = kept[0]
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .ok_or_else(|| StartError::Listen("cannot read the bound address".into()))?;

        let board = StatsBoard::new(cores.len());
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
            addr,
            cores: cores.clone(),
            cores_running: Vec::with_capacity(cores.len()),
            reporter: Some(reporter),
            format: config.report.format,
            mode: RingMode::DeferTaskrun,
            sockets: kept,
            log: None,
        };
        for (index, (&cpu, listeners)) in cores.iter().zip(listeners).enumerate() {
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
            let thread = std::thread::Builder::new()
                .name(format!("percore-{cpu}"))
                .spawn(move || {
                    thread::run_core::<F>(
                        config, listeners, stop_core, links, ready, prepared, count,
                    )
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

    /// The address all cores listen on (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The cores serving, in order.
    pub fn cores(&self) -> &[usize] {
        &self.cores
    }

    /// Duplicates of the listening sockets, for a server that takes over from this one.
    pub(crate) fn hand_over(&self) -> io::Result<Vec<Socket>> {
        self.sockets.iter().map(Socket::try_clone).collect()
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
        self.sockets.clear();
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

/// Checks what start-up checks without serving: the cores, the address.
pub(crate) fn check(config: &Config) -> Result<(), StartError> {
    config.server.cores.resolve(&usable_cores())?;
    check_address(config)
}
