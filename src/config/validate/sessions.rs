//! `auth.sessions:`: browser sign-in with a cookie (SPEC §9).
//!
//! Rules: `cookie` starts with `__Host-` (the browser then binds it to this
//! host, over HTTPS, for every path) and is a cookie-name token; `same_site`
//! is `lax` or `strict` (`none` would send the session with every cross-site
//! request); both timeouts are greater than zero; `login_page` is `builtin`
//! or a normalized absolute path; `after_logout` is a normalized absolute
//! path; each `allowed_redirect_hosts` entry is a host name or IP literal
//! with an optional port, read by the one host parser; each
//! `csrf.trusted_origins` entry is an origin as in `cors.allowed_origins`
//! but never `"*"`; `app_name` is 1–100 characters without control
//! characters.

use super::cors::origin;
use super::{positive, Ctx};
use crate::config::file;
use crate::config::model::{LoginPage, Origin, SameSite, Sessions};
use crate::config::ConfigError;

/// The prefix that makes browsers bind a cookie to one host (RFC 6265bis
/// §4.1.3.2): `Secure`, `Path=/`, no `Domain`.
const HOST_PREFIX: &str = "__Host-";

pub(super) fn sessions(cx: &Ctx, raw: &file::Sessions) -> Result<Sessions, ConfigError> {
    let cookie = raw.cookie.as_str().trim();
    if !cookie.starts_with(HOST_PREFIX) || cookie.len() == HOST_PREFIX.len() {
        return Err(cx.err(
            "auth.sessions.cookie",
            format!("{cookie:?}: must start with {HOST_PREFIX} and go on (it binds the cookie to this host)"),
        ));
    }
    if !cookie.bytes().all(is_token_char) {
        return Err(cx.err(
            "auth.sessions.cookie",
            format!("{cookie:?}: letters, digits and !#$%&'*+-.^_`|~ only (RFC 6265 cookie name)"),
        ));
    }
    let same_site = match raw.same_site.as_str().trim().to_ascii_lowercase().as_str() {
        "lax" => SameSite::Lax,
        "strict" => SameSite::Strict,
        "none" => {
            return Err(cx.err(
                "auth.sessions.same_site",
                "none would send the session with every cross-site request: use lax or strict",
            ))
        }
        other => {
            return Err(cx.err(
                "auth.sessions.same_site",
                format!("{other:?}: expected lax or strict"),
            ))
        }
    };
    let login_page = match raw.login_page.as_str().trim() {
        "builtin" => LoginPage::Builtin,
        path => LoginPage::App(local_path(cx, "auth.sessions.login_page", path)?),
    };
    let allowed_redirect_hosts = raw
        .allowed_redirect_hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            redirect_host(
                cx,
                &format!("auth.sessions.allowed_redirect_hosts[{i}]"),
                h.as_str(),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut trusted_origins = Vec::with_capacity(raw.csrf.trusted_origins.len());
    for (i, o) in raw.csrf.trusted_origins.iter().enumerate() {
        let key = format!("auth.sessions.csrf.trusted_origins[{i}]");
        let parsed = origin(cx, &key, o.as_str())?;
        if parsed == Origin::Any {
            return Err(cx.err(key, "\"*\" would trust every site: list the origins"));
        }
        trusted_origins.push(parsed);
    }
    let app_name = raw.app_name.as_str().trim();
    if app_name.is_empty()
        || app_name.chars().count() > 100
        || app_name.chars().any(char::is_control)
    {
        return Err(cx.err(
            "auth.sessions.app_name",
            "must be 1 to 100 characters, without control characters",
        ));
    }
    Ok(Sessions {
        enabled: raw.enabled.0,
        cookie: cookie.to_owned(),
        same_site,
        idle_timeout: positive(cx, "auth.sessions.idle_timeout", raw.idle_timeout.0)?,
        absolute_timeout: positive(cx, "auth.sessions.absolute_timeout", raw.absolute_timeout.0)?,
        persistent: raw.persistent.0,
        login_page,
        after_logout: local_path(
            cx,
            "auth.sessions.after_logout",
            raw.after_logout.as_str().trim(),
        )?,
        allowed_redirect_hosts,
        trusted_origins,
        app_name: app_name.to_owned(),
    })
}

/// RFC 9110 `tchar`, which RFC 6265 cookie names are made of.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A path on this host: normalized, so the browser cannot read it as
/// another host (`//evil`, `/\evil`).
pub(super) fn local_path(cx: &Ctx, key: &str, path: &str) -> Result<String, ConfigError> {
    if !crate::text::is_normalized_path(path) || path.contains('\\') {
        return Err(cx.err(
            key,
            format!("{path:?}: expected a normalized absolute path such as /auth/login"),
        ));
    }
    Ok(path.to_owned())
}

/// `name` or `name:port`, lowercase, without trailing dot.
fn redirect_host(cx: &Ctx, key: &str, raw: &str) -> Result<String, ConfigError> {
    let parsed = crate::host::parse(raw.trim().as_bytes()).map_err(|_| {
        cx.err(
            key,
            format!("{raw:?}: expected a host name, with a port if not 443"),
        )
    })?;
    Ok(parsed
        .canonical(None)
        .value()
        .to_str()
        .unwrap_or_default()
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_errors, assert_valid, JWT_SECRET};
    use crate::config::{AuthMethod, LoginPage, Origin, RouteAuth, SameSite, Unauthenticated};

    fn sessions(rest: &str) -> String {
        format!("auth:\n  jwt:\n    secret: {JWT_SECRET}\n  sessions:\n    enabled: true\n{rest}")
    }

    #[test]
    fn every_sessions_rule_names_its_key() {
        assert_errors(&[
            (
                sessions("    cookie: gatehouse\n"),
                "auth.sessions.cookie",
                "__Host-",
            ),
            (
                sessions("    cookie: __Host-\n"),
                "auth.sessions.cookie",
                "__Host-",
            ),
            (
                sessions("    cookie: __Secure-gh\n"),
                "auth.sessions.cookie",
                "__Host-",
            ),
            (
                sessions("    cookie: \"__Host-a b\"\n"),
                "auth.sessions.cookie",
                "cookie name",
            ),
            (
                sessions("    cookie: \"__Host-a;b\"\n"),
                "auth.sessions.cookie",
                "cookie name",
            ),
            (
                sessions("    same_site: none\n"),
                "auth.sessions.same_site",
                "cross-site",
            ),
            (
                sessions("    same_site: None\n"),
                "auth.sessions.same_site",
                "cross-site",
            ),
            (
                sessions("    same_site: loose\n"),
                "auth.sessions.same_site",
                "lax or strict",
            ),
            (
                sessions("    idle_timeout: 0s\n"),
                "auth.sessions.idle_timeout",
                "greater than zero",
            ),
            (
                sessions("    absolute_timeout: 0s\n"),
                "auth.sessions.absolute_timeout",
                "greater than zero",
            ),
            (
                sessions("    login_page: signin\n"),
                "auth.sessions.login_page",
                "normalized absolute path",
            ),
            (
                sessions("    login_page: //evil.example\n"),
                "auth.sessions.login_page",
                "normalized absolute path",
            ),
            (
                sessions("    login_page: /a/../b\n"),
                "auth.sessions.login_page",
                "normalized absolute path",
            ),
            (
                sessions("    after_logout: https://evil.example/\n"),
                "auth.sessions.after_logout",
                "normalized absolute path",
            ),
            (
                sessions("    after_logout: /\\\\evil.example\n"),
                "auth.sessions.after_logout",
                "normalized absolute path",
            ),
            (
                sessions("    allowed_redirect_hosts: [\"app.example.com/x\"]\n"),
                "auth.sessions.allowed_redirect_hosts[0]",
                "host name",
            ),
            (
                sessions("    allowed_redirect_hosts: [ok.example, \"user@evil\"]\n"),
                "auth.sessions.allowed_redirect_hosts[1]",
                "host name",
            ),
            (
                sessions("    csrf:\n      trusted_origins: [\"*\"]\n"),
                "auth.sessions.csrf.trusted_origins[0]",
                "every site",
            ),
            (
                sessions("    csrf:\n      trusted_origins: [chat.example.com]\n"),
                "auth.sessions.csrf.trusted_origins[0]",
                "scheme://host",
            ),
            (
                sessions("    app_name: \"\"\n"),
                "auth.sessions.app_name",
                "1 to 100",
            ),
            (
                sessions("    unknown: 1\n"),
                "auth.sessions.unknown",
                "unknown field",
            ),
        ]);
    }

    #[test]
    fn session_routes_need_sessions_on() {
        let off = format!("auth:\n  jwt:\n    secret: {JWT_SECRET}\n");
        assert_errors(&[
            (
                format!("{off}routes:\n  - path: /chat/**\n    auth: [session]\n"),
                "routes[0].auth",
                "auth.sessions.enabled",
            ),
            (
                format!("{off}default_route:\n  auth: session\n"),
                "default_route.auth",
                "auth.sessions.enabled",
            ),
            (
                sessions("routes:\n  - path: /x\n    auth: jwt\n    unauthenticated: json\n"),
                "routes[0].unauthenticated",
                "includes session",
            ),
            (
                sessions("routes:\n  - path: /x\n    auth: [session]\n    unauthenticated: html\n"),
                "routes[0].unauthenticated",
                "auto, json or redirect",
            ),
            (
                sessions("default_route:\n  auth: none\n  unauthenticated: auto\n"),
                "default_route.unauthenticated",
                "includes session",
            ),
        ]);
    }

    #[test]
    fn valid_sessions_sections_pass() {
        let configs = assert_valid(&[
            format!("auth:\n  jwt:\n    secret: {JWT_SECRET}\n"),
            sessions("    cookie: __Host-chat\n    same_site: Strict\n    idle_timeout: 30m\n    absolute_timeout: 1d\n    persistent: false\n    login_page: /signin\n    after_logout: /\n    allowed_redirect_hosts: [App.Example.COM., \"docs.example.com:8443\"]\n    csrf:\n      trusted_origins: [\"https://admin.example.com\", \"https://*.example.org\"]\n    app_name: \" Chat & Co \"\nroutes:\n  - path: /chat/**\n    auth: [session, jwt]\n    unauthenticated: redirect\ndefault_route:\n  auth: [jwt, session]\n"),
        ]);
        let off = &configs[0].auth.sessions;
        assert!(!off.enabled);
        assert_eq!(off.cookie, "__Host-gatehouse");
        assert_eq!(off.same_site, SameSite::Lax);
        assert_eq!(off.idle_timeout.as_secs(), 12 * 3600);
        assert_eq!(off.absolute_timeout.as_secs(), 7 * 86400);
        assert!(off.persistent);
        assert_eq!(off.login_page, LoginPage::Builtin);
        assert_eq!(off.after_logout, "/auth/login");
        assert_eq!(off.app_name, "gatehouse");
        assert_eq!(configs[0].auth.endpoints.session_login, "/auth/login");

        let c = &configs[1];
        let s = &c.auth.sessions;
        assert!(s.enabled && !s.persistent);
        assert_eq!(s.cookie, "__Host-chat");
        assert_eq!(s.same_site, SameSite::Strict);
        assert_eq!(s.idle_timeout.as_secs(), 1800);
        assert_eq!(s.login_page, LoginPage::App("/signin".into()));
        assert_eq!(s.after_logout, "/");
        assert_eq!(
            s.allowed_redirect_hosts,
            ["app.example.com", "docs.example.com:8443"]
        );
        assert_eq!(s.trusted_origins.len(), 2);
        assert!(
            matches!(&s.trusted_origins[1], Origin::Subdomains { suffix, .. } if suffix == "example.org")
        );
        assert_eq!(s.app_name, "Chat & Co");
        assert_eq!(
            c.routes[0].auth,
            RouteAuth::Any(vec![AuthMethod::Session, AuthMethod::Jwt])
        );
        assert_eq!(c.routes[0].unauthenticated, Unauthenticated::Redirect);
        assert_eq!(c.default_route.unauthenticated, Unauthenticated::Auto);
    }
}
