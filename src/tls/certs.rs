//! Certificates and keys from PEM files: a chain (leaf first) and a private key (PKCS#8,
//! SEC1 or PKCS#1), checked to belong together. Read on the main thread, so that a file
//! that does not load is a start-up (or reload, or check-mode) error of one line and never
//! reaches a core.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// A certificate chain and its key, as read.
pub(crate) struct Pair {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Pair {
    /// Reads `certificate` (PEM chain) and `private_key` (PEM key) and checks that the key
    /// is the leaf certificate's.
    pub(crate) fn load(
        certificate: &Path,
        private_key: &Path,
        provider: &CryptoProvider,
    ) -> Result<Pair, String> {
        let chain = CertificateDer::pem_file_iter(certificate)
            .map_err(|e| format!("{}: {e}", certificate.display()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", certificate.display()))?;
        if chain.is_empty() {
            return Err(format!(
                "{}: no PEM certificate in it",
                certificate.display()
            ));
        }
        let key = PrivateKeyDer::from_pem_file(private_key)
            .map_err(|e| format!("{}: {e}", private_key.display()))?;
        let pair = Pair { chain, key };
        pair.certified(provider)
            .map_err(|e| format!("{}: {e}", private_key.display()))?
            .keys_match()
            .map_err(|e| {
                format!(
                    "{} does not match {}: {e}",
                    private_key.display(),
                    certificate.display()
                )
            })?;
        Ok(pair)
    }

    /// The chain and the signing key, for one core.
    pub(crate) fn certified(&self, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
        let key = provider
            .key_provider
            .load_private_key(self.key.clone_key())
            .map_err(|e| format!("the private key does not load: {e}"))?;
        Ok(CertifiedKey::new(self.chain.clone(), key))
    }

    /// As [`Pair::certified`], shared.
    pub(crate) fn shared(&self, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, String> {
        self.certified(provider).map(Arc::new)
    }
}
