//! TLS to upstream servers (`https://` in `[[upstream]]`): rustls as a client, one
//! configuration per upstream per core, built on that core so that nothing a connection
//! clones is shared with another.
//!
//! The server's certificate must chain to the upstream's `tls_ca` roots, or to the
//! system's (`SSL_CERT_FILE`, else Debian's `/etc/ssl/certs/ca-certificates.crt`), and
//! name the URL's host (or `tls_server_name`), which is also sent as SNI. With
//! `tls_insecure_skip_verify` any certificate is taken, the handshake's signatures still
//! checked. Session resumption is off: rustls's client session cache takes a lock, and a
//! pooled connection is reused rather than resumed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::UpstreamConfig;

/// Where the system's roots are, when `SSL_CERT_FILE` does not say.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The rustls configuration for `upstream`'s `https://` servers; an error says what could
/// not be read.
pub(crate) fn client_config(upstream: &UpstreamConfig) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(super::setup::provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("upstream {}: TLS: {e}", upstream.name))?;
    let mut config = match upstream.tls_insecure_skip_verify {
        true => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
        false => {
            let roots = roots(upstream.tls_ca.as_deref())
                .map_err(|e| format!("upstream {}: {e}", upstream.name))?;
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

/// The name a server is asked for and checked against: `tls_server_name`, else `host`
/// (the URL's).
pub(crate) fn server_name(
    upstream: &UpstreamConfig,
    host: &str,
) -> Result<ServerName<'static>, String> {
    let name = upstream.tls_server_name.as_deref().unwrap_or(host);
    ServerName::try_from(name.to_string())
        .map_err(|_| format!("upstream {}: {name:?} is not a server name", upstream.name))
}

/// The roots of `ca`, or the system's.
fn roots(ca: Option<&Path>) -> Result<RootCertStore, String> {
    let path = match ca {
        Some(path) => path.to_path_buf(),
        None => std::env::var_os("SSL_CERT_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(SYSTEM_ROOTS)),
    };
    let mut store = RootCertStore::empty();
    let certificates = CertificateDer::pem_file_iter(&path)
        .map_err(|e| format!("tls_ca {}: {e}", path.display()))?;
    for certificate in certificates {
        let certificate = certificate.map_err(|e| format!("tls_ca {}: {e}", path.display()))?;
        // A system bundle may hold certificates webpki refuses; the others still count.
        let _ = store.add(certificate);
    }
    if store.is_empty() {
        return Err(format!("tls_ca {}: no usable certificate", path.display()));
    }
    Ok(store)
}

/// `tls_insecure_skip_verify`: any certificate is taken; the signatures that prove the
/// server holds its key are still checked.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
