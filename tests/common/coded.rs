//! Decoding what percore codes, with the Rust decoders (the crates the dev-dependencies name).

use std::io::Read;

/// `bytes` decoded from `coding` (gzip, br, zstd); a body that does not decode fails the
/// test.
pub fn decode(coding: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "gzip" => flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map(drop),
        "br" => brotli::Decompressor::new(bytes, 4096)
            .read_to_end(&mut out)
            .map(drop),
        "zstd" => zstd::stream::copy_decode(bytes, &mut out),
        other => panic!("no decoder for {other}"),
    }
    .unwrap_or_else(|e| panic!("a {coding} body: {e}"));
    out
}
