//! A body written as chunks (RFC 9112 §7.1): each chunk behind its size line, and the last
//! chunk with the trailer section. The reverse proxy frames a relayed body so, and so does
//! a streamed response.

/// The longest size line: sixteen hex digits and CRLF.
pub const SIZE_LINE_MAX: usize = 18;

/// Writes `len` as a chunk-size line (hex digits, CRLF) into `line`; returns its length.
pub fn size_line(len: usize, line: &mut [u8; SIZE_LINE_MAX]) -> usize {
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1) as usize;
    for (i, digit) in line[..digits].iter_mut().enumerate() {
        let nibble = (len >> (4 * (digits - 1 - i))) & 0xf;
        *digit = b"0123456789abcdef"[nibble];
    }
    line[digits] = b'\r';
    line[digits + 1] = b'\n';
    digits + 2
}

/// Appends `data` to `out` as one chunk (nothing for no data: an empty chunk would be the
/// last one).
pub fn push_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let mut line = [0u8; SIZE_LINE_MAX];
    let n = size_line(data.len(), &mut line);
    out.extend_from_slice(&line[..n]);
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends the last chunk, the trailer fields `write_trailer` writes (whole field lines,
/// each ending in CRLF), and the empty line that ends the body.
pub fn push_last_chunk(out: &mut Vec<u8>, write_trailer: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(b"0\r\n");
    write_trailer(out);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::chunked::ChunkedDecoder;

    #[test]
    fn size_lines_are_lower_case_hex_without_leading_zeros() {
        let mut line = [0u8; SIZE_LINE_MAX];
        for (len, text) in [
            (0, "0\r\n"),
            (10, "a\r\n"),
            (0x10, "10\r\n"),
            (65536, "10000\r\n"),
        ] {
            let n = size_line(len, &mut line);
            assert_eq!(&line[..n], text.as_bytes());
        }
        let n = size_line(usize::MAX, &mut line);
        assert_eq!(n, SIZE_LINE_MAX);
    }

    #[test]
    fn chunks_written_here_decode_to_the_same_bytes() {
        let mut out = Vec::new();
        push_chunk(&mut out, b"hello ");
        push_chunk(&mut out, b"");
        push_chunk(&mut out, &[b'x'; 300]);
        push_last_chunk(&mut out, |out| out.extend_from_slice(b"Checksum: 1\r\n"));
        let mut decoder = ChunkedDecoder::new(u64::MAX, 1024);
        let mut body = Vec::new();
        let used = decoder.feed(&out, Some(&mut body)).unwrap();
        assert_eq!(used, out.len());
        assert!(decoder.is_done());
        assert_eq!(&body[..6], b"hello ");
        assert_eq!(body.len(), 306);
        assert!(out.ends_with(b"0\r\nChecksum: 1\r\n\r\n"));
    }
}
