//! `GET /echo?name=X` → `Hi, X!`: the reference workload of the C server 80s.
//!
//! `X` is the first `name` parameter of the query, percent-decoded (`+` stays a plus: this
//! is a URI query, not a submitted form). A missing parameter or a broken escape is a 400 on
//! a connection that stays open: the request itself was well framed.

use super::Context;
use crate::http::request::Request;
use crate::http::response::{Response, Status, TEXT_PLAIN};

pub(super) fn echo(request: &Request<'_>, response: &mut Response<'_>, context: &mut Context) {
    let name = request.query().and_then(|query| {
        query
            .split(|&b| b == b'&')
            .find_map(|pair| pair.strip_prefix(b"name="))
    });
    let Some(name) = name else {
        let body: &[u8] = b"missing query parameter: name\n";
        response.send(Status::BAD_REQUEST, Some(TEXT_PLAIN), &[], &[body]);
        return;
    };
    context.bytes.clear();
    if !percent_decode(name, &mut context.bytes) {
        let body: &[u8] = b"invalid percent-encoding in name\n";
        response.send(Status::BAD_REQUEST, Some(TEXT_PLAIN), &[], &[body]);
        return;
    }
    response.send(
        Status::OK,
        Some(TEXT_PLAIN),
        &[],
        &[b"Hi, ", &context.bytes, b"!"],
    );
}

/// Appends `input` with `%XX` escapes decoded to `out`; false on a malformed escape.
pub(crate) fn percent_decode(input: &[u8], out: &mut Vec<u8>) -> bool {
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            let hex = |b: u8| (b as char).to_digit(16);
            match (
                input.get(i + 1).and_then(|&b| hex(b)),
                input.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
                _ => return false,
            }
            i += 3;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn decodes_escapes_and_keeps_plus() {
        let mut out = Vec::new();
        assert!(percent_decode(b"A%62c+d%C3%A9", &mut out));
        assert_eq!(out, "Abc+dé".as_bytes());
        for bad in [&b"%"[..], b"%4", b"%zz", b"a%g1"] {
            assert!(!percent_decode(bad, &mut Vec::new()), "{bad:?}");
        }
    }
}
