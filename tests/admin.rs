//! The admin listener (SPEC §6): `/healthz`, `/readyz` following the default
//! upstream, `/metrics` with every SPEC metric and bounded labels that
//! `promtool` accepts, and none of it on the public listeners.

mod support;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

async fn admin_get(gate: &Gatehouse, path: &str) -> reqwest::Response {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
        .get(format!("http://{}{path}", gate.admin))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path} on the admin listener: {e}"))
}

/// Status and JSON body of an admin request, checking it is JSON.
async fn admin_json(gate: &Gatehouse, path: &str) -> (u16, Value) {
    let res = admin_get(gate, path).await;
    let status = res.status().as_u16();
    assert_eq!(
        res.headers()["content-type"],
        "application/json",
        "{path}: {:?}",
        res.headers()
    );
    (status, res.json().await.expect("JSON body"))
}

/// Polls `/readyz` until it answers `want`, for up to `within`; the last answer.
async fn readyz_until(gate: &Gatehouse, want: u16, within: Duration) -> (u16, Value) {
    let deadline = Instant::now() + within;
    loop {
        let (status, body) = admin_json(gate, "/readyz").await;
        if status == want || Instant::now() > deadline {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn healthz_answers_200_json() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), OPEN).await;
    let (status, body) = admin_json(&gate, "/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn unknown_admin_path_gets_404_json() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), OPEN).await;
    let (status, body) = admin_json(&gate, "/admin/secret").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "not_found");
    assert!(body["detail"].is_string(), "{body}");
}

#[tokio::test]
async fn admin_endpoints_are_not_served_on_the_public_listeners() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), OPEN).await;
    // Some traffic, so /metrics would have plenty to say.
    let client = gate.client();
    assert_eq!(
        client
            .get(gate.url("/health"))
            .send()
            .await
            .expect("request through gatehouse")
            .status(),
        200
    );
    clear_recorded(backend.addr).await;

    for path in ["/metrics", "/healthz", "/readyz"] {
        let res = client
            .get(gate.url(path))
            .send()
            .await
            .expect("request through gatehouse");
        let status = res.status();
        let text = res.text().await.expect("response body");
        assert!(
            !text.contains("gatehouse_"),
            "{path} over HTTPS answered with metrics: {text}"
        );
        // It went to the backend, which has no such endpoint.
        assert_eq!(status, 404, "{path}: {text}");
    }
    let seen: Vec<String> = recorded(backend.addr)
        .await
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["path"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(seen, ["/metrics", "/healthz", "/readyz"]);

    // The plain listener only redirects.
    let raw = raw_tcp(
        gate.http,
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&raw), 308, "{raw}");
    assert!(!raw.contains("gatehouse_"), "{raw}");
}

