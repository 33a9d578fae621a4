//! The store (SPEC §2 `store`, §4 "every replica sees them at once", §5
//! `store_unavailable`, §6 `/readyz`): two gatehouse instances sharing one
//! real `redis-server` see each other's sessions, revocations (through
//! pub/sub, within a second), refresh-token reuse and login failures; a
//! Redis outage makes the token endpoints answer 503 at once and proxied
//! requests fail closed after `max_stale`, and everything comes back with
//! Redis. Also: what is kept in Redis (only hashes, under the prefix, with a
//! TTL), and the embedded store's file and folder being created.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const ALICE_PW: &str = "alice's redis password";
const BOB_PW: &str = "bob's redis password";

/// How long a revocation may take to reach the other instance.
const PROPAGATION: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------- helpers

/// alice and bob, both with role `user`.
fn users_yaml() -> String {
    // bcrypt cost 4: these tests are about the store, not hashing.
    let entry = |name: &str, pw: &str| {
        let hash = bcrypt::hash(pw, 4).expect("bcrypt hash");
        user_entry(name, &hash, "[user]", false)
    };
    format!(
        "users:\n{}{}",
        entry("alice", ALICE_PW),
        entry("bob", BOB_PW)
    )
}

fn redis_store(redis: &Redis) -> String {
    format!(
        "store:\n  backend: redis\n  url: {}\n  key_prefix: \"gh:\"\n  max_stale: 2s\n",
        redis.url()
    )
}

/// A gatehouse running in this process, with this file's requests.
struct Gw {
    gate: Gatehouse,
    client: reqwest::Client,
}

impl Gw {
    async fn start(certs: TestCerts, path: PathBuf) -> Gw {
        let gate = Gatehouse::start_config(certs, path).await;
        let client = gate.client();
        Gw { gate, client }
    }

    /// A gateway with the Redis store in front of `backend`, once ready.
    async fn redis(backend: &Backend, redis: &Redis, auth_extra: &str) -> Gw {
        let certs = certs_with_users(&users_yaml());
        let extra = format!("{}{JWT_ECHO_ROUTES}", redis_store(redis));
        let path = write_auth_config(&certs, &backend.url(""), auth_extra, &extra);
        let gw = Gw::start(certs, path).await;
        gw.wait_ready(Duration::from_secs(10)).await;
        gw
    }

    fn url(&self, path: &str) -> String {
        self.gate.url(path)
    }

    async fn login_res(&self, user: &str, pw: &str) -> (u16, Value) {
        status_and_body(login_res(&self.gate, &self.client, user, pw).await).await
    }

    async fn login(&self, user: &str, pw: &str) -> Tokens {
        login(&self.gate, &self.client, user, pw).await
    }

    async fn refresh(&self, refresh: &str) -> (u16, Value) {
        status_and_body(refresh_res(&self.gate, &self.client, refresh).await).await
    }

    async fn logout(&self, access: &str) -> (u16, Value) {
        let res = self
            .client
            .post(self.url("/auth/logout"))
            .bearer_auth(access)
            .send()
            .await
            .expect("POST /auth/logout");
        status_and_body(res).await
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        status_and_body(bearer_get(&self.client, self.url(path), token).await).await
    }

    /// Status of a proxied `GET /echo/x` (a JWT route) with `token`.
    async fn echo(&self, token: &str) -> u16 {
        echo_status(&self.gate, &self.client, token).await
    }

    async fn me(&self, token: &str) -> u16 {
        me_status(&self.gate, &self.client, token).await
    }

    async fn admin(&self, path: &str) -> (u16, String) {
        let res = backends::client()
            .get(format!("http://{}{path}", self.gate.admin))
            .send()
            .await
            .expect("admin listener answers");
        (res.status().as_u16(), res.text().await.expect("admin body"))
    }

