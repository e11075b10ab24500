//! How the server makes an app's service for each core: the route table (with the built-in
//! routes and the static root opened) is prepared once on the main thread, where a bad
//! configuration is still a start-up error; each core then runs the app's state factory on
//! its own thread.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use super::compress::Compressor;
use super::decode::BodyDecoding;
use super::proxy::ProxyRoutes;
use super::redirect::HttpsRedirect;
use super::router::Router;
use super::service::AppService;
use super::{App, Files, Handler, Setup};
use crate::config::Config;
use crate::files::StaticFiles;
use crate::metrics::StatsBoard;
use crate::server::{CoreSetup, ServiceFactory, StartError};

/// An app, shared by the threads that start its cores.
pub(crate) struct AppFactory<S: 'static>(pub(crate) Arc<App<S>>);

/// What every core's service is made from.
pub(crate) struct Prepared<S: 'static> {
    app: Arc<App<S>>,
    router: Arc<Router<Handler<S>>>,
    proxies: Arc<ProxyRoutes>,
    /// The static root, opened once; each core gets its own handle.
    root: Option<Arc<OwnedFd>>,
}

impl<S: 'static> Clone for Prepared<S> {
    fn clone(&self) -> Self {
        Prepared {
            app: self.app.clone(),
            router: self.router.clone(),
            proxies: self.proxies.clone(),
            root: self.root.clone(),
        }
    }
}

impl<S: 'static> App<S> {
    /// The route table every core shares (the app's routes and the built-in ones the
    /// configuration asks for) and the static root, opened; the errors a bad configuration
    /// makes here are start-up (and check-mode) errors.
    pub(crate) fn routes_and_root(
        &self,
        config: &Config,
        board: &Arc<StatsBoard>,
        cores: &[usize],
    ) -> Result<(Router<Handler<S>>, Option<OwnedFd>), StartError> {
        let root = match self.builtin.serves_files(config) {
            true => {
                let root = &config.static_files.root;
                let fd = StaticFiles::open_root(root)
                    .map_err(|e| StartError::App(format!("static.root {}: {e}", root.display())))?;
                Some(fd)
            }
            false => None,
        };
        let router = self
            .builtin
            .add_to(&self.router, config, board, cores)
            .map_err(StartError::App)?;
        upstream_tls(config).map_err(StartError::App)?;
        Ok((router, root))
    }
}

/// Checks what TLS to `https://` upstream servers needs: the roots read, each server's name
/// valid (the cores make their own configurations from the same settings).
fn upstream_tls(config: &Config) -> Result<(), String> {
    for upstream in &config.upstream {
        let hosts: Vec<String> = upstream
            .servers
            .iter()
            .filter_map(|s| crate::config::server_tls_name(s))
            .collect();
        if hosts.is_empty() {
            continue;
        }
        crate::tls::client_config(upstream)?;
        for host in hosts {
            crate::tls::server_name(upstream, &host)?;
        }
    }
    Ok(())
}

impl<S: 'static> ServiceFactory for AppFactory<S> {
    type Prepared = Prepared<S>;
    type Service = AppService<S>;

    fn prepare(
        &self,
        config: &Config,
        board: &Arc<StatsBoard>,
        cores: &[usize],
    ) -> Result<Prepared<S>, StartError> {
        let (router, root) = self.0.routes_and_root(config, board, cores)?;
        let proxies = ProxyRoutes::new(config, &self.0.proxies).map_err(StartError::App)?;
        Ok(Prepared {
            app: self.0.clone(),
            router: Arc::new(router),
            proxies: Arc::new(proxies),
            root: root.map(Arc::new),
        })
    }

    fn make(prepared: &Prepared<S>, setup: &CoreSetup<'_>) -> Result<AppService<S>, String> {
        let config = setup.config;
        let user_setup = Setup::on_core(setup.cpu, setup.index, config, setup.door, setup.hub);
        let state = (prepared.app.factory)(&user_setup).map_err(|e| e.to_string())?;
        let files = match &prepared.root {
            Some(root) => {
                let fd = root
                    .try_clone()
                    .map_err(|e| format!("cannot duplicate the static root handle: {e}"))?;
                Some(Files(StaticFiles::new(
                    &config.static_files,
                    &config.compression,
                    fd,
                )))
            }
            None => None,
        };
        let https_redirect = setup
            .https_redirect
            .map(|port| HttpsRedirect::new(port, config.server.host.to_string()));
        Ok(AppService::new(
            prepared.router.clone(),
            state,
            files,
            https_redirect,
            prepared.proxies.clone(),
        )
        .with_deflate(config.websocket.permessage_deflate)
        .with_compression(Compressor::new(&config.compression))
        .with_decoding(BodyDecoding::new(
            prepared.app.decode_bodies,
            config.http.max_body_bytes,
        )))
    }
}
