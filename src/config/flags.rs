//! percore's command-line flags, shared by the `percore` binary and every program built on
//! the library (`App::main`): `--config FILE` and the flags that override it.

use std::path::PathBuf;

use clap::Parser;
#[cfg(feature = "plots")]
use clap::Subcommand;

use super::{Config, ConfigError, CoreSpec};

/// Thread-per-core HTTP/1.1 server on io_uring.
#[derive(Parser, Clone, Debug)]
#[command(name = "percore", version, about)]
pub struct Args {
    /// TOML configuration file; without it the built-in defaults (equal to
    /// config/percore.toml, but serving no static files) are used.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on (overrides server.host), e.g. 0.0.0.0 or ::.
    #[arg(long)]
    pub host: Option<std::net::IpAddr>,
    /// Port to listen on (overrides server.port); 0 picks a free port.
    #[arg(long)]
    pub port: Option<u16>,
    /// Cores to serve on (overrides server.cores): "all", or a list like "0-3,6".
    #[arg(long, value_name = "LIST", conflicts_with = "workers")]
    pub cores: Option<String>,
    /// Serve on the first N usable cores (overrides server.cores).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Directory of static files to serve (overrides static.root); "" serves none.
    #[arg(long, value_name = "DIR", value_parser = any_path)]
    pub root: Option<PathBuf>,
    /// Port of the TLS listener (overrides tls.port; turns TLS on).
    #[arg(long, value_name = "N")]
    pub tls_port: Option<u16>,
    /// PEM certificate chain for TLS, leaf first (overrides tls.certificate; turns TLS on).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS (overrides tls.private_key; turns TLS on).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Forward requests whose path starts with PREFIX to the server at URL
    /// (`http://host:port`, `host:port` or `unix:/path`); repeatable, the longest matching
    /// prefix wins. Each becomes an `[[upstream]]` and a `[[proxy]]` of their own.
    #[arg(long, value_name = "PREFIX=URL")]
    pub proxy: Vec<String>,
    /// Write the serving process's PID to FILE (overrides server.pid_file).
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Check the configuration (file and flags) as start-up would, print
    /// "configuration ok" or the error, and exit without serving.
    #[arg(short = 't', long)]
    pub check: bool,
    /// Something other than serving.
    #[cfg(feature = "plots")]
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What percore can do besides serving (with the `plots` feature).
#[cfg(feature = "plots")]
#[derive(Subcommand, Clone, Debug)]
pub enum Command {
    /// Draw latency.svg and timeline.svg again from a report directory (report.dir of an
    /// earlier run: its .hgrm files and intervals.hlog) and print the run's summary.
    Report {
        /// The report directory.
        dir: PathBuf,
    },
}

/// A path as given, the empty one included (`--root ""` turns static files off; clap's own
/// path parser refuses an empty value).
fn any_path(text: &str) -> Result<PathBuf, std::convert::Infallible> {
    Ok(PathBuf::from(text))
}

impl Args {
    /// The configuration: the file (or the defaults), then the flags over it.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let args = self.clone();
        let mut config = match &args.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(host) = args.host {
            config.server.host = host;
        }
        if let Some(port) = args.port {
            config.server.port = port;
        }
        if let Some(cores) = &args.cores {
            config.server.cores = CoreSpec::parse(cores)?;
        }
        if let Some(workers) = args.workers {
            config.server.cores = CoreSpec::First(workers);
        }
        if let Some(root) = args.root {
            config.static_files.root = root;
        }
        if let Some(pid_file) = args.pid_file {
            config.server.pid_file = pid_file;
        }
        if args.tls_port.is_some() || args.tls_cert.is_some() || args.tls_key.is_some() {
            let tls = config.tls.get_or_insert_with(Default::default);
            if let Some(port) = args.tls_port {
                tls.port = port;
            }
            if let Some(certificate) = args.tls_cert {
                tls.certificate = certificate;
            }
            if let Some(private_key) = args.tls_key {
                tls.private_key = private_key;
            }
        }
        for flag in &args.proxy {
            let (prefix, url) = super::upstream::parse_proxy_flag(flag).map_err(ConfigError)?;
            let name = format!("--proxy {url}");
            if !config.upstream.iter().any(|u| u.name == name) {
                config.upstream.push(super::UpstreamConfig {
                    name: name.clone(),
                    servers: vec![url],
                    ..Default::default()
                });
            }
            config.proxy.push(super::ProxyConfig {
                path: prefix,
                upstream: name,
                strip_prefix: false,
                forwarded: false,
            });
        }
        // The flags may have made what the file had right wrong (or completed it).
        let origin = match &args.config {
            Some(path) => format!("{} and the flags", path.display()),
            None => "the flags".into(),
        };
        config.validate(&origin)?;
        Ok(config)
    }
}
