//! Header rewriting on the way upstream and back (SPEC §3.7, §3.8).
//!
//! Order matters and is fixed here: first every hop-by-hop header and every
//! header the client named in `Connection` is removed (RFC 9110 §7.6.1), then
//! every header gatehouse owns (identity headers, `X-Forwarded-*`, the request
//! id, headers that some backends trust to rewrite the URL), and only then are
//! gatehouse's own values added — so no client header can remove or shadow
//! them.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Hop-by-hop headers (RFC 9110 §7.6.1, RFC 9112 §9.6, and the legacy
/// `Keep-Alive` / `Proxy-Connection`).
pub const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers that tell a backend who the client is or which URL it asked for.
/// Only gatehouse may set them: a client's copy is removed (from a trusted
/// proxy, `X-Forwarded-For/-Proto/-Host` are kept and appended to instead).
pub const FORWARDING: [HeaderName; 11] = [
    HeaderName::from_static("forwarded"),
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("x-client-ip"),
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
    HeaderName::from_static("x-original-uri"),
    HeaderName::from_static("x-forwarded-uri"),
    HeaderName::from_static("x-forwarded-path"),
    HeaderName::from_static("x-forwarded-prefix"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-forwarded-server"),
];

/// Whether a request asks for a protocol upgrade (`Connection: upgrade` plus
/// `Upgrade`, RFC 9110 §7.8). Only meaningful for HTTP/1.1.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Whether `name` is a hop-by-hop or forwarding header: always removed from
/// a forwarded request. A `match` on the name (dispatched on its length)
/// rather than a set: no hashing per header.
fn always_dropped(name: &HeaderName) -> bool {
    is_hop_by_hop(name)
        || matches!(
            name.as_str(),
            "forwarded"
                | "x-real-ip"
                | "x-client-ip"
                | "x-original-url"
                | "x-rewrite-url"
                | "x-original-uri"
                | "x-forwarded-uri"
                | "x-forwarded-path"
                | "x-forwarded-prefix"
                | "x-forwarded-port"
                | "x-forwarded-server"
        )
}

/// Whether `name` is one of [`HOP_BY_HOP`] (a `match`, as above).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Removes every header for which `doomed` holds. It looks at each header
/// present, instead of removing each of the ~30 names gatehouse drops one
/// by one: a message carries a handful of headers, and usually none or two
/// of those names. Allocates nothing.
pub fn remove_where(headers: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) {
    // Each pass removes one name (the map cannot change while its keys are
    // iterated); a pass that finds nothing ends it.
    while let Some(name) = headers.keys().find(|name| doomed(name)).cloned() {
        headers.remove(name);
    }
}

/// Removes every header named in `Connection` (the hop-by-hop headers
/// themselves are the caller's to remove). Names are looked up as `&str`:
/// nothing is allocated for the usual `Connection: keep-alive`.
fn strip_connection_named(headers: &mut HeaderMap) {
    let Some(first) = headers.get(header::CONNECTION).cloned() else {
        return;
    };
    // More than one Connection header is rare; only then is a list made.
    let more: Vec<HeaderValue> = headers
        .get_all(header::CONNECTION)
        .iter()
        .skip(1)
        .cloned()
        .collect();
    for value in std::iter::once(&first).chain(&more) {
        let Ok(value) = value.to_str() else { continue };
        for token in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            // A token that is no header name names no header: nothing to remove.
            headers.remove(token);
        }
    }
}

/// Removes hop-by-hop headers and every header named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    strip_connection_named(headers);
    remove_where(headers, is_hop_by_hop);
}

