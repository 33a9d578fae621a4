//! Authentication: who is making a request (SPEC §2 `auth`, §3.6).
//!
//! - `jwt.rs` — bearer tokens: gatehouse's own (HS*/RS*/PS*/ES*/EdDSA) and
//!   those of the external issuers under `auth.jwt.accept`;
//! - `jwks.rs` — external issuers' keys (JWKS over HTTPS or from a file);
//! - `api_key.rs` — API keys, compared by SHA-256 in constant time;
//! - `sessions.rs` — browser sessions: the cookie and the stored session
//!   it names (SPEC §9); `return_to.rs` — where a browser may be sent back
//!   after signing in (`rd`);
//! - `password.rs`, `users.rs`, `tokens.rs` — password hashes, the users
//!   file, and the token logic of `/login`, `/auth/refresh`, `/auth/logout`.
//!
//! Each yields a [`Principal`]; the pipeline's `authn`/`authz` stages decide
//! what a route requires.

pub mod api_key;
pub mod assertion;
pub mod jwks;
pub mod jwt;
pub mod password;
pub mod return_to;
pub mod sessions;
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
    Session,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Jwt => "jwt",
            Scheme::ApiKey => "api_key",
            Scheme::Session => "session",
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
    /// Expiry (Unix seconds) of a token or session; `None` for API keys.
    pub exp: Option<u64>,
    /// The token's `jti`, for revocation.
    pub jti: Option<String>,
    /// The token's refresh family (`sid`), for revocation.
    pub sid: Option<String>,
    /// `user`, and `roles` joined with `,`, as identity header values.
    pub user_value: HeaderValue,
    pub roles_value: HeaderValue,
    /// A session signed in with the users file: removing or disabling the
    /// user there ends it, open streams included.
    pub from_users_file: bool,
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
            from_users_file: false,
        })
    }

    /// Whether the principal has at least one of `wanted` (an empty list asks for none).
    pub fn has_any_role(&self, wanted: &[String]) -> bool {
        wanted.is_empty() || wanted.iter().any(|w| self.roles.iter().any(|r| r == w))
    }
}

/// Why a request's credentials did not let it through (the `authn` and
/// `authz` stages). What the client is told is the rescue's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The route needs a credential and the request brought none.
    #[error("no credentials")]
    Missing,
    /// A bearer token was refused (bad, expired, revoked).
    #[error("token refused")]
    InvalidToken,
    /// An API key was refused (unknown, or several sent).
    #[error("api key refused")]
    InvalidApiKey,
    /// The principal holds none of the route's roles.
    #[error("no role the route needs")]
    Forbidden,
    /// The revocations are too stale to trust (Redis down past `max_stale`):
    /// a token cannot be checked, so it is not accepted.
    #[error("revocations too stale to check a token")]
    RevocationsStale,
    /// The session cookie names no live session (unknown, expired, revoked,
    /// its user gone, or sent twice): no credential, and the cookie is cleared.
    #[error("session ended")]
    SessionEnded,
    /// The store could not be asked about a session.
    #[error("store unavailable")]
    StoreUnavailable,
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

use crate::text::is_header_safe;

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
