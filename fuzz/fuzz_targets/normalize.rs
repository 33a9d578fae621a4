//! The request-head normalizer: `normalize_path_and_query`, `normalize_uri`
//! and `check_head` (src/pipeline/normalize.rs).
//!
//! Input: the first line is the request target (as hyper would hand it to
//! gatehouse: origin-form, absolute-form, authority-form or `*`), each
//! further line a header `name: value`. Lines that `http` cannot parse are
//! skipped (hyper would have refused the request before gatehouse).
//!
//! Properties of an accepted target (both through `normalize_path_and_query`
//! on the raw text and through `normalize_uri` on the parsed `Uri`):
//! the path starts with `/`; has no `//`, no `.` or `..` segment (nor `.;x`,
//! `..;x`), no `%2F`, `%5C`, `%00`-`%1F`, `%7F` (any case), no raw `\`, `#`,
//! space, `?`, `;` or control byte, only ASCII; every escape is `%` and two
//! UPPERCASE hex digits and never encodes an unreserved character; and
//! normalizing it again gives the same path. The query has no `#`, space or
//! control byte.
//!
//! Properties of an accepted head: at most one `Authorization` and one
//! `Host`; not `Content-Length` with `Transfer-Encoding`; all
//! `Content-Length` values equal; no header name with `_` that reads as a
//! proxy-owned header once `_` is `-`; the answered host is lowercase,
//! parses again to itself, names the `Host` header's (or else the target's)
//! host, and when both are given they are the same host and port.
#![no_main]

use std::sync::LazyLock;

use gatehouse::host;
use gatehouse::pipeline::normalize::{check_head, normalize_path_and_query, normalize_uri};
use http::header::{AUTHORIZATION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use libfuzzer_sys::fuzz_target;

static PROXY_OWNED: LazyLock<Vec<HeaderName>> =
    LazyLock::new(|| gatehouse_fuzz::proxy_owned(&gatehouse_fuzz::test_config()));

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The properties of an accepted, normalized path.
fn check_path(raw: &str, p: &str) {
    assert!(p.starts_with('/'), "{raw:?} -> {p:?}: not absolute");
    assert!(!p.contains("//"), "{raw:?} -> {p:?}: empty segment");
    for seg in p.split('/') {
        let dot = seg.strip_prefix("..").or_else(|| seg.strip_prefix('.'));
        if let Some(rest) = dot {
            assert!(
                !rest.is_empty() && !rest.starts_with(';') && !rest.starts_with("%3B"),
                "{raw:?} -> {p:?}: dot-segment {seg:?}"
            );
        }
    }
    assert!(p.is_ascii(), "{raw:?} -> {p:?}: non-ASCII byte");
    for bad in ['\\', '#', ' ', '?', ';'] {
        assert!(!p.contains(bad), "{raw:?} -> {p:?}: raw {bad:?}");
    }
    assert!(
        !p.bytes().any(|b| b.is_ascii_control()),
        "{raw:?} -> {p:?}: control byte"
    );
    let bytes = p.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).expect("an escape has two digits");
            assert!(
                hex.iter()
                    .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(h)),
                "{raw:?} -> {p:?}: escape not uppercase hex"
            );
            let byte = u8::from_str_radix(std::str::from_utf8(hex).expect("ascii"), 16)
                .expect("hex escape");
            assert!(
                !matches!(byte, b'/' | b'\\') && !byte.is_ascii_control(),
                "{raw:?} -> {p:?}: %{byte:02X} kept"
            );
            assert!(
                !is_unreserved(byte),
                "{raw:?} -> {p:?}: unreserved %{byte:02X} not decoded"
            );
            i += 3;
        } else {
            i += 1;
        }
    }
    let upper = p.to_ascii_uppercase();
    for bad in ["%2F", "%5C", "%00"] {
        assert!(!upper.contains(bad), "{raw:?} -> {p:?}: {bad}");
    }
    match normalize_path_and_query(p) {
        Ok(again) => {
            assert_eq!(again.path, p, "{raw:?}: normalization is not idempotent");
            assert_eq!(again.query, None, "{raw:?} -> {p:?}: a query appeared");
        }
        Err(e) => panic!("{raw:?} -> {p:?} is refused when normalized again: {e}"),
    }
}

