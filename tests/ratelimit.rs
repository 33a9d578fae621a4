//! Rate limits through a real gatehouse (real TLS) in front of a real
//! backend that records what reached it (SPEC §2 `rate_limits`, routes'
//! `rate_limit`, `server.trusted_proxies`; §3.3 client IP, IPv6 by /64; §3.5;
//! §5 429; §6 `gatehouse_rate_limited_total{limit}`, `gatehouse_logins_total`).
//!
//! Exact refill timing is the unit tests' job (`src/pipeline/rate_limit.rs`,
//! on a fake clock). Here every rate is per minute or per hour, so no bucket
//! refills while a test runs and each test only counts requests within one
//! window: how many pass, which one is refused, what the 429 says, and that
//! a refused request never reached the backend.

mod support;

use serde_json::{json, Value};
use support::*;

/// Routes of these tests: `/echo/limited/**` with a JWT and a route limit of
/// 2 per minute, `/echo/open-limited/**` without auth and the route limit
/// `open_limit`, `/echo/open/**` without auth or route limit, then `more`
/// routes; nothing else is routed.
fn routes_with(open_limit: &str, more: &str) -> String {
    format!(
        "routes:\n\
         \x20 - name: limited\n    path: /echo/limited/**\n    auth: jwt\n    rate_limit: {{rate: 2/min, burst: 2}}\n\
         \x20 - name: open_limited\n    path: /echo/open-limited/**\n    auth: none\n    rate_limit: {open_limit}\n\
         \x20 - name: open\n    path: /echo/open/**\n    auth: none\n\
         {more}\
         default_route:\n  auth: deny\n"
    )
}

/// [`routes_with`] a limit of 2 per minute on `/echo/open-limited/**`.
fn routes() -> String {
    routes_with("{rate: 2/min, burst: 2}", "")
}

/// [`routes`] with the per-IP limit `per_ip` (`{rate, burst}`), no login
/// limit, and `more` top-level YAML.
fn per_ip_config(per_ip: &str, more: &str) -> String {
    format!(
        "rate_limits:\n  per_ip: {per_ip}\n  login: null\n{}{more}",
        routes()
    )
}

/// Client IPs are read from `X-Forwarded-For` sent by these tests (127.0.0.1).
const TRUSTED_LOOPBACK: &str = "server:\n  trusted_proxies: [127.0.0.0/8]\n";

// ---------------------------------------------------------------- helpers

/// `GET path`, with a bearer token and an `X-Forwarded-For` when given.
async fn get(
    gate: &Gatehouse,
    client: &reqwest::Client,
    path: &str,
    bearer: Option<&str>,
    xff: Option<&str>,
) -> reqwest::Response {
    let mut req = client.get(gate.url(path));
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    if let Some(x) = xff {
        req = req.header("X-Forwarded-For", x);
    }
    req.send().await.expect("request reaches gatehouse")
}

/// The status of `GET path` (with `X-Forwarded-For: xff` when given).
async fn status(gate: &Gatehouse, client: &reqwest::Client, path: &str, xff: Option<&str>) -> u16 {
    get(gate, client, path, None, xff).await.status().as_u16()
}

/// A header that must be present and a non-negative integer.
fn int_header(res: &reqwest::Response, name: &str) -> u64 {
    let value = res
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing; headers: {:?}", res.headers()));
    value
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} is not an integer: {value:?}"))
}

/// Checks a 429 the way SPEC §3.5 and §5 describe it, with `limit` as
/// `RateLimit-Limit`.
async fn assert_rate_limited(res: reqwest::Response, limit: u64, what: &str) {
    assert_eq!(res.status(), 429, "{what}");
    let retry_after = int_header(&res, "retry-after");
    assert!(retry_after >= 1, "{what}: Retry-After {retry_after}");
    assert_eq!(int_header(&res, "ratelimit-limit"), limit, "{what}");
    assert_eq!(int_header(&res, "ratelimit-remaining"), 0, "{what}");
    let reset = int_header(&res, "ratelimit-reset");
    assert!(reset >= 1, "{what}: RateLimit-Reset {reset}");
    let body: Value = res.json().await.expect("429 body is JSON");
    assert_eq!(body["error"], "rate_limited", "{what}: {body}");
    assert!(body["detail"].is_string(), "{what}: {body}");
}

/// How many requests under `/echo` reached the backend.
async fn echo_requests(backend: &Backend) -> usize {
    backend
        .requests()
        .await
        .iter()
        .filter(|r| r["path"].as_str().is_some_and(|p| p.starts_with("/echo")))
        .count()
}

// ---------------------------------------------------------------- per IP

