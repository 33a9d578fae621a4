//! The one parser of hosts and origins: `Host`, HTTP/2 `:authority`,
//! `Origin`, and the origins of the config all go through here, so route
//! `host:` matching, redirects, CORS and `X-Forwarded-Host` can never read
//! the same bytes two ways (SPEC §3.2).
//!
//! A host is RFC 3986 §3.2.2 `host [ ":" port ]`, narrowed to what real
//! hosts look like and what no two parsers disagree about:
//!
//! - a registered name of letters, digits, `-`, `.`, `_` and `~`, with no
//!   empty label, at most 253 bytes; one trailing dot is allowed and dropped
//!   (`admin.example.com.` is `admin.example.com`);
//! - a name whose last label is a number (`127.1`, `0x7f.1`) must be a
//!   dotted-decimal IPv4 address: browsers and the WHATWG URL parser read
//!   `127.1` as `127.0.0.1`, a router comparing strings would not;
//! - or an IPv6 literal in brackets (`[::1]`), without zone identifier;
//! - then an optional port of one to five digits, at most 65535.
//!
//! Refused: userinfo (`user@host`), `/`, `?`, `#`, `\`, spaces, quotes,
//! percent-encoding, sub-delimiters, non-ASCII bytes, unbalanced or stray
//! brackets, an empty or oversized port.
//!
//! An origin (RFC 6454 §7) is `scheme "://" host [ ":" port ]` and nothing
//! else: no path, no trailing slash; `null` is no origin.

use std::net::Ipv6Addr;

use http::HeaderValue;

/// The longest registered name (RFC 1035 §2.3.4, without the trailing dot).
const MAX_NAME: usize = 253;

/// Why a host or origin was refused. The messages never echo the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidHost {
    #[error("empty host")]
    Empty,
    #[error("character not allowed in a host")]
    Character,
    #[error("empty label in host name")]
    EmptyLabel,
    #[error("host name too long")]
    TooLong,
    #[error("numeric host that is not a dotted-decimal IPv4 address")]
    AmbiguousNumber,
    #[error("malformed IPv6 literal")]
    Ipv6,
    #[error("malformed port")]
    Port,
    #[error("malformed origin")]
    Origin,
}

/// A validated `host[:port]`, borrowed from the bytes it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPort<'a> {
    /// The host as sent, without its trailing dot; an IPv6 literal keeps its
    /// brackets. May hold uppercase letters: see [`HostPort::name_eq`].
    name: &'a str,
    /// The port, when one was given.
    pub port: Option<u16>,
}

impl<'a> HostPort<'a> {
    /// The host name as sent (any case), without trailing dot and port.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// Whether the name equals `other` ignoring ASCII case (DNS names are
    /// case-insensitive, RFC 4343).
    pub fn name_eq(&self, other: &str) -> bool {
        self.name.eq_ignore_ascii_case(other)
    }

    /// Whether the name has no uppercase letter.
    pub fn is_lowercase(&self) -> bool {
        !self.name.bytes().any(|b| b.is_ascii_uppercase())
    }

    /// The name, lower-cased.
    pub fn name_lowercase(&self) -> std::borrow::Cow<'a, str> {
        if self.is_lowercase() {
            std::borrow::Cow::Borrowed(self.name)
        } else {
            std::borrow::Cow::Owned(self.name.to_ascii_lowercase())
        }
    }

    /// The canonical form: lower-cased, no trailing dot (see [`Canonical`]).
    /// `raw` is the value this was parsed from, when it is a header value:
    /// when it is canonical already it is reused without allocating.
    pub fn canonical(&self, raw: Option<&HeaderValue>) -> Canonical {
        // An IPv6 literal in its one RFC 5952 spelling (`[0:0::1]` is `[::1]`).
        let v6 = self
            .name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .and_then(|n| n.parse::<Ipv6Addr>().ok())
            .map(|addr| format!("[{addr}]"));
        let name_len = v6.as_ref().map_or(self.name.len(), String::len);
        let canonical_len = name_len + self.port.map_or(0, |p| 1 + digits(p));
        let same = |r: &&HeaderValue| {
            r.len() == canonical_len
                && self.is_lowercase()
                && v6
                    .as_ref()
                    .is_none_or(|v| r.as_bytes().starts_with(v.as_bytes()))
        };
        if let Some(raw) = raw.filter(same) {
            return Canonical {
                value: raw.clone(),
                name_len,
                port: self.port,
            };
        }
        let mut text = v6.unwrap_or_else(|| self.name.to_ascii_lowercase());
        if let Some(port) = self.port {
            text.push(':');
            text.push_str(&port.to_string());
        }
        Canonical {
            // Letters, digits, `-._~`, brackets, colons: a valid header value.
            value: HeaderValue::from_str(&text).expect("a validated host is a valid header value"),
            name_len,
            port: self.port,
        }
    }
}

