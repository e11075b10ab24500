//! The `/stats` body: every core's latest published totals and their merge, as JSON.

use hdrhistogram::Histogram;

use super::upstreams::servers_json;
use super::{new_histogram, total_servers, Counters, Percentiles, StatsBoard, TlsFailure};

impl Counters {
    /// As JSON members (no braces).
    pub fn json_members(&self) -> String {
        let c = &self.by_class;
        format!(
            "\"requests\":{},\"status\":{{\"1xx\":{},\"2xx\":{},\"3xx\":{},\"4xx\":{},\"5xx\":{}}},\
             \"bytes_in\":{},\"bytes_out\":{},\"connections\":{{\"accepted\":{},\"closed\":{},\"refused\":{}}},\
             \"protocol_errors\":{},\"loop_parks\":{},\"file_cache_hits\":{},\"handler_panics\":{},\"access_log_dropped\":{}",
            self.requests(),
            c[1],
            c[2],
            c[3],
            c[4],
            c[5],
            self.bytes_in,
            self.bytes_out,
            self.accepted,
            self.closed,
            self.refused,
            self.protocol_errors,
            self.parks,
            self.file_cache_hits,
            self.handler_panics,
            self.access_log_dropped
        ) + &self.tls_json()
            + &format!(
                ",\"upstream\":{{\"requests\":{},\"connects\":{},\"retries\":{},\"failures\":{},\"bytes_in\":{}}}",
                self.upstream_requests,
                self.upstream_connects,
                self.upstream_retries,
                self.upstream_failures,
                self.upstream_bytes_in
            )
            + &format!(
                ",\"websocket\":{{\"open\":{},\"opened\":{},\"messages_in\":{},\"messages_out\":{},\"bytes_in\":{},\"bytes_out\":{},\"published\":{},\"publish_dropped\":{}}}",
                self.websockets_open(),
                self.websocket_opened,
                self.websocket_messages_in,
                self.websocket_messages_out,
                self.websocket_bytes_in,
                self.websocket_bytes_out,
                self.websocket_published,
                self.websocket_publish_dropped
            )
            + &format!(
                ",\"compression\":{{\"coded_responses\":{},\"bytes_saved\":{}}}",
                self.coded_responses, self.coding_bytes_saved
            )
    }

    /// The TLS handshake counts, as a JSON member (with its leading comma).
    fn tls_json(&self) -> String {
        let failed: Vec<String> = TlsFailure::ALL
            .iter()
            .map(|reason| {
                format!(
                    "\"{}\":{}",
                    reason.name(),
                    self.tls_failed[*reason as usize]
                )
            })
            .collect();
        format!(
            ",\"tls\":{{\"handshakes\":{},\"full\":{},\"resumed\":{},\"failed\":{{{}}}}}",
            self.tls_handshakes(),
            self.tls_full,
            self.tls_resumed,
            failed.join(",")
        )
    }
}

/// Renders the `/stats` body: every core's latest published totals and their merge.
pub fn stats_json(board: &StatsBoard, cores: &[usize]) -> String {
    let slots = match board.slots.lock() {
        Ok(slots) => slots.clone(),
        Err(_) => return "{}".into(),
    };
    let mut merged = new_histogram();
    let mut upstream: Option<Histogram<u64>> = None;
    let mut total = Counters::default();
    let mut open = 0;
    let mut parts = Vec::new();
    let labels = &board.servers;
    let servers = total_servers(slots.iter().flatten().map(|s| s.servers.as_slice()));
    for (snapshot, core) in slots.iter().zip(cores) {
        let Some(s) = snapshot else {
            parts.push(format!("{{\"core\":{core},\"started\":false}}"));
            continue;
        };
        let _ = merged.add(&s.latency);
        if let Some(h) = &s.upstream_latency {
            let _ = upstream.get_or_insert_with(new_histogram).add(h);
        }
        total.add(&s.counters);
        open += s.open;
        parts.push(format!(
            "{{\"core\":{core},{},\"open\":{},\"latency_us\":{}{}{}}}",
            s.counters.json_members(),
            s.open,
            Percentiles::of(&s.latency).to_json(),
            upstream_json(s.upstream_latency.as_ref()),
            servers_json(&s.servers, labels)
        ));
    }
    format!(
        "{{\"server\":\"percore\",\"uptime_s\":{:.3},\"cores\":[{}],\"total\":{{{},\"open\":{},\"latency_us\":{}{}{}}}}}\n",
        board.started.elapsed().as_secs_f64(),
        parts.join(","),
        total.json_members(),
        open,
        Percentiles::of(&merged).to_json(),
        upstream_json(upstream.as_ref()),
        servers_json(&servers, labels)
    )
}

/// The upstream latency member (with its leading comma), when there were proxied requests.
fn upstream_json(histogram: Option<&Histogram<u64>>) -> String {
    match histogram {
        Some(h) => format!(",\"upstream_latency_us\":{}", Percentiles::of(h).to_json()),
        None => String::new(),
    }
}