#[tokio::test]
async fn per_ip_limit_lets_the_burst_through_then_answers_429_with_retry_after_and_ratelimit_headers(
) {
    let (backend, gate) = gate_with(&per_ip_config("{rate: 3/min, burst: 3}", "")).await;
    let client = gate.client();

    for i in 1..=3 {
        let res = get(&gate, &client, "/echo/open/x", None, None).await;
        assert_eq!(res.status(), 200, "request {i} is within the burst");
    }
    let res = get(&gate, &client, "/echo/open/x", None, None).await;
    assert_rate_limited(res, 3, "the 4th request").await;

    assert_eq!(
        echo_requests(&backend).await,
        3,
        "the refused request never reached the backend"
    );
    let metrics = gate.metrics().await;
    assert_eq!(
        sample(&metrics, r#"gatehouse_rate_limited_total{limit="per_ip"}"#),
        1.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn per_ip_limit_counts_requests_gatehouse_answers_itself() {
    let (backend, gate) = gate_with(&per_ip_config("{rate: 3/min, burst: 3}", "")).await;
    let client = gate.client();

    // A 401 (no token) and a 404 (default_route: deny) spend tokens too.
    assert_eq!(status(&gate, &client, "/echo/limited/x", None).await, 401);
    assert_eq!(status(&gate, &client, "/nowhere", None).await, 404);
    assert_eq!(status(&gate, &client, "/echo/open/x", None).await, 200);
    let res = get(&gate, &client, "/echo/open/x", None, None).await;
    assert_rate_limited(res, 3, "the 4th request of any kind").await;
    assert_eq!(echo_requests(&backend).await, 1);
}

// ---------------------------------------------------------------- login

#[tokio::test]
async fn every_login_attempt_counts_against_the_login_limit_wrong_passwords_too() {
    let backend = start_rust_backend().await;
    let extra = format!(
        "rate_limits:\n  per_ip: null\n  login: {{rate: 2/min, burst: 2}}\n{}",
        routes()
    );
    let gate = Gatehouse::start(&backend.url(""), &extra).await;
    // The users file sits next to the config (its default `users.yaml`); a
    // reload reads it and keeps the (unchanged) login limiter.
    let hash = gatehouse::auth::password::hash_password("right password").expect("argon2 hash");
    let users = format!("users:\n{}", user_entry("alice", &hash, "[user]", false));
    write_users(gate.certs.dir.path(), &users);
    gate.gateway.reload().expect("reload reads the users file");
    let client = gate.client();
    let login = |password: &'static str| {
        client
            .post(gate.url("/login"))
            .json(&json!({"username": "alice", "password": password}))
            .send()
    };

    let first = login("right password").await.expect("login 1");
    assert_eq!(first.status(), 200, "the first attempt logs in");
    let first: Value = first.json().await.expect("token JSON");
    let access = first["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    let second = login("wrong password").await.expect("login 2");
    assert_eq!(second.status(), 401, "a wrong password is a failed attempt");
    let third = login("right password").await.expect("login 3");
    assert_rate_limited(third, 2, "the 3rd attempt, even with the right password").await;

    // The login limit is about POST /login only: the token still works.
    let me = get(&gate, &client, "/auth/me", Some(&access), None).await;
    assert_eq!(me.status(), 200, "GET /auth/me is not a login attempt");

    let metrics = gate.metrics().await;
    assert_eq!(
        sample(&metrics, r#"gatehouse_logins_total{result="rate_limited"}"#),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, r#"gatehouse_rate_limited_total{limit="login"}"#),
        1.0,
        "{metrics}"
    );
}

// ---------------------------------------------------------------- routes

#[tokio::test]
async fn route_limit_responses_carry_ratelimit_headers_with_remaining_counting_down() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), &routes()).await;
    let client = gate.client();

    for expected_remaining in [1, 0] {
        let res = get(&gate, &client, "/echo/open-limited/x", None, None).await;
        assert_eq!(res.status(), 200);
        assert_eq!(int_header(&res, "ratelimit-limit"), 2);
        assert_eq!(int_header(&res, "ratelimit-remaining"), expected_remaining);
        let reset = int_header(&res, "ratelimit-reset");
        // 2/min: a token refills every 30 s, the bucket is full again
        // within 60 s.
        assert!((1..=60).contains(&reset), "RateLimit-Reset {reset}");
        assert!(!res.headers().contains_key("retry-after"));
    }
    let res = get(&gate, &client, "/echo/open-limited/x", None, None).await;
    assert_rate_limited(res, 2, "the 3rd request on the route").await;

    // Another route has no limit of its own (and there is no per-IP limit).
    let res = get(&gate, &client, "/echo/open/x", None, None).await;
    assert_eq!(res.status(), 200);
    assert!(!res.headers().contains_key("ratelimit-limit"));

    assert_eq!(echo_requests(&backend).await, 3);
    let metrics = gate.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"gatehouse_rate_limited_total{limit="route:open_limited"}"#
        ),
        1.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn two_users_from_one_ip_share_the_routes_per_ip_bucket() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), &routes()).await;
    let client = gate.client();
    let (alice, bob) = (token_for("alice", &["user"]), token_for("bob", &["user"]));

    let res = get(&gate, &client, "/echo/limited/a", Some(&alice), None).await;
    assert_eq!(res.status(), 200);
    let res = get(&gate, &client, "/echo/limited/b", Some(&bob), None).await;
    assert_eq!(res.status(), 200);
    // Each of them has spent one of their own two tokens, but the route's
    // per-IP bucket of 127.0.0.1 is empty: the 3rd request is refused,
    // whoever sends it.
    let res = get(&gate, &client, "/echo/limited/a", Some(&alice), None).await;
    assert_rate_limited(res, 2, "the 3rd request from this IP").await;
    let res = get(&gate, &client, "/echo/limited/b", Some(&bob), None).await;
    assert_rate_limited(res, 2, "the 4th request from this IP").await;
    assert_eq!(echo_requests(&backend).await, 2);
}

