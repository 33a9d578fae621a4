//! Connection and size limits (SPEC §2 `server:`): the slowloris guard, the
//! idle timeout (which never cuts a slow stream), `max_connections`,
//! `max_header_size`, and a 1 GiB upload streamed through the real binary in
//! bounded memory.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Number of requests the backend saw.
async fn backend_saw(backend: &Backend) -> usize {
    backend.requests().await.len()
}

/// A TLS handshake that may fail.
async fn try_tls(
    gate: &Gatehouse,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    try_tls_connect(gate.https, gate.tls_client_config(alpn)).await
}

/// Sends a keep-alive `GET path` on an HTTP/1.1 connection and reads one
/// whole response (head and `Content-Length` body); "" if the connection
/// closed or stalled first.
async fn get_keep_alive<S>(stream: &mut S, path: &str) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    if stream.write_all(req.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            });
            if length.is_some_and(|n| body.len() >= n) {
                return text;
            }
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => return String::new(),
        }
    }
}

#[tokio::test]
async fn slowloris_request_head_is_cut_off_after_header_read_timeout() {
    let (backend, gate) = gate_with(&open_with_server("  header_read_timeout: 1s\n")).await;
    let tls = gate.tls_connect(&[b"http/1.1"]).await;
    let started = Instant::now();
    let (mut reader, mut writer) = tokio::io::split(tls);
    // One byte every 200 ms: the whole head would take over 20 s.
    let head = format!(
        "GET /echo HTTP/1.1\r\nHost: localhost\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(100)
    );
    let trickle = tokio::spawn(async move {
        for byte in head.into_bytes() {
            if writer.write_all(&[byte]).await.is_err() || writer.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let closed = wait_until_closed(&mut reader, Duration::from_secs(4)).await;
    let took = started.elapsed();
    trickle.abort();
    assert!(closed, "a slowloris client was still connected after 4s");
    assert!(
        took >= Duration::from_millis(900),
        "cut too early: {took:?}"
    );
    assert!(took < Duration::from_millis(2500), "cut too late: {took:?}");
    assert_eq!(backend_saw(&backend).await, 0);
}

const IDLE: &str = "  idle_timeout: 1s\n  header_read_timeout: 5s\n";

#[tokio::test]
async fn idle_http1_connection_is_closed_after_idle_timeout() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), &open_with_server(IDLE)).await;
    let mut tls = gate.tls_connect(&[b"http/1.1"]).await;
    let res = get_keep_alive(&mut tls, "/health").await;
    assert!(res.starts_with("HTTP/1.1 200"), "{res:?}");
    let started = Instant::now();
    assert!(
        wait_until_closed(&mut tls, Duration::from_secs(3)).await,
        "an idle HTTP/1.1 connection was still open after 3s"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed before the idle timeout: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn idle_h2_connection_is_closed_after_idle_timeout() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), &open_with_server(IDLE)).await;
    let tls = gate.tls_connect(&[b"h2"]).await;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let req = http::Request::get(gate.url("/health"))
        .body(Empty::<Bytes>::new())
        .expect("request");
    let res = sender.send_request(req).await.expect("h2 request");
    assert_eq!(res.status(), 200);
    res.into_body().collect().await.expect("body");
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(3), conn).await;
    assert!(
        ended.is_ok(),
        "an idle h2 connection was still open after 3s"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn idle_h2_client_that_ignores_goaway_and_ping_is_still_closed() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), &open_with_server(IDLE)).await;
    let mut tls = gate.tls_connect(&[b"h2"]).await;
    // The preface and empty SETTINGS; then silence: no SETTINGS or PING ack.
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .expect("write h2 preface");
    let started = Instant::now();
    assert!(
        wait_until_closed(&mut tls, Duration::from_secs(5)).await,
        "a silent h2 client kept its connection past idle_timeout"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn slow_event_stream_is_not_cut_by_the_idle_timeout() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), &open_with_server(IDLE)).await;
    let h2 = gate.client();
    let h1 = gate
        .client_builder()
        .http1_only()
        .build()
        .expect("HTTP/1.1 client");
    let stream = |client: reqwest::Client| {
        let url = gate.url("/chat/stream?n=3&interval_ms=1500");
        async move {
            let res = client.get(url).send().await.expect("stream request");
            assert_eq!(res.status(), 200);
            let version = res.version();
            let mut body = res.bytes_stream();
            let mut text = String::new();
            while let Some(chunk) = body.next().await {
                match chunk {
                    Ok(chunk) => text.push_str(&String::from_utf8_lossy(&chunk)),
                    Err(e) => panic!("{version:?}: stream cut after {text:?}: {e}"),
                }
            }
            (version, text)
        }
    };
    let started = Instant::now();
    let (a, b) = tokio::join!(stream(h2), stream(h1));
    assert!(started.elapsed() >= Duration::from_millis(2900));
    assert_eq!(a.0, reqwest::Version::HTTP_2);
    assert_eq!(b.0, reqwest::Version::HTTP_11);
    for (version, text) in [a, b] {
        assert_eq!(
            text.matches("data:").count(),
            3,
            "{version:?}: not every event arrived: {text:?}"
        );
    }
}

