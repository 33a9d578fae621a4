//! The faults a deployment meets, each through the real `gatehouse` binary
//! over real TLS in front of real backends (SPEC §2 `upstreams`, `store`;
//! §1 SIGHUP; §5 errors; §6 metrics): an upstream killed mid-request and
//! started again, an upstream that accepts and never answers, one that
//! answers garbage, `kill -9` of gatehouse under load with the embedded
//! store, the store's disk full, and a certificate or users file replaced
//! by garbage before a SIGHUP.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{json, Value};
use support::*;

/// How long a fault may take to show (a stream to end, an answer to come,
/// a metric to move) before the test calls it a hang.
const SOON: Duration = Duration::from_secs(5);

/// The one password of every user in these tests.
const PASSWORD: &str = "the one test password";

/// A bcrypt hash of [`PASSWORD`], of the cheapest cost: logins under load
/// stay fast.
fn password_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| bcrypt::hash(PASSWORD, 4).expect("bcrypt hash"))
}

/// A users file with `names`, each with [`PASSWORD`] and role `user`.
fn users_yaml<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> String {
    let entries: String = names
        .into_iter()
        .map(|name| user_entry(name.as_ref(), password_hash(), "[user]", false))
        .collect();
    format!("users:\n{entries}")
}

/// Writes `yaml` as `gatehouse.yaml` next to `certs` and starts the binary on it.
fn spawn_yaml(certs: &TestCerts, yaml: &str) -> Process {
    let path = certs.dir.path().join("gatehouse.yaml");
    std::fs::write(&path, yaml).expect("write config");
    Process::spawn(&path)
}

