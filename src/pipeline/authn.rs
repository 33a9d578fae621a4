//! Authentication stage: find the route's credentials in the request and
//! verify them (SPEC §3.6).
//!
//! Only the methods the route allows are looked at. A credential that is
//! *present but invalid* is a 401 even when another allowed method could
//! have been tried: a bad token is never downgraded to "anonymous", nor
//! silently skipped in favour of an API key.

use std::borrow::Cow;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::auth::api_key::ApiKeys;
use crate::auth::jwt::Verifier;
use crate::auth::sessions::{self, Found, Resumed};
use crate::auth::users::UsersFile;
use crate::auth::{AuthError, Principal, Rejection, Scheme};
use crate::config::{AuthMethod, Config};
use crate::metrics::Metrics;
use crate::store::{Revocation, Revoked, Store};

/// What the `authn` stage checks credentials against.
pub struct Checkers<'a> {
    pub verifier: &'a Verifier,
    pub api_keys: &'a ApiKeys,
    pub revoked: &'a Revoked,
    pub metrics: &'a Metrics,
    /// Browser sessions, when `auth.sessions` is on.
    pub sessions: Option<SessionCheck<'a>>,
}

/// Where a session cookie is looked up.
pub struct SessionCheck<'a> {
    pub store: &'a Store,
    pub users: &'a UsersFile,
}

/// Credentials a request carries for the methods a route allows.
#[derive(Debug, Default)]
pub struct Credentials<'a> {
    /// `Authorization: Bearer <token>`; `Some("")` for an empty token.
    pub bearer: Option<&'a str>,
    /// The API key from the header or query parameter.
    pub api_key: Option<Cow<'a, [u8]>>,
    /// Several API keys were sent: ambiguous, refused.
    pub api_key_ambiguous: bool,
    /// The session cookie; only looked at when the request carries neither
    /// `Authorization` nor an API key (they take precedence, SPEC §9).
    pub session: Option<Found<'a>>,
}

/// Extracts the credentials `methods` allow from the request head;
/// `session_cookie` is the session cookie's name when sessions are on.
pub fn credentials<'a>(
    headers: &'a HeaderMap,
    query: Option<&'a str>,
    methods: &[AuthMethod],
    api_key_header: &HeaderName,
    api_key_param: Option<&str>,
    session_cookie: Option<&str>,
) -> Credentials<'a> {
    let mut creds = Credentials::default();
    if methods.contains(&AuthMethod::Jwt) {
        creds.bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| bearer(v.as_bytes()));
    }
    if methods.contains(&AuthMethod::ApiKey) {
        let mut found: Vec<Cow<'a, [u8]>> = headers
            .get_all(api_key_header)
            .iter()
            .map(|v| Cow::Borrowed(v.as_bytes()))
            .collect();
        if let (Some(param), Some(query)) = (api_key_param, query) {
            found.extend(query_values(query, param).map(Cow::Owned));
        }
        creds.api_key_ambiguous = found.len() > 1;
        creds.api_key = found.into_iter().next();
    }
    if let Some(name) = session_cookie.filter(|_| methods.contains(&AuthMethod::Session)) {
        let other = headers.contains_key(header::AUTHORIZATION)
            || headers.contains_key(api_key_header)
            || creds.api_key.is_some();
        if !other {
            creds.session = Some(sessions::find(headers, name));
        }
    }
    creds
}

