//! gatehouse's own endpoints (SPEC §4): route targets, like an upstream.
//!
//! The pipeline routes to them (before the config's `routes`), rate-limits,
//! authenticates, authorizes and logs them exactly as it does a proxied
//! request; then the endpoint's handler answers instead of an upstream.
//! Adding an endpoint is one entry in [`TABLE`] and one handler module:
//!
//! - [`tokens`] — `POST /login`, `/auth/refresh`, `/auth/logout`;
//! - [`me`] — `GET /auth/me`;
//! - [`session`] — the browser sign-in page and form (`/auth/login`) and
//!   signing a browser out (SPEC §9); [`login_page`] draws the page;
//! - [`jwks`] — `/.well-known/gatehouse/jwks.json`, the identity
//!   assertion's keys (SPEC §12).
//! - [`oidc`] — sign-in through an identity provider (SPEC §10):
//!   `/auth/oidc/{id}/start` and the callback.

pub mod jwks;
pub mod login_page;
pub mod me;
pub mod oidc;
pub mod session;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response};

use crate::auth::tokens::{TokenCx, TokenError};
use crate::auth::{Principal, Scheme};
use crate::body::Body;
use crate::config::{self, AuthMethod};

/// One of gatehouse's own endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Login,
    Refresh,
    Logout,
    Me,
    /// The browser sign-in page (GET) and form (POST); only with sessions on.
    SessionLogin,
    /// The identity assertion's keys (SPEC §12); only with an assertion.
    Jwks,
    /// `/auth/oidc/{id}/start`; only with providers configured.
    OidcStart,
    /// `auth.oidc.callback`; only with providers configured.
    OidcCallback,
}

/// What the pipeline applies to an endpoint before its handler runs.
#[derive(Debug)]
pub struct Spec {
    pub endpoint: Endpoint,
    /// The route name in logs and metrics.
    pub name: &'static str,
    /// The methods it answers; any other gets 405 with `allow`.
    pub methods: &'static [Method],
    pub allow: &'static str,
    /// The credentials the pipeline checks first (empty: none; the
    /// endpoint reads what it needs from the body).
    pub auth: &'static [AuthMethod],
    /// Whether `rate_limits.login` applies to it (every attempt counts).
    pub login_limit: bool,
    /// The methods its limit counts.
    pub limited: &'static [Method],
    /// With sessions on: a `POST` passes the CSRF check, and the session
    /// cookie is one more credential it takes.
    pub csrf: bool,
    pub session_too: bool,
    /// A session cookie naming an ended session is no refusal here: what
    /// the endpoint does (signing out) is done already, and it clears the
    /// cookie.
    pub ended_session_done: bool,
}

/// Every endpoint, in the order they are matched.
pub const TABLE: [Spec; 8] = [
    Spec {
        endpoint: Endpoint::Login,
        name: "login",
        methods: &[Method::POST],
        allow: "POST",
        auth: &[],
        login_limit: true,
        limited: &[Method::POST],
        csrf: false,
        session_too: false,
        ended_session_done: false,
    },
    Spec {
        endpoint: Endpoint::Refresh,
        name: "auth_refresh",
        methods: &[Method::POST],
        allow: "POST",
        auth: &[],
        login_limit: false,
        limited: &[],
        csrf: false,
        session_too: false,
        ended_session_done: false,
    },
    Spec {
        endpoint: Endpoint::Logout,
        name: "auth_logout",
        methods: &[Method::POST],
        allow: "POST",
        auth: &[AuthMethod::Jwt],
        login_limit: false,
        limited: &[],
        csrf: true,
        session_too: true,
        ended_session_done: true,
    },
    Spec {
        endpoint: Endpoint::Me,
        name: "auth_me",
        methods: &[Method::GET, Method::HEAD],
        allow: "GET, HEAD",
        auth: &[AuthMethod::Jwt, AuthMethod::ApiKey],
        login_limit: false,
        limited: &[],
        csrf: false,
        session_too: true,
        ended_session_done: false,
    },
    Spec {
        endpoint: Endpoint::SessionLogin,
        name: "auth_login",
        methods: &[Method::GET, Method::HEAD, Method::POST],
        allow: "GET, HEAD, POST",
        auth: &[],
        login_limit: true,
        limited: &[Method::POST],
        csrf: true,
        session_too: false,
        ended_session_done: false,
    },
    Spec {
        endpoint: Endpoint::Jwks,
        name: "jwks",
        methods: &[Method::GET, Method::HEAD],
        allow: "GET, HEAD",
        auth: &[],
        login_limit: false,
        limited: &[],
        csrf: false,
        session_too: false,
        ended_session_done: false,
    },
    // A sign-in through a provider: every start and callback counts as a
    // login attempt (SPEC §10). They change nothing a cross-site request
    // could abuse: `state` and the flow cookie guard the callback.
    Spec {
        endpoint: Endpoint::OidcStart,
        name: "auth_oidc_start",
        methods: &[Method::GET],
        allow: "GET",
        auth: &[],
        login_limit: true,
        limited: &[Method::GET],
        csrf: false,
        session_too: false,
        ended_session_done: false,
    },
    Spec {
        endpoint: Endpoint::OidcCallback,
        name: "auth_oidc_callback",
        methods: &[Method::GET],
        allow: "GET",
        auth: &[],
        login_limit: true,
        limited: &[Method::GET],
        csrf: false,
        session_too: false,
        ended_session_done: false,
    },
];

