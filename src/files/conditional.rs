//! What a file's response says: RFC 9110's conditional requests (section 13) in their
//! order, then a single byte range (section 14), and the head that follows from them.

use super::meta::Meta;
use super::range::{parse_range, RangeSpec};
use crate::http::coding::Coding;
use crate::http::date::parse_http_date;
use crate::http::request::{Method, RawRequest};
use crate::http::response::ResponseWriter;
use crate::http::status::Status;

/// What the validators and the `Range` field make of a request.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Full,
    Partial { start: u64, len: u64 },
    NotModified,
    PreconditionFailed,
    Unsatisfiable,
}

/// What a file's response says of its coding: `Content-Encoding` for a coded body, and
/// `Vary: Accept-Encoding` when another request could have had the body coded otherwise.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Representation {
    pub(crate) coding: Option<Coding>,
    pub(crate) vary: bool,
}

impl Representation {
    /// A body in `coding`, which a request accepting another would not have had.
    pub(crate) fn coded(coding: Coding) -> Representation {
        Representation {
            coding: Some(coding),
            vary: true,
        }
    }
}

/// The most fields a file's head carries besides those `ResponseWriter` writes itself.
const MAX_FIELDS: usize = 6;

/// A response's fields, gathered on the stack.
#[derive(Clone, Copy)]
struct Fields<'a> {
    fields: [(&'a str, &'a str); MAX_FIELDS],
    len: usize,
}

impl<'a> Fields<'a> {
    fn new() -> Fields<'a> {
        Fields {
            fields: [("", ""); MAX_FIELDS],
            len: 0,
        }
    }

    fn push(&mut self, name: &'a str, value: &'a str) {
        self.fields[self.len] = (name, value);
        self.len += 1;
    }

    fn as_slice(&self) -> &[(&'a str, &'a str)] {
        &self.fields[..self.len]
    }
}

/// Writes the response head for a file (or a coded variant of it, as `representation`
/// says); returns the byte range whose bytes must follow.
pub(crate) fn respond(
    request: &RawRequest<'_>,
    response: &mut ResponseWriter,
    meta: &Meta,
    representation: Representation,
) -> Option<(u64, u64)> {
    let last_modified = std::str::from_utf8(&meta.last_modified).unwrap_or_default();
    let mut fields = Fields::new();
    fields.push("ETag", meta.etag.as_str());
    fields.push("Last-Modified", last_modified);
    if representation.vary {
        // RFC 9110 section 15.4.5: a 304 carries the Vary its 200 would.
        fields.push("Vary", "Accept-Encoding");
    }
    let content_type = Some(meta.content_type);
    let answer = decide(request, meta);
    if matches!(answer, Answer::Full | Answer::Partial { .. }) {
        fields.push("Accept-Ranges", "bytes");
        if let Some(coding) = representation.coding {
            fields.push("Content-Encoding", coding.token());
        }
    }
    let range = match answer {
        Answer::Full => {
            response.send_head(Status::OK, content_type, fields.as_slice(), meta.size);
            (0, meta.size)
        }
        Answer::Partial { start, len } => {
            let content_range = format!("bytes {}-{}/{}", start, start + len - 1, meta.size);
            // A copy that lives no longer than the value it is given.
            let mut fields = fields;
            fields.push("Content-Range", content_range.as_str());
            let fields = fields.as_slice();
            response.send_head(Status::PARTIAL_CONTENT, content_type, fields, len);
            (start, len)
        }
        Answer::NotModified => {
            response.send_head(Status::NOT_MODIFIED, None, fields.as_slice(), 0);
            return None;
        }
        Answer::PreconditionFailed => {
            response.send_status(Status::PRECONDITION_FAILED, &[]);
            return None;
        }
        Answer::Unsatisfiable => {
            let content_range = format!("bytes */{}", meta.size);
            let extra = [("Content-Range", content_range.as_str())];
            response.send_status(Status::RANGE_NOT_SATISFIABLE, &extra);
            return None;
        }
    };
    (response.body_wanted() && range.1 > 0).then_some(range)
}

