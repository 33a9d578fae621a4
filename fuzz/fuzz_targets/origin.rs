//! The one host and origin parser (src/host.rs: `parse`, `parse_origin`,
//! `HostPort::canonical`) and CORS origin matching (`Cors::allows`,
//! src/pipeline/cors.rs) with the policy of the test config
//! (`gatehouse_fuzz::CORS_YAML`: exact origins with default and explicit
//! ports and an IPv6 literal, `https://*.example.org`,
//! `https://*.apps.example.net:8443`), and a second policy allowing `*`.
//!
//! Every input is read three ways: as a `host[:port]`, as an origin, and as
//! an `Origin` header value.
//!
//! Properties:
//! - an accepted host's name has no `@`, `/`, `\`, `?`, `#`, space, quote,
//!   `%` or non-ASCII byte, no empty label; a name is at most 253 bytes
//!   (an IPv6 literal is bracketed); the canonical form (`canonical(None)`)
//!   is lowercase and parses again to the same canonical value; built from
//!   the raw header value (`canonical(Some(raw))`, which may reuse it) it
//!   is the same value;
//! - an accepted origin is `scheme "://" host` where the host part parses
//!   the same way on its own;
//! - `Cors::allows` is exactly: the origin parses, and some configured
//!   origin has its scheme, effective port and host (an exact host, or one
//!   or more labels then `.suffix` for a wildcard) — checked by an oracle
//!   written here over `config.cors.allowed_origins`; an allowed origin
//!   never has a path, `@`, `?`, `#`, `\` or whitespace; with `*`, every
//!   origin that parses is allowed and no other.
#![no_main]

use std::sync::LazyLock;

use gatehouse::config::Origin;
use gatehouse::host::{parse, parse_origin};
use gatehouse::pipeline::cors::Cors;
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;

static POLICY: LazyLock<(Vec<Origin>, Cors)> = LazyLock::new(|| {
    let cfg = gatehouse_fuzz::test_config();
    let cors = Cors::new(&cfg.cors);
    (cfg.cors.allowed_origins, cors)
});

static ANY: LazyLock<Cors> = LazyLock::new(|| {
    let yaml = gatehouse_fuzz::config_yaml("cors:\n  allowed_origins: [\"*\"]\n");
    let cfg = gatehouse::config::parse(&gatehouse_fuzz::FIXTURE.config_path, &yaml)
        .expect("the * policy parses");
    Cors::new(&cfg.cors)
});

fn check_host(data: &[u8]) {
    let Ok(h) = parse(data) else {
        return;
    };
    let name = h.name();
    assert!(!name.is_empty());
    assert!(
        !name.contains(['@', '/', '\\', '?', '#', ' ', '"', '\'', '%', ',', ';']),
        "{data:?}: name {name:?}"
    );
    assert!(name.is_ascii() && !name.bytes().any(|b| b.is_ascii_control() || b == b' '));
    if name.starts_with('[') {
        assert!(name.ends_with(']'));
        let inner = &name[1..name.len() - 1];
        assert!(inner.parse::<std::net::Ipv6Addr>().is_ok(), "{name:?}");
    } else {
        assert!(name.len() <= 253, "{data:?}: name of {} bytes", name.len());
        assert!(name.split('.').all(|l| !l.is_empty()), "{data:?}: empty label");
        assert!(!name.contains(['[', ']', ':']), "{data:?}: {name:?}");
    }
    let c = h.canonical(None);
    let v = c.value().to_str().expect("canonical host is ASCII");
    assert!(!v.bytes().any(|b| b.is_ascii_uppercase()), "{v:?} not lowercase");
    assert!(h.name_eq(c.name()));
    assert_eq!(h.port, c.port());
    let again = parse(v.as_bytes()).unwrap_or_else(|e| panic!("{data:?}: canonical {v:?}: {e}"));
    assert_eq!(again.canonical(None), c, "{data:?}: canonical not a fixed point");
    assert!(again.is_lowercase());
    if let Ok(raw) = HeaderValue::from_bytes(data) {
        assert_eq!(h.canonical(Some(&raw)), c, "{data:?}: raw reuse differs");
    }
}

/// The configured origin an origin matches, by this target's reading.
fn oracle(allowed: &[Origin], data: &[u8]) -> bool {
    let Ok(o) = parse_origin(data) else {
        return false;
    };
    let scheme = o.scheme.to_ascii_lowercase();
    let host = o.host.name().to_ascii_lowercase();
    let port = o.effective_port();
    allowed.iter().any(|a| match a {
        Origin::Any => true,
        Origin::Exact { scheme: s, host: h, port: p } => *s == scheme && *h == host && *p == port,
        Origin::Subdomains { scheme: s, suffix, port: p } => {
            *s == scheme
                && *p == port
                && host
                    .strip_suffix(suffix.as_str())
                    .and_then(|rest| rest.strip_suffix('.'))
                    .is_some_and(|labels| !labels.is_empty())
        }
    })
}

fn check_origin(data: &[u8]) {
    if let Ok(o) = parse_origin(data) {
        let sep = data.windows(3).position(|w| w == b"://").expect("an origin has ://");
        assert_eq!(o.scheme.as_bytes(), &data[..sep]);
        let host_part = &data[sep + 3..];
        assert_eq!(parse(host_part), Ok(o.host), "{data:?}: host part reads differently");
    }

    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let (allowed, cors) = &*POLICY;
    let allows = cors.allows(&value);
    gatehouse_fuzz::debug!("{value:?}: parse_origin {:?}, allowed {allows}", parse_origin(data));
    assert_eq!(allows, oracle(allowed, data), "{data:?}: allows {allows}");
    if allows {
        let text = std::str::from_utf8(data).expect("an allowed origin is ASCII");
        let after = &text[text.find("://").expect("scheme") + 3..];
        assert!(
            !after.contains(['/', '@', '?', '#', '\\']) && !after.contains(char::is_whitespace),
            "{text:?} allowed"
        );
    }
    assert_eq!(ANY.allows(&value), parse_origin(data).is_ok(), "{data:?} with *");
}

fuzz_target!(|data: &[u8]| {
    check_host(data);
    check_origin(data);
    // An origin's authority alone is a host too.
    if let Some(sep) = data.windows(3).position(|w| w == b"://") {
        check_host(&data[sep + 3..]);
    }
});
