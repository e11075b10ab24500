//! Request bodies sent in a content coding, for handlers: an app that asks for it
//! ([`crate::App::decode_request_bodies`]) gets a body sent with `Content-Encoding: gzip`,
//! `br` or `zstd` decoded, within `http.max_body_bytes` of decoded bytes (past them: 413,
//! so a small coded body cannot fill the core's memory); one that did not ask gets such a
//! body refused with 415 and `Accept-Encoding: identity` (RFC 9110 section 15.5.16), since its
//! handlers would read coded bytes as the body. A coding percore does not decode (or several
//! in turn) is refused with 415 too, its `Accept-Encoding` naming what would have been taken.
//! Proxied requests are not this file's: their bodies go upstream as they came.

use crate::http::decoder::{decode, request_coding, DecodeError};
use crate::http::request::RawRequest;
use crate::http::status::Status;

/// A decoded body's buffer that grew past this is freed after its request.
const DECODED_KEEP_BYTES: usize = 1 << 20;

/// One core's decoding of handlers' request bodies.
#[derive(Debug, Default)]
pub(crate) struct BodyDecoding {
    /// The app asked for coded bodies to be decoded.
    on: bool,
    /// `http.max_body_bytes`: the most a body may decode to.
    limit: u64,
    /// The last decoded body.
    decoded: Vec<u8>,
}

/// Why a request's body was refused: its status, and the `Accept-Encoding` to send with a
/// 415.
pub(crate) type Refusal = (Status, Option<&'static str>);

impl BodyDecoding {
    /// Decodes bodies when `on`, up to `limit` decoded bytes.
    pub(crate) fn new(on: bool, limit: u64) -> BodyDecoding {
        BodyDecoding {
            on,
            limit,
            decoded: Vec::new(),
        }
    }

    /// The body a handler gets for `request`: `Ok(None)` for the body as it came (no coding),
    /// the decoded body, or why it is refused.
    pub(crate) fn body(&mut self, request: &RawRequest<'_>) -> Result<Option<&[u8]>, Refusal> {
        if request.body.is_empty() {
            return Ok(None);
        }
        let accepted = match self.on {
            true => "gzip, br, zstd",
            false => "identity",
        };
        let coding = match request_coding(request.header(b"content-encoding")) {
            Ok(None) => return Ok(None),
            Ok(Some(coding)) if self.on => coding,
            _ => return Err((Status::UNSUPPORTED_MEDIA_TYPE, Some(accepted))),
        };
        if self.decoded.capacity() > DECODED_KEEP_BYTES {
            self.decoded = Vec::new();
        }
        self.decoded.clear();
        match decode(coding, request.body, self.limit, &mut self.decoded) {
            Ok(()) => Ok(Some(&self.decoded)),
            Err(DecodeError::TooLarge) => Err((Status::CONTENT_TOO_LARGE, None)),
            Err(DecodeError::Malformed) => Err((Status::BAD_REQUEST, None)),
        }
    }
}
