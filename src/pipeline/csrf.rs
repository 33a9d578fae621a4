//! The CSRF check of browser sessions (SPEC §9): whether a request a cookie
//! may have authenticated was sent by a page of this origin, or of an origin
//! the config trusts. It reads only what a browser sets and a page cannot:
//! `Sec-Fetch-Site` (W3C Fetch Metadata) and `Origin` (RFC 6454 §7, Fetch
//! §3.1). No token, no state: [`check`] is a pure function of the headers.
//!
//! The algorithm is Go 1.25's `http.CrossOriginProtection`, adapted:
//!
//! 1. `Sec-Fetch-Site: same-origin` or `none` (the user typed the address or
//!    used a bookmark): allowed.
//! 2. Otherwise, when `Origin` is present, it decides: allowed only when it
//!    is this request's own origin — `https://` and the request's own host
//!    and port (gatehouse terminates TLS, so its origin is always https) —
//!    or a trusted one ([`Trusted`]). Go checks the own origin only without
//!    `Sec-Fetch-Site`, and compares `Origin` with `Host` as text; here both
//!    go through the one origin parser ([`crate::host`]), so case, a default
//!    `:443` and IPv6 spellings cannot make the same origin look like two,
//!    and an `http://` origin is never this one.
//! 3. Neither header: allowed. Every browser in use sends `Origin` on a
//!    cross-origin unsafe request, so this is not a browser, and a client
//!    that is not a browser is not forged by a page.
//! 4. Anything else — `Sec-Fetch-Site: same-site` or `cross-site` without an
//!    `Origin` — is refused.
//!
//! Which requests need the check is the caller's to decide (SPEC §9:
//! session-authenticated requests with a method other than GET, HEAD or
//! OPTIONS, session-authenticated WebSocket upgrades, every POST to the
//! sign-in and logout endpoints).
//!
//! Edge cases, all decided toward refusing what a browser never sends:
//!
//! - `Origin: null` (a sandboxed frame, a `data:` URL, a redirect across
//!   sites, `Referrer-Policy: no-referrer`) is no origin anyone trusts:
//!   refused unless `Sec-Fetch-Site` is `same-origin`/`none`.
//! - A malformed `Origin` (a path, userinfo, a trailing dot, bytes that are
//!   not ASCII, an empty value) is refused the same way.
//! - Two or more `Origin` or `Sec-Fetch-Site` fields: refused before either
//!   is read. Browsers send one of each; two are someone choosing which one
//!   a reader will see.
//! - `Sec-Fetch-Site` compares exactly (the Fetch Metadata values are
//!   lowercase tokens). An unknown value — `Same-Origin`, a list, an empty
//!   value, garbage — is not `same-origin`: `Origin` decides, and without one
//!   it is refused like `cross-site`.
//! - `Sec-Fetch-Site: same-site` or `cross-site` with this origin's or a
//!   trusted `Origin`: allowed (`Origin` decides; a browser never sends an
//!   `Origin` the page does not have).
//! - A `"*"` entry in a trusted list trusts nothing here: the CSRF check is
//!   never switched off by a wildcard (the config refuses `"*"` with
//!   credentials, and should refuse it in `csrf.trusted_origins`).

use std::net::Ipv6Addr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::{self, Origin};
use crate::host::{self, Canonical, HostPort};

/// `Sec-Fetch-Site` (W3C Fetch Metadata Request Headers §2.1).
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// Why a request was refused. The messages never echo a header value. The
/// rescue answers every one of them `403 {"error":"csrf_rejected"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CsrfRejected {
    /// `Sec-Fetch-Site` says another site (or something unknown) sent it, and
    /// no `Origin` says who.
    #[error("csrf: cross-site request without an origin")]
    CrossSite,
    /// `Origin` is `null`, malformed, or neither this origin nor trusted.
    #[error("csrf: request from an origin that is neither this one nor trusted")]
    UntrustedOrigin,
    /// More than one `Origin` or `Sec-Fetch-Site` field.
    #[error("csrf: repeated origin or sec-fetch-site header")]
    Repeated,
}

