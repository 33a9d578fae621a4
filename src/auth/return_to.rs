//! Where a browser goes after signing in: the `rd` ("return to") parameter
//! of the sign-in flow (SPEC §9). `rd` comes from the request, so it is an
//! open-redirect vector (CWE-601); this module owns the one check that turns
//! it into a `303` target that stays on this origin or on a host named in
//! `auth.sessions.allowed_redirect_hosts`, and into "/" otherwise.
//!
//! Browsers resolve a `Location` with the WHATWG URL standard, not with a
//! strict RFC 3986 parser: tabs and newlines anywhere are dropped, leading
//! control characters and spaces are trimmed, and for `http(s)` a `\` is a
//! `/`. So `/\evil.com`, `/\t/evil.com` and `https:\\evil.com` all leave the
//! origin. The rules below are written so that nothing a browser could read
//! that way survives, and so that a server behind us that decodes escapes or
//! resolves dot-segments before it redirects again cannot make `//host` out
//! of what we let through.
//!
//! Accepted, as a **path**: `rd` starts with `/`, and after one
//! percent-decoding
//!
//! - it holds no `\`, no control character, no whitespace (Unicode
//!   `White_Space`: tab, newline, space, NBSP, U+2028, U+3000 …), no
//!   invisible formatting character (bidi controls, zero-width characters,
//!   byte-order mark) and no look-alike of `/` or `\` (full-width `／`, `＼`,
//!   division slash …), and is valid UTF-8;
//! - its path part (up to the first `?` or `#`) has no empty segment (so it
//!   starts with exactly one `/` and never holds `//`) and no dot-segment
//!   (`.`, `..`, or a segment starting with `.;` or `..;`): the shape of a
//!   path after `pipeline::normalize`, so the paths gatehouse puts in `rd`
//!   itself pass. Such an absolute-path reference resolves against this
//!   origin (RFC 3986 §4.2, §5.2.2) whatever a browser strips from it.
//!
//! Every `%` must start a two-hex-digit escape. The query and the fragment
//! are kept (`/a?next=//x#top` stays on this origin), held to the same
//! character rules: a query with `%5C`, `%0A` or `%FF` in it makes "/".
//! Escapes are decoded once, as SPEC §9 says: `/%252F%252Fx` is a path on
//! this origin, to a browser as to us. (Anyone can link to a path on this
//! origin directly; the path rules only make sure the redirect is not the
//! step that leaves it.)
//!
//! Accepted, as an **absolute URL**: `https://` (any case) then an authority
//! that [`crate::host::parse`] accepts — so no userinfo (`user@host`), no
//! percent-encoding, no non-ASCII, no empty host — whose host, lower-cased
//! and without trailing dot, and whose port (443 when absent) equal those of
//! an entry of `allowed_redirect_hosts` (`host` or `host:port`; an entry
//! without port means 443); then nothing, or a path, query or fragment that
//! passes the path rules above. Any other scheme, `https:/x`, `https:x`,
//! `https:\\x` and `https:///x` are refused.
//!
//! Anything else, and any `rd` longer than [`MAX_LEN`] bytes, is "/".
//!
//! The result is a `Location` value (RFC 9110 §10.2.2) as RFC 3986 spells
//! it: only visible ASCII. Non-ASCII characters that pass are
//! percent-encoded as UTF-8 (`/café` → `/caf%C3%A9`, which a browser would
//! send anyway), and so are ASCII characters RFC 3986 does not allow raw in
//! the part they are in (`"`, `<`, `>`, `[`, `]`, `^`, `` ` ``, `{`, `|`,
//! `}`, a second `#`); existing escapes are kept as they are. An absolute
//! URL's scheme and host come out in canonical form
//! (`HTTPS://App.Example.com./x` → `https://app.example.com/x`). Validating
//! the result again gives the result.

use crate::host::{self, Canonical};
use crate::text::is_pchar;

/// The longest `rd`, and the longest result, in bytes; longer is "/".
pub const MAX_LEN: usize = 2048;

/// The validated `rd` target: `rd` itself when it is safe, else "/".
///
/// "Itself" up to the encoding described in the module documentation:
/// non-ASCII and characters RFC 3986 does not allow raw are
/// percent-encoded, and an allowed absolute URL's scheme and host are
/// lower-cased, without trailing dot. `allowed_redirect_hosts` holds
/// `host` or `host:port` entries (SPEC §9); an entry that is not a valid
/// host allows nothing.
pub fn safe_return(rd: &str, allowed_redirect_hosts: &[String]) -> String {
    checked(rd, allowed_redirect_hosts).unwrap_or_else(|| "/".to_owned())
}

fn checked(rd: &str, allowed: &[String]) -> Option<String> {
    if rd.len() > MAX_LEN {
        return None;
    }
    let target = if rd.starts_with('/') {
        same_origin(rd)?
    } else {
        allowed_absolute(rd, allowed)?
    };
    (target.len() <= MAX_LEN).then_some(target)
}