#[tokio::test]
async fn connections_over_max_connections_are_refused_until_one_closes() {
    let (backend, gate) = gate_with(&open_with_server("  max_connections: 2\n")).await;
    let mut first = gate.tls_connect(&[b"http/1.1"]).await;
    let mut second = gate.tls_connect(&[b"http/1.1"]).await;
    for conn in [&mut first, &mut second] {
        let res = get_keep_alive(conn, "/health").await;
        assert!(res.starts_with("HTTP/1.1 200"), "{res:?}");
    }
    clear_recorded(backend.addr).await;

    // A third is closed without being served.
    match try_tls(&gate, &[b"http/1.1"]).await {
        Err(_) => {}
        Ok(mut third) => {
            let res = get_keep_alive(&mut third, "/echo").await;
            assert_eq!(res, "", "a third connection was served");
        }
    }
    assert_eq!(backend_saw(&backend).await, 0);
    // The first two still work.
    for conn in [&mut first, &mut second] {
        let res = get_keep_alive(conn, "/health").await;
        assert!(res.starts_with("HTTP/1.1 200"), "{res:?}");
    }

    // Once one closes, a new connection is served.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(3);
    let res = loop {
        if let Ok(mut conn) = try_tls(&gate, &[b"http/1.1"]).await {
            let res = get_keep_alive(&mut conn, "/health").await;
            if !res.is_empty() {
                break res;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no connection served 3s after one closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(res.starts_with("HTTP/1.1 200"), "{res:?}");
}

#[tokio::test]
async fn request_head_over_max_header_size_gets_431_and_never_reaches_the_backend() {
    let (backend, gate) = gate_with(&open_with_server("  max_header_size: 16KiB\n")).await;

    // Under the limit: served.
    let fits = format!(
        "GET /echo HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(12 * 1024)
    );
    let raw = gate.raw(fits.as_bytes()).await;
    assert_eq!(status_of(&raw), 200, "{}", &raw[..raw.len().min(300)]);
    clear_recorded(backend.addr).await;

    // Over it (the default 64KiB would let it pass): 431 from the parser.
    let big = format!(
        "GET /echo HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let raw = gate.raw(big.as_bytes()).await;
    assert_eq!(
        status_of(&raw),
        431,
        "HTTP/1.1: {}",
        &raw[..raw.len().min(300)]
    );

    // The same over HTTP/2.
    let res = gate
        .client()
        .get(gate.url("/echo"))
        .header("x-big", "a".repeat(20 * 1024))
        .send()
        .await
        .expect("h2 request");
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert_eq!(res.status(), 431, "h2");
    assert_eq!(backend_saw(&backend).await, 0);
}

/// A line of `/proc/<pid>/status` in KiB (`VmHWM`, `VmRSS`).
fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// CPU seconds (user + system) the process `pid` has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
    let per_second = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    ticks / per_second
}

const GIB: u64 = 1 << 30;
const CHUNK: usize = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_gib_upload_streams_through_the_real_binary_in_bounded_memory() {
    let backend = start_rust_backend().await;
    let certs = TestCerts::new();
    let path = certs.dir.path().join("gatehouse.yaml");
    let yaml = config_yaml(
        &certs,
        &upstream(&backend.url("")),
        &open_with_server("  max_request_body: 2GiB\n"),
    );
    std::fs::write(&path, yaml).expect("write config");
    let process = Process::spawn(&path);
    let pid = process.child.id();
    let https: SocketAddr = process.https;

    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certs.pem.as_bytes()).expect("test certificate"),
        )
        .resolve("localhost", https)
        .http1_only()
        .timeout(Duration::from_secs(600))
        .build()
        .expect("client");
    let url = format!("https://localhost:{}/upload", https.port());
    let warm = client.get(format!("https://localhost:{}/health", https.port()));
    assert_eq!(warm.send().await.expect("warm-up request").status(), 200);
    let before_kib = proc_kib(pid, "VmHWM");
    let cpu_before = cpu_seconds(pid);

    let chunk = Bytes::from(vec![b'g'; CHUNK]);
    let chunks = (GIB / CHUNK as u64) as usize;
    let body =
        futures_util::stream::iter(std::iter::repeat_n(chunk, chunks).map(Ok::<_, std::io::Error>));
    let started = Instant::now();
    let res = client
        .post(url)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .expect("upload");
    let status = res.status();
    let answer: Value = res.json().await.expect("upload answer");
    let took = started.elapsed();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["bytes"], GIB, "{answer}");

    let peak_kib = proc_kib(pid, "VmHWM");
    let peak_mib = peak_kib as f64 / 1024.0;
    println!(
        "1 GiB upload through gatehouse (HTTP/1.1, {CHUNK} B chunks): {:.1} s, {:.0} MiB/s; \
         gatehouse peak RSS {peak_mib:.1} MiB (before the upload {:.1} MiB), \
         gatehouse CPU {:.1} s",
        took.as_secs_f64(),
        1024.0 / took.as_secs_f64(),
        before_kib as f64 / 1024.0,
        cpu_seconds(pid) - cpu_before,
    );
    assert!(
        peak_kib < 100 * 1024,
        "gatehouse peak RSS {peak_mib:.1} MiB during a 1 GiB upload"
    );
}
