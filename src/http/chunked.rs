//! Streaming decoder for the chunked transfer coding (RFC 9112 section 7.1).
//!
//! It consumes a chunked body from whatever bytes have arrived, one call per read, keeping its
//! place between calls, and hands the data bytes to a sink (the request's body buffer) or drops
//! them (a body nobody reads must still be consumed exactly, so the next request starts where
//! it should).
//!
//! The chunk-size line and the trailer section are parsed to the letter of the grammar, one
//! byte at a time, so that how the bytes are split across reads cannot change the outcome:
//!
//! ```text
//! chunk-size [ chunk-ext ] CRLF
//! chunk-ext  = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
//! ext-name   = token
//! ext-val    = token / quoted-string
//! trailer    = *( field-name ":" OWS field-value OWS CRLF ) CRLF
//! ```
//!
//! Extensions are ignored once parsed, but one that does not parse is refused: a bare `;`, a
//! name that is not a token, whitespace after the size with no `;`, an unterminated quoted
//! string. Parsers that disagree on such lines are how requests get smuggled, which is also
//! why line ends inside the coding must be CRLF (a bare LF or CR is an error) and why a
//! trailer line that starts with whitespace (obs-fold) is refused. The size line and the
//! trailer section are bounded in size.

use super::error::HttpError;
use super::fields::is_tchar;

