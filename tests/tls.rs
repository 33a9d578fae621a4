//! The public listeners' transport (SPEC §3.1, §3.8, §6): the plain listener
//! only redirects to HTTPS, TLS 1.2+ (or 1.3 only), ALPN `h2` and
//! `http/1.1`, HSTS on every HTTPS response, a handshake that never finishes
//! is cut off, and the certificate's expiry is exported.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HSTS: &str = "max-age=31536000; includeSubDomains";

/// A gatehouse whose `tls:` block gets extra keys. `Gatehouse::start` appends its
/// YAML after the whole config, where a second `tls:` key would be an error.
async fn start_tls(backend_url: &str, tls_keys: &str, extra: &str) -> Gatehouse {
    let certs = TestCerts::new();
    let yaml = config_yaml(&certs, &upstream(backend_url), extra).replacen(
        "tls:\n",
        &format!("tls:\n{tls_keys}"),
        1,
    );
    Gatehouse::start_yaml(certs, &yaml).await
}

#[tokio::test]
async fn plain_http_get_and_post_get_308_to_the_same_path_and_query_on_https() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), OPEN).await;
    let port = gate.https.port();

    for (request, location) in [
        (
            "GET /a/b?x=1&y=%20z HTTP/1.1\r\nHost: example.com:8080\r\nConnection: close\r\n\r\n",
            format!("https://example.com:{port}/a/b?x=1&y=%20z"),
        ),
        (
            "POST /chat?room=7 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
              Content-Length: 17\r\nConnection: close\r\n\r\n{\"message\":\"hi\"}",
            format!("https://localhost:{port}/chat?room=7"),
        ),
    ] {
        let raw = raw_tcp(gate.http, request.as_bytes()).await;
        assert_eq!(status_of(&raw), 308, "{raw}");
        assert_eq!(
            raw_header(&raw, "location"),
            Some(location.as_str()),
            "{raw}"
        );
        assert_eq!(raw_header(&raw, "strict-transport-security"), None, "{raw}");
    }

    // Nothing is proxied in clear text.
    assert_eq!(recorded(backend.addr).await, Value::Array(vec![]));
}

#[tokio::test]
async fn tls_1_2_client_is_served_with_the_default_min_version() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), OPEN).await;
    let config = tls_client_config(&gate.certs, &[b"http/1.1"], Some(&rustls::version::TLS12));
    let mut tls = try_tls_connect(gate.https, config)
        .await
        .expect("a TLS 1.2 handshake succeeds");
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    tls.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write request");
    let raw = read_until_quiet(&mut tls).await;
    assert_eq!(status_of(&raw), 200, "{raw}");
}

#[tokio::test]
async fn tls_1_2_client_is_refused_when_min_version_is_1_3_and_counted() {
    let backend = start_rust_backend().await;
    let gate = start_tls(&backend.url(""), "  min_version: \"1.3\"\n", OPEN).await;
    let errors = "gatehouse_tls_handshake_errors_total";
    let before = wait_for_sample(gate.admin, errors, 0.0).await;
    assert_eq!(find_sample(&before, errors), Some(0.0), "{before}");

    let tls12 = tls_client_config(&gate.certs, &[b"http/1.1"], Some(&rustls::version::TLS12));
    let refused = try_tls_connect(gate.https, tls12).await;
    assert!(refused.is_err(), "a TLS 1.2-only client was accepted");
    let after = wait_for_sample(gate.admin, errors, 1.0).await;
    assert_eq!(find_sample(&after, errors), Some(1.0), "{after}");

    // TLS 1.3 clients are still served.
    let tls13 = tls_client_config(&gate.certs, &[b"http/1.1"], Some(&rustls::version::TLS13));
    let tls = try_tls_connect(gate.https, tls13)
        .await
        .expect("TLS 1.3 handshake");
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let res = get_without_credentials(&gate, "/health").await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn alpn_negotiates_h2_or_http_1_1_as_the_client_offers() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), OPEN).await;

    let mut h2 = gate.tls_connect(&[b"h2"]).await;
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    // The server speaks HTTP/2 there: its first frame is SETTINGS.
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .expect("write h2 preface");
    let mut frame = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(2), h2.read_exact(&mut frame))
        .await
        .expect("a frame within 2s")
        .expect("read frame header");
    assert_eq!(frame[3], 0x4, "first frame is not SETTINGS: {frame:?}");

    let mut h1 = gate.tls_connect(&[b"http/1.1"]).await;
    assert_eq!(h1.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    h1.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write request");
    let raw = read_until_quiet(&mut h1).await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
}

