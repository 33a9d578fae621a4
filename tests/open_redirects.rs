//! Open redirects through the sign-in `rd` parameter (SPEC §9): thousands of
//! generated payloads, property tests, and what must be kept.
//!
//! The payloads are built from the classes open-redirect lists are made of —
//! scheme-relative `//` and its spellings with `\`, tabs, newlines and
//! escapes; dot-segments in front of `//`; absolute URLs in every scheme and
//! malformed scheme spelling; userinfo and delimiters that hide one host
//! behind another; script and data URLs; Unicode look-alikes and invisible
//! characters — crossed with hosts written as names, look-alikes of the
//! allowed host, and IPv4/IPv6 addresses in decimal, octal, hex and mixed
//! forms, and with suffixes that try to walk back out of a path.
//!
//! Each result is checked by two oracles that share no code with
//! `return_to.rs`: a byte-level one (exactly one leading `/`, no `\`, no
//! control or whitespace character after one percent-decoding, only visible
//! ASCII), and the `url` crate (the WHATWG parser, what browsers run):
//! resolved against `https://gate.example/`, the result stays on that origin
//! or on an allowed host's.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use gatehouse::auth::return_to::{safe_return, MAX_LEN};
use proptest::prelude::*;
use url::Url;

/// The allowed hosts of these tests: one on the default port, one on 8443.
fn allowed() -> Vec<String> {
    vec![
        "app.example.com".to_owned(),
        "api.example.com:8443".to_owned(),
    ]
}

/// The origin gatehouse serves in these tests.
const GATE: &str = "https://gate.example/";

fn base() -> &'static Url {
    static BASE: OnceLock<Url> = OnceLock::new();
    BASE.get_or_init(|| Url::parse(GATE).expect("a valid base"))
}

// --- the oracles -----------------------------------------------------------