// What one IP shows of the per-principal limit: the route's limit is checked
// per IP before authentication and per principal after it, with the same
// `{rate, burst}`. From a single IP every request a principal sends also
// spends a token of that IP's bucket, so the IP bucket is always at least as
// empty as the principal's and always refuses first: per-principal limiting
// is unobservable from one IP. It shows when one principal comes from several
// IPs, which the next test arranges with a trusted proxy and
// `X-Forwarded-For`.
#[tokio::test]
async fn one_principal_behind_several_ips_is_limited_by_its_own_bucket() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), &format!("{}{TRUSTED_LOOPBACK}", routes())).await;
    let client = gate.client();
    let (alice, bob) = (token_for("alice", &["user"]), token_for("bob", &["user"]));
    let path = "/echo/limited/x";

    for ip in ["198.51.100.1", "198.51.100.2"] {
        let res = get(&gate, &client, path, Some(&alice), Some(ip)).await;
        assert_eq!(res.status(), 200, "alice from {ip}");
    }
    // 198.51.100.3 has not been seen yet; alice's bucket is empty.
    let res = get(&gate, &client, path, Some(&alice), Some("198.51.100.3")).await;
    assert_rate_limited(res, 2, "alice's 3rd request, from a fresh IP").await;
    // Another user from that same IP still gets through: it was alice's
    // bucket, not the IP's, that refused.
    let res = get(&gate, &client, path, Some(&bob), Some("198.51.100.3")).await;
    assert_eq!(res.status(), 200, "bob from 198.51.100.3");
    assert_eq!(echo_requests(&backend).await, 3);
}

#[tokio::test]
async fn ratelimit_remaining_reports_the_bucket_closest_to_refusal() {
    // RateLimit-Remaining: 0 is a promise that the next request is refused,
    // and anything above 0 that it is not. When the per-IP and the
    // per-principal buckets of a route both apply, the answer must be the
    // smaller of the two (draft-ietf-httpapi-ratelimit-headers: with several
    // policies, the one closest to its limit).
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), &routes()).await;
    let client = gate.client();
    let (alice, bob) = (token_for("alice", &["user"]), token_for("bob", &["user"]));

    let res = get(&gate, &client, "/echo/limited/a", Some(&alice), None).await;
    assert_eq!(int_header(&res, "ratelimit-remaining"), 1);
    let res = get(&gate, &client, "/echo/limited/b", Some(&bob), None).await;
    assert_eq!(res.status(), 200);
    let remaining = int_header(&res, "ratelimit-remaining");
    let next = get(&gate, &client, "/echo/limited/b", Some(&bob), None).await;
    assert_eq!(next.status(), 429, "this IP's route bucket is empty");
    assert_eq!(
        remaining, 0,
        "bob's 1st request said RateLimit-Remaining: {remaining}, yet his next one was refused"
    );
}

// ---------------------------------------------------------------- client IP

