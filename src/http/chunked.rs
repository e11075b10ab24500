//! Streaming decoder for the chunked transfer coding (RFC 9112 section 7.1).
//!
//! It consumes a chunked body from whatever bytes have arrived, one call per read, keeping its
//! place between calls, and hands the data bytes to a sink (the request's body buffer) or drops
//! them (a body nobody reads must still be consumed exactly, so the next request starts where
//! it should). Chunk
//! extensions and trailer fields are checked for forbidden bytes and bounded in size. Line
//! ends inside the coding must be CRLF: a bare LF or CR is an error, since parsers that
//! disagree on it are how requests get smuggled.

use super::error::HttpError;

/// Longest chunk-size line (size, extensions) accepted, in bytes.
pub const MAX_CHUNK_LINE_BYTES: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Hex digits of the chunk size.
    Size,
    /// Whitespace after the size, before `;` or CR.
    SizeSpace,
    /// A chunk extension, up to CR.
    Extension,
    /// LF ending the size line.
    SizeLf,
    /// Chunk data still to skip.
    Data,
    /// CR after the data.
    DataCr,
    /// LF after the data.
    DataLf,
    /// Start of a trailer line, or the CR of the final blank line.
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    /// LF ending a trailer field line.
    TrailerLf,
    /// LF of the final blank line.
    EndLf,
    /// Body complete.
    Done,
}

/// Position within one chunked body.
#[derive(Clone, Copy, Debug)]
pub struct ChunkedDecoder {
    step: Step,
    size: u64,
    size_digits: u32,
    line_bytes: usize,
    body_bytes: u64,
    trailer_bytes: usize,
    max_body_bytes: u64,
    max_trailer_bytes: usize,
}

impl ChunkedDecoder {
    /// A decoder for a body of at most `max_body_bytes` data bytes whose trailer section
    /// may take at most `max_trailer_bytes`.
    pub fn new(max_body_bytes: u64, max_trailer_bytes: usize) -> ChunkedDecoder {
        ChunkedDecoder {
            step: Step::Size,
            size: 0,
            size_digits: 0,
            line_bytes: 0,
            body_bytes: 0,
            trailer_bytes: 0,
            max_body_bytes,
            max_trailer_bytes,
        }
    }

    /// Whether the final chunk and trailer section have been consumed.
    pub fn is_done(&self) -> bool {
        self.step == Step::Done
    }

    /// Consumes as much of `input` as belongs to this body and returns how many bytes that
    /// was; the chunks' data bytes are appended to `sink` when there is one. Stops at the end
    /// of the body; bytes after it belong to the next request.
    pub fn feed(
        &mut self,
        input: &[u8],
        mut sink: Option<&mut Vec<u8>>,
    ) -> Result<usize, HttpError> {
        let mut i = 0;
        while i < input.len() && self.step != Step::Done {
            if self.step == Step::Data {
                let take = (input.len() - i).min(self.size as usize);
                if let Some(sink) = sink.as_deref_mut() {
                    sink.extend_from_slice(&input[i..i + take]);
                }
                self.size -= take as u64;
                i += take;
                if self.size == 0 {
                    self.step = Step::DataCr;
                }
                continue;
            }
            let b = input[i];
            i += 1;
            self.step = match self.step {
                Step::Size => match hex_value(b) {
                    Some(digit) => {
                        self.size_digits += 1;
                        if self.size_digits > 15 {
                            return Err(HttpError::InvalidChunk);
                        }
                        self.size = self.size << 4 | u64::from(digit);
                        Step::Size
                    }
                    None if self.size_digits == 0 => return Err(HttpError::InvalidChunk),
                    None => self.after_size(b)?,
                },
                Step::SizeSpace => self.after_size(b)?,
                Step::Extension => match b {
                    b'\r' => Step::SizeLf,
                    b'\t' | b' '..=b'~' | 0x80..=0xff => {
                        self.line_bytes += 1;
                        if self.line_bytes > MAX_CHUNK_LINE_BYTES {
                            return Err(HttpError::InvalidChunk);
                        }
                        Step::Extension
                    }
                    _ => return Err(HttpError::InvalidChunk),
                },
                Step::SizeLf => {
                    if b != b'\n' {
                        return Err(HttpError::InvalidChunk);
                    }
                    self.begin_chunk()?
                }
                Step::DataCr if b == b'\r' => Step::DataLf,
                Step::DataLf if b == b'\n' => Step::Size,
                Step::TrailerStart if b == b'\r' => Step::EndLf,
                Step::TrailerStart | Step::Trailer => match b {
                    b'\r' => Step::TrailerLf,
                    b'\t' | b' '..=b'~' | 0x80..=0xff => {
                        self.trailer_bytes += 1;
                        if self.trailer_bytes > self.max_trailer_bytes {
                            return Err(HttpError::HeadTooLarge);
                        }
                        Step::Trailer
                    }
                    _ => return Err(HttpError::InvalidChunk),
                },
                Step::TrailerLf if b == b'\n' => Step::TrailerStart,
                Step::EndLf if b == b'\n' => Step::Done,
                _ => return Err(HttpError::InvalidChunk),
            };
        }
        Ok(i)
    }

