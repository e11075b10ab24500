//! A request as a reverse proxy forwards it upstream (RFC 9110 section 7.6): the request
//! line with the path the proxy route maps to, the end-to-end fields as the client sent
//! them, none of the hop-by-hop ones (`Connection` and every field it names, `Keep-Alive`,
//! `Proxy-Connection`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`), the
//! `X-Forwarded-*` fields and `Via` percore sets, and framing of percore's own: the body percore
//! read, whole, behind a `Content-Length` of its length.

use std::net::IpAddr;

use super::fields::{head_fields, list_items};
use super::request::{Method, RawRequest};
use super::response::push_decimal;

/// What the proxy knows about a request beyond its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Forwarding<'a> {
    /// Bytes of the path's start to drop (a route's prefix, with `strip_prefix`).
    pub strip: usize,
    /// The client, as percore knows it (a PROXY header's, or the socket's peer).
    pub client: Option<IpAddr>,
    /// `https` when the client spoke TLS to percore, `http` otherwise.
    pub proto: &'static str,
    /// A `Host` to send in place of the client's.
    pub host: Option<&'a str>,
    /// The protocols of an upgrade the client asked for (`Upgrade`), passed on with
    /// `Connection: upgrade` so that the server may switch (see [`upgrade_asked`]).
    pub upgrade: Option<&'a [u8]>,
    /// Also say it in `Forwarded` (RFC 7239), after what the client's own fields said.
    pub forwarded: bool,
    /// The body goes upstream after the head, as it arrives (`Content-Length` of the
    /// client's, or chunked), rather than whole behind it.
    pub streamed: bool,
}

/// The `Upgrade` field of a request that asks to switch protocols in a way a proxy can
/// tunnel: HTTP/1.1, `Connection` naming `upgrade`, no body (RFC 9110 section 7.8).
pub fn upgrade_asked<'a>(request: &RawRequest<'a>) -> Option<&'a [u8]> {
    let bodiless = matches!(request.head.framing, super::head::Framing::Empty);
    if request.head.version != super::head::Version::Http11 || !bodiless {
        return None;
    }
    let upgrade = request.header(b"upgrade").filter(|v| !v.is_empty())?;
    let named = head_fields(request.bytes)
        .filter(|(name, _)| name.eq_ignore_ascii_case(b"connection"))
        .any(|(_, value)| list_items(value).any(|o| o.eq_ignore_ascii_case(b"upgrade")));
    named.then_some(upgrade)
}

/// Fields never forwarded, whatever `Connection` says (lower case).
const HOP_BY_HOP: &[&[u8]] = &[
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    // Framing is percore's own: the length of the body it read.
    b"content-length",
    // Set by percore from what it knows.
    b"x-forwarded-proto",
    b"x-forwarded-host",
    // Handled by percore (it answered `100 Continue` itself, or the body came whole).
    b"expect",
];

/// Whether the field `name` goes no further than this hop: one of [`HOP_BY_HOP`], or one
/// that a `Connection` field of `fields` names.
pub fn is_hop_by_hop(name: &[u8], connection: &[&[u8]]) -> bool {
    HOP_BY_HOP.iter().any(|hop| name.eq_ignore_ascii_case(hop))
        || connection
            .iter()
            .any(|named| name.eq_ignore_ascii_case(named))
}

/// The options the `Connection` fields of a head name (at most `N`; more are ignored, which
/// only means forwarding a field a client wanted dropped beyond the first `N`).
pub fn connection_options<'a, const N: usize>(
    fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    named: &mut [&'a [u8]; N],
) -> usize {
    let mut count = 0;
    for (name, value) in fields {
        if !name.eq_ignore_ascii_case(b"connection") {
            continue;
        }
        for option in list_items(value) {
            if count < N {
                named[count] = option;
                count += 1;
            }
        }
    }
    count
}

