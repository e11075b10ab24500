//! TLS as a server starts it: the certificates read and checked once on the main thread
//! ([`TlsSetup::load`]), then one rustls configuration per core, built on that core
//! ([`TlsSetup::core_config`]), so that no `Arc` a handshake clones is shared between cores.
//!
//! The settings are rustls's safe defaults: TLS 1.3 and 1.2 only, forward-secret AEAD
//! suites only, renegotiation refused; plus the server's choice of suite (`suites`: two
//! configurations, one per order of preference), ALPN `http/1.1`, session tickets under the
//! core's own copy of the process's ticket keys (`tickets`), no session-ID cache (it would
//! take a lock), and key
//! extraction on, which hands the record layer to percore once a handshake is done
//! (`record`). The crypto provider is aws-lc-rs.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::NoServerSessionStorage;
use rustls::ServerConfig;

use super::certs::Pair;
use super::hello::ClientHello;
use super::resolver::Certificates;
use super::suites::Preference;
use super::ticket_keys::TicketKeys;
use super::tickets::Tickets;
use crate::config::TlsConfig;

/// Session tickets sent after a TLS 1.3 handshake: one per connection, as a client that
/// opens several connections gets one on each.
const TLS13_TICKETS: usize = 1;

/// TLS as the cores will run it.
pub(crate) struct TlsSetup {
    default: Pair,
    /// `[[tls.sni]]`: names, and their certificate.
    sni: Vec<(Vec<String>, Pair)>,
}

/// One core's rustls configurations, one per order of suites ([`Preference`]); they share
/// the certificates and the core's ticket maker.
pub(crate) struct ServerConfigs {
    aes: Arc<ServerConfig>,
    chacha: Arc<ServerConfig>,
    tickets: Arc<Tickets>,
}

impl ServerConfigs {
    /// The configuration for the client that sent `hello` (none when it could not be read).
    pub(crate) fn for_hello(&self, hello: Option<&ClientHello<'_>>) -> &Arc<ServerConfig> {
        match Preference::of(hello) {
            Preference::Aes => &self.aes,
            Preference::ChaCha => &self.chacha,
        }
    }

    /// Moves the core's ticket keys on to the current period (which sealing or opening a
    /// ticket does too), so that a core that has made no handshake for a while does not keep
    /// keys the other holders have erased.
    pub(crate) fn move_tickets_on(&self) {
        self.tickets
            .catch_up(crate::support::civil_time::unix_now());
    }
}

/// The crypto provider percore runs rustls with.
pub(crate) fn provider() -> CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

impl TlsSetup {
    /// Reads and checks every certificate and key `config` names; the error is one line.
    pub(crate) fn load(config: &TlsConfig) -> Result<TlsSetup, String> {
        let provider = provider();
        let load = |certificate, private_key| Pair::load(certificate, private_key, &provider);
        let default = load(&config.certificate, &config.private_key)
            .map_err(|e| format!("tls.certificate: {e}"))?;
        let mut sni = Vec::new();
        for (i, entry) in config.sni.iter().enumerate() {
            let pair = load(&entry.certificate, &entry.private_key)
                .map_err(|e| format!("tls.sni[{i}]: {e}"))?;
            sni.push((entry.names.clone(), pair));
        }
        Ok(TlsSetup { default, sni })
    }

    /// One core's rustls configurations, sealing tickets under `keys`, the core's own copy
    /// of the process's ticket keys. Call it on the core's thread: the ticket maker serves
    /// the thread that made it only.
    pub(crate) fn core_configs(&self, keys: TicketKeys) -> Result<ServerConfigs, String> {
        let provider = provider();
        let mut certificates = Certificates {
            default: self.default.shared(&provider)?,
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        };
        for (names, pair) in &self.sni {
            let certified = pair.shared(&provider)?;
            for name in names {
                let name = name.to_ascii_lowercase();
                match name.strip_prefix("*.") {
                    Some(parent) => certificates
                        .wildcard
                        .insert(parent.into(), certified.clone()),
                    None => certificates.exact.insert(name.into(), certified.clone()),
                };
            }
        }
        let certificates = Arc::new(certificates);
        let tickets = Arc::new(Tickets::new(keys));
        let config = |preference: Preference| {
            let mut provider = provider.clone();
            preference.order(&mut provider);
            let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .map_err(|e| format!("TLS versions: {e}"))?
                .with_no_client_auth()
                .with_cert_resolver(certificates.clone());
            config.ignore_client_order = true;
            config.alpn_protocols = vec![b"http/1.1".to_vec(), b"http/1.0".to_vec()];
            config.session_storage = Arc::new(NoServerSessionStorage {});
            config.ticketer = tickets.clone();
            config.send_tls13_tickets = TLS13_TICKETS;
            config.enable_secret_extraction = true;
            Ok::<_, String>(Arc::new(config))
        };
        Ok(ServerConfigs {
            aes: config(Preference::Aes)?,
            chacha: config(Preference::ChaCha)?,
            tickets,
        })
    }
}