fn check_query(raw: &str, q: &str) {
    assert!(
        !q.bytes()
            .any(|b| b == b'#' || b == b' ' || b.is_ascii_control()),
        "{raw:?}: query {q:?} kept a #, space or control byte"
    );
}

fn check_accepted_head(uri: &Uri, headers: &HeaderMap, answer: Option<&host::Canonical>) {
    assert!(headers.get_all(AUTHORIZATION).iter().count() <= 1);
    assert!(headers.get_all(HOST).iter().count() <= 1);
    assert!(!(headers.contains_key(CONTENT_LENGTH) && headers.contains_key(TRANSFER_ENCODING)));
    let lengths: Vec<&[u8]> = headers
        .get_all(CONTENT_LENGTH)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .collect();
    assert!(
        lengths.windows(2).all(|w| w[0] == w[1]),
        "conflicting content-length accepted: {lengths:?}"
    );
    for name in headers.keys() {
        let folded = name.as_str().replace('_', "-");
        assert!(
            !name.as_str().contains('_') || !PROXY_OWNED.iter().any(|o| o.as_str() == folded),
            "{name} folds onto a proxy-owned header"
        );
    }
    let host_header = headers.get(HOST);
    let authority = uri.authority();
    match (answer, host_header, authority) {
        (None, None, None) => {}
        (Some(c), Some(_), _) | (Some(c), None, Some(_)) => {
            let v = c.value().to_str().expect("a canonical host is ASCII");
            assert!(!v.bytes().any(|b| b.is_ascii_uppercase()), "{v:?} not lowercase");
            assert!(!v.contains('@'), "{v:?} has userinfo");
            let again = host::parse(v.as_bytes()).expect("a canonical host parses");
            assert_eq!(&again.canonical(None), c, "canonical host not a fixed point");
            assert_eq!(again.canonical(Some(c.value())), *c);
            // It names the Host header's host, else the target's.
            let source = match host_header {
                Some(h) => h.as_bytes(),
                None => authority.expect("matched above").as_str().as_bytes(),
            };
            let parsed = host::parse(source).expect("the source of an accepted host parses");
            assert!(parsed.name_eq(c.name()), "{v:?} is not the host sent");
            assert_eq!(parsed.port, c.port());
            if let (Some(h), Some(a)) = (host_header, authority) {
                let h = host::parse(h.as_bytes()).expect("host parses");
                let a = host::parse(a.as_str().as_bytes()).expect("authority parses");
                assert!(a.name_eq(h.name()), "authority and Host name two hosts");
                let default = uri.scheme_str().and_then(host::default_port);
                assert_eq!(a.port.or(default), h.port.or(default), "two ports");
            }
        }
        (answer, h, a) => panic!("answered {answer:?} for Host {h:?} and authority {a:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|&b| b == b'\n');
    let target = lines.next().unwrap_or_default();
    let target = target.strip_suffix(b"\r").unwrap_or(target);

    // The raw text, as tests and the pipeline's own callers pass it.
    if let Ok(raw) = std::str::from_utf8(target) {
        if let Ok(t) = normalize_path_and_query(raw) {
            check_path(raw, &t.path);
            if let Some(q) = &t.query {
                check_query(raw, q);
                assert!(raw.contains('?'));
            }
        }
    }

    // What hyper would hand to gatehouse.
    let Ok(uri) = Uri::try_from(target) else {
        return;
    };
    let raw = String::from_utf8_lossy(target);
    if let Ok(t) = normalize_uri(&uri) {
        check_path(&raw, &t.path);
        if let Some(q) = &t.query {
            check_query(&raw, q);
        }
        // The parsed Uri and its text agree for an origin-form target.
        if uri.scheme().is_none() && uri.authority().is_none() {
            let again = normalize_path_and_query(uri.path_and_query().map_or("", |pq| pq.as_str()));
            assert_eq!(again.as_ref(), Ok(&t), "{raw:?}: Uri and text normalize differently");
        }
    }

    let mut headers = HeaderMap::new();
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        else {
            continue;
        };
        headers.append(name, value);
    }
    let head = check_head(&uri, &headers, &PROXY_OWNED);
    gatehouse_fuzz::debug!("{raw:?}: {:?}; head {head:?}", normalize_uri(&uri));
    if let Ok(answer) = head {
        check_accepted_head(&uri, &headers, answer.as_ref());
    }
});