/// Polls the backend's request record until some request for `path` reached it.
async fn wait_until_received(backend: &Backend, path: &str) {
    let deadline = Instant::now() + SOON;
    while !backend.requests().await.iter().any(|r| r["path"] == path) {
        assert!(
            Instant::now() < deadline,
            "{path} never reached the backend"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ------------------------------------------------------- upstream faults

#[tokio::test(flavor = "multi_thread")]
async fn killed_upstream_gets_502_ends_its_streams_and_serves_within_1s_of_its_return() {
    let mut backend = start_fastapi().await;
    let certs = TestCerts::new();
    let gate = spawn_yaml(
        &certs,
        &config_yaml(&certs, &upstream(&backend.url("")), OPEN),
    );
    let h1 = gate
        .client_builder(&certs)
        .http1_only()
        .build()
        .expect("client");
    let h2 = gate.client(&certs);

    // In flight when the backend dies: a request waiting for its answer,
    // and an SSE stream over each HTTP version.
    let waiting = tokio::spawn(h1.get(gate.url("/slow?seconds=30")).send());
    let long_stream = "/chat/stream?n=1000&interval_ms=50";
    let mut streams = Vec::new();
    for (client, version) in [
        (&h1, reqwest::Version::HTTP_11),
        (&h2, reqwest::Version::HTTP_2),
    ] {
        let (first, started) = tokio::sync::oneshot::channel();
        streams.push(tokio::spawn(count_events(
            client.clone(),
            gate.url(long_stream),
            version,
            first,
        )));
        started.await.expect("the stream's first event");
    }
    wait_until_received(&backend, "/slow").await;

    backend.kill();

    let cut = tokio::time::timeout(SOON, waiting)
        .await
        .expect("the waiting request is answered, not left hanging")
        .expect("request task")
        .expect("an answer, not a dropped connection");
    assert_error(cut, 502, "bad_gateway", "a request in flight").await;
    for (stream, version) in streams.into_iter().zip(["HTTP/1.1", "HTTP/2"]) {
        let (events, clean) = tokio::time::timeout(SOON, stream)
            .await
            .unwrap_or_else(|_| panic!("the {version} stream ends instead of hanging"))
            .expect("stream task");
        assert!(events < 1000, "{version}: the stream was cut short");
        println!("{version} stream: {events} events, then a clean end: {clean}");
    }

    // While it is down, new requests get 502 at once.
    for _ in 0..3 {
        let res = h2.get(gate.url("/health")).send().await.expect("answer");
        assert_error(res, 502, "bad_gateway", "a request to a dead upstream").await;
    }
    let metrics = gate.metrics().await;
    let errors = |kind: &str| {
        sum_with_labels(
            &metrics,
            "gatehouse_upstream_errors_total",
            &[("upstream", "app"), ("kind", kind)],
        )
    };
    assert!(
        errors("connect") >= 3.0,
        "refused connections counted:\n{metrics}"
    );
    assert!(
        errors("reset") >= 1.0,
        "the cut request counted as a reset:\n{metrics}"
    );

    // Back on the same port: served again within a second of its return.
    backend.restart().await;
    let returned = Instant::now();
    loop {
        let res = h2.get(gate.url("/health")).send().await.expect("answer");
        if res.status() == 200 {
            break;
        }
        assert!(
            returned.elapsed() < Duration::from_secs(1),
            "still {} a second after the upstream returned",
            res.status()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "served again {:?} after the upstream returned",
        returned.elapsed()
    );
    let (status, _, body) = answer(
        h1.get(gate.url("/chat/stream?n=3&interval_ms=10"))
            .send()
            .await
            .expect("answer"),
    )
    .await;
    assert_eq!(status, 200, "streams work again: {body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_target_killed_sends_new_requests_to_the_other_of_its_urls_until_it_returns() {
    let mut dying = start_fastapi().await;
    let live = start_rust_backend().await;
    let certs = TestCerts::new();
    let upstreams = format!(
        "upstreams:\n  app:\n    urls: [{}, {}]\n",
        dying.url(""),
        live.url("")
    );
    let gate = spawn_yaml(&certs, &config_yaml(&certs, &upstreams, OPEN));
    let client = gate.client(&certs);
    let get = |i: usize| client.get(gate.url(&format!("/echo/{i}"))).send();

    for i in 0..4 {
        assert_eq!(get(i).await.expect("answer").status(), 200);
    }
    assert!(!dying.requests().await.is_empty(), "both targets serve");
    clear_recorded(live.addr).await;

    dying.kill();
    for i in 0..20 {
        let res = get(i).await.expect("answer");
        assert_eq!(res.status(), 200, "request {i} after one target died");
    }
    assert_eq!(
        live.requests().await.len(),
        20,
        "the live target answered every request"
    );

    // Back on its port, it gets its share again (the default upstream is
    // probed every 2 s; a dead target is skipped for at most 10 s).
    dying.restart().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut i = 0;
    while dying.requests().await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the returned target gets no requests"
        );
        assert_eq!(get(i).await.expect("answer").status(), 200);
        i += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An upstream `name` at `url` answering within `response_timeout`.
fn upstream_entry(name: &str, url: &str, response_timeout: &str) -> String {
    format!("  {name}:\n    url: {url}\n    response_timeout: {response_timeout}\n")
}

/// A route `/<name>/**` open to all, to the upstream `name`.
fn route_to(name: &str) -> String {
    format!("  - name: {name}\n    path: /{name}/**\n    auth: none\n    upstream: {name}\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_that_never_answers_gets_504_at_response_timeout_and_gives_every_slot_back() {
    const SLOTS: usize = 4;
    let timeout = Duration::from_millis(300);
    let silent = start_raw_backend(None).await;
    let app = start_rust_backend().await;
    let certs = TestCerts::new();
    let upstreams = format!(
        "upstreams:\n{}{}",
        upstream_entry("app", &app.url(""), "60s"),
        upstream_entry("hung", &silent.url(), "300ms"),
    );
    let extra = format!(
        "routes:\n{}{OPEN}server:\n  max_connections: {SLOTS}\n",
        route_to("hung")
    );
    let gate = spawn_yaml(&certs, &config_yaml(&certs, &upstreams, &extra));
    let open_https = r#"gatehouse_connections_open{listener="https"}"#;
    gate.wait_for_sample(&format!("{open_https} 0")).await;

    // Three rounds that fill every connection slot with a request the
    // upstream never answers; each connection closes after its 504.
    for round in 0..3 {
        let requests = (0..SLOTS).map(|_| {
            let client = gate.client(&certs);
            let url = gate.url("/hung/x");
            async move {
                let sent = Instant::now();
                let res = client.get(url).send().await.expect("an answer");
                (res, sent.elapsed())
            }
        });
        for (res, took) in join_all(requests).await {
            assert_error(
                res,
                504,
                "gateway_timeout",
                "an upstream that never answers",
            )
            .await;
            assert!(
                took >= timeout,
                "answered after {took:?}, before response_timeout"
            );
        }
        // Every client connection gave its slot back...
        gate.wait_for_sample(&format!("{open_https} 0")).await;
        println!("round {round}: {SLOTS} answered 504, every slot free again");
    }
    // ...and so did every upstream connection.
    let deadline = Instant::now() + SOON;
    while silent.open() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} upstream connections still open after their 504",
            silent.open()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gate.wait_for_sample(&format!(
        r#"gatehouse_upstream_errors_total{{kind="timeout",upstream="hung"}} {}"#,
        3 * SLOTS
    ))
    .await;

    // Every slot serves again.
    let requests = (0..SLOTS).map(|_| gate.client(&certs).get(gate.url("/echo")).send());
    for res in join_all(requests).await {
        assert_eq!(res.expect("an answer").status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_that_answers_garbage_gets_502_bad_gateway_counted_as_a_protocol_error() {
    const GARBAGE: [&[u8]; 3] = [
        b"\x00\x01\x02 this is not HTTP\r\n\r\n",
        b"HTTP/1.1 two-hundred OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\nhello",
    ];
    let app = start_rust_backend().await;
    let mut backends = Vec::new();
    let mut upstreams = upstream_entry("app", &app.url(""), "60s");
    let mut routes = String::from("routes:\n");
    for (i, garbage) in GARBAGE.into_iter().enumerate() {
        let backend = start_raw_backend(Some(garbage)).await;
        upstreams.push_str(&upstream_entry(&format!("g{i}"), &backend.url(), "60s"));
        routes.push_str(&route_to(&format!("g{i}")));
        backends.push(backend);
    }
    let certs = TestCerts::new();
    let yaml = config_yaml(
        &certs,
        &format!("upstreams:\n{upstreams}"),
        &format!("{routes}{OPEN}"),
    );
    let gate = spawn_yaml(&certs, &yaml);
    let client = gate.client(&certs);

    for i in 0..GARBAGE.len() {
        let res = client
            .get(gate.url(&format!("/g{i}/x")))
            .send()
            .await
            .expect("an answer");
        assert_error(res, 502, "bad_gateway", &format!("garbage {i}")).await;
        gate.wait_for_sample(&format!(
            r#"gatehouse_upstream_errors_total{{kind="protocol",upstream="g{i}"}} 1"#
        ))
        .await;
    }
    let res = client.get(gate.url("/echo")).send().await.expect("answer");
    assert_eq!(res.status(), 200, "the other upstream still serves");
}

// ------------------------------------------------------------ the store

/// `POST url` with the JSON `body` and, if given, a bearer `token`: the
/// status and JSON body (`Null` if none), or `None` when no whole answer
/// came (gatehouse was killed).
async fn post(
    client: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> Option<(u16, Value)> {
    let mut req = client.post(url).json(&body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let res = req.send().await.ok()?;
    let status = res.status().as_u16();
    let text = res.text().await.ok()?;
    Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// The JSON body of a login as `user` with `password`.
fn credentials(user: &str, password: &str) -> Value {
    json!({ "username": user, "password": password })
}

/// What the load had acknowledged when gatehouse was killed.
#[derive(Default)]
struct Acknowledged {
    /// Sessions whose logout answered 204.
    logouts: Vec<Tokens>,
    /// Per refresh family, its spent refresh tokens, oldest first: each
    /// rotation that answered 200 spent the token it was given.
    spent: Vec<Vec<String>>,
    /// Wrong-password logins answered 401, per username.
    failures: HashMap<String, u32>,
    /// How many acknowledgements in all.
    count: usize,
}

/// Shared by the load's lanes.
type Acks = Arc<Mutex<Acknowledged>>;

/// One lane of load on `base` (`https://localhost:<port>`) as `user`:
/// sign in twice, rotate one session's refresh token twice, log the other
/// out; again, until gatehouse stops answering.
async fn rotate_and_log_out(client: reqwest::Client, base: String, user: String, acks: Acks) {
    let url = |path: &str| format!("{base}{path}");
    loop {
        let login = credentials(&user, PASSWORD);
        let Some((200, rotated)) = post(&client, url("/login"), None, login.clone()).await else {
            return;
        };
        let Some((200, leaving)) = post(&client, url("/login"), None, login).await else {
            return;
        };
        let family = {
            let mut acks = acks.lock().expect("lock");
            acks.spent.push(Vec::new());
            acks.spent.len() - 1
        };
        let mut refresh = Tokens::from(&rotated).refresh;
        for _ in 0..2 {
            let body = json!({ "refresh_token": refresh });
            let Some((200, rotation)) = post(&client, url("/auth/refresh"), None, body).await
            else {
                return;
            };
            let spent = std::mem::replace(&mut refresh, Tokens::from(&rotation).refresh);
            let mut acks = acks.lock().expect("lock");
            acks.spent[family].push(spent);
            acks.count += 1;
        }
        let leaving = Tokens::from(&leaving);
        let body = json!({ "refresh_token": leaving.refresh });
        let logout = post(&client, url("/auth/logout"), Some(&leaving.access), body).await;
        let Some((204, _)) = logout else {
            return;
        };
        let mut acks = acks.lock().expect("lock");
        acks.logouts.push(leaving);
        acks.count += 1;
    }
}

/// One lane of load on `base`: three wrong passwords for each of `users`
/// in turn (enough to lock each out), until gatehouse stops answering.
async fn fail_logins(client: reqwest::Client, base: String, users: Vec<String>, acks: Acks) {
    for user in users {
        for _ in 0..3 {
            let body = credentials(&user, "a wrong password");
            let Some((401, _)) = post(&client, format!("{base}/login"), None, body).await else {
                return;
            };
            let mut acks = acks.lock().expect("lock");
            *acks.failures.entry(user.clone()).or_default() += 1;
            acks.count += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_under_load_then_a_restart_keeps_every_acknowledged_logout_rotation_and_lockout() {
    const LANES: usize = 6;
    const LOCK_LANES: usize = 3;
    const LOCK_USERS: usize = 40;
    /// Acknowledgements after which gatehouse is killed, mid-load.
    const KILL_AFTER: usize = 150;
    let lane_user = |k: usize| format!("lane{k}");
    let lock_users =
        |k: usize| -> Vec<String> { (0..LOCK_USERS).map(|j| format!("lock{k}-{j}")).collect() };
    let mut names: Vec<String> = (0..LANES).map(lane_user).collect();
    names.extend((0..LOCK_LANES).flat_map(lock_users));
    names.push("control".into());
    let backend = start_rust_backend().await;
    let certs = certs_with_users(&users_yaml(&names));
    let config = write_auth_config(&certs, &backend.url(""), LOCKOUT_3, JWT_ECHO_ROUTES);
    let mut gate = Process::spawn(&config);
    let client = gate.client(&certs);
    // A session the load never touches.
    let control = login(&gate, &client, "control", PASSWORD).await;

    let acks = Acks::default();
    let base = gate.url("");
    let mut lanes = Vec::new();
    for k in 0..LANES {
        let lane = rotate_and_log_out(client.clone(), base.clone(), lane_user(k), acks.clone());
        lanes.push(tokio::spawn(lane));
    }
    for k in 0..LOCK_LANES {
        let lane = fail_logins(client.clone(), base.clone(), lock_users(k), acks.clone());
        lanes.push(tokio::spawn(lane));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while acks.lock().expect("lock").count < KILL_AFTER {
        assert!(
            Instant::now() < deadline,
            "the load is too slow to reach {KILL_AFTER}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        lanes.iter().all(|lane| !lane.is_finished()),
        "every lane is still busy when gatehouse is killed"
    );
    gate.kill9();
    for lane in lanes {
        tokio::time::timeout(SOON, lane)
            .await
            .expect("a lane stops once gatehouse is gone")
            .expect("lane task");
    }
    let acked = std::mem::take(&mut *acks.lock().expect("lock"));
    let locked: Vec<&String> = acked
        .failures
        .iter()
        .filter(|(_, n)| **n >= 3)
        .map(|(user, _)| user)
        .collect();
    let rotations: usize = acked.spent.iter().map(Vec::len).sum();
    println!(
        "acknowledged before kill -9: {} logouts, {rotations} rotations, {} lockouts",
        acked.logouts.len(),
        locked.len()
    );
    assert!(!acked.logouts.is_empty() && rotations > 0 && !locked.is_empty());

    // The same config, so the same store file.
    let gate = Process::spawn(&config);
    let client = gate.client(&certs);
    let refresh = |token: &str| {
        let body = json!({ "refresh_token": token });
        post(&client, gate.url("/auth/refresh"), None, body)
    };

    // Untouched, the control session works: the store is the one it was.
    assert_eq!(me_status(&gate, &client, &control.access).await, 200);
    assert_eq!(refresh(&control.refresh).await.map(|a| a.0), Some(200));

    // Every acknowledged logout holds: the access token and the family's
    // refresh token are refused.
    let checks = acked.logouts.iter().map(|tokens| async {
        assert_eq!(me_status(&gate, &client, &tokens.access).await, 401);
        assert_eq!(echo_status(&gate, &client, &tokens.access).await, 401);
        assert_eq!(refresh(&tokens.refresh).await.map(|a| a.0), Some(401));
    });
    join_all(checks).await;

    // Every acknowledged rotation holds: each spent token is refused — the
    // newest first, for presenting a spent token revokes its family, which
    // would hide a lost later rotation.
    let checks = acked.spent.iter().map(|family| async {
        for token in family.iter().rev() {
            let answer = refresh(token).await.map(|a| a.0);
            assert_eq!(answer, Some(401), "a spent refresh token is refused");
        }
    });
    join_all(checks).await;

    // Every acknowledged lockout holds: the right password is refused.
    let (client, gate) = (&client, &gate);
    let checks = locked.iter().map(|user| async move {
        let answer = post(
            client,
            gate.url("/login"),
            None,
            credentials(user, PASSWORD),
        )
        .await;
        assert_eq!(answer.map(|a| a.0), Some(401), "{user} is still locked out");
    });
    join_all(checks).await;
    gate.wait_for_sample(&format!(
        r#"gatehouse_logins_total{{result="locked"}} {}"#,
        locked.len()
    ))
    .await;
}

/// A size-limited tmpfs on a temp folder, unmounted when dropped. Mounting
/// needs root (CAP_SYS_ADMIN), which the tests and CI run as.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "the full-disk test mounts a {size} tmpfs, which needs root (as CI runs): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the disk is full (ENOSPC); its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write as _;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("create the filler");
        let chunk = vec![0xa5u8; 64 * 1024];
        loop {
            match file.write_all(&chunk).and_then(|()| file.sync_all()) {
                Ok(()) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => return path,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: a process that still holds a file there keeps it until it exits.
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn full_disk_answers_logins_503_while_proxied_traffic_flows_and_logins_return_with_space() {
    let disk = SmallDisk::mount("8m");
    let store = disk.path().join("gatehouse.db");
    let backend = start_rust_backend().await;
    let certs = certs_with_users(&users_yaml(["alice"]));
    let extra = format!("store:\n  path: {}\n{JWT_ECHO_ROUTES}", store.display());
    let config = write_auth_config(&certs, &backend.url(""), "", &extra);
    let gate = Process::spawn(&config);
    let client = gate.client(&certs);
    let before = login(&gate, &client, "alice", PASSWORD).await;

    let filler = disk.fill();
    // A login writes to the store: once the pages it had free are used up,
    // logins answer 503.
    let mut fitted = 0;
    let refused = loop {
        let res = login_res(&gate, &client, "alice", PASSWORD).await;
        if res.status() != 200 {
            break res;
        }
        fitted += 1;
        assert!(fitted < 1000, "logins still succeed on a full disk");
    };
    println!("{fitted} logins fitted in the store's free pages");
    assert_error(refused, 503, "store_unavailable", "a login on a full disk").await;
    let file = store.display().to_string();
    let line = gate
        .wait_for_stderr("naming the store file and the full disk", |l| {
            l.contains(&file) && l.contains("No space left on device")
        })
        .await;
    println!("{line}");
    let res = login_res(&gate, &client, "alice", PASSWORD).await;
    assert_error(
        res,
        503,
        "store_unavailable",
        "another login on a full disk",
    )
    .await;

    let (status, _, body) = answer(refresh_res(&gate, &client, &before.refresh).await).await;
    assert_eq!(
        (status, &body["error"]),
        (503, &json!("store_unavailable")),
        "a refresh: {body}"
    );
    let logout = client
        .post(gate.url("/auth/logout"))
        .bearer_auth(&before.access)
        .send()
        .await
        .expect("answer");
    assert_error(logout, 503, "store_unavailable", "a logout on a full disk").await;

    // Proxied traffic does not need to write: it flows.
    for _ in 0..5 {
        assert_eq!(echo_status(&gate, &client, &before.access).await, 200);
        assert_eq!(status_of_sent(client.get(gate.url("/health"))).await, 200);
    }

    // Space again: logins come back by themselves.
    std::fs::remove_file(&filler).expect("remove the filler");
    let deadline = Instant::now() + SOON;
    let after = loop {
        let res = login_res(&gate, &client, "alice", PASSWORD).await;
        let (status, _, body) = answer(res).await;
        if status == 200 {
            break Tokens::from(&body);
        }
        assert!(
            Instant::now() < deadline,
            "logins still answer {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(echo_status(&gate, &client, &after.access).await, 200);
    // The refresh refused on the full disk spent nothing: its token still rotates.
    for tokens in [&before, &after] {
        let (status, _, body) = answer(refresh_res(&gate, &client, &tokens.refresh).await).await;
        assert_eq!(status, 200, "refresh works again: {body}");
    }
}

// ---------------------------------------------------------------- reload

/// What replaces a file in the reload tests: no PEM, no YAML, no UTF-8.
const GARBAGE: &[u8] = b"\x00\x9f\xff this is not what it should be \xfe\xfd\n";

#[tokio::test(flavor = "multi_thread")]
async fn sighup_with_a_garbage_cert_or_key_keeps_the_old_pair_counts_an_error_names_the_file() {
    let backend = start_rust_backend().await;
    let certs = TestCerts::new();
    let gate = spawn_yaml(
        &certs,
        &config_yaml(&certs, &upstream(&backend.url("")), OPEN),
    );
    let cases = [
        (&certs.cert, "cannot read certificate chain"),
        (&certs.key, "cannot read private key"),
    ];
    for (errors, (file, reason)) in (1..).zip(cases) {
        let good = std::fs::read(file).expect("read the good file");
        std::fs::write(file, GARBAGE).expect("write garbage");
        gate.signal("HUP");
        gate.wait_for_sample(&format!(
            r#"gatehouse_config_reloads_total{{result="error"}} {errors}"#
        ))
        .await;
        let name = file.display().to_string();
        let line = gate
            .wait_for_stderr("naming the garbage file", |l| {
                l.contains("config reload failed") && l.contains(&name) && l.contains(reason)
            })
            .await;
        println!("{line}");
        // A new connection still gets the old certificate (the only one
        // this client trusts), and an answer.
        let res = gate.client(&certs).get(gate.url("/echo")).send().await;
        assert_eq!(res.expect("TLS with the old certificate").status(), 200);
        std::fs::write(file, good).expect("put the good file back");
    }
    gate.signal("HUP");
    gate.wait_for_sample(r#"gatehouse_config_reloads_total{result="success"} 1"#)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_with_a_garbage_users_file_keeps_the_old_users_counts_an_error_and_names_the_file() {
    let backend = start_rust_backend().await;
    let certs = certs_with_users(&users_yaml(["alice"]));
    let config = write_auth_config(&certs, &backend.url(""), "", JWT_ECHO_ROUTES);
    let gate = Process::spawn(&config);
    let client = gate.client(&certs);
    login(&gate, &client, "alice", PASSWORD).await;

    let users = certs.dir.path().join("users.yaml");
    std::fs::write(&users, GARBAGE).expect("write garbage");
    gate.signal("HUP");
    gate.wait_for_sample(r#"gatehouse_config_reloads_total{result="error"} 1"#)
        .await;
    let name = users.display().to_string();
    let line = gate
        .wait_for_stderr("naming the garbage users file", |l| {
            l.contains("config reload failed") && l.contains(&name) && l.contains("UTF-8")
        })
        .await;
    println!("{line}");
    login(&gate, &client, "alice", PASSWORD).await;

    // Mended, the users file reloads.
    write_users(certs.dir.path(), &users_yaml(["alice", "bob"]));
    gate.signal("HUP");
    gate.wait_for_sample(r#"gatehouse_config_reloads_total{result="success"} 1"#)
        .await;
    login(&gate, &client, "bob", PASSWORD).await;
    login(&gate, &client, "alice", PASSWORD).await;
}
