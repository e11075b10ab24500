//! The PROXY protocol (HAProxy's, versions 1 and 2): the header a load balancer sends first
//! on each connection, naming the client it accepted, so that the client's address survives
//! the balancer. With `server.proxy_protocol` on, every connection must start with one, and
//! only from a source in `server.proxy_from`: otherwise anyone could claim any address.
//!
//! Like `http`, this is protocol without I/O: the engine feeds it the connection's first
//! bytes, however they were split.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

/// Longest version 1 header, CRLF included (the specification's bound).
const V1_MAX: usize = 107;

/// The twelve bytes that open a version 2 header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Longest version 2 address block percore reads (TLVs included); the format allows 64 KiB,
/// balancers send a few dozen bytes.
const V2_MAX_BLOCK: usize = 4096;

/// What the start of a connection says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    /// Not all of it has arrived.
    Incomplete,
    /// A whole header of `len` bytes; `source` is the client it names (`None` for a
    /// connection of the balancer's own: `UNKNOWN`, `LOCAL`, or a family other than TCP).
    Complete {
        /// Bytes of the header.
        len: usize,
        /// The client's address.
        source: Option<SocketAddr>,
    },
    /// Not a PROXY header.
    Invalid,
}

/// Reads a PROXY header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Header {
    if buf.first() == Some(&b'\r') {
        return parse_v2(buf);
    }
    parse_v1(buf)
}

fn parse_v1(buf: &[u8]) -> Header {
    const PREFIX: &[u8] = b"PROXY ";
    let common = buf.len().min(PREFIX.len());
    if buf[..common] != PREFIX[..common] {
        return Header::Invalid;
    }
    let Some(end) = buf.windows(2).take(V1_MAX - 1).position(|w| w == b"\r\n") else {
        return match buf.len() < V1_MAX {
            true if !buf.contains(&b'\n') => Header::Incomplete,
            _ => Header::Invalid,
        };
    };
    // A bare LF inside the line is refused whatever follows it, so that the verdict is the
    // same however the line arrives (a prefix holding an LF but no CRLF is refused above).
    if buf[..end].contains(&b'\n') {
        return Header::Invalid;
    }
    let Ok(line) = std::str::from_utf8(&buf[PREFIX.len()..end]) else {
        return Header::Invalid;
    };
    let fields: Vec<&str> = line.split(' ').collect();
    let source = match fields.as_slice() {
        ["UNKNOWN", ..] => None,
        [family @ ("TCP4" | "TCP6"), source, destination, source_port, destination_port] => {
            let (Ok(source), Ok(destination), Some(port), Some(_)) = (
                source.parse::<IpAddr>(),
                destination.parse::<IpAddr>(),
                parse_port(source_port),
                parse_port(destination_port),
            ) else {
                return Header::Invalid;
            };
            let four = *family == "TCP4";
            if source.is_ipv4() != four || destination.is_ipv4() != four {
                return Header::Invalid;
            }
            Some(SocketAddr::new(source, port))
        }
        _ => return Header::Invalid,
    };
    Header::Complete {
        len: end + 2,
        source,
    }
}

/// A port as the version 1 format writes it: decimal, no sign, no leading zero.
fn parse_port(text: &str) -> Option<u16> {
    let valid = !text.is_empty()
        && text.len() <= 5
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    valid.then(|| text.parse().ok()).flatten()
}

fn parse_v2(buf: &[u8]) -> Header {
    let common = buf.len().min(V2_SIGNATURE.len());
    if buf[..common] != V2_SIGNATURE[..common] {
        return Header::Invalid;
    }
    if buf.len() < 16 {
        return Header::Incomplete;
    }
    let (version, command) = (buf[12] >> 4, buf[12] & 0xf);
    if version != 2 || command > 1 {
        return Header::Invalid;
    }
    let block = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if block > V2_MAX_BLOCK {
        return Header::Invalid;
    }
    if buf.len() < 16 + block {
        return Header::Incomplete;
    }
    let addresses = &buf[16..16 + block];
    let len = 16 + block;
    if command == 0 {
        // LOCAL: the balancer's own connection (a health check); the family is ignored.
        return Header::Complete { len, source: None };
    }
    let source = match buf[13] {
        // TCP over IPv4: source, destination, source port, destination port.
        0x11 if block >= 12 => {
            let ip = Ipv4Addr::new(addresses[0], addresses[1], addresses[2], addresses[3]);
            let port = u16::from_be_bytes([addresses[8], addresses[9]]);
            Some(SocketAddr::new(IpAddr::V4(ip), port))
        }
        // TCP over IPv6.
        0x21 if block >= 36 => {
            let octets: [u8; 16] = addresses[..16].try_into().expect("sixteen bytes");
            let port = u16::from_be_bytes([addresses[32], addresses[33]]);
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port))
        }
        0x11 | 0x21 => return Header::Invalid,
        // UNSPEC, UDP, UNIX: nothing percore can use as a client address.
        _ => None,
    };
    Header::Complete { len, source }
}

