//! One core's service: the shared route table, this core's state and buffers. It is what
//! the engine asks to answer each request (it implements `engine::Application`), and it
//! finds the handler, calls it with the request and a response, and catches its panics.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Arc;

use futures_lite::FutureExt;

use super::compress::{Compressor, SharedCompressor};
use super::decode::BodyDecoding;
use super::proxy::ProxyRoutes;
use super::redirect::HttpsRedirect;
use super::response::Scratch;
use super::router::{Lookup, Params, Router};
use super::{AsyncHandler, Files, Handler, Request, Response};
use crate::engine::{Application, Deferred, Peer, TaskAnswer};
use crate::http::request::{Method, RawRequest};
use crate::http::response::{ResponseWriter, TEXT_PLAIN};
use crate::http::status::Status;

/// One core's service.
pub(crate) struct AppService<S: 'static> {
    router: Arc<Router<Handler<S>>>,
    state: Rc<S>,
    scratch: Scratch,
    params: Params,
    allow: String,
    /// The core has begun draining (the health route answers 503).
    draining: bool,
    /// The static route's files, when the app serves them.
    files: Option<Files>,
    /// With `tls.cleartext = "redirect"`: every cleartext request is sent to HTTPS.
    https_redirect: Option<HttpsRedirect>,
    /// Prefixes whose requests go to upstream servers.
    proxies: Arc<ProxyRoutes>,
    /// `websocket.permessage_deflate`: WebSocket routes accept a client's offer.
    permessage_deflate: bool,
    /// Handlers' bodies compressed on the fly (`[compression]`).
    compressor: SharedCompressor,
    /// Request bodies sent in a content coding: decoded for handlers, or refused.
    decoding: BodyDecoding,
}

impl<S: 'static> AppService<S> {
    /// Whether WebSocket routes accept permessage-deflate (`websocket.permessage_deflate`).
    pub(crate) fn with_deflate(mut self, on: bool) -> Self {
        self.permessage_deflate = on;
        self
    }

    /// Decodes (or refuses) handlers' request bodies sent in a content coding.
    pub(crate) fn with_decoding(mut self, decoding: BodyDecoding) -> Self {
        self.decoding = decoding;
        self
    }

    /// Compresses handlers' bodies as `[compression]` says.
    pub(crate) fn with_compression(mut self, compressor: Compressor) -> Self {
        self.compressor = compressor.shared();
        self
    }

    pub(crate) fn new(
        router: Arc<Router<Handler<S>>>,
        state: S,
        files: Option<Files>,
        https_redirect: Option<HttpsRedirect>,
        proxies: Arc<ProxyRoutes>,
    ) -> Self {
        AppService {
            router,
            state: Rc::new(state),
            scratch: Scratch::default(),
            params: Params::default(),
            allow: String::new(),
            draining: false,
            permessage_deflate: true,
            compressor: Compressor::off().shared(),
            decoding: BodyDecoding::default(),
            files,
            https_redirect,
            proxies,
        }
    }
}

impl<S: 'static> AppService<S> {
    /// Requests from `peer` are redirected to HTTPS (a cleartext connection under
    /// `tls.cleartext = "redirect"`): answered at once, never proxied.
    fn redirects(&self, peer: &Peer) -> bool {
        self.https_redirect.is_some() && peer.tls.is_none()
    }
}

