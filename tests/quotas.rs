//! Quotas (SPEC §11) through a real gatehouse with real TLS in front of the
//! real Rust backend (`examples/backend_app.rs`, whose
//! `/v1/chat/completions` answers like OpenAI with a deterministic usage):
//! the 429, give-back on gatehouse's own 502/504, token budgets read from
//! JSON, SSE and a header while the body streams, a client going away,
//! counters across a restart, the CLI, and — on a real Redis — two
//! gatehouse processes admitting exactly the limit between them, and what
//! happens while Redis is down.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// `/chat` (JWT) with a requests quota of `limit` a day; `/v1/**` (JWT)
/// with a tokens quota of 100 a month (fallback 5); `/open` (no auth) with
/// a requests quota of `limit` too, per client IP.
fn quotas(limit: u32, more: &str) -> String {
    format!(
        "routes:\n\
         \x20 - {{ name: chat, path: /chat/**, auth: jwt }}\n\
         \x20 - {{ name: llm, path: /v1/**, auth: jwt }}\n\
         \x20 - {{ name: open, path: /open/**, auth: none }}\n\
         default_route:\n  auth: deny\n\
         quotas:\n\
         \x20 - {{ name: chat-daily, routes: [chat], limit: {limit} }}\n\
         \x20 - {{ name: llm-tokens, routes: [llm], unit: tokens, limit: 100, period: month, fallback_tokens: 5 }}\n\
         \x20 - {{ name: open-daily, routes: [open], limit: {limit} }}\n\
         {more}"
    )
}

fn bearer(user: &str) -> String {
    format!("Bearer {}", token_for(user, &["user"]))
}

async fn get(gate: &Gatehouse, path: &str, user: &str) -> reqwest::Response {
    gate.client()
        .get(gate.url(path))
        .header("authorization", bearer(user))
        .send()
        .await
        .expect("request")
}

/// `/auth/me`'s entry for quota `name`, for `user`.
async fn me_quota(gate: &Gatehouse, user: &str, name: &str) -> Value {
    let me: Value = get(gate, "/auth/me", user)
        .await
        .json()
        .await
        .expect("json");
    me["quotas"]
        .as_array()
        .and_then(|q| q.iter().find(|q| q["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("{name} in {me}"))
}

async fn used(gate: &Gatehouse, user: &str, name: &str) -> u64 {
    me_quota(gate, user, name).await["used"]
        .as_u64()
        .expect("used")
}

/// Waits until `user` has used `want` of `name` (debits after a response
/// ends may land a moment later).
async fn wait_used(gate: &Gatehouse, user: &str, name: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = used(gate, user, name).await;
        if now == want {
            return;
        }
        assert!(Instant::now() < deadline, "{name}: used {now}, want {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn completion(gate: &Gatehouse, query: &str, body: Value) -> reqwest::RequestBuilder {
    gate.client()
        .post(gate.url(&format!("/v1/chat/completions{query}")))
        .header("authorization", bearer("alice"))
        .json(&body)
}

fn chat_request(stream: bool) -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream,
           "stream_options": {"include_usage": true}})
}

#[tokio::test]
async fn a_spent_requests_quota_is_a_429_with_its_name_reset_and_headers_never_forwarded() {
    let (backend, gate) = gate_with(&quotas(2, "")).await;
    for _ in 0..2 {
        let res = get(&gate, "/chat/x", "alice").await;
        assert_eq!(res.status(), 404, "the backend's own answer");
        assert_eq!(res.headers()["ratelimit-limit"], "2");
    }
    clear_recorded(backend.addr).await;
    let res = get(&gate, "/chat/x", "alice").await;
    assert_eq!(res.status(), 429);
    let headers = res.headers().clone();
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"], "quota_exceeded");
    assert_eq!(body["quota"], "chat-daily");
    assert!(body["detail"].is_string());
    let resets_at = body["resets_at"].as_str().expect("resets_at");
    assert!(resets_at.ends_with("T00:00:00Z"), "{resets_at}");
    let retry: u64 = headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=86_400).contains(&retry), "{retry}");
    assert_eq!(headers["ratelimit-limit"], "2");
    assert_eq!(headers["ratelimit-remaining"], "0");
    assert_eq!(headers["ratelimit-reset"], headers["retry-after"]);
    assert_never_seen(&backend, "a request over its quota").await;
    // Another principal has its own count.
    assert_eq!(get(&gate, "/chat/x", "bob").await.status(), 404);
    let metrics = gate.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "gatehouse_quota_exceeded_total{quota=\"chat-daily\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &metrics,
            "gatehouse_quota_consumed_total{quota=\"chat-daily\",unit=\"requests\"}"
        ),
        3.0
    );
}

