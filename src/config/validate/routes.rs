//! `routes:` and `default_route:`: which requests go where, and what they
//! must show to get there.
//!
//! Rules: a route has exactly one of `path` (a normalized-path pattern:
//! starts with `/`; no `//`, `?`, `#`, `%`, `\` or dot-segments; `*` only as
//! a whole segment, `**` only as a final `/**`) or `regex` (that compiles);
//! its name is not `default` (reserved for `default_route`); `auth` is a
//! non-empty list of `none`, `jwt`, `api_key`, `session` (and `deny` for the
//! default route), with `none` and `deny` alone, and `session` only with
//! `auth.sessions.enabled`; `unauthenticated` is `auto`, `json` or
//! `redirect`, on a route with `session` only; `methods` are methods; `host` is a
//! host name without port; a `rate_limit` burst is as in `rate_limits`;
//! `upstream` names an upstream; `roles` need an auth method other than
//! `none`.

use std::sync::Arc;

use super::rate_limits::limit;
use super::{methods, roles, Ctx};
use crate::config::file::{self, AuthField};
use crate::config::model::{
    AuthMethod, Pattern, Route, RouteAuth, Segment, Unauthenticated, Upstream,
};
use crate::config::values::Text;
use crate::config::ConfigError;

pub(super) fn routes(
    cx: &Ctx,
    raw: &[file::Route],
    upstreams: &[Upstream],
    sessions: bool,
) -> Result<Vec<Route>, ConfigError> {
    let mut routes = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let key = format!("routes[{i}]");
        let pattern = match (&r.path, &r.regex) {
            (Some(p), None) => pattern(cx, &format!("{key}.path"), p.as_str())?,
            (None, Some(re)) => {
                let invalid =
                    |e: regex::Error| cx.err(format!("{key}.regex"), format!("invalid regex: {e}"));
                // Compiled alone first: `/public)|(?:/admin.*` would close the
                // anchoring group and leave each branch half anchored.
                regex::Regex::new(re.as_str()).map_err(invalid)?;
                Pattern::Regex(
                    regex::Regex::new(&format!("^(?:{})$", re.as_str())).map_err(invalid)?,
                )
            }
            _ => return Err(cx.err(&key, "exactly one of `path` or `regex` is required")),
        };
        let name = match (&r.name, &r.path, &r.regex) {
            (Some(n), _, _) if !n.as_str().is_empty() => n.0.clone(),
            (_, Some(p), _) => p.0.clone(),
            (_, _, Some(re)) => format!("regex:{}", re.as_str()),
            _ => key.clone(),
        };
        if name == "default" {
            return Err(cx.err(
                format!("{key}.name"),
                "`default` is reserved for default_route",
            ));
        }
        let auth = route_auth(cx, &format!("{key}.auth"), r.auth.as_ref(), false, sessions)?;
        let unauthenticated = unauthenticated(
            cx,
            &format!("{key}.unauthenticated"),
            r.unauthenticated.as_ref(),
            &auth,
        )?;
        let route = Route {
            name: Arc::from(name),
            pattern,
            methods: r
                .methods
                .as_ref()
                .map(|ms| methods(cx, &format!("{key}.methods"), ms))
                .transpose()?,
            host: r
                .host
                .as_ref()
                .map(|h| route_host(cx, &format!("{key}.host"), h.as_str()))
                .transpose()?,
            roles: roles(&r.roles),
            rate_limit: r
                .rate_limit
                .map(|l| limit(cx, &format!("{key}.rate_limit"), l))
                .transpose()?,
            upstream: upstream_index(cx, &format!("{key}.upstream"), &r.upstream, upstreams)?,
            auth,
            unauthenticated,
        };
        if matches!(route.auth, RouteAuth::None) && !route.roles.is_empty() {
            return Err(cx.err(
                format!("{key}.roles"),
                "roles need an auth method other than none",
            ));
        }
        routes.push(route);
    }
    Ok(routes)
}

