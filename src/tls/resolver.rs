//! Which certificate a handshake gets: the one whose names match the client's SNI name,
//! exactly or by a `*.` wildcard (one label), else the default one.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// One core's certificates by name.
#[derive(Debug)]
pub(crate) struct Certificates {
    pub(crate) default: Arc<CertifiedKey>,
    /// By exact name, lower case.
    pub(crate) exact: HashMap<Box<str>, Arc<CertifiedKey>>,
    /// By the name a `*.` wildcard covers (`example.org` for `*.example.org`).
    pub(crate) wildcard: HashMap<Box<str>, Arc<CertifiedKey>>,
}

impl Certificates {
    /// The certificate for `name` (the client's SNI name), or the default one.
    pub(crate) fn for_name(&self, name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = name else {
            return &self.default;
        };
        let mut lower = [0u8; 253];
        let Some(lower) = lower.get_mut(..name.len()) else {
            return &self.default;
        };
        lower.copy_from_slice(name.as_bytes());
        lower.make_ascii_lowercase();
        let name = std::str::from_utf8(lower).unwrap_or_default();
        if let Some(found) = self.exact.get(name) {
            return found;
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.default)
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.for_name(client_hello.server_name()).clone())
    }
}
