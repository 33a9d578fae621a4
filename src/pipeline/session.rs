//! What a route with `session` answers a request that is not signed in, and
//! which session-borne requests the CSRF check applies to (SPEC §9).
//!
//! Only a real navigation is redirected to the sign-in page: a GET or HEAD
//! with `Sec-Fetch-Mode: navigate` (or, from a browser without Fetch
//! Metadata, an `Accept` that lists `text/html`). `fetch`, XHR,
//! `EventSource`, a WebSocket or a refused bearer token get the 401 JSON
//! with `login_url`, so a script can send its user there. Both answers are
//! `Cache-Control: no-store` and vary on `Accept` and `Sec-Fetch-Mode`.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::auth::AuthError;
use crate::body::Body;
use crate::config::{LoginPage, Sessions, Unauthenticated};
use crate::error::Problem;

/// A request to a route a browser can sign in to, refused for `cause`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignIn {
    pub cause: AuthError,
    /// The sign-in page, with `rd` = the request's path and query.
    pub login_url: String,
    /// Redirect there (a navigation); else the 401 JSON.
    pub redirect: bool,
    /// `Set-Cookie` clearing a session cookie that named no live session.
    pub clear_cookie: Option<HeaderValue>,
}

impl SignIn {
    /// What the rescue answers; `problem` is what `cause` is told otherwise.
    pub fn response(&self, problem: Problem) -> Response<Body> {
        let mut res = if self.redirect {
            let mut res = Response::new(Body::empty());
            *res.status_mut() = StatusCode::FOUND;
            if let Ok(location) = HeaderValue::from_str(&self.login_url) {
                res.headers_mut().insert(header::LOCATION, location);
            }
            res
        } else {
            problem.to_response_with_login(Some(&self.login_url))
        };
        let h = res.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            header::VARY,
            HeaderValue::from_static("Accept, Sec-Fetch-Mode"),
        );
        if let Some(clear) = &self.clear_cookie {
            h.append(header::SET_COOKIE, clear.clone());
        }
        res
    }
}

/// The answer to a request refused for `cause` on a route with `session`;
/// `None` when `cause` is not about signing in (a stale store, a role).
pub fn sign_in(
    cause: AuthError,
    mode: Unauthenticated,
    method: &Method,
    headers: &HeaderMap,
    path_and_query: &str,
    cfg: &Sessions,
    session_login: &str,
) -> Option<SignIn> {
    let no_credential = matches!(cause, AuthError::Missing | AuthError::SessionEnded);
    if !no_credential && !matches!(cause, AuthError::InvalidToken | AuthError::InvalidApiKey) {
        return None;
    }
    let readable = matches!(*method, Method::GET | Method::HEAD);
    let redirect = no_credential
        && readable
        && match mode {
            Unauthenticated::Json => false,
            Unauthenticated::Redirect => true,
            Unauthenticated::Auto => crate::auth::sessions::is_navigation(headers),
        };
    let page = match &cfg.login_page {
        LoginPage::Builtin => session_login,
        LoginPage::App(path) => path,
    };
    let rd: String = form_urlencoded::byte_serialize(path_and_query.as_bytes()).collect();
    Some(SignIn {
        cause,
        login_url: format!("{page}?rd={rd}"),
        redirect,
        clear_cookie: (cause == AuthError::SessionEnded)
            .then(|| crate::auth::sessions::clear_cookie(cfg)),
    })
}