/// A path-absolute reference (`/…`), encoded, when it passes the path rules.
fn same_origin(reference: &str) -> Option<String> {
    let encoded = encode(reference);
    let decoded = percent_decode(&encoded)?;
    if !decoded.chars().all(is_allowed_char) {
        return None;
    }
    // The path part ends at the first raw `?` or `#`: that is where a
    // browser ends it. An escaped `%3F` stays in the path and is decoded
    // with it, as a server that decodes first would read it.
    let path_end = encoded.find(['?', '#']).unwrap_or(encoded.len());
    let path = percent_decode(encoded.get(..path_end)?)?;
    let segments = path.strip_prefix('/')?;
    let mut segments = segments.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if (segment.is_empty() && !last) || is_dot_segment(segment) {
            return None;
        }
    }
    Some(encoded)
}

/// `https://host[:port]…` whose host and port are allowed, in canonical form.
fn allowed_absolute(rd: &str, allowed: &[String]) -> Option<String> {
    const SCHEME: &str = "https://";
    if !rd.get(..SCHEME.len())?.eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let rest = rd.get(SCHEME.len()..)?;
    // Where the WHATWG URL parser ends a special URL's authority: `\` too.
    let end = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    // Refuses userinfo, `%`, non-ASCII, spaces, an empty host or port.
    let host = host::parse(authority.as_bytes()).ok()?.canonical(None);
    if !allowed.iter().any(|entry| is_same_host(&host, entry)) {
        return None;
    }
    let tail = match tail.as_bytes().first() {
        None => "/".to_owned(),
        Some(b'/') => same_origin(tail)?,
        Some(b'?' | b'#') => same_origin(&format!("/{tail}"))?,
        Some(_) => return None,
    };
    let host = host.value().to_str().ok()?;
    Some(format!("{SCHEME}{host}{tail}"))
}

/// Whether `host` is the configured `entry` (`host` or `host:port`): the
/// same canonical name and the same port, 443 when absent.
fn is_same_host(host: &Canonical, entry: &str) -> bool {
    let Ok(entry) = host::parse(entry.as_bytes()) else {
        return false;
    };
    let entry = entry.canonical(None);
    entry.name() == host.name() && entry.port().unwrap_or(443) == host.port().unwrap_or(443)
}

/// `.`, `..`, and the Tomcat-style `.;x` and `..;x`, as `pipeline::normalize`.
fn is_dot_segment(segment: &str) -> bool {
    matches!(segment, "." | "..") || segment.starts_with(".;") || segment.starts_with("..;")
}

/// Which part of a URI reference a character is in (RFC 3986 §3.3–§3.5).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Path,
    Query,
    Fragment,
}

/// `reference` with every character RFC 3986 does not allow raw where it
/// stands percent-encoded as UTF-8; `%` is copied (escapes are checked when
/// decoding).
fn encode(reference: &str) -> String {
    let mut out = String::with_capacity(reference.len());
    let mut part = Part::Path;
    for c in reference.chars() {
        let raw = match c {
            '?' if part == Part::Path => {
                part = Part::Query;
                true
            }
            '#' if part != Part::Fragment => {
                part = Part::Fragment;
                true
            }
            '?' | '/' | '%' => true,
            c => u8::try_from(c).is_ok_and(is_pchar),
        };
        if raw {
            out.push(c);
        } else {
            let mut utf8 = [0; 4];
            for b in c.encode_utf8(&mut utf8).bytes() {
                push_escape(&mut out, b);
            }
        }
    }
    out
}

fn push_escape(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0xf)]));
}

/// One percent-decoding; `None` when a `%` starts no two-hex-digit escape
/// or the bytes are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = hex(bytes.get(i + 1))?;
            let lo = hex(bytes.get(i + 2))?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn hex(digit: Option<&u8>) -> Option<u8> {
    char::from(*digit?)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Whether a character may appear in a decoded `rd`.
fn is_allowed_char(c: char) -> bool {
    c != '\\' && !c.is_control() && !c.is_whitespace() && !is_invisible(c) && !is_slash_like(c)
}

/// Format characters that render as nothing (Unicode `Cf`, the ones seen in
/// spoofing): soft hyphen, Arabic letter mark, Mongolian vowel separator,
/// zero-width characters and bidi marks, bidi embeddings and isolates, word
/// joiner and invisible operators, the byte-order mark, interlinear
/// annotation marks.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{61c}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
    )
}

