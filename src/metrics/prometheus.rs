//! The `/metrics` body: Prometheus' text exposition format (0.0.4) of every core's latest
//! published totals, each sample labelled with its `core`.

use super::upstreams::servers_prometheus;
use super::{ServerCounts, Snapshot, StatsBoard, TlsFailure};

/// Upper bounds of the request latency histogram's buckets, in seconds: 1 µs to 10 s.
pub const LATENCY_BUCKETS_S: [f64; 22] = [
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Renders the Prometheus text exposition (format 0.0.4) of every core's latest published
/// totals, each sample labelled with its `core`.
pub fn prometheus_text(board: &StatsBoard, cores: &[usize]) -> String {
    use std::fmt::Write as _;
    let slots = match board.slots.lock() {
        Ok(slots) => slots.clone(),
        Err(_) => Vec::new(),
    };
    let published: Vec<(usize, Snapshot)> = slots
        .into_iter()
        .zip(cores)
        .filter_map(|(slot, &core)| slot.map(|s| (core, s)))
        .collect();
    let mut out = String::with_capacity(4096 + published.len() * 2048);
    let family =
        |out: &mut String, name: &str, kind: &str, help: &str, value: &dyn Fn(&Snapshot) -> u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (core, s) in &published {
                let _ = writeln!(out, "{name}{{core=\"{core}\"}} {}", value(s));
            }
        };
    family(
        &mut out,
        "percore_requests_total",
        "counter",
        "Final responses sent.",
        &|s| s.counters.requests(),
    );
    let _ = writeln!(
        out,
        "# HELP percore_responses_total Final responses by status class.\n# TYPE percore_responses_total counter"
    );
    for (core, s) in &published {
        for class in 1..=5 {
            let _ = writeln!(
                out,
                "percore_responses_total{{core=\"{core}\",class=\"{class}xx\"}} {}",
                s.counters.by_class[class]
            );
        }
    }
    family(
        &mut out,
        "percore_received_bytes_total",
        "counter",
        "Bytes read from clients.",
        &|s| s.counters.bytes_in,
    );
    family(
        &mut out,
        "percore_sent_bytes_total",
        "counter",
        "Bytes written to clients.",
        &|s| s.counters.bytes_out,
    );
    family(
        &mut out,
        "percore_connections_accepted_total",
        "counter",
        "Connections accepted.",
        &|s| s.counters.accepted,
    );
    family(
        &mut out,
        "percore_connections_closed_total",
        "counter",
        "Connections closed.",
        &|s| s.counters.closed,
    );
    family(
        &mut out,
        "percore_connections_refused_total",
        "counter",
        "Connections refused at server.max_connections_per_core.",
        &|s| s.counters.refused,
    );
    family(
        &mut out,
        "percore_connections_open",
        "gauge",
        "Connections open.",
        &|s| s.open as u64,
    );
    family(
        &mut out,
        "percore_protocol_errors_total",
        "counter",
        "Requests refused for a protocol error.",
        &|s| s.counters.protocol_errors,
    );
    for (name, help, get) in [
        (
            "percore_upstream_requests_total",
            "Requests sent to upstream servers (retries included).",
            (|s: &Snapshot| s.counters.upstream_requests) as fn(&Snapshot) -> u64,
        ),
        (
            "percore_upstream_connects_total",
            "Connections opened to upstream servers (the others were reused).",
            |s: &Snapshot| s.counters.upstream_connects,
        ),
        (
            "percore_upstream_retries_total",
            "Requests sent again after their upstream connection failed.",
            |s: &Snapshot| s.counters.upstream_retries,
        ),
        (
            "percore_upstream_failures_total",
            "Proxied requests answered 502 or 504, or cut short, by percore.",
            |s: &Snapshot| s.counters.upstream_failures,
        ),
    ] {
        family(&mut out, name, "counter", help, &get);
    }
    family(
        &mut out,
        "percore_websocket_open",
        "gauge",
        "WebSocket connections open now.",
        &|s| s.counters.websockets_open(),
    );
    for (name, help, get) in [
        (
            "percore_websocket_opened_total",
            "WebSocket connections opened (handshakes accepted).",
            (|s: &Snapshot| s.counters.websocket_opened) as fn(&Snapshot) -> u64,
        ),
        (
            "percore_websocket_messages_in_total",
            "WebSocket messages received from clients.",
            |s: &Snapshot| s.counters.websocket_messages_in,
        ),
        (
            "percore_websocket_messages_out_total",
            "WebSocket messages sent to clients.",
            |s: &Snapshot| s.counters.websocket_messages_out,
        ),
        (
            "percore_websocket_bytes_in_total",
            "Payload bytes of the WebSocket messages received (inflated).",
            |s: &Snapshot| s.counters.websocket_bytes_in,
        ),
        (
            "percore_websocket_bytes_out_total",
            "Payload bytes of the WebSocket messages sent (before compression).",
            |s: &Snapshot| s.counters.websocket_bytes_out,
        ),
        (
            "percore_websocket_published_total",
            "Messages published to WebSocket groups by this core's handlers.",
            |s: &Snapshot| s.counters.websocket_published,
        ),
        (
            "percore_websocket_publish_dropped_total",
            "Group messages not delivered (a member's queue full, or a core's backlog).",
            |s: &Snapshot| s.counters.websocket_publish_dropped,
        ),
        (
            "percore_coded_responses_total",
            "Responses whose body went out in a content coding (gzip, br, zstd).",
            |s: &Snapshot| s.counters.coded_responses,
        ),
        (
            "percore_coding_saved_bytes_total",
            "Body bytes content codings saved over the identity bodies.",
            |s: &Snapshot| s.counters.coding_bytes_saved,
        ),
    ] {
        family(&mut out, name, "counter", help, &get);
    }
    family(
        &mut out,
        "percore_handler_panics_total",
        "counter",
        "Requests whose handler panicked (answered 500).",
        &|s| s.counters.handler_panics,
    );
    let _ = writeln!(
        out,
        "# HELP percore_tls_handshakes_total TLS handshakes completed, full or resumed.\n# TYPE percore_tls_handshakes_total counter"
    );
    for (core, s) in &published {
        for (kind, n) in [
            ("full", s.counters.tls_full),
            ("resumed", s.counters.tls_resumed),
        ] {
            let _ = writeln!(
                out,
                "percore_tls_handshakes_total{{core=\"{core}\",kind=\"{kind}\"}} {n}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP percore_tls_handshake_failures_total TLS handshakes that failed, by reason.\n# TYPE percore_tls_handshake_failures_total counter"
    );
    for (core, s) in &published {
        for reason in TlsFailure::ALL {
            let n = s.counters.tls_failed[reason as usize];
            let reason = reason.name();
            let _ = writeln!(
                out,
                "percore_tls_handshake_failures_total{{core=\"{core}\",reason=\"{reason}\"}} {n}"
            );
        }
    }
    let servers: Vec<(usize, &[ServerCounts])> = published
        .iter()
        .map(|(core, s)| (*core, s.servers.as_slice()))
        .collect();
    servers_prometheus(&mut out, &servers, &board.servers);
    for (name, help, upstream) in [
        (
            "percore_request_duration_seconds",
            "Time from reading a request to queueing its response.",
            false,
        ),
        (
            "percore_upstream_duration_seconds",
            "Time from a proxied request going out to its response head coming back.",
            true,
        ),
    ] {
        if upstream && published.iter().all(|(_, s)| s.upstream_latency.is_none()) {
            // No proxied request yet (or no proxy at all): no such family.
            continue;
        }
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (core, s) in &published {
            let h = match upstream {
                false => &s.latency,
                true => match &s.upstream_latency {
                    Some(h) => h,
                    None => continue,
                },
            };
            histogram_lines(&mut out, name, *core, h);
        }
    }
    out
}

/// One core's histogram `name` in Prometheus' lines: cumulative buckets, sum and count.
fn histogram_lines(out: &mut String, name: &str, core: usize, h: &hdrhistogram::Histogram<u64>) {
    use std::fmt::Write as _;
    for le in LATENCY_BUCKETS_S {
        let micros = (le * 1e6).round() as u64;
        let count = if h.is_empty() {
            0
        } else {
            h.count_between(0, micros)
        };
        let _ = writeln!(out, "{name}_bucket{{core=\"{core}\",le=\"{le}\"}} {count}");
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{core=\"{core}\",le=\"+Inf\"}} {}",
        h.len()
    );
    let sum = h.mean() * h.len() as f64 / 1e6;
    let _ = writeln!(out, "{name}_sum{{core=\"{core}\"}} {sum}");
    let _ = writeln!(out, "{name}_count{{core=\"{core}\"}} {}", h.len());
}
