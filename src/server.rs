//! Start-up and shutdown of the whole server: one pinned executor thread per chosen core.
//!
//! The main thread resolves the cores, creates every listening socket (so that "port in use"
//! and friends are reported before any thread starts, and so that port 0 resolves to one
//! real port shared by all cores through SO_REUSEPORT), then starts one thread per core. Each
//! thread builds its glommio executor pinned to its core and its own io_uring, and reports
//! success or a clear error back before serving. [`Server`] is the handle: its address, and
//! shutdown on request or on drop. [`run`] adds the signal handling the binary needs.
//! Per-core work is in `driver`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};
use socket2::{Domain, Protocol, Socket, Type};

use crate::app::{AppParts, Setup};
use crate::config::{format_cores, usable_cores, Config, ConfigError, ReportFormat};
use crate::driver;
use crate::handover;
use crate::metrics::StatsBoard;
use crate::report::{self, RunSummary};
use crate::ring::RingMode;
use crate::routes::StaticFiles;

/// A running server.
pub struct Server {
    addr: SocketAddr,
    cores: Vec<usize>,
    cores_running: Vec<CoreHandle>,
    reporter: Option<JoinHandle<RunSummary>>,
    /// The access log's writer thread, when a log is kept.
    log: Option<crate::access_log::LogWriter>,
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
    /// Starts the `percore` binary's app (`/echo`, `/stats`, static files; see
    /// [`crate::routes::percore_app`]): binds, starts one executor per configured core, and
    /// returns once all serve.
    pub fn start(config: Config) -> Result<Server, ConfigError> {
        crate::routes::percore_app().start(config)
    }

