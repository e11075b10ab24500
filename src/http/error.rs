//! Protocol errors and the status codes they map to, in one place.
//!
//! Parsing and framing code returns an [`HttpError`]; [`HttpError::status`] is the only
//! function that decides which status the client sees. Every one of these errors closes the
//! connection after its response: they are found while reading a head or a body, so the
//! first byte of the next request can no longer be located with certainty.

use super::status::Status;

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// Request line or a header field does not parse: a request line other than `method SP
    /// request-target SP HTTP-version` exactly (extra or missing spaces, tabs, a bad
    /// version token), a field line with whitespace before its colon, obs-fold, NUL or a
    /// bare CR.
    Malformed,
    /// HTTP/1.1 request without a Host field.
    MissingHost,
    /// More than one Host field.
    DuplicateHost,
    /// Host field value is not `host [ ":" port ]` with a host that is not empty.
    InvalidHost,
    /// Request target is not one of the four RFC 9112 forms, the form does not fit the
    /// method, it holds a byte no target may (a fragment's `#`, non-ASCII, `"`, `<`, `>`),
    /// or an absolute-form target has an empty host.
    InvalidTarget,
    /// Both Content-Length and Transfer-Encoding.
    ConflictingFraming,
    /// Content-Length repeated, negative, non-numeric or too large to represent.
    InvalidContentLength,
    /// Transfer-Encoding whose last coding is not chunked, chunked twice, or sent in HTTP/1.0.
    InvalidTransferEncoding,
    /// A chunk-size line (size, then chunk extensions exactly as RFC 9112 section 7.1.1
    /// has them), chunk terminator or trailer field line does not parse.
    InvalidChunk,
    /// Transfer coding percore does not implement.
    UnknownCoding,
    /// Expect field with something other than `100-continue`.
    UnsupportedExpectation,
    /// Body over `max_body_bytes`.
    BodyTooLarge,
    /// Request target over `max_target_bytes`.
    TargetTooLong,
    /// Head over `max_request_head_bytes`.
    HeadTooLarge,
    /// More header fields than `max_headers`.
    TooManyHeaders,
    /// Method token that percore does not know.
    UnknownMethod,
    /// The head limit was reached inside the method: no space ended it within
    /// `max_request_head_bytes`. RFC 9112 section 3 asks for 501 for a method longer than
    /// any the server implements (414 names the target, not the method).
    MethodTooLong,
    /// Version token `HTTP/x.y` other than 1.0 and 1.1.
    UnsupportedVersion,
    /// Head or body did not arrive in time.
    Timeout,
}

impl HttpError {
    /// The status sent for this error.
    pub fn status(self) -> Status {
        match self {
            HttpError::Malformed
            | HttpError::MissingHost
            | HttpError::DuplicateHost
            | HttpError::InvalidHost
            | HttpError::InvalidTarget
            | HttpError::ConflictingFraming
            | HttpError::InvalidContentLength
            | HttpError::InvalidTransferEncoding
            | HttpError::InvalidChunk => Status::BAD_REQUEST,
            HttpError::Timeout => Status::REQUEST_TIMEOUT,
            HttpError::BodyTooLarge => Status::CONTENT_TOO_LARGE,
            HttpError::TargetTooLong => Status::URI_TOO_LONG,
            HttpError::UnsupportedExpectation => Status::EXPECTATION_FAILED,
            HttpError::HeadTooLarge | HttpError::TooManyHeaders => {
                Status::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            HttpError::UnknownCoding | HttpError::UnknownMethod | HttpError::MethodTooLong => {
                Status::NOT_IMPLEMENTED
            }
            HttpError::UnsupportedVersion => Status::HTTP_VERSION_NOT_SUPPORTED,
        }
    }
}