/// The origins besides its own a session request may come from, built once
/// per config: `auth.sessions.csrf.trusted_origins`, plus
/// `cors.allowed_origins` when `cors.allow_credentials` is true (a page
/// allowed to read credentialed answers is allowed to send them).
/// Subdomain wildcards match as in CORS: one or more labels before the
/// domain, never the apex, scheme and port exactly.
#[derive(Debug, Clone, Default)]
pub struct Trusted {
    origins: Vec<Origin>,
}

impl Trusted {
    /// `trusted_origins` is `auth.sessions.csrf.trusted_origins`, validated
    /// like `cors.allowed_origins`. `"*"` entries are dropped (see the
    /// module docs).
    pub fn new(trusted_origins: &[Origin], cors: &config::Cors) -> Self {
        let cors_origins: &[Origin] = if cors.allow_credentials {
            &cors.allowed_origins
        } else {
            &[]
        };
        let origins = trusted_origins
            .iter()
            .chain(cors_origins)
            .filter(|o| **o != Origin::Any)
            .cloned()
            .collect();
        Trusted { origins }
    }

    /// Whether `origin` is one of the trusted origins.
    fn contains(&self, origin: &host::Origin<'_>) -> bool {
        self.origins.iter().any(|allowed| allowed.matches(origin))
    }
}

/// Whether a request that needs the CSRF check may go on (see the module
/// docs for the rule). `own_host` is the request's validated host, from
/// `Host` or `:authority`.
pub fn check(
    headers: &HeaderMap,
    own_host: &Canonical,
    trusted: &Trusted,
) -> Result<(), CsrfRejected> {
    let site = only(headers, &SEC_FETCH_SITE)?;
    let origin = only(headers, &header::ORIGIN)?;
    if let Some(b"same-origin" | b"none") = site.map(HeaderValue::as_bytes) {
        return Ok(());
    }
    match (site, origin) {
        (_, Some(origin)) => {
            let origin =
                host::parse_origin(origin.as_bytes()).map_err(|_| CsrfRejected::UntrustedOrigin)?;
            if is_own(&origin, own_host) || trusted.contains(&origin) {
                Ok(())
            } else {
                Err(CsrfRejected::UntrustedOrigin)
            }
        }
        (None, None) => Ok(()),
        (Some(_), None) => Err(CsrfRejected::CrossSite),
    }
}

/// The one value of the header `name`, if any; two or more are refused.
fn only<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a HeaderValue>, CsrfRejected> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(CsrfRejected::Repeated);
    }
    Ok(first)
}

/// Whether `origin` is `https://` + the request's own host and port (a
/// missing port on either side is 443).
fn is_own(origin: &host::Origin<'_>, own: &Canonical) -> bool {
    origin.scheme.eq_ignore_ascii_case("https")
        && origin.host.port.unwrap_or(443) == own.port().unwrap_or(443)
        && same_name(&origin.host, own.name())
}

/// Host names compared by meaning: case-insensitively (RFC 4343), IPv6
/// literals as addresses (`[0:0::1]` is `[::1]`).
fn same_name(host: &HostPort<'_>, canonical: &str) -> bool {
    match (ipv6(host.name()), ipv6(canonical)) {
        (Some(a), Some(b)) => a == b,
        (None, None) => host.name_eq(canonical),
        _ => false,
    }
}

