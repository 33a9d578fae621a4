//! Authentication: who is making a request (SPEC §2 `auth`, §3.6).
//!
//! - `jwt.rs` — bearer tokens: gatehouse's own (HS*/RS*/PS*/ES*/EdDSA) and
//!   those of the external issuers under `auth.jwt.accept`;
//! - `jwks.rs` — external issuers' keys (JWKS over HTTPS or from a file);
//! - `api_key.rs` — API keys, compared by SHA-256 in constant time.
//!
//! Each yields a [`Principal`]; the pipeline's `authn`/`authz` stages decide
//! what a route requires.

pub mod api_key;
pub mod jwks;
pub mod jwt;
pub mod password;
pub mod tokens;
pub mod users;

use std::fmt;
use std::sync::Arc;

use http::HeaderValue;

/// How a principal authenticated (`X-Auth-Method`, the `scheme` metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Jwt,
    ApiKey,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Jwt => "jwt",
            Scheme::ApiKey => "api_key",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated caller. Made once per token (verified tokens are cached,
/// see `jwt.rs`) or API key and shared: requests hold an `Arc<Principal>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`, or the API key's id.
    pub user: Arc<str>,
    pub roles: Vec<String>,
    pub scheme: Scheme,
    /// Expiry (Unix seconds) of a token; `None` for API keys.
    pub exp: Option<u64>,
    /// The token's `jti`, for revocation.
    pub jti: Option<String>,
    /// The token's refresh family (`sid`), for revocation.
    pub sid: Option<String>,
    /// `user`, and `roles` joined with `,`, as identity header values.
    pub user_value: HeaderValue,
    pub roles_value: HeaderValue,
}

impl Principal {
    /// A principal whose user and roles are safe to put in identity headers
    /// (see [`is_header_safe`]), or `Invalid`.
    pub fn new(
        user: &str,
        roles: Vec<String>,
        scheme: Scheme,
        exp: Option<u64>,
        jti: Option<String>,
        sid: Option<String>,
    ) -> Result<Self, Rejection> {
        if !is_header_safe(user) || !roles.iter().all(|r| is_header_safe(r)) {
            return Err(Rejection::Invalid);
        }
        let user_value = HeaderValue::from_str(user).map_err(|_| Rejection::Invalid)?;
        let roles_value =
            HeaderValue::from_str(&roles.join(",")).map_err(|_| Rejection::Invalid)?;
        Ok(Principal {
            user: Arc::from(user),
            roles,
            scheme,
            exp,
            jti,
            sid,
            user_value,
            roles_value,
        })
    }

    /// Whether the principal has at least one of `wanted` (an empty list asks for none).
    pub fn has_any_role(&self, wanted: &[String]) -> bool {
        wanted.is_empty() || wanted.iter().any(|w| self.roles.iter().any(|r| r == w))
    }
}

/// Why a credential was refused; the `result` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("invalid")]
    Invalid,
    #[error("expired")]
    Expired,
    #[error("revoked")]
    Revoked,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Invalid => "invalid",
            Rejection::Expired => "expired",
            Rejection::Revoked => "revoked",
        }
    }
}

/// Seconds since the Unix epoch, from the system clock.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether `s` can travel in a header value and a comma-separated list
/// exactly as it is: not empty, no control characters, no commas, and no
/// leading or trailing whitespace (an HTTP parser trims it off a value, so
/// `"admin "` would reach the backend as `admin`: SPEC §4 refuses it).
pub(crate) fn is_header_safe(s: &str) -> bool {
    !s.is_empty() && s.trim() == s && !s.bytes().any(|b| b < 0x20 || b == 0x7f || b == b',')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_is_forwarded_exactly_as_verified_or_refused() {
        for ok in ["alice", "Alice Smith", "a.b@example.com", "x"] {
            assert!(is_header_safe(ok), "{ok:?}");
        }
        for bad in [
            "",
            "admin ",
            " admin",
            "admin\t",
            "\tadmin",
            "a,b",
            "a\nb",
            "a\u{7f}",
            "admin\u{a0}",
            "\u{3000}admin",
        ] {
            assert!(!is_header_safe(bad), "{bad:?}");
        }
        let refused = Principal::new("admin ", vec![], Scheme::Jwt, None, None, None);
        assert_eq!(refused.err(), Some(Rejection::Invalid));
        let refused = Principal::new("bob", vec!["admin ".into()], Scheme::Jwt, None, None, None);
        assert_eq!(refused.err(), Some(Rejection::Invalid));
    }
}
