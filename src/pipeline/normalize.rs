//! Request-target normalization and request-head ambiguity checks (SPEC §3.2).
//!
//! This stage owns the ONE normalized form of a request that routing, the auth
//! decision, the access log and the forwarded request all use. Anything
//! ambiguous is refused here, before any other stage looks at the request, so
//! that no two components can read the same request differently
//! (`/public/../admin`, `/%61dmin`, `//admin`, `/..;/admin`, `/admin%2F`,
//! duplicate `Authorization`, `Content-Length` + `Transfer-Encoding`, ...).
//!
//! What [`normalize_path_and_query`] does to the path, in one pass over its bytes:
//!
//! - Percent-encoded unreserved characters are decoded, as RFC 3986 §2.3 and
//!   §6.2.2.2 allow (`/%61dmin` is `/admin`); every other escape is kept with
//!   uppercase hex digits (§6.2.2.1). An escape of `/`, `\` or a control
//!   character is refused: the backend would read a different path structure.
//! - Bytes that RFC 3986 §3.3 does not allow raw in a path segment (`pchar`) are
//!   percent-encoded, except raw `\`, control characters, space and `#`, which
//!   are refused.
//! - Repeated slashes are merged; a trailing slash is kept.
//! - Dot-segments (`.` and `..`, raw or encoded, RFC 3986 §6.2.2.3) are refused
//!   rather than resolved, and so are segments starting with `.;` or `..;`
//!   (Tomcat-style path parameters, `;` raw or as `%3B`).
//!
//! The query string is forwarded byte for byte: it is never decoded, only
//! checked for control characters, spaces and `#`.
//!
//! [`check_head`] refuses heads that two HTTP implementations could read
//! differently (RFC 9112 §6.3 request smuggling, RFC 9110 §7.2 `Host`), and
//! answers the one validated host of the request.

use http::header::{AUTHORIZATION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, Uri};

use crate::host::{self, Canonical};
use crate::text::{is_pchar, is_unreserved};

/// The request target after normalization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Normalized path: starts with '/', no empty segments (slashes merged), unreserved escapes decoded,
    /// remaining escapes with UPPERCASE hex, characters outside RFC 3986 pchar percent-encoded.
    pub path: String,
    /// Raw query string without '?', or None. Never contains '#'.
    pub query: Option<String>,
}

/// Why a request was refused by this stage. Each is answered `400 bad_request`;
/// the messages never echo the request, so they are safe to show a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The target is not an absolute path: asterisk-form, authority-form, empty,
    /// or anything else not starting with `/`.
    #[error("request target must be an absolute path")]
    NotOriginForm,
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-encoding in path")]
    MalformedEscape,
    /// `%2F`: a slash the router and the backend could disagree about.
    #[error("percent-encoded slash in path")]
    EncodedSlash,
    /// `%5C`: a backslash some backends treat as a separator.
    #[error("percent-encoded backslash in path")]
    EncodedBackslash,
    /// `%00`-`%1F` or `%7F`.
    #[error("percent-encoded control character in path")]
    EncodedControl,
    /// A raw `\` in the path.
    #[error("backslash in path")]
    Backslash,
    /// A raw control character (0x00-0x1F, 0x7F) in the path or query.
    #[error("control character in request target")]
    ControlCharacter,
    /// A raw space in the path or query.
    #[error("space in request target")]
    Space,
    /// A raw `#`: fragments are never sent to a server.
    #[error("fragment in request target")]
    Fragment,
    /// A `.` or `..` segment (raw or encoded), or one starting with `.;` / `..;`.
    #[error("dot-segment in path")]
    DotSegment,

    /// A raw `;` (path parameter) in the path.
    #[error("path parameter (;) in path")]
    PathParameter,
    /// Two or more `Authorization` headers.
    #[error("more than one authorization header")]
    DuplicateAuthorization,
    /// Two or more `Host` headers.
    #[error("more than one host header")]
    DuplicateHost,
    /// A `Host` or `:authority` that is not a valid `host[:port]` (SPEC §3.2).
    #[error("invalid host")]
    InvalidHost,
    /// An HTTP/1.1 request without `Host` (RFC 9112 §3.2).
    #[error("a host header is required")]
    HostRequired,
    /// A path and query that cannot be forwarded as a request target.
    #[error("invalid request target")]
    InvalidTarget,
    /// `Content-Length` and `Transfer-Encoding` together.
    #[error("content-length together with transfer-encoding")]
    ContentLengthWithTransferEncoding,
    /// Several `Content-Length` values that are not all the same.
    #[error("conflicting content-length values")]
    ConflictingContentLength,
    /// An absolute-form target (or HTTP/2 `:authority`) naming another host than `Host`.
    #[error("request target authority does not match host header")]
    AuthorityMismatch,
    /// A header name with `_` that reads as a proxy-owned header once `_` is `-`.
    #[error("header name with underscore folds onto a proxy-owned header")]
    UnderscoreHeader,
}