#[tokio::test]
async fn hsts_is_on_every_https_response_including_gatehouse_errors() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), OPEN).await;
    let client = gate.client();

    // Forwarded, over HTTP/2.
    let res = client
        .get(gate.url("/health"))
        .send()
        .await
        .expect("request through gatehouse");
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert_eq!(res.headers()["strict-transport-security"], HSTS);
    // A backend 404 (not gatehouse's) too.
    let res = client
        .get(gate.url("/nowhere"))
        .send()
        .await
        .expect("request through gatehouse");
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["strict-transport-security"], HSTS);
    // Gatehouse's own 400 (a dot-segment), over HTTP/1.1.
    let raw = gate
        .raw(b"GET /a/%2e%2e/b HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(status_of(&raw), 400, "{raw}");
    assert_eq!(raw_header(&raw, "strict-transport-security"), Some(HSTS));

    // Gatehouse's own 502: the upstream port is closed.
    let dead = Gatehouse::start(&format!("http://{}", closed_port()), OPEN).await;
    let res = get_without_credentials(&dead, "/x").await;
    assert_eq!(res.status(), 502);
    assert_eq!(res.headers()["strict-transport-security"], HSTS);
    let body: Value = res.json().await.expect("JSON error body");
    assert_eq!(body["error"], "bad_gateway");
}

#[tokio::test]
async fn empty_hsts_setting_sends_no_hsts_header() {
    let backend = start_rust_backend().await;
    let gate = start_tls(&backend.url(""), "  hsts: \"\"\n", OPEN).await;
    let res = get_without_credentials(&gate, "/health").await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers().get("strict-transport-security").is_none(),
        "{:?}",
        res.headers()
    );

    let dead = start_tls(&format!("http://{}", closed_port()), "  hsts: \"\"\n", OPEN).await;
    let res = get_without_credentials(&dead, "/x").await;
    assert_eq!(res.status(), 502);
    assert!(res.headers().get("strict-transport-security").is_none());
}

#[tokio::test]
async fn client_that_never_finishes_the_tls_handshake_is_cut_off_after_header_read_timeout() {
    let (_backend, gate) = gate_with(&open_with_server("  header_read_timeout: 1s\n")).await;
    let errors = "gatehouse_tls_handshake_errors_total";
    let mut tcp = TcpStream::connect(gate.https).await.expect("connect");
    let started = Instant::now();
    assert!(
        wait_until_closed(&mut tcp, Duration::from_secs(3)).await,
        "a silent client was still connected after 3s"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "closed before the timeout: {took:?}"
    );
    assert!(took < Duration::from_millis(2500), "closed late: {took:?}");
    let text = wait_for_sample(gate.admin, errors, 1.0).await;
    assert_eq!(find_sample(&text, errors), Some(1.0), "{text}");
}

#[tokio::test]
async fn certificate_expiry_metric_is_the_certificates_not_after() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), OPEN).await;
    let der = gate.certs.der();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("test certificate");
    let not_after = cert.validity().not_after.timestamp();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    assert!(not_after > now);

    let text = gate.metrics().await;
    let exported = find_sample(&text, "gatehouse_tls_cert_expiry_timestamp_seconds")
        .unwrap_or_else(|| panic!("no certificate expiry sample in:\n{text}"));
    assert_eq!(exported, not_after as f64);
    assert!(exported > now as f64);
}