/// One percent-decoding, leaving a `%` that starts no escape as it is.
fn decode_once(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let escape = b[i] == b'%'
            && b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
        if escape {
            let text = std::str::from_utf8(&b[i + 1..i + 3]).expect("hex digits");
            out.push(u8::from_str_radix(text, 16).expect("hex digits"));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A path that can only lead to this origin, checked byte by byte.
fn check_same_origin_path(out: &str) -> Result<(), String> {
    let bytes = out.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err("does not start with /".into());
    }
    if matches!(bytes.get(1), Some(b'/' | b'\\')) {
        return Err("starts with // or /\\".into());
    }
    let decoded = decode_once(out);
    if matches!(decoded.as_bytes().get(1), Some(b'/' | b'\\')) {
        return Err("starts with // or /\\ once decoded".into());
    }
    if let Some(c) = decoded
        .chars()
        .find(|&c| c == '\\' || c.is_control() || c.is_whitespace())
    {
        return Err(format!("holds {c:?} once decoded"));
    }
    // A browser, and a server that decodes before it redirects, both stay here.
    for form in [out, decoded.as_str()] {
        let resolved = base().join(form).map_err(|e| format!("{form:?}: {e}"))?;
        if resolved.origin() != base().origin() {
            return Err(format!("{form:?} resolves to {resolved}"));
        }
    }
    Ok(())
}

/// What a `safe_return` result must be: a path on this origin, or an
/// `https` URL on an allowed host's origin; a valid `Location` either way.
fn check_result(out: &str) -> Result<(), String> {
    if let Some(b) = out.bytes().find(|b| !(0x21..=0x7e).contains(b)) {
        return Err(format!("byte {b:#04x} is not visible ASCII"));
    }
    if http::HeaderValue::from_str(out).is_err() {
        return Err("not a header value".into());
    }
    if out.starts_with('/') {
        return check_same_origin_path(out);
    }
    let url = Url::parse(out).map_err(|e| e.to_string())?;
    let origin = url.origin().ascii_serialization();
    let allowed_origins = ["https://app.example.com", "https://api.example.com:8443"];
    if !allowed_origins.contains(&origin.as_str()) {
        return Err(format!("leaves for {origin}"));
    }
    if !out.starts_with("https://") || !url.username().is_empty() || url.password().is_some() {
        return Err("not a plain https URL".into());
    }
    // The part after the authority is held to the path rules too.
    let rest = &out["https://".len()..];
    let tail = &rest[rest.find('/').ok_or("no path")?..];
    check_same_origin_path(tail)
}

/// The result for `rd`, after checking it and that it is a fixed point.
fn validated(rd: &str, allowed: &[String]) -> String {
    let out = safe_return(rd, allowed);
    if let Err(why) = check_result(&out) {
        panic!("{rd:?} -> {out:?}: {why}");
    }
    assert_eq!(safe_return(&out, allowed), out, "not a fixed point: {rd:?}");
    out
}

// --- the payloads ------------------------------------------------------------

/// Where payloads try to send the browser. None of them is an allowed
/// host on its allowed port.
const HOSTS: &[&str] = &[
    "evil.com",
    "EVIL.COM",
    "evil.com.",
    "evil.com:443",
    "evil.com:8080",
    "evil.com:80",
    "localhost",
    "api.example.com",
    "api.example.com:443",
    "app.example.com:8443",
    "app.example.com:80",
    "app.example.com.evil.com",
    "app.example.com-evil.com",
    "app.example.comevil.com",
    "evilapp.example.com",
    "sub.app.example.com",
    "app.example.co",
    "app.example.com..",
    "app.example.com%2eevil.com",
    "app.example.com%00.evil.com",
    "evil\u{3002}com",
    "evil%E3%80%82com",
    "\u{ff45}\u{ff56}\u{ff49}\u{ff4c}.com",
    "xn--80ak6aa92e.com",
    "evil.c\u{200b}om",
    "127.0.0.1",
    "127.1",
    "0x7f.1",
    "0x7f000001",
    "2130706433",
    "0177.0.0.1",
    "017700000001",
    "0x7f.0x0.0x0.0x1",
    "216.58.214.206",
    "0xd83ad6ce",
    "3627734734",
    "0330.072.0326.0316",
    "00330.0x3a.54990",
    "0xd8.3856078",
    "472.314.470.462",
    "999.999.999.999",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[::216.58.214.206]",
    "[0:0:0:0:0:ffff:d83a:d6ce]",
    "[fe80::1%25eth0]",
];

/// Payload templates by class: `{h}` is a host from [`HOSTS`], `{g}` the
/// allowed host.
const CLASSES: &[(&str, &[&str])] = &[
    (
        "scheme-relative, spelled with / and \\",
        &[
            "//{h}",
            "///{h}",
            "////{h}",
            "/////{h}",
            "/\\{h}",
            "\\/{h}",
            "\\\\{h}",
            "/\\/{h}",
            "\\/\\/{h}",
            "/\\\\{h}",
            "//\\{h}",
            "\\{h}",
            "///\\;@{h}",
            "//;@{h}",
            "//{h}//",
            "//{h}\\@{g}",
            "//{g}@{h}",
            "//{h}@{g}",
            "/\\{g}@{h}",
            "\\\\{g}@{h}",
        ],
    ),
    (
        "whitespace and control characters a browser strips",
        &[
            "/\t/{h}",
            "/\n/{h}",
            "/\r/{h}",
            "/\r\n/{h}",
            "/ /{h}",
            "/\x0b/{h}",
            "/\x0c/{h}",
            "/\x00/{h}",
            "/\x1f/{h}",
            "/\x7f/{h}",
            "\t//{h}",
            " //{h}",
            "\x00//{h}",
            "\n//{h}",
            "\x01//{h}",
            "//\t{h}",
            "/\t\\{h}",
            "/\\\t{h}",
            "/\t\t/{h}",
            "//{h}\t",
            " /{h}",
        ],
    ),
    (
        "escaped separators and controls",
        &[
            "/%2F/{h}",
            "/%2f%2f{h}",
            "/%2F%2F{h}",
            "/%2F%2F%2F{h}",
            "/%5C{h}",
            "/%5c/{h}",
            "/%5C%5C{h}",
            "/%2F%5C{h}",
            "/%09/{h}",
            "/%0a/{h}",
            "/%0d/{h}",
            "/%0D%0A/{h}",
            "/%20/{h}",
            "/%00/{h}",
            "/%0B/{h}",
            "/%0C/{h}",
            "/%7F/{h}",
            "//%09/{h}",
            "//%5c{h}",
            "///%09/{h}",
            "////%5c{h}",
            "/%09/{g}@{h}",
            "/%5c{g}@{h}",
            "/%252F%252F{h}",
            "/%2F{h}",
            "%2F%2F{h}",
            "%5C%5C{h}",
            "/%%2F/{h}",
            "/%2/{h}",
            "/%E3%80%80/{h}",
            "/%C2%A0/{h}",
            "/%E2%80%A8/{h}",
            "/%E2%80%AE/{h}",
        ],
    ),
    (
        "dot-segments in front of //",
        &[
            "/.//{h}",
            "/..//{h}",
            "/./\\{h}",
            "/../\\{h}",
            "/%2e//{h}",
            "/%2e%2e//{h}",
            "/%2E%2E%2F%2F{h}",
            "/.%2F/{h}",
            "/..%2F%2F{h}",
            "/..;//{h}",
            "/.;//{h}",
            "/a/..//{h}",
            "/a/../..//{h}",
            "/./%2F{h}",
            "/././/{h}",
            "/.\t//{h}",
            "/a/%2e%2e/%2e%2e/%2F{h}",
        ],
    ),
    (
        "Unicode look-alikes and invisible characters",
        &[
            "/\u{ff0f}{h}",
            "\u{ff0f}\u{ff0f}{h}",
            "/\u{ff3c}{h}",
            "\u{ff3c}\u{ff3c}{h}",
            "/\u{2215}{h}",
            "/\u{2044}{h}",
            "/\u{fe68}{h}",
            "/\u{29f5}{h}",
            "/%EF%BC%8F{h}",
            "/%EF%BC%BC{h}",
            "/%E2%88%95{h}",
            "\u{3035}{h}",
            "\u{3031}{h}",
            "\u{30fc}{h}",
            "\u{ff70}{h}",
            "\u{309d}{h}",
            "/\u{3000}/{h}",
            "/\u{a0}/{h}",
            "/\u{2028}/{h}",
            "/\u{2029}/{h}",
            "/\u{85}/{h}",
            "/\u{200b}/{h}",
            "/\u{feff}/{h}",
            "/\u{202e}/{h}",
            "\u{feff}//{h}",
            "\u{a0}//{h}",
            "\u{3000}//{h}",
            "\u{ff48}\u{ff54}\u{ff54}\u{ff50}\u{ff53}://{h}",
            "https\u{ff1a}//{h}",
        ],
    ),
    (
        "absolute URLs and malformed scheme spellings",
        &[
            "https://{h}",
            "https://{h}/",
            "http://{h}",
            "http://{h}/",
            "HTTPS://{h}",
            "HtTpS://{h}",
            "hTTp://{h}",
            "https:{h}",
            "https:/{h}",
            "https:\\\\{h}",
            "https:/\\{h}",
            "https:\\/{h}",
            "https:///{h}",
            "https:////{h}",
            "https:\t//{h}",
            "ht\ttps://{h}",
            "https ://{h}",
            " https://{h}",
            "\thttps://{h}",
            "\x00https://{h}",
            "\u{feff}https://{h}",
            "https://\t{h}",
            "https://%09/{h}",
            "https://%5c{h}",
            "https:/%5c{h}",
            "https:%2F%2F{h}",
            "https%3A%2F%2F{h}",
            "%68ttps://{h}",
            "//https://{h}",
            "/https://{h}",
            "/http:/{h}",
            "/https:/%5c{h}/",
            "ftp://{h}",
            "ws://{h}",
            "wss://{h}",
            "file://{h}",
            "gopher://{h}",
            "{h}",
            "{h}/",
            ".{h}",
            "@{h}",
            "<>//{h}",
            "/<>//{h}",
        ],
    ),
    (
        "userinfo and delimiters that hide a host",
        &[
            "https://{g}@{h}",
            "https://{g}:443@{h}",
            "https://{g}%40{h}",
            "https://{h}@{g}",
            "https://{h}:@{g}",
            "https://:@{h}\\@{g}",
            "https://{h}\\@{g}",
            "https://{h}\\.{g}",
            "https://{h}?@{g}",
            "https://{h}#@{g}",
            "https://{h}%23@{g}",
            "https://{h}%2F@{g}",
            "https://{h}%3F.{g}",
            "https://{h}%5C%5C.{g}",
            "https://{h}/{g}",
            "https://{g}.{h}",
            "https://{g}%2e{h}",
            "https://{g}\t.{h}",
            "https://{g}\u{3002}{h}",
            "https://{g}\u{ff0f}.{h}",
            "https://{h}+&@{g}#+@{h}/",
            "https://{h}:443#@{g}",
            "https://{h}:80?@{g}",
            "https://{g}:{h}",
            "https://[{g}]@{h}",
            "https://{g}@{h}@{g}",
            "http://{g}@{h}",
            "http://{h}\\t{g}",
            "//{h}\\t{g}",
            "https://{h}\\/{g}",
            "https://{h}//{g}",
        ],
    ),
    (
        "script and data URLs",
        &[
            "javascript:alert(1)//{h}",
            "javascript://{h}/%0aalert(1)",
            "JaVaScRiPt://{h}%0d%0aalert(1)",
            "java\tscript:alert('{h}')",
            "java\nscript://{h}",
            "java%09script://{h}",
            "java%0d%0ascript://{h}",
            "\x01javascript://{h}",
            " javascript://{h}",
            "javascript&colon;//{h}",
            "Javas%26%2399;ript://{h}",
            "data:text/html,<a href=//{h}>",
            "data:text/html;base64,PHNjcmlwdD4=#{h}",
            "vbscript://{h}",
            "/javascript:alert(1)//{h}",
            "/%09/javascript://{h}",
            "//javascript:alert(1)//{h}",
            "\\j\\a\\v\\a\\s\\c\\r\\i\\p\\t\\://{h}",
            "\\x6A\\x61\\x76\\x61script://{h}",
            "&#x2F;&#x2F;{h}",
            "\";alert(0);//{h}",
        ],
    ),
    (
        "the allowed host, then a path that tries to leave it",
        &[
            "https://{g}/{h}",
            "https://{g}#@{h}",
            "https://{g}?@{h}",
            "https://{g}//{h}",
            "https://{g}/\\{h}",
            "https://{g}/%2F%2F{h}",
            "https://{g}/%5C{h}",
            "https://{g}/..//{h}",
            "https://{g}/%2e%2e/%2F{h}",
            "https://{g}/%09/{h}",
            "https://{g}/\t/{h}",
            "https://{g}\t/{h}",
            "https://{g}:443//{h}",
            "https://{g}.//{h}",
            "HTTPS://{g}/{h}",
            "https://{g}/\u{ff0f}{h}",
            "https://{g}/?next=//{h}",
        ],
    ),
    (
        "paths that name another host but stay here",
        &[
            "/?url=//{h}",
            "/redirect?next=https://{h}",
            "/a?u=/\\/{h}",
            "/{h}",
            "/{h}/%2F%2e%2e",
            "/x:1/:///%01javascript:{h}",
            "/#//{h}",
        ],
    ),
];

/// What payloads end with: nothing, or an attempt to walk back out.
const SUFFIXES: &[&str] = &[
    "",
    "/",
    "//",
    "/%2e%2e",
    "/%2f%2e%2e",
    "/%2e%2e%2f",
    "/..",
    "?x=1",
    "#frag",
    "\\@app.example.com",
];

fn payloads() -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for (_, templates) in CLASSES {
        for template in *templates {
            for host in HOSTS {
                for suffix in SUFFIXES {
                    let payload = template
                        .replace("{h}", host)
                        .replace("{g}", "app.example.com");
                    all.insert(format!("{payload}{suffix}"));
                }
            }
        }
    }
    all
}