fn ipv6(name: &str) -> Option<Ipv6Addr> {
    name.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::Method;
    use proptest::prelude::*;

    use super::*;
    use crate::pipeline::cors::Cors;

    fn exact(host: &str) -> Origin {
        Origin::Exact {
            scheme: "https".into(),
            host: host.into(),
            port: Some(443),
        }
    }

    fn subdomains(suffix: &str) -> Origin {
        Origin::Subdomains {
            scheme: "https".into(),
            suffix: suffix.into(),
            port: Some(443),
        }
    }

    fn cors_config(origins: Vec<Origin>, allow_credentials: bool) -> config::Cors {
        config::Cors {
            allowed_origins: origins,
            allowed_methods: vec![Method::GET, Method::POST],
            allowed_headers: vec![],
            expose_headers: vec![],
            allow_credentials,
            max_age: Duration::from_secs(600),
        }
    }

    /// Nothing besides the request's own origin.
    fn nobody() -> Trusted {
        Trusted::default()
    }

    /// `csrf.trusted_origins` and CORS origins with credentials.
    fn configured() -> Trusted {
        Trusted::new(
            &[exact("partner.example.org"), subdomains("apps.example.net")],
            &cors_config(
                vec![exact("chat.example.com"), subdomains("example.io")],
                true,
            ),
        )
    }

    /// CORS origins without credentials are not trusted.
    fn cors_without_credentials() -> Trusted {
        Trusted::new(&[], &cors_config(vec![exact("chat.example.com")], false))
    }

    /// `"*"` trusts nothing.
    fn star() -> Trusted {
        Trusted::new(&[Origin::Any], &cors_config(vec![Origin::Any], true))
    }

    fn canonical(host: &str) -> Canonical {
        host::parse(host.as_bytes())
            .unwrap_or_else(|e| panic!("{host:?}: {e}"))
            .canonical(None)
    }

    fn headers(site: &[&str], origin: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for s in site {
            h.append(
                &SEC_FETCH_SITE,
                HeaderValue::from_str(s).expect("test value"),
            );
        }
        for o in origin {
            // `from_bytes`: the table holds obs-text (bytes above 0x7f) too.
            h.append(
                header::ORIGIN,
                HeaderValue::from_bytes(o.as_bytes()).expect("test value"),
            );
        }
        h
    }

    struct Row {
        site: &'static [&'static str],
        origin: &'static [&'static str],
        host: &'static str,
        trusted: fn() -> Trusted,
        expect: Result<(), CsrfRejected>,
    }

    const OK: Result<(), CsrfRejected> = Ok(());
    const CROSS_SITE: Result<(), CsrfRejected> = Err(CsrfRejected::CrossSite);
    const ORIGIN: Result<(), CsrfRejected> = Err(CsrfRejected::UntrustedOrigin);
    const REPEATED: Result<(), CsrfRejected> = Err(CsrfRejected::Repeated);
    const HOST: &str = "app.example.com";

    #[rustfmt::skip]
    const TABLE: &[Row] = &[
        // Sec-Fetch-Site same-origin or none: allowed, whatever Origin says.
        Row { site: &["same-origin"], origin: &[], host: HOST, trusted: nobody, expect: OK },
        Row { site: &["none"], origin: &[], host: HOST, trusted: nobody, expect: OK },
        Row { site: &["same-origin"], origin: &["https://app.example.com"], host: HOST, trusted: nobody, expect: OK },
        Row { site: &["same-origin"], origin: &["https://evil.example"], host: HOST, trusted: nobody, expect: OK },
        Row { site: &["none"], origin: &["null"], host: HOST, trusted: nobody, expect: OK },
        // Another site without Origin: refused.
        Row { site: &["cross-site"], origin: &[], host: HOST, trusted: nobody, expect: CROSS_SITE },
        Row { site: &["same-site"], origin: &[], host: HOST, trusted: nobody, expect: CROSS_SITE },
        Row { site: &["cross-site"], origin: &[], host: HOST, trusted: configured, expect: CROSS_SITE },
        // Another site with Origin: Origin decides.
        Row { site: &["cross-site"], origin: &["https://evil.example"], host: HOST, trusted: nobody, expect: ORIGIN },
        Row { site: &["same-site"], origin: &["https://sibling.example.com"], host: HOST, trusted: nobody, expect: ORIGIN },
        Row { site: &["same-site"], origin: &["https://app.example.com"], host: HOST, trusted: nobody, expect: OK },
        Row { site: &["cross-site"], origin: &["https://partner.example.org"], host: HOST, trusted: configured, expect: OK },
        Row { site: &["same-site"], origin: &["https://partner.example.org"], host: HOST, trusted: configured, expect: OK },
        Row { site: &["cross-site"], origin: &["https://partner.example.org"], host: HOST, trusted: nobody, expect: ORIGIN },
        Row { site: &["cross-site"], origin: &["null"], host: HOST, trusted: configured, expect: ORIGIN },
        // CORS origins count only with credentials.
        Row { site: &["cross-site"], origin: &["https://chat.example.com"], host: HOST, trusted: configured, expect: OK },
        Row { site: &["cross-site"], origin: &["https://chat.example.com"], host: HOST, trusted: cors_without_credentials, expect: ORIGIN },
        Row { site: &[], origin: &["https://chat.example.com"], host: HOST, trusted: cors_without_credentials, expect: ORIGIN },
        Row { site: &["cross-site"], origin: &["https://x.example.io"], host: HOST, trusted: configured, expect: OK },
        // Trusted matching: case, default port, wildcards as in CORS.
        Row { site: &["cross-site"], origin: &["HTTPS://Partner.Example.ORG:443"], host: HOST, trusted: configured, expect: OK },
        Row { site: &["cross-site"], origin: &["https://partner.example.org:8443"], host: HOST, trusted: configured, expect: ORIGIN },
        Row { site: &["cross-site"], origin: &["http://partner.example.org"], host: HOST, trusted: configured, expect: ORIGIN },
        Row { site: &["cross-site"], origin: &["https://partner.example.org.evil.example"], host: HOST, trusted: configured, expect: ORIGIN },
        Row { site: &["cross-site"], origin: &["https://x.apps.example.net"], host: HOST, trusted: configured, expect: OK },
        Row { site: &["cross-site"], origin: &["https://a.b.apps.example.net"], host: HOST, trusted: configured, expect: OK },
        Row { site: &["cross-site"], origin: &["https://apps.example.net"], host: HOST, trusted: configured, expect: ORIGIN },
        Row { site: &["cross-site"], origin: &["https://evilapps.example.net"], host: HOST, trusted: configured, expect: ORIGIN },
        Row { site: &["cross-site"], origin: &["http://x.apps.example.net"], host: HOST, trusted: configured, expect: ORIGIN },
        Row { site: &["cross-site"], origin: &["https://x.apps.example.net:8443"], host: HOST, trusted: configured, expect: ORIGIN },
        Row { site: &["cross-site"], origin: &["https://x.apps.example.net."], host: HOST, trusted: configured, expect: ORIGIN },
        // "*" trusts nothing.
        Row { site: &["cross-site"], origin: &["https://evil.example"], host: HOST, trusted: star, expect: ORIGIN },
        Row { site: &[], origin: &["https://evil.example"], host: HOST, trusted: star, expect: ORIGIN },
        // No Sec-Fetch-Site (an older browser): Origin decides.
        Row { site: &[], origin: &["https://app.example.com"], host: HOST, trusted: nobody, expect: OK },
        Row { site: &[], origin: &["https://APP.Example.COM"], host: HOST, trusted: nobody, expect: OK },
        Row { site: &[], origin: &["HTTPS://app.example.com"], host: HOST, trusted: nobody, expect: OK },
        Row { site: &[], origin: &["https://app.example.com:443"], host: HOST, trusted: nobody, expect: OK },
        Row { site: &[], origin: &["https://app.example.com"], host: "app.example.com:443", trusted: nobody, expect: OK },
        Row { site: &[], origin: &["https://app.example.com"], host: "App.Example.com.", trusted: nobody, expect: OK },
        Row { site: &[], origin: &["https://app.example.com:8443"], host: "app.example.com:8443", trusted: nobody, expect: OK },
        Row { site: &[], origin: &["https://app.example.com"], host: "app.example.com:8443", trusted: nobody, expect: ORIGIN },
        Row { site: &[], origin: &["https://app.example.com:8443"], host: HOST, trusted: nobody, expect: ORIGIN },
        Row { site: &[], origin: &["https://partner.example.org"], host: HOST, trusted: configured, expect: OK },
        Row { site: &[], origin: &["https://evil.example"], host: HOST, trusted: configured, expect: ORIGIN },
        // This origin is https only: gatehouse terminates TLS.
        Row { site: &[], origin: &["http://app.example.com"], host: HOST, trusted: nobody, expect: ORIGIN },
        Row { site: &[], origin: &["http://app.example.com:443"], host: HOST, trusted: nobody, expect: ORIGIN },
        Row { site: &[], origin: &["wss://app.example.com"], host: HOST, trusted: nobody, expect: ORIGIN },
        // IP hosts; IPv6 compared as addresses.
        Row { site: &[], origin: &["https://127.0.0.1"], host: "127.0.0.1", trusted: nobody, expect: OK },
        Row { site: &[], origin: &["https://127.0.0.1:443"], host: "127.0.0.1", trusted: nobody, expect: OK },
        Row { site: &[], origin: &["https://[::1]:8443"], host: "[::1]:8443", trusted: nobody, expect: OK },
        Row { site: &[], origin: &["https://[0:0::1]:8443"], host: "[::1]:8443", trusted: nobody, expect: OK },
        Row { site: &[], origin: &["https://[::2]:8443"], host: "[::1]:8443", trusted: nobody, expect: ORIGIN },
        Row { site: &[], origin: &["https://[::1]"], host: "localhost", trusted: nobody, expect: ORIGIN },
        // null, empty and malformed origins.
        Row { site: &[], origin: &["null"], host: HOST, trusted: nobody, expect: ORIGIN },
        Row { site: &[], origin: &["null"], host: HOST, trusted: star, expect: ORIGIN },
        Row { site: &[], origin: &[""], host: HOST, trusted: nobody, expect: ORIGIN },
        Row { site: &[], origin: &["app.example.com"], host: HOST, trusted: nobody, expect: ORIGIN },
        Row { site: &[], origin: &["https://app.example.com/"], host: HOST, trusted: nobody, expect: ORIGIN },
        Row { site: &[], origin: &["https://app.example.com."], host: HOST, trusted: nobody, expect: ORIGIN },
        Row { site: &[], origin: &["https://evil.example@app.example.com"], host: HOST, trusted: nobody, expect: ORIGIN },
        Row { site: &[], origin: &["https://app.example.com@evil.example"], host: HOST, trusted: nobody, expect: ORIGIN },
        Row { site: &[], origin: &["https://evil.example#app.example.com"], host: HOST, trusted: nobody, expect: ORIGIN },
        Row { site: &[], origin: &["https://app.example.com.evil.example"], host: HOST, trusted: nobody, expect: ORIGIN },
        Row { site: &[], origin: &["https://app.example.com, https://evil.example"], host: HOST, trusted: nobody, expect: ORIGIN },
        Row { site: &[], origin: &["https://app.example.com\u{ff}"], host: HOST, trusted: nobody, expect: ORIGIN },
        // Neither header: not a browser.
        Row { site: &[], origin: &[], host: HOST, trusted: nobody, expect: OK },
        // Unknown Sec-Fetch-Site values are not same-origin.
        Row { site: &["Same-Origin"], origin: &[], host: HOST, trusted: nobody, expect: CROSS_SITE },
        Row { site: &["NONE"], origin: &[], host: HOST, trusted: nobody, expect: CROSS_SITE },
        Row { site: &["same-origin, cross-site"], origin: &[], host: HOST, trusted: nobody, expect: CROSS_SITE },
        Row { site: &[""], origin: &[], host: HOST, trusted: nobody, expect: CROSS_SITE },
        Row { site: &["garbage"], origin: &[], host: HOST, trusted: nobody, expect: CROSS_SITE },
        Row { site: &["garbage"], origin: &["https://app.example.com"], host: HOST, trusted: nobody, expect: OK },
        Row { site: &["garbage"], origin: &["https://evil.example"], host: HOST, trusted: nobody, expect: ORIGIN },
        // Repeated fields: refused, whatever they say.
        Row { site: &["same-origin", "same-origin"], origin: &[], host: HOST, trusted: nobody, expect: REPEATED },
        Row { site: &["cross-site", "same-origin"], origin: &[], host: HOST, trusted: nobody, expect: REPEATED },
        Row { site: &["same-origin"], origin: &["https://app.example.com", "https://evil.example"], host: HOST, trusted: nobody, expect: REPEATED },
        Row { site: &[], origin: &["https://app.example.com", "https://app.example.com"], host: HOST, trusted: nobody, expect: REPEATED },
        Row { site: &[], origin: &["https://evil.example", "https://app.example.com"], host: HOST, trusted: configured, expect: REPEATED },
    ];

    #[test]
    fn every_row_of_the_csrf_matrix_gets_its_answer() {
        for (i, row) in TABLE.iter().enumerate() {
            let got = check(
                &headers(row.site, row.origin),
                &canonical(row.host),
                &(row.trusted)(),
            );
            assert_eq!(
                got, row.expect,
                "row {i}: sec-fetch-site {:?}, origin {:?}, host {:?}",
                row.site, row.origin, row.host
            );
        }
    }

    #[test]
    fn rejections_never_echo_the_origin() {
        let h = headers(&["cross-site"], &["https://evil.example"]);
        let err = check(&h, &canonical(HOST), &nobody()).unwrap_err();
        assert!(!err.to_string().contains("evil"), "{err}");
    }

    /// Origins built from the pieces that make one look like another,
    /// weighted toward the configured ones and their near misses.
    fn origin_text() -> impl Strategy<Value = String> {
        let scheme = prop_oneof![
            6 => Just("https"),
            1 => Just("HTTPS"),
            1 => Just("http"),
            1 => Just("wss"),
            1 => Just(""),
        ];
        let label = prop_oneof![
            Just("app"),
            Just("APP"),
            Just("x"),
            Just("evil"),
            Just("1"),
            Just("@"),
            Just(""),
        ];
        let joint = prop_oneof![4 => Just("."), 1 => Just(""), 1 => Just("-")];
        let suffix = prop_oneof![
            Just("example.com"),
            Just("Example.COM"),
            Just("chat.example.com"),
            Just("apps.net"),
            Just("com"),
            Just("[::1]"),
            Just("[0:0::1]"),
            Just("127.0.0.1"),
            Just(""),
        ];
        let port = prop_oneof![
            6 => Just(""),
            2 => Just(":443"),
            2 => Just(":8443"),
            1 => Just(":80"),
            1 => Just(":"),
            1 => Just(":99999"),
        ];
        let tail = prop_oneof![
            8 => Just(""),
            1 => Just("."),
            1 => Just("/"),
            1 => Just("#x"),
            1 => Just("\u{ff}"),
        ];
        (
            scheme,
            prop::collection::vec(label, 0..3),
            joint,
            suffix,
            port,
            tail,
        )
            .prop_map(|(s, labels, j, x, p, t)| {
                let prefix = labels.join(".");
                let sep = if prefix.is_empty() { "" } else { j };
                format!("{s}://{prefix}{sep}{x}{p}{t}")
            })
    }

    fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            origin_text().prop_map(String::into_bytes),
            Just(b"same-origin".to_vec()),
            Just(b"none".to_vec()),
            Just(b"cross-site".to_vec()),
            Just(b"null".to_vec()),
            prop::collection::vec(any::<u8>(), 0..40),
        ]
    }

    fn proptest_config() -> ProptestConfig {
        ProptestConfig {
            cases: 2048,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(proptest_config())]

        #[test]
        fn arbitrary_header_bytes_never_panic(
            site in prop::collection::vec(header_bytes(), 0..3),
            origin in prop::collection::vec(header_bytes(), 0..3),
            host_bytes in header_bytes(),
        ) {
            let mut h = HeaderMap::new();
            for s in &site {
                if let Ok(v) = HeaderValue::from_bytes(s) {
                    h.append(&SEC_FETCH_SITE, v);
                }
            }
            for o in &origin {
                if let Ok(v) = HeaderValue::from_bytes(o) {
                    h.append(header::ORIGIN, v);
                }
            }
            let own = host::parse(&host_bytes)
                .map(|h| h.canonical(None))
                .unwrap_or_else(|_| canonical(HOST));
            for trusted in [nobody(), configured(), star()] {
                let _ = check(&h, &own, &trusted);
            }
        }

        #[test]
        fn trusted_origins_match_exactly_as_cors_allowed_origins_do(origin in origin_text()) {
            let Ok(value) = HeaderValue::from_str(&origin) else {
                return Ok(());
            };
            let list = vec![
                exact("chat.example.com"),
                exact("[::1]"),
                subdomains("example.com"),
                subdomains("apps.net"),
                Origin::Exact { scheme: "http".into(), host: "app.example.com".into(), port: Some(80) },
                Origin::Subdomains { scheme: "https".into(), suffix: "example.com".into(), port: Some(8443) },
            ];
            let cors = Cors::new(&cors_config(list.clone(), true));
            let trusted = Trusted::new(&[], &cors_config(list, true));
            let ours = host::parse_origin(value.as_bytes()).is_ok_and(|o| trusted.contains(&o));
            prop_assert_eq!(ours, cors.allows(&value), "{:?}", origin);
        }
    }
}
