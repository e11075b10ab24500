//! UTF-8 checked as it arrives (RFC 6455 §8.1: a text message's bytes are checked before the
//! message is whole, and the connection fails as soon as a byte cannot be part of valid
//! UTF-8, not at the message's end). Runs of complete text go through the standard
//! library's validator; a sequence split between two pieces is carried byte by byte, each
//! continuation byte checked against the range its lead byte allows (no overlong forms, no
//! surrogates, nothing above U+10FFFF).

/// The check's state between two pieces of one message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Utf8Check {
    /// Continuation bytes still due for the sequence under way.
    due: u8,
    /// The range the next continuation byte must fall in.
    low: u8,
    high: u8,
}

/// A byte that cannot be part of valid UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidUtf8;

impl Utf8Check {
    /// Checks the next piece of the text.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), InvalidUtf8> {
        while !bytes.is_empty() {
            if self.due > 0 {
                self.step(bytes[0])?;
                bytes = &bytes[1..];
                continue;
            }
            match std::str::from_utf8(bytes) {
                Ok(_) => return Ok(()),
                Err(error) if error.error_len().is_some() => return Err(InvalidUtf8),
                // A sequence begun at the end: carried to the next piece.
                Err(error) => {
                    for &byte in &bytes[error.valid_up_to()..] {
                        self.step(byte)?;
                    }
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Whether the text so far ends on a character boundary (it may be the message's end).
    pub fn is_complete(&self) -> bool {
        self.due == 0
    }

    /// Forgets the text so far (a new message begins).
    pub fn reset(&mut self) {
        *self = Utf8Check::default();
    }

    fn step(&mut self, byte: u8) -> Result<(), InvalidUtf8> {
        if self.due > 0 {
            if byte < self.low || byte > self.high {
                return Err(InvalidUtf8);
            }
            self.due -= 1;
            (self.low, self.high) = (0x80, 0xBF);
            return Ok(());
        }
        (self.due, self.low, self.high) = match byte {
            0x00..=0x7F => return Ok(()),
            0xC2..=0xDF => (1, 0x80, 0xBF),
            0xE0 => (2, 0xA0, 0xBF),
            0xED => (2, 0x80, 0x9F),
            0xE1..=0xEC | 0xEE..=0xEF => (2, 0x80, 0xBF),
            0xF0 => (3, 0x90, 0xBF),
            0xF1..=0xF3 => (3, 0x80, 0xBF),
            0xF4 => (3, 0x80, 0x8F),
            _ => return Err(InvalidUtf8),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks `bytes` split at every place, and whole.
    fn verdict(bytes: &[u8]) -> Option<bool> {
        let whole = std::str::from_utf8(bytes).is_ok();
        for at in 0..=bytes.len() {
            let mut check = Utf8Check::default();
            let fed = check
                .feed(&bytes[..at])
                .and_then(|()| check.feed(&bytes[at..]));
            let ok = fed.is_ok() && check.is_complete();
            if ok != whole {
                return None;
            }
        }
        Some(whole)
    }

    #[test]
    fn agrees_with_the_standard_library_wherever_the_text_is_split() {
        let samples: &[&[u8]] = &[
            b"plain ascii",
            "κόσμε 世界 𝄞".as_bytes(),
            b"\xed\xa0\x80",         // a surrogate
            b"\xc0\xaf",             // overlong
            b"\xe0\x80\xaf",         // overlong
            b"\xf4\x90\x80\x80",     // above U+10FFFF
            b"\xf8\x88\x80\x80\x80", // five bytes
            b"\xce\xba\xe1\xbd",     // cut short
            b"\xef\xbb\xbf",         // BOM: valid
            b"\xf0\x9f\x98\x80!",
        ];
        for sample in samples {
            assert!(verdict(sample).is_some(), "{sample:x?}");
        }
    }

    #[test]
    fn a_bad_byte_fails_when_it_arrives_not_at_the_end() {
        let mut check = Utf8Check::default();
        check.feed("κό".as_bytes()).unwrap();
        check.feed(b"\xce").unwrap();
        assert_eq!(
            check.feed(b"\x20"),
            Err(InvalidUtf8),
            "a space cannot continue \\xce"
        );
        let mut check = Utf8Check::default();
        assert_eq!(
            check.feed(b"\xed\xa0"),
            Err(InvalidUtf8),
            "a surrogate, at its second byte"
        );
        let mut check = Utf8Check::default();
        check.feed(b"\xf4").unwrap();
        assert_eq!(check.feed(b"\x90"), Err(InvalidUtf8));
    }

    #[test]
    fn every_two_byte_string_agrees_with_the_standard_library() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                assert!(verdict(&[a, b]).is_some(), "{a:x} {b:x}");
            }
        }
    }
}
