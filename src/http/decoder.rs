//! Decoding a request body sent in a content coding (`Content-Encoding: gzip`, `br`, `zstd`)
//! within a limit of decoded bytes, so that a small coded body cannot become a large one in
//! memory (a decompression bomb): decoding stops one byte past the limit.
//!
//! Which requests are decoded, and what answers a body that is too large or malformed, is the
//! caller's business; this file only turns coded bytes into decoded ones.

use std::io::Read;

use super::coding::Coding;

/// Why a coded body was not decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// It decodes to more than the limit.
    TooLarge,
    /// It is not a valid stream in its coding (or ends early).
    Malformed,
}

/// The coding a request's `Content-Encoding` field value names, when it names exactly one
/// that percore decodes; `Ok(None)` for none (`identity`, or no field value); `Err(())` for
/// one percore does not decode, or several codings applied in turn.
pub fn request_coding(field: Option<&[u8]>) -> Result<Option<Coding>, ()> {
    let Some(value) = field.map(<[u8]>::trim_ascii).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if value.eq_ignore_ascii_case(b"identity") {
        return Ok(None);
    }
    Coding::from_token(value).map(Some).ok_or(())
}

/// Appends `coded` decoded from `coding` to `out`, at most `limit` bytes of it.
pub fn decode(
    coding: Coding,
    coded: &[u8],
    limit: u64,
    out: &mut Vec<u8>,
) -> Result<(), DecodeError> {
    let start = out.len();
    let read = match coding {
        Coding::Gzip => read_limited(flate2::bufread::MultiGzDecoder::new(coded), limit, out),
        Coding::Br => read_limited(brotli::Decompressor::new(coded, 4096), limit, out),
        Coding::Zstd => match zstd::stream::read::Decoder::with_buffer(coded) {
            Ok(decoder) => read_limited(decoder, limit, out),
            Err(_) => Err(DecodeError::Malformed),
        },
    };
    if read.is_err() {
        out.truncate(start);
    }
    read
}

/// Reads `reader` to its end into `out`, failing once it gives more than `limit` bytes.
fn read_limited(reader: impl Read, limit: u64, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let start = out.len();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(out)
        .map_err(|_| DecodeError::Malformed)?;
    match (out.len() - start) as u64 > limit {
        true => Err(DecodeError::TooLarge),
        false => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::encoder::{Encoder, Levels};

    #[test]
    fn each_coding_decodes_within_the_limit_and_a_bomb_stops_past_it() {
        let mut encoder = Encoder::new(Levels::default());
        let text = b"a request body ".repeat(100);
        let bomb = vec![0u8; 10 << 20];
        for coding in Coding::ALL {
            let mut coded = Vec::new();
            assert!(encoder.compress(coding, &text, &mut coded));
            let mut out = Vec::new();
            assert_eq!(decode(coding, &coded, 1500, &mut out), Ok(()));
            assert_eq!(out, text);
            out.clear();
            assert_eq!(
                decode(coding, &coded, 1499, &mut out),
                Err(DecodeError::TooLarge)
            );
            assert!(out.is_empty());
            let mut coded_bomb = Vec::new();
            assert!(encoder.compress(coding, &bomb, &mut coded_bomb));
            assert!(coded_bomb.len() < 64 << 10, "{coding:?}");
            assert_eq!(
                decode(coding, &coded_bomb, 1 << 20, &mut out),
                Err(DecodeError::TooLarge)
            );
            assert!(out.capacity() <= 4 << 20, "{coding:?}: bounded memory");
            assert_eq!(
                decode(coding, &coded[..coded.len() / 2], 1 << 20, &mut out),
                Err(DecodeError::Malformed),
                "{coding:?}"
            );
            assert_eq!(
                decode(coding, b"not coded", 1 << 20, &mut out),
                Err(DecodeError::Malformed)
            );
        }
    }

    #[test]
    fn the_field_names_one_coding_or_none() {
        assert_eq!(request_coding(None), Ok(None));
        assert_eq!(request_coding(Some(b" identity ")), Ok(None));
        assert_eq!(request_coding(Some(b"")), Ok(None));
        assert_eq!(request_coding(Some(b"GZIP")), Ok(Some(Coding::Gzip)));
        assert_eq!(request_coding(Some(b"x-gzip")), Ok(Some(Coding::Gzip)));
        assert_eq!(request_coding(Some(b"br")), Ok(Some(Coding::Br)));
        assert_eq!(request_coding(Some(b"zstd")), Ok(Some(Coding::Zstd)));
        assert_eq!(request_coding(Some(b"deflate")), Err(()));
        assert_eq!(request_coding(Some(b"gzip, gzip")), Err(()));
    }
}
