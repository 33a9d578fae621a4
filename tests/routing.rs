//! Routing through a real gatehouse (real TLS) in front of a real backend
//! that records every request it received (SPEC §2 `routes`,
//! `default_route`; §3.6 route selection): every pattern kind (exact,
//! prefix, one-segment `*`, anchored regex), methods, hosts, file order, the
//! default route, and spellings of a guarded path that a backend could read
//! as the same one (path confusion) — routed only as gatehouse normalized
//! them, never around a route's credentials.
//!
//! Requests whose exact bytes matter (dot-segments, encodings) go out raw
//! over TLS, because reqwest resolves `..` before sending.

mod support;

use support::*;

// --- routes -----------------------------------------------------------------

/// Every pattern kind, with open routes (forwarded without credentials) so
/// the default route (`jwt`, 401) shows which requests matched none.
const ROUTES: &str = "\
routes:
  - name: exact
    path: /exact
    auth: none
  - name: prefix
    path: /prefix/**
    auth: none
  - name: star
    path: /a/*/b
    auth: none
  - name: regex
    regex: '^/foo/.*/bar$'
    auth: none
  - name: get-only
    path: /methods
    methods: [GET]
    auth: none
  - name: host
    path: /hosted/**
    host: API.Example.com
    auth: none
  - name: open-first
    path: /first/**
    auth: none
  - name: guarded-later
    path: /first/**
    auth: jwt
  - name: guarded-first
    path: /second/**
    auth: jwt
  - name: open-later
    path: /second/open
    auth: none
";

/// Sends `raw` without credentials. `Some(path)` the backend saw when
/// gatehouse forwarded it (an open route matched); `None` when gatehouse
/// answered the default route's `401 missing_credentials` and the backend saw
/// nothing.
async fn route_outcome(gate: &Gatehouse, backend: &Backend, raw: &[u8]) -> Option<String> {
    let shown = String::from_utf8_lossy(raw).into_owned();
    let answer = gate.raw(raw).await;
    if status_of(&answer) == 401 {
        assert_raw_error(&answer, 401, "missing_credentials", &shown);
        assert_never_seen(backend, &shown).await;
        return None;
    }
    let request = only_request(backend, &shown).await;
    let path = request["path"].as_str().expect("recorded path").to_owned();
    Some(match request["query"].as_str() {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path,
    })
}

async fn assert_routed(gate: &Gatehouse, backend: &Backend, target: &str, forwarded_as: &str) {
    assert_eq!(
        route_outcome(gate, backend, &raw_get(target, ""))
            .await
            .as_deref(),
        Some(forwarded_as),
        "GET {target} should match an open route"
    );
}

async fn assert_unrouted(gate: &Gatehouse, backend: &Backend, target: &str) {
    assert_eq!(
        route_outcome(gate, backend, &raw_get(target, "")).await,
        None,
        "GET {target} should match no open route"
    );
}

#[tokio::test]
async fn exact_pattern_matches_only_that_path() {
    let (backend, gate) = gate_with(ROUTES).await;
    assert_routed(&gate, &backend, "/exact", "/exact").await;
    assert_routed(&gate, &backend, "/exact?x=1", "/exact?x=1").await;
    for other in ["/exact/", "/exact/x", "/exactx", "/exac", "/EXACT"] {
        assert_unrouted(&gate, &backend, other).await;
    }
}

#[tokio::test]
async fn prefix_pattern_matches_the_prefix_and_everything_below_it() {
    let (backend, gate) = gate_with(ROUTES).await;
    for path in ["/prefix", "/prefix/", "/prefix/a", "/prefix/a/b/c"] {
        assert_routed(&gate, &backend, path, path).await;
    }
    for other in ["/prefixx", "/prefix-x/a", "/pre", "/x/prefix"] {
        assert_unrouted(&gate, &backend, other).await;
    }
}

#[tokio::test]
async fn star_matches_exactly_one_segment() {
    let (backend, gate) = gate_with(ROUTES).await;
    for path in ["/a/x/b", "/a/anything-at-all/b"] {
        assert_routed(&gate, &backend, path, path).await;
    }
    for other in ["/a/b", "/a//b", "/a/x/y/b", "/a/x/b/c", "/a/x/bb"] {
        assert_unrouted(&gate, &backend, other).await;
    }
}

#[tokio::test]
async fn regex_route_is_anchored_and_never_sees_the_query() {
    let (backend, gate) = gate_with(ROUTES).await;
    assert_routed(&gate, &backend, "/foo/x/bar", "/foo/x/bar").await;
    assert_routed(&gate, &backend, "/foo/x/y/bar?q=1", "/foo/x/y/bar?q=1").await;
    // The query is not part of the matched path, and the pattern is anchored.
    for other in [
        "/foo/x?y=/bar",
        "/foo/x/bar/baz",
        "/zz/foo/x/bar",
        "/foo/bar",
    ] {
        assert_unrouted(&gate, &backend, other).await;
    }
}

#[tokio::test]
async fn methods_limit_a_route_and_other_methods_fall_to_the_default_route() {
    let (backend, gate) = gate_with(ROUTES).await;
    assert_routed(&gate, &backend, "/methods", "/methods").await;
    for method in ["POST", "DELETE", "PUT"] {
        let raw = raw_request(method, "/methods", "Content-Length: 0\r\n");
        assert_eq!(
            route_outcome(&gate, &backend, &raw).await,
            None,
            "{method} /methods matched the GET-only route"
        );
    }
}

#[tokio::test]
async fn host_matches_case_insensitively_and_ignores_the_port() {
    let (backend, gate) = gate_with(ROUTES).await;
    for host in ["api.example.com", "API.EXAMPLE.COM", "Api.Example.Com:8443"] {
        let raw = format!("GET /hosted/x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        assert_eq!(
            route_outcome(&gate, &backend, raw.as_bytes())
                .await
                .as_deref(),
            Some("/hosted/x"),
            "Host: {host}"
        );
    }
    for host in ["localhost", "api.example.com.evil", "xapi.example.com"] {
        let raw = format!("GET /hosted/x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        assert_eq!(
            route_outcome(&gate, &backend, raw.as_bytes()).await,
            None,
            "Host: {host} matched the host-bound route"
        );
    }
}

#[tokio::test]
async fn first_matching_route_wins_in_file_order() {
    let (backend, gate) = gate_with(ROUTES).await;
    // An open route before a guarded one with the same pattern: open.
    assert_routed(&gate, &backend, "/first/x", "/first/x").await;
    // A guarded prefix before a more specific open route: guarded.
    assert_unrouted(&gate, &backend, "/second/open").await;
}

#[tokio::test]
async fn host_bound_route_cannot_be_bypassed_with_a_trailing_dot() {
    // `admin.example.com.` is the same host as `admin.example.com` (an
    // absolute DNS name); Traefik's Host matcher treats them alike. If the
    // host-bound route did not match it, the request would fall to the
    // default route, which any authenticated user passes, and reach the
    // backend's admin virtual host with `Host: admin.example.com.`.
    let extra = "\
routes:
  - name: admin-host
    path: /**
    host: admin.example.com
    auth: jwt
    roles: [admin]
";
    let (backend, gate) = gate_with(extra).await;
    let user = auth_line(&token_for("mallory", &["user"]));
    for host in [
        "admin.example.com",
        "ADMIN.example.com:443",
        "admin.example.com.",
    ] {
        let raw =
            format!("GET /echo/x HTTP/1.1\r\nHost: {host}\r\n{user}Connection: close\r\n\r\n");
        let answer = gate.raw(raw.as_bytes()).await;
        assert_raw_error(&answer, 403, "forbidden", &format!("Host: {host}"));
        assert_never_seen(&backend, &format!("a user token with Host: {host}")).await;
    }
}

#[tokio::test]
async fn default_route_requires_a_jwt_unless_configured() {
    let (backend, gate) = gate_with(ROUTES).await;
    let res = get_without_credentials(&gate, "/nowhere").await;
    assert_401(res, "missing_credentials", CHALLENGE, "default route").await;
    assert_never_seen(&backend, "an unauthenticated request to the default route").await;
    let token = token_for("alice", &["user"]);
    let request = assert_token_accepted(&gate, &backend, "/echo/nowhere", &token, "default").await;
    assert_eq!(request["path"], "/echo/nowhere");
    assert_identity(&request, "alice", "user", "jwt", "default route");
}

#[tokio::test]
async fn default_route_deny_answers_404_not_found() {
    let extra = format!("{JWT_ROUTES}default_route:\n  auth: deny\n");
    let (backend, gate) = gate_with(&extra).await;
    let token = token_for("alice", &["admin"]);
    for with_token in [false, true] {
        let mut req = gate.client().get(gate.url("/nowhere"));
        if with_token {
            req = req.bearer_auth(&token);
        }
        let res = req.send().await.expect("request");
        assert_error(res, 404, "not_found", "default_route: deny").await;
        assert_never_seen(&backend, "a request to a denied default route").await;
    }
    // Declared routes still work.
    assert_token_accepted(&gate, &backend, "/echo/api/x", &token, "api route").await;
}

// --- path confusion ---------------------------------------------------------

/// Targets that a backend could read as `/admin`, or that gatehouse could
/// route differently from what it forwards.
const ADMIN_CONFUSIONS: [&str; 6] = [
    "/public/../admin",
    "//admin",
    "/%61dmin",
    "/admin%2F",
    "/public/..;/admin",
    "/PUBLIC/../admin",
];

/// More spellings of the same idea.
const MORE_ADMIN_CONFUSIONS: [&str; 16] = [
    "/public/%2e%2e/admin",
    "/public/%2E%2E/admin",
    "/public/.%2e/admin",
    "/public/..%2Fadmin",
    "/public/..%2fadmin",
    "/public%2F..%2Fadmin",
    "/public/..%3B/admin",
    "/public/%2e%2e;/admin",
    "/public/..\\admin",
    "/public/x/../../admin",
    "/public/./../admin",
    "/./admin",
    "//admin//x",
    "/%2561dmin",
    "/admin;x=1",
    "/admin%00",
];

#[tokio::test]
async fn path_confusion_without_a_token_is_refused_or_needs_credentials() {
    let (backend, gate) = gate_with(ADMIN_ROUTES).await;
    for target in ADMIN_CONFUSIONS.iter().chain(&MORE_ADMIN_CONFUSIONS) {
        let answer = gate.raw(&raw_get(target, "")).await;
        let status = status_of(&answer);
        assert!(
            status == 400 || status == 401,
            "GET {target}: expected 400 or 401, got:\n{answer}"
        );
        if status == 401 {
            assert_raw_error(&answer, 401, "missing_credentials", target);
        }
        assert_never_seen(&backend, &format!("GET {target}")).await;
    }
    // The ones that normalize to /admin are routed to it, not refused.
    for target in ["//admin", "/%61dmin", "//admin//x"] {
        let answer = gate.raw(&raw_get(target, "")).await;
        assert_raw_error(&answer, 401, "missing_credentials", target);
    }
}

#[tokio::test]
async fn path_confusion_with_a_non_admin_token_is_refused_or_forbidden() {
    let (backend, gate) = gate_with(ADMIN_ROUTES).await;
    let token = token_for("mallory", &["user"]);
    for target in ADMIN_CONFUSIONS {
        let answer = gate.raw(&raw_get(target, &auth_line(&token))).await;
        let status = status_of(&answer);
        assert!(
            status == 400 || status == 403,
            "GET {target} with a user token: expected 400 or 403, got:\n{answer}"
        );
        if status == 403 {
            assert_raw_error(&answer, 403, "forbidden", target);
        }
        assert_never_seen(&backend, &format!("GET {target} with a user token")).await;
    }
}

#[tokio::test]
async fn normalized_spellings_of_admin_reach_it_only_with_an_admin_token() {
    let (backend, gate) = gate_with(ADMIN_ROUTES).await;
    let token = token_for("root", &["admin"]);
    for target in ["//admin/x", "/%61dmin/x", "/admin//x"] {
        let answer = gate.raw(&raw_get(target, &auth_line(&token))).await;
        assert_ne!(status_of(&answer), 400, "{target}:\n{answer}");
        let request = only_request(&backend, target).await;
        // The backend gets the normalized path gatehouse routed on.
        assert_eq!(request["path"], "/admin/x", "{target}");
        assert_identity(&request, "root", "admin", "jwt", target);
    }
}
