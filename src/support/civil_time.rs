//! Calendar arithmetic on Unix time, and the three ways percore writes a moment: the
//! IMF-fixdate of HTTP (`Date`, `Last-Modified`), ISO 8601 (error lines, JSON access log)
//! and the common log format's (`combined` access log).
//!
//! Everything renders into fixed-size arrays, so a caller on the request path allocates
//! nothing. Parsing HTTP dates is the protocol's business (`http::date`).

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// English month abbreviations, as HTTP dates and the common log format write them.
pub(crate) fn month_abbreviation(month: i64) -> &'static [u8; 3] {
    MONTHS[(month - 1) as usize]
}

/// The month (1–12) an English abbreviation names.
pub(crate) fn month_of(abbreviation: &str) -> Option<i64> {
    MONTHS
        .iter()
        .position(|m| *m == abbreviation.as_bytes())
        .map(|i| i as i64 + 1)
}

/// Seconds since the Unix epoch, now.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The (year, month 1–12, day 1–31) of a Unix time, in the proleptic Gregorian calendar
/// (Howard Hinnant's civil-from-days).
pub(crate) fn civil_from_unix(unix_seconds: i64) -> (i64, i64, i64) {
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

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days-from-civil).
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days in `month` (1–12) of `year`.
pub(crate) fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Writes `value` as `N` decimal digits (zero-padded, higher digits dropped) at `at`.
fn digits<const N: usize>(text: &mut [u8], at: usize, mut value: i64) {
    for i in (0..N).rev() {
        text[at + i] = b'0' + value.rem_euclid(10) as u8;
        value /= 10;
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 section 5.6.7).
pub(crate) fn imf_fixdate(unix_seconds: i64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    let (year, month, day) = civil_from_unix(unix_seconds);
    let secs = unix_seconds.rem_euclid(86_400);
    let mut text = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    text[..3].copy_from_slice(DAYS[unix_seconds.div_euclid(86_400).rem_euclid(7) as usize]);
    digits::<2>(&mut text, 5, day);
    text[8..11].copy_from_slice(month_abbreviation(month));
    digits::<4>(&mut text, 12, year);
    digits::<2>(&mut text, 17, secs / 3600);
    digits::<2>(&mut text, 20, secs / 60 % 60);
    digits::<2>(&mut text, 23, secs % 60);
    text
}

/// `2000-10-10T13:55:36Z`.
pub(crate) fn iso8601(unix_seconds: i64) -> [u8; 20] {
    let (year, month, day) = civil_from_unix(unix_seconds);
    let secs = unix_seconds.rem_euclid(86_400);
    let mut text = *b"1970-01-01T00:00:00Z";
    digits::<4>(&mut text, 0, year);
    digits::<2>(&mut text, 5, month);
    digits::<2>(&mut text, 8, day);
    digits::<2>(&mut text, 11, secs / 3600);
    digits::<2>(&mut text, 14, secs / 60 % 60);
    digits::<2>(&mut text, 17, secs % 60);
    text
}

/// `10/Oct/2000:13:55:36 +0000`, the common log format's time.
pub(crate) fn common_log(unix_seconds: i64) -> [u8; 26] {
    let (year, month, day) = civil_from_unix(unix_seconds);
    let secs = unix_seconds.rem_euclid(86_400);
    let mut text = *b"01/Jan/1970:00:00:00 +0000";
    digits::<2>(&mut text, 0, day);
    text[3..6].copy_from_slice(month_abbreviation(month));
    digits::<4>(&mut text, 7, year);
    digits::<2>(&mut text, 12, secs / 3600);
    digits::<2>(&mut text, 15, secs / 60 % 60);
    digits::<2>(&mut text, 18, secs % 60);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_formats_render_known_instants() {
        assert_eq!(&imf_fixdate(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&imf_fixdate(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(
            &imf_fixdate(1_709_210_096),
            b"Thu, 29 Feb 2024 12:34:56 GMT"
        );
        assert_eq!(&iso8601(971_186_136), b"2000-10-10T13:55:36Z");
        assert_eq!(&common_log(971_186_136), b"10/Oct/2000:13:55:36 +0000");
    }

    #[test]
    fn civil_dates_round_trip() {
        for seconds in [0, 951_782_400, 1_709_210_096, 4_102_444_799, -86_400] {
            let (y, m, d) = civil_from_unix(seconds);
            assert_eq!(days_from_civil(y, m, d), seconds.div_euclid(86_400));
        }
        assert_eq!(month_of("Oct"), Some(10));
        assert_eq!(month_of("oct"), None);
    }
}