/// Characters that look like `/` or `\`, or that Unicode compatibility
/// normalization (NFKC) turns into one.
fn is_slash_like(c: char) -> bool {
    matches!(
        c,
        '\u{2044}' // fraction slash
            | '\u{2215}' // division slash
            | '\u{2216}' // set minus
            | '\u{2571}' // box drawings light diagonal upper right to lower left
            | '\u{2572}' // box drawings light diagonal upper left to lower right
            | '\u{29f5}' // reverse solidus operator
            | '\u{29f8}' // big solidus
            | '\u{29f9}' // big reverse solidus
            | '\u{fe68}' // small reverse solidus
            | '\u{ff0f}' // fullwidth solidus
            | '\u{ff3c}' // fullwidth reverse solidus
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(entries: &[&str]) -> Vec<String> {
        entries.iter().map(|&e| e.to_owned()).collect()
    }

    #[test]
    fn paths_on_this_origin_are_kept() {
        for rd in [
            "/",
            "/chat",
            "/chat/",
            "/chat?x=1&y=%2F",
            "/a/b#frag",
            "/a?next=//evil.com",
            "/https:/evil.com",
            "/@evil.com",
            "/a/.b/...",
            "/caf%C3%A9",
            "/100%25",
        ] {
            assert_eq!(safe_return(rd, &[]), rd, "{rd:?}");
        }
    }

    #[test]
    fn paths_that_a_browser_or_a_decoding_server_reads_as_another_host_become_root() {
        for rd in [
            "",
            "//evil.com",
            "///evil.com",
            "/\\evil.com",
            "\\/evil.com",
            "/\t/evil.com",
            "/\n/evil.com",
            "/\r\n/evil.com",
            " /evil",
            "/%2F%2Fevil.com",
            "/%2f/evil.com",
            "/%5Cevil.com",
            "/%09/evil.com",
            "/.//evil.com",
            "/..//evil.com",
            "/%2e%2e//evil.com",
            "/..;//evil.com",
            "/a//evil.com",
            "/https://evil.com",
            "/a/../../evil",
            "/\u{ff0f}evil.com",
            "/%EF%BC%8Fevil.com",
            "/%00",
            "/a%",
            "/a%2",
            "/a%zz",
            "/%FF",
            "/a b",
            "/a\u{a0}b",
            "/a%E2%80%A8b",
            "/a\u{202e}b",
            "/a?x=\\",
            "/a#%0d%0aSet-Cookie:x",
            "evil.com",
            "javascript:alert(1)",
        ] {
            assert_eq!(safe_return(rd, &hosts(&["app.example.com"])), "/", "{rd:?}");
        }
    }

    #[test]
    fn the_result_is_visible_ascii_with_non_ascii_percent_encoded() {
        assert_eq!(safe_return("/caf\u{e9}", &[]), "/caf%C3%A9");
        assert_eq!(safe_return("/a\"<b>", &[]), "/a%22%3Cb%3E");
        assert_eq!(safe_return("/a?x=[1]&y={}", &[]), "/a?x=%5B1%5D&y=%7B%7D");
        assert_eq!(safe_return("/a#b#c", &[]), "/a#b%23c");
        assert_eq!(safe_return("/\u{1f600}", &[]), "/%F0%9F%98%80");
    }

    #[test]
    fn absolute_urls_to_allowed_hosts_are_kept_in_canonical_form() {
        let allowed = hosts(&["app.example.com", "api.example.com:8443", "[::1]"]);
        for (rd, want) in [
            ("https://app.example.com/x", "https://app.example.com/x"),
            ("https://APP.example.com./x", "https://app.example.com/x"),
            ("HTTPS://app.example.com", "https://app.example.com/"),
            (
                "https://app.example.com?q=1",
                "https://app.example.com/?q=1",
            ),
            ("https://app.example.com#f", "https://app.example.com/#f"),
            (
                "https://app.example.com:443/",
                "https://app.example.com:443/",
            ),
            (
                "https://api.example.com:8443/v",
                "https://api.example.com:8443/v",
            ),
            ("https://[0:0::1]/", "https://[::1]/"),
        ] {
            assert_eq!(safe_return(rd, &allowed), want, "{rd:?}");
        }
    }

    #[test]
    fn absolute_urls_to_other_hosts_ports_or_schemes_become_root() {
        let allowed = hosts(&["app.example.com", "api.example.com:8443"]);
        for rd in [
            "https://evil.com/",
            "https://app.example.com.evil.com/",
            "https://evil.com\\@app.example.com",
            "https://evil.com?@app.example.com",
            "https://evil.com#@app.example.com",
            "https://app.example.com@evil.com",
            "https://user@app.example.com/",
            "https://:@app.example.com/",
            "http://app.example.com/",
            "https://app.example.com:8443/",
            "https://api.example.com/",
            "https://api.example.com:443/",
            "https:/app.example.com/",
            "https:app.example.com/",
            "https:\\\\app.example.com/",
            "https:///app.example.com/",
            "https://",
            "https://app.example.com\\x",
            "https://app.example.com//evil.com",
            "https://app%2eexample.com/",
            "https://sub.app.example.com/",
            " https://app.example.com/",
            "https://app.example.com/\t/x",
        ] {
            assert_eq!(safe_return(rd, &allowed), "/", "{rd:?}");
        }
        assert_eq!(safe_return("https://app.example.com/", &[]), "/");
        assert_eq!(
            safe_return("https://app.example.com/", &hosts(&["app.example.com/"])),
            "/"
        );
    }

    #[test]
    fn long_targets_become_root() {
        let long = format!("/{}", "a".repeat(MAX_LEN - 1));
        assert_eq!(safe_return(&long, &[]), long);
        assert_eq!(safe_return(&format!("{long}a"), &[]), "/");
        // Within the limit, but longer once encoded.
        let wide = format!("/{}", "\u{e9}".repeat(700));
        assert_eq!(safe_return(&wide, &[]), "/");
    }
}