impl<S: 'static> Application for AppService<S> {
    fn wants_body(&mut self, request: &RawRequest<'_>) -> bool {
        if self.proxies.takes(request) {
            // Forwarded whole, within http.max_body_bytes.
            return true;
        }
        let found = self.router.find(
            request.method(),
            request.path(),
            &mut self.params,
            &mut self.allow,
        );
        matches!(found, Lookup::Handler(Handler::Sync(_) | Handler::Async(_)))
    }

    fn answer(
        &mut self,
        peer: &Peer,
        request: &RawRequest<'_>,
        response: &mut ResponseWriter,
    ) -> Option<Deferred> {
        if let Some(redirect) = self.https_redirect.as_mut().filter(|_| peer.tls.is_none()) {
            // A cleartext connection: no route is asked.
            redirect.answer(request, response);
            return None;
        }
        if request.head.asterisk {
            // `OPTIONS *` asks about the server as a whole.
            self.router.all_methods(&mut self.allow);
            response.send(Status::NO_CONTENT, None, &[("Allow", &self.allow)], &[]);
            return None;
        }
        if let Some(call) = self.proxies.call(request, peer) {
            return Some(Deferred::Proxy(call));
        }
        let found = self.router.find(
            request.method(),
            request.path(),
            &mut self.params,
            &mut self.allow,
        );
        let handler = match found {
            Lookup::Handler(handler) => handler,
            Lookup::NotFound => {
                response.send_status(Status::NOT_FOUND, &[]);
                return None;
            }
            Lookup::NotAllowed if request.head.method == Method::Options => {
                response.send(Status::NO_CONTENT, None, &[("Allow", &self.allow)], &[]);
                return None;
            }
            Lookup::NotAllowed => {
                response.send_status(Status::METHOD_NOT_ALLOWED, &[("Allow", &self.allow)]);
                return None;
            }
        };
        let mut inner = *request;
        if matches!(handler, Handler::Sync(_) | Handler::Async(_)) {
            match self.decoding.body(request) {
                Ok(None) => {}
                Ok(Some(decoded)) => inner.body = decoded,
                Err((status, accepted)) => {
                    let field = accepted.map(|accepted| ("Accept-Encoding", accepted));
                    response.send_status(status, field.as_slice());
                    return None;
                }
            }
        }
        let user_request = Request {
            inner,
            params: &self.params,
            peer: *peer,
        };
        match handler {
            Handler::Sync(handler) => {
                let state = &*self.state;
                let scratch = &mut self.scratch;
                let compressor = &mut *self.compressor.borrow_mut();
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    let mut user = Response::new(response, scratch);
                    handler(&user_request, &mut user, state);
                    user.finish(compressor, request)
                }));
                settle(outcome, response)
            }
            Handler::Async(handler) => {
                let compressor = self.compressor.clone();
                let state = self.state.clone();
                start_task(&**handler, user_request, state, compressor, response)
            }
            Handler::Socket(..) if self.draining => {
                // The core is leaving: no new WebSocket.
                response.send_status(Status::SERVICE_UNAVAILABLE, &[]);
                None
            }
            Handler::Socket(protocols, make) => {
                let state = &self.state;
                let deflate = self.permessage_deflate;
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    super::websocket::answer(
                        &**make,
                        protocols,
                        deflate,
                        &user_request,
                        state,
                        response,
                    )
                }));
                outcome.unwrap_or_else(|_| {
                    response.fail();
                    None
                })
            }
            Handler::Health => {
                let (status, body): (Status, &[u8]) = match self.draining {
                    false => (Status::OK, b"ok\n"),
                    true => (Status::SERVICE_UNAVAILABLE, b"draining\n"),
                };
                let extra = [("Cache-Control", "no-store")];
                response.send(status, Some(TEXT_PLAIN), &extra, &[body]);
                None
            }
            Handler::Files => {
                let Some(files) = self.files.as_mut() else {
                    response.fail();
                    return None;
                };
                let scratch = &mut self.scratch;
                let compressor = &mut *self.compressor.borrow_mut();
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    let rest = files.0.under_mount(user_request.inner.path());
                    let mut user = Response::new(response, scratch);
                    user.serve_file(files, &user_request, rest, true);
                    user.finish(compressor, request)
                }));
                settle(outcome, response)
            }
        }
    }

    fn streams_body(&mut self, peer: &Peer, request: &RawRequest<'_>) -> bool {
        // A proxied request's body goes upstream as it comes.
        !self.redirects(peer) && self.proxies.takes(request)
    }

    fn queues(&mut self, peer: &Peer, request: &RawRequest<'_>) -> bool {
        !self.redirects(peer) && self.proxies.queues(request)
    }

    fn drain(&mut self) {
        self.draining = true;
    }
}

/// A handler's outcome: the file body it left to send, or, when it panicked, a 500 in place
/// of what it wrote.
fn settle(
    outcome: std::thread::Result<Option<crate::files::FileBody>>,
    response: &mut ResponseWriter,
) -> Option<Deferred> {
    match outcome {
        Ok(file) => file.map(|file| Deferred::File(Box::new(file))),
        Err(_) => {
            response.fail();
            None
        }
    }
}

/// Calls an async handler: its future, made here, becomes a task whose answer is written
/// as a deferred response (a 500 if it panicked).
#[inline(never)]
fn start_task<S>(
    handler: &AsyncHandler<S>,
    request: Request<'_>,
    state: Rc<S>,
    compressor: SharedCompressor,
    response: &mut ResponseWriter,
) -> Option<Deferred> {
    // What the request accepts, read now: the request's bytes are gone when the reply is.
    let ranked = compressor.borrow().ranked(&request.inner);
    let made = catch_unwind(AssertUnwindSafe(|| handler(request.into_owned(), state)));
    let Ok(future) = made else {
        response.fail();
        return None;
    };
    Some(Deferred::Task(Box::pin(async move {
        match AssertUnwindSafe(future).catch_unwind().await {
            Ok(mut reply) => {
                // A streamed body's producer starts now; its bytes wait for the head.
                let body = reply.take_producer().map(super::body::start);
                let slot = body.clone();
                TaskAnswer {
                    write: Box::new(move |writer: &mut ResponseWriter| {
                        let compressor = &mut *compressor.borrow_mut();
                        reply.write(writer, slot.as_deref(), compressor, ranked)
                    }),
                    body,
                }
            }
            Err(_) => TaskAnswer {
                write: Box::new(|writer: &mut ResponseWriter| writer.fail()),
                body: None,
            },
        }
    })))
}
