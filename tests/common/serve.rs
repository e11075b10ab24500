//! An app of a test's own, served in the test's process on 127.0.0.1 port 0, one core.

use std::net::SocketAddr;

use percore::config::{Config, CoreSpec};
use percore::{App, RunSummary, Server};

use super::Client;

/// An app serving on 127.0.0.1; stops (draining) when dropped.
pub struct Running {
    pub server: Server,
    pub addr: SocketAddr,
}

impl Running {
    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Stops the server and returns the run's summary.
    pub fn stop(self) -> RunSummary {
        self.server.shutdown()
    }
}

/// The configuration tests serve with: port 0, one core, no live report lines.
pub fn test_config(adjust: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config::default();
    config.server.port = 0;
    config.server.cores = CoreSpec::First(1);
    config.report.interval_ms = 0;
    adjust(&mut config);
    config
}

/// Starts `app` on one core with the test configuration.
pub fn serve<S: 'static>(app: App<S>) -> Running {
    serve_with(app, |_| {})
}

/// Starts `app` with the test configuration, adjusted.
pub fn serve_with<S: 'static>(app: App<S>, adjust: impl FnOnce(&mut Config)) -> Running {
    start(app, test_config(adjust))
}

pub fn start<S: 'static>(app: App<S>, config: Config) -> Running {
    let server = app.start(config).expect("app starts");
    let addr = server.local_addr();
    Running { server, addr }
}