pub(super) fn default_route(
    cx: &Ctx,
    d: &file::DefaultRoute,
    upstreams: &[Upstream],
    sessions: bool,
) -> Result<Route, ConfigError> {
    let auth = route_auth(cx, "default_route.auth", Some(&d.auth), true, sessions)?;
    Ok(Route {
        name: Arc::from("default"),
        pattern: Pattern::Any,
        methods: None,
        host: None,
        unauthenticated: unauthenticated(
            cx,
            "default_route.unauthenticated",
            d.unauthenticated.as_ref(),
            &auth,
        )?,
        auth,
        roles: roles(&d.roles),
        rate_limit: d
            .rate_limit
            .map(|l| limit(cx, "default_route.rate_limit", l))
            .transpose()?,
        upstream: upstream_index(cx, "default_route.upstream", &d.upstream, upstreams)?,
    })
}

/// The index of the upstream `name` names; no name is the first one.
fn upstream_index(
    cx: &Ctx,
    key: &str,
    name: &Option<Text>,
    upstreams: &[Upstream],
) -> Result<usize, ConfigError> {
    match name {
        None => Ok(0),
        Some(n) => upstreams
            .iter()
            .position(|u| u.name == n.as_str())
            .ok_or_else(|| cx.err(key, format!("no upstream named {:?}", n.as_str()))),
    }
}

/// A route's `host`: a name or IP literal, lowercase, without port or
/// trailing dot — validated by the same parser as requests' hosts, so a
/// route can name only a host a request can match.
fn route_host(cx: &Ctx, key: &str, raw: &str) -> Result<String, ConfigError> {
    match crate::host::parse(raw.trim().as_bytes()) {
        Ok(host) if host.port.is_none() => Ok(host.canonical(None).name().to_owned()),
        _ => Err(cx.err(
            key,
            format!(
                "{raw:?}: expected a host name without port (requests match on the name alone)"
            ),
        )),
    }
}

/// `unauthenticated:`, which only a route with `session` has a use for.
fn unauthenticated(
    cx: &Ctx,
    key: &str,
    raw: Option<&Text>,
    auth: &RouteAuth,
) -> Result<Unauthenticated, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Unauthenticated::Auto);
    };
    let has_session = matches!(auth, RouteAuth::Any(m) if m.contains(&AuthMethod::Session));
    if !has_session {
        return Err(cx.err(key, "only a route whose auth includes session has this"));
    }
    match raw.as_str().trim() {
        "auto" => Ok(Unauthenticated::Auto),
        "json" => Ok(Unauthenticated::Json),
        "redirect" => Ok(Unauthenticated::Redirect),
        other => Err(cx.err(key, format!("{other:?}: expected auto, json or redirect"))),
    }
}

fn route_auth(
    cx: &Ctx,
    key: &str,
    field: Option<&AuthField>,
    is_default: bool,
    sessions: bool,
) -> Result<RouteAuth, ConfigError> {
    let names: Vec<&Text> = match field {
        None => return Ok(RouteAuth::Any(vec![AuthMethod::Jwt])),
        Some(AuthField::One(one)) => vec![one],
        Some(AuthField::Any(list)) => list.iter().collect(),
    };
    if names.is_empty() {
        return Err(cx.err(key, "list at least one auth method"));
    }
    let mut methods = Vec::new();
    for name in &names {
        match name.as_str().trim() {
            "none" | "deny" if names.len() > 1 => {
                return Err(cx.err(
                    key,
                    format!("{:?} cannot be combined with other methods", name.as_str()),
                ))
            }
            "none" => return Ok(RouteAuth::None),
            "deny" if is_default => return Ok(RouteAuth::Deny),
            "jwt" => methods.push(AuthMethod::Jwt),
            "api_key" => methods.push(AuthMethod::ApiKey),
            "session" if sessions => methods.push(AuthMethod::Session),
            "session" => {
                return Err(cx.err(key, "session needs auth.sessions.enabled: true (SPEC §9)"))
            }
            other => {
                let expected = if is_default {
                    "none, jwt, api_key, session or deny"
                } else {
                    "none, jwt, api_key or session"
                };
                return Err(cx.err(
                    key,
                    format!("unknown auth method {other:?} (expected {expected})"),
                ));
            }
        }
    }
    methods.dedup();
    Ok(RouteAuth::Any(methods))
}

