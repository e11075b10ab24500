//! The `[tls]` table: HTTPS beside (or instead of) cleartext HTTP. Without the table nothing
//! changes; with it, every core also listens on `tls.port` and terminates TLS itself.

use std::path::PathBuf;

use serde::Deserialize;

/// `[tls]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsConfig {
    /// Port of the TLS listener, on `server.host`; 0 picks a free one.
    pub port: u16,
    /// PEM certificate chain, leaf first. A relative path in a config file is taken
    /// relative to that file's directory.
    pub certificate: PathBuf,
    /// PEM private key of the leaf certificate: PKCS#8, SEC1 or PKCS#1.
    pub private_key: PathBuf,
    /// What the cleartext listener (`server.port`) does: `"serve"` (requests as usual),
    /// `"redirect"` (every request gets a `308` to its `https://` URL) or `"off"` (no
    /// cleartext listener at all).
    pub cleartext: Cleartext,
    /// TLS handshakes one core has under way at most; past it the core stops taking new TLS
    /// connections (they wait in the kernel's queue) until one completes, so a flood of
    /// ClientHellos costs bounded memory.
    pub max_handshakes_per_core: usize,
    /// Seconds each session-ticket key is used for; tickets open during their key's period
    /// and the next, and clients are told this lifetime.
    pub ticket_lifetime_s: u32,
    /// More certificates, chosen by the name the client asks for (SNI); a name none lists
    /// gets the default one.
    pub sni: Vec<SniCertificate>,
}

/// One `[[tls.sni]]` entry.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SniCertificate {
    /// Names it answers: `example.org`, or `*.example.org` for any one label below it.
    pub names: Vec<String>,
    /// PEM certificate chain, leaf first.
    pub certificate: PathBuf,
    /// PEM private key.
    pub private_key: PathBuf,
}

impl SniCertificate {
    /// The certificate chain and private key at these paths, for the names `names`.
    pub fn new(
        names: impl IntoIterator<Item = impl AsRef<str>>,
        certificate: impl Into<PathBuf>,
        private_key: impl Into<PathBuf>,
    ) -> SniCertificate {
        SniCertificate {
            names: names.into_iter().map(|n| n.as_ref().to_owned()).collect(),
            certificate: certificate.into(),
            private_key: private_key.into(),
        }
    }
}

/// What the cleartext listener does when TLS is on (`tls.cleartext`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Cleartext {
    /// Serve requests as usual.
    #[default]
    Serve,
    /// Answer every request with a `308` to the same URL over HTTPS.
    Redirect,
    /// No cleartext listener.
    Off,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            port: 8443,
            certificate: PathBuf::new(),
            private_key: PathBuf::new(),
            cleartext: Cleartext::Serve,
            max_handshakes_per_core: 1024,
            ticket_lifetime_s: 3600,
            sni: Vec::new(),
        }
    }
}

impl TlsConfig {
    /// A `[tls]` table for the certificate chain and private key at these paths, every
    /// other key at its default (`port` 8443, cleartext served beside, no SNI entries); set
    /// the fields to change them.
    ///
    /// ```
    /// # use percore::config::{Cleartext, TlsConfig};
    /// let mut tls = TlsConfig::new("cert.pem", "key.pem");
    /// tls.port = 0;
    /// tls.cleartext = Cleartext::Redirect;
    /// ```
    pub fn new(certificate: impl Into<PathBuf>, private_key: impl Into<PathBuf>) -> TlsConfig {
        TlsConfig {
            certificate: certificate.into(),
            private_key: private_key.into(),
            ..TlsConfig::default()
        }
    }

    /// Every file path the table names, to resolve relative ones against the config file.
    pub(crate) fn paths_mut(&mut self) -> impl Iterator<Item = &mut PathBuf> {
        [&mut self.certificate, &mut self.private_key]
            .into_iter()
            .chain(
                self.sni
                    .iter_mut()
                    .flat_map(|sni| [&mut sni.certificate, &mut sni.private_key]),
            )
    }

    /// Checks the values; `bad(key, why)` makes the error.
    pub(crate) fn validate(&self) -> Result<(), (String, &'static str)> {
        let bad = |key: &str, why| Err((format!("tls.{key}"), why));
        if self.certificate.as_os_str().is_empty() {
            return bad("certificate", "must name a PEM certificate file");
        }
        if self.private_key.as_os_str().is_empty() {
            return bad("private_key", "must name a PEM private key file");
        }
        if self.max_handshakes_per_core == 0 {
            return bad("max_handshakes_per_core", "must be above 0");
        }
        if self.ticket_lifetime_s == 0 {
            return bad("ticket_lifetime_s", "must be above 0");
        }
        for (i, sni) in self.sni.iter().enumerate() {
            if sni.names.is_empty() || !sni.names.iter().all(|n| is_sni_name(n)) {
                return bad(
                    &format!("sni[{i}].names"),
                    "must list DNS names (example.org, or *.example.org for one label)",
                );
            }
            if sni.certificate.as_os_str().is_empty() || sni.private_key.as_os_str().is_empty() {
                return bad(
                    &format!("sni[{i}]"),
                    "needs a certificate and a private_key",
                );
            }
        }
        Ok(())
    }
}

/// A DNS name, or `*.` and one, as `tls.sni` names are.
fn is_sni_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}
