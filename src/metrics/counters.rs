//! A core's counters since start: plain numbers, added up across cores by whoever reads
//! them.

/// Monotonic counters of one core since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Final responses by status class: index 1 for 1xx … 5 for 5xx.
    pub by_class: [u64; 6],
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Connections accepted (and served).
    pub accepted: u64,
    /// Connections closed.
    pub closed: u64,
    /// Connections refused at `max_connections_per_core`.
    pub refused: u64,
    /// Requests refused for a protocol error (malformed, too large, timed out…).
    pub protocol_errors: u64,
    /// Times the core's ring loop found nothing to do and slept (in its own ring, or through
    /// glommio while a file read is outstanding) until a completion, a deadline or a file
    /// read woke it.
    pub parks: u64,
    /// Static-file requests answered from the core's cache of small files (the file was
    /// checked with one `stat`, not opened or read).
    pub file_cache_hits: u64,
    /// Requests whose handler failed: it panicked, or left an interim (1xx) status as the
    /// final one (each was answered 500 and its connection closed).
    pub handler_panics: u64,
    /// Access log lines dropped because the core's log buffer was full.
    pub access_log_dropped: u64,
    /// TLS handshakes completed in full.
    pub tls_full: u64,
    /// TLS handshakes that resumed a session (a ticket).
    pub tls_resumed: u64,
    /// TLS handshakes that failed, by [`TlsFailure`].
    pub tls_failed: [u64; TlsFailure::ALL.len()],
    /// Kernel operations (sends, receives, accepts, timeouts) in flight when the core left
    /// its loop: each was cancelled and waited for before its memory was freed.
    pub exit_in_flight: u64,
    /// Of those, the ones the kernel had not given back within the bound: their memory was
    /// left allocated (leaked) rather than freed under the kernel. 0 on a clean exit.
    pub exit_leaked: u64,
    /// Requests sent to upstream servers (retries included).
    pub upstream_requests: u64,
    /// Connections opened to upstream servers (the others were reused from a pool).
    pub upstream_connects: u64,
    /// Requests sent again after their upstream connection failed before any response byte.
    pub upstream_retries: u64,
    /// Proxied requests answered 502 or 504, or cut short, by percore.
    pub upstream_failures: u64,
    /// Bytes read from upstream servers.
    pub upstream_bytes_in: u64,
    /// WebSocket connections opened (handshakes accepted).
    pub websocket_opened: u64,
    /// WebSocket connections ended (opened minus ended: those open now).
    pub websocket_closed: u64,
    /// WebSocket messages received whole from clients (inflated, when compressed).
    pub websocket_messages_in: u64,
    /// WebSocket messages sent by handlers.
    pub websocket_messages_out: u64,
    /// Bytes of the WebSocket messages received (their payloads, inflated).
    pub websocket_bytes_in: u64,
    /// Bytes of the WebSocket messages sent (their payloads, before compression).
    pub websocket_bytes_out: u64,
    /// Messages published to WebSocket groups by this core's handlers.
    pub websocket_published: u64,
    /// Group messages not delivered: a member's send queue was full or it was closing, or
    /// another core's backlog was full.
    pub websocket_publish_dropped: u64,
    /// Responses whose body went out in a content coding (gzip, br, zstd), HEAD included.
    pub coded_responses: u64,
    /// Body bytes those codings saved: the identity bodies' lengths less the coded ones'.
    pub coding_bytes_saved: u64,
}

/// Why a TLS handshake failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The client's messages were refused, or nothing could be agreed (an alert was sent),
    /// or they were too large.
    Protocol,
    /// The handshake did not finish within `http.header_timeout_ms`.
    Timeout,
    /// The client closed or reset the connection during it.
    Closed,
    /// A cleartext HTTP request came to the TLS port (answered with a cleartext 400).
    Cleartext,
    /// The first bytes were neither TLS nor HTTP.
    NotTls,
}

impl TlsFailure {
    /// Every reason, in counter order.
    pub const ALL: [TlsFailure; 5] = [
        TlsFailure::Protocol,
        TlsFailure::Timeout,
        TlsFailure::Closed,
        TlsFailure::Cleartext,
        TlsFailure::NotTls,
    ];

    /// Its name in `/stats` and `/metrics`.
    pub fn name(self) -> &'static str {
        match self {
            TlsFailure::Protocol => "protocol",
            TlsFailure::Timeout => "timeout",
            TlsFailure::Closed => "closed",
            TlsFailure::Cleartext => "cleartext",
            TlsFailure::NotTls => "not_tls",
        }
    }
}

impl Counters {
    /// Responses of every class.
    pub fn requests(&self) -> u64 {
        self.by_class.iter().sum()
    }

    /// Adds another core's counters.
    pub fn add(&mut self, other: &Counters) {
        for (a, b) in self.by_class.iter_mut().zip(other.by_class) {
            *a += b;
        }
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.accepted += other.accepted;
        self.closed += other.closed;
        self.refused += other.refused;
        self.protocol_errors += other.protocol_errors;
        self.parks += other.parks;
        self.file_cache_hits += other.file_cache_hits;
        self.handler_panics += other.handler_panics;
        self.access_log_dropped += other.access_log_dropped;
        self.tls_full += other.tls_full;
        self.tls_resumed += other.tls_resumed;
        for (a, b) in self.tls_failed.iter_mut().zip(other.tls_failed) {
            *a += b;
        }
        self.exit_in_flight += other.exit_in_flight;
        self.exit_leaked += other.exit_leaked;
        self.upstream_requests += other.upstream_requests;
        self.upstream_connects += other.upstream_connects;
        self.upstream_retries += other.upstream_retries;
        self.upstream_failures += other.upstream_failures;
        self.upstream_bytes_in += other.upstream_bytes_in;
        self.websocket_opened += other.websocket_opened;
        self.websocket_closed += other.websocket_closed;
        self.websocket_messages_in += other.websocket_messages_in;
        self.coded_responses += other.coded_responses;
        self.coding_bytes_saved += other.coding_bytes_saved;
        self.websocket_messages_out += other.websocket_messages_out;
        self.websocket_bytes_in += other.websocket_bytes_in;
        self.websocket_bytes_out += other.websocket_bytes_out;
        self.websocket_published += other.websocket_published;
        self.websocket_publish_dropped += other.websocket_publish_dropped;
    }

    /// WebSocket connections open now.
    pub fn websockets_open(&self) -> u64 {
        self.websocket_opened.saturating_sub(self.websocket_closed)
    }

    /// TLS handshakes completed, full and resumed.
    pub fn tls_handshakes(&self) -> u64 {
        self.tls_full + self.tls_resumed
    }
}
