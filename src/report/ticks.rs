//! Axis ticks as a person writes them, for the plots: how a tick reads (`80k`, `1.5M`,
//! `500 ms`, `1 min 30 s`, `250 µs`, never `80000.0` or `1.0`) and, on a time axis, where
//! the ticks fall (the clock's steps: 1, 2 or 5 × 10^k seconds up to 10 s, then 15 s, 30 s,
//! 1 min, 2 min, 5 min, …). Plotters' own linear ticks already fall at 1, 2 or 5 × 10^k.

use std::ops::Range;

use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;

/// Significant digits a label keeps: ticks at 1, 2 or 5 × 10^k need two at most.
const DIGITS: i32 = 4;

/// How close to a unit's threshold a value counts as reaching it (floating-point noise).
const SLACK: f64 = 1.0 - 1e-9;

/// Tick steps of a clock, seconds, from 1 s to a day; below a second and above a day the
/// steps are 1, 2 or 5 × 10^k (seconds or days).
const CLOCK: [f64; 18] = [
    1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
    10_800.0, 21_600.0, 43_200.0, 86_400.0,
];

/// A plain number with no trailing zeros: `0`, `0.5`, `2.5`, `80`, `1500`.
pub(super) fn decimal_label(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return "0".into();
    }
    let magnitude = value.abs().log10().floor() as i32;
    let decimals = (DIGITS - 1 - magnitude).clamp(0, 12) as usize;
    let text = format!("{value:.decimals$}");
    let text = match text.contains('.') {
        true => text.trim_end_matches('0').trim_end_matches('.'),
        false => &text,
    };
    match text {
        "-0" => "0".into(),
        text => text.into(),
    }
}

/// A count or a rate: `0`, `500`, `80k`, `1.5M`, `2G`.
pub(super) fn count_label(value: f64) -> String {
    in_units(value, &[(1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, "")])
}

/// A time in seconds: `0 s`, `250 µs`, `1.2 ms`, `500 ms`, `1 s`, `2.5 s`, `1 min`,
/// `1 min 30 s`, `2 h`, `1 h 30 min`.
pub(super) fn duration_label(seconds: f64) -> String {
    if seconds == 0.0 {
        return "0 s".into();
    }
    if seconds < 60.0 * SLACK {
        return in_units(seconds, &[(1.0, " s"), (1e-3, " ms"), (1e-6, " µs")]);
    }
    let total = seconds.round() as u64;
    match (total / 3600, total / 60 % 60, total % 60) {
        (0, minutes, 0) => format!("{minutes} min"),
        (0, minutes, seconds) => format!("{minutes} min {seconds} s"),
        (hours, 0, _) => format!("{hours} h"),
        (hours, minutes, _) => format!("{hours} h {minutes} min"),
    }
}

/// A latency in microseconds: `250 µs`, `1.2 ms`, `1 s`.
pub(super) fn latency_label(micros: f64) -> String {
    duration_label(micros / 1e6)
}

/// `value` in the largest of `units` (scale, suffix; largest first) that it reaches, or in
/// the last.
fn in_units(value: f64, units: &[(f64, &str)]) -> String {
    let (scale, suffix) = units
        .iter()
        .copied()
        .find(|&(scale, _)| value.abs() >= scale * SLACK)
        .unwrap_or(units[units.len() - 1]);
    format!("{}{suffix}", decimal_label(value / scale))
}

/// The smallest of 1, 2 or 5 × 10^k that is at least `at_least` (above 0).
fn decimal_step(at_least: f64) -> f64 {
    let power = 10f64.powf(at_least.log10().floor());
    [1.0, 2.0, 5.0]
        .into_iter()
        .map(|m| m * power)
        .find(|&step| step >= at_least * SLACK)
        .unwrap_or(10.0 * power)
}

/// The smallest clock step, seconds, that is at least `at_least` (above 0).
fn clock_step(at_least: f64) -> f64 {
    if at_least <= 1.0 {
        return decimal_step(at_least);
    }
    CLOCK
        .into_iter()
        .find(|&step| step >= at_least * SLACK)
        .unwrap_or_else(|| 86_400.0 * decimal_step(at_least / 86_400.0))
}