#[tokio::test]
async fn gatehouses_own_502_and_504_are_given_back_but_a_backends_500_counts() {
    let backend = start_rust_backend().await;
    // One upstream that is down, one that is slow.
    let upstreams = format!(
        "upstreams:\n  app:\n    url: {}\n    response_timeout: 500ms\n  down:\n    url: http://{}\n",
        backend.url(""),
        closed_port()
    );
    let extra = "routes:\n\
         \x20 - { name: chat, path: /chat/**, auth: jwt }\n\
         \x20 - { name: dead, path: /dead/**, auth: jwt, upstream: down }\n\
         \x20 - { name: api, path: /**, auth: jwt }\n\
         quotas:\n\
         \x20 - { name: q, routes: [chat, dead, api], limit: 10 }\n";
    let gate = Gatehouse::start_with(&upstreams, extra).await;
    assert_eq!(get(&gate, "/dead/x", "alice").await.status(), 502);
    assert_eq!(get(&gate, "/slow?seconds=2", "alice").await.status(), 504);
    assert_eq!(used(&gate, "alice", "q").await, 0, "both given back");
    assert_eq!(get(&gate, "/status/500", "alice").await.status(), 500);
    assert_eq!(get(&gate, "/status/503", "alice").await.status(), 503);
    assert_eq!(
        used(&gate, "alice", "q").await,
        2,
        "a backend's own 5xx counts"
    );
    let metrics = gate.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "gatehouse_quota_consumed_total{quota=\"q\",unit=\"requests\"}"
        ),
        2.0
    );
}

#[tokio::test]
async fn auth_none_routes_count_the_client_ip_and_a_401_counts_against_nothing() {
    let (_backend, gate) = gate_with(&quotas(1, "")).await;
    let client = gate.client();
    assert_eq!(
        status_of_sent(client.get(gate.url("/chat/x"))).await,
        401,
        "no credentials"
    );
    assert_eq!(used(&gate, "alice", "chat-daily").await, 0);
    assert_eq!(status_of_sent(client.get(gate.url("/open/x"))).await, 404);
    assert_eq!(status_of_sent(client.get(gate.url("/open/x"))).await, 429);
}

#[tokio::test]
async fn tokens_are_read_from_a_json_body_and_admitted_while_any_are_left() {
    let (_backend, gate) = gate_with(&quotas(1, "")).await;
    let res = completion(&gate, "?total=60", chat_request(false))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["ratelimit-remaining"], "100");
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["usage"]["total_tokens"], 60, "the body is untouched");
    wait_used(&gate, "alice", "llm-tokens", 60).await;
    // 40 left: admitted, and it may go over.
    let res = completion(&gate, "?total=60", chat_request(false))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    res.bytes().await.expect("body");
    wait_used(&gate, "alice", "llm-tokens", 120).await;
    let res = completion(&gate, "", chat_request(false))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 429);
    let me = me_quota(&gate, "alice", "llm-tokens").await;
    assert_eq!(
        (me["unit"].clone(), me["remaining"].clone()),
        (json!("tokens"), json!(0))
    );
    let metrics = gate.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "gatehouse_quota_consumed_total{quota=\"llm-tokens\",unit=\"tokens\"}"
        ),
        120.0
    );
}

#[tokio::test]
async fn tokens_are_read_from_the_final_sse_usage_chunk() {
    let (_backend, gate) = gate_with(&quotas(1, "")).await;
    let res = completion(&gate, "?total=33", chat_request(true))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let text = res.text().await.expect("stream");
    assert!(
        text.contains("\"total_tokens\":33") && text.contains("[DONE]"),
        "{text}"
    );
    wait_used(&gate, "alice", "llm-tokens", 33).await;
}

