//! Proxy routes: requests whose path starts with a `[[proxy]]` prefix (or one given to
//! [`App::proxy`](super::App::proxy), or `--proxy`) go to an upstream. The longest
//! matching prefix wins, as nginx's prefix locations do, and a proxy route answers before
//! the app's own routes and static files; the built-in `/stats`, `/metrics` and `/healthz`
//! stay percore's.

use std::net::IpAddr;

use crate::config::Config;
use crate::engine::{ForwardBody, Peer, ProxyCall};
use crate::http::forward::{upgrade_asked, write_forwarded, Forwarding};
use crate::http::request::{Framing, Method, RawRequest};

/// One prefix and where it goes.
struct ProxyRoute {
    prefix: String,
    /// The upstream's place in `config.upstream`.
    upstream: usize,
    strip: bool,
    /// Send RFC 7239's `Forwarded` too.
    forwarded: bool,
}

/// A core's proxy routes (the same on every core).
pub(crate) struct ProxyRoutes {
    /// Longest prefix first.
    routes: Vec<ProxyRoute>,
    /// Paths that stay percore's own.
    reserved: Vec<String>,
    /// Each upstream's `host`, sent in place of the client's.
    hosts: Vec<Option<String>>,
}

impl ProxyRoutes {
    /// The routes of `config.proxy`, then `extra` (`(prefix, upstream, strip_prefix)`, from
    /// [`App::proxy`](super::App::proxy)). An error names an upstream that does not exist.
    pub(crate) fn new(config: &Config, extra: &[(String, String, bool)]) -> Result<Self, String> {
        let index = |name: &str| {
            config
                .upstream
                .iter()
                .position(|u| u.name == name)
                .ok_or_else(|| {
                    format!("a proxy route names upstream {name:?}, which no [[upstream]] defines")
                })
        };
        let mut routes = Vec::new();
        for proxy in &config.proxy {
            routes.push(ProxyRoute {
                prefix: proxy.path.clone(),
                upstream: index(&proxy.upstream)?,
                strip: proxy.strip_prefix,
                forwarded: proxy.forwarded,
            });
        }
        for (prefix, upstream, strip) in extra {
            if !prefix.starts_with('/') {
                return Err(format!("proxy prefix {prefix:?} must start with /"));
            }
            routes.push(ProxyRoute {
                prefix: prefix.clone(),
                upstream: index(upstream)?,
                strip: *strip,
                forwarded: false,
            });
        }
        // Longest first; among equal prefixes the first given wins (a stable sort).
        routes.sort_by_key(|route| std::cmp::Reverse(route.prefix.len()));
        let report = &config.report;
        let reserved = [
            &report.stats_path,
            &report.metrics_path,
            &report.health_path,
        ]
        .into_iter()
        .filter(|path| !path.is_empty())
        .cloned()
        .collect();
        let hosts = config.upstream.iter().map(|u| u.host.clone()).collect();
        Ok(ProxyRoutes {
            routes,
            reserved,
            hosts,
        })
    }

    fn find(&self, path: &[u8]) -> Option<&ProxyRoute> {
        if self.reserved.iter().any(|r| r.as_bytes() == path) {
            return None;
        }
        self.routes
            .iter()
            .find(|route| path.starts_with(route.prefix.as_bytes()))
    }

    /// Whether a proxy route takes `request` and its call may go upstream behind an earlier
    /// one on the same connection: a `GET` or `HEAD` (sending it again after a failure does
    /// no harm), with no body, asking for no upgrade.
    pub(crate) fn queues(&self, request: &RawRequest<'_>) -> bool {
        matches!(request.head.method, Method::Get | Method::Head)
            && request.body.is_empty()
            && upgrade_asked(request).is_none()
            && self.takes(request)
    }

    /// Whether a proxy route takes `request`.
    pub(crate) fn takes(&self, request: &RawRequest<'_>) -> bool {
        !self.routes.is_empty() && self.find(request.path()).is_some()
    }

    /// The call to an upstream that answers `request` from `peer`, if a proxy route takes
    /// it.
    /// A request whose body follows as it arrives (`RawRequest::streamed`) is forwarded at
    /// its head, the body to follow.
    pub(crate) fn call(&self, request: &RawRequest<'_>, peer: &Peer<'_>) -> Option<ProxyCall> {
        if self.routes.is_empty() {
            return None;
        }
        let route = self.find(request.path())?;
        let strip = match route.strip {
            // Keep the slash that starts the rest: `/api/x` under `/api/` is `/x`.
            true => route.prefix.len() - usize::from(route.prefix.ends_with('/')),
            false => 0,
        };
        let streamed = request.streamed;
        let client: Option<IpAddr> = peer.addr().map(|addr| addr.ip());
        let how = Forwarding {
            strip,
            client,
            proto: if peer.tls.is_some() { "https" } else { "http" },
            host: self.hosts[route.upstream].as_deref(),
            upgrade: upgrade_asked(request),
            forwarded: route.forwarded,
            streamed,
        };
        let mut bytes = Vec::with_capacity(request.bytes.len() + request.body.len() + 128);
        write_forwarded(request, &how, &mut bytes);
        let method = request.head.method;
        let chunked = matches!(request.head.framing, Framing::Chunked);
        Some(ProxyCall {
            body: match (streamed, chunked) {
                (false, _) => ForwardBody::Whole,
                (true, false) => ForwardBody::Length,
                (true, true) => ForwardBody::Chunked,
            },
            upgrade: how.upgrade.is_some(),
            upstream: route.upstream,
            request: bytes,
            head_request: method == Method::Head,
            idempotent: matches!(
                method,
                Method::Get | Method::Head | Method::Options | Method::Put | Method::Delete
            ),
        })
    }
}
