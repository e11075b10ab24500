//! `GET /echo?name=X` → `Hi, X!`: the reference workload of the C server 80s.
//!
//! `X` is the first `name` parameter of the query, percent-decoded (`+` stays a plus: this
//! is a URI query, not a submitted form). A missing parameter or a broken escape is a 400 on
//! a connection that stays open: the request itself was well framed.

use crate::app::{Request, Response};

/// Answers `GET /echo?name=X` with `Hi, X!`; the body is decoded straight into the core's
/// response buffer, so nothing is allocated.
pub fn echo<S>(request: &Request<'_>, response: &mut Response<'_>, _: &S) {
    let name = request.query_bytes().and_then(|query| {
        query
            .split(|&b| b == b'&')
            .find_map(|pair| pair.strip_prefix(b"name="))
    });
    let Some(name) = name else {
        response.status(400).text("missing query parameter: name\n");
        return;
    };
    response.plain();
    let body = response.body_mut();
    body.extend_from_slice(b"Hi, ");
    if !percent_decode(name, body) {
        response
            .status(400)
            .text("invalid percent-encoding in name\n");
        return;
    }
    body.push(b'!');
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
