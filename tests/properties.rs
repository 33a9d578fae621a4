//! Property tests of the parsers every request passes (issue 10), run by the
//! normal suite on stable: proptest generates inputs built from the pieces
//! attacks are made of (dot-segments, escapes, separators, userinfo, IPv6
//! literals, numeric hosts) and checks what must hold for every one.
//!
//! - the normalized path is a fixed point and never holds `//`, a
//!   dot-segment, or an escaped `/`, `\` or NUL;
//! - the route chosen for a request is the route chosen for the path
//!   gatehouse forwards;
//! - the host and origin parser accepts nothing the WHATWG URL parser (the
//!   `url` crate, what browsers do) would read as another host or port.

mod support;

use std::net::Ipv6Addr;
use std::sync::OnceLock;

use gatehouse::host;
use gatehouse::pipeline::normalize::normalize_path_and_query;
use gatehouse::pipeline::route::RouteTable;
use http::Method;
use proptest::prelude::*;

// --- paths ------------------------------------------------------------------

/// Path segments as attackers write them.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("%2e".to_owned()),
        Just("%2E%2e".to_owned()),
        Just(".%2e".to_owned()),
        Just("..;".to_owned()),
        Just("admin".to_owned()),
        Just("%61dmin".to_owned()),
        Just("ADMIN".to_owned()),
        Just("docs".to_owned()),
        Just("%2F".to_owned()),
        Just("%2f".to_owned()),
        Just("%5C".to_owned()),
        Just("%00".to_owned()),
        Just("%252e".to_owned()),
        Just("caf%c3%a9".to_owned()),
        Just("caf\u{e9}".to_owned()),
        Just("%7e~".to_owned()),
        Just("a;b".to_owned()),
        "[a-z0-9%.;~!$&'()*+,=:@\\\\ \"<>\\[\\]-]{0,6}",
    ]
}

/// A raw request target: segments joined by `/`, maybe a query.
fn raw_target() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(segment(), 0..8),
        prop::option::of("[a-z=&%/.?]{0,8}"),
    )
        .prop_map(|(segments, query)| {
            let mut raw = format!("/{}", segments.join("/"));
            if let Some(q) = query {
                raw.push('?');
                raw.push_str(&q);
            }
            raw
        })
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 4096,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_normalized_path_is_a_fixed_point_with_nothing_ambiguous_in_it(raw in raw_target()) {
        let Ok(target) = normalize_path_and_query(&raw) else {
            return Ok(());
        };
        let p = &target.path;
        prop_assert!(p.starts_with('/'), "{raw:?} -> {p:?}");
        prop_assert!(!p.contains("//"), "{raw:?} -> {p:?}");
        prop_assert!(p.split('/').all(|s| s != "." && s != ".."), "{raw:?} -> {p:?}");
        let upper = p.to_ascii_uppercase();
        for banned in ["%2F", "%5C", "%00", "\\", "#", " ", "?"] {
            prop_assert!(!upper.contains(banned), "{raw:?} -> {p:?} holds {banned}");
        }
        let again = normalize_path_and_query(p).expect("a normalized path is accepted");
        prop_assert_eq!(&again.path, p, "not idempotent for {:?}", raw);
        // Path and query forwarded together normalize to themselves too.
        let forwarded = match &target.query {
            Some(q) => format!("{p}?{q}"),
            None => p.clone(),
        };
        prop_assert_eq!(normalize_path_and_query(&forwarded).expect("accepted"), target);
    }

    #[test]
    fn the_config_and_the_normalizer_agree_on_what_a_normalized_path_is(raw in raw_target()) {
        let path = raw.split('?').next().unwrap_or_default();
        let fixed_point = normalize_path_and_query(path).is_ok_and(|t| t.path == path);
        prop_assert_eq!(gatehouse::text::is_normalized_path(path), fixed_point, "{:?}", path);
    }

    #[test]
    fn the_route_for_a_request_is_the_route_for_its_forwarded_path(
        raw in raw_target(),
        method in prop_oneof![Just(Method::GET), Just(Method::POST), Just(Method::DELETE)],
        host in prop_oneof![Just(None), Just(Some("admin.example.com")), Just(Some("other.example"))],
    ) {
        let Ok(target) = normalize_path_and_query(&raw) else {
            return Ok(());
        };
        let routes = routes();
        let chosen = &routes.find(&method, host, &target.path).name;
        let forwarded = normalize_path_and_query(&target.path).expect("accepted");
        let again = &routes.find(&method, host, &forwarded.path).name;
        prop_assert_eq!(chosen, again, "{:?}", raw);
    }
}