/// Writes the head for a whole file coded in `coding` as it is sent (`meta` the coded
/// representation's: its own `ETag`), whose coded length is not known: chunked to an
/// HTTP/1.1 client, up to the close to an HTTP/1.0 one. The caller asks only for requests
/// without `Range`; ranges of the file mean its bytes on disk, so the head offers none.
/// Returns whether the coded body follows, and framed as chunks if so.
pub(crate) fn respond_unsized(
    request: &RawRequest<'_>,
    response: &mut ResponseWriter,
    meta: &Meta,
    coding: Coding,
) -> Option<bool> {
    match decide(request, meta) {
        Answer::Full | Answer::Partial { .. } | Answer::Unsatisfiable => {}
        Answer::NotModified | Answer::PreconditionFailed => {
            respond(request, response, meta, Representation::coded(coding));
            return None;
        }
    }
    let last_modified = std::str::from_utf8(&meta.last_modified).unwrap_or_default();
    response.stage_field("Content-Type", meta.content_type);
    response.stage_field("ETag", meta.etag.as_str());
    response.stage_field("Last-Modified", last_modified);
    response.stage_field("Vary", "Accept-Encoding");
    response.stage_field("Content-Encoding", coding.token());
    let chunked = response.send_head_unsized(Status::OK, None);
    response.body_wanted().then_some(chunked)
}

/// RFC 9110 section 13.2.2: preconditions in their order, then the range.
fn decide(request: &RawRequest<'_>, meta: &Meta) -> Answer {
    let etag = meta.etag.as_bytes();
    let get_or_head = matches!(request.head.method, Method::Get | Method::Head);
    if request.headers(b"if-match").next().is_some() {
        if !request
            .headers(b"if-match")
            .any(|v| etag_list_matches(v, etag, true))
        {
            return Answer::PreconditionFailed;
        }
    } else if let Some(date) = request
        .header(b"if-unmodified-since")
        .and_then(parse_http_date)
    {
        if meta.modified > date {
            return Answer::PreconditionFailed;
        }
    }
    if request.headers(b"if-none-match").next().is_some() {
        if request
            .headers(b"if-none-match")
            .any(|v| etag_list_matches(v, etag, false))
        {
            return if get_or_head {
                Answer::NotModified
            } else {
                Answer::PreconditionFailed
            };
        }
    } else if let Some(date) = request
        .header(b"if-modified-since")
        .and_then(parse_http_date)
    {
        if get_or_head && meta.modified <= date {
            return Answer::NotModified;
        }
    }
    if request.head.method != Method::Get {
        return Answer::Full;
    }
    let Some(range) = request.header(b"range") else {
        return Answer::Full;
    };
    if let Some(condition) = request.header(b"if-range") {
        let holds = if condition.starts_with(b"\"") {
            condition == etag
        } else {
            parse_http_date(condition) == Some(meta.modified)
        };
        if !holds {
            return Answer::Full;
        }
    }
    match parse_range(range, meta.size) {
        RangeSpec::Ignore => Answer::Full,
        RangeSpec::Satisfiable { start, len } => Answer::Partial { start, len },
        RangeSpec::Unsatisfiable => Answer::Unsatisfiable,
    }
}

/// Whether a field value (`*` or a list of entity tags) matches `etag`; strong comparison
/// refuses weak tags (`W/"…"`), weak comparison ignores the prefix.
fn etag_list_matches(value: &[u8], etag: &[u8], strong: bool) -> bool {
    if value.trim_ascii() == b"*" {
        return true;
    }
    value
        .split(|&b| b == b',')
        .map(|tag| tag.trim_ascii())
        .any(|tag| match tag.strip_prefix(b"W/") {
            Some(weak) => !strong && weak == etag,
            None => tag == etag,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_tags_compare_strongly_or_weakly() {
        let etag = b"\"a-1\"";
        assert!(etag_list_matches(b"\"x\", \"a-1\"", etag, true));
        assert!(etag_list_matches(b"*", etag, true));
        assert!(!etag_list_matches(b"W/\"a-1\"", etag, true));
        assert!(etag_list_matches(b"W/\"a-1\"", etag, false));
        assert!(!etag_list_matches(b"\"a-2\"", etag, false));
    }
}