fn pattern(cx: &Ctx, key: &str, p: &str) -> Result<Pattern, ConfigError> {
    let p = p.trim();
    let bad = |why: &str| cx.err(key, format!("{p:?}: {why}"));
    if !p.starts_with('/') {
        return Err(bad("a path pattern starts with /"));
    }
    if p.contains(['?', '#', '\\']) || p.contains("//") {
        return Err(bad(
            "a path pattern is a normalized path: no //, ?, # or \\",
        ));
    }
    let (body, rest) = match p.strip_suffix("/**") {
        Some(body) => (body, true),
        None => (p, false),
    };
    let segments: Vec<&str> = body.split('/').skip(1).collect();
    if segments.iter().any(|s| *s == "." || *s == "..") {
        return Err(bad("dot-segments never match a normalized path"));
    }
    if segments.iter().any(|s| s.contains("**")) {
        return Err(bad(
            "`**` is only allowed as the last segment, as /prefix/**",
        ));
    }
    if segments.iter().any(|s| s.contains('*') && *s != "*") {
        return Err(bad("`*` stands for a whole segment"));
    }
    // Requests are matched by their normalized path: a pattern that is not
    // one (`/café`, `/a b`, `/a;b`, `%2f`) could never match, and its route
    // would protect nothing.
    if !crate::text::is_normalized_path(p) {
        return Err(bad(
            "a path pattern is a normalized path: percent-encode bytes outside \
             RFC 3986 pchar with uppercase hex (/caf%C3%A9), no ; and no escape \
             of an unreserved character, / or \\",
        ));
    }
    let has_wildcard = segments.contains(&"*");
    Ok(match (has_wildcard, rest) {
        (false, false) => Pattern::Exact(p.to_owned()),
        (false, true) => Pattern::Prefix(body.to_owned()),
        (true, _) => Pattern::Segments {
            segments: segments
                .iter()
                .map(|s| match *s {
                    "*" => Segment::Wildcard,
                    lit => Segment::Literal(lit.to_owned()),
                })
                .collect(),
            rest,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_errors, assert_valid};
    use crate::config::{AuthMethod, Pattern, RouteAuth, Segment};

    /// `routes:` with one route whose fields are `fields` (flow style, `{…}` body).
    fn route(fields: &str) -> String {
        format!("routes:\n  - {{ {fields} }}\n")
    }

    /// `routes:` with two good routes, then one with `fields`: errors name `routes[2]`.
    fn third(fields: &str) -> String {
        format!("routes:\n  - {{ path: /a }}\n  - {{ path: /b }}\n  - {{ {fields} }}\n")
    }

    const TWO_UPSTREAMS: &str =
        "upstreams:\n  app:\n    url: http://127.0.0.1:8000\n  api:\n    url: http://127.0.0.1:9000\n";

    #[test]
    fn every_routes_rule_names_its_key() {
        let path = |p: &str| route(&format!("path: \"{p}\""));
        let normalized = "a path pattern is a normalized path";
        assert_errors(&[
            // Exactly one of path or regex.
            (
                route("name: x"),
                "routes[0]",
                "exactly one of `path` or `regex` is required",
            ),
            (
                third("path: /c, regex: /c"),
                "routes[2]",
                "exactly one of `path` or `regex` is required",
            ),
            // A regex compiles...
            (
                route("regex: \"/chat/(\""),
                "routes[0].regex",
                "invalid regex: ",
            ),
            // ...on its own, so it cannot close the group that anchors it
            // (fuzz/regressions/config-regex-anchor.yaml).
            (
                route("regex: '/public)|(?:/admin.*'"),
                "routes[0].regex",
                "invalid regex: ",
            ),
            // A path pattern starts with /...
            (
                path("admin/**"),
                "routes[0].path",
                "\"admin/**\": a path pattern starts with /",
            ),
            // ...is a normalized path...
            (path("/a//b"), "routes[0].path", normalized),
            (path("/a?x=1"), "routes[0].path", normalized),
            (path("/a#top"), "routes[0].path", normalized),
            (path("/%61dmin"), "routes[0].path", normalized),
            (path("/a\\\\b"), "routes[0].path", normalized),
            // (fuzz/regressions/config-pattern-not-normalized.yaml: such a
            // route could never match, and would protect nothing)
            (path("/caf\u{e9}/**"), "routes[0].path", normalized),
            (path("/caf%c3%a9/**"), "routes[0].path", normalized),
            (path("/a b"), "routes[0].path", normalized),
            (path("/a;b"), "routes[0].path", normalized),
            (path("/a<b>"), "routes[0].path", normalized),
            (path("/a%2Fb"), "routes[0].path", normalized),
            // ...without dot-segments...
            (
                path("/a/../admin"),
                "routes[0].path",
                "\"/a/../admin\": dot-segments never match a normalized path",
            ),
            (path("/./a/**"), "routes[0].path", "dot-segments never match"),
            // ...with ** only as a final /**...
            (
                path("/a/**/b"),
                "routes[0].path",
                "`**` is only allowed as the last segment, as /prefix/**",
            ),
            (path("/a**"), "routes[0].path", "`**` is only allowed as the last segment"),
            // ...and * only as a whole segment.
            (
                path("/files/*.txt"),
                "routes[0].path",
                "\"/files/*.txt\": `*` stands for a whole segment",
            ),
            // `default` is reserved.
            (
                third("name: default, path: /c"),
                "routes[2].name",
                "`default` is reserved for default_route",
            ),
            // auth lists at least one method...
            (
                route("path: /a, auth: []"),
                "routes[0].auth",
                "list at least one auth method",
            ),
            // ...with none on its own...
            (
                third("path: /c, auth: [none, jwt]"),
                "routes[2].auth",
                "\"none\" cannot be combined with other methods",
            ),
            (
                route("path: /a, auth: [api_key, deny]"),
                "routes[0].auth",
                "\"deny\" cannot be combined with other methods",
            ),
            // ...out of those a route knows (deny is the default route's).
            (
                route("path: /a, auth: deny"),
                "routes[0].auth",
                "unknown auth method \"deny\" (expected none, jwt, api_key or session)",
            ),
            (
                route("path: /a, auth: [jwt, basic]"),
                "routes[0].auth",
                "unknown auth method \"basic\" (expected none, jwt, api_key or session)",
            ),
            // Methods are methods.
            (
                route("path: /a, methods: [GET, \"P OST\"]"),
                "routes[0].methods[1]",
                "invalid method \"P OST\"",
            ),
            // host is a host name without port.
            (
                route("path: /a, host: \"chat.example.com:8443\""),
                "routes[0].host",
                "\"chat.example.com:8443\": expected a host name without port (requests match on the name alone)",
            ),
            (
                route("path: /a, host: \"user@chat.example.com\""),
                "routes[0].host",
                "expected a host name without port",
            ),
            (
                route("path: /a, host: \"chat example.com\""),
                "routes[0].host",
                "expected a host name without port",
            ),
            // A rate_limit's burst is between 1 and 4294967295.
            (
                route("path: /a, rate_limit: { rate: 20/min, burst: 0 }"),
                "routes[0].rate_limit.burst",
                "must be between 1 and 4294967295",
            ),
            // upstream names an upstream.
            (
                third("path: /c, upstream: ap"),
                "routes[2].upstream",
                "no upstream named \"ap\"",
            ),
            // roles need authentication.
            (
                route("path: /a, auth: none, roles: [admin]"),
                "routes[0].roles",
                "roles need an auth method other than none",
            ),
            // From the file's shape: known keys only.
            (
                route("paths: [/a]"),
                "routes[0].paths",
                "unknown field `paths`",
            ),
            (
                route("path: /a, rate_limit: { rate: 20/fortnight }"),
                "routes[0].rate_limit.rate",
                "invalid rate \"20/fortnight\"",
            ),
        ]);
    }

    #[test]
    fn every_default_route_rule_names_its_key() {
        assert_errors(&[
            // auth lists at least one method...
            (
                "default_route:\n  auth: []\n",
                "default_route.auth",
                "list at least one auth method",
            ),
            // ...with none and deny on their own...
            (
                "default_route:\n  auth: [deny, jwt]\n",
                "default_route.auth",
                "\"deny\" cannot be combined with other methods",
            ),
            (
                "default_route:\n  auth: [api_key, none]\n",
                "default_route.auth",
                "\"none\" cannot be combined with other methods",
            ),
            // ...out of those the default route knows.
            (
                "default_route:\n  auth: basic\n",
                "default_route.auth",
                "unknown auth method \"basic\" (expected none, jwt, api_key, session or deny)",
            ),
            // A rate_limit's burst is between 1 and 4294967295.
            (
                "default_route:\n  rate_limit: { rate: 1/s, burst: 0 }\n",
                "default_route.rate_limit.burst",
                "must be between 1 and 4294967295",
            ),
            // upstream names an upstream.
            (
                "default_route:\n  upstream: nowhere\n",
                "default_route.upstream",
                "no upstream named \"nowhere\"",
            ),
            // From the file's shape: the default route matches everything.
            (
                "default_route:\n  path: /x\n",
                "default_route.path",
                "unknown field `path`",
            ),
        ]);
    }

    #[test]
    fn valid_routes_pass_with_their_patterns_and_defaults() {
        let yaml = format!(
            "{TWO_UPSTREAMS}routes:\n\
             \x20 - {{ path: /health, auth: none }}\n\
             \x20 - {{ name: docs, path: \" /docs/** \", methods: [get, head] }}\n\
             \x20 - {{ path: /users/*/profile/**, auth: [jwt, jwt, api_key], roles: [admin] }}\n\
             \x20 - {{ regex: \"/v[0-9]+/chat\", host: Chat.Example.COM., upstream: api, rate_limit: {{ rate: 20/min }} }}\n\
             \x20 - {{ name: \"\", path: /** }}\n\
             default_route:\n  auth: deny\n  upstream: api\n"
        );
        let config = assert_valid(&[yaml]).remove(0);
        let r = &config.routes;
        let names: Vec<&str> = r.iter().map(|r| r.name.as_ref()).collect();
        assert_eq!(
            names,
            [
                "/health",
                "docs",
                "/users/*/profile/**",
                "regex:/v[0-9]+/chat",
                "/**"
            ],
            "a name defaults to the pattern"
        );
        assert!(matches!(&r[0].pattern, Pattern::Exact(p) if p == "/health"));
        assert_eq!(r[0].auth, RouteAuth::None);
        assert!(matches!(&r[1].pattern, Pattern::Prefix(p) if p == "/docs"));
        assert_eq!(
            r[1].methods,
            Some(vec![http::Method::GET, http::Method::HEAD])
        );
        assert_eq!(
            r[1].auth,
            RouteAuth::Any(vec![AuthMethod::Jwt]),
            "auth defaults to jwt"
        );
        match &r[2].pattern {
            Pattern::Segments { segments, rest } => {
                assert_eq!(
                    segments,
                    &[
                        Segment::Literal("users".into()),
                        Segment::Wildcard,
                        Segment::Literal("profile".into())
                    ]
                );
                assert!(rest);
            }
            other => panic!("expected segments, got {other:?}"),
        }
        assert_eq!(
            r[2].auth,
            RouteAuth::Any(vec![AuthMethod::Jwt, AuthMethod::ApiKey])
        );
        match &r[3].pattern {
            Pattern::Regex(re) => {
                assert!(re.is_match("/v2/chat"));
                assert!(
                    !re.is_match("/v2/chat/x"),
                    "a regex is anchored at both ends"
                );
            }
            other => panic!("expected a regex, got {other:?}"),
        }
        assert_eq!(r[3].host.as_deref(), Some("chat.example.com"));
        assert_eq!((r[3].upstream, r[0].upstream), (1, 0));
        assert_eq!(r[3].rate_limit.map(|l| l.burst), Some(20));
        assert!(matches!(&r[4].pattern, Pattern::Prefix(p) if p.is_empty()));
        let d = &config.default_route;
        assert_eq!(
            (d.name.as_ref(), &d.auth, d.upstream),
            ("default", &RouteAuth::Deny, 1)
        );
        assert!(matches!(d.pattern, Pattern::Any));

        assert_valid(&[
            "default_route:\n  auth: none\n",
            "default_route:\n  auth: [api_key]\n  roles: [service]\n  rate_limit: { rate: 1/s, burst: 1 }\n",
            "routes: []\n",
        ]);
    }
}
