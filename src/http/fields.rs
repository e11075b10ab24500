//! Field syntax the head parser and the chunked decoder share (RFC 9110 section 5): tokens,
//! comma-separated lists, and the two fields that frame a body, `Content-Length` and
//! `Transfer-Encoding`.

use super::error::HttpError;
use super::head::Framing;

/// RFC 9110 section 5.6.2 `tchar`: what a method, a field name or a chunk extension's name
/// is made of.
pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

const TCHAR: [bool; 256] = alphanumeric_and(b"!#$%&'*+-.^_`|~");

/// A byte table, for checks made on every byte of a head: ASCII letters and digits, and
/// the bytes of `extra`.
pub(super) const fn alphanumeric_and(extra: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = true;
        i += 1;
    }
    table
}

/// Content-Length = 1*DIGIT; a list, sign or anything else is refused.
pub(super) fn parse_content_length(value: &[u8]) -> Result<u64, HttpError> {
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::InvalidContentLength);
    }
    Ok(value
        .iter()
        .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// The field lines of a head (its bytes after the start line, as the parser accepted them),
/// as `(name, value)` with the value trimmed.
pub(crate) fn head_fields(head: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let start = head
        .iter()
        .position(|&b| b == b'\n')
        .map_or(head.len(), |i| i + 1);
    field_lines(&head[start..])
}

/// Field lines (a trailer section's, or a head's after its start line), checked already,
/// as `(name, value)` with the value trimmed; lines without a colon are passed over.
pub(crate) fn field_lines(lines: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    lines.split(|&b| b == b'\n').filter_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        Some((&line[..colon], line[colon + 1..].trim_ascii()))
    })
}

/// The elements of a comma-separated field value, trimmed, empty ones skipped.
pub(super) fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|item| item.trim_ascii())
        .filter(|item| !item.is_empty())
}

/// Transfer codings that exist but that percore does not decode (501, not "unknown").
const REGISTERED_CODINGS: [&[u8]; 6] = [
    b"gzip",
    b"x-gzip",
    b"deflate",
    b"compress",
    b"x-compress",
    b"identity",
];

/// Transfer codings seen so far, across every Transfer-Encoding line in order.
#[derive(Default)]
pub(super) struct Codings {
    pub(super) present: bool,
    count: usize,
    chunked_at: Option<usize>,
    unknown: bool,
    unimplemented: bool,
}

impl Codings {
    pub(super) fn add(&mut self, value: &[u8]) -> Result<(), HttpError> {
        self.present = true;
        for item in list_items(value) {
            // A coding may carry parameters (`gzip;q=1`); only its name matters here.
            let name = item.split(|&b| b == b';').next().unwrap_or_default();
            let name = name.trim_ascii();
            if name.eq_ignore_ascii_case(b"chunked") {
                if self.chunked_at.is_some() {
                    return Err(HttpError::InvalidTransferEncoding);
                }
                self.chunked_at = Some(self.count);
            } else if REGISTERED_CODINGS
                .iter()
                .any(|known| name.eq_ignore_ascii_case(known))
            {
                self.unimplemented = true;
            } else {
                self.unknown = true;
            }
            self.count += 1;
        }
        Ok(())
    }

    /// RFC 9112 section 6.3: in a request, chunked must be the final coding or the length
    /// cannot be determined (400); a coding percore cannot decode is 501.
    pub(super) fn framing(&self) -> Result<Framing, HttpError> {
        if self.unknown {
            return Err(HttpError::UnknownCoding);
        }
        match self.chunked_at {
            Some(at) if at + 1 == self.count => {}
            _ => return Err(HttpError::InvalidTransferEncoding),
        }
        if self.unimplemented {
            return Err(HttpError::UnknownCoding);
        }
        Ok(Framing::Chunked)
    }
}
