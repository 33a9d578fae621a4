//! Forwarding through a real gatehouse (real TLS) to the real Rust and
//! FastAPI backends: normalized paths, forwarding and hop-by-hop headers,
//! streaming both ways, WebSockets, and upstream failures as SPEC §5 JSON.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use support::*;

async fn echo_via(gate: &Gatehouse, req: reqwest::RequestBuilder) -> Value {
    let res = req.send().await.expect("request through gatehouse");
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    let _ = gate;
    res.json().await.expect("echo JSON")
}

#[tokio::test]
async fn backend_sees_the_normalized_path_and_forwarding_headers() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), OPEN).await;
    let client = gate.client();
    let echo = echo_via(
        &gate,
        client.get(gate.url("/echo//a/%61b/caf%c3%a9?q=1&x=%2F")),
    )
    .await;
    assert_eq!(echo["path"], "/echo/a/ab/caf%C3%A9");
    assert_eq!(echo["query"], "q=1&x=%2F");
    assert_eq!(seen(&echo, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen(&echo, "x-forwarded-proto"), ["https"]);
    assert_eq!(
        seen(&echo, "x-forwarded-host"),
        [format!("localhost:{}", gate.https.port())]
    );
    let rid = seen(&echo, "x-request-id");
    assert_eq!(rid.len(), 1);
    assert_eq!(rid[0].len(), 32);
}

#[tokio::test]
async fn response_carries_hsts_and_the_request_id_the_backend_saw() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), OPEN).await;
    let res = gate
        .client()
        .get(gate.url("/echo"))
        .header("x-request-id", "client-chosen.id_1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    assert_eq!(res.headers()["x-request-id"], "client-chosen.id_1");
    let echo: Value = res.json().await.unwrap();
    assert_eq!(seen(&echo, "x-request-id"), ["client-chosen.id_1"]);
}

#[tokio::test]
async fn hop_by_hop_and_connection_named_headers_never_reach_the_backend() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), OPEN).await;
    let raw = gate
        .raw(
            b"GET /echo HTTP/1.1\r\nHost: localhost\r\n\
              Connection: close, X-Secret-Hop, X-Forwarded-Proto\r\n\
              X-Secret-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\
              Proxy-Authorization: Basic Zm9vOmJhcg==\r\nProxy-Connection: keep-alive\r\n\
              X-Kept: yes\r\n\r\n",
        )
        .await;
    assert_eq!(status_of(&raw), 200, "{raw}");
    let echo: Value = serde_json::from_str(body_of(&raw)).expect("echo JSON");
    for gone in [
        "x-secret-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
        "proxy-connection",
        "connection",
    ] {
        assert!(
            seen(&echo, gone).is_empty(),
            "{gone} reached the backend: {echo}"
        );
    }
    assert_eq!(seen(&echo, "x-kept"), ["yes"]);
    // Naming X-Forwarded-Proto in Connection removes the client's copy, not gatehouse's.
    assert_eq!(seen(&echo, "x-forwarded-proto"), ["https"]);
}

#[tokio::test]
async fn untrusted_forwarding_headers_are_replaced_not_believed() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), OPEN).await;
    let req = gate
        .client()
        .get(gate.url("/echo"))
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "http")
        .header("x-forwarded-host", "evil.example")
        .header("x-real-ip", "6.6.6.6")
        .header("forwarded", "for=6.6.6.6")
        .header("x-original-url", "/admin")
        .header("x-forwarded-uri", "/admin");
    let echo = echo_via(&gate, req).await;
    assert_eq!(seen(&echo, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen(&echo, "x-forwarded-proto"), ["https"]);
    assert_eq!(
        seen(&echo, "x-forwarded-host"),
        [format!("localhost:{}", gate.https.port())]
    );
    for gone in [
        "x-real-ip",
        "forwarded",
        "x-original-url",
        "x-forwarded-uri",
    ] {
        assert!(seen(&echo, gone).is_empty(), "{gone} reached the backend");
    }
}

#[tokio::test]
async fn trusted_proxy_chain_is_appended_to() {
    let (_backend, gate) = gate_with(&open_with_server("  trusted_proxies: [127.0.0.0/8]\n")).await;
    let req = gate
        .client()
        .get(gate.url("/echo"))
        .header("x-forwarded-for", "198.51.100.4")
        .header("x-forwarded-proto", "https");
    let echo = echo_via(&gate, req).await;
    assert_eq!(seen(&echo, "x-forwarded-for"), ["198.51.100.4, 127.0.0.1"]);
}

