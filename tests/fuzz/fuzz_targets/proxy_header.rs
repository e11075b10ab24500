//! The PROXY protocol header parser (versions 1 and 2) on arbitrary connection starts.
//!
//! The first byte picks a prefix put before the rest, so that valid headers are reached
//! quickly: none, `PROXY `, `PROXY TCP4 `, `PROXY TCP6 `, `PROXY UNKNOWN`, the version 2
//! signature, or the signature and a version/command byte of 0x20 or 0x21.
//!
//! Checks, over every prefix of the input (the bytes of a connection, however they arrive):
//! - no panic;
//! - the verdicts, prefix by prefix, are `Incomplete` for a while and then either `Complete`
//!   with the same `len` and `source` for every longer prefix, or `Invalid` for every longer
//!   prefix: a prefix of a header is never refused (monotonic `Invalid`), and the bytes after
//!   a header never change it;
//! - `Complete { len }` first appears at the prefix of exactly `len` bytes, `len` is within
//!   the input, and the header is what its version says it is: a version 1 line starting with
//!   `PROXY ` and ending at its first CRLF, without a bare LF, at most 107 bytes; a version
//!   2 header of 16 bytes plus the address block its length field announces;
//! - a source address is named only by a TCP header (`TCP4`/`TCP6`, or version 2 PROXY over
//!   TCP/IPv4 or TCP/IPv6), of the family it says, and for version 2 it is exactly the
//!   address and port in the block.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use percore::internals::{parse_proxy_header, ProxyHeader};

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

fn input(data: &[u8]) -> Option<Vec<u8>> {
    let (&mode, rest) = data.split_first()?;
    let mut buf = match mode % 8 {
        0 | 1 => Vec::new(),
        2 => b"PROXY ".to_vec(),
        3 => b"PROXY TCP4 ".to_vec(),
        4 => b"PROXY TCP6 ".to_vec(),
        5 => b"PROXY UNKNOWN".to_vec(),
        6 => V2_SIGNATURE.to_vec(),
        _ => {
            let mut v2 = V2_SIGNATURE.to_vec();
            v2.push(0x20 | (mode >> 7));
            v2
        }
    };
    buf.extend_from_slice(rest);
    Some(buf)
}

/// What a whole header must look like, given that the parser said `Complete` for it.
fn check_complete(header: &[u8], source: Option<SocketAddr>) {
    if header.first() == Some(&b'\r') {
        assert!(header.starts_with(V2_SIGNATURE), "{header:?}");
        assert!(header.len() >= 16);
        assert_eq!(header[12] >> 4, 2, "version 2 only");
        let command = header[12] & 0xf;
        assert!(command <= 1);
        let block_len = usize::from(u16::from_be_bytes([header[14], header[15]]));
        assert_eq!(header.len(), 16 + block_len);
        let block = &header[16..];
        let expected = match (command, header[13]) {
            (0, _) => None,
            (1, 0x11) => {
                assert!(block.len() >= 12);
                let ip = Ipv4Addr::new(block[0], block[1], block[2], block[3]);
                let port = u16::from_be_bytes([block[8], block[9]]);
                Some(SocketAddr::new(IpAddr::V4(ip), port))
            }
            (1, 0x21) => {
                assert!(block.len() >= 36);
                let ip: [u8; 16] = block[..16].try_into().unwrap();
                let port = u16::from_be_bytes([block[32], block[33]]);
                Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
            }
            _ => None,
        };
        assert_eq!(source, expected, "{header:?}");
    } else {
        assert!(header.starts_with(b"PROXY "), "{header:?}");
        assert!(header.ends_with(b"\r\n"), "{header:?}");
        assert!(header.len() <= 107, "{}", header.len());
        // The header ends at its first CRLF.
        let first_crlf = header.windows(2).position(|w| w == b"\r\n").unwrap();
        assert_eq!(first_crlf + 2, header.len(), "{header:?}");
        assert!(!header[..first_crlf].contains(&b'\n'), "bare LF: {header:?}");
        let line = std::str::from_utf8(&header[6..header.len() - 2]).expect("UTF-8 line");
        let fields: Vec<&str> = line.split(' ').collect();
        match fields[0] {
            "UNKNOWN" => assert_eq!(source, None),
            family @ ("TCP4" | "TCP6") => {
                assert_eq!(fields.len(), 5, "{line:?}");
                let source = source.expect("a TCP header names its source");
                assert_eq!(source.is_ipv4(), family == "TCP4", "{line:?}");
                assert_eq!(fields[1].parse::<IpAddr>(), Ok(source.ip()), "{line:?}");
                assert_eq!(fields[3], source.port().to_string(), "{line:?}");
                assert!(fields[2].parse::<IpAddr>().is_ok(), "{line:?}");
                let port = fields[4];
                assert!(
                    port.parse::<u16>().is_ok()
                        && port.bytes().all(|b| b.is_ascii_digit())
                        && (port == "0" || !port.starts_with('0')),
                    "{line:?}"
                );
            }
            other => panic!("Complete for family {other:?}: {line:?}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(buf) = input(data) else {
        return;
    };
    // Beyond the largest header the parser reads (16 + 4096 bytes) more bytes add nothing.
    let buf = &buf[..buf.len().min(4200)];
    let whole = parse_proxy_header(buf);
    let mut settled: Option<(usize, ProxyHeader)> = None;
    for k in 0..=buf.len() {
        let verdict = parse_proxy_header(&buf[..k]);
        match settled {
            None => match verdict {
                ProxyHeader::Incomplete => {}
                ProxyHeader::Complete { len, source } => {
                    assert_eq!(len, k, "a header is complete exactly when its last byte is in");
                    check_complete(&buf[..len], source);
                    settled = Some((k, verdict));
                }
                ProxyHeader::Invalid => settled = Some((k, verdict)),
            },
            Some((at, first)) => assert_eq!(
                verdict, first,
                "{first:?} for the first {at} bytes, then {verdict:?} for {k}: {:?}",
                &buf[..k]
            ),
        }
    }
    let expected = settled.map_or(ProxyHeader::Incomplete, |(_, v)| v);
    assert_eq!(whole, expected);
    if let ProxyHeader::Complete { len, .. } = whole {
        assert!(len <= buf.len());
    }
});
