//! The layers below the public API, for percore's own tests, benches and fuzz targets.
//!
//! Not part of the API: nothing here is stable, and a program on the library should not use
//! it. It holds no function whose safety rests on a caller's care: the engine's ring and
//! loop are not here at all.
//!
//! - the protocol: [`Session`] (one connection's exchange without sockets), [`parse_head`],
//!   [`ChunkedDecoder`], the PROXY protocol header ([`parse_proxy_header`]), WebSocket's
//!   frames read into messages ([`WebSocketDecoder`]);
//! - [`session_service`]: an [`App`]'s service as the engine drives it, for a [`Session`]
//!   without sockets (no peer address, no access log);
//! - the route table ([`Router`]) and percent-decoding as the router's parameters see it;
//! - [`usable_cores`] and [`format_cores`], for tests that pick cores;
//! - [`TlsServer`]: one connection's TLS as the engine runs it, without sockets;
//! - [`SessionTickets`]: one core's session tickets, sealed and opened as rustls asks.

use std::sync::Arc;
use std::time::Instant;

pub use crate::config::cores::{format_cores, usable_cores};
pub use crate::engine::DeferredAnswer;
pub use crate::http::chunked::ChunkedDecoder;
pub use crate::http::error::HttpError;
pub use crate::http::request::{parse_head, Framing, Limits, Method, RawRequest, RequestHead};
pub use crate::http::response::{ResponseWriter, CONTINUE};
pub use crate::http::session::{Progress, Service, Session};
pub use crate::http::websocket::decoder::{
    Decoder as WebSocketDecoder, Failure as WebSocketFailure, Incoming as WebSocketIncoming,
};
pub use crate::proxy_protocol::{parse as parse_proxy_header, Header as ProxyHeader};

use crate::app::service::AppService;
use crate::engine::{Exchange, Peer};
use crate::metrics::StatsBoard;
use crate::{App, BoxError, Config};

/// An app's service for a [`Session`] without sockets: what the engine would ask, with no
/// peer address and no access log.
pub struct SessionService<S: 'static> {
    service: AppService<S>,
}

/// The service `app` would run on its first core under `config` (its state made for core 0,
/// its static root opened, the built-in routes added).
pub fn session_service<S: 'static>(
    app: App<S>,
    config: &Config,
) -> Result<SessionService<S>, BoxError> {
    use crate::server::{CoreSetup, ServiceFactory};
    let factory = crate::app::factory::AppFactory(Arc::new(app));
    let prepared = factory.prepare(config, &StatsBoard::new(1), &[0])?;
    let door = crate::engine::Outbound::new(config);
    let hub = crate::engine::Hub::new();
    let setup = CoreSetup {
        cpu: 0,
        index: 0,
        config,
        https_redirect: None,
        door: &door,
        hub: &hub,
    };
    let service = crate::app::factory::AppFactory::make(&prepared, &setup)?;
    Ok(SessionService { service })
}

impl<S: 'static> Service for SessionService<S> {
    type Deferred = DeferredAnswer;

    fn wants_body(&mut self, request: &RawRequest<'_>) -> bool {
        crate::engine::Application::wants_body(&mut self.service, request)
    }

    fn call(
        &mut self,
        request: &RawRequest<'_>,
        response: &mut ResponseWriter,
    ) -> Option<DeferredAnswer> {
        let mut exchange = Exchange {
            app: &mut self.service,
            peer: Peer::NONE,
            log: None,
            read_at: Instant::now(),
        };
        exchange.call(request, response)
    }
}

/// A path parameter a route took: its name, its raw bytes, and its value decoded.
pub type Param = (String, Vec<u8>, String);

/// A route found: its index, and the parameters it took.
pub type Found = (usize, Vec<Param>);

/// A route table of pattern → value, as an app's routes are matched.
pub struct Router(crate::app::router::Router<usize>);

impl Router {
    /// A table of `(method, pattern)` routes, each answering with its index; the first
    /// pattern that cannot be added (malformed, or a method routed twice) is the error.
    pub fn new(routes: &[(&str, &str)]) -> Result<Router, String> {
        let mut router = crate::app::router::Router::default();
        for (index, (method, pattern)) in routes.iter().enumerate() {
            router.add(method, pattern, index)?;
        }
        Ok(Router(router))
    }

