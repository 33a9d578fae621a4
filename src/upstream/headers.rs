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

/// Declares a list of header names once, as a `const` array (to iterate)
/// and as a `match` (to test a name without hashing it): the two can never
/// disagree. A name's first byte and length are looked up first, so the
/// usual header (`host`, `accept`, `authorization`) is ruled out without
/// comparing it to each name of the list (this runs on every header of
/// every request).
macro_rules! header_list {
    ($(#[$doc:meta])* $list:ident, $test:ident: [$($name:literal),* $(,)?]) => {
        $(#[$doc])*
        pub const $list: &[&str] = &[$($name),*];

        #[doc = concat!("Whether `name` is one of [`", stringify!($list), "`].")]
        pub fn $test(name: &HeaderName) -> bool {
            const SHAPES: Shapes = Shapes::of($list);
            let name = name.as_str();
            SHAPES.may_hold(name) && matches!(name, $($name)|*)
        }
    };
}

/// The (first byte, length) pairs of a list of names: one bit per length
/// (up to 63) for each first byte.
struct Shapes([u64; 128]);

impl Shapes {
    const fn of(names: &[&str]) -> Self {
        let mut table = [0u64; 128];
        let mut i = 0;
        while i < names.len() {
            let name = names[i].as_bytes();
            assert!(!name.is_empty() && name.len() < 64 && name[0] < 128);
            table[name[0] as usize] |= 1 << name.len();
            i += 1;
        }
        Shapes(table)
    }

    /// False when no name of the list has `name`'s first byte and length.
    fn may_hold(&self, name: &str) -> bool {
        let bytes = name.as_bytes();
        match bytes.first() {
            Some(&first) if bytes.len() < 64 => {
                self.0.get(usize::from(first)).copied().unwrap_or(0) >> bytes.len() & 1 == 1
            }
            _ => false,
        }
    }
}

header_list! {
    /// Hop-by-hop headers (RFC 9110 §7.6.1, RFC 9112 §9.6, the legacy
    /// `Keep-Alive` / `Proxy-Connection`, and `HTTP2-Settings`, which only
    /// an `Upgrade: h2c` carries, RFC 7540 §3.2.1).
    HOP_BY_HOP, is_hop_by_hop: [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "http2-settings",
    ]
}

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

header_list! {
    /// Headers that tell a backend who the client is, which scheme, host,
    /// port or path it asked for, which method it "really" used, or who a
    /// front proxy authenticated (SPEC §3.7). Only gatehouse may speak for
    /// the client: a client's copy is always removed (`X-Forwarded-For`,
    /// `-Proto` and `-Host` are handled apart: a trusted proxy's are kept).
    /// Where each is honoured, as checked in the frameworks' sources:
    STEERING, is_steering: [
        // --- client IP ---
        "forwarded",                  // RFC 7239; Rack, Spring, Jetty, Symfony
        "x-real-ip",                  // nginx realip's default; Tornado, chi, gin
        "client-ip",                  // Rails ActionDispatch::RemoteIp (HTTP_CLIENT_IP)
        "x-client-ip",                // request-ip (npm)
        "x-cluster-client-ip",        // request-ip, Rackspace/Stingray, PHP helpers
        "true-client-ip",             // Akamai, Cloudflare Enterprise; chi RealIP
        "cf-connecting-ip",           // Cloudflare; gin PlatformCloudflare
        "cf-connecting-ipv6",         // Cloudflare pseudo-IPv4 mode
        "cf-pseudo-ipv4",             // request-ip
        "fastly-client-ip",           // Fastly; request-ip
        "cloudfront-viewer-address",  // AWS CloudFront
        "x-appengine-user-ip",        // Google App Engine; request-ip
        "x-appengine-remote-addr",    // gin PlatformGoogleAppEngine
        "fly-client-ip",              // Fly.io; gin PlatformFlyIO
        "do-connecting-ip",           // DigitalOcean; request-ip
        "x-azure-clientip",           // Azure Front Door
        "x-azure-socketip",           // Azure Front Door
        "x-envoy-external-address",   // Envoy
        "x-envoy-internal",           // Envoy: marks a request internal (trusted)
        "x-original-for",             // ASP.NET Core ForwardedHeaders
        "x-original-forwarded-for",   // ingress-nginx
        "wl-proxy-client-ip",         // WebLogic plugin
        "proxy-client-ip",            // Apache/WebLogic plugin convention
        "x-forwarded",                // request-ip, PHP helpers
        "forwarded-for",              // request-ip, PHP helpers
        "x-proxyuser-ip",             // Google; Yii2 ipHeaders example
        "x-originating-ip",           // Microsoft; PHP/Python IP helpers
        "x-remote-ip",                // PHP IP helpers
        "x-remote-addr",              // PHP IP helpers
        "x-true-ip",                  // seen in bypass lists
        "x-forwarded-by",             // Tomcat RemoteIpValve proxiesHeader
        // --- scheme ---
        "x-forwarded-ssl",            // Rack (on), Spring, gunicorn, Echo
        "x-forwarded-scheme",         // Rack, gorilla/handlers, ingress-nginx
        "x-forwarded-protocol",       // gunicorn secure_scheme_headers, Echo
        "x-url-scheme",               // Echo Scheme()
        "x-scheme",                   // Tornado xheaders, ingress-nginx
        "front-end-https",            // Microsoft; Yii2, Plack, Tomcat
        "x-forwarded-https",          // mod_rpaf, Mojolicious
        "x-https",                    // mod_rpaf
        "x-proxied-https",            // Jetty forwardedHttpsHeader
        "x-arr-ssl",                  // IIS Application Request Routing
        "wl-proxy-ssl",               // WebLogic plugin
        "cf-visitor",                 // Cloudflare ({"scheme":"https"})
        "cloudfront-forwarded-proto", // AWS CloudFront
        "x-original-proto",           // ASP.NET Core ForwardedHeaders
        "fastly-ssl",                 // Fastly
        "fly-forwarded-proto",        // Fly.io
        // --- host and port ---
        "x-forwarded-server",         // Jetty ForwardedRequestCustomizer
        "x-original-host",            // IIS/Azure, ngrok; Yii2, ASP.NET Core
        "x-original-forwarded-host",  // ingress-nginx
        "x-host",                     // host-header attack lists
        "x-http-host-override",       // host-header attack lists
        "x-forwarded-port",           // Werkzeug ProxyFix, Rack, Spring, Django, Tomcat
        "x-original-port",            // ASP.NET Core ForwardedHeaders
        // --- path ---
        "x-forwarded-prefix",         // Werkzeug ProxyFix, Spring, ASP.NET Core, Symfony
        "x-original-prefix",          // ASP.NET Core ForwardedHeaders
        "x-script-name",              // Flask "ReverseProxied" recipe
        "script_name",                // gunicorn forwarder_headers (a literal name)
        "path_info",                  // gunicorn forwarder_headers
        "x-original-url",             // IIS URL Rewrite; Symfony (before 2018), Authelia
        "x-rewrite-url",              // Microsoft; Yii2, Symfony (before 2018)
        "x-original-uri",             // nginx auth_request convention, ingress-nginx
        "x-forwarded-uri",            // Traefik ForwardAuth, Authelia
        "x-forwarded-path",           // laravel-proxypass
        "x-envoy-original-path",      // Envoy
        // --- method ---
        "x-http-method-override",     // Rack, Symfony, Yii2, ASP.NET Core, express method-override
        "x-http-method",              // Microsoft (express method-override)
        "x-method-override",          // IBM (express method-override)
        "x-original-method",          // ingress-nginx, auth servers
        "x-forwarded-method",         // Traefik ForwardAuth, Authelia
        // --- identity a front proxy vouches for ---
        "x-forwarded-client-cert",    // Envoy
        "wl-proxy-client-cert",       // WebLogic plugin
        "ms-aspnetcore-clientcert",   // ASP.NET Core behind IIS
        "ssl_client_cert",            // Tomcat SSLValve
        "remote_user",                // gunicorn forwarder_headers
        "remote-user",                // Authelia, authentik
        "x-forwarded-user",           // oauth2-proxy
        "x-forwarded-email",          // oauth2-proxy
        "x-forwarded-preferred-username", // oauth2-proxy
        "x-forwarded-groups",         // oauth2-proxy
        "x-forwarded-access-token",   // oauth2-proxy
        "x-auth-request-user",        // oauth2-proxy
        "x-auth-request-email",       // oauth2-proxy
        // --- httpoxy (CVE-2016-5385): CGI turns it into HTTP_PROXY ---
        "proxy",
    ]
}

/// Whether a request asks for a protocol upgrade (`Connection: upgrade` plus
/// `Upgrade`, RFC 9110 §7.8). Only meaningful for HTTP/1.1.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

/// Whether a request asks to upgrade to WebSocket and nothing else (RFC 6455
/// §4.1): one `Upgrade` header whose value is `websocket`. Any other upgrade
/// (`h2c`, a custom protocol, a list) is never relayed (SPEC §3.7).
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    is_upgrade(headers) && names_websocket(headers)
}

/// Whether a message's one `Upgrade` header is `websocket`.
pub fn names_websocket(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::UPGRADE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    value
        .as_bytes()
        .trim_ascii()
        .eq_ignore_ascii_case(b"websocket")
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

/// Whether `name` is a hop-by-hop or steering header: always removed from a
/// forwarded request.
fn always_dropped(name: &HeaderName) -> bool {
    is_hop_by_hop(name) || is_steering(name)
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
/// themselves are the caller's to remove). The usual `Connection:
/// keep-alive` names a hop-by-hop header only: nothing is allocated or
/// looked up for it.
fn strip_connection_named(headers: &mut HeaderMap) {
    let mut named: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        for token in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            // `keep-alive`, `upgrade`… are removed with the hop-by-hop
            // headers anyway; a token that is no header name names none.
            if HOP_BY_HOP.iter().any(|h| token.eq_ignore_ascii_case(h)) {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                named.push(name);
            }
        }
    }
    for name in named {
        headers.remove(name);
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
    /// A WebSocket upgrade to pass on (the only upgrade ever relayed).
    pub websocket: bool,
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
    if out.websocket {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
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
/// go (a `101` to a WebSocket upgrade gets back the `Connection`/`Upgrade`
/// pair the client needs; the caller checked that the backend named
/// websocket).
pub fn rewrite_response(headers: &mut HeaderMap, switching_protocols: bool) {
    strip_hop_by_hop(headers);
    if switching_protocols {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
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
            websocket: false,
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
        for name in HOP_BY_HOP.iter().chain(STEERING) {
            assert!(always_dropped(&HeaderName::from_static(name)), "{name}");
        }
        for name in HOP_BY_HOP {
            assert!(is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
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
    fn the_shape_filter_keeps_every_listed_name_and_only_those() {
        // Every name of both lists passes the filter and the match.
        for name in HOP_BY_HOP.iter().chain(STEERING) {
            let header = HeaderName::from_static(name);
            assert!(is_hop_by_hop(&header) || is_steering(&header), "{name}");
        }
        // Names of a listed shape but other letters, and names longer than
        // any shape, are not listed.
        for name in HOP_BY_HOP.iter().chain(STEERING) {
            let mut twin = name.to_string();
            twin.pop();
            twin.push('q');
            let twin = HeaderName::from_bytes(twin.as_bytes()).unwrap();
            assert!(!always_dropped(&twin), "{twin}");
        }
        let long = HeaderName::from_bytes(&[b'x'; 100]).unwrap();
        assert!(!always_dropped(&long));
    }

    #[test]
    fn connection_tokens_of_any_case_name_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("Keep-Alive, CLOSE, X-Hop , , Upgrade"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        h.insert("close", HeaderValue::from_static("a header named close"));
        strip_hop_by_hop(&mut h);
        assert!(h.is_empty(), "{h:?}");
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
        h.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        assert!(is_websocket_upgrade(&h));
        let rid = HeaderValue::from_static("r");
        let mut out = outgoing(&rid, &[], &[], false);
        out.websocket = true;
        rewrite_request(&mut h, &out);
        assert_eq!(h[header::CONNECTION], "upgrade");
        assert_eq!(h[header::UPGRADE], "websocket");
    }

    #[test]
    fn only_a_websocket_upgrade_is_one() {
        for (upgrade, websocket) in [
            ("websocket", true),
            (" websocket ", true),
            ("h2c", false),
            ("websocket, h2c", false),
            ("h2c, websocket", false),
            ("TLS/1.0", false),
            ("websocketx", false),
        ] {
            let mut h = HeaderMap::new();
            h.insert(
                header::CONNECTION,
                HeaderValue::from_static("Upgrade, HTTP2-Settings"),
            );
            h.insert(header::UPGRADE, HeaderValue::from_str(upgrade).unwrap());
            assert_eq!(is_websocket_upgrade(&h), websocket, "{upgrade:?}");
        }
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.append(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.append(header::UPGRADE, HeaderValue::from_static("h2c"));
        assert!(!is_websocket_upgrade(&h));
    }

    #[test]
    fn an_h2c_upgrade_is_stripped_whole() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("Upgrade, HTTP2-Settings"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        h.insert(
            "http2-settings",
            HeaderValue::from_static("AAMAAABkAAQAAP__"),
        );
        let rid = HeaderValue::from_static("r");
        rewrite_request(&mut h, &outgoing(&rid, &[], &[], false));
        assert!(!h.contains_key(header::UPGRADE));
        assert!(!h.contains_key(header::CONNECTION));
        assert!(!h.contains_key("http2-settings"));
    }

    #[test]
    fn steering_headers_never_reach_the_backend() {
        let mut h = HeaderMap::new();
        for name in STEERING {
            h.insert(*name, HeaderValue::from_static("127.0.0.1"));
        }
        let rid = HeaderValue::from_static("r");
        rewrite_request(&mut h, &outgoing(&rid, &[], &[], true));
        for name in STEERING {
            assert!(!h.contains_key(*name), "{name}");
        }
    }
}
