//! permessage-deflate's negotiation (RFC 7692 §5–7): the client's offers in
//! `Sec-WebSocket-Extensions` read, the first one percore can take accepted, and the
//! response's parameters written.
//!
//! percore always answers with `server_no_context_takeover` and
//! `client_no_context_takeover` (RFC 7692 lets a server add both to any offer it accepts):
//! every message is compressed and inflated on its own, so one compressor and one inflater
//! per core serve every connection, and a connection costs no compression memory between its
//! messages. An offer limiting the server's window to 8 bits is declined (zlib's raw deflate
//! cannot write with a 256-byte window); an offer with an unknown parameter, a parameter
//! twice or a value out of range is declined too. No acceptable offer: no extension.

/// An accepted offer: what the response says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deflate {
    /// The window the server compresses with (`server_max_window_bits`, 9–15).
    pub server_window_bits: u8,
    /// The client asked for a limit on the server's window: the response repeats it.
    server_bits_asked: bool,
}

impl Deflate {
    /// The `Sec-WebSocket-Extensions` value of the response.
    pub fn write_response(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(
            b"permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        );
        if self.server_bits_asked {
            out.extend_from_slice(b"; server_max_window_bits=");
            let bits = self.server_window_bits;
            if bits >= 10 {
                out.push(b'1');
            }
            out.push(b'0' + bits % 10);
        }
    }
}

/// The first acceptable permessage-deflate offer among the `Sec-WebSocket-Extensions`
/// items (each one extension with its parameters, as the field's list gives them).
pub fn accept<'a>(items: impl Iterator<Item = &'a [u8]>) -> Option<Deflate> {
    items.filter_map(offer).next()
}

/// One offer, if it is permessage-deflate and acceptable.
fn offer(item: &[u8]) -> Option<Deflate> {
    let mut parts = item.split(|&b| b == b';').map(trim);
    if !parts.next()?.eq_ignore_ascii_case(b"permessage-deflate") {
        return None;
    }
    let mut seen = [false; 4];
    let mut server_bits = None;
    for part in parts {
        let (name, value) = match part.iter().position(|&b| b == b'=') {
            Some(at) => (trim(&part[..at]), Some(unquote(trim(&part[at + 1..]))?)),
            None => (part, None),
        };
        let index = [
            &b"server_no_context_takeover"[..],
            b"client_no_context_takeover",
            b"server_max_window_bits",
            b"client_max_window_bits",
        ]
        .iter()
        .position(|known| name.eq_ignore_ascii_case(known))?;
        if std::mem::replace(&mut seen[index], true) {
            return None;
        }
        match (index, value) {
            (0 | 1, None) => {}
            (2, Some(value)) => server_bits = Some(window_bits(value)?),
            // The client's own limit: it may come without a value.
            (3, None) => {}
            (3, Some(value)) => {
                window_bits(value)?;
            }
            _ => return None,
        }
    }
    if server_bits == Some(8) {
        return None;
    }
    Some(Deflate {
        server_window_bits: server_bits.unwrap_or(15),
        server_bits_asked: server_bits.is_some(),
    })
}

/// A window size: 8 to 15, digits only, no leading zero.
fn window_bits(value: &[u8]) -> Option<u8> {
    match value {
        [digit @ b'8'..=b'9'] => Some(digit - b'0'),
        [b'1', digit @ b'0'..=b'5'] => Some(10 + digit - b'0'),
        _ => None,
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b" \t".contains(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b" \t".contains(b))
        .map_or(start, |at| at + 1);
    &bytes[start..end]
}

/// A token, or a quoted string without escapes (RFC 7692 §7's values are tokens).
fn unquote(value: &[u8]) -> Option<&[u8]> {
    match value {
        [b'"', inner @ .., b'"'] if !inner.contains(&b'\\') => Some(inner),
        [b'"', ..] => None,
        _ => Some(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(offers: &[&str]) -> Option<String> {
        let deflate = accept(offers.iter().map(|o| o.as_bytes()))?;
        let mut out = Vec::new();
        deflate.write_response(&mut out);
        Some(String::from_utf8(out).unwrap())
    }

    #[test]
    fn offers_are_taken_in_order_and_the_response_asks_no_context_takeover() {
        let both = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
        assert_eq!(response(&["permessage-deflate"]).as_deref(), Some(both));
        assert_eq!(
            response(&["permessage-deflate; client_max_window_bits"]).as_deref(),
            Some(both)
        );
        assert_eq!(
            response(&["permessage-deflate; server_max_window_bits=\"10\""]),
            Some(format!("{both}; server_max_window_bits=10"))
        );
        // The first acceptable one.
        assert_eq!(
            response(&[
                "x-webkit-deflate-frame",
                "permessage-deflate; server_max_window_bits=8",
                "permessage-deflate; server_max_window_bits=9 ; client_max_window_bits=12",
            ]),
            Some(format!("{both}; server_max_window_bits=9"))
        );
    }

    #[test]
    fn offers_with_bad_parameters_are_declined() {
        for offer in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=015",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; unknown",
            "permessage-deflate; server_max_window_bits=8",
            "deflate",
        ] {
            assert_eq!(response(&[offer]), None, "{offer}");
        }
    }
}