/// A request's validated host in canonical form — lower-cased, without
/// trailing dot — owned, so it outlives the request head it came from. Route
/// `host:` matching, redirects, CSRF and `X-Forwarded-Host` all read this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical {
    /// `host[:port]`.
    value: HeaderValue,
    name_len: usize,
    port: Option<u16>,
}

impl Canonical {
    /// The host without port (an IPv6 literal keeps its brackets).
    pub fn name(&self) -> &str {
        // Built from ASCII text: the slice is valid UTF-8.
        std::str::from_utf8(&self.value.as_bytes()[..self.name_len]).unwrap_or_default()
    }

    /// The port, when the client gave one.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// `host[:port]` as a header value (for `Host` and `X-Forwarded-Host`).
    pub fn value(&self) -> &HeaderValue {
        &self.value
    }
}

fn digits(port: u16) -> usize {
    match port {
        0..=9 => 1,
        10..=99 => 2,
        100..=999 => 3,
        1000..=9999 => 4,
        _ => 5,
    }
}

/// Parses and validates `host[:port]` (a `Host` header value, an HTTP/2
/// `:authority`, or the authority of an absolute-form target).
pub fn parse(value: &[u8]) -> Result<HostPort<'_>, InvalidHost> {
    if value.is_empty() {
        return Err(InvalidHost::Empty);
    }
    let (name, port) = if value[0] == b'[' {
        let close = value
            .iter()
            .position(|&b| b == b']')
            .ok_or(InvalidHost::Ipv6)?;
        let inside = &value[1..close];
        // Only hex digits, colons and dots can form an IPv6 address; the
        // check also keeps zone ids (`%25eth0`) and IPvFuture out.
        if !inside
            .iter()
            .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
        {
            return Err(InvalidHost::Ipv6);
        }
        let text = ascii(inside)?;
        text.parse::<Ipv6Addr>().map_err(|_| InvalidHost::Ipv6)?;
        let port = match &value[close + 1..] {
            [] => None,
            [b':', port @ ..] => Some(parse_port(port)?),
            _ => return Err(InvalidHost::Character),
        };
        (ascii(&value[..=close])?, port)
    } else {
        let (name, port) = match value.iter().position(|&b| b == b':') {
            Some(colon) => (&value[..colon], Some(parse_port(&value[colon + 1..])?)),
            None => (value, None),
        };
        (check_name(name)?, port)
    };
    Ok(HostPort { name, port })
}

/// A registered name or IPv4 address, trailing dot removed.
fn check_name(name: &[u8]) -> Result<&str, InvalidHost> {
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() {
        return Err(InvalidHost::Empty);
    }
    if name.len() > MAX_NAME {
        return Err(InvalidHost::TooLong);
    }
    // One pass: the characters, empty labels, and where the last label
    // starts (this runs on every request).
    let mut label_start = 0;
    for (i, &b) in name.iter().enumerate() {
        match b {
            b'.' => {
                if i == label_start {
                    return Err(InvalidHost::EmptyLabel);
                }
                label_start = i + 1;
            }
            b if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') => {}
            _ => return Err(InvalidHost::Character),
        }
    }
    if label_start == name.len() {
        return Err(InvalidHost::EmptyLabel);
    }
    // Only a name ending in a number needs the IPv4 check.
    let last = &name[label_start..];
    if (last[0].is_ascii_digit() || last.starts_with(b"0x") || last.starts_with(b"0X"))
        && is_numeric_label(last)
        && !is_dotted_decimal(name)
    {
        return Err(InvalidHost::AmbiguousNumber);
    }
    ascii(name)
}