/// The token of `Bearer <token>` (scheme case-insensitive, RFC 6750 §2.1).
fn bearer(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Authenticates with the credentials found, as the module doc says.
pub async fn authenticate(
    with: &Checkers<'_>,
    route: &str,
    methods: &[AuthMethod],
    creds: &Credentials<'_>,
    now: u64,
) -> Result<Arc<Principal>, AuthError> {
    let (revoked, metrics) = (with.revoked, with.metrics);
    let count = |scheme: Scheme, result: &str| {
        metrics
            .auth
            .with_label_values(&[route, scheme.as_str(), result])
            .inc();
    };
    if creds.bearer.is_none() && creds.api_key.is_none() {
        if let (Some(found), Some(check)) = (&creds.session, &with.sessions) {
            // Boxed: kept out of every bearer-token request's future.
            return Box::pin(session(check, revoked, metrics, found, now, count)).await;
        }
        let scheme = match methods.first() {
            Some(AuthMethod::ApiKey) => Scheme::ApiKey,
            Some(AuthMethod::Session) => Scheme::Session,
            _ => Scheme::Jwt,
        };
        count(scheme, "missing");
        return Err(AuthError::Missing);
    }
    let mut principal = None;
    if let Some(token) = creds.bearer {
        match with.verifier.verify(token, now).await {
            Ok(p) => match revoked.check(p.jti.as_deref(), p.sid.as_deref(), now) {
                Revocation::Valid => principal = Some(p),
                Revocation::Revoked => {
                    count(Scheme::Jwt, Rejection::Revoked.as_str());
                    return Err(AuthError::InvalidToken);
                }
                // The revocation set is too old to trust: fail closed.
                Revocation::Unknown => return Err(AuthError::RevocationsStale),
            },
            Err(rejection) => {
                count(Scheme::Jwt, rejection.as_str());
                return Err(AuthError::InvalidToken);
            }
        }
    }
    if let Some(key) = &creds.api_key {
        match with
            .api_keys
            .check(key)
            .filter(|_| !creds.api_key_ambiguous)
        {
            Some(p) => {
                principal.get_or_insert(p);
            }
            None => {
                count(Scheme::ApiKey, Rejection::Invalid.as_str());
                return Err(AuthError::InvalidApiKey);
            }
        }
    }
    // "ok" is counted once authorization passed too (see `authz`).
    principal.ok_or(AuthError::Missing)
}

/// Authenticates with the session cookie `found`: a cookie that names no
/// live session is no credential (and the answer clears it).
async fn session(
    check: &SessionCheck<'_>,
    revoked: &Revoked,
    metrics: &Metrics,
    found: &Found<'_>,
    now: u64,
    count: impl Fn(Scheme, &str),
) -> Result<Arc<Principal>, AuthError> {
    let cookie = match found {
        Found::One(cookie) => *cookie,
        Found::Several => {
            count(Scheme::Session, "missing");
            return Err(AuthError::SessionEnded);
        }
        Found::None => {
            count(Scheme::Session, "missing");
            return Err(AuthError::Missing);
        }
    };
    let resumed = sessions::resume(check.store, check.users, cookie, now)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "the store failed to answer for a session");
            AuthError::StoreUnavailable
        })?;
    match resumed {
        Resumed::Live { principal, .. } => {
            match revoked.check(None, principal.sid.as_deref(), now) {
                Revocation::Revoked => {
                    count(Scheme::Session, Rejection::Revoked.as_str());
                    Err(AuthError::SessionEnded)
                }
                Revocation::Valid | Revocation::Unknown => Ok(principal),
            }
        }
        Resumed::Gone => {
            count(Scheme::Session, "missing");
            Err(AuthError::SessionEnded)
        }
        Resumed::UserGone => {
            count(Scheme::Session, "missing");
            metrics
                .sessions_revoked
                .with_label_values(&["user_removed"])
                .inc();
            Err(AuthError::SessionEnded)
        }
    }
}

/// One `name=value` pair of a query, decoded as a form field
/// (`application/x-www-form-urlencoded`: `%XX` and `+`).
fn decoded(pair: &str) -> (Cow<'_, str>, Cow<'_, str>) {
    form_urlencoded::parse(pair.as_bytes())
        .next()
        .unwrap_or((Cow::Borrowed(""), Cow::Borrowed("")))
}

/// Whether a raw `pair` of a query is named `want` once decoded. Reading
/// the key and stripping it use this one test, so whatever spelling
/// carried a key (`api_key`, `api%5Fkey`) is never forwarded.
fn name_is(pair: &str, want: &str) -> bool {
    let raw = pair.split_once('=').map_or(pair, |(n, _)| n);
    raw == want || decoded(pair).0 == want
}

/// Decoded values of every `name=value` pair of `query` named `name`.
fn query_values<'a>(query: &'a str, name: &'a str) -> impl Iterator<Item = Vec<u8>> + 'a {
    query
        .split('&')
        .filter(move |pair| name_is(pair, name))
        .map(|pair| decoded(pair).1.into_owned().into_bytes())
}