/// A route table with every kind of pattern, a host-bound route and a regex.
fn routes() -> &'static RouteTable {
    static ROUTES: OnceLock<RouteTable> = OnceLock::new();
    ROUTES.get_or_init(|| {
        let certs = support::TestCerts::new();
        let yaml = support::config_yaml(
            &certs,
            &support::upstream("http://127.0.0.1:9"),
            "routes:\n\
             \x20 - { name: hosted, host: admin.example.com, path: /admin/**, auth: jwt }\n\
             \x20 - { name: admin, path: /admin/**, auth: jwt, roles: [admin] }\n\
             \x20 - { name: docs, path: /docs/**, methods: [GET], auth: none }\n\
             \x20 - { name: exact, path: /admin, auth: jwt }\n\
             \x20 - { name: seg, path: /a/*/b, auth: none }\n\
             \x20 - { name: re, regex: '^/ADMIN(/.*)?$', auth: jwt }\n\
             default_route:\n  auth: none\n",
        );
        let path = certs.dir.path().join("gatehouse.yaml");
        let config = gatehouse::config::parse(&path, &yaml).expect("valid test config");
        RouteTable::new(config.routes.clone(), config.default_route.clone())
    })
}

// --- hosts and origins --------------------------------------------------------

/// Host texts as attackers write them.
fn raw_host() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("admin".to_owned()),
        Just("example".to_owned()),
        Just("com".to_owned()),
        Just("EXAMPLE".to_owned()),
        Just(".".to_owned()),
        Just(":".to_owned()),
        Just("@".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just("::1".to_owned()),
        Just("127".to_owned()),
        Just("0x7f".to_owned()),
        Just("1".to_owned()),
        Just("255".to_owned()),
        Just("8443".to_owned()),
        Just("99999".to_owned()),
        Just("%2e".to_owned()),
        Just("\\".to_owned()),
        Just("/".to_owned()),
        "[a-z0-9._~:@\\[\\]%/?#!$&'()*+,;= -]{0,5}",
    ];
    prop::collection::vec(piece, 1..6).prop_map(|p| p.concat())
}

/// A host as the `url` crate reads it, comparable with gatehouse's
/// canonical name: lower-cased, trailing dot dropped, IPv6 as an address.
fn comparable(name: &str) -> String {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    match name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .and_then(|n| n.parse::<Ipv6Addr>().ok())
    {
        Some(v6) => format!("[{v6}]"),
        None => name,
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn an_accepted_host_is_the_same_host_and_port_to_a_browser(raw in raw_host()) {
        let Ok(parsed) = host::parse(raw.as_bytes()) else {
            return Ok(());
        };
        // Punycode validity is DNS's business: gatehouse passes `xn--`
        // labels through unchanged, where the URL parser checks them.
        prop_assume!(!raw.to_ascii_lowercase().contains("xn--"));
        let url = url::Url::parse(&format!("https://{raw}/"));
        prop_assert!(url.is_ok(), "{raw:?} accepted here, refused by the URL parser");
        let url = url.expect("checked");
        let canonical = parsed.canonical(None);
        prop_assert_eq!(
            comparable(url.host_str().unwrap_or_default()),
            comparable(canonical.name()),
            "{:?}", raw
        );
        prop_assert_eq!(url.port_or_known_default(), Some(parsed.port.unwrap_or(443)), "{:?}", raw);
        // The canonical form is accepted again, as itself.
        let again = host::parse(canonical.value().as_bytes()).expect("canonical host parses");
        prop_assert_eq!(again.canonical(None), canonical);
    }

    #[test]
    fn an_accepted_origin_is_the_same_origin_to_a_browser(
        scheme in prop_oneof![Just("https"), Just("http"), Just("HTTPS"), Just("ws")],
        raw in raw_host(),
    ) {
        let text = format!("{scheme}://{raw}");
        let Ok(origin) = host::parse_origin(text.as_bytes()) else {
            return Ok(());
        };
        prop_assume!(!raw.to_ascii_lowercase().contains("xn--"));
        let url = url::Url::parse(&text);
        prop_assert!(url.is_ok(), "{text:?} accepted here, refused by the URL parser");
        let url = url.expect("checked");
        prop_assert_eq!(url.path(), "/", "{:?} has a path to a browser", text);
        prop_assert_eq!(url.scheme(), scheme.to_ascii_lowercase());
        prop_assert_eq!(
            comparable(url.host_str().unwrap_or_default()),
            comparable(origin.host.name()),
            "{:?}", text
        );
        prop_assert_eq!(url.port_or_known_default(), origin.effective_port().or(url.port_or_known_default()));
    }
}
