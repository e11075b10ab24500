//! An upstream server's response head, as a reverse proxy reads it (RFC 9112 sections 4
//! and 6.3): its status, whether its connection may carry another request, and how its body
//! is delimited. Anything ambiguous (two `Content-Length` fields, `Content-Length` beside
//! `Transfer-Encoding`, a length that is not one, a status line that does not parse, a head
//! past its bound) is refused: the proxy answers 502 and drops the connection rather than
//! guess where this response ends and the next begins.

use std::mem::MaybeUninit;

use super::fields::{field_lines, head_fields, list_items, parse_content_length};
use super::forward::{connection_options, is_hop_by_hop};

/// Most fields an upstream response head may have.
const MAX_FIELDS: usize = 100;

/// How an upstream response's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (a response to HEAD; 1xx, 204, 304).
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// The chunked coding.
    Chunked,
    /// Up to the close of the connection.
    UntilClose,
}

/// A parsed upstream response head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpstreamHead {
    /// The status code.
    pub status: u16,
    /// How its body is delimited.
    pub framing: BodyFraming,
    /// The connection may carry another request after this response.
    pub reusable: bool,
    /// The `Content-Length` it gave (for a response without a body, to a HEAD request, the
    /// length the GET would have had).
    pub declared: Option<u64>,
    /// Bytes of the head, final blank line included.
    pub len: usize,
}

/// Why an upstream response is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadResponse {
    /// The head did not parse (status line, a field).
    Malformed,
    /// Two `Content-Length` fields, or one beside `Transfer-Encoding`, or one not a number.
    Framing,
    /// The head passed `max_bytes` without ending.
    TooLarge,
}

/// Parses the response head at the start of `buf`; `Ok(None)` while it is incomplete.
/// `head_request`: the request was HEAD (its response has no body, whatever it says).
pub fn parse_upstream_head(
    buf: &[u8],
    head_request: bool,
    max_bytes: usize,
) -> Result<Option<UpstreamHead>, BadResponse> {
    // Uninitialised, as the request parser's: no 3 KiB cleared for every response head.
    let mut headers = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_FIELDS];
    let mut response = httparse::Response::new(&mut []);
    let window = &buf[..buf.len().min(max_bytes)];
    let parser = httparse::ParserConfig::default();
    let len = match parser.parse_response_with_uninit_headers(&mut response, window, &mut headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= max_bytes => {
            return Err(BadResponse::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(BadResponse::Malformed),
    };
    let status = response.code.ok_or(BadResponse::Malformed)?;
    let http11 = response.version == Some(1);
    let mut length: Option<u64> = None;
    let mut lengths = 0;
    let mut coded = false;
    let mut chunked_last = false;
    let mut close = false;
    let mut keep_alive = false;
    for field in response.headers.iter() {
        let name = field.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            lengths += 1;
            let value = field.value.trim_ascii();
            length = Some(parse_content_length(value).map_err(|_| BadResponse::Framing)?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            for coding in list_items(field.value) {
                coded = true;
                chunked_last = coding.eq_ignore_ascii_case(b"chunked");
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for option in list_items(field.value) {
                close |= option.eq_ignore_ascii_case(b"close");
                keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    if lengths > 1 || (lengths == 1 && coded) {
        return Err(BadResponse::Framing);
    }
    let no_body = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    let framing = match (no_body, coded, length) {
        (true, _, _) => BodyFraming::None,
        (false, true, _) if chunked_last => BodyFraming::Chunked,
        (false, true, _) => BodyFraming::UntilClose,
        (false, false, Some(n)) => BodyFraming::Length(n),
        (false, false, None) => BodyFraming::UntilClose,
    };
    let reusable = !close && (http11 || keep_alive) && framing != BodyFraming::UntilClose;
    Ok(Some(UpstreamHead {
        status,
        framing,
        reusable,
        declared: length,
        len,
    }))
}

/// The reason phrase of a response head's status line (empty if it has none).
pub fn reason_of(head: &[u8]) -> &[u8] {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = head[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&head[..line_end]);
    // `HTTP/1.1 200 OK`: after the second space.
    line.splitn(3, |&b| b == b' ').nth(2).unwrap_or(b"")
}

/// Appends the end-to-end fields of an upstream response head for the client: every field
/// but the hop-by-hop ones and those its `Connection` names, and but its framing (percore
/// frames the response itself). Returns whether it had `Server` and `Date`.
pub fn write_end_to_end(head: &[u8], out: &mut Vec<u8>) -> (bool, bool) {
    let mut named = [&[][..]; 16];
    let count = connection_options(head_fields(head), &mut named);
    let named = &named[..count];
    let (mut server, mut date) = (false, false);
    for (name, value) in head_fields(head) {
        if name.is_empty() || is_hop_by_hop(name, named) {
            continue;
        }
        server |= name.eq_ignore_ascii_case(b"server");
        date |= name.eq_ignore_ascii_case(b"date");
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    (server, date)
}

/// Fields a trailer section may not carry on (RFC 9110 section 6.5.1: framing, routing,
/// request modifiers, content metadata), beside the hop-by-hop ones.
pub(crate) const NOT_IN_TRAILER: &[&[u8]] = &[
    b"host",
    b"content-type",
    b"content-encoding",
    b"content-range",
    b"authorization",
    b"set-cookie",
    b"cache-control",
];

/// Appends the fields of an upstream's trailer section (field lines as the chunked decoder
/// kept them) that pass on to the client, each on a line of its own.
pub fn write_trailer_fields(trailer: &[u8], out: &mut Vec<u8>) {
    for (name, value) in field_lines(trailer) {
        let refused = NOT_IN_TRAILER.iter().any(|n| name.eq_ignore_ascii_case(n));
        if name.is_empty() || refused || is_hop_by_hop(name, &[]) {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
}