/// What gatehouse adds to a forwarded request.
pub struct Outgoing<'a> {
    /// The TCP peer: what `X-Forwarded-For` gets appended (a trusted proxy
    /// or the client itself).
    pub peer_ip: IpAddr,
    /// The peer is a trusted proxy: keep and append to its forwarding headers.
    pub from_trusted_proxy: bool,
    /// Host the client asked for (Host header or HTTP/2 `:authority`).
    pub host: Option<&'a HeaderValue>,
    pub request_id_header: &'a HeaderName,
    pub request_id: &'a HeaderValue,
    /// Headers only gatehouse sets (identity headers): client copies removed.
    pub owned: &'a [HeaderName],
    /// Extra headers to remove (the API key header, `Authorization` when not forwarded).
    pub remove: &'a [HeaderName],
    /// Identity headers to add, after everything else was removed.
    pub identity: &'a [(HeaderName, HeaderValue)],
    /// `Upgrade` value to pass on for a WebSocket (or other) upgrade.
    pub upgrade: Option<HeaderValue>,
}

/// Rewrites a request's headers for the upstream, in the order the module doc gives.
pub fn rewrite_request(headers: &mut HeaderMap, out: &Outgoing<'_>) {
    strip_connection_named(headers);
    let prior_for = if out.from_trusted_proxy {
        join_values(headers, &X_FORWARDED_FOR)
    } else {
        None
    };
    let trusted = out.from_trusted_proxy;
    remove_where(headers, |name| {
        always_dropped(name)
            || out.owned.contains(name)
            || out.remove.contains(name)
            || name == out.request_id_header
            || name == X_FORWARDED_FOR
            || (!trusted && (name == X_FORWARDED_PROTO || name == X_FORWARDED_HOST))
    });
    // Room for what is added below: the map grows once, not once per insert.
    headers.reserve(6 + out.identity.len());

    let xff = match prior_for {
        Some(prior) => HeaderValue::from_str(&format!("{prior}, {}", out.peer_ip.to_canonical())),
        None => ip_header_value(out.peer_ip.to_canonical()),
    };
    if let Ok(v) = xff {
        headers.insert(X_FORWARDED_FOR, v);
    }
    // From an untrusted peer both were removed above: no need to look.
    if !trusted || !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    }
    if let Some(host) = out.host {
        if !trusted || !headers.contains_key(&X_FORWARDED_HOST) {
            headers.insert(X_FORWARDED_HOST, host.clone());
        }
        headers.insert(header::HOST, host.clone());
    }
    headers.insert(out.request_id_header.clone(), out.request_id.clone());
    for (name, value) in out.identity {
        headers.insert(name.clone(), value.clone());
    }
    if let Some(upgrade) = &out.upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, upgrade.clone());
    }
}

/// An IP address as a header value, formatted on the stack: IPv4 by hand
/// (`fmt` costs ~1,000 instructions per request here), IPv6 with `fmt`.
fn ip_header_value(ip: IpAddr) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    // The longest IPv6 text is 45 bytes.
    let mut buf = [0u8; 48];
    let len = match ip {
        IpAddr::V4(v4) => {
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[len] = b'.';
                    len += 1;
                }
                if octet >= 100 {
                    buf[len] = b'0' + octet / 100;
                    len += 1;
                }
                if octet >= 10 {
                    buf[len] = b'0' + octet / 10 % 10;
                    len += 1;
                }
                buf[len] = b'0' + octet % 10;
                len += 1;
            }
            len
        }
        IpAddr::V6(_) => {
            use std::io::Write as _;
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            let _ = write!(cursor, "{ip}");
            cursor.position() as usize
        }
    };
    HeaderValue::from_bytes(&buf[..len])
}

/// All values of `name` joined with ", " (a header may be repeated).
fn join_values(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut joined: Option<String> = None;
    for v in headers.get_all(name) {
        let Ok(v) = v.to_str() else { continue };
        match &mut joined {
            Some(s) => {
                s.push_str(", ");
                s.push_str(v);
            }
            None => joined = Some(v.to_owned()),
        }
    }
    joined
}

