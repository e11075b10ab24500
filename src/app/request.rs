//! What a handler is given: [`Request`], a view of the request where it lies (in the
//! receive buffer, no copy), and [`OwnedRequest`], the same request copied for an async
//! handler that outlives the buffer.

use std::borrow::Cow;
use std::net::SocketAddr;

use super::router::Params;
use crate::engine::Peer;
use crate::http::request::{RawRequest, RequestHead, Version};
use crate::support::percent::{decode_text, Plus};
use crate::tls::TlsInfo;

/// One complete request, head and body, as a handler sees it.
///
/// Everything is borrowed from where it arrived: looking at a request allocates nothing,
/// except to decode a parameter that holds percent-escapes.
///
/// ```
/// # use percore::{App, Request, Response};
/// fn show(request: &Request<'_>, response: &mut Response<'_>, _: &()) {
///     let who = request.param("who").unwrap_or_default();
///     let lang = request.query_param("lang").unwrap_or("en".into());
///     let agent = request.header("user-agent").unwrap_or("?");
///     response.text(&format!("{who} ({lang}) via {agent}, {} body bytes", request.body().len()));
/// }
/// let app = App::new(|_| Ok(())).get("/show/{who}", show);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub(crate) inner: RawRequest<'a>,
    pub(crate) params: &'a Params,
    pub(crate) peer: Peer<'a>,
}

