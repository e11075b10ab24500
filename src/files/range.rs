//! The `Range` field of a request for a file: one byte range, in any of its three forms.

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RangeSpec {
    /// Not a single byte range this server takes (or malformed): send the whole file.
    Ignore,
    Satisfiable {
        start: u64,
        len: u64,
    },
    Unsatisfiable,
}

/// Parses `bytes=a-b`, `bytes=a-` or `bytes=-n` against a file of `size` bytes. Several
/// ranges are answered with the whole file, which RFC 9110 section 14.2 allows.
pub(crate) fn parse_range(value: &[u8], size: u64) -> RangeSpec {
    let Some(spec) = value
        .split_at_checked(6)
        .filter(|(unit, _)| unit.eq_ignore_ascii_case(b"bytes="))
        .map(|(_, spec)| spec.trim_ascii())
    else {
        return RangeSpec::Ignore;
    };
    if spec.contains(&b',') {
        return RangeSpec::Ignore;
    }
    let Some(dash) = spec.iter().position(|&b| b == b'-') else {
        return RangeSpec::Ignore;
    };
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    let number = |digits: &[u8]| -> Option<u64> {
        if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        digits.iter().try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
    };
    if first.is_empty() {
        let Some(suffix) = number(last) else {
            return RangeSpec::Ignore;
        };
        if suffix == 0 || size == 0 {
            return RangeSpec::Unsatisfiable;
        }
        let len = suffix.min(size);
        return RangeSpec::Satisfiable {
            start: size - len,
            len,
        };
    }
    let Some(start) = number(first) else {
        return RangeSpec::Ignore;
    };
    let end = if last.is_empty() {
        None
    } else {
        match number(last) {
            Some(end) if end >= start => Some(end),
            _ => return RangeSpec::Ignore,
        }
    };
    if start >= size {
        return RangeSpec::Unsatisfiable;
    }
    let end = end.unwrap_or(u64::MAX).min(size - 1);
    RangeSpec::Satisfiable {
        start,
        len: end - start + 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        use RangeSpec::*;
        let sat = |start, len| Satisfiable { start, len };
        assert_eq!(parse_range(b"bytes=0-0", 10), sat(0, 1));
        assert_eq!(parse_range(b"bytes=2-", 10), sat(2, 8));
        assert_eq!(parse_range(b"bytes=5-100", 10), sat(5, 5));
        assert_eq!(parse_range(b"bytes=-3", 10), sat(7, 3));
        assert_eq!(parse_range(b"bytes=-30", 10), sat(0, 10));
        assert_eq!(parse_range(b"BYTES=1-2", 10), sat(1, 2));
        assert_eq!(parse_range(b"bytes=10-", 10), Unsatisfiable);
        assert_eq!(parse_range(b"bytes=-0", 10), Unsatisfiable);
        assert_eq!(parse_range(b"bytes=0-", 0), Unsatisfiable);
        for ignored in [
            &b"bytes=3-2"[..],
            b"bytes=0-1,4-5",
            b"items=0-1",
            b"bytes=a-b",
            b"bytes=-",
            b"bytes=99999999999999999999-",
            b"bytes",
        ] {
            assert_eq!(parse_range(ignored, 10), Ignore, "{ignored:?}");
        }
    }
}