#[tokio::test]
async fn spoofed_x_forwarded_for_from_an_untrusted_peer_does_not_escape_the_per_ip_limit() {
    // No trusted proxies: the TCP peer (127.0.0.1) is the client.
    let (backend, gate) = gate_with(&per_ip_config("{rate: 2/min, burst: 2}", "")).await;
    let client = gate.client();

    for (i, xff) in ["198.51.100.1", "198.51.100.2"].into_iter().enumerate() {
        assert_eq!(
            status(&gate, &client, "/echo/open/x", Some(xff)).await,
            200,
            "request {}",
            i + 1
        );
    }
    for xff in ["198.51.100.3", "2001:db8::1", "10.0.0.1, 198.51.100.4"] {
        let res = get(&gate, &client, "/echo/open/x", None, Some(xff)).await;
        assert_rate_limited(res, 2, &format!("X-Forwarded-For: {xff}")).await;
    }
    assert_eq!(echo_requests(&backend).await, 2);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_limit_keys_on_the_right_most_untrusted_client() {
    let (backend, gate) =
        gate_with(&per_ip_config("{rate: 1/h, burst: 1}", TRUSTED_LOOPBACK)).await;
    let client = gate.client();
    let path = "/echo/open/x";

    // In order: each `X-Forwarded-For` (none: the proxy's own request), the
    // status it gets, and why.
    for (xff, want, why) in [
        (Some("198.51.100.1"), 200, "198.51.100.1's first request"),
        (Some("198.51.100.1"), 429, "198.51.100.1's bucket is empty"),
        (
            Some("198.51.100.2"),
            200,
            "another forwarded client has its own bucket",
        ),
        // What the client itself wrote (left of the first untrusted hop) is
        // not believed: the client is still 198.51.100.1.
        (
            Some("203.0.113.7, 198.51.100.1"),
            429,
            "a made-up left-most address does not escape the limit",
        ),
        // Trusted hops on the right are skipped: the client is 198.51.100.2.
        (
            Some("198.51.100.2, 127.0.0.9"),
            429,
            "a trusted hop does not hide the client",
        ),
        // And the proxy's own address is not anyone's bucket: a request
        // without X-Forwarded-For comes from 127.0.0.1 itself.
        (
            None,
            200,
            "without X-Forwarded-For the client is 127.0.0.1 itself",
        ),
    ] {
        let got = status(&gate, &client, path, xff).await;
        assert_eq!(got, want, "X-Forwarded-For {xff:?}: {why}");
    }
    assert_eq!(echo_requests(&backend).await, 3);
}

#[tokio::test]
async fn ipv6_clients_behind_a_trusted_proxy_share_one_bucket_per_64() {
    let (backend, gate) =
        gate_with(&per_ip_config("{rate: 1/h, burst: 1}", TRUSTED_LOOPBACK)).await;
    let client = gate.client();
    let path = "/echo/open/x";

    // In order: each `X-Forwarded-For`, the status it gets, and why.
    for (xff, want, why) in [
        ("2001:db8::1", 200, "the first client of 2001:db8::/64"),
        (
            "2001:db8::2",
            429,
            "2001:db8::2 is in the same /64 as 2001:db8::1",
        ),
        (
            "[2001:db8::ffff:1]:4711",
            429,
            "a port on the hop does not make another client",
        ),
        (
            "2001:db8:0:1::1",
            200,
            "2001:db8:0:1::/64 is another client",
        ),
    ] {
        let got = status(&gate, &client, path, Some(xff)).await;
        assert_eq!(got, want, "X-Forwarded-For {xff}: {why}");
    }
    assert_eq!(echo_requests(&backend).await, 2);
}

// ---------------------------------------------------------------- reload

#[tokio::test]
async fn reload_keeps_the_buckets_of_unchanged_limits_and_a_changed_rate_starts_fresh() {
    let backend = start_rust_backend().await;
    let upstreams = upstream(&backend.url(""));
    let gate = Gatehouse::start(&backend.url(""), &routes()).await;
    let client = gate.client();
    let path = "/echo/open-limited/x";

    assert_eq!(status(&gate, &client, path, None).await, 200);
    assert_eq!(status(&gate, &client, path, None).await, 200);
    assert_eq!(status(&gate, &client, path, None).await, 429);

    // An unrelated change: one more route and a different body limit.
    let unrelated = format!(
        "{}server:\n  max_request_body: 1MiB\n",
        routes_with(
            "{rate: 2/min, burst: 2}",
            "  - name: extra\n    path: /extra\n    auth: none\n"
        )
    );
    gate.write_config(&upstreams, &unrelated);
    gate.gateway
        .reload()
        .expect("reload with an unrelated change");
    assert_eq!(
        gate.gateway.config().server.max_request_body,
        1024 * 1024,
        "the new config is in force"
    );
    let res = get(&gate, &client, path, None, None).await;
    assert_rate_limited(res, 2, "the same limit after a reload").await;

    // The route's limit itself changes: a new bucket, full.
    gate.write_config(&upstreams, &routes_with("{rate: 3/min, burst: 3}", ""));
    gate.gateway.reload().expect("reload with a new rate");
    let res = get(&gate, &client, path, None, None).await;
    assert_eq!(
        res.status(),
        200,
        "a changed limit starts with a full bucket"
    );
    assert_eq!(int_header(&res, "ratelimit-limit"), 3);
    assert_eq!(int_header(&res, "ratelimit-remaining"), 2);
}
