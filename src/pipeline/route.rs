//! Route matching (SPEC §2 `routes`): the first route, in file order, whose
//! pattern, method and host all match the normalized request wins; a request
//! matching none gets `default_route`.
//!
//! Patterns only ever see the normalized path (never the query), so what is
//! matched is what is authorized and what is forwarded.

use std::collections::HashMap;

use http::Method;
use regex::RegexSet;

use crate::config::{Pattern, Route, Segment};

/// The routes of one config, ready to match.
///
/// Matching must not scan hundreds of patterns per request: routes are
/// indexed by their first path segment when it is a literal, so a request
/// only looks at the routes that share its first segment plus the few
/// "generic" ones (a `*` or empty first segment, or a regex). All regex
/// routes are tried in one pass of a `RegexSet`, only when one of them is a
/// candidate. First match in file order still wins: candidates are visited
/// in ascending index order.
#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<Route>,
    default: Route,
    by_first: HashMap<String, Vec<usize>, crate::FastHash>,
    generic: Vec<usize>,
    regexes: Option<RegexIndex>,
}

#[derive(Debug)]
struct RegexIndex {
    set: RegexSet,
    /// Route index of each pattern of `set`.
    routes: Vec<usize>,
}

impl RouteTable {
    pub fn new(routes: Vec<Route>, default: Route) -> Self {
        let mut by_first: HashMap<String, Vec<usize>, crate::FastHash> = HashMap::default();
        let mut generic = Vec::new();
        let mut regex_sources = Vec::new();
        let mut regex_routes = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            match first_literal(&r.pattern) {
                Some(first) => by_first.entry(first.to_owned()).or_default().push(i),
                None => {
                    if let Pattern::Regex(re) = &r.pattern {
                        regex_sources.push(re.as_str().to_owned());
                        regex_routes.push(i);
                    }
                    generic.push(i);
                }
            }
        }
        // Each pattern compiled on its own at config load, so the set compiles.
        let regexes = RegexSet::new(&regex_sources)
            .ok()
            .filter(|_| !regex_sources.is_empty())
            .map(|set| RegexIndex {
                set,
                routes: regex_routes,
            });
        RouteTable {
            routes,
            default,
            by_first,
            generic,
            regexes,
        }
    }

    /// The route for a request: `host` is the request's host without port.
    pub fn find(&self, method: &Method, host: Option<&str>, path: &str) -> &Route {
        match self.locate(method, host, path) {
            Some(i) => &self.routes[i],
            None => &self.default,
        }
    }

    /// The index (in the order given to [`RouteTable::new`]) of the route
    /// for a request, or `None` for the default route.
    pub fn locate(&self, method: &Method, host: Option<&str>, path: &str) -> Option<usize> {
        let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
        let keyed: &[usize] = self.by_first.get(first).map_or(&[], Vec::as_slice);
        let mut regex_hits: Option<Vec<usize>> = None;
        let (mut a, mut b) = (keyed.iter().peekable(), self.generic.iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x < y => a.next(),
                (Some(_), None) => a.next(),
                (_, Some(_)) => b.next(),
                (None, None) => return None,
            };
            let &i = next?;
            let route = &self.routes[i];
            if let (Pattern::Regex(_), Some(index)) = (&route.pattern, &self.regexes) {
                let hits = regex_hits.get_or_insert_with(|| {
                    index
                        .set
                        .matches(path)
                        .into_iter()
                        .map(|k| index.routes[k])
                        .collect()
                });
                if !hits.contains(&i) || !method_and_host(route, method, host) {
                    continue;
                }
                return Some(i);
            }
            if matches(route, method, host, path) {
                return Some(i);
            }
        }
    }

    pub fn default_route(&self) -> &Route {
        &self.default
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

/// The literal first segment every path matching `pattern` starts with.
fn first_literal(pattern: &Pattern) -> Option<&str> {
    let first = match pattern {
        Pattern::Exact(p) | Pattern::Prefix(p) => p.trim_start_matches('/').split('/').next(),
        Pattern::Segments { segments, .. } => match segments.first() {
            Some(Segment::Literal(l)) => Some(l.as_str()),
            _ => None,
        },
        Pattern::Regex(_) | Pattern::Any => None,
    }?;
    // `/**` (empty prefix) and `/` match every first segment.
    (!first.is_empty()).then_some(first)
}

fn method_and_host(route: &Route, method: &Method, host: Option<&str>) -> bool {
    if let Some(methods) = &route.methods {
        if !methods.contains(method) {
            return false;
        }
    }
    match (&route.host, host) {
        (None, _) => true,
        (Some(want), Some(h)) => h.eq_ignore_ascii_case(want),
        (Some(_), None) => false,
    }
}

fn matches(route: &Route, method: &Method, host: Option<&str>, path: &str) -> bool {
    method_and_host(route, method, host) && pattern_matches(&route.pattern, path)
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
            unauthenticated: Default::default(),
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
    fn index_keeps_file_order_across_keyed_generic_and_regex_routes() {
        let re = |s: &str| Pattern::Regex(regex::Regex::new(&format!("^(?:{s})$")).unwrap());
        let table = RouteTable::new(
            vec![
                route("re-early", re("/api/v[0-9]+/secret")),
                route("api", Pattern::Prefix("/api".into())),
                route("star", seg("/*/x")),
                route("re-late", re("/other/.*")),
                route("catch", Pattern::Prefix("".into())),
            ],
            route("default", Pattern::Any),
        );
        assert_eq!(
            table
                .find(&Method::GET, None, "/api/v2/secret")
                .name
                .as_ref(),
            "re-early"
        );
        assert_eq!(
            table
                .find(&Method::GET, None, "/api/v2/public")
                .name
                .as_ref(),
            "api"
        );
        assert_eq!(
            table.find(&Method::GET, None, "/zzz/x").name.as_ref(),
            "star"
        );
        assert_eq!(
            table.find(&Method::GET, None, "/other/1").name.as_ref(),
            "re-late"
        );
        assert_eq!(
            table.find(&Method::GET, None, "/nothing").name.as_ref(),
            "catch"
        );
        assert_eq!(table.find(&Method::GET, None, "/").name.as_ref(), "catch");
    }

    #[test]
    fn regex_route_is_not_fooled_by_the_query() {
        let table = RouteTable::new(
            vec![route(
                "bar",
                Pattern::Regex(regex::Regex::new("^(?:/foo/.*/bar)$").unwrap()),
            )],
            route("default", Pattern::Any),
        );
        // The query is never part of the matched path.
        assert_eq!(
            table.find(&Method::GET, None, "/foo/x").name.as_ref(),
            "default"
        );
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