/// Whether a session-authenticated request must pass the CSRF check: any
/// method but GET, HEAD and OPTIONS, and any WebSocket upgrade.
pub fn needs_csrf(method: &Method, websocket: bool) -> bool {
    websocket || !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Sessions {
        Sessions {
            enabled: true,
            cookie: "__Host-gatehouse".into(),
            same_site: crate::config::SameSite::Lax,
            idle_timeout: std::time::Duration::from_secs(3600),
            absolute_timeout: std::time::Duration::from_secs(86400),
            persistent: true,
            login_page: LoginPage::Builtin,
            after_logout: "/auth/login".into(),
            allowed_redirect_hosts: vec![],
            trusted_origins: vec![],
            app_name: "gatehouse".into(),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn only_navigations_are_redirected_in_auto_mode() {
        let nav = headers(&[("sec-fetch-mode", "navigate"), ("accept", "text/html")]);
        let fetch = headers(&[("sec-fetch-mode", "cors"), ("accept", "text/html")]);
        let old_browser = headers(&[("accept", "text/html,application/xhtml+xml;q=0.9")]);
        let script = headers(&[("accept", "*/*")]);
        let es = headers(&[("sec-fetch-mode", "cors"), ("accept", "text/event-stream")]);
        let auto = Unauthenticated::Auto;
        let go = |cause, mode, method: &Method, h: &HeaderMap| {
            sign_in(cause, mode, method, h, "/chat?x=1", &cfg(), "/auth/login").unwrap()
        };
        assert!(go(AuthError::Missing, auto, &Method::GET, &nav).redirect);
        assert!(go(AuthError::Missing, auto, &Method::HEAD, &old_browser).redirect);
        assert!(go(AuthError::SessionEnded, auto, &Method::GET, &nav).redirect);
        assert!(!go(AuthError::Missing, auto, &Method::GET, &fetch).redirect);
        assert!(!go(AuthError::Missing, auto, &Method::GET, &script).redirect);
        assert!(!go(AuthError::Missing, auto, &Method::GET, &es).redirect);
        assert!(!go(AuthError::Missing, auto, &Method::POST, &nav).redirect);
        // A refused token is an API client's: never redirected.
        assert!(!go(AuthError::InvalidToken, auto, &Method::GET, &nav).redirect);
        assert!(
            !go(
                AuthError::Missing,
                Unauthenticated::Json,
                &Method::GET,
                &nav
            )
            .redirect
        );
        assert!(
            go(
                AuthError::Missing,
                Unauthenticated::Redirect,
                &Method::GET,
                &script
            )
            .redirect
        );
        assert!(
            !go(
                AuthError::Missing,
                Unauthenticated::Redirect,
                &Method::POST,
                &script
            )
            .redirect
        );
        assert!(sign_in(
            AuthError::Forbidden,
            auto,
            &Method::GET,
            &nav,
            "/",
            &cfg(),
            "/l"
        )
        .is_none());
        assert!(sign_in(
            AuthError::RevocationsStale,
            auto,
            &Method::GET,
            &nav,
            "/",
            &cfg(),
            "/l"
        )
        .is_none());
    }

    #[test]
    fn the_login_url_carries_the_path_and_query_encoded() {
        let s = sign_in(
            AuthError::Missing,
            Unauthenticated::Auto,
            &Method::GET,
            &HeaderMap::new(),
            "/chat?q=a&b=/c",
            &cfg(),
            "/auth/login",
        )
        .unwrap();
        assert_eq!(s.login_url, "/auth/login?rd=%2Fchat%3Fq%3Da%26b%3D%2Fc");
        let mut app = cfg();
        app.login_page = LoginPage::App("/signin".into());
        let s = sign_in(
            AuthError::Missing,
            Unauthenticated::Auto,
            &Method::GET,
            &HeaderMap::new(),
            "/",
            &app,
            "/auth/login",
        )
        .unwrap();
        assert_eq!(s.login_url, "/signin?rd=%2F");
    }

    #[test]
    fn answers_are_never_cached_and_an_ended_session_is_cleared() {
        let nav = headers(&[("sec-fetch-mode", "navigate")]);
        let s = sign_in(
            AuthError::SessionEnded,
            Unauthenticated::Auto,
            &Method::GET,
            &nav,
            "/x",
            &cfg(),
            "/auth/login",
        )
        .unwrap();
        let res = s.response(Problem::MissingCredentials);
        assert_eq!(res.status(), StatusCode::FOUND);
        assert_eq!(res.headers()[header::LOCATION], "/auth/login?rd=%2Fx");
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(res.headers()[header::VARY], "Accept, Sec-Fetch-Mode");
        assert!(res.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0"));
        let s = sign_in(
            AuthError::Missing,
            Unauthenticated::Json,
            &Method::GET,
            &nav,
            "/x",
            &cfg(),
            "/auth/login",
        )
        .unwrap();
        let res = s.response(Problem::MissingCredentials);
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(!res.headers().contains_key(header::SET_COOKIE));
    }

    #[test]
    fn unsafe_methods_and_websockets_need_the_csrf_check() {
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(needs_csrf(&m, false), "{m}");
        }
        for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert!(!needs_csrf(&m, false), "{m}");
        }
        assert!(needs_csrf(&Method::GET, true));
    }
}