/// `query` without its `name=…` pairs (`None` if nothing is left).
pub fn strip_query_param(query: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !name_is(pair, name))
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

/// The identity headers of an authenticated request (values made once, with
/// the principal).
pub fn identity_headers(config: &Config, p: &Principal) -> [(HeaderName, HeaderValue); 3] {
    let id = &config.identity;
    [
        (id.user.clone(), p.user_value.clone()),
        (id.roles.clone(), p.roles_value.clone()),
        (
            id.method.clone(),
            HeaderValue::from_static(p.scheme.as_str()),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const KEY: HeaderName = HeaderName::from_static("x-api-key");

    #[test]
    fn bearer_scheme_is_case_insensitive_and_others_are_ignored() {
        assert_eq!(bearer(b"Bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(bearer(b"bearer xyz"), Some("xyz"));
        assert_eq!(bearer(b"Bearer"), Some(""));
        assert_eq!(bearer(b"Basic Zm9vOmJhcg=="), None);
    }

    #[test]
    fn only_the_routes_methods_are_looked_at() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        h.insert(KEY, HeaderValue::from_static("k"));
        let jwt_only = credentials(&h, None, &[AuthMethod::Jwt], &KEY, None, None);
        assert_eq!(jwt_only.bearer, Some("t"));
        assert!(jwt_only.api_key.is_none());
        let key_only = credentials(&h, None, &[AuthMethod::ApiKey], &KEY, None, None);
        assert!(key_only.bearer.is_none());
        assert_eq!(key_only.api_key.as_deref(), Some(&b"k"[..]));
    }

    #[test]
    fn a_token_or_key_present_means_the_cookie_is_not_looked_at() {
        const COOKIE: &str = "__Host-gatehouse";
        let all = [AuthMethod::Jwt, AuthMethod::ApiKey, AuthMethod::Session];
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("__Host-gatehouse=c"),
        );
        let c = credentials(&h, None, &all, &KEY, None, Some(COOKIE));
        assert_eq!(c.session, Some(Found::One("c")));
        // Not a route method, or sessions off: not looked at.
        let c = credentials(&h, None, &[AuthMethod::Jwt], &KEY, None, Some(COOKIE));
        assert_eq!(c.session, None);
        let c = credentials(&h, None, &all, &KEY, None, None);
        assert_eq!(c.session, None);
        for (name, value) in [
            (header::AUTHORIZATION, "Bearer t"),
            // Even a scheme gatehouse does not read: the client chose it.
            (header::AUTHORIZATION, "Basic Zm9vOmJhcg=="),
            (KEY, "k"),
        ] {
            let mut with = h.clone();
            with.insert(name, HeaderValue::from_static(value));
            let c = credentials(&with, None, &all, &KEY, None, Some(COOKIE));
            assert_eq!(c.session, None, "{value}");
        }
        let c = credentials(
            &h,
            Some("api_key=k"),
            &all,
            &KEY,
            Some("api_key"),
            Some(COOKIE),
        );
        assert_eq!(c.session, None);
    }

    #[test]
    fn api_key_in_query_is_decoded_and_duplicates_are_ambiguous() {
        let h = HeaderMap::new();
        let c = credentials(
            &h,
            Some("a=1&api_key=k%2By"),
            &[AuthMethod::ApiKey],
            &KEY,
            Some("api_key"),
            None,
        );
        assert_eq!(c.api_key.as_deref(), Some(&b"k+y"[..]));
        assert!(!c.api_key_ambiguous);
        let c = credentials(
            &h,
            Some("api_key=a&api%5Fkey=b"),
            &[AuthMethod::ApiKey],
            &KEY,
            Some("api_key"),
            None,
        );
        assert!(c.api_key_ambiguous);
    }

    #[test]
    fn api_key_param_is_stripped_in_every_spelling() {
        assert_eq!(
            strip_query_param("a=1&api_key=s&b=2", "api_key").as_deref(),
            Some("a=1&b=2")
        );
        assert_eq!(
            strip_query_param("api%5Fkey=s&b=2", "api_key").as_deref(),
            Some("b=2")
        );
        assert_eq!(strip_query_param("api_key=s", "api_key"), None);
        assert_eq!(
            strip_query_param("api_keyx=s", "api_key").as_deref(),
            Some("api_keyx=s")
        );
    }
}