/// Longest chunk-size line (size, extensions) accepted, in bytes.
pub const MAX_CHUNK_LINE_BYTES: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Hex digits of the chunk size.
    Size,
    /// Whitespace after the size: only more of it or `;` may follow.
    SizeSpace,
    /// After `;` (and any whitespace): the extension's name must start.
    ExtNameStart,
    /// Inside an extension's name.
    ExtName,
    /// Whitespace after a name: `=` or `;` must follow.
    ExtNameSpace,
    /// After `=` (and any whitespace): the value must start.
    ExtValueStart,
    /// Inside a token value.
    ExtToken,
    /// Inside a quoted-string value.
    ExtQuoted,
    /// After a backslash in a quoted string.
    ExtQuotedPair,
    /// After a value's closing quote.
    ExtQuotedEnd,
    /// Whitespace after a value: `;` must follow.
    ExtValueSpace,
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
    /// Inside a trailer field's name.
    TrailerName,
    /// Inside a trailer field's value (after the colon).
    TrailerValue,
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
    pub fn feed(&mut self, input: &[u8], sink: Option<&mut Vec<u8>>) -> Result<usize, HttpError> {
        self.feed_keeping(input, sink, None)
    }

    /// As [`ChunkedDecoder::feed`], and the trailer section's field lines (each with its
    /// CRLF, as received and checked; the final blank line not included) are appended to
    /// `trailer` when there is one.
    pub fn feed_keeping(
        &mut self,
        input: &[u8],
        mut sink: Option<&mut Vec<u8>>,
        mut trailer: Option<&mut Vec<u8>>,
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
            if let Some(trailer) = trailer.as_deref_mut() {
                let fields = matches!(
                    self.step,
                    Step::TrailerName | Step::TrailerValue | Step::TrailerLf
                );
                if fields || self.step == Step::TrailerStart && b != b'\r' {
                    trailer.push(b);
                }
            }
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
                    None => self.size_line(Step::Size, b)?,
                },
                Step::SizeSpace
                | Step::ExtNameStart
                | Step::ExtName
                | Step::ExtNameSpace
                | Step::ExtValueStart
                | Step::ExtToken
                | Step::ExtQuoted
                | Step::ExtQuotedPair
                | Step::ExtQuotedEnd
                | Step::ExtValueSpace => self.size_line(self.step, b)?,
                Step::SizeLf => {
                    if b != b'\n' {
                        return Err(HttpError::InvalidChunk);
                    }
                    self.begin_chunk()?
                }
                Step::DataCr if b == b'\r' => Step::DataLf,
                Step::DataLf if b == b'\n' => Step::Size,
                Step::TrailerStart if b == b'\r' => Step::EndLf,
                Step::TrailerStart | Step::TrailerName | Step::TrailerValue => {
                    self.trailer_bytes += 1;
                    if self.trailer_bytes > self.max_trailer_bytes {
                        return Err(HttpError::HeadTooLarge);
                    }
                    trailer_line(self.step, b)?
                }
                Step::TrailerLf if b == b'\n' => Step::TrailerStart,
                Step::EndLf if b == b'\n' => Step::Done,
                _ => return Err(HttpError::InvalidChunk),
            };
        }
        Ok(i)
    }

    /// The next step of a chunk-size line after its digits, given byte `b` in `step`.
    fn size_line(&mut self, step: Step, b: u8) -> Result<Step, HttpError> {
        self.line_bytes += 1;
        if self.line_bytes > MAX_CHUNK_LINE_BYTES {
            return Err(HttpError::InvalidChunk);
        }
        let space = b == b' ' || b == b'\t';
        Ok(match step {
            // Just after the digits: the line may end here, or BWS ";" may follow.
            Step::Size | Step::SizeSpace if b == b';' => Step::ExtNameStart,
            Step::Size | Step::SizeSpace if space => Step::SizeSpace,
            Step::Size if b == b'\r' => Step::SizeLf,
            Step::ExtNameStart if space => Step::ExtNameStart,
            Step::ExtNameStart | Step::ExtName if is_tchar(b) => Step::ExtName,
            // After a name: BWS "=" (a value follows), BWS ";" (another extension), or
            // the end of the line straight after the name.
            Step::ExtName | Step::ExtNameSpace if b == b'=' => Step::ExtValueStart,
            Step::ExtName | Step::ExtNameSpace if b == b';' => Step::ExtNameStart,
            Step::ExtName | Step::ExtNameSpace if space => Step::ExtNameSpace,
            Step::ExtName if b == b'\r' => Step::SizeLf,
            Step::ExtValueStart if space => Step::ExtValueStart,
            Step::ExtValueStart if b == b'"' => Step::ExtQuoted,
            Step::ExtValueStart | Step::ExtToken if is_tchar(b) => Step::ExtToken,
            // RFC 9110 section 5.6.4: qdtext and quoted-pair.
            Step::ExtQuoted if b == b'"' => Step::ExtQuotedEnd,
            Step::ExtQuoted if b == b'\\' => Step::ExtQuotedPair,
            Step::ExtQuoted if b == b'\t' || b == b' ' || b >= 0x21 && b != 0x7f => Step::ExtQuoted,
            Step::ExtQuotedPair if b == b'\t' || b == b' ' || b >= 0x21 && b != 0x7f => {
                Step::ExtQuoted
            }
            // After a value: BWS ";" or the end of the line straight after it.
            Step::ExtToken | Step::ExtQuotedEnd | Step::ExtValueSpace if b == b';' => {
                Step::ExtNameStart
            }
            Step::ExtToken | Step::ExtQuotedEnd | Step::ExtValueSpace if space => {
                Step::ExtValueSpace
            }
            Step::ExtToken | Step::ExtQuotedEnd if b == b'\r' => Step::SizeLf,
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

/// The next step of a trailer field line (`field-name ":" OWS field-value OWS`, RFC 9112
/// section 7.1.2 and 5) given byte `b` in `step`: the name is a token straight up to the
/// colon, the value visible characters, spaces and tabs, obs-text. A line that starts with
/// whitespace is obs-fold (or whitespace before a name) and is refused, as in the head.
fn trailer_line(step: Step, b: u8) -> Result<Step, HttpError> {
    Ok(match step {
        Step::TrailerStart | Step::TrailerName if is_tchar(b) => Step::TrailerName,
        Step::TrailerName if b == b':' => Step::TrailerValue,
        Step::TrailerValue if b == b'\r' => Step::TrailerLf,
        Step::TrailerValue if b == b'\t' || b == b' ' || b >= 0x21 && b != 0x7f => {
            Step::TrailerValue
        }
        _ => return Err(HttpError::InvalidChunk),
    })
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
    fn the_trailer_section_is_kept_as_received_however_split() {
        let body = b"4\r\nWiki\r\n0\r\nA: b\r\nServer-Timing:db;dur=53\r\n\r\nNEXT";
        for split in 0..body.len() {
            let mut decoder = ChunkedDecoder::new(1 << 20, 1024);
            let (mut data, mut trailer) = (Vec::new(), Vec::new());
            let first = decoder
                .feed_keeping(&body[..split], Some(&mut data), Some(&mut trailer))
                .unwrap();
            let rest = decoder
                .feed_keeping(&body[split..], Some(&mut data), Some(&mut trailer))
                .unwrap();
            assert_eq!(first + rest, body.len() - 4);
            assert!(decoder.is_done());
            assert_eq!(data, b"Wiki");
            assert_eq!(trailer, b"A: b\r\nServer-Timing:db;dur=53\r\n");
        }
        let mut decoder = ChunkedDecoder::new(1 << 20, 1024);
        let mut trailer = Vec::new();
        decoder
            .feed_keeping(b"0\r\n\r\n", None, Some(&mut trailer))
            .unwrap();
        assert!(decoder.is_done() && trailer.is_empty());
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
    fn extensions_that_follow_the_grammar_are_accepted() {
        for line in [
            "5",
            "5;a",
            "5;a=b",
            "5 ;a",
            "5\t; a",
            "5; a ; b",
            "5;a = b",
            "5;a=\"\"",
            "5;a=\"x y;z=\\\"q\\\\\"",
            "5;a=\"caf\u{e9}\"",
            "5;a=b;c=\"d\";e",
            "5;a=b ;c",
            "5;a=\"b\" ;c",
            "5;!#$%&'*+-.^_`|~=!#$%&'*+-.^_`|~",
        ] {
            let body = format!("{line}\r\nhello\r\n0\r\n\r\n");
            assert_eq!(decode(body.as_bytes()), Ok((body.len(), true)), "{line:?}");
        }
    }

    #[test]
    fn extensions_that_break_the_grammar_are_refused() {
        for line in [
            "5;",
            "5; ",
            "5;;a",
            "5;a;",
            "5 ",
            "5\t",
            "5 5",
            "5;bad[=x",
            "5;a=",
            "5;a= ",
            "5;a=b c",
            "5;a=b ",
            "5;a ",
            "5;a=\"b",
            "5;a=\"b\"c",
            "5;a=\"b\" ",
            "5;a=b=c",
            "5;=b",
            "5;a=[b]",
            "5;a=\"\u{7f}\"",
            "5;a=\"\\\u{1}\"",
            "5;caf\u{e9}",
            "5,a",
        ] {
            let body = format!("{line}\r\nhello\r\n0\r\n\r\n");
            assert_eq!(
                decode(body.as_bytes()),
                Err(HttpError::InvalidChunk),
                "{line:?}"
            );
        }
    }

    #[test]
    fn chunk_line_stays_bounded() {
        let within = format!(
            "5;a={}\r\nhello\r\n0\r\n\r\n",
            "b".repeat(MAX_CHUNK_LINE_BYTES - 5)
        );
        assert_eq!(decode(within.as_bytes()), Ok((within.len(), true)));
        let over = format!("5;a={}\r\n", "b".repeat(MAX_CHUNK_LINE_BYTES));
        assert_eq!(decode(over.as_bytes()), Err(HttpError::InvalidChunk));
        let spaces = format!("5{};a\r\n", " ".repeat(MAX_CHUNK_LINE_BYTES));
        assert_eq!(decode(spaces.as_bytes()), Err(HttpError::InvalidChunk));
    }

    #[test]
    fn trailers_must_be_field_lines() {
        for trailer in [
            "A: b",
            "A:b",
            "A:",
            "A: b c ",
            "A:\tb\t",
            "A: caf\u{e9}",
            "X-Y.z!: \"q\"",
        ] {
            let body = format!("0\r\n{trailer}\r\nB: c\r\n\r\n");
            assert_eq!(
                decode(body.as_bytes()),
                Ok((body.len(), true)),
                "{trailer:?}"
            );
        }
        for trailer in [
            "A",
            ": b",
            "A : b",
            " A: b",
            "\tA: b",
            "A b: c",
            "A\u{7f}: b",
            "A: b\u{7f}",
            "A: b\u{1}",
            "caf\u{e9}: b",
            "[A]: b",
        ] {
            let body = format!("0\r\n{trailer}\r\n\r\n");
            assert_eq!(
                decode(body.as_bytes()),
                Err(HttpError::InvalidChunk),
                "{trailer:?}"
            );
        }
        // obs-fold: a continuation line after a field.
        assert_eq!(
            decode(b"0\r\nA: b\r\n c\r\n\r\n"),
            Err(HttpError::InvalidChunk)
        );
    }

    /// The chunk-size line grammar of RFC 9112 section 7.1.1, checked on a whole line
    /// (without its CRLF) by plain recursive descent: what the byte-at-a-time decoder must
    /// agree with.
    fn is_valid_size_line(line: &[u8]) -> bool {
        let bws = |at: &mut usize| {
            while matches!(line.get(*at), Some(b' ' | b'\t')) {
                *at += 1;
            }
        };
        let token = |at: &mut usize| {
            let start = *at;
            while line.get(*at).is_some_and(|&b| is_tchar(b)) {
                *at += 1;
            }
            *at > start
        };
        let mut at = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if at == 0 || at > 15 {
            return false;
        }
        while at < line.len() {
            bws(&mut at);
            if line.get(at) != Some(&b';') {
                return false;
            }
            at += 1;
            bws(&mut at);
            if !token(&mut at) {
                return false;
            }
            let mut after_name = at;
            bws(&mut after_name);
            if line.get(after_name) != Some(&b'=') {
                continue;
            }
            at = after_name + 1;
            bws(&mut at);
            if line.get(at) == Some(&b'"') {
                at += 1;
                loop {
                    match line.get(at) {
                        Some(b'"') => break,
                        Some(b'\\')
                            if line
                                .get(at + 1)
                                .is_some_and(|&b| b == b'\t' || b >= 0x20 && b != 0x7f) =>
                        {
                            at += 2
                        }
                        Some(&b) if b == b'\t' || b >= 0x20 && b != 0x7f && b != b'\\' => at += 1,
                        _ => return false,
                    }
                }
                at += 1;
            } else if !token(&mut at) {
                return false;
            }
        }
        true
    }

    proptest::proptest! {
        #[test]
        fn size_lines_are_accepted_exactly_when_the_grammar_says(
            line in proptest::collection::vec(
                proptest::sample::select(b"5a;= \t\"\\,x[\x7f\x01\xe9".to_vec()),
                0..14,
            ),
        ) {
            let mut body = line.clone();
            body.extend_from_slice(b"\r\n");
            // No size is too large here: only the line's syntax is in question.
            let mut decoder = ChunkedDecoder::new(u64::MAX, 1024);
            let result = decoder.feed(&body, None);
            proptest::prop_assert_eq!(
                result.is_ok(),
                is_valid_size_line(&line),
                "{:?}",
                String::from_utf8_lossy(&line)
            );
            // However the line is split, the answer is the same.
            let mut bytewise = ChunkedDecoder::new(u64::MAX, 1024);
            let split = body.iter().try_for_each(|b| bytewise.feed(std::slice::from_ref(b), None).map(drop));
            proptest::prop_assert_eq!(split, result.map(drop));
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
