//! The whole pipeline, in-process: a real [`Gate`] from an inline config, a
//! real embedded store, a [`FakeClock`], and a fake upstream that records
//! what would have been forwarded. No socket, no sleep.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use tokio_util::task::TaskTracker;

use super::*;
use crate::clock::{Clock as _, FakeClock};

/// What the fake upstream was asked to forward.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: http::HeaderMap,
}

/// An upstream that answers `200 upstream` to everything and remembers it.
#[derive(Clone, Default)]
struct FakeUpstream {
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeUpstream {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("not poisoned").clone()
    }
}

impl<B: Send + 'static> Forward<B> for FakeUpstream {
    fn forward(
        &self,
        _upstream: &Upstream,
        request: Outbound<B>,
        _tunnels: &TaskTracker,
        _metrics: &Metrics,
    ) -> impl Future<Output = Result<Forwarded, ForwardError>> + Send {
        self.seen.lock().expect("not poisoned").push(Seen {
            path: request.path.to_string(),
            headers: request.parts.headers,
        });
        std::future::ready(Ok(Forwarded {
            response: Response::new(Body::full("upstream")),
            upstream_elapsed: Duration::ZERO,
        }))
    }
}

/// A pipeline built from `extra` YAML (routes, limits…) on top of a base
/// config: HS256, a user `alice` (roles `user`), the embedded store.
struct Harness {
    gate: Arc<Gate>,
    shared: Arc<Shared>,
    clock: FakeClock,
    upstream: FakeUpstream,
    _dir: tempfile::TempDir,
}

const NOW: u64 = 1_900_000_000;

impl Harness {
    async fn new(extra: &str) -> Harness {
        Harness::with_auth("", extra).await
    }

    /// Like [`Harness::new`], with `auth_extra` more keys under `auth:`
    /// (indented two spaces).
    async fn with_auth(auth_extra: &str, extra: &str) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let hash = crate::auth::password::hash_password("correct horse").expect("hash");
        std::fs::write(
            dir.path().join("users.yaml"),
            format!(
                "users:\n  - username: alice\n    password_hash: \"{hash}\"\n    roles: [user]\n"
            ),
        )
        .expect("users file");
        // No limits unless a test asks for some.
        let limits = if extra.contains("rate_limits:") {
            ""
        } else {
            "rate_limits:\n  per_ip: null\n  login: null\n"
        };
        let yaml = format!(
            "listen:\n  https: 127.0.0.1:0\n\
             tls:\n  cert: c.pem\n  key: k.pem\n\
             upstreams:\n  app:\n    url: http://127.0.0.1:9\n\
             auth:\n  jwt:\n    secret: pipeline-test-secret-0123456789abcdef\n  users_file: users.yaml\n{auth_extra}\
             store:\n  path: data/gatehouse.db\n{limits}{extra}"
        );
        let path = dir.path().join("gatehouse.yaml");
        let config = crate::config::parse(&path, &yaml).expect("valid test config");
        let registry = prometheus::Registry::new();
        let metrics = Metrics::new(registry).expect("metrics");
        let store = crate::store::Store::open(&config.store, config.auth.jwt.access_ttl)
            .await
            .expect("embedded store");
        let carried = Carried::default();
        let gate = Gate::new(Arc::new(config), &carried, &metrics).expect("gate");
        let clock = FakeClock::at(NOW);
        let shared = Shared {
            metrics,
            store,
            hasher: crate::auth::password::Hasher::new(),
            carried,
            tunnels: TaskTracker::new(),
            clock: Arc::new(clock.clone()),
        };
        Harness {
            gate: Arc::new(gate),
            shared: Arc::new(shared),
            clock,
            upstream: FakeUpstream::default(),
            _dir: dir,
        }
    }

    /// A token of gatehouse's for `user` with `roles`, issued now.
    fn token(&self, user: &str, roles: &[&str]) -> String {
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
        let (token, _) = self
            .gate
            .issuer
            .access_token(user, &roles, "sid-1", self.clock.unix_now())
            .expect("sign");
        token
    }

    async fn send(&self, req: Request<Full<Bytes>>) -> (StatusCode, http::HeaderMap, String) {
        let conn = crate::activity::Activity::new(None);
        let peer: SocketAddr = "203.0.113.9:50000".parse().expect("address");
        let res = handle(
            self.gate.clone(),
            self.shared.clone(),
            peer,
            conn,
            req,
            self.upstream.clone(),
        )
        .await;
        let (parts, body) = res.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&body).into_owned();
        (parts.status, parts.headers, text)
    }

    async fn get(&self, target: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
        let mut req = Request::get(target).header("host", "gate.example");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let (status, _, body) = self.send(req.body(Full::default()).expect("request")).await;
        (status, body)
    }
}

