//! Rate limits shared through a real `redis-server` (SPEC §2 `store`: "redis:
//! shared by replicas, including the rate-limit buckets"; §3.5; §6
//! `gatehouse_rate_limit_fallbacks_total`): two gatehouse instances on one
//! Redis spend one bucket per client; when Redis dies each instance falls
//! back to its own local limiter — still limited, never unlimited — and the
//! buckets are shared again once Redis is back.
//!
//! Every rate is per hour, so no token refills while a test runs (exact
//! refill timing is in the unit tests, on a fake clock).

mod support;

use std::time::{Duration, Instant};

use support::*;

/// The one route: `/echo/**`, open, with the route limit `limit`; client IPs
/// come from `X-Forwarded-For` (the tests' 127.0.0.1 is a trusted proxy);
/// the store is `redis`.
fn config(redis: &Redis, limit: &str) -> String {
    format!(
        "store:\n  backend: redis\n  url: {url}\n  key_prefix: \"gh:\"\n\
         server:\n  trusted_proxies: [127.0.0.0/8]\n\
         routes:\n  - name: shared\n    path: /echo/**\n    auth: none\n    rate_limit: {limit}\n\
         default_route:\n  auth: deny\n",
        url = redis.url()
    )
}

/// The status of `GET /echo/x` on `gate` for the client `ip`.
async fn status(gate: &Gatehouse, client: &reqwest::Client, ip: &str) -> u16 {
    status_of_sent(
        client
            .get(gate.url("/echo/x"))
            .header("X-Forwarded-For", ip),
    )
    .await
}

async fn fallbacks(gate: &Gatehouse) -> f64 {
    sample(
        &gate.metrics().await,
        "gatehouse_rate_limit_fallbacks_total",
    )
}

