//! What the cleartext listener answers when `tls.cleartext = "redirect"`: a `308 Permanent
//! Redirect` to the same URL over HTTPS, whatever the method (a 308 keeps it and the body).

use crate::http::request::RawRequest;
use crate::http::response::{push_decimal, ResponseWriter, TEXT_PLAIN};
use crate::http::status::Status;

/// The cleartext listener's redirect to HTTPS, on one core.
pub(crate) struct HttpsRedirect {
    /// The TLS listener's port.
    port: u16,
    /// The host named when a request names none: `server.host`.
    fallback: String,
    /// The `Location` being written (capacity kept).
    location: Vec<u8>,
}

impl HttpsRedirect {
    /// Redirects to the TLS listener on `port`, at `fallback` for requests without a host.
    pub(crate) fn new(port: u16, fallback: String) -> HttpsRedirect {
        HttpsRedirect {
            port,
            fallback,
            location: Vec::new(),
        }
    }

    /// Writes the redirect of `request` to `https://HOST[:port]PATH[?QUERY]`. The host is
    /// the one the client named (its `Host` field, without the port), or the fallback.
    pub(crate) fn answer(&mut self, request: &RawRequest<'_>, response: &mut ResponseWriter) {
        let location = &mut self.location;
        location.clear();
        location.extend_from_slice(b"https://");
        match request
            .header(b"host")
            .map(host_of)
            .filter(|h| !h.is_empty())
        {
            Some(host) => location.extend_from_slice(host),
            None => location.extend_from_slice(self.fallback.as_bytes()),
        }
        if self.port != 443 {
            location.push(b':');
            push_decimal(location, u64::from(self.port));
        }
        location.extend_from_slice(request.path());
        if let Some(query) = request.query() {
            location.push(b'?');
            location.extend_from_slice(query);
        }
        // The parser let only visible ASCII into the host, path and query.
        let text = std::str::from_utf8(location).unwrap_or("https://");
        response.send(
            Status::PERMANENT_REDIRECT,
            Some(TEXT_PLAIN),
            &[("Location", text)],
            &[b"This site is served over HTTPS: ", location, b"\n"],
        );
    }
}

/// The host of a `Host` value: without its port, an IP literal with its brackets.
fn host_of(value: &[u8]) -> &[u8] {
    if value.first() == Some(&b'[') {
        return match value.iter().position(|&b| b == b']') {
            Some(close) => &value[..=close],
            None => value,
        };
    }
    match value.iter().position(|&b| b == b':') {
        Some(colon) => &value[..colon],
        None => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_their_ports_but_not_their_brackets() {
        assert_eq!(host_of(b"example.org:8080"), b"example.org");
        assert_eq!(host_of(b"[::1]:8080"), b"[::1]");
        assert_eq!(host_of(b"example.org"), b"example.org");
    }
}
