//! Route matching: `RouteTable::find` (src/pipeline/route.rs) on the routes of
//! the test config (`gatehouse_fuzz::ROUTES_YAML`: exact, `/**` prefixes,
//! `/*/` segments, regexes, host-bound routes, method lists, overlaps).
//!
//! Input: byte 0 picks the method, byte 1 the host (none, a few fixed ones,
//! or the text up to the first newline of the rest, read by the one host
//! parser and canonicalized as the pipeline does); the rest is the raw
//! path-and-query.
//!
//! Properties, for a path `normalize_path_and_query` accepts:
//! - `find(method, host, p)` is the same route as
//!   `find(method, host, normalize(p))` (normalizing is idempotent, so
//!   routing is too);
//! - `find` (indexed by first segment, regexes in one `RegexSet`) is the
//!   route a linear first-match scan over `routes()` with
//!   `route::pattern_matches` gives — also for the raw, unnormalized text
//!   when it starts with `/`.
#![no_main]

use std::sync::LazyLock;

use gatehouse::host;
use gatehouse::pipeline::normalize::normalize_path_and_query;
use gatehouse::pipeline::route::RouteTable;
use gatehouse_fuzz::find_linear;
use http::Method;
use libfuzzer_sys::fuzz_target;

static TABLE: LazyLock<RouteTable> = LazyLock::new(|| {
    let cfg = gatehouse_fuzz::test_config();
    RouteTable::new(cfg.routes, cfg.default_route)
});

static METHODS: LazyLock<Vec<Method>> = LazyLock::new(|| {
    let mut m = vec![
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
    ];
    m.push(Method::from_bytes(b"PURGE").expect("extension method"));
    m
});

const HOSTS: [&str; 6] = [
    "admin.example.com",
    "ADMIN.Example.com.:8443",
    "[::1]:8443",
    "[0:0::1]",
    "other.example",
    "127.0.0.1",
];

fn same(a: &gatehouse::config::Route, b: &gatehouse::config::Route) -> bool {
    std::ptr::eq(a, b)
}

fuzz_target!(|data: &[u8]| {
    let [m, h, rest @ ..] = data else {
        return;
    };
    let method = &METHODS[usize::from(*m) % METHODS.len()];
    let (host_text, path): (Option<&[u8]>, &[u8]) = match usize::from(*h) % (HOSTS.len() + 2) {
        0 => (None, rest),
        i if i <= HOSTS.len() => (Some(HOSTS[i - 1].as_bytes()), rest),
        _ => {
            let nl = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            (Some(&rest[..nl]), rest.get(nl + 1..).unwrap_or_default())
        }
    };
    // The pipeline routes on the canonical host name (no port, lowercase,
    // no trailing dot); a host the parser refuses never gets this far.
    let canonical = match host_text {
        None => None,
        Some(t) => match host::parse(t) {
            Ok(hp) => Some(hp.canonical(None)),
            Err(_) => return,
        },
    };
    let host = canonical.as_ref().map(host::Canonical::name);
    let Ok(raw) = std::str::from_utf8(path) else {
        return;
    };
    let table = &*TABLE;

    // Any absolute path, normalized or not: the index agrees with the linear
    // scan. (Not for text without the leading `/`: the index reads its first
    // segment as a literal, `pattern_matches` skips it — the pipeline never
    // routes such a target, normalization refuses it as NotOriginForm.)
    let r = table.find(method, host, raw);
    let linear = find_linear(table, method, host, raw);
    assert!(
        !raw.starts_with('/') || same(r, linear),
        "{method} {host:?} {raw:?}: find gives {:?}, the linear scan {:?}",
        r.name,
        linear.name
    );

    let Ok(target) = normalize_path_and_query(raw) else {
        gatehouse_fuzz::debug!("{method} {host:?} {raw:?}: refused by normalize, raw -> {}", r.name);
        return;
    };
    let p = &target.path;
    let r1 = table.find(method, host, p);
    let linear = find_linear(table, method, host, p);
    assert!(
        same(r1, linear),
        "{method} {host:?} {p:?}: find gives {:?}, the linear scan {:?}",
        r1.name,
        linear.name
    );
    gatehouse_fuzz::debug!("{method} {host:?} {raw:?} -> {p:?} -> {}", r1.name);
    let again = normalize_path_and_query(p).expect("a normalized path is accepted again");
    let r2 = table.find(method, host, &again.path);
    assert!(
        same(r1, r2),
        "{method} {host:?} {raw:?}: {p:?} routes to {:?}, normalized again to {:?}",
        r1.name,
        r2.name
    );
});
