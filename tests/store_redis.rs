//! The store (SPEC §2 `store`, §4 "every replica sees them at once", §5
//! `store_unavailable`, §6 `/readyz`): two gatehouse instances sharing one
//! real `redis-server` see each other's sessions, revocations (through
//! pub/sub, within a second), refresh-token reuse and login failures; a
//! Redis outage makes the token endpoints answer 503 at once and proxied
//! requests fail closed after `max_stale`, and everything comes back with
//! Redis. Also: what is kept in Redis (only hashes, under the prefix, with a
//! TTL), and the embedded store's file and folder being created.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::redis_ha::{RedisHa, Sentinel, HA_MASTER_NAME, HA_PASSWORD};
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

/// A gatehouse — in this process, or the real binary in a process of its
/// own — with this file's requests.
struct Gw {
    https: SocketAddr,
    admin: SocketAddr,
    client: reqwest::Client,
    running: Running,
}

/// What runs the gatehouse (kept for as long as the [`Gw`]).
enum Running {
    InProcess { _gate: Gatehouse },
    Process(Process),
}

impl Gw {
    async fn start(certs: TestCerts, path: PathBuf) -> Gw {
        let gate = Gatehouse::start_config(certs, path).await;
        Gw {
            https: gate.https,
            admin: gate.admin,
            client: gate.client(),
            running: Running::InProcess { _gate: gate },
        }
    }

    /// The gatehouse binary with the config at `path` (which uses `certs`).
    fn spawn(certs: &TestCerts, path: &Path) -> Gw {
        let process = Process::spawn(path);
        Gw {
            https: process.https,
            admin: process.admin.expect("an admin listener"),
            client: https_client_builder(certs, process.https)
                .build()
                .expect("reqwest client"),
            running: Running::Process(process),
        }
    }

    /// A gateway with the Redis store in front of `backend`, once ready.
    async fn redis(backend: &Backend, redis: &Redis, auth_extra: &str) -> Gw {
        Gw::redis_routes(backend, redis, auth_extra, JWT_ECHO_ROUTES).await
    }

    /// [`Gw::redis`] with other `routes` (top-level YAML).
    async fn redis_routes(backend: &Backend, redis: &Redis, auth_extra: &str, routes: &str) -> Gw {
        let certs = certs_with_users(&users_yaml());
        let extra = format!("{}{routes}", redis_store(redis));
        let path = write_auth_config(&certs, &backend.url(""), auth_extra, &extra);
        let gw = Gw::start(certs, path).await;
        gw.wait_ready(Duration::from_secs(10)).await;
        gw
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.https.port())
    }

    async fn login_res(&self, user: &str, pw: &str) -> (u16, Value) {
        let body = json!({"username": user, "password": pw});
        status_and_body(post_json(&self.client, self.url("/login"), &body).await).await
    }

    async fn login(&self, user: &str, pw: &str) -> Tokens {
        let (status, body) = self.login_res(user, pw).await;
        assert_eq!(status, 200, "login of {user}: {body}");
        Tokens::from(&body)
    }

    async fn refresh(&self, refresh: &str) -> (u16, Value) {
        let body = json!({"refresh_token": refresh});
        status_and_body(post_json(&self.client, self.url("/auth/refresh"), &body).await).await
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
        self.get("/echo/x", token).await.0
    }

    async fn me(&self, token: &str) -> u16 {
        self.get("/auth/me", token).await.0
    }

    /// Status of `GET /health` (an open route, see [`LIMITED_ROUTES`]) for
    /// the client `ip`.
    async fn open(&self, ip: &str) -> u16 {
        status_of_sent(
            self.client
                .get(self.url("/health"))
                .header("X-Forwarded-For", ip),
        )
        .await
    }

    async fn admin(&self, path: &str) -> (u16, String) {
        let res = backends::client()
            .get(format!("http://{}{path}", self.admin))
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
        sample(&scrape(self.admin).await, series)
    }

    /// Checks of shared rate limits that Redis could not answer.
    async fn fallbacks(&self) -> f64 {
        self.sample(FALLBACKS).await
    }

    /// What the process wrote to stdout and stderr (nothing in process).
    fn logs(&self) -> String {
        match &self.running {
            Running::InProcess { .. } => String::new(),
            Running::Process(p) => format!("{}\n{}", p.stdout_lines().join("\n"), p.stderr_text()),
        }
    }

    /// A steady stream of `GET /echo/x` with `token`.
    fn echo_load(&self, token: &str) -> Load {
        let (client, url, token) = (self.client.clone(), self.url("/echo/x"), token.to_owned());
        Load::start(move || client.get(&url).bearer_auth(&token))
    }

    /// A steady stream of logins.
    fn login_load(&self, user: &str, pw: &str) -> Load {
        let (client, url) = (self.client.clone(), self.url("/login"));
        let body = json!({"username": user, "password": pw});
        Load::start(move || client.post(&url).json(&body))
    }
}