impl Endpoint {
    /// Its entry in [`TABLE`].
    pub fn spec(self) -> &'static Spec {
        &TABLE[self as usize]
    }

    /// Its path pattern, as configured under `auth.endpoints` (and
    /// `auth.oidc.callback`).
    pub fn pattern(self, auth: &config::Auth) -> config::Pattern {
        let paths = &auth.endpoints;
        let exact = |p: &str| config::Pattern::Exact(p.to_owned());
        match self {
            Endpoint::Login => exact(&paths.login),
            Endpoint::Refresh => exact(&paths.refresh),
            Endpoint::Logout => exact(&paths.logout),
            Endpoint::Me => exact(&paths.me),
            Endpoint::SessionLogin => exact(&paths.session_login),
            Endpoint::OidcStart => config::Pattern::Segments {
                segments: OIDC_START
                    .iter()
                    .map(|s| match *s {
                        "*" => config::Segment::Wildcard,
                        lit => config::Segment::Literal(lit.to_owned()),
                    })
                    .collect(),
                rest: false,
            },
            Endpoint::OidcCallback => exact(&auth.oidc.callback),
            Endpoint::Jwks => exact(jwks::PATH),
        }
    }

    /// Whether the config makes it an endpoint: the sign-in page needs
    /// sessions on (else its path is routed like any other, SPEC §9), the
    /// provider endpoints need providers.
    pub fn enabled(self, auth: &config::Auth) -> bool {
        match self {
            Endpoint::SessionLogin => auth.sessions.enabled,
            Endpoint::OidcStart | Endpoint::OidcCallback => {
                auth.sessions.enabled && !auth.oidc.providers.is_empty()
            }
            _ => true,
        }
    }
}

/// `/auth/oidc/{id}/start`, by segment.
const OIDC_START: [&str; 4] = ["auth", "oidc", "*", "start"];

/// A provider's start path.
pub fn oidc_start_path(id: &str) -> String {
    format!("/auth/oidc/{id}/start")
}

/// What the endpoints answer with: one config generation's parts and the
/// process's store (what the token logic needs), how long a body of
/// theirs may take (`server.body_read_timeout`), and the browser sessions'
/// settings.
pub struct Cx<'a> {
    pub tokens: TokenCx<'a>,
    pub body_read_timeout: Duration,
    pub sessions: &'a config::Sessions,
    /// `auth.endpoints.session_login`, where the sign-in form posts.
    pub session_login: &'a str,
    /// `quotas`, for `/auth/me`.
    pub quotas: &'a [config::Quota],
    /// The identity assertion's JWKS document, when one is configured.
    pub jwks: Option<bytes::Bytes>,
    /// The identity providers (SPEC §10), when configured.
    pub oidc: Option<&'a crate::auth::oidc::Providers>,
    /// The request's normalized path.
    pub path: &'a str,
    /// The request's validated host, with its port when it has one.
    pub host: Option<&'a str>,
    /// `auth.jwt.leeway`, in seconds (an `id_token`'s times).
    pub leeway: u64,
}

/// Answers `req` for `endpoint`; `principal` is what the pipeline
/// authenticated (for endpoints whose [`Spec::auth`] is not empty).
pub async fn answer<B>(
    endpoint: Endpoint,
    cx: &Cx<'_>,
    req: Request<B>,
    principal: Option<Arc<Principal>>,
    now: u64,
) -> Result<Response<Body>, TokenError>
where
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
{
    match (endpoint, principal) {
        (Endpoint::Me, Some(p)) => me::answer(&p, cx.quotas, cx.tokens.store, now)
            .await
            .map_err(TokenError::Store),
        // A session, or a session cookie that names none any more (the
        // pipeline lets only that through without a principal).
        (Endpoint::Logout, Some(p)) if p.scheme == Scheme::Session => {
            session::sign_out(cx, req, now).await
        }
        (Endpoint::Logout, None) => session::sign_out(cx, req, now).await,
        (Endpoint::Logout, Some(p)) => tokens::logout(cx, req, &p, now).await,
        (Endpoint::Login | Endpoint::Refresh, _) => tokens::issue(endpoint, cx, req, now).await,
        (Endpoint::SessionLogin, _) => session::answer(cx, req, now).await,
        (Endpoint::Jwks, _) => Ok(cx.jwks.clone().map_or_else(
            || crate::error::Problem::NotFound.to_response(),
            jwks::response,
        )),
        // The pipeline answers these with [`answer_oidc`].
        (Endpoint::OidcStart | Endpoint::OidcCallback, _) => Err(TokenError::InvalidToken),
        // The pipeline authenticates these before calling: not reached.
        (Endpoint::Me, None) => Err(TokenError::InvalidToken),
    }
}

/// Answers a provider endpoint (SPEC §10).
pub async fn answer_oidc<B>(
    endpoint: Endpoint,
    cx: &Cx<'_>,
    req: Request<B>,
    now: u64,
) -> Result<Response<Body>, oidc::Error> {
    match endpoint {
        Endpoint::OidcStart => oidc::start(cx, req, now).await,
        _ => oidc::callback(cx, req, now).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_endpoint_order() {
        for (i, spec) in TABLE.iter().enumerate() {
            assert_eq!(spec.endpoint as usize, i, "{}", spec.name);
            assert_eq!(spec.endpoint.spec().name, spec.name);
            let allow: Vec<&str> = spec.methods.iter().map(Method::as_str).collect();
            assert_eq!(allow.join(", "), spec.allow, "{}", spec.name);
        }
    }
}