#[tokio::test]
async fn readyz_is_200_when_the_default_upstream_is_up() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), OPEN).await;
    // The first probe runs at start; probes repeat every 2 s.
    let (status, body) = readyz_until(&gate, 200, Duration::from_secs(5)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn readyz_is_503_with_a_reason_while_the_default_upstream_never_answered() {
    let dead = closed_port();
    let gate = Gatehouse::start(&format!("http://{dead}"), OPEN).await;
    // Not ready from the very start...
    let (status, body) = admin_json(&gate, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    let reason = body["reason"].as_str().expect("a JSON reason");
    assert!(
        reason.contains("app"),
        "the reason names the upstream: {reason}"
    );
    // ...nor after the next probe (every 2 s) found the port still closed.
    let deadline = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < deadline {
        let (status, body) = admin_json(&gate, "/readyz").await;
        assert_eq!(status, 503, "{body}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Once something listens there, the next probe makes it ready.
    let listener = tokio::net::TcpListener::bind(dead)
        .await
        .expect("rebind the upstream port");
    let (status, body) = readyz_until(&gate, 200, Duration::from_secs(5)).await;
    assert_eq!(status, 200, "{body}");
    drop(listener);
}

/// Every metric name of SPEC §6 that gatehouse exports today.
const SPEC_METRICS: &[&str] = &[
    "gatehouse_requests_total",
    "gatehouse_request_duration_seconds",
    "gatehouse_upstream_duration_seconds",
    "gatehouse_upstream_errors_total",
    "gatehouse_connections_open",
    "gatehouse_tls_handshake_errors_total",
    "gatehouse_config_reloads_total",
    "gatehouse_tls_cert_expiry_timestamp_seconds",
    "gatehouse_build_info",
];

/// The values of label `label` over every sample in `text`.
fn label_values(text: &str, label: &str) -> BTreeSet<String> {
    let key = format!("{label}=\"");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|line| {
            line.match_indices(&key)
                .filter(|(i, _)| matches!(line.as_bytes()[i - 1], b'{' | b','))
                .filter_map(|(i, _)| {
                    let rest = &line[i + key.len()..];
                    rest.find('"').map(|end| rest[..end].to_owned())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn metrics_name_every_spec_metric_with_route_names_as_labels() {
    let backend = start_rust_backend().await;
    let dead = closed_port();
    let gate = Gatehouse::start_with(
        &format!(
            "upstreams:\n  app:\n    url: {}\n  gone:\n    url: http://{dead}\n",
            backend.url("")
        ),
        "routes:\n  - name: echo_api\n    path: /echo/**\n    auth: none\n\
         \x20 - name: gone_api\n    path: /gone/**\n    auth: none\n    upstream: gone\n\
         default_route:\n  auth: none\n",
    )
    .await;
    let client = gate.client();
    for path in ["/echo/user-1234/secret", "/echo/x?token=abc", "/health"] {
        let res = client
            .get(gate.url(path))
            .send()
            .await
            .expect("request through gatehouse");
        assert_eq!(res.status(), 200, "{path}");
    }
    let res = client
        .post(gate.url("/echo/posted"))
        .body("x")
        .send()
        .await
        .expect("request through gatehouse");
    assert_eq!(res.status(), 200);
    let res = client
        .get(gate.url("/gone/away"))
        .send()
        .await
        .expect("request through gatehouse");
    assert_eq!(res.status(), 502);

    // Request metrics are written when the response body ends: poll.
    let deadline = Instant::now() + Duration::from_secs(3);
    let text = loop {
        let text = gate.metrics().await;
        let done = text
            .contains(r#"gatehouse_requests_total{method="GET",route="gone_api",status="502"} 1"#);
        if done || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    for name in SPEC_METRICS {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{name} missing from /metrics:\n{text}"
        );
    }
    for series in [
        r#"gatehouse_requests_total{method="GET",route="echo_api",status="200"} 2"#,
        r#"gatehouse_requests_total{method="POST",route="echo_api",status="200"} 1"#,
        r#"gatehouse_requests_total{method="GET",route="default",status="200"} 1"#,
        r#"gatehouse_requests_total{method="GET",route="gone_api",status="502"} 1"#,
        r#"gatehouse_request_duration_seconds_count{route="echo_api"} 3"#,
        r#"gatehouse_upstream_duration_seconds_count{upstream="app"} 4"#,
        r#"gatehouse_upstream_errors_total{kind="connect",upstream="gone"} 1"#,
        r#"gatehouse_connections_open{listener="admin"} "#,
        r#"gatehouse_connections_open{listener="https"} "#,
        r#"gatehouse_config_reloads_total{result="success"} 0"#,
        r#"gatehouse_config_reloads_total{result="error"} 0"#,
        "gatehouse_tls_handshake_errors_total 0",
        "gatehouse_tls_cert_expiry_timestamp_seconds ",
    ] {
        assert!(text.contains(series), "no `{series}` in:\n{text}");
    }
    let build = format!(
        "gatehouse_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.contains(&build), "no `{build}` in:\n{text}");

    // Labels are bounded: route names, never raw paths, queries or IPs.
    let routes = label_values(&text, "route");
    let expected: BTreeSet<String> = ["default", "echo_api", "gone_api"].map(String::from).into();
    assert_eq!(routes, expected, "{text}");
    for leak in [
        "/echo",
        "user-1234",
        "token=abc",
        "posted",
        "/gone",
        "127.0.0.1",
    ] {
        assert!(
            !text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .any(|l| l.contains(leak)),
            "`{leak}` leaked into a metric:\n{text}"
        );
    }

    promtool_accepts(&text);
}

/// `promtool check metrics` exits 0 and prints nothing for `text`.
fn promtool_accepts(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("promtool missing: run scripts/test (it installs Debian's prometheus package)")
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(text.as_bytes())
        .expect("write metrics to promtool");
    let out = child.wait_with_output().expect("promtool runs");
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && complaints.trim().is_empty(),
        "promtool check metrics ({}) complains:\n{complaints}\n--- metrics:\n{text}",
        out.status
    );
}
