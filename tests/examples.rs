//! The example backends (`examples/backend_app.rs` and the FastAPI chatbot in
//! `examples/chatbot`) keep the contract the integration tests rely on: they
//! report exactly what reached them, stream as they write, and record every
//! request. Each test runs against both.

#[path = "../examples/backend_app.rs"]
mod backend_app;
#[path = "support/backends.rs"]
mod backends;

use std::time::{Duration, Instant};

use backends::{
    clear_recorded, client, recorded, seen, start_fastapi, start_rust_backend, Backend,
};
use futures_util::{stream, SinkExt, StreamExt};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

async fn both() -> [Backend; 2] {
    [start_rust_backend().await, start_fastapi().await]
}

#[tokio::test]
async fn chat_replies_to_the_identified_user_or_anonymous() {
    for backend in both().await {
        let client = client();
        let health: Value = client
            .get(backend.url("/health"))
            .send()
            .await
            .expect("GET /health")
            .json()
            .await
            .expect("JSON health");
        assert_eq!(health, json!({"status": "ok"}), "{}", backend.name);

        for (user, expected) in [(Some("alice"), "alice"), (None, "anonymous")] {
            let mut request = client
                .post(backend.url("/chat"))
                .json(&json!({"message": "hi"}));
            if let Some(user) = user {
                request = request.header("X-Auth-User", user);
            }
            let reply: Value = request
                .send()
                .await
                .expect("POST /chat")
                .json()
                .await
                .expect("JSON reply");
            assert_eq!(
                reply,
                json!({"user": expected, "reply": "echo: hi"}),
                "{}",
                backend.name
            );
        }
    }
}

#[tokio::test]
async fn echo_reports_the_raw_path_query_headers_and_body_and_is_recorded() {
    for backend in both().await {
        clear_recorded(backend.addr).await;
        let echoed: Value = client()
            .put(backend.url("/echo/a%2Fb//c?x=1&y=%20"))
            .header("X-Custom", "one")
            .header("X-Auth-User", "alice")
            .body("hello")
            .send()
            .await
            .expect("PUT /echo")
            .json()
            .await
            .expect("JSON echo");
        let name = backend.name;
        assert_eq!(echoed["method"], "PUT", "{name}");
        assert_eq!(echoed["path"], "/echo/a%2Fb//c", "{name}");
        assert_eq!(echoed["query"], "x=1&y=%20", "{name}");
        assert_eq!(echoed["body_len"], 5, "{name}");
        assert_eq!(seen(&echoed, "x-custom"), ["one"], "{name}");
        assert_eq!(seen(&echoed, "x-auth-user"), ["alice"], "{name}");

        let seen = recorded(backend.addr).await;
        let seen = seen.as_array().expect("recorded is an array");
        assert_eq!(seen.len(), 1, "{name}: {seen:?}");
        assert_eq!(seen[0]["path"], "/echo/a%2Fb//c", "{name}");
        assert_eq!(seen[0]["headers"], echoed["headers"], "{name}");

        clear_recorded(backend.addr).await;
        assert_eq!(recorded(backend.addr).await, json!([]), "{name}");
    }
}

#[tokio::test]
async fn chat_stream_delivers_each_event_when_it_is_written() {
    const N: u64 = 4;
    const INTERVAL_MS: u64 = 250;
    for backend in both().await {
        let name = backend.name;
        let response = client()
            .get(backend.url(&format!("/chat/stream?n={N}&interval_ms={INTERVAL_MS}")))
            .header("X-Auth-User", "bob")
            .send()
            .await
            .expect("GET /chat/stream");
        let content_type = response.headers()[reqwest::header::CONTENT_TYPE].clone();
        assert!(
            content_type.as_bytes().starts_with(b"text/event-stream"),
            "{name}: {content_type:?}"
        );

        let (mut buffer, mut events) = (String::new(), Vec::new());
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            buffer.push_str(std::str::from_utf8(&chunk.expect("SSE chunk")).expect("UTF-8 SSE"));
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                let data = event.trim().strip_prefix("data:").expect("a data line");
                let data: Value = serde_json::from_str(data.trim()).expect("JSON event");
                events.push((Instant::now(), data));
            }
        }

        let expected: Vec<Value> = (0..N).map(|i| json!({"i": i, "user": "bob"})).collect();
        let data: Vec<Value> = events.iter().map(|(_, data)| data.clone()).collect();
        assert_eq!(data, expected, "{name}");
        let spread = events[events.len() - 1].0 - events[0].0;
        let nominal = Duration::from_millis((N - 1) * INTERVAL_MS);
        assert!(
            spread >= nominal * 8 / 10 && spread < nominal * 3,
            "{name}: events spread over {spread:?}, expected about {nominal:?}"
        );
    }
}