#[test]
fn the_payload_table_is_large_and_covers_every_class() {
    let all = payloads();
    assert!(all.len() > 50_000, "only {} payloads", all.len());
    let templates: usize = CLASSES.iter().map(|(_, t)| t.len()).sum();
    assert!(
        CLASSES.len() >= 10 && templates > 200,
        "{templates} templates"
    );
    println!(
        "{} distinct payloads: {} classes, {templates} templates x {} hosts x {} suffixes",
        all.len(),
        CLASSES.len(),
        HOSTS.len(),
        SUFFIXES.len()
    );
}

#[test]
fn every_payload_becomes_root_or_a_target_that_stays_on_an_allowed_origin() {
    let allowed = allowed();
    let all = payloads();
    let kept = all
        .iter()
        .filter(|payload| validated(payload, &allowed) != "/")
        .count();
    // Some payloads are harmless paths (`/?url=//evil.com`) or reach the
    // allowed host (`https://app.example.com#@evil.com`); most are refused.
    assert!(
        kept > 0 && kept < all.len() / 10,
        "{kept} of {} kept",
        all.len()
    );
}

#[test]
fn without_allowed_hosts_no_payload_leaves_this_origin() {
    for payload in payloads() {
        let out = validated(&payload, &[]);
        assert!(out.starts_with('/'), "{payload:?} -> {out:?}");
    }
}