/// Appends RFC 7239's `Forwarded`: the client's own `Forwarded` values, then this hop's
/// element (`for`, `proto`, and `host` when the request named one), as one field. Values that
/// are not tokens (an IPv6 address, a host with a port) are quoted (section 6).
fn write_forwarded_field(
    request: &RawRequest<'_>,
    how: &Forwarding<'_>,
    host: Option<&[u8]>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"Forwarded: ");
    for (name, value) in head_fields(request.bytes) {
        if name.eq_ignore_ascii_case(b"forwarded") && !value.is_empty() {
            out.extend_from_slice(value);
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(b"for=");
    match how.client {
        Some(IpAddr::V4(ip)) => {
            use std::io::Write;
            let _ = write!(out, "{ip}");
        }
        Some(IpAddr::V6(ip)) => {
            use std::io::Write;
            let _ = write!(out, "\"[{ip}]\"");
        }
        None => out.extend_from_slice(b"unknown"),
    }
    out.extend_from_slice(b";proto=");
    out.extend_from_slice(how.proto.as_bytes());
    // A host whose bytes are not all a token's, or that a client sent oddly, is quoted with
    // `"` and `\\` escaped.
    if let Some(host) = host.filter(|h| !h.is_empty()) {
        out.extend_from_slice(b";host=");
        if host.iter().all(|&b| super::fields::is_tchar(b)) {
            out.extend_from_slice(host);
        } else {
            out.push(b'"');
            for &b in host {
                if b == b'"' || b == b'\\' {
                    out.push(b'\\');
                }
                out.push(b);
            }
            out.push(b'"');
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `request` as it is forwarded upstream: head and body.
pub fn write_forwarded(request: &RawRequest<'_>, how: &Forwarding<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(request.method());
    out.push(b' ');
    let path = request.path();
    let path = &path[how.strip.min(path.len())..];
    if !path.starts_with(b"/") {
        out.push(b'/');
    }
    out.extend_from_slice(path);
    if let Some(query) = request.query() {
        out.push(b'?');
        out.extend_from_slice(query);
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut named = [&[][..]; 16];
    let count = connection_options(head_fields(request.bytes), &mut named);
    let named = &named[..count];
    let mut host = None;
    let mut forwarded_for: Option<&[u8]> = None;
    let mut more_forwarded_for = false;
    for (name, value) in head_fields(request.bytes) {
        if is_hop_by_hop(name, named) {
            continue;
        }
        if name.eq_ignore_ascii_case(b"host") {
            host = Some(value);
            if how.host.is_some() {
                continue;
            }
        }
        if how.forwarded && name.eq_ignore_ascii_case(b"forwarded") {
            // Joined into one field below, with this hop's element at its end.
            continue;
        }
        if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            // Joined into one field below, with this client at its end.
            if forwarded_for.is_some() {
                more_forwarded_for = true;
            }
            forwarded_for.get_or_insert(value);
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(host) = how.host {
        out.extend_from_slice(b"Host: ");
        out.extend_from_slice(host.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if how.forwarded {
        write_forwarded_field(request, how, host, out);
    }
    if let Some(upgrade) = how.upgrade {
        out.extend_from_slice(b"Upgrade: ");
        out.extend_from_slice(upgrade);
        out.extend_from_slice(b"\r\nConnection: upgrade\r\n");
    }
    let earlier = match more_forwarded_for {
        // Several fields: their values, in order, as one list.
        true => Some(
            head_fields(request.bytes)
                .filter(|(name, _)| name.eq_ignore_ascii_case(b"x-forwarded-for"))
                .map(|(_, value)| value)
                .collect::<Vec<_>>()
                .join(&b", "[..]),
        ),
        false => forwarded_for.map(<[u8]>::to_vec),
    };
    if earlier.is_some() || how.client.is_some() {
        out.extend_from_slice(b"X-Forwarded-For: ");
        if let Some(earlier) = &earlier {
            out.extend_from_slice(earlier);
            if how.client.is_some() {
                out.extend_from_slice(b", ");
            }
        }
        if let Some(client) = how.client {
            use std::io::Write;
            let _ = write!(out, "{client}");
        }
        out.extend_from_slice(b"\r\n");
    }
    // RFC 9110 section 7.6.3: a gateway sends `Via` in each request it forwards (after the
    // client's own, which were copied above in their order).
    out.extend_from_slice(b"Via: 1.1 percore\r\n");
    out.extend_from_slice(b"X-Forwarded-Proto: ");
    out.extend_from_slice(how.proto.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(host) = host {
        out.extend_from_slice(b"X-Forwarded-Host: ");
        out.extend_from_slice(host);
        out.extend_from_slice(b"\r\n");
    }
    let body = request.body;
    let method = request.head.method;
    if how.streamed {
        match request.head.framing {
            super::head::Framing::Length(n) => {
                out.extend_from_slice(b"Content-Length: ");
                push_decimal(out, n);
                out.extend_from_slice(b"\r\n\r\n");
            }
            _ => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n"),
        }
        return;
    }
    if !body.is_empty() || matches!(method, Method::Post | Method::Put | Method::Patch) {
        out.extend_from_slice(b"Content-Length: ");
        push_decimal(out, body.len() as u64);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}