    /// Starts `app` (see [`crate::App::start`]).
    pub(crate) fn start_app<S: 'static>(
        config: Config,
        app: AppParts<S>,
    ) -> Result<Server, ConfigError> {
        Server::start_app_with(config, app, Vec::new())
    }

    /// Starts `app` on `inherited` listening sockets (a previous server's, already bound
    /// to the configured address), or on new ones when there are none.
    pub(crate) fn start_app_with<S: 'static>(
        config: Config,
        app: AppParts<S>,
        inherited: Vec<Socket>,
    ) -> Result<Server, ConfigError> {
        let cores = config.server.cores.resolve(&usable_cores())?;
        let static_root = match app.serves_files() {
            true => open_static_root(&config)?,
            false => None,
        };
        let sockets = match inherited.is_empty() {
            true => bind_listeners(&config, cores.len())?,
            false => adopt_listeners(&config, cores.len(), inherited)?,
        };
        let kept = sockets
            .iter()
            .map(Socket::try_clone)
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| ConfigError(format!("cannot duplicate a listening socket: {e}")))?;
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
            .ok_or_else(|| ConfigError("cannot read the bound address".into()))?;

        let (ready_tx, ready_rx) = mpsc::channel::<Result<RingMode, String>>();
        let (report_tx, report_rx) = mpsc::channel();
        let log = match config.log.access.as_os_str().is_empty() {
            true => None,
            false => Some(
                crate::access_log::LogWriter::start(config.log.access.clone()).map_err(|e| {
                    ConfigError(format!("log.access {}: {e}", config.log.access.display()))
                })?,
            ),
        };
        let board = StatsBoard::new(cores.len());
        let router = app.router(&config, &board, &cores)?;
        let reporter = {
            let cores = cores.clone();
            let report = config.report.clone();
            let tick = driver::report_tick(&config);
            std::thread::Builder::new()
                .name("percore-report".into())
                .spawn(move || report::run(report_rx, cores, report, tick))
                .map_err(|e| ConfigError(format!("cannot start the report thread: {e}")))?
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
        for (index, (&core, listeners)) in cores.iter().zip(listeners).enumerate() {
            let (stop, stop_core) = UnixStream::pair()
                .map_err(|e| ConfigError(format!("cannot create a socket pair: {e}")))?;
            let config = config.clone();
            let ready = ready_tx.clone();
            let links = driver::Links {
                index,
                core,
                cores: cores.clone(),
                board: board.clone(),
                reports: report_tx.clone(),
                log: log.as_ref().map(|writer| writer.sender.clone()),
                static_root: match &static_root {
                    Some(root) => Some(root.try_clone().map_err(|e| {
                        ConfigError(format!("cannot duplicate the static root handle: {e}"))
                    })?),
                    None => None,
                },
            };
            let app = app.share();
            let router = router.clone();
            let thread = std::thread::Builder::new()
                .name(format!("percore-{core}"))
                .spawn(move || {
                    run_core(
                        config,
                        listeners,
                        stop_core,
                        links,
                        ready,
                        move |setup, root| {
                            let mut service = app.core_service(router, setup, root)?;
                            let log = &setup.config.log;
                            if !log.access.as_os_str().is_empty() {
                                service.set_log(crate::access_log::CoreLog::new(
                                    setup.core,
                                    log.format,
                                    log.buffer_bytes,
                                ));
                            }
                            Ok(service)
                        },
                    )
                })
                .map_err(|e| ConfigError(format!("cannot start a thread for core {core}: {e}")))?;
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
                Ok(Err(message)) => return Err(ConfigError(message)),
                Err(_) => return Err(ConfigError("an executor thread died at start-up".into())),
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
    pub fn ring_mode(&self) -> RingMode {
        self.mode
    }

    /// How reports are printed (`report.format`).
    pub fn report_format(&self) -> ReportFormat {
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
    pub fn reopen_log(&self) {
        if let Some(log) = &self.log {
            let _ = log.sender.send(crate::access_log::LogMsg::Reopen);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn run_core<S: 'static>(
    config: Config,
    listeners: Vec<Socket>,
    stop: UnixStream,
    mut links: driver::Links,
    ready: mpsc::Sender<Result<RingMode, String>>,
    make: impl FnOnce(&Setup<'_>, Option<OwnedFd>) -> Result<crate::app::CoreService<S>, String>,
) {
    let core = links.core;
    let runtime = &config.runtime;
    let mut builder = LocalExecutorBuilder::new(Placement::Fixed(core))
        .name(&format!("percore-{core}"))
        .io_memory(runtime.io_memory_kb * 1024)
        .ring_depth(runtime.ring_depth);
    if runtime.spin_before_park_us > 0 {
        builder = builder.spin_before_park(Duration::from_micros(runtime.spin_before_park_us));
    }
    let executor = match builder.make() {
        Ok(executor) => executor,
        Err(error) => {
            let _ = ready.send(Err(io_uring_error(core, &error.to_string())));
            return;
        }
    };
    executor.run(async move {
        // The ring is made here, on the thread that alone submits to it (SINGLE_ISSUER).
        let ring = match driver::make_ring(&config) {
            Ok(ring) => ring,
            Err(error) => {
                let _ = ready.send(Err(format!("core {core}: {error}")));
                return;
            }
        };
        // The app's state for this core is made here, on the core's own thread.
        let setup = Setup {
            core,
            index: links.index,
            config: &config,
        };
        let service = match make(&setup, links.static_root.take()) {
            Ok(service) => service,
            Err(error) => {
                let _ = ready.send(Err(format!("core {core}: {error}")));
                return;
            }
        };
        let _ = ready.send(Ok(ring.mode));
        // SAFETY: both descriptors are handed over whole to their new owners.
        let (listeners, stop) = unsafe {
            (
                listeners
                    .into_iter()
                    .map(|l| OwnedFd::from_raw_fd(l.into_raw_fd()))
                    .collect(),
                OwnedFd::from_raw_fd(stop.into_raw_fd()),
            )
        };
        driver::run(config, ring, listeners, stop, links, service).await;
    });
}

fn io_uring_error(core: usize, error: &str) -> String {
    format!(
        "cannot start the io_uring executor on core {core}: {error}. io_uring must be allowed: \
         sysctl kernel.io_uring_disabled must be 0, a seccomp profile (e.g. Docker's default) \
         must not block io_uring_setup, and RLIMIT_MEMLOCK (ulimit -l) must cover \
         runtime.io_memory_kb"
    )
}

/// Opens `static.root` (once; each core gets its own handle), or `None` when it is unset.
fn open_static_root(config: &Config) -> Result<Option<OwnedFd>, ConfigError> {
    let root = &config.files.root;
    if root.as_os_str().is_empty() {
        return Ok(None);
    }
    StaticFiles::open_root(&config.files)
        .map(Some)
        .map_err(|e| ConfigError(format!("static.root {}: {e}", root.display())))
}

/// Checks what start-up checks without serving (see [`crate::App::check`]).
pub(crate) fn check(config: &Config, serves_files: bool) -> Result<(), ConfigError> {
    config.server.cores.resolve(&usable_cores())?;
    if serves_files {
        open_static_root(config)?;
    }
    // A socket like the ones that would serve: it binds beside a running percore's
    // (SO_REUSEPORT, same user), not beside another program's.
    let addr = config.listen_addr();
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| bind_error(e, addr))?;
    socket
        .set_reuse_address(true)
        .and_then(|()| socket.set_reuse_port(true))
        .and_then(|()| socket.bind(&addr.into()))
        .map_err(|e| bind_error(e, addr))
}

/// The one-line start-up error for a socket that cannot listen on `addr`.
fn bind_error(e: io::Error, addr: SocketAddr) -> ConfigError {
    ConfigError(match e.kind() {
        io::ErrorKind::AddrInUse => format!("cannot listen on {addr}: port {} is already in use", addr.port()),
        io::ErrorKind::AddrNotAvailable => {
            format!("cannot listen on {addr}: no such address on this machine")
        }
        io::ErrorKind::PermissionDenied => format!(
            "cannot listen on {addr}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        ),
        _ => format!("cannot listen on {addr}: {e}"),
    })
}

/// Takes over a previous server's listening sockets, with this configuration's backlog and
/// options, adding sockets (SO_REUSEPORT, same address) while there are fewer than cores.
fn adopt_listeners(
    config: &Config,
    count: usize,
    mut sockets: Vec<Socket>,
) -> Result<Vec<Socket>, ConfigError> {
    let addr = sockets[0]
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .ok_or_else(|| ConfigError("cannot read an inherited socket's address".into()))?;
    for socket in &sockets {
        // listen(2) again only sets the backlog of a listening socket.
        socket
            .listen(config.server.backlog.min(i32::MAX as u32) as i32)
            .and_then(|()| socket.set_nodelay(true))
            .and_then(|()| defer_accept(socket, config.server.defer_accept))
            .map_err(|e| bind_error(e, addr))?;
    }
    let given = sockets.len();
    while sockets.len() < count {
        // A socket without SO_REUSEPORT (systemd's, unless `ReusePort=yes`) admits no other
        // on its address: the cores then share it, each accepting from its own duplicate.
        let next = match sockets[0].reuse_port() {
            Ok(true) => reuseport_listener(config, addr)?,
            _ => sockets[sockets.len() % given]
                .try_clone()
                .map_err(|e| ConfigError(format!("cannot duplicate a listening socket: {e}")))?,
        };
        sockets.push(next);
    }
    Ok(sockets)
}

/// A listening socket on `addr` with SO_REUSEPORT and the configured options.
fn reuseport_listener(config: &Config, addr: SocketAddr) -> Result<Socket, ConfigError> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| bind_error(e, addr))?;
    socket
        .set_reuse_address(true)
        .and_then(|()| socket.set_reuse_port(true))
        .and_then(|()| socket.bind(&addr.into()))
        .and_then(|()| socket.listen(config.server.backlog.min(i32::MAX as u32) as i32))
        // Accepted connections inherit it: no system call per connection.
        .and_then(|()| socket.set_nodelay(true))
        .and_then(|()| defer_accept(&socket, config.server.defer_accept))
        .map_err(|e| bind_error(e, addr))?;
    Ok(socket)
}

/// Creates one listening socket per core on the same address with SO_REUSEPORT.
fn bind_listeners(config: &Config, count: usize) -> Result<Vec<Socket>, ConfigError> {
    let mut addr = config.listen_addr();
    let new_socket = |addr: SocketAddr| {
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .map_err(|e| bind_error(e, addr))
    };
    if addr.port() != 0 {
        // SO_REUSEPORT would let us share a port with another server without a word; bind
        // once without it to find out whether anyone is there.
        let probe = new_socket(addr)?;
        probe
            .set_reuse_address(true)
            .map_err(|e| bind_error(e, addr))?;
        probe.bind(&addr.into()).map_err(|e| bind_error(e, addr))?;
    }
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = reuseport_listener(config, addr)?;
        if addr.port() == 0 {
            if let Some(bound) = socket.local_addr().ok().and_then(|a| a.as_socket()) {
                addr = bound;
            }
        }
        sockets.push(socket);
    }
    Ok(sockets)
}

/// With `on`, the kernel hands a connection to `accept` only once its first bytes have
/// arrived (`TCP_DEFER_ACCEPT`), or once about `DEFER_ACCEPT_SECONDS` have passed without
/// any: a new connection's request is then read at once instead of after a wait.
fn defer_accept(socket: &Socket, on: bool) -> io::Result<()> {
    let seconds: libc::c_int = if on { DEFER_ACCEPT_SECONDS } else { 0 };
    // SAFETY: an int-valued option on a socket we own.
    let result = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(socket),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&seconds as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How long a connection that sends nothing waits, with `server.defer_accept`, before it is
/// accepted anyway (the kernel rounds it to its SYN-ACK retransmission schedule).
const DEFER_ACCEPT_SECONDS: libc::c_int = 1;

/// Runs the `percore` binary's app until SIGINT or SIGTERM, then drains and returns.
pub fn run(config: Config) -> anyhow::Result<()> {
    crate::routes::percore_app().run(config)
}

/// Runs `app` until SIGINT or SIGTERM, then drains and returns.
pub(crate) fn run_app<S: 'static>(
    config: Config,
    app: AppParts<S>,
    reload: impl Fn() -> anyhow::Result<Config>,
) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
    // Before any thread starts: this reads and clears the environment.
    let inherited = handover::inherited().map_err(ConfigError)?;
    log_panics();
    let origins = handover::Origins::record();
    // Register before starting so that an early signal is not lost.
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2])?;
    let mut configured = config.listen_addr();
    let mut pid_path = config.server.pid_file.clone();
    let mut server = match inherited {
        // systemd's sockets, or the ones of the percore this one replaces, are the address.
        Some((_, sockets)) => Server::start_app_with(config, app.share(), sockets)?,
        None => Server::start_app(config, app.share())?,
    };
    let mut pid = PidFile::write(&pid_path)?;
    report::note(&serving_line("listening on", &server));
    handover::announce_ready();
    let mut retired = Vec::new();
    for signal in signals.forever() {
        if signal == SIGUSR1 {
            // logrotate moved the access log: write to a new file at its path.
            server.reopen_log();
            continue;
        }
        if signal == SIGUSR2 {
            let upgraded = match &origins {
                Ok(origins) => server
                    .hand_over()
                    .map_err(|e| format!("cannot duplicate the listening sockets: {e}"))
                    .and_then(|sockets| origins.start_successor(sockets, UPGRADE_WAIT)),
                Err(e) => Err(format!("cannot tell which binary this is: {e}")),
            };
            match upgraded {
                Ok(pid) => {
                    report::note(&format!(
                        "SIGUSR2: the new binary serves (pid {pid}); draining connections"
                    ));
                    break;
                }
                Err(why) => report::note(&format!("SIGUSR2: not upgraded, still serving: {why}")),
            }
            continue;
        }
        if signal != SIGHUP {
            let name = if signal == SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            };
            report::note(&format!("{name}, draining connections"));
            break;
        }
        let next = reload().and_then(|config| {
            let addr = config.listen_addr();
            // Same address: the new cores take over the listening sockets themselves, so
            // that nothing queued on them is lost; a new address gets new sockets.
            let inherited = match addr == configured {
                true => server.hand_over()?,
                false => Vec::new(),
            };
            let pid_file = config.server.pid_file.clone();
            Ok((
                Server::start_app_with(config, app.share(), inherited)?,
                addr,
                pid_file,
            ))
        });
        match next {
            Err(error) => report::note(&format!(
                "SIGHUP: not reloaded, still serving the previous configuration: {error}"
            )),
            Ok((next, addr, pid_file)) => {
                let previous = std::mem::replace(&mut server, next);
                configured = addr;
                if pid_file != pid_path {
                    pid = PidFile::write(&pid_file)?;
                    pid_path = pid_file;
                }
                report::note(&serving_line("SIGHUP: reloaded, listening on", &server));
                // The previous cores drain beside the new ones.
                retired.push(std::thread::spawn(move || previous.shutdown()));
            }
        }
    }
    // A second signal gives up on draining.
    std::thread::spawn(move || {
        if signals
            .forever()
            .any(|signal| signal == SIGINT || signal == SIGTERM)
        {
            report::note("second signal, exiting without draining");
            std::process::exit(1);
        }
    });
    let format = server.report_format();
    let summary = server.shutdown();
    for previous in retired {
        let _ = previous.join();
    }
    report::print_summary(&summary, format);
    drop(pid);
    report::note("stopped");
    Ok(())
}