    fn after_size(&mut self, b: u8) -> Result<Step, HttpError> {
        self.line_bytes += 1;
        if self.line_bytes > MAX_CHUNK_LINE_BYTES {
            return Err(HttpError::InvalidChunk);
        }
        Ok(match b {
            b' ' | b'\t' => Step::SizeSpace,
            b';' => Step::Extension,
            b'\r' => Step::SizeLf,
            _ => return Err(HttpError::InvalidChunk),
        })
    }

    fn begin_chunk(&mut self) -> Result<Step, HttpError> {
        let size = self.size;
        self.size_digits = 0;
        self.line_bytes = 0;
        if size == 0 {
            return Ok(Step::TrailerStart);
        }
        self.body_bytes += size;
        if self.body_bytes > self.max_body_bytes {
            return Err(HttpError::BodyTooLarge);
        }
        Ok(Step::Data)
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(input: &[u8]) -> Result<(usize, bool), HttpError> {
        let mut decoder = ChunkedDecoder::new(1 << 20, 1024);
        let used = decoder.feed(input, None)?;
        Ok((used, decoder.is_done()))
    }

    #[test]
    fn body_with_extensions_and_trailers_stops_at_its_end() {
        let body = b"4;name=\"v\"\r\nWiki\r\n5\r\npedia\r\n0\r\nExpires: never\r\n\r\nGET";
        assert_eq!(decode(body), Ok((body.len() - 3, true)));
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let body = b"a\r\n0123456789\r\n0\r\n\r\n";
        let mut decoder = ChunkedDecoder::new(1 << 20, 1024);
        for byte in body.chunks(1) {
            assert_eq!(decoder.feed(byte, None), Ok(1));
        }
        assert!(decoder.is_done());
    }

    #[test]
    fn data_reaches_the_sink_however_split() {
        let body = b"4;x=y\r\nWiki\r\n5\r\npedia\r\n0\r\nA: b\r\n\r\n";
        for split in 0..body.len() {
            let mut decoder = ChunkedDecoder::new(1 << 20, 1024);
            let mut data = Vec::new();
            let first = decoder.feed(&body[..split], Some(&mut data)).unwrap();
            assert_eq!(first, split);
            decoder.feed(&body[split..], Some(&mut data)).unwrap();
            assert!(decoder.is_done());
            assert_eq!(data, b"Wikipedia");
        }
    }

    #[test]
    fn malformed_chunks_are_refused() {
        for body in [
            &b"x\r\n"[..],
            b"\r\n",
            b"4\nWiki\r\n",
            b"4\r\nWikiX\r\n",
            b"4\r\nWiki\n0\r\n\r\n",
            b"1000000000000000\r\n",
            b"0\r\nA: b\rc\r\n\r\n",
            b"4;a\0\r\n",
        ] {
            assert_eq!(decode(body), Err(HttpError::InvalidChunk), "{body:?}");
        }
    }

    #[test]
    fn total_over_the_limit_is_too_large() {
        let mut decoder = ChunkedDecoder::new(8, 1024);
        assert_eq!(
            decoder.feed(b"5\r\nhello\r\n5\r\n", None),
            Err(HttpError::BodyTooLarge)
        );
    }
}
