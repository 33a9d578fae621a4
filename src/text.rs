//! Rules for text: what gatehouse may put into headers it sets itself, and
//! which bytes a normalized request path holds as they are (RFC 3986), so
//! that the path normalizer (`pipeline::normalize`) and the config's path
//! patterns agree byte for byte.

/// Whether `s` can travel in a header value and a comma-separated list
/// exactly as it is: not empty, no control characters, no commas, and no
/// leading or trailing whitespace (an HTTP parser trims it off a value, so
/// `"admin "` would reach the backend as `admin`: SPEC §4 refuses it).
pub fn is_header_safe(s: &str) -> bool {
    !s.is_empty() && s.trim() == s && !s.bytes().any(|b| b < 0x20 || b == 0x7f || b == b',')
}

/// RFC 3986 §2.3 `unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"`.
pub fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 §3.3 `pchar`, less `pct-encoded` (handled separately):
/// unreserved / sub-delims / ":" / "@".
pub fn is_pchar(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

/// Whether `path` is one a request path can be after normalization, byte
/// for byte: `/`, then pchars (no `;`, which is refused), or `%XX` escapes
/// with uppercase hex of bytes normalization keeps escaped (not unreserved,
/// not `/`, `\` or a control character); no `//` and no dot-segment. A
/// route pattern that is not such a path could never match a request.
pub fn is_normalized_path(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') || path.contains("//") {
        return false;
    }
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        i += 1;
        match b {
            b'/' => {}
            b'%' => {
                let hex = |d: Option<&u8>| match d {
                    Some(d @ b'0'..=b'9') => Some(d - b'0'),
                    Some(d @ b'A'..=b'F') => Some(d - b'A' + 10),
                    _ => None,
                };
                let (Some(hi), Some(lo)) = (hex(bytes.get(i)), hex(bytes.get(i + 1))) else {
                    return false;
                };
                i += 2;
                let c = (hi << 4) | lo;
                if is_unreserved(c) || c == b'/' || c == b'\\' || c.is_ascii_control() {
                    return false;
                }
            }
            b';' => return false,
            c if is_pchar(c) => {}
            _ => return false,
        }
    }
    path.split('/').all(|segment| {
        let rest = segment
            .strip_prefix("..")
            .or_else(|| segment.strip_prefix('.'));
        !matches!(rest, Some(r) if r.is_empty() || r.starts_with("%3B"))
    })
}

/// Lowercase hex SHA-256 of `text`: how refresh tokens, session cookies and
/// API keys are stored and compared (never the secret itself).
pub fn sha256_hex(text: &str) -> String {
    use sha2::{Digest as _, Sha256};
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in Sha256::digest(text.as_bytes()) {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalized_paths_are_told_from_the_rest() {
        for ok in [
            "/",
            "/a",
            "/docs/",
            "/caf%C3%A9/x",
            "/a*b",
            "/users/*/x",
            "/a:b@c",
            "/%20",
        ] {
            assert!(is_normalized_path(ok), "{ok:?}");
        }
        for bad in [
            "",
            "a",
            "//a",
            "/a//b",
            "/./a",
            "/a/..",
            "/caf\u{e9}",
            "/caf%c3%a9",
            "/%61",
            "/%2F",
            "/%5C",
            "/%00",
            "/a b",
            "/a;b",
            "/a\"b",
            "/a<b",
            "/a%",
            "/a%4",
            "/..%3Bx",
        ] {
            assert!(!is_normalized_path(bad), "{bad:?}");
        }
    }

    #[test]
    fn sha256_hex_is_the_lowercase_digest() {
        assert_eq!(
            sha256_hex("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }
}
