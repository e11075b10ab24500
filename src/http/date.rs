//! HTTP dates (RFC 9110 section 5.6.7): rendering the IMF-fixdate servers send, and parsing
//! the three formats recipients must accept (IMF-fixdate, the obsolete RFC 850 form and C's
//! asctime form), for `If-Modified-Since` and its relatives.

/// Renders seconds since the Unix epoch as an IMF-fixdate (RFC 9110 section 5.6.7).
pub fn format_imf_fixdate(unix_seconds: i64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = unix_seconds.div_euclid(86_400);
    let secs = unix_seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_unix(unix_seconds);

    let mut text = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    text[..3].copy_from_slice(DAYS[days.rem_euclid(7) as usize]);
    let two = |text: &mut [u8; 29], at: usize, v: i64| {
        text[at] = b'0' + (v / 10) as u8;
        text[at + 1] = b'0' + (v % 10) as u8;
    };
    two(&mut text, 5, day);
    text[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    two(&mut text, 12, year / 100 % 100);
    two(&mut text, 14, year % 100);
    two(&mut text, 17, secs / 3600);
    two(&mut text, 20, secs / 60 % 60);
    two(&mut text, 23, secs % 60);
    text
}

/// The (year, month 1–12, day 1–31) of a Unix time, in the proleptic Gregorian calendar
/// (Howard Hinnant's civil-from-days).
pub fn civil_from_unix(unix_seconds: i64) -> (i64, i64, i64) {
    let z = unix_seconds.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

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
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|&m| m == month)? as i64 + 1;
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

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn current_year() -> i64 {
    // Good to a day either side of New Year, which is all the 50-year rule needs.
    1970 + unix_now() / 31_556_952
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imf_fixdate_matches_known_instants() {
        assert_eq!(&format_imf_fixdate(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            &format_imf_fixdate(784_111_777),
            b"Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(
            &format_imf_fixdate(1_709_210_096),
            b"Thu, 29 Feb 2024 12:34:56 GMT"
        );
    }

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
            assert_eq!(parse_http_date(&format_imf_fixdate(seconds)), Some(seconds));
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
