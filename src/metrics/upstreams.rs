//! What each upstream server did for a core: requests sent to it, its responses by status
//! class, connections opened to it and reused, its failures, the requests sent again after
//! one, and the times its failures took it out of the rotation. A core keeps one entry per
//! server of its `[[upstream]]`s, in configuration order (the board keeps their names).

use crate::config::Config;

/// One upstream server's counts on one core.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerCounts {
    /// Requests sent to it (each try).
    pub requests: u64,
    /// Its response heads by status class (index 1 for 1xx … 5 for 5xx).
    pub responses: [u64; 6],
    /// Connections opened to it.
    pub connects: u64,
    /// Requests sent on one of its pooled connections.
    pub reused: u64,
    /// Failures: connects refused or failed, timeouts.
    pub failures: u64,
    /// Requests sent again (to it or another) after it failed them.
    pub retries: u64,
    /// Times its failures took it out of the rotation (`max_fails`).
    pub marked_down: u64,
}

impl ServerCounts {
    /// Adds `other`'s counts (another core's, for a total).
    pub fn add(&mut self, other: &ServerCounts) {
        self.requests += other.requests;
        for (total, n) in self.responses.iter_mut().zip(other.responses) {
            *total += n;
        }
        self.connects += other.connects;
        self.reused += other.reused;
        self.failures += other.failures;
        self.retries += other.retries;
        self.marked_down += other.marked_down;
    }
}

/// Each server entry's names: its upstream's and its own as the configuration writes it.
pub fn server_labels(config: &Config) -> Vec<(String, String)> {
    config
        .upstream
        .iter()
        .flat_map(|u| u.servers.iter().map(|s| (u.name.clone(), s.clone())))
        .collect()
}

/// Adds every core's entries (`cores`) into one list of totals.
pub fn total_servers<'a>(cores: impl Iterator<Item = &'a [ServerCounts]>) -> Vec<ServerCounts> {
    let mut total: Vec<ServerCounts> = Vec::new();
    for counts in cores {
        if total.len() < counts.len() {
            total.resize(counts.len(), ServerCounts::default());
        }
        for (t, c) in total.iter_mut().zip(counts) {
            t.add(c);
        }
    }
    total
}

/// The servers' counts as a JSON member (with its leading comma), named by `labels`; none
/// without upstream servers.
pub(super) fn servers_json(counts: &[ServerCounts], labels: &[(String, String)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let entries: Vec<String> = labels
        .iter()
        .enumerate()
        .map(|(i, (upstream, server))| {
            let c = counts.get(i).copied().unwrap_or_default();
            let r = &c.responses;
            format!(
                "{{\"upstream\":{},\"server\":{},\"requests\":{},\"responses\":{{\"1xx\":{},\"2xx\":{},\
                 \"3xx\":{},\"4xx\":{},\"5xx\":{}}},\"connects\":{},\"reused\":{},\"failures\":{},\
                 \"retries\":{},\"marked_down\":{}}}",
                json_text(upstream),
                json_text(server),
                c.requests,
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                c.connects,
                c.reused,
                c.failures,
                c.retries,
                c.marked_down
            )
        })
        .collect();
    format!(",\"upstream_servers\":[{}]", entries.join(","))
}

/// `text` as a JSON string.
fn json_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `text` as a Prometheus label value.
fn label_text(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Reads one count of a server's.
type Count = fn(&ServerCounts) -> u64;

/// The servers' counts as Prometheus families, one series per core and server: each
/// `(core, counts)` of `published`, named by `labels`.
pub(super) fn servers_prometheus(
    out: &mut String,
    published: &[(usize, &[ServerCounts])],
    labels: &[(String, String)],
) {
    use std::fmt::Write as _;
    if labels.is_empty() {
        return;
    }
    let families: [(&str, &str, Count); 6] = [
        ("requests", "Requests sent to the server (each try).", |c| {
            c.requests
        }),
        ("connects", "Connections opened to the server.", |c| {
            c.connects
        }),
        (
            "reused",
            "Requests sent on a pooled connection to the server.",
            |c| c.reused,
        ),
        (
            "failures",
            "Connects refused or failed, and timeouts, of the server.",
            |c| c.failures,
        ),
        (
            "retries",
            "Requests sent again after the server failed them.",
            |c| c.retries,
        ),
        (
            "marked_down",
            "Times the server's failures took it out of the rotation.",
            |c| c.marked_down,
        ),
    ];
    let series =
        |out: &mut String, name: &str, extra: &str, value: &dyn Fn(&ServerCounts) -> u64| {
            for (core, counts) in published {
                for (i, (upstream, server)) in labels.iter().enumerate() {
                    let c = counts.get(i).copied().unwrap_or_default();
                    let _ = writeln!(
                        out,
                        "{name}{{core=\"{core}\",upstream=\"{}\",server=\"{}\"{extra}}} {}",
                        label_text(upstream),
                        label_text(server),
                        value(&c)
                    );
                }
            }
        };
    for (what, help, value) in families {
        let name = format!("percore_upstream_server_{what}_total");
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        series(out, &name, "", &value);
    }
    let name = "percore_upstream_server_responses_total";
    let _ = writeln!(
        out,
        "# HELP {name} The server's response heads by status class.\n# TYPE {name} counter"
    );
    for class in 1..=5 {
        let extra = format!(",class=\"{class}xx\"");
        series(out, name, &extra, &|c| c.responses[class]);
    }
}