/// Normalizes the path and query of a request target (`http::Uri` as hyper parsed it).
///
/// An absolute-form target with an empty path means `/` (RFC 9112 §3.2.2);
/// authority-form and asterisk-form targets are refused.
///
/// # Errors
///
/// A [`Refusal`] naming the first ambiguity found; the request gets `400`.
pub fn normalize_uri(uri: &Uri) -> Result<Target, Refusal> {
    let path = match uri.path() {
        "" if uri.scheme().is_some() => "/",
        path => path,
    };
    normalize_parts(path, uri.query())
}

/// Normalizes a raw path-and-query string (the part after the authority). Used by [`normalize_uri`] and by tests.
///
/// The query starts at the first `?`; a `#` anywhere is refused.
///
/// # Errors
///
/// A [`Refusal`] naming the first ambiguity found; the request gets `400`.
pub fn normalize_path_and_query(raw: &str) -> Result<Target, Refusal> {
    match raw.split_once('?') {
        Some((path, query)) => normalize_parts(path, Some(query)),
        None => normalize_parts(raw, None),
    }
}

/// Checks the request head for ambiguity (SPEC §3.2) and returns the
/// request's one validated host (see [`crate::host`]): from `Host`, or from
/// the target's authority (HTTP/2 `:authority`, an absolute-form target)
/// when there is no `Host`. `None`: the request named no host (HTTP/1.0).
///
/// `proxy_owned` lists header names (lowercase, with '-') that gatehouse
/// itself sets (identity headers, x-forwarded-*, x-request-id...).
///
/// # Errors
///
/// A [`Refusal`] naming the first ambiguity found; the request gets `400`.
pub fn check_head(
    uri: &Uri,
    headers: &HeaderMap,
    proxy_owned: &[HeaderName],
) -> Result<Option<Canonical>, Refusal> {
    // One pass over the fields instead of a lookup per name (this runs on
    // every request); the checks then run in a fixed order.
    let mut authorizations = 0_usize;
    let mut hosts = 0_usize;
    let mut host_value = None;
    let (mut content_length, mut transfer_encoding, mut underscore) = (false, false, false);
    for (name, value) in headers {
        if name == AUTHORIZATION {
            authorizations += 1;
        } else if name == HOST {
            hosts += 1;
            host_value = host_value.or(Some(value));
        } else if name == CONTENT_LENGTH {
            content_length = true;
        } else if name == TRANSFER_ENCODING {
            transfer_encoding = true;
        } else if folds_onto_any(name, proxy_owned) {
            underscore = true;
        }
    }
    if authorizations > 1 {
        return Err(Refusal::DuplicateAuthorization);
    }
    if content_length && transfer_encoding {
        return Err(Refusal::ContentLengthWithTransferEncoding);
    }
    if content_length {
        check_content_lengths(headers)?;
    }
    if hosts > 1 {
        return Err(Refusal::DuplicateHost);
    }
    let host = match host_value {
        Some(value) => Some(host::parse(value.as_bytes()).map_err(|_| Refusal::InvalidHost)?),
        None => None,
    };
    let authority = match uri.authority() {
        // `http::Uri` keeps userinfo in the authority; a host never has one.
        Some(a) if a.as_str().contains('@') => return Err(Refusal::InvalidHost),
        Some(a) => Some(host::parse(a.as_str().as_bytes()).map_err(|_| Refusal::InvalidHost)?),
        None => None,
    };

    if underscore {
        return Err(Refusal::UnderscoreHeader);
    }

    Ok(match (host, authority) {
        (Some(host), Some(authority)) => {
            let default_port = uri.scheme_str().and_then(host::default_port);
            if !authority.name_eq(host.name())
                || authority.port.or(default_port) != host.port.or(default_port)
            {
                return Err(Refusal::AuthorityMismatch);
            }
            Some(host.canonical(host_value))
        }
        (Some(host), None) => Some(host.canonical(host_value)),
        (None, Some(authority)) => Some(authority.canonical(None)),
        (None, None) => None,
    })
}