// --- what must be kept -------------------------------------------------------

#[test]
fn paths_on_this_origin_are_kept_as_they_are() {
    for rd in [
        "/",
        "/chat",
        "/chat/",
        "/chat?x=1&y=%2F",
        "/a/b#frag",
        "/a/b?x=1#frag",
        "/a?next=//evil.com",
        "/a?next=https://evil.com/",
        "/a?q=%25",
        "/docs/v1.2/_index~x",
        "/a:b@c!$&'()*+,;=",
        "/%C3%A9t%C3%A9",
    ] {
        assert_eq!(validated(rd, &allowed()), rd, "{rd:?}");
    }
}

#[test]
fn non_ascii_and_characters_uri_syntax_forbids_are_percent_encoded() {
    for (rd, want) in [
        ("/caf\u{e9}", "/caf%C3%A9"),
        ("/\u{65e5}\u{672c}", "/%E6%97%A5%E6%9C%AC"),
        ("/a\"b", "/a%22b"),
        ("/<script>", "/%3Cscript%3E"),
        ("/a?x=[1]", "/a?x=%5B1%5D"),
        ("/a|b^c`d{e}", "/a%7Cb%5Ec%60d%7Be%7D"),
        ("/a#b#c", "/a#b%23c"),
    ] {
        assert_eq!(validated(rd, &[]), want, "{rd:?}");
    }
}

