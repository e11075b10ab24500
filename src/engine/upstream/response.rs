//! An upstream's response on its way to the client: its head read (as
//! `http::upstream_head` reads it) and written again behind percore's own status line and
//! framing, its body relayed as it comes (the server's length, or chunked), and what the
//! bytes mean for the relay: more to come, through, or failed.

use super::super::conn::{Conn, Deferring};
use super::super::connections::Connections;
use super::super::turn::Turn;
use super::super::Application;
use super::link::Link;
use super::pipeline::Next;
use super::relay::{Body, Stage, MAX_UPSTREAM_HEAD};
use crate::http::chunk_out::{push_chunk, push_last_chunk, size_line, SIZE_LINE_MAX};
use crate::http::chunked::ChunkedDecoder;
use crate::http::response::{OwnFields, ResponseWriter};
use crate::http::session::OUTPUT_HIGH_WATER;
use crate::http::status::Status;
use crate::http::upstream_head::{
    parse_upstream_head, reason_of, write_end_to_end, write_trailer_fields, BodyFraming,
};

/// What a link's bytes did to its relay.
pub(super) enum Fed {
    /// More is to come.
    More,
    /// The response is complete: `reusable`, its framing lets the connection carry
    /// another; `rest`, bytes read after it (the next pipelined response's, or stray).
    Done { reusable: bool, rest: usize },
    /// The response cannot be relayed: the client gets `status` (502) if its head has not
    /// gone out, and is cut otherwise.
    Failed(Status),
}

impl<A: Application> Connections<A> {
    /// Feeds a response's bytes to the relay.
    pub(super) fn feed_relay(
        &mut self,
        turn: &mut Turn<'_>,
        conn: &mut Conn,
        link: &mut Link,
        mut data: &[u8],
    ) -> Fed {
        conn.relay().since = turn.now.ms;
        loop {
            let relay = conn.relay();
            let head_request = relay.call.head_request;
            match &relay.stage {
                Stage::Connect => return Fed::Failed(Status::BAD_GATEWAY),
                Stage::Body(_) => return self.feed_body(conn, data),
                Stage::Tunnel(_) => return self.tunnel_down(conn, data),
                Stage::Head => {}
            }
            // A head split over reads is gathered in the link; one that came whole is read
            // where it lies.
            let held = !link.input.is_empty();
            if held {
                link.input.extend_from_slice(data);
                data = &[];
            }
            let input = std::mem::take(&mut link.input);
            let bytes: &[u8] = if held { &input } else { data };
            let head = match parse_upstream_head(bytes, head_request, MAX_UPSTREAM_HEAD) {
                Ok(Some(head)) => head,
                Ok(None) => {
                    link.input = input;
                    if !held {
                        link.input.extend_from_slice(data);
                    }
                    return Fed::More;
                }
                Err(_) => return Fed::Failed(Status::BAD_GATEWAY),
            };
            if head.status == 101 {
                // Only a request that asked for an upgrade may be switched.
                if !relay.call.upgrade {
                    return Fed::Failed(Status::BAD_GATEWAY);
                }
                self.server_answered(turn, link.group, link.server, head.status);
                let fed =
                    self.open_tunnel(turn, conn, link, &bytes[..head.len], &bytes[head.len..]);
                link.input = input;
                link.input.clear();
                return fed;
            }
            if (100..200).contains(&head.status) {
                // An interim response: the final one follows.
                if held {
                    link.input = input[head.len..].to_vec();
                } else {
                    data = &data[head.len..];
                }
                continue;
            }
            self.server_answered(turn, link.group, link.server, head.status);
            self.write_response_head(turn, conn, &bytes[..head.len], head);
            let fed = self.feed_body(conn, &bytes[head.len..]);
            link.input = input;
            link.input.clear();
            return fed;
        }
    }

    /// Writes the client's response head for an upstream response `head` (its bytes
    /// `bytes`), and turns the relay to its body.
    pub(super) fn write_response_head(
        &mut self,
        turn: &mut Turn<'_>,
        conn: &mut Conn,
        bytes: &[u8],
        head: crate::http::upstream_head::UpstreamHead,
    ) {
        self.buffers.writes.lend(&mut conn.out);
        let draining = !turn.serving();
        let before = conn.out.len();
        let mut chunked_out = false;
        let mut dropped = false;
        let status = Status(head.status);
        let reason = reason_of(bytes);
        let (answered, _, _) =
            conn.session
                .answer_deferred(&mut conn.out, draining, |w: &mut ResponseWriter| {
                    let (server, date) = write_end_to_end(bytes, w.out());
                    w.own(OwnFields { server, date });
                    match head.framing {
                        BodyFraming::Length(n) => {
                            w.send_head_as(status, Some(reason), None, &[], n)
                        }
                        // To HEAD: the length the GET would have had, or none (its body
                        // would have been chunked).
                        BodyFraming::None => match head.declared {
                            Some(n) => w.send_head_as(status, Some(reason), None, &[], n),
                            None => {
                                w.send_head_unsized(status, Some(reason));
                            }
                        },
                        BodyFraming::Chunked | BodyFraming::UntilClose => {
                            chunked_out = w.send_head_unsized(status, Some(reason));
                        }
                    }
                    dropped = !w.body_wanted();
                });
        let written = (conn.out.len() - before) as u64;
        let relay = conn.relay();
        relay.answered = Some(answered);
        relay.upstream_status = Some(head.status);
        relay.bytes = written;
        let waited = turn.now.reaped_at.saturating_duration_since(relay.sent_at);
        turn.reporting.metrics.record_upstream(waited);
        turn.reporting
            .metrics
            .record_one(answered.class(), false, Some(relay.read_at));
        let left = match head.framing {
            BodyFraming::Length(n) => n,
            _ => 0,
        };
        relay.stage = Stage::Body(Body {
            framing: head.framing,
            left,
            chunks: ChunkedDecoder::new(u64::MAX, MAX_UPSTREAM_HEAD),
            chunked_out,
            dropped: dropped || head.framing == BodyFraming::None,
            reusable: head.reusable,
            trailer: Vec::new(),
        });
    }