/// The forwarded request target: the normalized `path` and the `query`.
pub fn path_and_query(path: &str, query: Option<&str>) -> Result<http::uri::PathAndQuery, Refusal> {
    let mut s = String::with_capacity(path.len() + query.map_or(0, |q| q.len() + 1));
    s.push_str(path);
    if let Some(q) = query {
        s.push('?');
        s.push_str(q);
    }
    http::uri::PathAndQuery::from_maybe_shared(bytes::Bytes::from(s))
        .map_err(|_| Refusal::InvalidTarget)
}

/// Normalizes an already split path and optional query.
fn normalize_parts(path: &str, query: Option<&str>) -> Result<Target, Refusal> {
    let path = normalize_path(path)?;
    let query = match query {
        Some(query) => {
            check_query(query)?;
            Some(query.to_owned())
        }
        None => None,
    };
    Ok(Target { path, query })
}

/// One pass over the raw path: decode, re-encode, merge slashes and refuse
/// dot-segments, writing into a single output buffer.
fn normalize_path(raw: &str) -> Result<String, Refusal> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(Refusal::NotOriginForm);
    }

    let mut out = String::with_capacity(raw.len());
    // Offset in `out` where the current segment starts (just after its '/').
    let mut segment_start = 0;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        i += 1;
        match b {
            b'/' => {
                check_segment(&out, segment_start)?;
                // An empty segment (and the leading one) ends with no output:
                // this merges `//` into `/`.
                if !out.ends_with('/') {
                    out.push('/');
                }
                segment_start = out.len();
            }
            b'%' => {
                let hi = bytes.get(i).copied().and_then(hex_value);
                let lo = bytes.get(i + 1).copied().and_then(hex_value);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(Refusal::MalformedEscape);
                };
                i += 2;
                match (hi << 4) | lo {
                    b'/' => return Err(Refusal::EncodedSlash),
                    b'\\' => return Err(Refusal::EncodedBackslash),
                    c if c.is_ascii_control() => return Err(Refusal::EncodedControl),
                    c if is_unreserved(c) => out.push(char::from(c)),
                    c => push_escape(&mut out, c),
                }
            }
            b'\\' => return Err(Refusal::Backslash),
            // Servlet containers cut a segment at `;` (`/admin;x/y` is
            // `/admin/y` to Tomcat), so a raw `;` could route one way here and
            // another way there. An escaped `%3B` is data to everyone.
            b';' => return Err(Refusal::PathParameter),
            b' ' => return Err(Refusal::Space),
            b'#' => return Err(Refusal::Fragment),
            c if c.is_ascii_control() => return Err(Refusal::ControlCharacter),
            c if is_pchar(c) => out.push(char::from(c)),
            // Non-ASCII bytes and ASCII outside pchar (`"<>^`{|}[]`...).
            c => push_escape(&mut out, c),
        }
    }
    check_segment(&out, segment_start)?;
    Ok(out)
}

/// Refuses the segment `out[start..]` if it is a dot-segment, or a dot-segment
/// followed by a Tomcat-style path parameter (`.;x`, `..;x`, `;` raw or `%3B`).
/// The segment is already normalized: unreserved escapes decoded, hex uppercase.
fn check_segment(out: &str, start: usize) -> Result<(), Refusal> {
    let segment = out.as_bytes().get(start..).unwrap_or_default();
    let rest = segment
        .strip_prefix(b"..")
        .or_else(|| segment.strip_prefix(b"."));
    match rest {
        Some(rest) if rest.is_empty() || rest.starts_with(b";") || rest.starts_with(b"%3B") => {
            Err(Refusal::DotSegment)
        }
        _ => Ok(()),
    }
}

/// Refuses raw control characters, spaces and `#` in the query.
fn check_query(query: &str) -> Result<(), Refusal> {
    for &b in query.as_bytes() {
        match b {
            b' ' => return Err(Refusal::Space),
            b'#' => return Err(Refusal::Fragment),
            c if c.is_ascii_control() => return Err(Refusal::ControlCharacter),
            _ => {}
        }
    }
    Ok(())
}