/// The WHATWG URL standard's "ends in a number": all digits, or `0x` and
/// hex digits. Such a host is an IPv4 address to a browser.
fn is_numeric_label(label: &[u8]) -> bool {
    match label {
        [b'0', b'x' | b'X', rest @ ..] => rest.iter().all(u8::is_ascii_hexdigit),
        _ => !label.is_empty() && label.iter().all(u8::is_ascii_digit),
    }
}

/// Four decimal parts without leading zeros, each at most 255.
fn is_dotted_decimal(text: &[u8]) -> bool {
    let mut parts = 0;
    for part in text.split(|&b| b == b'.') {
        parts += 1;
        let valid = match part {
            [] => false,
            [b'0'] => true,
            [b'0', ..] => false,
            _ if part.len() > 3 => false,
            _ => {
                part.iter().all(u8::is_ascii_digit)
                    && part.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0')) <= 255
            }
        };
        if !valid || parts > 4 {
            return false;
        }
    }
    parts == 4
}

fn parse_port(port: &[u8]) -> Result<u16, InvalidHost> {
    if port.is_empty() || port.len() > 5 || !port.iter().all(u8::is_ascii_digit) {
        return Err(InvalidHost::Port);
    }
    let n = port
        .iter()
        .fold(0_u32, |n, &d| n * 10 + u32::from(d - b'0'));
    u16::try_from(n).map_err(|_| InvalidHost::Port)
}

fn ascii(bytes: &[u8]) -> Result<&str, InvalidHost> {
    // Callers only pass bytes they checked to be ASCII.
    std::str::from_utf8(bytes).map_err(|_| InvalidHost::Character)
}

/// A validated origin: `scheme://host[:port]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin<'a> {
    /// The scheme as sent (compare with `eq_ignore_ascii_case`).
    pub scheme: &'a str,
    pub host: HostPort<'a>,
}

impl Origin<'_> {
    /// The port, or the scheme's default (80 for http, 443 for https).
    pub fn effective_port(&self) -> Option<u16> {
        self.host.port.or_else(|| default_port(self.scheme))
    }
}

/// The default port of `http` and `https`.
pub fn default_port(scheme: &str) -> Option<u16> {
    if scheme.eq_ignore_ascii_case("https") {
        Some(443)
    } else if scheme.eq_ignore_ascii_case("http") {
        Some(80)
    } else {
        None
    }
}