/// Whether `peer` lies in one of the networks allowed to send PROXY headers
/// (`server.proxy_from`); an IPv4 address mapped into IPv6 counts as IPv4.
pub fn is_trusted(sources: &[IpNet], peer: IpAddr) -> bool {
    let peer = match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
        v4 => v4,
    };
    sources.iter().any(|network| network.contains(&peer))
}

/// Reads an address (`127.0.0.1`, a single host) or a network (`10.0.0.0/8`).
pub fn parse_network(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.push(0x20 | command);
        header.push(family);
        header.extend_from_slice(&(block.len() as u16).to_be_bytes());
        header.extend_from_slice(block);
        header
    }

    #[test]
    fn version_1_headers() {
        let line = b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 80\r\nGET";
        assert_eq!(
            parse(line),
            Header::Complete {
                len: line.len() - 3,
                source: Some("203.0.113.7:51234".parse().unwrap())
            }
        );
        let six = b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 443\r\n";
        assert_eq!(
            parse(six),
            Header::Complete {
                len: six.len(),
                source: Some("[2001:db8::7]:4000".parse().unwrap())
            }
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Header::Complete {
                len: 15,
                source: None
            }
        );
        for split in 0..line.len() - 3 {
            assert_eq!(parse(&line[..split]), Header::Incomplete, "{split}");
        }
        for bad in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PROXY TCP4 203.0.113.7 192.0.2.1 51234\r\n",
            b"PROXY TCP4 2001:db8::7 192.0.2.1 1 2\r\n",
            b"PROXY TCP4 203.0.113.7 ::1 1 2\r\n",
            b"PROXY TCP6 ::1 203.0.113.7 1 2\r\n",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 051234 80\r\n",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 65536 80\r\n",
            b"PROXY TCP5 a b 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n",
            // The same verdict as its prefix up to the LF (found by the fuzz target).
            b"PROXY UNKNOWN \n\r\n",
        ] {
            assert_eq!(
                parse(bad),
                Header::Invalid,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(parse(&[b'P'; 200]), Header::Invalid);
        let mut long = b"PROXY ".to_vec();
        long.extend_from_slice(&[b'1'; 120]);
        assert_eq!(parse(&long), Header::Invalid);
    }

    #[test]
    fn version_2_headers() {
        let four = v2(1, 0x11, &[203, 0, 113, 7, 192, 0, 2, 1, 0xc8, 0x22, 0, 80]);
        assert_eq!(
            parse(&four),
            Header::Complete {
                len: 28,
                source: Some("203.0.113.7:51234".parse().unwrap())
            }
        );
        for split in 0..four.len() {
            assert_eq!(parse(&four[..split]), Header::Incomplete, "{split}");
        }
        let mut block = [0u8; 36];
        block[..16].copy_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        block[32..34].copy_from_slice(&4000u16.to_be_bytes());
        assert_eq!(
            parse(&v2(1, 0x21, &block)),
            Header::Complete {
                len: 52,
                source: Some("[2001:db8::7]:4000".parse().unwrap())
            }
        );
        assert_eq!(
            parse(&v2(0, 0x00, &[])),
            Header::Complete {
                len: 16,
                source: None
            }
        );
        assert_eq!(parse(&v2(1, 0x11, &[1, 2, 3])), Header::Invalid);
        assert_eq!(parse(&v2(2, 0x11, &[0; 12])), Header::Invalid);
        let mut wrong_version = four.clone();
        wrong_version[12] = 0x11;
        assert_eq!(parse(&wrong_version), Header::Invalid);
        assert_eq!(parse(b"\r\n\r\nGET"), Header::Invalid);
    }

    #[test]
    fn trusted_sources() {
        let trusts = |networks: &[&str], peer: &str| {
            let networks: Vec<IpNet> = networks.iter().map(|n| parse_network(n).unwrap()).collect();
            is_trusted(&networks, peer.parse().unwrap())
        };
        assert!(trusts(&["127.0.0.0/8"], "127.1.2.3"));
        assert!(trusts(&["127.0.0.0/8"], "::ffff:127.0.0.1"));
        assert!(!trusts(&["127.0.0.0/8"], "10.0.0.1"));
        assert!(trusts(&["::1"], "::1"));
        assert!(!trusts(&["::1"], "::2"));
        assert!(trusts(&["0.0.0.0/0"], "8.8.8.8"));
        assert_eq!(parse_network("10.0.0.0/33"), None);
        assert_eq!(parse_network("nope"), None);
    }
}