/// Appends `%XX` with uppercase hex (RFC 3986 §2.1).
fn push_escape(out: &mut String, byte: u8) {
    out.push('%');
    out.push(hex_digit(byte >> 4));
    out.push(hex_digit(byte & 0x0F));
}

/// The uppercase hex digit for a nibble (`0..=15`).
fn hex_digit(nibble: u8) -> char {
    char::from(match nibble {
        0..=9 => b'0' + nibble,
        _ => b'A' + (nibble & 0x0F) - 10,
    })
}

/// The value of one hex digit, either case.
fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Refuses `Content-Length` values (across headers and comma lists) that differ.
fn check_content_lengths(headers: &HeaderMap) -> Result<(), Refusal> {
    let mut first: Option<&[u8]> = None;
    let values = headers.get_all(CONTENT_LENGTH).iter();
    for value in values.flat_map(|v| v.as_bytes().split(|&b| b == b',')) {
        let value = value.trim_ascii();
        match first {
            None => first = Some(value),
            Some(first) if first != value => return Err(Refusal::ConflictingContentLength),
            Some(_) => {}
        }
    }
    Ok(())
}

/// Whether `name` contains `_` and reads as one of `proxy_owned` once every
/// `_` is replaced by `-` (a `HeaderName` is already lowercase).
fn folds_onto_any(name: &HeaderName, proxy_owned: &[HeaderName]) -> bool {
    let name = name.as_str().as_bytes();
    if !name.contains(&b'_') {
        return false;
    }
    proxy_owned.iter().any(|owned| {
        let owned = owned.as_str().as_bytes();
        owned.len() == name.len()
            && name
                .iter()
                .zip(owned)
                .all(|(&a, &b)| (if a == b'_' { b'-' } else { a }) == b)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn path(raw: &str) -> Result<String, Refusal> {
        normalize_path_and_query(raw).map(|t| t.path)
    }

    fn ok(raw: &str) -> String {
        match path(raw) {
            Ok(p) => p,
            Err(e) => panic!("{raw:?} was refused: {e}"),
        }
    }

    // --- origin form -------------------------------------------------------

    #[test]
    fn plain_path_is_unchanged() {
        assert_eq!(ok("/admin/users"), "/admin/users");
        assert_eq!(ok("/"), "/");
    }

    #[test]
    fn empty_path_is_refused() {
        assert_eq!(path(""), Err(Refusal::NotOriginForm));
        assert_eq!(path("?x=1"), Err(Refusal::NotOriginForm));
    }

    #[test]
    fn asterisk_form_is_refused() {
        assert_eq!(path("*"), Err(Refusal::NotOriginForm));
        let uri: Uri = "*".parse().expect("valid uri");
        assert_eq!(normalize_uri(&uri), Err(Refusal::NotOriginForm));
    }

    #[test]
    fn relative_path_is_refused() {
        assert_eq!(path("admin"), Err(Refusal::NotOriginForm));
        assert_eq!(path("%2Fadmin"), Err(Refusal::NotOriginForm));
    }

    #[test]
    fn authority_form_is_refused() {
        let uri: Uri = "example.com:443".parse().expect("valid uri");
        assert_eq!(normalize_uri(&uri), Err(Refusal::NotOriginForm));
    }

    #[test]
    fn absolute_form_with_empty_path_means_root() {
        let uri: Uri = "http://example.com".parse().expect("valid uri");
        let target = normalize_uri(&uri).expect("accepted");
        assert_eq!(target.path, "/");
        assert_eq!(target.query, None);
        let uri: Uri = "http://example.com?x=1".parse().expect("valid uri");
        let target = normalize_uri(&uri).expect("accepted");
        assert_eq!(target.path, "/");
        assert_eq!(target.query.as_deref(), Some("x=1"));
    }

    #[test]
    fn normalize_uri_normalizes_the_path() {
        let uri: Uri = "/%61dmin//x?y=%2F".parse().expect("valid uri");
        let target = normalize_uri(&uri).expect("accepted");
        assert_eq!(target.path, "/admin/x");
        assert_eq!(target.query.as_deref(), Some("y=%2F"));
        let uri: Uri = "https://gate.example/public/../admin"
            .parse()
            .expect("valid uri");
        assert_eq!(normalize_uri(&uri), Err(Refusal::DotSegment));
    }

    // --- percent-escapes ---------------------------------------------------

    #[test]
    fn unreserved_escape_is_decoded() {
        assert_eq!(ok("/%61dmin"), "/admin");
        assert_eq!(ok("/%7e"), "/~");
        assert_eq!(ok("/%7Euser/%2d%5f%30"), "/~user/-_0");
        assert_eq!(ok("/a%2eb"), "/a.b");
    }

    #[test]
    fn reserved_escape_is_kept_with_uppercase_hex() {
        assert_eq!(ok("/caf%c3%a9"), "/caf%C3%A9");
        assert_eq!(ok("/a%3fb%23c%25"), "/a%3Fb%23c%25");
        assert_eq!(ok("/a%3bb"), "/a%3Bb");
    }

    #[test]
    fn escaped_percent_is_not_decoded_twice() {
        assert_eq!(ok("/%252e%252e/admin"), "/%252e%252e/admin");
    }

    #[test]
    fn malformed_escape_is_refused() {
        assert_eq!(path("/a%zz"), Err(Refusal::MalformedEscape));
        assert_eq!(path("/a%4"), Err(Refusal::MalformedEscape));
        assert_eq!(path("/a%"), Err(Refusal::MalformedEscape));
        assert_eq!(path("/a%g1"), Err(Refusal::MalformedEscape));
        assert_eq!(path("/a%4?x"), Err(Refusal::MalformedEscape));
    }

    #[test]
    fn encoded_slash_is_refused() {
        assert_eq!(path("/admin%2F"), Err(Refusal::EncodedSlash));
        assert_eq!(path("/admin%2fx"), Err(Refusal::EncodedSlash));
    }

    #[test]
    fn encoded_backslash_is_refused() {
        assert_eq!(path("/admin%5Cx"), Err(Refusal::EncodedBackslash));
        assert_eq!(path("/admin%5cx"), Err(Refusal::EncodedBackslash));
    }

    #[test]
    fn encoded_nul_is_refused() {
        assert_eq!(path("/admin%00"), Err(Refusal::EncodedControl));
    }

    #[test]
    fn encoded_control_character_is_refused() {
        assert_eq!(path("/a%0ab"), Err(Refusal::EncodedControl));
        assert_eq!(path("/a%0D%0Ab"), Err(Refusal::EncodedControl));
        assert_eq!(path("/a%1F"), Err(Refusal::EncodedControl));
        assert_eq!(path("/a%7f"), Err(Refusal::EncodedControl));
        assert_eq!(ok("/a%20b"), "/a%20b");
    }

    #[test]
    fn every_escape_is_refused_decoded_or_kept_uppercase() {
        for byte in 0..=u8::MAX {
            let raw = format!("/a%{byte:02x}b");
            let expected = match byte {
                b'/' => Err(Refusal::EncodedSlash),
                b'\\' => Err(Refusal::EncodedBackslash),
                c if c.is_ascii_control() => Err(Refusal::EncodedControl),
                c if is_unreserved(c) => Ok(format!("/a{}b", char::from(c))),
                c => Ok(format!("/a%{c:02X}b")),
            };
            assert_eq!(path(&raw), expected, "{raw:?}");
        }
    }

    #[test]
    fn every_raw_ascii_byte_is_refused_kept_or_encoded() {
        for byte in 0..=0x7F_u8 {
            let raw = format!("/a{}b", char::from(byte));
            let expected = match byte {
                b'/' => Ok("/a/b".to_owned()),
                b'?' => Ok("/a".to_owned()),
                b'%' => Err(Refusal::MalformedEscape),
                b'\\' => Err(Refusal::Backslash),
                b' ' => Err(Refusal::Space),
                b'#' => Err(Refusal::Fragment),
                b';' => Err(Refusal::PathParameter),
                c if c.is_ascii_control() => Err(Refusal::ControlCharacter),
                c if is_pchar(c) => Ok(raw.clone()),
                c => Ok(format!("/a%{c:02X}b")),
            };
            assert_eq!(path(&raw), expected, "{raw:?}");
        }
    }

    // --- raw characters ----------------------------------------------------

    #[test]
    fn raw_backslash_is_refused() {
        assert_eq!(path("/admin\\x"), Err(Refusal::Backslash));
        assert_eq!(path("/\\admin"), Err(Refusal::Backslash));
    }

    #[test]
    fn raw_control_character_is_refused() {
        assert_eq!(path("/a\0b"), Err(Refusal::ControlCharacter));
        assert_eq!(path("/a\nb"), Err(Refusal::ControlCharacter));
        assert_eq!(path("/a\tb"), Err(Refusal::ControlCharacter));
        assert_eq!(path("/a\x7fb"), Err(Refusal::ControlCharacter));
    }

    #[test]
    fn raw_space_is_refused() {
        assert_eq!(path("/a b"), Err(Refusal::Space));
    }

    #[test]
    fn raw_fragment_is_refused() {
        assert_eq!(path("/a#b"), Err(Refusal::Fragment));
        assert_eq!(path("/a#b?c"), Err(Refusal::Fragment));
    }

    #[test]
    fn characters_outside_pchar_are_encoded() {
        assert_eq!(ok("/\"<>^`{|}[]"), "/%22%3C%3E%5E%60%7B%7C%7D%5B%5D");
        assert_eq!(ok("/caf\u{e9}"), "/caf%C3%A9");
    }

    #[test]
    fn sub_delims_colon_and_at_stay_raw() {
        assert_eq!(ok("/!$&'()*+,=:@"), "/!$&'()*+,=:@");
    }

    // --- dot-segments ------------------------------------------------------

    #[test]
    fn parent_segment_is_refused() {
        assert_eq!(path("/public/../admin"), Err(Refusal::DotSegment));
        assert_eq!(path("/.."), Err(Refusal::DotSegment));
        assert_eq!(path("/a/.."), Err(Refusal::DotSegment));
    }

    #[test]
    fn encoded_parent_segment_is_refused() {
        assert_eq!(path("/public/%2e%2e/admin"), Err(Refusal::DotSegment));
        assert_eq!(path("/public/%2E%2E/admin"), Err(Refusal::DotSegment));
        assert_eq!(path("/public/%2E%2e/admin"), Err(Refusal::DotSegment));
        assert_eq!(path("/public/.%2e/admin"), Err(Refusal::DotSegment));
        assert_eq!(path("/public/%2e./admin"), Err(Refusal::DotSegment));
    }

    #[test]
    fn current_segment_is_refused() {
        assert_eq!(path("/./admin"), Err(Refusal::DotSegment));
        assert_eq!(path("/admin/."), Err(Refusal::DotSegment));
        assert_eq!(path("/admin/%2e"), Err(Refusal::DotSegment));
        assert_eq!(path("/admin/./"), Err(Refusal::DotSegment));
    }

    #[test]
    fn dot_segment_behind_merged_slashes_is_refused() {
        assert_eq!(path("//..//admin"), Err(Refusal::DotSegment));
    }

    #[test]
    fn tomcat_path_parameter_on_dot_segment_is_refused() {
        assert!(path("/..;/admin").is_err());
        assert!(path("/public/..;/admin").is_err());
        assert!(path("/public/..;jsessionid=x/admin").is_err());
        assert!(path("/.;/admin").is_err());
        assert_eq!(path("/public/..%3B/admin"), Err(Refusal::DotSegment));
        assert_eq!(path("/public/..%3b/admin"), Err(Refusal::DotSegment));
        assert_eq!(path("/public/%2e%2e%3b/admin"), Err(Refusal::DotSegment));
        assert_eq!(path("/public/.%3bx"), Err(Refusal::DotSegment));
    }

    #[test]
    fn dotted_names_are_not_dot_segments() {
        assert_eq!(ok("/..."), "/...");
        assert_eq!(ok("/.hidden/a..b/c."), "/.hidden/a..b/c.");
        assert_eq!(path("/...;x"), Err(Refusal::PathParameter));
        assert_eq!(path("/admin;x/secret"), Err(Refusal::PathParameter));
        assert_eq!(path("/a;..;/b"), Err(Refusal::PathParameter));
    }

    // --- slashes -----------------------------------------------------------

    #[test]
    fn repeated_slashes_are_merged() {
        assert_eq!(ok("//admin"), "/admin");
        assert_eq!(ok("//admin///x"), "/admin/x");
        assert_eq!(ok("///"), "/");
    }

    #[test]
    fn trailing_slash_is_preserved() {
        assert_eq!(ok("/docs/"), "/docs/");
        assert_eq!(ok("/docs//"), "/docs/");
    }

    // --- query -------------------------------------------------------------

    #[test]
    fn query_is_kept_raw() {
        let t = normalize_path_and_query("/a?x=/../y").expect("accepted");
        assert_eq!(t.path, "/a");
        assert_eq!(t.query.as_deref(), Some("x=/../y"));
        let t = normalize_path_and_query("/foo/x?y=/bar").expect("accepted");
        assert_eq!(t.path, "/foo/x");
        assert_eq!(t.query.as_deref(), Some("y=/bar"));
        let t = normalize_path_and_query("/a?q=%2f%zz%61&b=?c").expect("accepted");
        assert_eq!(t.query.as_deref(), Some("q=%2f%zz%61&b=?c"));
    }

    #[test]
    fn empty_query_is_some_empty_string() {
        let t = normalize_path_and_query("/a?").expect("accepted");
        assert_eq!(t.query.as_deref(), Some(""));
        let t = normalize_path_and_query("/a").expect("accepted");
        assert_eq!(t.query, None);
    }

    #[test]
    fn query_with_control_space_or_fragment_is_refused() {
        assert_eq!(path("/a?x=\n"), Err(Refusal::ControlCharacter));
        assert_eq!(path("/a?x=\x7f"), Err(Refusal::ControlCharacter));
        assert_eq!(path("/a?x= y"), Err(Refusal::Space));
        assert_eq!(path("/a?x#y"), Err(Refusal::Fragment));
    }

    // --- check_head --------------------------------------------------------

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("valid name"),
                HeaderValue::from_str(value).expect("valid value"),
            );
        }
        map
    }

    fn head(uri: &str, pairs: &[(&str, &str)]) -> Result<(), Refusal> {
        let uri: Uri = uri.parse().expect("valid uri");
        let owned = [
            HeaderName::from_static("x-auth-user"),
            HeaderName::from_static("x-forwarded-for"),
        ];
        check_head(&uri, &headers(pairs), &owned).map(|_| ())
    }

    fn host_of(uri: &str, pairs: &[(&str, &str)]) -> Option<String> {
        let uri: Uri = uri.parse().expect("valid uri");
        check_head(&uri, &headers(pairs), &[])
            .expect("accepted")
            .map(|h| h.value().to_str().expect("ascii").to_owned())
    }

    #[test]
    fn the_one_host_is_validated_and_canonical() {
        assert_eq!(
            host_of("/", &[("host", "Admin.Example.com.:8443")]).as_deref(),
            Some("admin.example.com:8443")
        );
        assert_eq!(
            host_of("https://gate.example/", &[]).as_deref(),
            Some("gate.example")
        );
        assert_eq!(host_of("/", &[]), None);
        for bad in [
            "x@admin.example.com",
            "admin.example.com/x",
            "admin.example.com:99999",
            "a b",
            "[::1",
            "admin.example.com\\",
        ] {
            assert_eq!(
                head("/", &[("host", bad)]),
                Err(Refusal::InvalidHost),
                "{bad:?}"
            );
        }
        assert_eq!(
            head("http://user@gate.example/", &[("host", "gate.example")]),
            Err(Refusal::InvalidHost)
        );
    }

    #[test]
    fn ordinary_head_is_accepted() {
        let pairs = [
            ("host", "gate.example"),
            ("authorization", "Bearer x"),
            ("content-length", "3"),
            ("x-custom_header", "1"),
        ];
        assert_eq!(head("/a", &pairs), Ok(()));
    }

    #[test]
    fn duplicate_authorization_is_refused() {
        let pairs = [("authorization", "Bearer a"), ("authorization", "Bearer b")];
        assert_eq!(head("/", &pairs), Err(Refusal::DuplicateAuthorization));
    }

    #[test]
    fn content_length_with_transfer_encoding_is_refused() {
        let pairs = [("content-length", "5"), ("transfer-encoding", "chunked")];
        assert_eq!(
            head("/", &pairs),
            Err(Refusal::ContentLengthWithTransferEncoding)
        );
    }

    #[test]
    fn duplicate_host_is_refused() {
        let pairs = [("host", "gate.example"), ("host", "gate.example")];
        assert_eq!(head("/", &pairs), Err(Refusal::DuplicateHost));
    }

    #[test]
    fn differing_content_lengths_are_refused() {
        let pairs = [("content-length", "5"), ("content-length", "6")];
        assert_eq!(head("/", &pairs), Err(Refusal::ConflictingContentLength));
        let pairs = [("content-length", "5, 6")];
        assert_eq!(head("/", &pairs), Err(Refusal::ConflictingContentLength));
    }

    #[test]
    fn repeated_equal_content_lengths_are_accepted() {
        let pairs = [("content-length", "5"), ("content-length", "5, 5")];
        assert_eq!(head("/", &pairs), Ok(()));
    }

    #[test]
    fn absolute_form_for_another_host_is_refused() {
        let pairs = [("host", "gate.example")];
        assert_eq!(
            head("http://other.example/admin", &pairs),
            Err(Refusal::AuthorityMismatch)
        );
        let pairs = [("host", "gate.example:8443")];
        assert_eq!(
            head("https://gate.example/admin", &pairs),
            Err(Refusal::AuthorityMismatch)
        );
    }

    #[test]
    fn absolute_form_for_the_host_header_is_accepted() {
        assert_eq!(
            head("http://other.example/admin", &[("host", "other.example")]),
            Ok(())
        );
        assert_eq!(
            head("http://Other.Example/admin", &[("host", "other.EXAMPLE")]),
            Ok(())
        );
        assert_eq!(head("http://other.example/admin", &[]), Ok(()));
    }

    #[test]
    fn explicit_default_port_equals_no_port() {
        assert_eq!(
            head("https://gate.example/", &[("host", "gate.example:443")]),
            Ok(())
        );
        assert_eq!(
            head("https://gate.example:443/", &[("host", "gate.example")]),
            Ok(())
        );
        assert_eq!(
            head("http://gate.example:80/", &[("host", "gate.example")]),
            Ok(())
        );
        assert_eq!(
            head("http://gate.example/", &[("host", "gate.example:443")]),
            Err(Refusal::AuthorityMismatch)
        );
        assert_eq!(
            head("https://[::1]:8443/", &[("host", "[::1]:8443")]),
            Ok(())
        );
    }

    #[test]
    fn host_header_with_userinfo_never_matches() {
        assert_eq!(
            head(
                "http://other.example/",
                &[("host", "gate.example@other.example")]
            ),
            Err(Refusal::InvalidHost)
        );
    }

    #[test]
    fn underscore_header_folding_onto_proxy_owned_is_refused() {
        assert_eq!(
            head("/", &[("x_auth_user", "root")]),
            Err(Refusal::UnderscoreHeader)
        );
        assert_eq!(
            head("/", &[("X_Forwarded_For", "1.2.3.4")]),
            Err(Refusal::UnderscoreHeader)
        );
        assert_eq!(
            head("/", &[("x-auth_user", "root")]),
            Err(Refusal::UnderscoreHeader)
        );
        assert_eq!(head("/", &[("x_auth_users", "root")]), Ok(()));
    }

    #[test]
    fn refusal_messages_do_not_echo_input() {
        let err = path("/secret-token%zz").expect_err("refused");
        assert!(!err.to_string().contains("secret"));
        assert_eq!(err.to_string(), err.to_string().to_lowercase());
    }

    // --- property ----------------------------------------------------------

    /// A tiny deterministic xorshift64 generator.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % n as u64).expect("below n fits usize")
        }
    }

    #[test]
    fn generated_targets_never_panic_and_normalize_to_a_fixed_point() {
        const ALPHABET: &[u8] = b"/.%2eEfF5ca;?#\\ ";
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut accepted = 0;
        for _ in 0..20_000 {
            let len = rng.below(16);
            let mut raw = String::with_capacity(len + 1);
            if rng.below(4) != 0 {
                raw.push('/');
            }
            for _ in 0..len {
                raw.push(char::from(ALPHABET[rng.below(ALPHABET.len())]));
            }
            let Ok(target) = normalize_path_and_query(&raw) else {
                continue;
            };
            accepted += 1;
            let p = &target.path;
            assert!(p.starts_with('/'), "{raw:?} -> {p:?}");
            assert!(!p.contains("//"), "{raw:?} -> {p:?}");
            assert!(
                p.split('/').all(|s| s != "." && s != ".."),
                "{raw:?} -> {p:?}"
            );
            assert!(!p.contains(['?', '#', ' ', '\\']), "{raw:?} -> {p:?}");
            let again = normalize_path_and_query(p).map(|t| t.path);
            assert_eq!(again.as_ref(), Ok(p), "{raw:?} is not idempotent");
            if let Some(query) = &target.query {
                assert!(!query.contains('#'), "{raw:?}");
            }
        }
        assert!(
            accepted > 1_000,
            "only {accepted} generated targets were accepted"
        );
    }
}