#[tokio::test]
async fn upload_counts_and_hashes_a_streamed_multi_megabyte_body() {
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: usize = 96; // 6 MiB
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i % 251) as u8).collect();
    let mut digest = Sha256::new();
    for _ in 0..CHUNKS {
        digest.update(&chunk);
    }
    let expected_sha: String = digest
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();

    for backend in both().await {
        let body = stream::iter((0..CHUNKS).map({
            let chunk = bytes::Bytes::from(chunk.clone());
            move |_| Ok::<_, std::io::Error>(chunk.clone())
        }));
        let answer: Value = client()
            .post(backend.url("/upload"))
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .expect("POST /upload")
            .json()
            .await
            .expect("JSON upload answer");
        assert_eq!(
            answer,
            json!({"bytes": CHUNK * CHUNKS, "sha256": expected_sha}),
            "{}",
            backend.name
        );
    }
}

#[tokio::test]
async fn websocket_greets_the_user_then_echoes_text() {
    for backend in both().await {
        let name = backend.name;
        let mut request = format!("ws://{}/ws", backend.addr)
            .into_client_request()
            .expect("a WebSocket request");
        request
            .headers_mut()
            .insert("x-auth-user", "carol".parse().expect("a header value"));
        let (mut socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .unwrap_or_else(|err| panic!("{name}: WebSocket handshake: {err}"));

        let greeting = socket
            .next()
            .await
            .expect("a greeting")
            .expect("greeting frame");
        assert_eq!(greeting, Message::text("hello carol"), "{name}");
        for text in ["ping", "second message"] {
            socket.send(Message::text(text)).await.expect("send text");
            let echoed = socket.next().await.expect("an echo").expect("echo frame");
            assert_eq!(echoed, Message::text(text), "{name}");
        }
        socket.close(None).await.expect("close the WebSocket");
    }
}

#[tokio::test]
async fn slow_sleeps_the_requested_time() {
    for backend in both().await {
        let started = Instant::now();
        let answer: Value = client()
            .get(backend.url("/slow?seconds=0.3"))
            .send()
            .await
            .expect("GET /slow")
            .json()
            .await
            .expect("JSON slow answer");
        assert_eq!(answer, json!({"slept": 0.3}), "{}", backend.name);
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{}",
            backend.name
        );
    }
}

/// The FastAPI chatbot's OpenAI-compatible completion (what the README's
/// quota section uses): the reply and a deterministic `usage`, in the body
/// (JSON, or a final SSE chunk with `stream_options.include_usage`) and in
/// `X-Gatehouse-Usage`.
#[tokio::test]
async fn the_chatbot_answers_openai_chat_completions_with_their_usage() {
    let backend = start_fastapi().await;
    let client = client();
    let ask = |stream: bool, include_usage: bool| {
        client
            .post(backend.url("/v1/chat/completions"))
            .header("X-Auth-User", "alice")
            .json(&json!({
                "model": "gatehouse-echo-1",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "hello there"}
                ],
                "stream": stream,
                "stream_options": {"include_usage": include_usage},
            }))
            .send()
    };
    let res = ask(false, false).await.expect("POST /v1/chat/completions");
    assert_eq!(res.status(), 200);
    let header: u64 = res.headers()["x-gatehouse-usage"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("an integer");
    let body: Value = res.json().await.expect("JSON");
    assert_eq!(body["object"], "chat.completion");
    let reply = body["choices"][0]["message"]["content"]
        .as_str()
        .expect("content");
    assert!(
        reply.starts_with("Hello alice! You said: \"hello there\"."),
        "{reply}"
    );
    let words = reply.split_whitespace().count() as u64;
    assert_eq!(body["usage"]["prompt_tokens"], 4);
    assert_eq!(body["usage"]["completion_tokens"], words);
    assert_eq!(body["usage"]["total_tokens"], 4 + words);
    assert_eq!(header, 4 + words);

    for include_usage in [true, false] {
        let res = ask(true, include_usage).await.expect("a stream");
        assert_eq!(
            res.headers()["content-type"],
            "text/event-stream; charset=utf-8"
        );
        assert_eq!(
            res.headers()["x-gatehouse-usage"],
            header.to_string().as_str()
        );
        let text = res.text().await.expect("the events");
        let events: Vec<&str> = text
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .collect();
        assert_eq!(events.last(), Some(&"[DONE]"));
        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|e| serde_json::from_str(e).expect("a JSON chunk"))
            .collect();
        let streamed: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(streamed, reply);
        let usages: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c.get("usage").filter(|u| !u.is_null()))
            .collect();
        if include_usage {
            // Only the last chunk has it (the others say `"usage": null`).
            assert_eq!(usages.len(), 1, "{text}");
            assert_eq!(chunks.last().map(|c| &c["usage"]), usages.first().copied());
            assert_eq!(usages[0]["total_tokens"], 4 + words);
        } else {
            assert!(usages.is_empty(), "{text}");
        }
    }
}
