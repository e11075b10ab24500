//! One core's thread: a glommio executor pinned to the core, the core's own ring, the
//! application's service for this core (made here, on this thread), then the engine's loop
//! until the server says stop. Success or a one-line error goes back to the server before
//! the core serves.

use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};
use socket2::Socket;

use super::{CoreSetup, ServiceFactory};
use crate::config::Config;
use crate::engine::{self, Links, RingMode};
use crate::support::stderr::share_budget;

/// What a core reports back once it has started, or why it could not.
pub(super) type Ready = mpsc::Sender<Result<RingMode, String>>;

/// Runs one core on the calling thread (made for it) until `stop` is dropped at the other
/// end, then drains.
pub(super) fn run_core<F: ServiceFactory>(
    config: Config,
    listeners: Vec<Socket>,
    stop: UnixStream,
    links: Links,
    ready: Ready,
    factory: F::Prepared,
    cores: usize,
) {
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
        // The application's service for this core is made here, on the core's own thread.
        let setup = CoreSetup {
            cpu,
            index: links.index,
            config: &config,
        };
        let service = match F::make(&factory, &setup) {
            Ok(service) => service,
            Err(error) => {
                let _ = ready.send(Err(format!("core {cpu}: {error}")));
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
        engine::run(config, ring, listeners, stop, links, service).await;
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