#[test]
fn absolute_urls_to_allowed_hosts_are_kept_with_case_and_trailing_dot_folded() {
    for (rd, want) in [
        ("https://app.example.com/x", "https://app.example.com/x"),
        ("https://APP.example.com./x", "https://app.example.com/x"),
        ("https://App.Example.Com", "https://app.example.com/"),
        (
            "HTTPS://app.example.com/x?y=1#z",
            "https://app.example.com/x?y=1#z",
        ),
        (
            "https://app.example.com?y=1",
            "https://app.example.com/?y=1",
        ),
        (
            "https://app.example.com:443/x",
            "https://app.example.com:443/x",
        ),
        (
            "https://api.example.com:8443/v1",
            "https://api.example.com:8443/v1",
        ),
        (
            "https://API.example.com.:8443",
            "https://api.example.com:8443/",
        ),
        (
            "https://app.example.com#@evil.com",
            "https://app.example.com/#@evil.com",
        ),
        (
            "https://app.example.com/caf\u{e9}",
            "https://app.example.com/caf%C3%A9",
        ),
    ] {
        assert_eq!(validated(rd, &allowed()), want, "{rd:?}");
    }
}

// --- what must be refused ----------------------------------------------------

#[test]
fn look_alikes_of_allowed_hosts_other_schemes_and_other_ports_become_root() {
    for rd in [
        "https://app.example.com.evil.com/",
        "https://app.example.com.evil.com./",
        "https://evil.com\\@app.example.com",
        "https://evil.com\\@app.example.com/",
        "https://app.example.com@evil.com",
        "https://app.example.com@evil.com/",
        "https://app.example.com:443@evil.com/",
        "https://user:pw@app.example.com/",
        "https://@app.example.com/",
        "http://app.example.com/",
        "HTTP://app.example.com/",
        "wss://app.example.com/",
        "https://app.example.com:8443/",
        "https://app.example.com:444/",
        "https://app.example.com:/",
        "https://app.example.com:99999/",
        "https://api.example.com/",
        "https://api.example.com:443/",
        "https://api.example.com:8444/",
        "https://sub.app.example.com/",
        "https://xapp.example.com/",
        "https://app.example.com../",
        "https://app%2eexample.com/",
        "https://app.example.com%2F@evil.com/",
        "https:app.example.com/",
        "https:/app.example.com/",
        "https:\\\\app.example.com/",
        "https:/\\app.example.com/",
        "https:///app.example.com/",
        "https://",
        "https:",
        "https://app.example.com//evil.com",
        "https://app.example.com/\\evil.com",
        "https://app.example.com/%2F%2Fevil.com",
        "https://app.ex\tample.com/",
        "https://app.example.com\n/",
        " https://app.example.com/",
    ] {
        assert_eq!(validated(rd, &allowed()), "/", "{rd:?}");
    }
}

