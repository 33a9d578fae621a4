//! The client's IP address (SPEC §3.3).
//!
//! The TCP peer, unless the peer is a trusted proxy: then the right-most
//! address of `X-Forwarded-For` that is not itself trusted. Addresses are
//! read right to left because only the right end of the list was written by
//! proxies we trust; anything to the left of the first untrusted hop is
//! whatever the client claimed.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

use crate::upstream::headers::X_FORWARDED_FOR;

/// The client's address, and whether the peer was a trusted proxy.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> (IpAddr, bool) {
    let peer = peer.to_canonical();
    if !is_trusted(peer, trusted) {
        return (peer, false);
    }
    // Walk every X-Forwarded-For value, right to left.
    let mut client = peer;
    for value in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
        let Ok(value) = value.to_str() else {
            return (client, true);
        };
        for hop in value.rsplit(',') {
            let Some(ip) = parse_hop(hop.trim()) else {
                // An unreadable hop ends what we can believe.
                return (client, true);
            };
            client = ip;
            if !is_trusted(ip, trusted) {
                return (client, true);
            }
        }
    }
    (client, true)
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:443`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = hop.parse::<std::net::SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse::<IpAddr>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn xff(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(X_FORWARDED_FOR, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let (ip, trusted) = client_ip(
            "203.0.113.9".parse().unwrap(),
            &xff(&["1.1.1.1"]),
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(ip, "203.0.113.9".parse::<IpAddr>().unwrap());
        assert!(!trusted);
    }

    #[test]
    fn trusted_proxy_chain_yields_rightmost_untrusted_hop() {
        let h = xff(&["6.6.6.6, 198.51.100.4", "10.0.0.3"]);
        let (ip, trusted) = client_ip("10.0.0.2".parse().unwrap(), &h, &nets(&["10.0.0.0/8"]));
        assert_eq!(ip, "198.51.100.4".parse::<IpAddr>().unwrap());
        assert!(trusted);
    }

    #[test]
    fn all_trusted_chain_yields_leftmost() {
        let h = xff(&["10.1.1.1, 10.2.2.2"]);
        let (ip, _) = client_ip("10.0.0.2".parse().unwrap(), &h, &nets(&["10.0.0.0/8"]));
        assert_eq!(ip, "10.1.1.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn garbage_hop_stops_the_walk() {
        let h = xff(&["1.2.3.4, not-an-ip, 10.0.0.9"]);
        let (ip, _) = client_ip("10.0.0.2".parse().unwrap(), &h, &nets(&["10.0.0.0/8"]));
        assert_eq!(ip, "10.0.0.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn ipv4_mapped_peer_is_canonical() {
        let (ip, _) = client_ip("::ffff:192.0.2.1".parse().unwrap(), &HeaderMap::new(), &[]);
        assert_eq!(ip, "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn bracketed_and_ported_hops_parse() {
        let h = xff(&["[2001:db8::7]:443"]);
        let (ip, _) = client_ip("127.0.0.1".parse().unwrap(), &h, &nets(&["127.0.0.0/8"]));
        assert_eq!(ip, "2001:db8::7".parse::<IpAddr>().unwrap());
    }
}
