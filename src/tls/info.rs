//! What a handler may know of a connection's TLS: [`TlsInfo`].

/// The TLS facts of the connection a request came on ([`crate::Request::tls`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsInfo {
    /// `"TLSv1.3"` or `"TLSv1.2"`.
    pub version: &'static str,
    /// The cipher suite, as IANA names it (`"TLS13_AES_128_GCM_SHA256"`).
    pub cipher_suite: &'static str,
    /// The name the client asked for (SNI), if it sent one.
    pub server_name: Option<Box<str>>,
    /// The application protocol agreed by ALPN (`http/1.1`), if the client offered any.
    pub alpn: Option<Box<[u8]>>,
    /// The handshake resumed an earlier session (a ticket).
    pub resumed: bool,
}