/// Ticks of a time axis over `range` (seconds): at most `max`, at the multiples of the
/// smallest clock step that keeps them that few.
pub(super) fn time_ticks(range: Range<f64>, max: usize) -> Vec<f64> {
    let (start, end) = (range.start.min(range.end), range.start.max(range.end));
    let span = end - start;
    if max == 0 || !span.is_finite() {
        return Vec::new();
    }
    if span <= 0.0 {
        return vec![start];
    }
    let step = clock_step(span / max.saturating_sub(1).max(1) as f64);
    let first = (start / step - 1e-9).ceil() as i64;
    let last = (end / step + 1e-9).floor() as i64;
    (first..=last).map(|i| i as f64 * step).take(max).collect()
}

/// A linear time axis, seconds, ticked by [`time_ticks`] and labelled by
/// [`duration_label`].
#[derive(Clone)]
pub(super) struct TimeAxis(RangedCoordf64);

impl TimeAxis {
    /// From 0 to `end` seconds.
    pub(super) fn up_to(end: f64) -> TimeAxis {
        TimeAxis((0.0..end).into())
    }
}

impl Ranged for TimeAxis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.0.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        time_ticks(self.0.range(), hint.max_num_points())
    }

    fn range(&self) -> Range<f64> {
        self.0.range()
    }
}

impl ValueFormatter<f64> for TimeAxis {
    fn format(value: &f64) -> String {
        duration_label(*value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_as_a_person_writes_them() {
        let cases = [
            (0.0, "0"),
            (500.0, "500"),
            (1000.0, "1k"),
            (1500.0, "1.5k"),
            (12_500.0, "12.5k"),
            (80_000.0, "80k"),
            (1_500_000.0, "1.5M"),
            (2e9, "2G"),
            (0.5, "0.5"),
        ];
        for (value, label) in cases {
            assert_eq!(count_label(value), label, "{value}");
        }
    }

    #[test]
    fn plain_numbers_lose_trailing_zeros_and_float_noise() {
        assert_eq!(decimal_label(1.0), "1");
        assert_eq!(decimal_label(2.5), "2.5");
        assert_eq!(decimal_label(0.1 + 0.2), "0.3");
        assert_eq!(decimal_label(0.0005), "0.0005");
        assert_eq!(decimal_label(-0.0), "0");
        assert_eq!(decimal_label(1500.0), "1500");
    }

    #[test]
    fn durations_read_in_the_unit_that_fits() {
        let cases = [
            (0.0, "0 s"),
            (0.5, "500 ms"),
            (1.0, "1 s"),
            (2.5, "2.5 s"),
            (0.1 * 3.0, "300 ms"),
            (45.0, "45 s"),
            (60.0, "1 min"),
            (90.0, "1 min 30 s"),
            (600.0, "10 min"),
            (7200.0, "2 h"),
            (5400.0, "1 h 30 min"),
        ];
        for (seconds, label) in cases {
            assert_eq!(duration_label(seconds), label, "{seconds}");
        }
    }

    #[test]
    fn latencies_read_in_microseconds_or_milliseconds() {
        assert_eq!(latency_label(1.0), "1 µs");
        assert_eq!(latency_label(250.0), "250 µs");
        assert_eq!(latency_label(1000.0), "1 ms");
        assert_eq!(latency_label(1200.0), "1.2 ms");
        assert_eq!(latency_label(10_000.0), "10 ms");
        assert_eq!(latency_label(1_500_000.0), "1.5 s");
    }

    #[test]
    fn time_ticks_fall_on_clock_steps() {
        let labels = |end: f64, max: usize| -> Vec<String> {
            time_ticks(0.0..end, max)
                .into_iter()
                .map(duration_label)
                .collect()
        };
        assert_eq!(
            labels(2.7, 10),
            ["0 s", "500 ms", "1 s", "1.5 s", "2 s", "2.5 s"]
        );
        assert_eq!(
            labels(10.0, 11),
            ["0 s", "1 s", "2 s", "3 s", "4 s", "5 s", "6 s", "7 s", "8 s", "9 s", "10 s"]
        );
        assert_eq!(labels(100.0, 5), ["0 s", "30 s", "1 min", "1 min 30 s"]);
        assert_eq!(
            labels(330.0, 10),
            ["0 s", "1 min", "2 min", "3 min", "4 min", "5 min"]
        );
        for (end, max) in [(0.3, 4), (7.0, 2), (3600.0, 7), (1e6, 10)] {
            let ticks = time_ticks(0.0..end, max);
            assert!(
                !ticks.is_empty() && ticks.len() <= max,
                "{end} {max}: {ticks:?}"
            );
        }
        assert!(time_ticks(0.0..1.0, 0).is_empty());
    }
}