    async fn wait_ready(&self, within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let (status, body) = self.admin("/readyz").await;
            if status == 200 {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "/readyz still {status} after {within:?}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The value of one Prometheus sample, or 0.
    async fn sample(&self, series: &str) -> f64 {
        sample(&self.gate.metrics().await, series)
    }
}

/// Status and JSON body (`Null` when empty or not JSON).
async fn status_and_body(res: reqwest::Response) -> (u16, Value) {
    let (status, _, body) = answer(res).await;
    (status, body)
}

/// Polls `check` every 20 ms until it is true; how long that took.
async fn within<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `sid` claim of an access token.
fn sid_of(access: &str) -> String {
    let claims = jwt_part(access, 1);
    claims["sid"].as_str().expect("sid claim").to_owned()
}

async fn redis_conn(redis: &Redis) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the test redis")
}

// ---------------------------------------------------------------- two instances

#[tokio::test]
async fn a_token_from_one_instance_works_on_the_other_until_logout_on_the_first_reaches_it() {
    let backend = start_rust_backend().await;
    let redis = Redis::start();
    let a = Gw::redis(&backend, &redis, "").await;
    let b = Gw::redis(&backend, &redis, "").await;

    let t = a.login("alice", ALICE_PW).await;
    assert_eq!(b.echo(&t.access).await, 200, "A's token on B's JWT route");
    assert_eq!(b.me(&t.access).await, 200, "A's token on B's /auth/me");
    // B can rotate a refresh token A issued: the family is shared.
    let (status, body) = b.refresh(&t.refresh).await;
    assert_eq!(status, 200, "{body}");
    let t2 = Tokens::from(&body);
    assert_eq!(a.echo(&t2.access).await, 200);

    let (status, body) = a.logout(&t2.access).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(a.echo(&t2.access).await, 401);
    let took = within(PROPAGATION, "B refuses a token logged out on A", || async {
        b.echo(&t2.access).await == 401
    })
    .await;
    println!("logout on A reached B in {took:?}");
    assert_eq!(b.me(&t2.access).await, 401);
    // The whole family ended, on both.
    assert_eq!(b.echo(&t.access).await, 401);
    let (status, body) = b.refresh(&t2.refresh).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token"))
    );
    // Other sessions go on.
    let other = b.login("alice", ALICE_PW).await;
    assert_eq!(a.echo(&other.access).await, 200);
}

#[tokio::test]
async fn reusing_on_one_instance_a_refresh_token_spent_on_the_other_revokes_the_family_on_both() {
    let backend = start_rust_backend().await;
    let redis = Redis::start();
    let a = Gw::redis(&backend, &redis, "").await;
    let b = Gw::redis(&backend, &redis, "").await;

    let first = a.login("alice", ALICE_PW).await;
    let (status, body) = a.refresh(&first.refresh).await;
    assert_eq!(status, 200, "{body}");
    let second = Tokens::from(&body);
    assert_eq!(b.echo(&second.access).await, 200);

    let (status, body) = b.refresh(&first.refresh).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token")),
        "a spent refresh token presented to B: {body}"
    );
    let (status, body) = a.refresh(&second.refresh).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token")),
        "the family's current refresh token after the reuse: {body}"
    );
    assert_eq!(b.echo(&second.access).await, 401);
    let took = within(
        PROPAGATION,
        "A refuses the reused family's access token",
        || async { a.echo(&second.access).await == 401 },
    )
    .await;
    println!("reuse detected on B reached A in {took:?}");
    assert_eq!(a.echo(&first.access).await, 401);
}

#[tokio::test]
async fn login_failures_on_one_instance_count_towards_the_lockout_on_the_other() {
    let backend = start_rust_backend().await;
    let redis = Redis::start();
    let a = Gw::redis(&backend, &redis, LOCKOUT_3).await;
    let b = Gw::redis(&backend, &redis, LOCKOUT_3).await;
    let refused = json!({"error": "invalid_credentials", "detail": "Invalid credentials"});

    for gw in [&a, &a, &b] {
        assert_eq!(gw.login_res("alice", "wrong").await, (401, refused.clone()));
    }
    assert_eq!(
        a.login_res("alice", ALICE_PW).await,
        (401, refused.clone()),
        "locked on A after 2 failures on A and 1 on B"
    );
    assert_eq!(b.login_res("alice", ALICE_PW).await, (401, refused.clone()));
    // A success on one resets the count for both.
    for gw in [&a, &b] {
        assert_eq!(gw.login_res("bob", "wrong").await.0, 401);
    }
    b.login("bob", BOB_PW).await;
    for gw in [&b, &a] {
        assert_eq!(gw.login_res("bob", "wrong").await.0, 401);
    }
    a.login("bob", BOB_PW).await;

    let locked = r#"gatehouse_logins_total{result="locked"}"#;
    assert_eq!((a.sample(locked).await, b.sample(locked).await), (1.0, 1.0));
}

// ---------------------------------------------------------------- outage