/// Parses an `Origin` header value or a configured origin.
pub fn parse_origin(value: &[u8]) -> Result<Origin<'_>, InvalidHost> {
    let sep = value
        .windows(3)
        .position(|w| w == b"://")
        .ok_or(InvalidHost::Origin)?;
    let scheme = &value[..sep];
    // RFC 3986 §3.1: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
    let scheme_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return Err(InvalidHost::Origin);
    }
    let rest = &value[sep + 3..];
    let host = parse(rest)?;
    // A browser's origin never ends in a dot; `https://chat.example.com.` is
    // another origin to it, which must not pass for the configured one.
    let name_end = if rest.first() == Some(&b'[') {
        rest.len()
    } else {
        rest.iter().position(|&b| b == b':').unwrap_or(rest.len())
    };
    if rest[..name_end].ends_with(b".") {
        return Err(InvalidHost::Origin);
    }
    Ok(Origin {
        scheme: ascii(scheme)?,
        host,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> (String, Option<u16>) {
        let h = parse(s.as_bytes()).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        (h.name().to_owned(), h.port)
    }

    #[test]
    fn ordinary_hosts_are_accepted() {
        assert_eq!(ok("example.com"), ("example.com".into(), None));
        assert_eq!(ok("Example.COM:8443"), ("Example.COM".into(), Some(8443)));
        assert_eq!(ok("admin.example.com."), ("admin.example.com".into(), None));
        assert_eq!(
            ok("admin.example.com.:443"),
            ("admin.example.com".into(), Some(443))
        );
        assert_eq!(ok("127.0.0.1:8080"), ("127.0.0.1".into(), Some(8080)));
        assert_eq!(ok("[::1]:8443"), ("[::1]".into(), Some(8443)));
        assert_eq!(ok("[2001:db8::1]"), ("[2001:db8::1]".into(), None));
        assert_eq!(ok("localhost"), ("localhost".into(), None));
        assert_eq!(
            ok("my_host-1.internal"),
            ("my_host-1.internal".into(), None)
        );
        assert_eq!(ok("1password.com"), ("1password.com".into(), None));
    }

    #[test]
    fn hosts_that_hide_another_host_are_refused() {
        for bad in [
            "x@admin.example.com",
            "admin.example.com@x",
            "user:pw@host",
            "admin.example.com/x",
            "admin.example.com?x",
            "admin.example.com#x",
            "admin.example.com\\x",
            "admin example.com",
            "\"admin.example.com\"",
            "'admin'",
            "admin%2eexample.com",
            "admin.example.com:",
            "admin.example.com:8443:1",
            "admin.example.com:99999",
            "admin.example.com:-1",
            "admin.example.com: 80",
            "admin.example.com:+80",
            "[::1",
            "::1",
            "[::1]x",
            "[::1]:",
            "[fe80::1%25eth0]",
            "[v1.x]",
            "a[b]",
            "",
            ".",
            "..",
            ".example.com",
            "a..b",
            "example.com..",
            "caf\u{e9}.example",
            "a,b",
            "a;b",
            "a=b",
            "127.1",
            "0x7f.1",
            "0x7f000001",
            "2130706433",
            "127.0.0.01",
            "256.0.0.1",
            "example.1",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?} was accepted");
        }
        assert!(parse(&[b'a'; 254]).is_err());
        assert!(parse(&[b'a'; 253]).is_ok());
    }

    #[test]
    fn canonical_header_value_is_lowercase_without_trailing_dot() {
        let raw = HeaderValue::from_static("Admin.Example.COM.:8443");
        let h = parse(raw.as_bytes()).expect("valid");
        let c = h.canonical(Some(&raw));
        assert_eq!(c.value(), "admin.example.com:8443");
        assert_eq!(c.name(), "admin.example.com");
        assert_eq!(c.port(), Some(8443));
        let raw = HeaderValue::from_static("example.com:443");
        let h = parse(raw.as_bytes()).expect("valid");
        assert_eq!(h.canonical(Some(&raw)).value(), "example.com:443");
        assert!(h.name_eq("EXAMPLE.com"));
        let h = parse(b"[::1]").expect("valid");
        assert_eq!(h.canonical(None).name(), "[::1]");
        let raw = HeaderValue::from_static("[0:0::1]:8443");
        let h = parse(raw.as_bytes()).expect("valid");
        assert_eq!(h.canonical(Some(&raw)).value(), "[::1]:8443");
        assert_eq!(h.canonical(Some(&raw)).name(), "[::1]");
    }

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        let o = parse_origin(b"https://Chat.Example.com").expect("valid");
        assert_eq!(o.scheme, "https");
        assert!(o.host.name_eq("chat.example.com"));
        assert_eq!(o.effective_port(), Some(443));
        let o = parse_origin(b"http://[::1]:3000").expect("valid");
        assert_eq!(o.effective_port(), Some(3000));
        for bad in [
            "null",
            "https://",
            "https://a.example/",
            "https://a.example/path",
            "https://user@a.example",
            "https://a.example?x",
            "://a.example",
            "1http://a.example",
            "https//a.example",
            "https://a.example:x",
            "https://a.example.",
            "https://a.example.:443",
        ] {
            assert!(
                parse_origin(bad.as_bytes()).is_err(),
                "{bad:?} was accepted"
            );
        }
    }
}