    /// The route answering `method` on `path`, with its parameters (raw and decoded as
    /// `Request::param` decodes them); `Err` with the `Allow` list for a known path whose
    /// pattern takes another method; `Ok(None)` for an unknown path.
    pub fn find(&self, method: &[u8], path: &[u8]) -> Result<Option<Found>, String> {
        use crate::app::router::{Lookup, Params};
        use crate::support::percent::{decode_text, Plus};
        let mut params = Params::default();
        let mut allow = String::new();
        match self.0.find(method, path, &mut params, &mut allow) {
            Lookup::Handler(&index) => Ok(Some((
                index,
                params
                    .iter(path)
                    .map(|(name, raw)| {
                        let decoded = decode_text(raw, Plus::Keep).into_owned();
                        (name.to_string(), raw.to_vec(), decoded)
                    })
                    .collect(),
            ))),
            Lookup::NotFound => Ok(None),
            Lookup::NotAllowed => Err(allow),
        }
    }
}

/// `input` percent-decoded as a form's name or value (`plus`: `+` is a space) or a path
/// parameter, malformed escapes kept as they are.
pub fn decode_text(input: &[u8], plus: bool) -> String {
    use crate::support::percent::Plus;
    let plus = if plus { Plus::Space } else { Plus::Keep };
    crate::support::percent::decode_text(input, plus).into_owned()
}

/// Makes the calling core's next `io_uring_enter` fail (once), as a kernel refusing the
/// ring would: called from a handler, it drives that core out of its loop by the error
/// path, for the tests of what a core frees when it leaves.
pub fn fail_next_ring_enter() {
    crate::engine::fail_next_enter();
}

/// Why a [`TlsServer`] takes no more input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsEnded {
    /// The client sent `close_notify`.
    Closed,
    /// The handshake or a record failed (the alert, if any, is in the wire buffer).
    Failed,
}

/// One TLS connection's server side without sockets, as a core runs it: rustls's handshake
/// (its unbuffered API), then percore's record layer on the keys rustls hands over.
pub struct TlsServer(crate::tls::TlsConn);

impl TlsServer {
    /// A connection to come under `config`'s certificates, with fresh ticket keys, for the
    /// calling thread.
    pub fn new(config: &crate::config::TlsConfig) -> Result<TlsServer, String> {
        use crate::tls::{TicketKeys, TlsConn, TlsSetup};
        let setup = TlsSetup::load(config)?;
        let now = crate::support::civil_time::unix_now();
        let keys = TicketKeys::generate(config.ticket_lifetime_s, now)?;
        let configs = std::rc::Rc::new(setup.core_configs(keys)?);
        Ok(TlsServer(TlsConn::new(&configs)))
    }

    /// Takes the ciphertext at the start of `buf`, decrypting in place: `plain` gets each
    /// application-data record's plaintext, what must go back is appended to `wire`.
    /// Returns the bytes used (the rest starts a record still to come), or why the
    /// connection takes no more input.
    pub fn receive(
        &mut self,
        buf: &mut [u8],
        wire: &mut Vec<u8>,
        plain: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, TlsEnded> {
        use crate::tls::Event;
        let mut used = 0;
        loop {
            let step = self.0.step(buf, used, wire).map_err(|_| TlsEnded::Failed)?;
            used = step.next;
            match step.event {
                Event::Waiting => return Ok(used),
                Event::Established(_) => {}
                Event::Data(range) => plain(&buf[range]),
                Event::Closed => return Err(TlsEnded::Closed),
            }
        }
    }

    /// Encrypts `plain` into `wire` as application data.
    pub fn seal(&mut self, plain: &[u8], wire: &mut Vec<u8>) {
        self.0.seal(plain, wire);
    }
}

/// One core's TLS session tickets as rustls asks for them, on fresh keys: for measuring the
/// cost of a ticket sealed and opened.
pub struct SessionTickets(crate::tls::Tickets);

impl SessionTickets {
    /// Tickets for the calling thread, on new keys for periods of `lifetime_s` seconds.
    pub fn new(lifetime_s: u32) -> Result<SessionTickets, String> {
        let now = crate::support::civil_time::unix_now();
        let keys = crate::tls::TicketKeys::generate(lifetime_s, now)?;
        Ok(SessionTickets(crate::tls::Tickets::new(keys)))
    }

    /// A ticket holding `plain`.
    pub fn seal(&self, plain: &[u8]) -> Option<Vec<u8>> {
        rustls::server::ProducesTickets::encrypt(&self.0, plain)
    }

    /// What `ticket` holds, when it is one of these tickets' and still opens.
    pub fn open(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        rustls::server::ProducesTickets::decrypt(&self.0, ticket)
    }
}
