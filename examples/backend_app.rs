//! The example chatbot backend in Rust: the same API as the FastAPI app in
//! `examples/chatbot/app.py`, with the same JSON shapes.
//!
//! It trusts the identity header `X-Auth-User` that gatehouse sets
//! (`anonymous` when absent). Besides the chat endpoints it reports exactly
//! what reached it (`/echo`) and records every request it saw
//! (`GET`/`DELETE /__requests`), so tests can assert the backend never saw a
//! request gatehouse should have refused. For quotas (SPEC §11) it answers
//! `POST /v1/chat/completions` like OpenAI — JSON, or SSE chunks with a
//! final `usage` chunk — with a deterministic usage reported in the body,
//! the `X-Gatehouse-Usage` header, both or neither, and can hold a stream
//! open after its first event; `/status/{code}` answers any status.
//!
//! This file is a module, not a crate: `examples/backend.rs` runs it, and
//! integration tests include it with
//! `#[path = "../../examples/backend_app.rs"] mod backend_app;`.

#[path = "assertion.rs"]
pub mod assertion;

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use futures_util::{stream, Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

/// The identity header gatehouse sets for the backend.
const IDENTITY_HEADER: &str = "x-auth-user";
/// The user reported when the identity header is absent.
const ANONYMOUS: &str = "anonymous";
/// The path serving the recorded requests; requests to it are not recorded.
const RECORDED_PATH: &str = "/__requests";

/// Every request that reached the app, oldest first, each described as
/// `{"method","path","query","headers"}`.
#[derive(Clone, Default)]
pub struct Recorded(Arc<Mutex<Vec<Value>>>);

impl Recorded {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Value>> {
        // A panicking handler cannot leave the list half-written.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The app with a fresh, empty request record; `/verified/whoami` checks
/// gatehouse's identity assertion with `keys` (none: it answers 503).
pub fn router(keys: Option<Arc<assertion::AssertionKeys>>) -> Router {
    let recorded = Recorded::default();
    let verified = Router::new().route("/verified/whoami", get(verified_whoami));
    let verified = match keys {
        Some(keys) => verified.layer(axum::Extension(keys)),
        None => verified,
    };
    Router::new()
        .merge(verified)
        .route("/health", get(health))
        .route("/chat", post(chat))
        .route("/chat/stream", get(chat_stream))
        .route("/ws", get(ws))
        .route("/echo", any(echo))
        .route("/echo/", any(echo))
        .route("/echo/{*path}", any(echo))
        .route("/upload", post(upload))
        .route("/slow", get(slow))
        .route("/status/{code}", any(status))
        .route("/v1/chat/completions", post(completions))
        .route(RECORDED_PATH, get(list_recorded).delete(clear_recorded))
        .layer(middleware::from_fn_with_state(recorded.clone(), record))
        .layer(DefaultBodyLimit::disable())
        .with_state(recorded)
}

/// Serves the app on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    keys: Option<Arc<assertion::AssertionKeys>>,
) -> std::io::Result<()> {
    axum::serve(listener, router(keys)).await
}

/// Records the request, then passes it on untouched (bodies keep streaming).
async fn record(State(recorded): State<Recorded>, request: Request, next: Next) -> Response {
    if request.uri().path() != RECORDED_PATH {
        recorded.lock().push(describe(&request));
    }
    next.run(request).await
}

/// Method, raw path, raw query and all headers (lowercase names, in order).
fn describe(request: &Request) -> Value {
    let headers: Vec<[String; 2]> = request
        .headers()
        .iter()
        .map(|(name, value)| [name.as_str().to_owned(), latin1(value)])
        .collect();
    json!({
        "method": request.method().as_str(),
        "path": request.uri().path(),
        "query": request.uri().query().unwrap_or(""),
        "headers": headers,
    })
}

/// Header bytes as text, the way ASGI servers decode them.
fn latin1(value: &HeaderValue) -> String {
    value.as_bytes().iter().copied().map(char::from).collect()
}

fn user(headers: &HeaderMap) -> String {
    headers
        .get(IDENTITY_HEADER)
        .map_or_else(|| ANONYMOUS.to_owned(), latin1)
}

/// Who the verified assertion says the user is.
async fn verified_whoami(
    assertion::GatehouseIdentity(who): assertion::GatehouseIdentity,
) -> Json<Value> {
    Json(json!({"sub": who.sub, "roles": who.roles, "method": who.method, "email": who.email}))
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

#[derive(Deserialize)]
struct ChatIn {
    message: String,
}

async fn chat(headers: HeaderMap, Json(body): Json<ChatIn>) -> Json<Value> {
    Json(json!({"user": user(&headers), "reply": format!("echo: {}", body.message)}))
}

#[derive(Deserialize)]
struct StreamParams {
    n: Option<u32>,
    interval_ms: Option<u64>,
}

/// `n` Server-Sent Events `{"i","user"}`, `interval_ms` apart, each written as
/// soon as it is due.
async fn chat_stream(
    headers: HeaderMap,
    Query(params): Query<StreamParams>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let user = user(&headers);
    let interval = Duration::from_millis(params.interval_ms.unwrap_or(200));
    let events = stream::iter(0..params.n.unwrap_or(5)).then(move |i| {
        let data = json!({"i": i, "user": user}).to_string();
        async move {
            if i > 0 {
                tokio::time::sleep(interval).await;
            }
            Ok(Event::default().data(data))
        }
    });
    Sse::new(events)
}

async fn ws(headers: HeaderMap, upgrade: WebSocketUpgrade) -> Response {
    let user = user(&headers);
    upgrade.on_upgrade(move |socket| greet_and_echo(socket, user))
}

/// Sends `hello <user>`, then echoes every message until the client closes.
async fn greet_and_echo(mut socket: WebSocket, user: String) {
    if socket
        .send(Message::Text(format!("hello {user}").into()))
        .await
        .is_err()
    {
        return;
    }
    while let Some(Ok(message)) = socket.recv().await {
        let reply = match message {
            Message::Text(_) | Message::Binary(_) => message,
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        if socket.send(reply).await.is_err() {
            break;
        }
    }
}

/// Any method: what arrived, and how many body bytes.
async fn echo(request: Request) -> Result<Json<Value>, StatusCode> {
    let mut described = describe(&request);
    let mut body_len = 0;
    let mut body = request.into_body().into_data_stream();
    while let Some(chunk) = body.next().await {
        body_len += chunk.map_err(|_| StatusCode::BAD_REQUEST)?.len();
    }
    described["body_len"] = json!(body_len);
    Ok(Json(described))
}

/// Counts and hashes the body chunk by chunk, never holding it whole.
async fn upload(body: Body) -> Result<Json<Value>, StatusCode> {
    let (mut bytes, mut digest) = (0, Sha256::new());
    let mut body = body.into_data_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| StatusCode::BAD_REQUEST)?;
        bytes += chunk.len();
        digest.update(&chunk);
    }
    let sha256: String = digest
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    Ok(Json(json!({"bytes": bytes, "sha256": sha256})))
}

#[derive(Deserialize)]
struct SlowParams {
    seconds: Option<f64>,
}

async fn slow(Query(params): Query<SlowParams>) -> Result<Json<Value>, StatusCode> {
    let seconds = params.seconds.unwrap_or(3.0);
    let delay = Duration::try_from_secs_f64(seconds).map_err(|_| StatusCode::BAD_REQUEST)?;
    tokio::time::sleep(delay).await;
    Ok(Json(json!({"slept": seconds})))
}

/// Answers with the status in the path (a backend's own 5xx, for tests).
async fn status(axum::extract::Path(code): axum::extract::Path<u16>) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    (code, Json(json!({"status": code.as_u16()}))).into_response()
}

/// How `/v1/chat/completions` reports its usage, from the query string.
#[derive(Deserialize)]
struct UsageParams {
    /// `body` (default: `usage` in the JSON, or a final SSE chunk when
    /// `stream_options.include_usage` is set), `header`
    /// (`X-Gatehouse-Usage` only), `both`, or `none`.
    report: Option<String>,
    /// The total tokens reported in the body (default 21).
    total: Option<u64>,
    /// The tokens reported in the header (default: `total`).
    header_tokens: Option<u64>,
    /// Milliseconds the stream is held open after its first event.
    hold_ms: Option<u64>,
}

/// An OpenAI-compatible chat completion with a deterministic `usage`:
/// JSON, or SSE chunks (`"stream": true`) ending in `data: [DONE]`.
async fn completions(Query(params): Query<UsageParams>, Json(body): Json<Value>) -> Response {
    let report = params.report.as_deref().unwrap_or("body");
    let total = params.total.unwrap_or(21);
    let in_body = matches!(report, "body" | "both");
    let usage = json!({"prompt_tokens": 9, "completion_tokens": total.saturating_sub(9), "total_tokens": total});
    let header = matches!(report, "header" | "both")
        .then(|| params.header_tokens.unwrap_or(total).to_string());
    let stream = body["stream"].as_bool().unwrap_or(false);
    let mut response = if stream {
        let include_usage = body["stream_options"]["include_usage"]
            .as_bool()
            .unwrap_or(false);
        let chunk = |content: &str| {
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk",
                   "choices": [{"index": 0, "delta": {"content": content}}], "usage": null})
            .to_string()
        };
        let mut events = vec![chunk("Hel"), chunk("lo")];
        if include_usage && in_body {
            events.push(
                json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": usage})
                    .to_string(),
            );
        }
        events.push("[DONE]".to_owned());
        let hold = Duration::from_millis(params.hold_ms.unwrap_or(0));
        let events =
            stream::iter(events.into_iter().enumerate()).then(move |(i, data)| async move {
                if i == 1 {
                    tokio::time::sleep(hold).await;
                }
                Ok::<_, Infallible>(Event::default().data(data))
            });
        Sse::new(events).into_response()
    } else {
        let mut answer = json!({"id": "chatcmpl-1", "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}]});
        if in_body {
            answer["usage"] = usage;
        }
        Json(answer).into_response()
    };
    if let Some(value) = header.and_then(|h| HeaderValue::from_str(&h).ok()) {
        response.headers_mut().insert("x-gatehouse-usage", value);
    }
    response
}

async fn list_recorded(State(recorded): State<Recorded>) -> Json<Value> {
    Json(Value::Array(recorded.lock().clone()))
}

async fn clear_recorded(State(recorded): State<Recorded>) -> impl IntoResponse {
    recorded.lock().clear();
    StatusCode::NO_CONTENT
}