const ROUTES: &str = "\
routes:
  - name: public
    path: /public/**
    auth: none
  - name: admin
    path: /admin/**
    auth: jwt
    roles: [admin]
default_route:
  auth: jwt
";

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn a_request_is_normalized_authenticated_and_forwarded_with_gatehouses_headers() {
    let h = Harness::new(ROUTES).await;
    let token = h.token("alice", &["user"]);
    let (status, body) = h
        .get(
            "//api/%61b/c?q=1",
            &[
                ("authorization", &bearer(&token)),
                ("x-auth-user", "mallory"),
                ("x-real-ip", "10.0.0.1"),
                ("x-forwarded-for", "10.0.0.2"),
            ],
        )
        .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "upstream"));
    let seen = h.upstream.seen();
    assert_eq!(seen.len(), 1);
    let sent = &seen[0];
    assert_eq!(sent.path, "/api/ab/c?q=1");
    assert_eq!(sent.headers["x-auth-user"], "alice");
    assert_eq!(sent.headers["x-auth-roles"], "user");
    assert_eq!(sent.headers["x-auth-method"], "jwt");
    assert_eq!(sent.headers["x-forwarded-for"], "203.0.113.9");
    assert_eq!(sent.headers["x-forwarded-host"], "gate.example");
    assert!(!sent.headers.contains_key("x-real-ip"));
    assert_eq!(sent.headers.get_all("x-auth-user").iter().count(), 1);
}

#[tokio::test]
async fn refused_requests_never_reach_the_upstream() {
    let h = Harness::new(ROUTES).await;
    let user = h.token("alice", &["user"]);
    for (target, auth, status) in [
        ("/api/x", None, StatusCode::UNAUTHORIZED),
        (
            "/api/x",
            Some("Bearer not.a.token".to_owned()),
            StatusCode::UNAUTHORIZED,
        ),
        ("/admin/x", Some(bearer(&user)), StatusCode::FORBIDDEN),
        ("/public/../admin/x", None, StatusCode::BAD_REQUEST),
        ("/public/%2e%2e/admin", None, StatusCode::BAD_REQUEST),
    ] {
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let (got, body) = h.get(target, &headers).await;
        assert_eq!(got, status, "{target}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("SPEC §5 JSON");
        assert!(json["error"].is_string(), "{body}");
    }
    assert!(h.upstream.seen().is_empty());
    let (status, _) = h.get("/public/x", &[]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_token_is_refused_once_the_clock_passes_its_expiry_and_leeway() {
    let h = Harness::new(ROUTES).await;
    let token = h.token("alice", &["user"]);
    let auth = bearer(&token);
    let (status, _) = h.get("/api/x", &[("authorization", &auth)]).await;
    assert_eq!(status, StatusCode::OK);
    // 15 minutes of access_ttl, then 30 s of leeway: still valid at the edge…
    h.clock.advance(15 * 60 + 30);
    let (status, _) = h.get("/api/x", &[("authorization", &auth)]).await;
    assert_eq!(status, StatusCode::OK, "refused within the leeway");
    // …and refused a second later, although it is in the verified-token cache.
    h.clock.advance(1);
    let (status, body) = h.get("/api/x", &[("authorization", &auth)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("invalid_token"), "{body}");
}

#[tokio::test]
async fn gatehouses_endpoints_are_routes_with_method_rules_limits_and_auth() {
    let h = Harness::new(&format!(
        "{ROUTES}rate_limits:\n  per_ip: null\n  login: {{ rate: 1/min, burst: 1 }}\n"
    ))
    .await;
    // The method rule: 405 with `Allow`, before any credential is asked for.
    let req = Request::get("/auth/logout")
        .header("host", "gate.example")
        .body(Full::default())
        .expect("request");
    let (status, headers, _) = h.send(req).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "POST");
    // /auth/me is authenticated by the pipeline, like any route.
    let (status, _) = h.get("/auth/me", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let token = h.token("alice", &["user"]);
    let (status, body) = h
        .get("/auth/me", &[("authorization", &bearer(&token))])
        .await;
    assert_eq!(status, StatusCode::OK);
    let me: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(me["sub"], "alice");
    // The login limit is the login route's ordinary limit.
    let login = || {
        Request::post("/login")
            .header("host", "gate.example")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(
                br#"{"username":"alice","password":"wrong"}"#,
            )))
            .expect("request")
    };
    let (status, _, _) = h.send(login()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, headers, _) = h.send(login()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.contains_key("retry-after"));
    let metrics = String::from_utf8_lossy(&h.shared.metrics.render()).into_owned();
    assert!(
        metrics.contains("gatehouse_logins_total{result=\"rate_limited\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gatehouse_rate_limited_total{limit=\"login\"} 1"),
        "{metrics}"
    );
    assert!(h.upstream.seen().is_empty());
}

#[tokio::test]
async fn a_login_issues_tokens_that_the_pipeline_then_accepts() {
    let h = Harness::new(ROUTES).await;
    let req = Request::post("/login")
        .header("host", "gate.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from_static(
            b"username=alice&password=correct+horse",
        )))
        .expect("request");
    let (status, headers, body) = h.send(req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    let tokens: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let access = tokens["access_token"].as_str().expect("access token");
    let (status, _) = h.get("/api/x", &[("authorization", &bearer(access))]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h.upstream.seen()[0].headers["x-auth-user"], "alice");
}

#[tokio::test]
async fn a_per_ip_limit_answers_429_with_its_headers() {
    let h = Harness::new(&format!(
        "{ROUTES}rate_limits:\n  per_ip: {{ rate: 1/min, burst: 2 }}\n  login: null\n"
    ))
    .await;
    for _ in 0..2 {
        assert_eq!(h.get("/public/x", &[]).await.0, StatusCode::OK);
    }
    let req = Request::get("/public/x")
        .header("host", "gate.example")
        .body(Full::default())
        .expect("request");
    let (status, headers, body) = h.send(req).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    for name in [
        "retry-after",
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
    ] {
        assert!(headers.contains_key(name), "{name}");
    }
    assert_eq!(h.upstream.seen().len(), 2);
}

#[tokio::test]
async fn a_denying_default_route_is_404_and_connect_is_405() {
    let h = Harness::new("default_route:\n  auth: deny\n").await;
    assert_eq!(h.get("/anything", &[]).await.0, StatusCode::NOT_FOUND);
    let req = Request::connect("gate.example:443")
        .header("host", "gate.example:443")
        .body(Full::default())
        .expect("request");
    let (status, headers, _) = h.send(req).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(headers.contains_key("allow"));
    assert!(h.upstream.seen().is_empty());
}

/// Sessions on with a 1 h idle and a 3 h absolute timeout; everything takes
/// a session.
const SESSIONS: &str =
    "  sessions:\n    enabled: true\n    idle_timeout: 1h\n    absolute_timeout: 3h\n";
const SESSION_ROUTES: &str = "default_route:\n  auth: session\n";

impl Harness {
    /// Signs alice in with JSON at the fake clock's now; the cookie.
    async fn sign_in(&self) -> String {
        let req = Request::post("/auth/login")
            .header("host", "gate.example")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(
                br#"{"username":"alice","password":"correct horse"}"#,
            )))
            .expect("request");
        let (status, headers, body) = self.send(req).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let set = headers[http::header::SET_COOKIE].to_str().expect("ascii");
        let value = set
            .strip_prefix("__Host-gatehouse=")
            .and_then(|v| v.split(';').next())
            .expect("the session cookie");
        value.to_owned()
    }

    async fn with_session(&self, cookie: &str) -> (StatusCode, http::HeaderMap) {
        let req = Request::get("/x")
            .header("host", "gate.example")
            .header("cookie", format!("__Host-gatehouse={cookie}"))
            .body(Full::default())
            .expect("request");
        let (status, headers, _) = self.send(req).await;
        (status, headers)
    }
}

#[tokio::test]
async fn a_session_ends_after_its_idle_time_and_at_its_absolute_end_however_used() {
    let h = Harness::with_auth(SESSIONS, SESSION_ROUTES).await;
    let cookie = h.sign_in().await;
    assert_eq!(h.with_session(&cookie).await.0, StatusCode::OK);
    // Used every 59 minutes: the idle time slides.
    for _ in 0..2 {
        h.clock.advance(59 * 60);
        assert_eq!(h.with_session(&cookie).await.0, StatusCode::OK);
    }
    // An hour and a second without use: over, and the answer clears it.
    h.clock.advance(3601);
    let (status, headers) = h.with_session(&cookie).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let cleared = headers[http::header::SET_COOKIE].to_str().expect("ascii");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");

    // However busy, a session ends at its absolute timeout.
    let cookie = h.sign_in().await;
    for _ in 0..3 {
        h.clock.advance(55 * 60);
        assert_eq!(h.with_session(&cookie).await.0, StatusCode::OK);
    }
    h.clock.advance(15 * 60 + 1);
    assert_eq!(h.with_session(&cookie).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_session_is_touched_at_most_once_a_minute() {
    let h = Harness::with_auth(SESSIONS, SESSION_ROUTES).await;
    let cookie = h.sign_in().await;
    let hash = crate::auth::sessions::cookie_hash(&cookie);
    let last_seen = || async {
        h.shared
            .store
            .session(&hash, h.clock.unix_now())
            .await
            .expect("store")
            .expect("live")
            .last_seen
    };
    h.clock.advance(30);
    assert_eq!(h.with_session(&cookie).await.0, StatusCode::OK);
    assert_eq!(last_seen().await, NOW, "30 s in: not written back");
    h.clock.advance(31);
    assert_eq!(h.with_session(&cookie).await.0, StatusCode::OK);
    assert_eq!(last_seen().await, NOW + 61, "a minute in: written back");
}

#[tokio::test]
async fn a_short_idle_timeout_still_slides() {
    let h = Harness::with_auth(
        "  sessions:\n    enabled: true\n    idle_timeout: 30s\n    absolute_timeout: 1h\n",
        SESSION_ROUTES,
    )
    .await;
    let cookie = h.sign_in().await;
    // Used every 10 s for two minutes: never 30 s idle.
    for _ in 0..12 {
        h.clock.advance(10);
        assert_eq!(h.with_session(&cookie).await.0, StatusCode::OK);
    }
    h.clock.advance(31);
    assert_eq!(h.with_session(&cookie).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn signing_out_of_an_ended_session_clears_the_cookie() {
    let h = Harness::with_auth(SESSIONS, SESSION_ROUTES).await;
    let cookie = h.sign_in().await;
    h.clock.advance(3601);
    for (form, want) in [
        (true, StatusCode::SEE_OTHER),
        (false, StatusCode::NO_CONTENT),
    ] {
        let mut req = Request::post("/auth/logout")
            .header("host", "gate.example")
            .header("sec-fetch-site", "same-origin")
            .header("cookie", format!("__Host-gatehouse={cookie}"));
        if form {
            req = req.header("content-type", "application/x-www-form-urlencoded");
        }
        let (status, headers, body) = h.send(req.body(Full::default()).expect("request")).await;
        assert_eq!(status, want, "{body}");
        let cleared = headers[http::header::SET_COOKIE].to_str().expect("ascii");
        assert!(cleared.contains("Max-Age=0"), "{cleared}");
    }
    // Without any credential it is still the 401 of SPEC §4.
    let req = Request::post("/auth/logout")
        .header("host", "gate.example")
        .body(Full::default())
        .expect("request");
    assert_eq!(h.send(req).await.0, StatusCode::UNAUTHORIZED);
    // A navigation to /auth/me without a session is a 401, not a redirect.
    let req = Request::get("/auth/me")
        .header("host", "gate.example")
        .header("sec-fetch-mode", "navigate")
        .header("accept", "text/html")
        .body(Full::default())
        .expect("request");
    let (status, _, body) = h.send(req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("login_url"), "{body}");
}

const QUOTA_ROUTES: &str = "\
routes:
  - name: chat
    path: /chat
    auth: jwt
  - name: open
    path: /open
    auth: none
quotas:
  - name: chat-daily
    routes: [chat]
    limit: 3
    overrides:
      - { principal: boss, limit: unlimited }
  - name: chat-hourly
    routes: [chat]
    limit: 2
    period: 1h
  - name: admins-only
    routes: [chat]
    limit: 1
    roles: [admin]
  - name: open-daily
    routes: [open]
    limit: 1
";

#[tokio::test]
async fn a_spent_quota_answers_429_naming_it_and_counts_against_no_other() {
    let h = Harness::new(QUOTA_ROUTES).await;
    let alice = bearer(&h.token("alice", &["user"]));
    let auth = [("authorization", alice.as_str())];
    for i in 0..2 {
        let (status, body) = h.get("/chat", &auth).await;
        assert_eq!(status, StatusCode::OK, "request {i}: {body}");
    }
    // The hourly quota is spent: the daily one does not count this one.
    let req = Request::get("/chat")
        .header("host", "gate.example")
        .header("authorization", &alice)
        .body(Full::default())
        .expect("request");
    let (status, headers, body) = h.send(req).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    let hour = crate::store::period::window(crate::config::Period::Every(3600), NOW);
    assert_eq!(json["error"], "quota_exceeded");
    assert_eq!(json["quota"], "chat-hourly");
    assert_eq!(
        json["resets_at"],
        crate::store::period::rfc3339(hour.end).as_str()
    );
    assert!(json["detail"].is_string());
    let wait = (hour.end - NOW).to_string();
    assert_eq!(headers["retry-after"], wait.as_str());
    assert_eq!(headers["ratelimit-limit"], "2");
    assert_eq!(headers["ratelimit-remaining"], "0");
    assert_eq!(headers["ratelimit-reset"], wait.as_str());
    assert_eq!(h.upstream.seen().len(), 2, "never forwarded");

    // An hour later the hourly quota has room again; the daily one has 1.
    h.clock.advance(3600);
    let alice = bearer(&h.token("alice", &["user"]));
    let auth = [("authorization", alice.as_str())];
    assert_eq!(h.get("/chat", &auth).await.0, StatusCode::OK);
    let (status, body) = h.get("/chat", &auth).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(body.contains("\"chat-daily\""), "{body}");
    let metrics = String::from_utf8(h.shared.metrics.render()).expect("utf-8");
    assert!(
        metrics.contains("gatehouse_quota_exceeded_total{quota=\"chat-hourly\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("gatehouse_quota_consumed_total{quota=\"chat-daily\",unit=\"requests\"} 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_unlimited_override_shows_no_ratelimit_headers_and_roles_pick_who_counts() {
    let h = Harness::new(QUOTA_ROUTES).await;
    let boss = bearer(&h.token("boss", &["user"]));
    for _ in 0..5 {
        let req = Request::get("/chat")
            .header("host", "gate.example")
            .header("authorization", &boss)
            .body(Full::default())
            .expect("request");
        let (status, headers, _) = h.send(req).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            // Only the hourly quota can stop the boss.
            assert_eq!(headers["ratelimit-limit"], "2");
            continue;
        }
        assert_eq!(status, StatusCode::OK);
        // The hourly quota still shows; the unlimited daily one never does.
        assert_eq!(headers["ratelimit-limit"], "2");
    }
    // The admins-only quota counts admins alone.
    let admin = bearer(&h.token("root", &["admin"]));
    assert_eq!(
        h.get("/chat", &[("authorization", &admin)]).await.0,
        StatusCode::OK
    );
    let (status, body) = h.get("/chat", &[("authorization", &admin)]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(body.contains("admins-only"), "{body}");
}

#[tokio::test]
async fn a_refused_credential_counts_against_no_quota_and_auth_none_counts_the_ip() {
    let h = Harness::new(QUOTA_ROUTES).await;
    for _ in 0..3 {
        assert_eq!(h.get("/chat", &[]).await.0, StatusCode::UNAUTHORIZED);
    }
    let key = crate::store::quota::CounterKey::new("chat-daily", "alice");
    let day = crate::store::period::window(crate::config::Period::Day, NOW);
    assert_eq!(h.shared.store.quota_used(&key, day).await, Ok(0));
    assert_eq!(h.get("/open", &[]).await.0, StatusCode::OK);
    let (status, body) = h.get("/open", &[]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let by_ip = crate::store::quota::CounterKey::new("open-daily", "203.0.113.9");
    assert_eq!(h.shared.store.quota_used(&by_ip, day).await, Ok(1));
}

#[tokio::test]
async fn auth_me_shows_the_quotas_that_count_the_principal() {
    let h = Harness::new(QUOTA_ROUTES).await;
    let alice = bearer(&h.token("alice", &["user"]));
    assert_eq!(
        h.get("/chat", &[("authorization", &alice)]).await.0,
        StatusCode::OK
    );
    let (status, body) = h.get("/auth/me", &[("authorization", &alice)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let me: serde_json::Value = serde_json::from_str(&body).expect("json");
    let day = crate::store::period::window(crate::config::Period::Day, NOW);
    assert_eq!(
        me["quotas"],
        serde_json::json!([
            { "name": "chat-daily", "unit": "requests", "limit": 3, "used": 1, "remaining": 2,
              "resets_at": crate::store::period::rfc3339(day.end) },
            { "name": "chat-hourly", "unit": "requests", "limit": 2, "used": 1, "remaining": 1,
              "resets_at": crate::store::period::rfc3339(day.start + 18 * 3600) },
        ]),
        "admins-only is for admins; open-daily counts client IPs"
    );
    let boss = bearer(&h.token("boss", &["user"]));
    let (_, body) = h.get("/auth/me", &[("authorization", &boss)]).await;
    let me: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(me["quotas"][0]["limit"], serde_json::Value::Null);
    assert_eq!(me["quotas"][0]["remaining"], serde_json::Value::Null);
    assert_eq!(me["quotas"][0]["used"], 0);
}

#[tokio::test]
async fn an_api_key_is_counted_by_its_id() {
    let key = "gh_quota-test-key";
    let auth = format!(
        "  api_keys:\n    keys:\n      - id: ci-bot\n        sha256: {}\n",
        crate::text::sha256_hex(key)
    );
    let routes = "routes:\n  - { name: chat, path: /chat, auth: [jwt, api_key] }\n\
                  quotas:\n  - { name: keyed, routes: [chat], limit: 1 }\n";
    let h = Harness::with_auth(&auth, routes).await;
    assert_eq!(
        h.get("/chat", &[("x-api-key", key)]).await.0,
        StatusCode::OK
    );
    let (status, body) = h.get("/chat", &[("x-api-key", key)]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let day = crate::store::period::window(crate::config::Period::Day, NOW);
    let counted = crate::store::quota::CounterKey::new("keyed", "ci-bot");
    assert_eq!(h.shared.store.quota_used(&counted, day).await, Ok(1));
    let (_, body) = h.get("/auth/me", &[("x-api-key", key)]).await;
    let me: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(me["quotas"][0]["used"], 1, "{body}");
}