#[tokio::test]
async fn a_usage_header_wins_is_the_only_source_in_header_mode_and_never_reaches_the_client() {
    let more = "\x20 - { name: by-header, routes: [llm], unit: tokens, usage: header, usage_header: X-Gatehouse-Usage, limit: 1000 }\n";
    let (_backend, gate) = gate_with(&quotas(1, more)).await;
    let res = completion(
        &gate,
        "?report=both&total=30&header_tokens=7",
        chat_request(true),
    )
    .send()
    .await
    .expect("request");
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("x-gatehouse-usage").is_none(), "removed");
    res.text().await.expect("stream");
    wait_used(&gate, "alice", "llm-tokens", 7).await;
    wait_used(&gate, "alice", "by-header", 7).await;
    // Body only: the openai quota reads it, the header quota has nothing.
    let res = completion(&gate, "?report=body&total=30", chat_request(false))
        .send()
        .await
        .expect("request");
    res.bytes().await.expect("body");
    wait_used(&gate, "alice", "llm-tokens", 37).await;
    wait_used(&gate, "alice", "by-header", 7).await;
    let metrics = gate.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "gatehouse_quota_usage_missing_total{quota=\"by-header\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn a_response_without_usage_debits_the_fallback_and_is_counted_missing() {
    let (_backend, gate) = gate_with(&quotas(1, "")).await;
    for stream in [false, true] {
        let res = completion(&gate, "?report=none", chat_request(stream))
            .send()
            .await
            .expect("request");
        res.bytes().await.expect("body");
    }
    wait_used(&gate, "alice", "llm-tokens", 10).await;
    let metrics = gate.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "gatehouse_quota_usage_missing_total{quota=\"llm-tokens\"}"
        ),
        2.0
    );
}

#[tokio::test]
async fn the_first_sse_event_reaches_the_client_while_the_backend_holds_the_stream() {
    let (_backend, gate) = gate_with(&quotas(1, "")).await;
    let started = Instant::now();
    let mut res = completion(&gate, "?hold_ms=10000", chat_request(true))
        .send()
        .await
        .expect("request");
    let first = tokio::time::timeout(Duration::from_secs(5), res.chunk())
        .await
        .expect("the first event is not held back")
        .expect("chunk")
        .expect("some bytes");
    assert!(String::from_utf8_lossy(&first).contains("Hel"), "{first:?}");
    assert!(started.elapsed() < Duration::from_secs(6));
    // Nothing debited while the stream is open.
    assert_eq!(used(&gate, "alice", "llm-tokens").await, 0);
    // The client goes away mid-stream (long before the backend would write
    // again): no usage seen, so the fallback, at once.
    drop(res);
    wait_used(&gate, "alice", "llm-tokens", 5).await;
    assert!(started.elapsed() < Duration::from_secs(9));
}

#[tokio::test]
async fn counters_survive_a_restart() {
    let (_backend, gate) = gate_with(&quotas(3, "")).await;
    for _ in 0..2 {
        assert_eq!(get(&gate, "/chat/x", "alice").await.status(), 404);
    }
    let gate = gate.restart().await;
    assert_eq!(used(&gate, "alice", "chat-daily").await, 2);
    assert_eq!(get(&gate, "/chat/x", "alice").await.status(), 404);
    assert_eq!(get(&gate, "/chat/x", "alice").await.status(), 429);
}

/// Runs the real binary's `quota` subcommand (off the runtime's thread:
/// the gatehouse it may ask runs on it); its exit code, stdout and stderr.
async fn cli(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let mut command = std::process::Command::new(binary());
    command.arg("quota").args(args).arg("--config").arg(config);
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run gatehouse quota");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn cli_json(config: &std::path::Path, args: &[&str]) -> Value {
    let (code, out, err) = cli(config, args).await;
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{out}: {e}"))
}

