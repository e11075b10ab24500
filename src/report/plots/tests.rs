//! The plots' own tests: pictures drawn from made-up intervals, read back as SVG.

use super::*;

#[test]
fn percentile_axis_labels() {
    assert_eq!(percentile_label(2.0), "50%");
    assert_eq!(percentile_label(10.0), "90%");
    assert_eq!(percentile_label(1000.0), "99.9%");
    assert_eq!(percentile_label(100_000.0), "99.999%");
}

/// One core's second: `rate` requests, a tenth at 2 ms, one at 9 ms, the rest at 150 µs.
fn second(core: usize, start: f64, rate: u64) -> Interval {
    let mut latency = new_histogram();
    latency.record_n(150, rate - rate / 10 - 1).unwrap();
    latency.record_n(2000, rate / 10).unwrap();
    latency.record(9000).unwrap();
    Interval {
        core,
        start,
        duration: 1.0,
        latency,
        upstream: false,
    }
}

/// The texts of an SVG document, trimmed, in document order.
fn svg_texts<'a>(doc: &'a roxmltree::Document<'a>) -> Vec<&'a str> {
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text().map(str::trim))
        .collect()
}

#[test]
fn timeline_reads_as_written_and_strokes_each_latency_its_own_way() {
    // Two cores at 40k requests per second each for ten seconds: 80k in all.
    let intervals: Vec<Interval> = (0..10)
        .flat_map(|s| [second(0, s as f64, 40_000), second(1, s as f64, 40_000)])
        .collect();
    let svg = timeline_svg(&intervals).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let texts = svg_texts(&doc);
    for label in [
        "0", "40k", "80k", "0 s", "4 s", "10 s", "100 µs", "1 ms", "10 ms",
    ] {
        assert!(texts.contains(&label), "no {label:?} in {texts:?}");
    }
    for text in &texts {
        let number = text.split(' ').next().unwrap();
        assert!(
            !number.ends_with(".0") && number.parse::<f64>().map_or(true, |n| n < 1000.0),
            "{text:?} is not how a person writes it"
        );
    }

    // Core 0's lines, each drawn (ten points) and in its legend (two): requests per
    // second thin; latency p50 solid, p99 dashed, max dotted and thinner.
    let core_0 = {
        let RGBColor(r, g, b) = color(0);
        format!("#{r:02X}{g:02X}{b:02X}")
    };
    let mut strokes: Vec<(Option<&str>, &str, bool)> = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke") == Some(&core_0))
        .map(|n| {
            assert_eq!(n.attribute("opacity"), Some("1"));
            let points = n.attribute("points").unwrap().split_whitespace().count();
            let width = n.attribute("stroke-width").unwrap();
            (n.attribute("stroke-dasharray"), width, points == 2)
        })
        .collect();
    strokes.sort_unstable();
    strokes.dedup();
    let mut wanted = Vec::new();
    for (dash, width) in [
        (None, "1"),
        (None, "2"),
        (Some("2 3"), "1"),
        (Some("6 3"), "2"),
    ] {
        wanted.extend([(dash, width, false), (dash, width, true)]);
    }
    assert_eq!(strokes, wanted);
    assert!(
        !svg.contains("0.999") && !svg.contains("0.998"),
        "a marker is left"
    );
}

#[test]
fn hgrm_rows_are_read_until_the_footer() {
    let text = "       Value     Percentile TotalCount 1/(1-Percentile)\n\n       0.005 0.000000000000          1           1.00\n       0.010 0.500000000000          5           2.00\n       0.020 1.000000000000         10\n#[Mean    =        0.010, StdDeviation   =        0.004]\n";
    assert_eq!(
        read_hgrm(text),
        vec![(0.0, 0.005), (0.5, 0.010), (1.0, 0.020)]
    );
}

#[test]
fn the_upstream_latency_is_a_series_of_its_own() {
    let mut intervals: Vec<Interval> = (0..5).map(|s| second(0, s as f64, 1000)).collect();
    let without = timeline_svg(&intervals).unwrap();
    assert!(!without.contains("upstream p99"));
    intervals.extend((0..5).map(|s| Interval {
        upstream: true,
        ..second(0, s as f64, 990)
    }));
    let svg = timeline_svg(&intervals).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let texts = svg_texts(&doc);
    for label in ["upstream p50", "upstream p99", "upstream max", "all p99"] {
        assert!(texts.contains(&label), "no {label:?} in {texts:?}");
    }
    // Its intervals are not counted as requests.
    let rates = texts.iter().filter(|t| t.ends_with('k')).count();
    assert!(rates > 0 && !texts.contains(&"2k"), "{texts:?}");
}