#[test]
fn an_allowed_host_is_only_allowed_when_configured() {
    assert_eq!(validated("https://app.example.com/x", &[]), "/");
    let odd = vec![
        "https://app.example.com".to_owned(),
        "app.example.com/".to_owned(),
        "*.example.com".to_owned(),
        "".to_owned(),
    ];
    assert_eq!(validated("https://app.example.com/x", &odd), "/");
    assert_eq!(validated("https://x.example.com/", &odd), "/");
}

#[test]
fn targets_longer_than_the_limit_become_root() {
    let longest = format!("/{}", "a".repeat(MAX_LEN - 1));
    assert_eq!(validated(&longest, &[]), longest);
    assert_eq!(validated(&format!("{longest}a"), &[]), "/");
    assert_eq!(validated(&"/".repeat(100_000), &[]), "/");
    assert_eq!(
        validated(&format!("/{}", "%C3%A9".repeat(300)), &[]).len(),
        1801
    );
    // Short enough as sent, too long once encoded.
    assert_eq!(validated(&format!("/{}", "\u{e9}".repeat(1000)), &[]), "/");
}

// --- properties ---------------------------------------------------------------

/// The pieces payloads are made of.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/".to_owned()),
        Just("//".to_owned()),
        Just("\\".to_owned()),
        Just("%2F".to_owned()),
        Just("%2f".to_owned()),
        Just("%5C".to_owned()),
        Just("%09".to_owned()),
        Just("%00".to_owned()),
        Just("%25".to_owned()),
        Just("%".to_owned()),
        Just("%E3%80%80".to_owned()),
        Just("\t".to_owned()),
        Just("\n".to_owned()),
        Just("\r".to_owned()),
        Just(" ".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("%2e".to_owned()),
        Just(";".to_owned()),
        Just("@".to_owned()),
        Just(":".to_owned()),
        Just("?".to_owned()),
        Just("#".to_owned()),
        Just("https:".to_owned()),
        Just("https://".to_owned()),
        Just("HTTPS://".to_owned()),
        Just("http://".to_owned()),
        Just("javascript:".to_owned()),
        Just("app.example.com".to_owned()),
        Just("APP.EXAMPLE.COM.".to_owned()),
        Just("api.example.com".to_owned()),
        Just(":8443".to_owned()),
        Just(":443".to_owned()),
        Just("evil.com".to_owned()),
        Just("[::1]".to_owned()),
        Just("0x7f.1".to_owned()),
        Just("\u{ff0f}".to_owned()),
        Just("\u{3002}".to_owned()),
        Just("\u{a0}".to_owned()),
        Just("\u{202e}".to_owned()),
        Just("\u{e9}".to_owned()),
        "[a-zA-Z0-9._~!$&'()*+,;=:@%/?#\\[\\]\"<>{}|^` -]{0,4}",
        any::<char>().prop_map(String::from),
    ]
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
    fn any_string_gives_a_safe_fixed_point_without_panicking(rd in any::<String>()) {
        let allowed = allowed();
        let out = safe_return(&rd, &allowed);
        prop_assert!(check_result(&out).is_ok(), "{:?} -> {:?}: {:?}", rd, out, check_result(&out));
        prop_assert_eq!(safe_return(&out, &allowed), out);
    }

    #[test]
    fn targets_made_of_attack_pieces_stay_on_allowed_origins(
        pieces in prop::collection::vec(piece(), 0..16),
        with_hosts in any::<bool>(),
    ) {
        let rd = pieces.concat();
        let allowed = if with_hosts { allowed() } else { Vec::new() };
        let out = safe_return(&rd, &allowed);
        prop_assert!(check_result(&out).is_ok(), "{:?} -> {:?}: {:?}", rd, out, check_result(&out));
        prop_assert!(with_hosts || out.starts_with('/'), "{:?} -> {:?}", rd, out);
        prop_assert_eq!(safe_return(&out, &allowed), out);
    }

    #[test]
    fn any_bytes_and_any_allowed_list_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..64),
        entries in prop::collection::vec("[a-zA-Z0-9.:\\[\\]@/-]{0,20}", 0..3),
    ) {
        let rd = String::from_utf8_lossy(&bytes);
        let out = safe_return(&rd, &entries);
        prop_assert!(out.starts_with('/') || out.starts_with("https://"), "{:?}", out);
        prop_assert!(out.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{:?}", out);
    }
}
