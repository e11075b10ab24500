//! What a serving process does around its server: signals (SIGINT and SIGTERM drain and
//! stop, a second one stops at once; SIGHUP reloads; SIGUSR2 upgrades the binary; SIGUSR1
//! reopens the access log), the PID file, systemd's and a predecessor's sockets, the TLS
//! ticket keys kept for the servers it starts and for a successor, and handler panics
//! turned into error lines.
//!
//! The main thread's copy of the ticket keys moves on with the periods like every core's:
//! the signal wait ends when the next period begins, so that what this thread holds is never
//! older than what the cores hold (no key the ratchet has erased elsewhere stays here).

use std::net::SocketAddr;
use std::time::Duration;

use super::handover;
use super::pid_file::PidFile;
use super::signal_wait::SignalWait;
use super::{Server, ServiceFactory, Sockets, StartError};
use crate::config::{format_cores, Config, ConfigError};
use crate::report::print_summary;
use crate::support::civil_time::unix_now;
use crate::support::stderr::{error_line, note};
use crate::tls::TicketKeys;

/// Serves `factory` until SIGINT or SIGTERM, then drains and returns. SIGHUP starts a new
/// server with the configuration `reload` gives (the old one drains), SIGUSR2 hands the
/// listening sockets to a new binary, SIGUSR1 reopens the access log.
pub(crate) fn serve<F: ServiceFactory>(
    config: Config,
    factory: F,
    reload: impl Fn() -> Result<Config, ConfigError>,
) -> Result<(), StartError> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
    // Before any thread starts: this reads and clears the environment.
    let handed = handover::inherited().map_err(StartError::System)?;
    // The ticket keys of the process's whole life (and its successors'), moved on with the
    // periods: every core of every server it starts opens the tickets of every other.
    let mut tickets = match handed.tickets {
        Some(tickets) => tickets,
        None => {
            let lifetime = config.tls.as_ref().map_or(0, |tls| tls.ticket_lifetime_s);
            TicketKeys::generate(lifetime, unix_now()).map_err(StartError::Tls)?
        }
    };
    log_panics();
    let origins = handover::Origins::record();
    // Register before starting so that an early signal is not lost.
    let mut signals = SignalWait::new(&[SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2])
        .map_err(|e| StartError::System(format!("cannot handle signals: {e}")))?;
    let mut configured = addresses(&config);
    let mut pid_path = config.server.pid_file.clone();
    // systemd's sockets, or the ones of the percore this one replaces, are the addresses.
    let sockets = Sockets {
        http: handed.http,
        https: handed.https,
    };
    let mut server = Server::start(config, &factory, sockets, &mut tickets)?;
    let mut pid = PidFile::write(&pid_path)?;
    note(format_args!("{}", serving_line("listening on", &server)));
    handover::announce_ready();
    let mut retired = Vec::new();
    loop {
        let signal = signals.next(Some(tickets.next_step_in(unix_now())));
        // Whatever woke the wait, the keys move on to this period first.
        tickets.catch_up(unix_now());
        let Some(signal) = signal else {
            continue;
        };
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
                    .and_then(|sockets| {
                        origins.start_successor(sockets.http, sockets.https, &tickets, UPGRADE_WAIT)
                    }),
                Err(e) => Err(format!("cannot tell which binary this is: {e}")),
            };
            match upgraded {
                Ok(pid) => {
                    note(format_args!(
                        "SIGUSR2: the new binary serves (pid {pid}); draining connections"
                    ));
                    break;
                }
                Err(why) => note(format_args!("SIGUSR2: not upgraded, still serving: {why}")),
            }
            continue;
        }
        if signal != SIGHUP {
            let name = if signal == SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            };
            note(format_args!("{name}, draining connections"));
            break;
        }
        let next = reload().map_err(StartError::from).and_then(|config| {
            let addrs = addresses(&config);
            // Same address: the new cores take over the listening sockets themselves, so
            // that nothing queued on them is lost; a new address gets new sockets.
            let mut inherited = server.hand_over().map_err(|e| {
                StartError::System(format!("cannot duplicate the listening sockets: {e}"))
            })?;
            if addrs.0 != configured.0 {
                inherited.http.clear();
            }
            if addrs.1 != configured.1 {
                inherited.https.clear();
            }
            let pid_file = config.server.pid_file.clone();
            Ok((
                Server::start(config, &factory, inherited, &mut tickets)?,
                addrs,
                pid_file,
            ))
        });
        match next {
            Err(error) => note(format_args!(
                "SIGHUP: not reloaded, still serving the previous configuration: {error}"
            )),
            Ok((next, addr, pid_file)) => {
                let previous = std::mem::replace(&mut server, next);
                configured = addr;
                if pid_file != pid_path {
                    pid = PidFile::write(&pid_file)?;
                    pid_path = pid_file;
                }
                note(format_args!(
                    "{}",
                    serving_line("SIGHUP: reloaded, listening on", &server)
                ));
                // The previous cores drain beside the new ones.
                retired.push(std::thread::spawn(move || previous.shutdown()));
            }
        }
    }
    // Nothing starts a server from here on: the keys go (erased as they drop).
    drop(tickets);
    // A second signal gives up on draining.
    std::thread::spawn(move || loop {
        if matches!(signals.next(None), Some(SIGINT | SIGTERM)) {
            note(format_args!("second signal, exiting without draining"));
            std::process::exit(1);
        }
    });
    let format = server.report_format();
    let summary = server.shutdown();
    for previous in retired {
        let _ = previous.join();
    }
    print_summary(&summary, format);
    drop(pid);
    note(format_args!("stopped"));
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
                error_line(
                    Some(core),
                    format_args!("handler panicked{location}: {message}; answered 500"),
                );
            }
            None => previous(info),
        }
    }));
}

/// How long a new binary started on SIGUSR2 has to start serving before the upgrade is given
/// up (and it is stopped).
const UPGRADE_WAIT: Duration = Duration::from_secs(30);

/// "`what` http://ADDR and https://ADDR on N core(s): LIST (ring mode)", naming the
/// listeners there are.
fn serving_line(what: &str, server: &Server) -> String {
    let listeners = match (server.http_addr(), server.tls_addr()) {
        (Some(http), Some(https)) => format!("http://{http} and https://{https}"),
        (Some(http), None) => format!("http://{http}"),
        (None, Some(https)) => format!("https://{https}"),
        (None, None) => "nothing".into(),
    };
    format!(
        "{what} {listeners} on {} core(s): {} ({})",
        server.cores().len(),
        format_cores(server.cores()),
        server.ring_mode().describe()
    )
}

/// The cleartext and TLS addresses a configuration listens on (a reload keeps the sockets
/// of an address that did not change).
fn addresses(config: &Config) -> (Option<SocketAddr>, Option<SocketAddr>) {
    (
        config.serves_cleartext().then(|| config.listen_addr()),
        config.tls_addr(),
    )
}