/// Waits (up to 15 s) until `gate` answers rate-limit checks from Redis
/// again: a request (for a client of its own, `probe_ip`) that does not count
/// a fallback.
async fn wait_for_shared_limits(gate: &Gatehouse, client: &reqwest::Client, probe_ip: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let before = fallbacks(gate).await;
        status(gate, client, probe_ip).await;
        if fallbacks(gate).await == before {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "gatehouse did not use Redis for rate limits again within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_sharing_one_redis_spend_one_bucket_per_client() {
    let redis = Redis::start();
    let backend = start_rust_backend().await;
    // 20 per hour rather than per minute: at 20/min a token comes back every
    // 3 s, which a slow machine could see during the test.
    let extra = config(&redis, "{rate: 20/h, burst: 20}");
    let a = Gatehouse::start(&backend.url(""), &extra).await;
    let b = Gatehouse::start(&backend.url(""), &extra).await;
    let (ca, cb) = (a.client(), b.client());
    let ip = "198.51.100.1";

    for i in 1..=10 {
        assert_eq!(status(&a, &ca, ip).await, 200, "request {i} on A");
    }
    for i in 1..=10 {
        assert_eq!(status(&b, &cb, ip).await, 200, "request {i} on B");
    }
    let res = ca
        .get(a.url("/echo/x"))
        .header("X-Forwarded-For", ip)
        .send()
        .await
        .expect("21st request");
    assert_eq!(res.status(), 429, "the 21st request, on A");
    assert_eq!(res.headers()["ratelimit-limit"], "20");
    assert_eq!(res.headers()["ratelimit-remaining"], "0");
    let retry_after: u64 = res.headers()["retry-after"]
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("Retry-After is an integer");
    assert!(retry_after >= 1);
    assert_eq!(status(&b, &cb, ip).await, 429, "the 22nd request, on B");

    // Another client has its own (shared) bucket.
    assert_eq!(status(&b, &cb, "198.51.100.2").await, 200);

    let backend_saw = recorded(backend.addr)
        .await
        .as_array()
        .expect("record is an array")
        .iter()
        .filter(|r| r["path"] == "/echo/x")
        .count();
    assert_eq!(backend_saw, 21, "20 for the first client, 1 for the second");
    assert_eq!(fallbacks(&a).await, 0.0, "Redis answered every check");
    assert_eq!(fallbacks(&b).await, 0.0, "Redis answered every check");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_redis_each_instance_still_limits_locally_and_sharing_resumes_when_it_returns() {
    let mut redis = Redis::start();
    let backend = start_rust_backend().await;
    let extra = config(&redis, "{rate: 3/h, burst: 3}");
    let a = Gatehouse::start(&backend.url(""), &extra).await;
    let b = Gatehouse::start(&backend.url(""), &extra).await;
    let (ca, cb) = (a.client(), b.client());

    // Shared: 2 on A and 1 on B empty the bucket of 198.51.100.1.
    let ip = "198.51.100.1";
    assert_eq!(status(&a, &ca, ip).await, 200);
    assert_eq!(status(&a, &ca, ip).await, 200);
    assert_eq!(status(&b, &cb, ip).await, 200);
    assert_eq!(status(&a, &ca, ip).await, 429, "shared bucket empty (A)");
    assert_eq!(status(&b, &cb, ip).await, 429, "shared bucket empty (B)");
    assert_eq!(fallbacks(&a).await, 0.0);

    // Redis dies: A's local limiter decides. It has never been used, so the
    // client gets a fresh local bucket — at most 3 more, then 429.
    redis.kill();
    let mut allowed = 0;
    let mut refused_at = None;
    for i in 1..=10 {
        let started = Instant::now();
        let s = status(&a, &ca, ip).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a check without Redis took {:?}",
            started.elapsed()
        );
        match s {
            200 => allowed += 1,
            429 => {
                refused_at = Some(i);
                break;
            }
            other => panic!("request {i} without Redis: status {other}"),
        }
    }
    assert_eq!(
        (allowed, refused_at),
        (3, Some(4)),
        "without Redis the local bucket (3) limits: not unlimited, not closed"
    );
    assert!(
        fallbacks(&a).await >= 4.0,
        "each check without Redis counts in gatehouse_rate_limit_fallbacks_total"
    );

    // Redis is back (empty: it keeps nothing on disk). Once both instances
    // use it again, a new client's bucket is shared across them again: with
    // local buckets A would allow 3 on its own.
    redis.restart();
    wait_for_shared_limits(&a, &ca, "198.51.100.201").await;
    wait_for_shared_limits(&b, &cb, "198.51.100.202").await;
    let ip = "198.51.100.2";
    assert_eq!(status(&a, &ca, ip).await, 200);
    assert_eq!(status(&b, &cb, ip).await, 200);
    assert_eq!(status(&a, &ca, ip).await, 200);
    assert_eq!(
        status(&a, &ca, ip).await,
        429,
        "the 4th request across A and B, though only A's 3rd: shared again"
    );
    assert_eq!(status(&b, &cb, ip).await, 429);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_a_reload_keeps_unchanged_buckets_and_a_changed_rate_starts_fresh() {
    // The same contract as with local limiters (tests/ratelimit.rs): a
    // reload that leaves a limit alone keeps its buckets, one that changes
    // the limit gives every client a full bucket of the new size.
    let redis = Redis::start();
    let backend = start_rust_backend().await;
    let upstreams = upstream(&backend.url(""));
    let gate = Gatehouse::start(&backend.url(""), &config(&redis, "{rate: 2/h, burst: 2}")).await;
    let client = gate.client();
    let ip = "198.51.100.1";

    assert_eq!(status(&gate, &client, ip).await, 200);
    assert_eq!(status(&gate, &client, ip).await, 200);
    assert_eq!(status(&gate, &client, ip).await, 429);

    let unrelated = format!(
        "{}identity_headers:\n  user: X-Remote-User\n",
        config(&redis, "{rate: 2/h, burst: 2}")
    );
    gate.write_config(&upstreams, &unrelated);
    gate.gateway
        .reload()
        .expect("reload with an unrelated change");
    assert_eq!(
        status(&gate, &client, ip).await,
        429,
        "an unchanged limit keeps its bucket"
    );

    gate.write_config(&upstreams, &config(&redis, "{rate: 3/h, burst: 3}"));
    gate.gateway.reload().expect("reload with a new rate");
    let res = client
        .get(gate.url("/echo/x"))
        .header("X-Forwarded-For", ip)
        .send()
        .await
        .expect("request after the new rate");
    assert_eq!(
        res.status(),
        200,
        "a changed limit starts with a full bucket, as it does without Redis"
    );
    assert_eq!(res.headers()["ratelimit-limit"], "3");
    assert_eq!(res.headers()["ratelimit-remaining"], "2");
    assert_eq!(fallbacks(&gate).await, 0.0, "Redis answered every check");
}