/// Rewrites a backend's response headers for the client: hop-by-hop headers
/// go (except on a `101`, whose `Connection`/`Upgrade` the client needs).
pub fn rewrite_response(headers: &mut HeaderMap, switching_protocols: bool) {
    if switching_protocols {
        let upgrade = headers.get(header::UPGRADE).cloned();
        strip_hop_by_hop(headers);
        if let Some(upgrade) = upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, upgrade);
        }
    } else {
        strip_hop_by_hop(headers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static RID: HeaderName = HeaderName::from_static("x-request-id");
    const USER: HeaderName = HeaderName::from_static("x-auth-user");

    fn outgoing<'a>(
        rid: &'a HeaderValue,
        owned: &'a [HeaderName],
        identity: &'a [(HeaderName, HeaderValue)],
        trusted: bool,
    ) -> Outgoing<'a> {
        Outgoing {
            peer_ip: "203.0.113.7".parse().unwrap(),
            from_trusted_proxy: trusted,
            host: None,
            request_id_header: &RID,
            request_id: rid,
            owned,
            remove: &[],
            identity,
            upgrade: None,
        }
    }

    #[test]
    fn connection_header_cannot_strip_identity() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, X-Auth-User, x-request-id"),
        );
        h.insert(USER, HeaderValue::from_static("mallory"));
        let rid = HeaderValue::from_static("abc");
        let identity = [(USER, HeaderValue::from_static("alice"))];
        rewrite_request(&mut h, &outgoing(&rid, &[USER], &identity, false));
        assert_eq!(h[USER], "alice");
        assert_eq!(h[&RID], "abc");
        assert!(!h.contains_key(header::CONNECTION));
    }

    #[test]
    fn headers_named_in_connection_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret-Hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert!(!h.contains_key("x-secret-hop"));
        assert!(!h.contains_key("keep-alive"));
        assert!(!h.contains_key(header::TE));
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn untrusted_forwarding_headers_are_replaced() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("1.2.3.4"));
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        h.insert(X_FORWARDED_HOST, HeaderValue::from_static("evil.example"));
        h.insert("x-original-url", HeaderValue::from_static("/admin"));
        let rid = HeaderValue::from_static("r");
        rewrite_request(&mut h, &outgoing(&rid, &[], &[], false));
        assert_eq!(h[X_FORWARDED_FOR], "203.0.113.7");
        assert_eq!(h[X_FORWARDED_PROTO], "https");
        assert!(!h.contains_key(X_FORWARDED_HOST));
        assert!(!h.contains_key("x-original-url"));
    }

    #[test]
    fn always_dropped_covers_the_hop_by_hop_and_forwarding_lists() {
        for name in HOP_BY_HOP.iter().chain(&FORWARDING) {
            assert!(always_dropped(name), "{name}");
        }
        for name in &HOP_BY_HOP {
            assert!(is_hop_by_hop(name), "{name}");
        }
        assert!(!is_hop_by_hop(&HeaderName::from_static("forwarded")));
        for kept in [
            "host",
            "authorization",
            "x-forwarded-for",
            "x-request-id",
            "accept",
        ] {
            assert!(!always_dropped(&HeaderName::from_static(kept)), "{kept}");
        }
    }

    #[test]
    fn ip_values_fit_the_stack_buffer() {
        for ip in [
            "203.0.113.7",
            "0.0.0.0",
            "10.20.100.255",
            "255.255.255.255",
            "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
            "::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_header_value(ip).unwrap(), ip.to_string().as_str());
        }
    }

    #[test]
    fn trusted_proxy_chain_is_appended_to() {
        let mut h = HeaderMap::new();
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("198.51.100.1"));
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.2"));
        let rid = HeaderValue::from_static("r");
        rewrite_request(&mut h, &outgoing(&rid, &[], &[], true));
        assert_eq!(h[X_FORWARDED_FOR], "198.51.100.1, 10.0.0.2, 203.0.113.7");
    }

    #[test]
    fn upgrade_survives_for_websockets() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&h));
        let rid = HeaderValue::from_static("r");
        let mut out = outgoing(&rid, &[], &[], false);
        out.upgrade = h.get(header::UPGRADE).cloned();
        rewrite_request(&mut h, &out);
        assert_eq!(h[header::CONNECTION], "upgrade");
        assert_eq!(h[header::UPGRADE], "websocket");
    }
}
