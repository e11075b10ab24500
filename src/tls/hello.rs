//! What percore reads of a client's ClientHello before rustls does: the first cipher suite it
//! lists (for the server's choice of suite, `suites`) and the SNI name it sends (what
//! handlers and the access log are told of the connection).
//!
//! The name is read here, from the connection's own bytes, rather than from rustls: its
//! unbuffered server connection does not tell the name, and the certificate resolver, which
//! sees it, is shared by all of a core's connections and does not run at all for a resumed
//! handshake. Read here, a name belongs to the connection that sent it and to no other, and a
//! resumed connection reports its name too (rustls resumes only a session whose name is the
//! one sent, RFC 6066 section 3). It is read as rustls reads it: the host_name entry of the
//! `server_name` extension, a DNS name in lower case; an IP address sent as a name counts as
//! none. A name rustls refuses fails the handshake, so it is never reported.
//!
//! The ClientHello is whole before it is read: a client may split it over several records,
//! which are then joined (into a copy, the only case that allocates).

use std::borrow::Cow;

use rustls::pki_types::ServerName;

use super::record::{HANDSHAKE, HEADER, MAX_CIPHERTEXT_12};

/// The ClientHello handshake message type.
const CLIENT_HELLO: u8 = 1;

/// The `server_name` extension (RFC 6066 section 3) and its host_name entries.
const SERVER_NAME: u16 = 0;
const HOST_NAME: u8 = 0;

/// Bytes of a handshake message's header: type, 24-bit length.
const MESSAGE_HEADER: usize = 4;

/// The largest ClientHello percore waits for (rustls's limit on a handshake message).
const MAX_HELLO: usize = 0xffff;

/// What the bytes at the start of a connection hold.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Start<'a> {
    /// Not the whole ClientHello yet.
    Waiting,
    /// The ClientHello message, header included.
    Hello(Cow<'a, [u8]>),
    /// Not a ClientHello percore can read (rustls will say why it is refused).
    Other,
}

/// The ClientHello the records at the start of `buf` carry, joined across records.
pub(crate) fn client_hello(buf: &[u8]) -> Start<'_> {
    // The message's header, from the first payload bytes wherever they lie.
    let mut header = [0u8; MESSAGE_HEADER];
    let mut have = 0;
    let mut records = Records(buf);
    while have < MESSAGE_HEADER {
        let payload = match records.next_payload() {
            Ok(payload) => payload,
            Err(start) => return start,
        };
        for &byte in payload.iter().take(MESSAGE_HEADER - have) {
            header[have] = byte;
            have += 1;
        }
    }
    let need = MESSAGE_HEADER + u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
    if header[0] != CLIENT_HELLO || need > MESSAGE_HEADER + MAX_HELLO {
        return Start::Other;
    }
    // All of it there? Then in one record, as it nearly always is, or joined.
    let mut records = Records(buf);
    let mut have = 0;
    while have < need {
        match records.next_payload() {
            Ok(payload) => have += payload.len(),
            Err(start) => return start,
        }
    }
    let mut records = Records(buf);
    let Ok(first) = records.next_payload() else {
        unreachable!("the records were just counted");
    };
    if first.len() >= need {
        return Start::Hello(Cow::Borrowed(&first[..need]));
    }
    let mut joined = Vec::with_capacity(need);
    joined.extend_from_slice(first);
    while let (true, Ok(payload)) = (joined.len() < need, records.next_payload()) {
        let take = payload.len().min(need - joined.len());
        joined.extend_from_slice(&payload[..take]);
    }
    Start::Hello(Cow::Owned(joined))
}

/// The handshake records at the start of a buffer, one after another.
struct Records<'a>(&'a [u8]);

impl<'a> Records<'a> {
    /// The next record's payload, or what the connection's start is when that record is
    /// not all there or not a handshake record.
    fn next_payload(&mut self) -> Result<&'a [u8], Start<'a>> {
        let Some(header) = self.0.get(..HEADER) else {
            return Err(Start::Waiting);
        };
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if header[0] != HANDSHAKE || len == 0 || len > MAX_CIPHERTEXT_12 {
            return Err(Start::Other);
        }
        let Some(payload) = self.0.get(HEADER..HEADER + len) else {
            return Err(Start::Waiting);
        };
        self.0 = &self.0[HEADER + len..];
        Ok(payload)
    }
}

/// A ClientHello's parts percore reads (RFC 8446 section 4.1.2, RFC 5246 section 7.4.1.2).
pub(crate) struct ClientHello<'a> {
    /// The cipher suites, two bytes each.
    suites: &'a [u8],
    /// The extensions, if it has any.
    extensions: &'a [u8],
}

impl<'a> ClientHello<'a> {
    /// Reads `message` (a whole ClientHello, header included), if it is well formed that far.
    pub(crate) fn parse(message: &'a [u8]) -> Option<ClientHello<'a>> {
        let mut r = Reader(message.get(MESSAGE_HEADER..)?);
        r.take(2 + 32)?; // legacy_version, random
        r.vector(1)?; // legacy_session_id
        let suites = r.vector(2)?;
        r.vector(1)?; // legacy_compression_methods
        let extensions = match r.0.is_empty() {
            true => &[][..],
            false => r.vector(2)?,
        };
        Some(ClientHello { suites, extensions })
    }

    /// The suites it lists, in its order.
    pub(crate) fn suites(&self) -> impl Iterator<Item = u16> + 'a {
        self.suites
            .chunks_exact(2)
            .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
    }