const FALLBACKS: &str = "gatehouse_rate_limit_fallbacks_total";

/// `/echo/**` needs a JWT and has a limit it never reaches; `/health` is
/// open, with a limit of 3 per hour per client (`X-Forwarded-For`).
const LIMITED_ROUTES: &str = "routes:\n\
    \x20 - name: echo\n    path: /echo/**\n    auth: jwt\n    rate_limit: {rate: 1000/s, burst: 1000}\n\
    \x20 - name: open\n    path: /health\n    auth: none\n    rate_limit: {rate: 3/h, burst: 3}\n\
    default_route:\n  auth: deny\n\
    server:\n  trusted_proxies: [127.0.0.0/8]\n";

/// One answer of a [`Load`].
#[derive(Debug, Clone, Copy)]
struct Answer {
    sent: Instant,
    done: Instant,
    /// 0: no HTTP answer at all.
    status: u16,
}

/// A steady stream of requests (the next 10 ms after each answer), every
/// answer recorded, until stopped.
struct Load {
    answers: Arc<Mutex<Vec<Answer>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start<F>(request: F) -> Load
    where
        F: Fn() -> reqwest::RequestBuilder + Send + 'static,
    {
        let answers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (record, stopped) = (answers.clone(), stop.clone());
        let task = tokio::spawn(async move {
            while !stopped.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let status = match request().send().await {
                    Ok(res) => {
                        let status = res.status().as_u16();
                        let _ = res.bytes().await;
                        status
                    }
                    Err(_) => 0,
                };
                let done = Instant::now();
                record
                    .lock()
                    .expect("answers")
                    .push(Answer { sent, done, status });
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Load {
            answers,
            stop,
            task,
        }
    }

    /// The answers so far.
    fn answers(&self) -> Vec<Answer> {
        self.answers.lock().expect("answers").clone()
    }

    /// The first answer to a request sent after `after` with `status`.
    fn first(&self, after: Instant, status: u16) -> Option<Answer> {
        self.answers()
            .into_iter()
            .find(|a| a.sent >= after && a.status == status)
    }

    /// Stops the stream; every answer.
    async fn stop(self) -> Vec<Answer> {
        let Load {
            answers,
            stop,
            task,
            ..
        } = self;
        stop.store(true, Ordering::Relaxed);
        task.await.expect("load task");
        let answers = answers.lock().expect("answers").clone();
        answers
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

/// A login on `one`, its refresh token rotated on `other`, and a logout on
/// `one` with the new access token: whether all three worked.
async fn token_round(one: &Gw, other: &Gw) -> bool {
    let (status, body) = one.login_res("alice", ALICE_PW).await;
    if status != 200 {
        return false;
    }
    let (status, body) = other.refresh(&Tokens::from(&body).refresh).await;
    status == 200 && one.logout(&Tokens::from(&body).access).await.0 == 204
}

/// A token logged out on `one` (where it was issued): how long until
/// `other`, which took it before, refuses it (at most [`PROPAGATION`]).
async fn logout_reaches(one: &Gw, other: &Gw) -> Duration {
    let t = one.login("alice", ALICE_PW).await;
    assert_eq!(other.echo(&t.access).await, 200);
    assert_eq!(one.logout(&t.access).await.0, 204);
    within(
        PROPAGATION,
        "the other instance refuses a logged-out token",
        || async { other.echo(&t.access).await == 401 },
    )
    .await
}

/// Whether 100 ms of load (see [`Load`]) on `gw` counted no rate-limit
/// fallback.
async fn no_fallback(gw: &Gw) -> bool {
    let before = gw.fallbacks().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    gw.fallbacks().await == before
}

/// Issue 16: the outage of the test above, under a steady stream of
/// proxied requests on two instances, ends with Redis started again (empty)
/// and nothing restarted in gatehouse. While Redis is down: the token
/// endpoints answer 503 at once; proxied JWT requests go on from the last
/// synced revocations, then fail closed (`max_stale` 2s) and stay closed;
/// every shared rate-limit check falls back to the local limiter (still
/// limiting) and counts in `gatehouse_rate_limit_fallbacks_total`. Within a
/// second of Redis answering again: logins, logouts and refreshes work,
/// proxied requests are served, `/readyz` is 200, and rate limits are
/// checked in Redis again.
#[tokio::test(flavor = "multi_thread")]
async fn redis_killed_under_load_fails_as_specified_and_all_recovers_within_a_second_of_its_return()
{
    let backend = start_rust_backend().await;
    let mut redis = Redis::start();
    let a = Gw::redis_routes(&backend, &redis, "", LIMITED_ROUTES).await;
    let b = Gw::redis_routes(&backend, &redis, "", LIMITED_ROUTES).await;
    let t = a.login("alice", ALICE_PW).await;
    let spare = b.login("bob", BOB_PW).await;
    let loads = [a.echo_load(&t.access), b.echo_load(&t.access)];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fallbacks_before = [a.fallbacks().await, b.fallbacks().await];
    assert_eq!(fallbacks_before, [0.0, 0.0], "Redis answered every check");

    redis.kill();
    let killed = Instant::now();
    // The token endpoints need the store: 503 at once.
    let unavailable = |what: &str, started: Instant, (status, body): (u16, Value)| {
        let took = started.elapsed();
        assert_eq!(
            (status, body["error"].as_str()),
            (503, Some("store_unavailable")),
            "{what} with Redis down: {body}"
        );
        assert!(
            took < Duration::from_secs(1),
            "{what} took {took:?} to answer 503"
        );
        took
    };
    let started = Instant::now();
    let login = unavailable("login", started, a.login_res("alice", ALICE_PW).await);
    let started = Instant::now();
    let refresh = unavailable("refresh", started, b.refresh(&t.refresh).await);
    let started = Instant::now();
    let logout = unavailable("logout", started, a.logout(&spare.access).await);
    println!("with Redis down under load: login 503 in {login:?}, refresh {refresh:?}, logout {logout:?}");
    // Rate limits fall back to the local limiter: limited, not unlimited.
    let local: Vec<u16> =
        futures_util::future::join_all((0..4).map(|_| a.open("198.51.100.9"))).await;
    let mut local_sorted = local.clone();
    local_sorted.sort_unstable();
    assert_eq!(
        local_sorted,
        [200, 200, 200, 429],
        "A's local bucket of 3: {local:?}"
    );

    // Proxied requests fail closed once the revocations are too old.
    within(Duration::from_secs(8), "both fail closed", || async {
        loads.iter().all(|l| l.first(killed, 503).is_some())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let counted_at = Instant::now();
    let fallbacks_down = [a.fallbacks().await, b.fallbacks().await];
    // From here on Redis may answer: recovery is timed from the restart,
    // Redis's own start included.
    let back = Instant::now();
    redis.restart();
    // Each of these polled on its own, all at once: how long until it works.
    let limit = Duration::from_secs(5);
    let started = back.elapsed();
    let took = tokio::join!(
        within(limit, "A: login, refresh on B, logout", || token_round(
            &a, &b
        )),
        within(limit, "B: login, refresh on A, logout", || token_round(
            &b, &a
        )),
        within(limit, "A: /readyz", || async {
            a.admin("/readyz").await.0 == 200
        }),
        within(limit, "B: /readyz", || async {
            b.admin("/readyz").await.0 == 200
        }),
        within(limit, "A: proxied requests", || async {
            loads[0].first(back, 200).is_some()
        }),
        within(limit, "B: proxied requests", || async {
            loads[1].first(back, 200).is_some()
        }),
        within(limit, "A: limits checked in Redis", || no_fallback(&a)),
        within(limit, "B: limits checked in Redis", || no_fallback(&b)),
    );
    let took = [
        took.0, took.1, took.2, took.3, took.4, took.5, took.6, took.7,
    ]
    .map(|t| started + t);
    let recovered = took.iter().max().copied().expect("eight");
    println!(
        "after Redis was started again: login, refresh and logout work in {:?} (A) and {:?} (B), \
         /readyz is 200 in {:?} and {:?}, proxied requests served in {:?} and {:?}, \
         rate limits checked in Redis again in {:?} and {:?}",
        took[0], took[1], took[2], took[3], took[4], took[5], took[6], took[7]
    );
    assert!(
        recovered <= Duration::from_secs(1),
        "full recovery took {recovered:?} after Redis was started again"
    );

    // Revocations are shared again (pub/sub resubscribed)...
    let took = logout_reaches(&a, &b).await;
    println!("after the outage, a logout on A reached B in {took:?}");
    // ...and so are rate limits: 2 on A and 1 on B empty one bucket.
    let ip = "198.51.100.10";
    let shared = [
        a.open(ip).await,
        a.open(ip).await,
        b.open(ip).await,
        a.open(ip).await,
    ];
    assert_eq!(
        shared,
        [200, 200, 200, 429],
        "one bucket across A and B again"
    );

    let answers: Vec<Vec<Answer>> = futures_util::future::join_all(loads.map(Load::stop)).await;
    for (name, answers) in ["A", "B"].iter().zip(&answers) {
        let statuses = |from: Instant, to: Instant| -> Vec<u16> {
            answers
                .iter()
                .filter(|x| x.sent >= from && x.done <= to)
                .map(|x| x.status)
                .collect()
        };
        assert!(
            statuses(answers[0].sent, killed).iter().all(|s| *s == 200),
            "{name}: proxied requests before the kill: {:?}",
            statuses(answers[0].sent, killed)
        );
        let closed = answers
            .iter()
            .find(|x| x.sent >= killed && x.status == 503)
            .expect("failed closed");
        let trusted = closed.sent - killed;
        assert!(
            statuses(killed, closed.sent).iter().all(|s| *s == 200),
            "{name}: served from the last synced revocations until failing closed"
        );
        assert!(
            statuses(closed.sent, back).iter().all(|s| *s == 503),
            "{name}: once closed, closed until Redis returned: {:?}",
            statuses(closed.sent, back)
        );
        assert!(
            trusted >= Duration::from_secs(1) && trusted <= Duration::from_secs(5),
            "{name}: proxied requests failed closed {trusted:?} after the kill (max_stale 2s)"
        );
        assert!(
            answers.iter().all(|x| x.status == 200 || x.status == 503),
            "{name}: only 200 and 503"
        );
        println!(
            "{name}: {} proxied requests; served from the last synced revocations for {trusted:?} after the kill",
            answers.len()
        );
    }
    // Every check while Redis was down was a fallback, counted.
    for (i, name) in ["A", "B"].iter().enumerate() {
        let during = answers[i]
            .iter()
            .filter(|x| x.sent >= killed && x.done <= counted_at)
            .count() as f64;
        let counted = fallbacks_down[i] - fallbacks_before[i];
        assert!(
            counted >= during,
            "{name}: {counted} fallbacks counted for {during} requests while Redis was down"
        );
    }
}

// ---------------------------------------------------------------- sentinel

/// The store of the sentinel test: the sentinels of `ha`, its password, and
/// a `max_stale` longer than a failover.
fn sentinel_store(ha: &RedisHa) -> String {
    format!(
        "store:\n  backend: redis\n  sentinels: {sentinels}\n  master_name: {HA_MASTER_NAME}\n  \
         password: {HA_PASSWORD}\n  key_prefix: \"gh:\"\n  max_stale: 15s\n",
        sentinels = ha.sentinels_yaml()
    )
}

/// Whether the server of [`RedisHa`] on `port` holds the revocation of the
/// family of `access`.
async fn holds_revocation(port: u16, access: &str) -> bool {
    let score: Option<u64> = redis::cmd("ZSCORE")
        .arg("gh:revocations")
        .arg(format!("sid:{}", sid_of(access)))
        .query_async(&mut RedisHa::connect(port).await)
        .await
        .expect("ZSCORE");
    score.is_some()
}

/// Issue 16: `store.sentinels`. Two gatehouse processes on one sentinel
/// set; the master is killed under a steady stream of logins and proxied
/// requests. Both follow the promoted replica within a second of the
/// sentinels naming it, proxied JWT requests never notice (their
/// revocations are trusted for `max_stale`), and afterwards revocations and
/// rate limits are shared as before — those made before the failover
/// included, since a revocation is answered only once a replica holds it
/// (`WAIT 1`). The Redis password never reaches a log line.
#[tokio::test(flavor = "multi_thread")]
async fn two_processes_follow_a_sentinel_failover_within_a_second_sharing_revocations_and_limits() {
    let backend = start_rust_backend().await;
    let ha = RedisHa::start();
    let certs = certs_with_users(&users_yaml());
    let routes = LIMITED_ROUTES.replace("3/h, burst: 3", "4/h, burst: 4");
    let extra = format!("{}{routes}", sentinel_store(&ha));
    let path = write_auth_config(&certs, &backend.url(""), "", &extra);
    let a = Gw::spawn(&certs, &path);
    let b = Gw::spawn(&certs, &path);
    for gw in [&a, &b] {
        gw.wait_ready(Duration::from_secs(10)).await;
    }

    // Before: one bucket, and a logout on B reaches A.
    let ip = "198.51.100.20";
    let before = [a.open(ip).await, b.open(ip).await, a.open(ip).await];
    assert_eq!(before, [200, 200, 200], "3 of the bucket's 4");
    let t = a.login("alice", ALICE_PW).await;
    let gone = a.login("alice", ALICE_PW).await;
    assert_eq!(b.logout(&gone.access).await.0, 204);
    // The logout was answered once the replica held the revocation.
    assert!(
        holds_revocation(ha.replica.port, &gone.access).await,
        "the replica lacks a revocation already answered"
    );
    within(PROPAGATION, "A refuses a token logged out on B", || async {
        a.echo(&gone.access).await == 401
    })
    .await;
    let mut master = RedisHa::connect(ha.master.port).await;
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut master)
        .await
        .expect("INFO commandstats");
    assert!(
        stats.contains("cmdstat_wait:calls="),
        "no WAIT was sent:\n{stats}"
    );
    // A replica that does not acknowledge holds a logout up for 250 ms, no
    // longer: the revocation stands all the same.
    let stalled = a.login("alice", ALICE_PW).await;
    ha.replica.signal("STOP");
    let started = Instant::now();
    let (status, _) = b.logout(&stalled.access).await;
    let took = started.elapsed();
    ha.replica.signal("CONT");
    assert_eq!(status, 204, "a logout while the replica does not answer");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(1),
        "a logout waited {took:?} for a stopped replica (WAIT 1 250)"
    );
    assert_eq!(b.echo(&stalled.access).await, 401);
    println!("a logout while the replica was stopped took {took:?} (WAIT 1 250)");

    let loads = [
        a.login_load("alice", ALICE_PW),
        b.login_load("bob", BOB_PW),
        a.echo_load(&t.access),
        b.echo_load(&t.access),
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut watch = Vec::new();
    for s in &ha.sentinels {
        watch.push(s.connect().await);
    }
    let mut ha = ha;
    ha.master.kill();
    let killed = Instant::now();
    let promoted = ha.replica.port;
    let mut switched = None;
    while switched.is_none() {
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "the sentinels promoted no replica within 20 s"
        );
        for conn in &mut watch {
            if Sentinel::master_port(conn).await == Some(promoted) {
                switched = Some(Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let switched = switched.expect("switched");
    // Each process logs in again on the promoted replica.
    let followed = within(
        Duration::from_secs(5),
        "both processes log in again after the failover",
        || async { loads[..2].iter().all(|l| l.first(switched, 200).is_some()) },
    )
    .await;
    let answers: Vec<Vec<Answer>> = futures_util::future::join_all(loads.map(Load::stop)).await;
    let failover = switched - killed;
    let mut lags = Vec::new();
    for (name, logins) in ["A", "B"].iter().zip(&answers[..2]) {
        let first_ok = logins
            .iter()
            .find(|x| x.sent >= killed && x.status == 200)
            .expect("a login after the kill");
        let lag = first_ok.done.saturating_duration_since(switched);
        assert!(
            logins.iter().any(|x| x.sent >= killed && x.status == 503),
            "{name}: no login failed while there was no master"
        );
        assert!(
            logins.iter().all(|x| x.status == 200 || x.status == 503),
            "{name}: logins answered only 200 or 503"
        );
        assert!(
            lag <= Duration::from_secs(1),
            "{name} followed the new master {lag:?} after the sentinels named it"
        );
        lags.push(lag);
    }
    println!(
        "failover: the sentinels named the replica {failover:?} after the kill; \
         A and B logged in on it {:?} and {:?} later (polled within {followed:?})",
        lags[0], lags[1]
    );
    for (name, echoes) in ["A", "B"].iter().zip(&answers[2..]) {
        let failed: Vec<u16> = echoes
            .iter()
            .map(|x| x.status)
            .filter(|s| *s != 200)
            .collect();
        assert!(
            failed.is_empty(),
            "{name}: proxied JWT requests failed during the failover: {failed:?}"
        );
    }

    // After: revocations from before the failover still hold...
    for gw in [&a, &b] {
        assert_eq!(gw.echo(&gone.access).await, 401);
    }
    // ...a logout on one reaches the other at once...
    let took = logout_reaches(&a, &b).await;
    println!("after the failover, a logout on A reached B in {took:?}");
    // ...refresh tokens rotate, and the bucket kept its count through it.
    let (status, body) = a.refresh(&t.refresh).await;
    assert_eq!(status, 200, "refresh after the failover: {body}");
    let fallbacks = [a.fallbacks().await, b.fallbacks().await];
    let after = [b.open(ip).await, a.open(ip).await, b.open(ip).await];
    assert_eq!(
        after,
        [200, 429, 429],
        "the 4th request of the bucket, then none"
    );
    assert_eq!(
        [a.fallbacks().await, b.fallbacks().await],
        fallbacks,
        "checked in Redis, not locally"
    );
    assert!(
        holds_revocation(promoted, &gone.access).await,
        "the promoted replica lost a revocation"
    );

    for (name, gw) in [("A", &a), ("B", &b)] {
        let logs = gw.logs();
        assert!(
            logs.contains("the store follows the new master"),
            "{name} did not log the failover:\n{logs}"
        );
        if name == "B" {
            assert!(
                logs.contains("no redis replica acknowledged"),
                "B did not log the replica that did not acknowledge:\n{logs}"
            );
        }
        assert!(
            !logs.contains(HA_PASSWORD),
            "{name} logged the Redis password"
        );
    }
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