#[tokio::test]
async fn sse_events_reach_the_client_as_the_backend_writes_them() {
    for backend in [start_rust_backend().await, start_fastapi().await] {
        let gate = Gatehouse::start(&backend.url(""), OPEN).await;
        let started = Instant::now();
        let res = gate
            .client()
            .get(gate.url("/chat/stream?n=4&interval_ms=400"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        let mut stream = res.bytes_stream();
        let mut arrivals = Vec::new();
        let mut text = String::new();
        while let Some(chunk) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            while text.matches("\n\n").count() > arrivals.len() {
                arrivals.push(started.elapsed());
            }
        }
        assert_eq!(arrivals.len(), 4, "{}: {text}", backend.name);
        // The first event arrives long before the last one is written.
        assert!(
            arrivals[3] - arrivals[0] >= Duration::from_millis(1000),
            "{}: events arrived together: {arrivals:?}",
            backend.name
        );
    }
}

#[tokio::test]
async fn websocket_upgrade_passes_through_both_backends() {
    for backend in [start_rust_backend().await, start_fastapi().await] {
        let gate = Gatehouse::start(&backend.url(""), OPEN).await;
        let (mut ws, response) = gate
            .websocket("/ws")
            .await
            .unwrap_or_else(|e| panic!("{}: websocket handshake: {e}", backend.name));
        assert_eq!(response.status(), 101);
        let greeting = ws.next().await.unwrap().unwrap();
        assert!(
            greeting.to_text().unwrap().starts_with("hello"),
            "{greeting:?}"
        );
        ws.send(tokio_tungstenite::tungstenite::Message::text("ping 1"))
            .await
            .unwrap();
        let echo = ws.next().await.unwrap().unwrap();
        assert_eq!(echo.to_text().unwrap(), "ping 1", "{}", backend.name);
        ws.close(None).await.unwrap();
    }
}

#[tokio::test]
async fn body_over_the_limit_gets_413_whether_declared_or_streamed() {
    let (_backend, gate) = gate_with(&open_with_server("  max_request_body: 64KiB\n")).await;
    let client = gate.client();
    // Declared with Content-Length: refused before anything is forwarded.
    let res = client
        .post(gate.url("/upload"))
        .body(vec![b'x'; 100 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "payload_too_large");

    // Streamed (chunked): cut off at the limit.
    let chunks =
        futures_util::stream::iter((0..32).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 8192])));
    let res = client
        .post(gate.url("/upload"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);

    // Under the limit passes.
    let res = client
        .post(gate.url("/upload"))
        .body(vec![b'z'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["bytes"], 1000);
}

#[tokio::test]
async fn closed_port_gets_502_json() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let gate = Gatehouse::start(&format!("http://{addr}"), OPEN).await;
    let res = gate
        .client()
        .get(gate.url("/anything"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 502);
    assert_eq!(res.headers()["content-type"], "application/json");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "bad_gateway");
    assert!(gate
        .metrics()
        .await
        .contains(r#"gatehouse_upstream_errors_total{kind="connect",upstream="app"} "#));
}

#[tokio::test]
async fn slow_backend_gets_504_json() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start_with(
        &format!(
            "upstreams:\n  app:\n    url: {}\n    response_timeout: 500ms\n",
            backend.url("")
        ),
        OPEN,
    )
    .await;
    let started = Instant::now();
    let res = gate
        .client()
        .get(gate.url("/slow?seconds=3"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(2));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "gateway_timeout");
    assert!(gate
        .metrics()
        .await
        .contains(r#"gatehouse_upstream_errors_total{kind="timeout",upstream="app"} 1"#));
}

#[tokio::test]
async fn a_refusing_target_is_skipped_in_round_robin() {
    let backend = start_rust_backend().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let gate = Gatehouse::start_with(
        &format!(
            "upstreams:\n  app:\n    urls: [http://{dead}, {}]\n",
            backend.url("")
        ),
        OPEN,
    )
    .await;
    let client = gate.client();
    for i in 0..6 {
        let res = client.get(gate.url("/health")).send().await.unwrap();
        assert_eq!(res.status(), 200, "request {i}");
    }
}

#[tokio::test]
async fn http2_and_http1_clients_are_both_served() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), OPEN).await;
    let h2 = gate.client().get(gate.url("/health")).send().await.unwrap();
    assert_eq!(h2.version(), reqwest::Version::HTTP_2);
    assert_eq!(h2.status(), 200);
    let h1 = gate.client_builder().http1_only().build().unwrap();
    let res = h1.get(gate.url("/health")).send().await.unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_11);
    assert_eq!(res.status(), 200);
}

