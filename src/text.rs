//! Rules for text gatehouse puts into headers it sets itself.

/// Whether `s` can travel in a header value and a comma-separated list
/// exactly as it is: not empty, no control characters, no commas, and no
/// leading or trailing whitespace (an HTTP parser trims it off a value, so
/// `"admin "` would reach the backend as `admin`: SPEC §4 refuses it).
pub fn is_header_safe(s: &str) -> bool {
    !s.is_empty() && s.trim() == s && !s.bytes().any(|b| b < 0x20 || b == 0x7f || b == b',')
}