#[tokio::test]
async fn the_cli_shows_and_resets_through_a_running_gatehouse_and_offline() {
    let (_backend, gate) = gate_with(&quotas(2, "")).await;
    for _ in 0..2 {
        assert_eq!(get(&gate, "/chat/x", "alice").await.status(), 404);
    }
    // The CLI finds the running gatehouse at its admin address (a real
    // config names a fixed port; this one was started on port 0).
    let config = gate.config_path.clone();
    let yaml = std::fs::read_to_string(&config).expect("config");
    let yaml = yaml.replacen("admin: 127.0.0.1:0", &format!("admin: {}", gate.admin), 1);
    std::fs::write(&config, yaml).expect("config");
    let show = ["show", "--name", "chat-daily", "--principal", "alice"];
    let reset = ["reset", "--name", "chat-daily", "--principal", "alice"];
    // Running: through the admin listener (the store file is held).
    let status = cli_json(&config, &show).await;
    assert_eq!(status["used"], 2);
    assert_eq!(status["remaining"], 0);
    assert_eq!(status["limit"], 2);
    assert_eq!(status["unit"], "requests");
    assert!(status["resets_at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert_eq!(get(&gate, "/chat/x", "alice").await.status(), 429);
    assert_eq!(cli_json(&config, &reset).await["used"], 0);
    assert_eq!(
        get(&gate, "/chat/x", "alice").await.status(),
        404,
        "the reset applies at once"
    );
    let (code, _, err) = cli(&config, &["show", "--name", "nope", "--principal", "alice"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("no quota named \"nope\""), "{err}");

    // Offline: the file itself.
    let (_certs, config) = gate.stop().await;
    assert_eq!(cli_json(&config, &show).await["used"], 1);
    assert_eq!(cli_json(&config, &reset).await["used"], 0);
    assert_eq!(cli_json(&config, &show).await["used"], 0);
}

/// A config for a gatehouse on `redis` with a requests quota of `limit`
/// on `/chat/**` and `max_stale`.
fn redis_config(
    certs: &TestCerts,
    backend: &Backend,
    redis: &Redis,
    limit: u32,
    max_stale: &str,
) -> String {
    let extra = format!(
        "store:\n  backend: redis\n  url: {url}\n  key_prefix: \"q:\"\n  max_stale: {max_stale}\n{quotas}",
        url = redis.url(),
        quotas = quotas(limit, "")
    );
    config_yaml(certs, &upstream(&backend.url("")), &extra)
}

#[tokio::test]
async fn two_gatehouse_processes_on_one_redis_admit_exactly_the_limit() {
    let redis = Redis::start();
    let backend = start_rust_backend().await;
    let certs = TestCerts::new();
    let mut processes = Vec::new();
    for i in 0..2 {
        let path = certs.dir.path().join(format!("gatehouse-{i}.yaml"));
        std::fs::write(&path, redis_config(&certs, &backend, &redis, 50, "30s")).expect("config");
        processes.push(Process::spawn(&path));
    }
    let token = bearer("alice");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let p = &processes[i % 2];
        let client = https_client_builder(&certs, p.https)
            .build()
            .expect("client");
        let url = format!("https://localhost:{}/chat/x", p.https.port());
        let token = token.clone();
        tasks.spawn(async move {
            client
                .get(url)
                .header("authorization", token)
                .send()
                .await
                .expect("request")
                .status()
                .as_u16()
        });
    }
    let mut statuses = Vec::new();
    while let Some(status) = tasks.join_next().await {
        statuses.push(status.expect("task"));
    }
    let admitted = statuses.iter().filter(|s| **s == 404).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((admitted, refused), (50, 50), "{statuses:?}");

    // The CLI talks to Redis itself; a reset applies to both at once.
    let config = certs.dir.path().join("gatehouse-0.yaml");
    let show = ["show", "--name", "chat-daily", "--principal", "alice"];
    assert_eq!(cli_json(&config, &show).await["used"], 50);
    let reset = ["reset", "--name", "chat-daily", "--principal", "alice"];
    assert_eq!(cli_json(&config, &reset).await["used"], 0);
    for p in &processes {
        let client = https_client_builder(&certs, p.https)
            .build()
            .expect("client");
        let url = format!("https://localhost:{}/chat/x", p.https.port());
        let res = client
            .get(url)
            .header("authorization", bearer("alice"))
            .send()
            .await;
        assert_eq!(res.expect("request").status(), 404, "admitted again");
    }
}

#[tokio::test]
async fn with_redis_down_quotas_count_locally_until_max_stale_then_answer_503() {
    let mut redis = Redis::start();
    let backend = start_rust_backend().await;
    let certs = TestCerts::new();
    // An `auth: none` route: nothing but the quota needs the store.
    let yaml = redis_config(&certs, &backend, &redis, 3, "4s");
    let gate = Gatehouse::start_yaml(certs, &yaml).await;
    let client = gate.client();
    let open = || status_of_sent(client.get(gate.url("/open/x")));
    assert_eq!(open().await, 404);
    redis.kill();
    // Within max_stale: counted here, from the last synced value (1).
    assert_eq!(open().await, 404);
    assert_eq!(open().await, 404);
    assert_eq!(open().await, 429);
    // Past max_stale after the last contact: fail closed.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let res = client
        .get(gate.url("/open/x"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"], "store_unavailable");
    // Back (empty: this Redis keeps nothing on disk): the two counted
    // meanwhile are added to it, so one more fits, then no more.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = open().await;
        if status == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "still {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(open().await, 429);
}

#[tokio::test]
async fn counters_written_behind_survive_a_crash_of_the_real_binary() {
    let backend = start_rust_backend().await;
    let certs = TestCerts::new();
    let path = certs.dir.path().join("gatehouse.yaml");
    std::fs::write(
        &path,
        config_yaml(&certs, &upstream(&backend.url("")), &quotas(10, "")),
    )
    .expect("config");
    let process = Process::spawn(&path);
    let client = https_client_builder(&certs, process.https)
        .build()
        .expect("client");
    let url = format!("https://localhost:{}/chat/x", process.https.port());
    for _ in 0..3 {
        let res = client
            .get(&url)
            .header("authorization", bearer("alice"))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 404);
    }
    // The write-behind runs every second; then SIGKILL, no shutdown.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    drop(process);
    let show = ["show", "--name", "chat-daily", "--principal", "alice"];
    assert_eq!(cli_json(&path, &show).await["used"], 3);
}

/// The shipped upstream, as `config/gatehouse.yaml` writes it.
const SHIPPED_UPSTREAM: &str = "${GATEHOUSE_UPSTREAM:-http://127.0.0.1:8000}";

#[tokio::test]
async fn the_shipped_config_meters_the_example_chatbots_completions() {
    let backend = start_fastapi().await;
    let repo = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("temp dir");
    let (config_dir, certs_dir) = (dir.path().join("config"), dir.path().join("certs"));
    std::fs::create_dir(&config_dir).expect("config dir");
    std::fs::create_dir(&certs_dir).expect("certs dir");
    for name in ["gatehouse.yaml", "users.yaml"] {
        std::fs::copy(repo.join("config").join(name), config_dir.join(name)).expect("copy");
    }
    let (cert, key) = (certs_dir.join("server.crt"), certs_dir.join("server.key"));
    gatehouse::server::tls::create_self_signed(&cert, &key).expect("test certificate");
    let pem = std::fs::read_to_string(&cert).expect("certificate");
    let path = config_dir.join("gatehouse.yaml");
    let shipped = std::fs::read_to_string(&path).expect("shipped config");
    assert!(shipped.contains(SHIPPED_UPSTREAM));
    let yaml = listen_on_free_ports(&shipped).replace(SHIPPED_UPSTREAM, &backend.url(""));
    std::fs::write(&path, yaml).expect("write config");
    let certs = TestCerts {
        dir,
        cert,
        key,
        pem,
    };
    let gate = Gatehouse::start_config(certs, path).await;
    let client = gate.client();
    let tokens = login(&gate, &client, "demo", "gatehouse-demo").await;
    let auth = format!("Bearer {}", tokens.access);
    let res = client
        .post(gate.url("/v1/chat/completions"))
        .header("authorization", &auth)
        .json(
            &json!({"messages": [{"role": "user", "content": "hello there quotas"}],
                      "stream": true, "stream_options": {"include_usage": true}}),
        )
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("x-gatehouse-usage").is_none(), "removed");
    let text = res.text().await.expect("stream");
    let total = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["usage"]["total_tokens"].as_u64())
        .next_back()
        .unwrap_or_else(|| panic!("a final usage chunk in {text}"));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let me: Value = client
            .get(gate.url("/auth/me"))
            .header("authorization", &auth)
            .send()
            .await
            .expect("me")
            .json()
            .await
            .expect("json");
        let q = &me["quotas"][0];
        assert_eq!(q["name"], "llm-tokens", "{me}");
        if q["used"] == total {
            assert_eq!(q["limit"], 100_000);
            break;
        }
        assert!(Instant::now() < deadline, "{me}, want {total}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
