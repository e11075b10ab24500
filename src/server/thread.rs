//! One core's thread: a glommio executor pinned to the core, the core's own ring, the
//! application's service for this core (made here, on this thread), then the engine's loop
//! until the server says stop. Success or a one-line error goes back to the server before
//! the core serves.

use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};
use socket2::Socket;

use super::{CoreSetup, ServiceFactory};
use crate::config::Config;
use crate::engine::{self, Links, Listener, RingMode, TlsOptions};
use crate::support::stderr::share_budget;
use crate::tls::{TicketKeys, TlsSetup};

/// What a core reports back once it has started, or why it could not.
pub(super) type Ready = mpsc::Sender<Result<RingMode, String>>;

/// TLS as a core is to run it.
pub(super) struct CoreTls {
    /// The certificates, read once; each core makes its own rustls configuration of them.
    pub(super) setup: Arc<TlsSetup>,
    /// The core's own copy of the ticket keys, which it moves on by itself from then on.
    pub(super) tickets: TicketKeys,
    pub(super) max_handshakes: usize,
    pub(super) redirect_port: Option<u16>,
}

/// What a core starts with besides the configuration and the application.
pub(super) struct CoreStart {
    /// Its listening sockets, each with whether it is a TLS listener.
    pub(super) listeners: Vec<(Socket, bool)>,
    pub(super) tls: Option<CoreTls>,
    /// Dropped at the other end when the core is to stop.
    pub(super) stop: UnixStream,
    pub(super) links: Links,
    pub(super) ready: Ready,
    /// How many cores the server runs (they share the error lines' budget).
    pub(super) cores: usize,
    /// Its end of the channels between cores.
    pub(super) mesh: engine::CoreMesh,
}

/// Runs one core on the calling thread (made for it) until `stop` is dropped at the other
/// end, then drains.
pub(super) fn run_core<F: ServiceFactory>(config: Config, core: CoreStart, factory: F::Prepared) {
    let CoreStart {
        listeners,
        tls,
        stop,
        links,
        ready,
        cores,
        mesh,
    } = core;
    let cpu = links.cpu;
    let runtime = &config.runtime;
    let mut builder = LocalExecutorBuilder::new(Placement::Fixed(cpu))
        .name(&format!("percore-{cpu}"))
        .io_memory(runtime.io_memory_kb * 1024)
        .ring_depth(runtime.ring_depth);
    if runtime.spin_before_park_us > 0 {
        builder = builder.spin_before_park(Duration::from_micros(runtime.spin_before_park_us));
    }
    let executor = match builder.make() {
        Ok(executor) => executor,
        Err(error) => {
            let _ = ready.send(Err(io_uring_error(cpu, &error.to_string())));
            return;
        }
    };
    executor.run(async move {
        share_budget(cores);
        // The ring is made here, on the thread that alone submits to it (SINGLE_ISSUER).
        let ring = match engine::make_ring(&config) {
            Ok(ring) => ring,
            Err(error) => {
                let _ = ready.send(Err(format!("core {cpu}: {error}")));
                return;
            }
        };
        // The application's service for this core is made here, on the core's own thread,
        // with the door through which its tasks call upstreams.
        let door = engine::Outbound::new(&config);
        let hub = engine::Hub::new();
        let setup = CoreSetup {
            door: &door,
            hub: &hub,
            cpu,
            index: links.index,
            config: &config,
            https_redirect: tls.as_ref().and_then(|tls| tls.redirect_port),
        };
        let service = match F::make(&factory, &setup) {
            Ok(service) => service,
            Err(error) => {
                let _ = ready.send(Err(format!("core {cpu}: {error}")));
                return;
            }
        };
        // This core's own rustls configuration, so that nothing a handshake clones is shared.
        let tls = match tls.map(|tls| {
            tls.setup
                .core_configs(tls.tickets)
                .map(|configs| TlsOptions {
                    configs,
                    max_handshakes: tls.max_handshakes,
                })
        }) {
            Some(Err(error)) => {
                let _ = ready.send(Err(format!("core {cpu}: {error}")));
                return;
            }
            other => other.transpose().ok().flatten(),
        };
        let _ = ready.send(Ok(ring.mode));
        // SAFETY: the descriptors are handed over whole to their new owners.
        let (listeners, stop) = unsafe {
            (
                listeners
                    .into_iter()
                    .map(|(socket, tls)| Listener {
                        fd: OwnedFd::from_raw_fd(socket.into_raw_fd()),
                        tls,
                    })
                    .collect(),
                OwnedFd::from_raw_fd(stop.into_raw_fd()),
            )
        };
        let core = engine::OnCore {
            ring,
            door,
            hub,
            mesh,
        };
        engine::run(config, core, listeners, tls, stop, links, service).await;
    });
}

fn io_uring_error(cpu: usize, error: &str) -> String {
    format!(
        "cannot start the io_uring executor on core {cpu}: {error}. io_uring must be allowed: \
         sysctl kernel.io_uring_disabled must be 0, a seccomp profile (e.g. Docker's default) \
         must not block io_uring_setup, and RLIMIT_MEMLOCK (ulimit -l) must cover \
         runtime.io_memory_kb"
    )
}