#[tokio::test]
async fn redis_down_means_503_for_token_endpoints_at_once_and_for_proxied_requests_after_max_stale()
{
    let backend = start_rust_backend().await;
    let mut redis = Redis::start();
    let gw = Gw::redis(&backend, &redis, "").await;
    let t = gw.login("alice", ALICE_PW).await;
    let spare = gw.login("bob", BOB_PW).await;
    assert_eq!(gw.echo(&t.access).await, 200);

    redis.kill();
    let killed = Instant::now();
    // The last synced revocations are trusted for a while...
    assert_eq!(
        gw.echo(&t.access).await,
        200,
        "a proxied request right after Redis went away"
    );
    // ...but the token endpoints need the store at once.
    let unavailable = |what: &str, (status, body): (u16, Value)| {
        assert_eq!(status, 503, "{what} with Redis down: {body}");
        assert_eq!(body["error"], "store_unavailable", "{what}: {body}");
    };
    let started = Instant::now();
    unavailable("login", gw.login_res("alice", ALICE_PW).await);
    unavailable("refresh", gw.refresh(&t.refresh).await);
    unavailable("logout", gw.logout(&spare.access).await);
    println!(
        "login+refresh+logout answered 503 in {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(6), "503s were slow");

    // Then proxied requests fail closed.
    let last = loop {
        let answer = gw.get("/echo/x", &t.access).await;
        if answer.0 == 503 {
            break answer;
        }
        assert_eq!(answer.0, 200, "{}", answer.1);
        assert!(
            killed.elapsed() < Duration::from_secs(8),
            "proxied requests still served 8 s after Redis went away (max_stale 2s)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "proxied requests failed closed {:?} after the kill (max_stale 2s)",
        killed.elapsed()
    );
    assert_eq!(last.1["error"], "store_unavailable", "{}", last.1);
    assert_eq!(gw.me(&t.access).await, 503);
    let (status, body) = gw.admin("/readyz").await;
    assert_eq!(status, 503, "{body}");
    let ready: Value = serde_json::from_str(&body).expect("/readyz JSON");
    assert!(
        ready["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "/readyz gives no reason: {body}"
    );

    redis.restart();
    let back = Instant::now();
    within(Duration::from_secs(10), "login works again", || async {
        gw.login_res("alice", ALICE_PW).await.0 == 200
    })
    .await;
    let fresh = gw.login("alice", ALICE_PW).await;
    within(
        Duration::from_secs(10),
        "proxied requests work again",
        || async { gw.echo(&fresh.access).await == 200 },
    )
    .await;
    gw.wait_ready(Duration::from_secs(10)).await;
    println!("recovered {:?} after Redis restarted", back.elapsed());
    let (status, body) = gw.refresh(&fresh.refresh).await;
    assert_eq!(status, 200, "{body}");
}

/// SPEC §4 "with `backend: redis` every replica sees them at once": also
/// right after an outage, when both replicas answer `/readyz` 200 again.
#[tokio::test]
async fn after_a_redis_outage_a_logout_on_one_instance_still_reaches_the_other_within_a_second() {
    let backend = start_rust_backend().await;
    let mut redis = Redis::start();
    let a = Gw::redis(&backend, &redis, "").await;
    let b = Gw::redis(&backend, &redis, "").await;

    redis.kill();
    for gw in [&a, &b] {
        within(Duration::from_secs(8), "/readyz says 503", || async {
            gw.admin("/readyz").await.0 == 503
        })
        .await;
    }
    redis.restart();
    for gw in [&a, &b] {
        gw.wait_ready(Duration::from_secs(10)).await;
    }
    let back = Instant::now();
    let mut worst = Duration::ZERO;
    for _ in 0..3 {
        let t = a.login("alice", ALICE_PW).await;
        assert_eq!(b.echo(&t.access).await, 200);
        assert_eq!(a.logout(&t.access).await.0, 204);
        let took = within(
            Duration::from_secs(5),
            "B refuses a token logged out on A",
            || async { b.echo(&t.access).await == 401 },
        )
        .await;
        worst = worst.max(took);
    }
    println!(
        "after the outage (both ready again {:?} ago), logouts on A reached B within {worst:?}",
        back.elapsed()
    );
    assert!(
        worst < PROPAGATION,
        "a logout on A took {worst:?} to reach B after the outage"
    );
}

// ---------------------------------------------------------------- what is stored

#[tokio::test]
async fn redis_holds_only_refresh_token_hashes_under_the_prefix_each_key_with_a_ttl() {
    let backend = start_rust_backend().await;
    let redis = Redis::start();
    let gw = Gw::redis(&backend, &redis, "").await;
    let first = gw.login("alice", ALICE_PW).await;
    let (status, body) = gw.refresh(&first.refresh).await;
    assert_eq!(status, 200, "{body}");
    let second = Tokens::from(&body);
    let other = gw.login("bob", BOB_PW).await;
    assert_eq!(gw.logout(&other.access).await.0, 204);
    assert_eq!(gw.login_res("alice", "wrong").await.0, 401);

    let mut conn = redis_conn(&redis).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    for key in &keys {
        assert!(key.starts_with("gh:"), "key outside the prefix: {key}");
    }
    for (token, what) in [(&first.refresh, "spent"), (&second.refresh, "current")] {
        let key = format!("gh:rt:{}", sha256_hex(token));
        assert!(
            keys.contains(&key),
            "no {key} for the {what} refresh token: {keys:?}"
        );
    }
    // No raw refresh token anywhere, as a key or a value.
    let mut everything = keys.join("\n");
    for key in &keys {
        let kind: String = redis::cmd("TYPE")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let values: Vec<String> = match kind.as_str() {
            "string" => vec![redis::cmd("GET")
                .arg(key)
                .query_async(&mut conn)
                .await
                .unwrap()],
            "hash" => redis::cmd("HGETALL")
                .arg(key)
                .query_async(&mut conn)
                .await
                .unwrap(),
            "zset" => redis::cmd("ZRANGE")
                .arg(key)
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .unwrap(),
            _ => Vec::new(),
        };
        everything.push_str(&values.join("\n"));
        let ttl: i64 = redis::cmd("TTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        if key != "gh:revocations" {
            assert!(ttl > 0, "{key} ({kind}) has no TTL ({ttl})");
        }
    }
    for t in [&first, &second, &other] {
        assert!(
            !everything.contains(&t.refresh),
            "a raw refresh token is stored"
        );
        assert!(!everything.contains(&t.access), "an access token is stored");
    }
    assert!(!everything.contains(ALICE_PW) && !everything.contains("wrong"));
}

#[tokio::test]
async fn logout_after_redis_lost_its_data_leaves_no_key_without_a_ttl() {
    let backend = start_rust_backend().await;
    let redis = Redis::start();
    let gw = Gw::redis(&backend, &redis, "").await;
    let t = gw.login("alice", ALICE_PW).await;
    let mut conn = redis_conn(&redis).await;
    // What a restart of a Redis without persistence does.
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();

    assert_eq!(gw.logout(&t.access).await.0, 204);
    assert_eq!(gw.echo(&t.access).await, 401);
    // The family's revocation is stored for the other replicas.
    let score: Option<u64> = redis::cmd("ZSCORE")
        .arg("gh:revocations")
        .arg(format!("sid:{}", sid_of(&t.access)))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        score.is_some(),
        "the logout's family is not in gh:revocations"
    );
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("gh:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    for key in keys.iter().filter(|k| *k != "gh:revocations") {
        let ttl: i64 = redis::cmd("TTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(
            ttl > 0,
            "{key} was created without a TTL (TTL {ttl}); keys: {keys:?}"
        );
    }
}

// ---------------------------------------------------------------- embedded

#[tokio::test]
async fn embedded_store_file_and_its_missing_folders_are_created() {
    let backend = start_rust_backend().await;
    let certs = certs_with_users(&users_yaml());
    let dir = certs.dir.path().to_owned();
    let db = dir.join("not/yet/there/gatehouse.db");
    assert!(!dir.join("not").exists());
    let extra = format!("store:\n  path: not/yet/there/gatehouse.db\n{JWT_ECHO_ROUTES}");
    let path = write_auth_config(&certs, &backend.url(""), "", &extra);
    let gw = Gw::start(certs, path).await;
    assert!(db.is_file(), "{} was not created", db.display());

    let t = gw.login("alice", ALICE_PW).await;
    assert_eq!(gw.echo(&t.access).await, 200);
    let (status, body) = gw.refresh(&t.refresh).await;
    assert_eq!(status, 200, "{body}");
    assert!(std::fs::metadata(&db).unwrap().len() > 0);
}
