//! The PROXY protocol (HAProxy's v1 text and v2 binary headers) on the TLS
//! listener, behind an L4 load balancer (MetalLB, AWS NLB): with
//! `connections.proxy_protocol = true`, a connection from a network of
//! `proxy_protocol_trusted` must start with a header, and the client
//! address in it is the one the audit log, the failure budget and the
//! per-address caps see. A connection from any other source that starts
//! with a PROXY header is refused (it could claim any address); one that
//! starts with TLS is served as a direct client.

use ipnet::IpNet;
use ppp::{HeaderResult, v1, v2};
use std::net::SocketAddr;
use tokio::{io::AsyncReadExt, net::TcpStream};

/// The first bytes of a v2 header.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 header (including CRLF), per the specification.
const V1_MAX: usize = 107;
/// Longest v2 header accepted (16-byte preamble plus addresses and TLVs).
const V2_MAX: usize = 16 + 1024;

/// Why a PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A header from a source outside `proxy_protocol_trusted`.
    #[error("PROXY protocol header from an untrusted source")]
    Untrusted,
    /// A trusted source sent no header.
    #[error("a trusted load balancer sent no PROXY protocol header")]
    Missing,
    /// The header does not parse.
    #[error("malformed PROXY protocol header")]
    Malformed,
    /// The connection failed while reading it.
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads the PROXY header of `tcp` per the rules of the module doc. The
/// client's address, or `peer` for a direct client or a `LOCAL` header
/// (the load balancer's own health check).
pub async fn read_client(
    tcp: &mut TcpStream,
    peer: SocketAddr,
    trusted: &[IpNet],
) -> Result<SocketAddr, ProxyError> {
    let mut first = [0u8; 1];
    if tcp.peek(&mut first).await? == 0 {
        return Err(ProxyError::Missing);
    }
    let starts_proxy = first[0] == b'P' || first[0] == V2_SIGNATURE[0];
    let is_trusted = trusted.iter().any(|net| net.contains(&peer.ip()));
    match (is_trusted, starts_proxy) {
        (false, true) => Err(ProxyError::Untrusted),
        (false, false) => Ok(peer),
        (true, false) => Err(ProxyError::Missing),
        (true, true) => {
            let header = read_header(tcp, first[0]).await?;
            parse(&header).map(|client| client.unwrap_or(peer))
        }
    }
}

/// Reads exactly one header (v1 to its CRLF, v2 by its length): nothing of
/// the TLS stream after it is consumed.
async fn read_header(tcp: &mut TcpStream, first: u8) -> Result<Vec<u8>, ProxyError> {
    if first == b'P' {
        let mut header = Vec::with_capacity(V1_MAX);
        while !header.ends_with(b"\r\n") {
            if header.len() >= V1_MAX {
                return Err(ProxyError::Malformed);
            }
            header.push(tcp.read_u8().await?);
        }
        return Ok(header);
    }
    let mut header = vec![0u8; 16];
    tcp.read_exact(&mut header).await?;
    if header[..12] != V2_SIGNATURE {
        return Err(ProxyError::Malformed);
    }
    let len = usize::from(u16::from_be_bytes([header[14], header[15]]));
    if 16 + len > V2_MAX {
        return Err(ProxyError::Malformed);
    }
    header.resize(16 + len, 0);
    tcp.read_exact(&mut header[16..]).await?;
    Ok(header)
}

/// The client address of a complete header; `None` for `LOCAL` / `UNKNOWN`.
pub fn parse(header: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    match HeaderResult::parse(header) {
        HeaderResult::V1(Ok(h)) => Ok(match h.addresses {
            v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
            v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
            v1::Addresses::Unknown => None,
        }),
        HeaderResult::V2(Ok(h)) => Ok(match (h.command, h.addresses) {
            (v2::Command::Local, _) => None,
            (_, v2::Addresses::IPv4(a)) => {
                Some(SocketAddr::from((a.source_address, a.source_port)))
            }
            (_, v2::Addresses::IPv6(a)) => {
                Some(SocketAddr::from((a.source_address, a.source_port)))
            }
            _ => None,
        }),
        _ => Err(ProxyError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_headers_give_the_client_address() {
        let v1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\n";
        assert_eq!(
            parse(v1).expect("v1"),
            Some("203.0.113.7:51000".parse().expect("addr"))
        );
        let v1_6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n";
        assert_eq!(
            parse(v1_6).expect("v1 ipv6"),
            Some("[2001:db8::7]:51000".parse().expect("addr"))
        );
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").expect("unknown"), None);
        let src: SocketAddr = "198.51.100.9:40000".parse().expect("addr");
        let dst: SocketAddr = "10.0.0.1:443".parse().expect("addr");
        let v2 = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (src, dst),
        )
        .build()
        .expect("build");
        assert_eq!(parse(&v2).expect("v2"), Some(src));
        assert!(parse(b"PROXY TCP4 nonsense\r\n").is_err());
    }
}