    /// Body bytes of the response, relayed to the client as it gets them.
    pub(super) fn feed_body(&mut self, conn: &mut Conn, data: &[u8]) -> Fed {
        let before = conn.out.len();
        let fed = self.relay_body(conn, data);
        if let Deferring::Proxy(relay) = &mut conn.deferring {
            relay.bytes += conn.out.len().saturating_sub(before) as u64;
        }
        fed
    }

    /// Body bytes of the response, relayed to the client as it gets them (see `feed_body`).
    fn relay_body(&mut self, conn: &mut Conn, data: &[u8]) -> Fed {
        // A body that outgrows the output buffer (it gathers up to the high-water mark
        // before it is sent) gets a wide one at once rather than growing it by doubling.
        let need = conn.out.len() + data.len() + 32;
        self.buffers.writes.lend(&mut conn.out);
        if need > conn.out.capacity() {
            self.buffers.writes.widen(&mut conn.out);
        }
        let Deferring::Proxy(relay) = &mut conn.deferring else {
            return Fed::Failed(Status::BAD_GATEWAY);
        };
        let Stage::Body(body) = &mut relay.stage else {
            return Fed::Failed(Status::BAD_GATEWAY);
        };
        let out = &mut conn.out;
        let reusable = body.reusable;
        match body.framing {
            BodyFraming::None => Fed::Done {
                reusable,
                rest: data.len(),
            },
            BodyFraming::Length(_) => {
                let take = (body.left as usize).min(data.len());
                if !body.dropped {
                    out.extend_from_slice(&data[..take]);
                }
                body.left -= take as u64;
                match body.left {
                    0 => Fed::Done {
                        reusable,
                        rest: data.len() - take,
                    },
                    _ => Fed::More,
                }
            }
            BodyFraming::Chunked => {
                let mark = out.len();
                if body.chunked_out {
                    // Room for the size line, written once the chunk's length is known.
                    out.extend_from_slice(&[b'0'; SIZE_LINE_MAX]);
                }
                let start = out.len();
                let sink = (!body.dropped).then_some(&mut *out);
                // Trailer fields go on to a client that gets the body chunked.
                let trailer = (body.chunked_out && !body.dropped).then_some(&mut body.trailer);
                let used = match body.chunks.feed_keeping(data, sink, trailer) {
                    Ok(used) => used,
                    Err(_) => {
                        out.truncate(mark);
                        return Fed::Failed(Status::BAD_GATEWAY);
                    }
                };
                let len = out.len() - start;
                if body.chunked_out {
                    if len == 0 {
                        out.truncate(mark);
                    } else {
                        let mut line = [0u8; SIZE_LINE_MAX];
                        let n = size_line(len, &mut line);
                        out.splice(mark..start, line[..n].iter().copied());
                        out.extend_from_slice(b"\r\n");
                    }
                }
                if body.chunks.is_done() {
                    if body.chunked_out {
                        push_last_chunk(out, |out| write_trailer_fields(&body.trailer, out));
                    }
                    return Fed::Done {
                        reusable,
                        rest: data.len() - used,
                    };
                }
                Fed::More
            }
            BodyFraming::UntilClose => {
                if !data.is_empty() && !body.dropped {
                    if body.chunked_out {
                        push_chunk(out, data);
                    } else {
                        out.extend_from_slice(data);
                    }
                }
                Fed::More
            }
        }
    }

    /// Sends what the turn's receives relayed to clients (see `Upstreams::unsent`).
    pub(in crate::engine) fn send_relayed(&mut self, turn: &mut Turn<'_>) {
        let mut unsent = std::mem::take(&mut self.upstreams.unsent);
        for key in unsent.drain(..) {
            if let Some(mut conn) = self.table.take(key) {
                self.flush(turn, &mut conn);
                self.settle(turn, conn);
            }
        }
        self.upstreams.unsent = unsent;
    }

    /// Acts on what the bytes did. Returns what follows a response that is through (see
    /// `pipeline::Next`); none while it is not.
    pub(super) fn relay_outcome(
        &mut self,
        turn: &mut Turn<'_>,
        conn: &mut Conn,
        link: &mut Link,
        fed: Fed,
    ) -> Option<Next> {
        match fed {
            Fed::More => {
                // A full window goes out now; less waits for the rest of this turn's
                // receives (`send_relayed`).
                if conn.out.len() >= OUTPUT_HIGH_WATER {
                    self.flush(turn, conn);
                }
                if conn.out.len() >= OUTPUT_HIGH_WATER {
                    // A client that does not take the response stops its server's reads.
                    link.paused = true;
                    self.cancel_link_recv(turn, link);
                } else if conn.has_output() && self.upstreams.unsent.last() != Some(&conn.key) {
                    self.upstreams.unsent.push(conn.key);
                }
            }
            Fed::Done { reusable, rest } => {
                return Some(self.relay_done(turn, conn, link, reusable, rest));
            }
            Fed::Failed(status) => {
                link.client = None;
                self.detach(turn, link);
                self.relay_failed(turn, conn, status);
            }
        }
        None
    }
}
