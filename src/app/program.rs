//! What an [`App`] does as a server or a whole program: check a configuration, start,
//! serve until a signal, and `main` with percore's command line.

use std::process::ExitCode;
use std::sync::Arc;

use super::factory::AppFactory;
use super::App;
#[cfg(feature = "plots")]
use crate::config::Command;
use crate::config::{Args, Config};
use crate::metrics::StatsBoard;
use crate::server::{self, Server, Sockets, StartError};
use crate::tls::TicketKeys;

impl<S: 'static> App<S> {
    /// Checks `config` as [`App::start`] would, without serving: its values are valid (as
    /// [`Config::validate`] checks them, for a configuration built in code), the cores exist
    /// and are usable, the address is one of this machine's (and its port free, or held by
    /// `SO_REUSEPORT` sockets of this user, such as a running percore's), the static root
    /// opens, the routes the configuration adds are well formed. The state factory is not
    /// run.
    pub fn check(&self, config: &Config) -> Result<(), StartError> {
        server::check(config)?;
        let board = StatsBoard::new(1);
        self.routes_and_root(config, &board, &[0])?;
        Ok(())
    }

    /// Validates `config` (as [`Config::validate`] does: a configuration built in code has
    /// not been through a file's checks), binds, starts one executor per configured core
    /// (each building its state), and returns once all serve.
    pub fn start(self, config: Config) -> Result<Server, StartError> {
        config.validate(server::IN_CODE)?;
        // A server of its own: its TLS tickets open on its cores only. Once they have
        // their copies, these keys are dropped (and erased): the cores alone hold them.
        let lifetime = config.tls.as_ref().map_or(0, |tls| tls.ticket_lifetime_s);
        let mut tickets = TicketKeys::generate(lifetime, crate::support::civil_time::unix_now())
            .map_err(StartError::Tls)?;
        Server::start(
            config,
            &AppFactory(Arc::new(self)),
            Sockets::default(),
            &mut tickets,
        )
    }

    /// Validates `config` as [`App::start`] does, serves until SIGINT or SIGTERM, then
    /// drains and prints the run's summary. SIGHUP starts new cores with the same
    /// configuration and drains the old ones ([`App::main`] reads the file again).
    pub fn run(self, config: Config) -> Result<(), StartError> {
        config.validate(server::IN_CODE)?;
        let again = config.clone();
        server::serve(
            config,
            AppFactory(Arc::new(self)),
            move || Ok(again.clone()),
        )
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
        let args = match Args::try_parse_from(args) {
            Ok(args) => args,
            // Help, version and usage errors, printed as clap prints them.
            Err(error) => error.exit(),
        };
        #[cfg(feature = "plots")]
        if let Some(Command::Report { dir }) = &args.command {
            return match crate::report::report_dir(dir) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => fail(&error),
            };
        }
        let outcome = if args.check {
            let checked = args
                .load()
                .map_err(StartError::from)
                .and_then(|config| self.check(&config));
            checked
                .map(|()| println!("configuration ok"))
                .map_err(|e| e.to_string())
        } else {
            // SIGHUP reads the file again, with the same flags over it.
            let served = args.load().map_err(StartError::from).and_then(|config| {
                server::serve(config, AppFactory(Arc::new(self)), move || args.load())
            });
            served.map_err(|e| e.to_string())
        };
        match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail(&error),
        }
    }
}

/// The one line a program that cannot go on prints, and its exit status.
fn fail(error: &str) -> ExitCode {
    eprintln!("percore: error: {error}");
    ExitCode::FAILURE
}
