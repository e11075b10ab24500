//! HTTP dates (RFC 9110 section 5.6.7): parsing the three formats recipients must accept
//! (IMF-fixdate, the obsolete RFC 850 form and C's asctime form), for `If-Modified-Since`
//! and its relatives. Rendering them is `support::civil_time`'s.
//!
//! The `httpdate` crate parses the same three forms, but reads an RFC 850 two-digit year
//! as 19xx or 20xx by a fixed pivot, where RFC 9110 asks for the rolling 50-year rule below.

use crate::support::civil_time::{days_from_civil, days_in_month, month_of, unix_now};

/// Parses an HTTP-date into seconds since the Unix epoch; `None` for anything else.
pub fn parse_http_date(value: &[u8]) -> Option<i64> {
    parse_http_date_at(value, current_year())
}

/// [`parse_http_date`] with the current year given, which decides the century of an
/// RFC 850 date's two-digit year.
fn parse_http_date_at(value: &[u8], this_year: i64) -> Option<i64> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let mut words = text.split_ascii_whitespace();
    let first = words.next()?;
    let (day, month, year, time) = if first.ends_with(',') && first.len() == 4 {
        // Sun, 06 Nov 1994 08:49:37 GMT
        let (day, month, year, time, zone) = (
            words.next()?,
            words.next()?,
            words.next()?,
            words.next()?,
            words.next()?,
        );
        if zone != "GMT" || day.len() != 2 || year.len() != 4 {
            return None;
        }
        (number(day)?, month, number(year)?, time)
    } else if first.ends_with(',') {
        // Sunday, 06-Nov-94 08:49:37 GMT
        let (date, time, zone) = (words.next()?, words.next()?, words.next()?);
        let mut parts = date.split('-');
        let (day, month, year) = (parts.next()?, parts.next()?, parts.next()?);
        if zone != "GMT" || parts.next().is_some() || day.len() != 2 || year.len() != 2 {
            return None;
        }
        // RFC 9110 section 5.6.7: a two-digit year that would be more than 50 years in the
        // future is the most recent past year with those digits.
        let mut year = this_year - this_year.rem_euclid(100) + number(year)?;
        if year > this_year + 50 {
            year -= 100;
        }
        (number(day)?, month, year, time)
    } else {
        // Sun Nov  6 08:49:37 1994
        let (month, day, time, year) = (words.next()?, words.next()?, words.next()?, words.next()?);
        if year.len() != 4 || day.is_empty() || day.len() > 2 {
            return None;
        }
        (number(day)?, month, number(year)?, time)
    };
    if words.next().is_some() {
        return None;
    }
    let month = month_of(month)?;
    let mut clock = time.split(':');
    let mut field = |max: i64| -> Option<i64> {
        let part = clock.next()?;
        let value = number(part)?;
        (part.len() == 2 && value <= max).then_some(value)
    };
    let (hour, minute, second) = (field(23)?, field(59)?, field(60)?);
    if clock.next().is_some() || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// A run of ASCII digits (no sign, no spaces) as a number.
fn number(digits: &str) -> Option<i64> {
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn current_year() -> i64 {
    // Good to a day either side of New Year, which is all the 50-year rule needs.
    1970 + unix_now() / 31_556_952
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::civil_time::imf_fixdate;

    #[test]
    fn all_three_formats_parse_to_the_same_instant() {
        for text in [
            &b"Sun, 06 Nov 1994 08:49:37 GMT"[..],
            b"Sunday, 06-Nov-94 08:49:37 GMT",
            b"Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(parse_http_date(text), Some(784_111_777), "{text:?}");
        }
        for seconds in [0, 951_782_400, 1_709_210_096, 4_102_444_799] {
            assert_eq!(parse_http_date(&imf_fixdate(seconds)), Some(seconds));
        }
    }

    #[test]
    fn two_digit_years_are_at_most_50_years_ahead() {
        let y2k = 946_684_800; // Sat, 01 Jan 2000
        assert_eq!(
            parse_http_date_at(b"Saturday, 01-Jan-00 00:00:00 GMT", 2026),
            Some(y2k)
        );
        // In 2026, "76" is 2076, exactly 50 years ahead; "77" would be 51, so it is 1977.
        assert_eq!(
            parse_http_date_at(b"Thursday, 01-Jan-76 00:00:00 GMT", 2026),
            Some(3_345_062_400)
        );
        assert_eq!(
            parse_http_date_at(b"Saturday, 01-Jan-77 00:00:00 GMT", 2026),
            Some(220_924_800)
        );
        // In 2030, "75" is 2075.
        assert!(parse_http_date_at(b"Tuesday, 01-Jan-75 00:00:00 GMT", 2030).unwrap() > y2k);
    }

    #[test]
    fn malformed_dates_are_none() {
        for text in [
            &b""[..],
            b"yesterday",
            b"Sun, 06 Nov 1994 08:49:37 UTC",
            b"Sun, 06 Foo 1994 08:49:37 GMT",
            b"Sun, 06 Nov 1994 25:49:37 GMT",
            b"Sun, 6 Nov 1994 08:49:37 GMT",
            b"Sun, 06 Nov 1994 08:49:37 GMT extra",
            b"Sat, 31 Feb 2024 00:00:00 GMT",
            b"Mon, 29 Feb 2100 00:00:00 GMT",
            b"Sun, +6 Nov 1994 08:49:37 GMT",
            b"Sun, 06 Nov 1994 +8:49:37 GMT",
        ] {
            assert_eq!(parse_http_date(text), None, "{text:?}");
        }
    }
}