impl<'a> Request<'a> {
    /// The method token as sent (`GET`, `POST`, `PURGE`…).
    pub fn method(&self) -> &'a str {
        std::str::from_utf8(self.inner.method()).unwrap_or_default()
    }

    /// The path of the target, as sent (still percent-encoded); `/` when an absolute-form
    /// target had none.
    pub fn path(&self) -> &'a str {
        std::str::from_utf8(self.inner.path()).unwrap_or_default()
    }

    /// The query of the target without its `?`, as sent, if there was one.
    pub fn query(&self) -> Option<&'a str> {
        self.inner
            .query()
            .map(|q| std::str::from_utf8(q).unwrap_or_default())
    }

    /// The query as bytes, without its `?` (no UTF-8 check).
    pub fn query_bytes(&self) -> Option<&'a [u8]> {
        self.inner.query()
    }

    /// The path as bytes (no UTF-8 check).
    pub fn path_bytes(&self) -> &'a [u8] {
        self.inner.path()
    }

    /// The path parameter `name` of the route's pattern (`{name}`, or `{*name}` for the
    /// rest of the path), percent-decoded. Borrowed unless it held escapes; bytes that do not
    /// decode to UTF-8 become U+FFFD.
    pub fn param(&self, name: &str) -> Option<Cow<'a, str>> {
        let raw = self.params.get(self.inner.path(), name)?;
        Some(decode_text(raw, Plus::Keep))
    }

    /// The raw (still percent-encoded) value of the path parameter `name`.
    pub fn param_raw(&self, name: &str) -> Option<&'a str> {
        self.params
            .get(self.inner.path(), name)
            .map(|v| std::str::from_utf8(v).unwrap_or_default())
    }

    /// Every path parameter, decoded as by [`Request::param`], in pattern order.
    pub fn params(&self) -> impl Iterator<Item = (&'static str, Cow<'a, str>)> + '_ {
        self.params
            .iter(self.inner.path())
            .map(|(name, value)| (name, decode_text(value, Plus::Keep)))
    }

    /// The query's `name=value` pairs in order, decoded as forms are (`+` is a space, then
    /// percent-escapes); a pair without `=` has an empty value.
    pub fn query_pairs(&self) -> impl Iterator<Item = (Cow<'a, str>, Cow<'a, str>)> {
        self.inner
            .query()
            .unwrap_or_default()
            .split(|&b| b == b'&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| match pair.iter().position(|&b| b == b'=') {
                Some(eq) => (
                    decode_text(&pair[..eq], Plus::Space),
                    decode_text(&pair[eq + 1..], Plus::Space),
                ),
                None => (decode_text(pair, Plus::Space), Cow::Borrowed("")),
            })
    }

    /// The first query value named `name`, decoded as by [`Request::query_pairs`].
    pub fn query_param(&self, name: &str) -> Option<Cow<'a, str>> {
        self.query_pairs()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value)
    }

    /// The value of the header field `name` (any case), if it appears exactly once and is
    /// UTF-8. Surrounding whitespace is removed.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.inner
            .header(name.as_bytes())
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The id of the last event a reconnecting Server-Sent Events client saw (its
    /// `Last-Event-ID` field), for the stream to go on after it.
    pub fn last_event_id(&self) -> Option<&'a str> {
        self.header("last-event-id")
    }

    /// Every value of the header field `name` (any case), in order, as bytes.
    pub fn header_values(&self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.inner.headers(name.as_bytes())
    }

    /// Every header field, name and value, in the order sent.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> {
        self.inner
            .bytes
            .split(|&b| b == b'\n')
            .skip(1)
            .filter_map(|line| {
                let colon = line.iter().position(|&b| b == b':')?;
                let name = std::str::from_utf8(&line[..colon]).ok()?;
                Some((name, line[colon + 1..].trim_ascii()))
            })
    }

    /// The body, read in full before the handler was called (Content-Length or chunked,
    /// at most `http.max_body_bytes`); empty when none was sent. Decoded from its
    /// `Content-Encoding` when the app asked for it ([`crate::App::decode_request_bodies`]).
    pub fn body(&self) -> &'a [u8] {
        self.inner.body
    }

    /// The HTTP version of the request.
    pub fn version(&self) -> Version {
        self.inner.head.version
    }

    /// The client's address: the one a PROXY header named, or the socket's peer (asked of
    /// the socket, a system call, each time).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer.addr()
    }

    /// The connection's TLS (version, cipher suite, SNI name, ALPN), or `None` for a
    /// cleartext connection.
    pub fn tls(&self) -> Option<&'a TlsInfo> {
        self.peer.tls
    }

    /// The whole head as received: request line and fields.
    pub fn head_bytes(&self) -> &'a [u8] {
        self.inner.bytes
    }

    /// A copy that owns its bytes, for work that outlives the request (async handlers get
    /// one). Named apart from `ToOwned::to_owned`, which on this `Copy` view gives another
    /// view of the same buffer.
    pub fn into_owned(self) -> OwnedRequest {
        let mut bytes = Vec::with_capacity(self.inner.bytes.len() + self.inner.body.len());
        bytes.extend_from_slice(self.inner.bytes);
        bytes.extend_from_slice(self.inner.body);
        OwnedRequest {
            head: *self.inner.head,
            bytes,
            params: *self.params,
            peer: self.peer.addr(),
            tls: self.peer.tls.cloned(),
        }
    }
}

/// A request that owns its bytes: what an async handler gets, since it runs after the
/// buffer the request arrived in has gone back ([`Request::into_owned`] makes one).
/// [`OwnedRequest::view`] gives the same methods as [`Request`].
#[derive(Clone, Debug)]
pub struct OwnedRequest {
    head: RequestHead,
    /// The head's bytes, then the body's.
    bytes: Vec<u8>,
    params: Params,
    peer: Option<SocketAddr>,
    tls: Option<TlsInfo>,
}

impl OwnedRequest {
    /// The request, to read as a [`Request`].
    pub fn view(&self) -> Request<'_> {
        let (head, body) = self.bytes.split_at(self.head.len);
        Request {
            inner: RawRequest::whole(&self.head, head, body),
            params: &self.params,
            peer: Peer {
                fd: -1,
                client: self.peer,
                tls: self.tls.as_ref(),
            },
        }
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.bytes[self.head.len..]
    }

    /// The path parameter `name`, decoded (see [`Request::param`]).
    pub fn param(&self, name: &str) -> Option<String> {
        self.view().param(name).map(Cow::into_owned)
    }
}
