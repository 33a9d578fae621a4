//! Route matching (SPEC §2 `routes`): the first route, in file order, whose
//! pattern, method and host all match the normalized request wins; a request
//! matching none gets `default_route`.
//!
//! Patterns only ever see the normalized path (never the query), so what is
//! matched is what is authorized and what is forwarded.

use http::Method;

use crate::config::{Pattern, Route, Segment};

/// The routes of one config, ready to match.
#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<Route>,
    default: Route,
}

impl RouteTable {
    pub fn new(routes: Vec<Route>, default: Route) -> Self {
        RouteTable { routes, default }
    }

    /// The route for a request: `host` is the request's host without port.
    pub fn find(&self, method: &Method, host: Option<&str>, path: &str) -> &Route {
        self.routes
            .iter()
            .find(|r| matches(r, method, host, path))
            .unwrap_or(&self.default)
    }

    pub fn default_route(&self) -> &Route {
        &self.default
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

fn matches(route: &Route, method: &Method, host: Option<&str>, path: &str) -> bool {
    if let Some(methods) = &route.methods {
        if !methods.contains(method) {
            return false;
        }
    }
    if let Some(want) = &route.host {
        match host {
            Some(h) if h.eq_ignore_ascii_case(want) => {}
            _ => return false,
        }
    }
    pattern_matches(&route.pattern, path)
}

/// Whether `path` (normalized) matches `pattern`.
pub fn pattern_matches(pattern: &Pattern, path: &str) -> bool {
    match pattern {
        Pattern::Any => true,
        Pattern::Exact(p) => path == p,
        Pattern::Prefix(prefix) => match path.strip_prefix(prefix.as_str()) {
            Some(rest) => {
                rest.is_empty() || rest.starts_with('/') || prefix == "/" || prefix.is_empty()
            }
            None => false,
        },
        Pattern::Segments { segments, rest } => {
            let mut parts = path.split('/').skip(1);
            for seg in segments {
                match (seg, parts.next()) {
                    (_, None) => return false,
                    (Segment::Wildcard, Some(p)) if !p.is_empty() => {}
                    (Segment::Literal(lit), Some(p)) if lit == p => {}
                    _ => return false,
                }
            }
            match parts.next() {
                None => true,
                Some(_) => *rest,
            }
        }
        Pattern::Regex(re) => re.is_match(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouteAuth;

    fn seg(p: &str) -> Pattern {
        let (body, rest) = match p.strip_suffix("/**") {
            Some(b) => (b, true),
            None => (p, false),
        };
        Pattern::Segments {
            segments: body
                .split('/')
                .skip(1)
                .map(|s| {
                    if s == "*" {
                        Segment::Wildcard
                    } else {
                        Segment::Literal(s.into())
                    }
                })
                .collect(),
            rest,
        }
    }

    fn route(name: &str, pattern: Pattern) -> Route {
        Route {
            name: name.into(),
            pattern,
            methods: None,
            host: None,
            auth: RouteAuth::None,
            roles: vec![],
            rate_limit: None,
            upstream: 0,
        }
    }

    #[test]
    fn prefix_matches_itself_and_below_but_not_siblings() {
        let p = Pattern::Prefix("/docs".into());
        assert!(pattern_matches(&p, "/docs"));
        assert!(pattern_matches(&p, "/docs/"));
        assert!(pattern_matches(&p, "/docs/a/b"));
        assert!(!pattern_matches(&p, "/docsx"));
        assert!(!pattern_matches(&p, "/doc"));
        assert!(pattern_matches(&Pattern::Prefix("".into()), "/anything"));
    }

    #[test]
    fn star_matches_exactly_one_segment() {
        let p = seg("/users/*/profile");
        assert!(pattern_matches(&p, "/users/42/profile"));
        assert!(!pattern_matches(&p, "/users/profile"));
        assert!(!pattern_matches(&p, "/users/4/2/profile"));
        assert!(!pattern_matches(&p, "/users/42/profile/x"));
        assert!(pattern_matches(&seg("/users/*/**"), "/users/42/a/b"));
    }

    #[test]
    fn regex_is_anchored_and_sees_only_the_path() {
        let p = Pattern::Regex(regex::Regex::new("^(?:/foo/.*/bar)$").unwrap());
        assert!(pattern_matches(&p, "/foo/x/bar"));
        assert!(!pattern_matches(&p, "/foo/x"));
    }

    #[test]
    fn first_match_wins_and_default_catches_the_rest() {
        let mut admin = route("admin", Pattern::Prefix("/admin".into()));
        admin.methods = Some(vec![Method::GET]);
        let mut host_bound = route("host", Pattern::Prefix("/".into()));
        host_bound.host = Some("api.example.com".into());
        let table = RouteTable::new(
            vec![
                admin,
                route("all-admin", Pattern::Prefix("/admin".into())),
                host_bound,
            ],
            route("default", Pattern::Any),
        );
        assert_eq!(
            table.find(&Method::GET, None, "/admin/x").name.as_ref(),
            "admin"
        );
        assert_eq!(
            table.find(&Method::POST, None, "/admin/x").name.as_ref(),
            "all-admin"
        );
        assert_eq!(
            table
                .find(&Method::GET, Some("API.example.com"), "/x")
                .name
                .as_ref(),
            "host"
        );
        assert_eq!(
            table.find(&Method::GET, Some("other"), "/x").name.as_ref(),
            "default"
        );
    }
}