// ---- Upstream connections: kept alive, reused, never reused when spoiled --

/// How a raw test backend answers each request on a connection.
#[derive(Clone, Copy)]
enum Answer {
    /// `200`, `Content-Length`, the connection kept.
    Sized,
    /// `200`, chunked, the connection kept.
    Chunked,
    /// `204`, no body, the connection kept.
    NoContent,
    /// `200` with a large body, the connection kept.
    Large,
    /// `200`, then the backend closes the connection without saying so
    /// (what a keep-alive timeout does to an idle connection).
    ThenClose,
}

/// A backend speaking raw HTTP/1.1: answers every request on a connection
/// the same way, with a body naming the connection (`conn-N`). Returns its
/// address and how many connections carried a request (gatehouse's
/// readiness probe connects without sending any).
async fn raw_backend(answer: Answer) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind raw backend");
    let addr = listener.local_addr().expect("raw backend address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut n = 0;
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // One request head at a time (the test sends no bodies).
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => buf.extend_from_slice(&chunk[..k]),
                        }
                    }
                    let end = buf
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .expect("head end")
                        + 4;
                    buf.drain(..end);
                    if n == 0 {
                        n = count.fetch_add(1, Ordering::SeqCst) + 1;
                    }
                    let name = format!("conn-{n}");
                    let reply = match answer {
                        Answer::Sized | Answer::ThenClose => format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{name}",
                            name.len()
                        ),
                        Answer::Chunked => format!(
                            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{name}\r\n0\r\n\r\n",
                            name.len()
                        ),
                        Answer::NoContent => "HTTP/1.1 204 No Content\r\n\r\n".to_owned(),
                        Answer::Large => {
                            let body = format!("{name};{}", "x".repeat(8 << 20));
                            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len())
                        }
                    };
                    if stream.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                    if matches!(answer, Answer::ThenClose) {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn one_backend_connection_carries_request_after_request_whatever_the_body_framing() {
    for answer in [Answer::Sized, Answer::Chunked, Answer::NoContent] {
        let (addr, accepted) = raw_backend(answer).await;
        let gate = Gatehouse::start(&format!("http://{addr}"), OPEN).await;
        let client = gate.client();
        for i in 0..20 {
            let res = client
                .get(gate.url("/x"))
                .send()
                .await
                .expect("request through gatehouse");
            let status = res.status().as_u16();
            let body = res.text().await.expect("body");
            match answer {
                Answer::NoContent => assert_eq!((status, body.as_str()), (204, ""), "request {i}"),
                _ => assert_eq!((status, body.as_str()), (200, "conn-1"), "request {i}"),
            }
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "connections opened");
    }
}

#[tokio::test]
async fn a_connection_the_backend_closed_costs_no_request() {
    // The backend closes each connection after one answer, unannounced:
    // every request still gets its answer (a closed connection is never
    // handed a request; one closing as the request goes out is replaced).
    let (addr, accepted) = raw_backend(Answer::ThenClose).await;
    let gate = Gatehouse::start(&format!("http://{addr}"), OPEN).await;
    let client = gate.client();
    for i in 0..30 {
        let res = client.get(gate.url("/x")).send().await.expect("request");
        assert_eq!(res.status(), 200, "request {i}");
        let body = res.text().await.expect("body");
        assert_eq!(body, format!("conn-{}", i + 1), "request {i}");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 30);
}

#[tokio::test]
async fn a_response_the_client_left_unread_never_leaks_into_the_next_one() {
    let (addr, accepted) = raw_backend(Answer::Large).await;
    let gate = Gatehouse::start(&format!("http://{addr}"), OPEN).await;
    // The first client reads the head only and goes away mid-body.
    let first = gate.client();
    let res = first.get(gate.url("/x")).send().await.expect("first");
    assert_eq!(res.status(), 200);
    drop(res);
    drop(first);
    // The next request gets a whole answer of its own, on a connection
    // that never carried the half-read one.
    let res = gate
        .client()
        .get(gate.url("/x"))
        .send()
        .await
        .expect("second");
    assert_eq!(res.status(), 200);
    let body = res.text().await.expect("body");
    let (name, rest) = body.split_once(';').expect("conn name");
    assert_eq!(rest.len(), 8 << 20);
    assert_ne!(name, "conn-1", "the half-read connection was reused");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}