/// Handler panics on the cores' threads become error lines (timestamped, with the core,
/// rate-limited like the others) instead of the default hook's unbounded output; panics
/// elsewhere go to the hook that was there.
fn log_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let core = thread
            .name()
            .and_then(|name| name.strip_prefix("percore-"))
            .and_then(|core| core.parse::<usize>().ok());
        match core {
            Some(core) => {
                let message = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".into());
                let location = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                report::error_line(
                    Some(core),
                    &format!("handler panicked{location}: {message}; answered 500"),
                );
            }
            None => previous(info),
        }
    }));
}

/// How long a new binary started on SIGUSR2 has to start serving before the upgrade is given
/// up (and it is stopped).
const UPGRADE_WAIT: Duration = Duration::from_secs(30);

/// "`what` http://ADDR on N core(s): LIST (ring mode)".
fn serving_line(what: &str, server: &Server) -> String {
    format!(
        "{what} http://{} on {} core(s): {} ({})",
        server.local_addr(),
        server.cores().len(),
        format_cores(server.cores()),
        server.ring_mode().describe()
    )
}

/// The PID file of the process serving: written once it serves, removed when it stops if it
/// still names this process (a successor may have rewritten it).
struct PidFile(Option<std::path::PathBuf>);

impl PidFile {
    fn write(path: &std::path::Path) -> Result<PidFile, ConfigError> {
        if path.as_os_str().is_empty() {
            return Ok(PidFile(None));
        }
        // Written whole under another name, then renamed: a reader never sees half a PID.
        let partial = path.with_extension("partial");
        std::fs::write(&partial, format!("{}\n", std::process::id()))
            .and_then(|()| std::fs::rename(&partial, path))
            .map_err(|e| ConfigError(format!("server.pid_file {}: {e}", path.display())))?;
        Ok(PidFile(Some(path.to_path_buf())))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let ours = std::fs::read_to_string(path)
                .is_ok_and(|text| text.trim() == std::process::id().to_string());
            if ours {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