    /// The SNI name it sends, as rustls reads it: a DNS name, in lower case.
    pub(crate) fn server_name(&self) -> Option<Box<str>> {
        let mut extensions = Reader(self.extensions);
        let list = loop {
            let kind = u16::from_be_bytes(extensions.take(2)?.try_into().ok()?);
            let data = extensions.vector(2)?;
            if kind == SERVER_NAME {
                break data;
            }
        };
        let mut entries = Reader(Reader(list).vector(2)?);
        if entries.take(1)? != [HOST_NAME] {
            return None;
        }
        match ServerName::try_from(entries.vector(2)?).ok()? {
            ServerName::DnsName(name) => Some(name.to_lowercase_owned().as_ref().into()),
            _ => None,
        }
    }
}

/// Reads a TLS structure front to back.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// The next `n` bytes.
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(taken)
    }

    /// The next vector whose length takes `len_bytes` bytes.
    fn vector(&mut self, len_bytes: usize) -> Option<&'a [u8]> {
        let len = self
            .take(len_bytes)?
            .iter()
            .fold(0usize, |len, &b| len << 8 | usize::from(b));
        self.take(len)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A ClientHello message listing `suites`, with the extensions given.
    pub(crate) fn hello(suites: &[u16], extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(32);
        body.extend_from_slice(&[9; 32]);
        body.extend_from_slice(&(2 * suites.len() as u16).to_be_bytes());
        for suite in suites {
            body.extend_from_slice(&suite.to_be_bytes());
        }
        body.extend_from_slice(&[1, 0]);
        let mut block = Vec::new();
        for (kind, data) in extensions {
            block.extend_from_slice(&kind.to_be_bytes());
            block.extend_from_slice(&(data.len() as u16).to_be_bytes());
            block.extend_from_slice(data);
        }
        body.extend_from_slice(&(block.len() as u16).to_be_bytes());
        body.extend_from_slice(&block);
        let mut message = vec![CLIENT_HELLO, 0];
        message.extend_from_slice(&(body.len() as u16).to_be_bytes());
        message.extend_from_slice(&body);
        message
    }

    /// A `server_name` extension naming `name` (host_name).
    fn sni(name: &[u8]) -> (u16, Vec<u8>) {
        let mut entry = vec![HOST_NAME];
        entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
        entry.extend_from_slice(name);
        let mut list = (entry.len() as u16).to_be_bytes().to_vec();
        list.extend_from_slice(&entry);
        (SERVER_NAME, list)
    }

    /// `message` in records of at most `size` bytes of payload each.
    fn records(message: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for fragment in message.chunks(size) {
            out.extend_from_slice(&[HANDSHAKE, 3, 1]);
            out.extend_from_slice(&(fragment.len() as u16).to_be_bytes());
            out.extend_from_slice(fragment);
        }
        out
    }

    #[test]
    fn the_hello_is_read_whole_in_one_record_or_joined_from_several() {
        let message = hello(&[0x1301], &[(10, vec![0, 2, 0, 29]), sni(b"Example.ORG")]);
        for size in [message.len(), 100, 7, 1] {
            let wire = records(&message, size);
            for cut in 0..wire.len() {
                assert_eq!(client_hello(&wire[..cut]), Start::Waiting, "{size} {cut}");
            }
            let mut more = wire.clone();
            more.extend_from_slice(&[23, 3, 3, 0, 1, 0]);
            let Start::Hello(got) = client_hello(&more) else {
                panic!("whole at {size}");
            };
            assert_eq!(got, message);
            let parsed = ClientHello::parse(&got).unwrap();
            assert_eq!(parsed.server_name().as_deref(), Some("example.org"));
            assert_eq!(parsed.suites().collect::<Vec<_>>(), [0x1301]);
        }
        assert_eq!(client_hello(b"GET / HTTP/1.1\r\n"), Start::Other);
        assert_eq!(client_hello(&[HANDSHAKE, 3, 1, 0, 0]), Start::Other);
        assert_eq!(client_hello(&records(&[2, 0, 0, 0], 9)), Start::Other);
        // A record of another type before the hello is whole.
        let mut cut = records(&message[..20], 20);
        cut.extend_from_slice(&[21, 3, 3, 0, 2, 2, 40]);
        assert_eq!(client_hello(&cut), Start::Other);
    }

    #[test]
    fn the_name_is_a_dns_name_sent_as_host_name() {
        let name = |extensions: &[(u16, Vec<u8>)]| {
            let message = hello(&[0x1301], extensions);
            ClientHello::parse(&message).unwrap().server_name()
        };
        assert_eq!(name(&[sni(b"a.b.test")]).as_deref(), Some("a.b.test"));
        assert_eq!(name(&[]), None);
        assert_eq!(name(&[sni(b"127.0.0.1")]), None, "an address is no name");
        assert_eq!(name(&[sni(b"bad name")]), None);
        let mut other_type = sni(b"a.test");
        other_type.1[2] = 1;
        assert_eq!(name(&[other_type]), None);
        // Truncated anywhere: no name, no panic.
        let message = hello(&[0x1301], &[sni(b"a.test")]);
        for cut in 0..message.len() {
            if let Some(hello) = ClientHello::parse(&message[..cut]) {
                assert_eq!(hello.server_name(), None, "{cut}");
            }
        }
    }
}
