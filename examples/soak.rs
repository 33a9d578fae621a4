//! The soak load generator (README "Reliability", issue 16):
//! `benches/soak/run.sh` starts gatehouse in front of the example FastAPI
//! chatbot and runs this for SECONDS of mixed traffic — proxied JWT and
//! API-key requests, logins, refreshes and logouts, long Server-Sent Event
//! streams, WebSockets, oversized bodies, 401s, 429s, CORS preflights and
//! browser-session requests (SPEC §9) — while it samples gatehouse's memory
//! (`VmRSS`), open descriptors and `gatehouse_connections_open` every second.
//!
//! Every kind of request in the mix names the statuses it asks for: a 401
//! probe asks for 401, an oversized body for 413, a rate-limit burst for 200
//! or 429. Any other status, a transport error or a wrong answer (a stream
//! with events missing, a WebSocket echo that differs, the wrong identity at
//! the backend) is *unexpected* and printed with its kind. The run fails
//! (exit status 1) when there is any unexpected answer, when an expected
//! status never came, when `VmRSS` at the end of the load is more than
//! `--max-rss-growth` above its value at the checkpoint (minute 2, or a
//! third of a shorter run), or when the descriptors and the open-connection
//! gauge are not back to their baseline within `--settle` seconds after the
//! load stops.
//!
//! Secrets come from the environment and are never printed:
//! `SOAK_PASSWORD` (the password of `--user`) and `SOAK_API_KEY`.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use futures_util::{SinkExt as _, StreamExt as _};
use reqwest::header::HeaderMap;
use rustls::pki_types::{pem::PemObject as _, CertificateDer};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest as _, Message};
use tokio_util::sync::CancellationToken;

/// Mixed load against one gatehouse, watching its memory and descriptors.
#[derive(Parser)]
struct Args {
    /// gatehouse's HTTPS listener (requests go to `https://localhost:PORT`).
    #[arg(long)]
    https: SocketAddr,
    /// gatehouse's admin listener (`/metrics`).
    #[arg(long)]
    admin: SocketAddr,
    /// The backend itself, to empty its request record now and then.
    #[arg(long)]
    backend: SocketAddr,
    /// gatehouse's process id (its `/proc/<pid>` is sampled).
    #[arg(long)]
    pid: u32,
    /// The PEM certificate gatehouse serves (trusted as the only root).
    #[arg(long)]
    ca: PathBuf,
    /// The user of the users file (its password is `SOAK_PASSWORD`).
    #[arg(long, default_value = "soak")]
    user: String,
    /// The API key's id in the config (the backend sees it as the user).
    #[arg(long, default_value = "soak-bot")]
    api_key_id: String,
    /// An origin in `cors.allowed_origins`.
    #[arg(long, default_value = "https://chat.soak.example")]
    cors_origin: String,
    /// Seconds of load.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Multiplies every request rate (1: about 70 requests a second, plus
    /// 3 event streams and 2 WebSockets open at any time).
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Seconds after the load within which descriptors and the connection
    /// gauge must be back to their baseline.
    #[arg(long, default_value_t = 30)]
    settle: u64,
    /// Second of the load whose RSS the end is compared with (default: 120,
    /// or a third of a run shorter than 5 minutes).
    #[arg(long)]
    rss_checkpoint: Option<u64>,
    /// The RSS growth allowed from the checkpoint to the end, in percent.
    #[arg(long, default_value_t = 10.0)]
    max_rss_growth: f64,
}

// ------------------------------------------------------------ the mix --

/// Which latency figure a request counts in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lat {
    /// Forwarded to the backend and answered by it.
    Proxied,
    /// Answered by gatehouse itself without a password check (401, 403,
    /// 404, 413, 429, preflights, redirects, refresh and logout).
    Own,
    /// A password check (argon2id): `/login` and the session sign-in.
    Login,
    /// Streams and WebSockets: their length is the load's choice.
    None,
}

/// One kind of request in the mix and the statuses it asks for.
struct Kind {
    name: &'static str,
    /// Anything else is unexpected; each of them must come at least once.
    expect: &'static [u16],
    lat: Lat,
}

const fn kind(name: &'static str, expect: &'static [u16], lat: Lat) -> Kind {
    Kind { name, expect, lat }
}

const JWT_GET: Kind = kind("JWT GET (HTTP/2)", &[200], Lat::Proxied);
const JWT_GET_H1: Kind = kind("JWT GET (HTTP/1.1)", &[200], Lat::Proxied);
const KEY_POST: Kind = kind("API-key POST (HTTP/2)", &[200], Lat::Proxied);
const KEY_POST_H1: Kind = kind("API-key POST (HTTP/1.1)", &[200], Lat::Proxied);
const UPLOAD: Kind = kind("upload 32 KiB (API key)", &[200], Lat::Proxied);
const CORS_GET: Kind = kind("CORS GET (allowed origin)", &[200], Lat::Proxied);
const COMPLETION: Kind = kind("chat completion (API key)", &[200], Lat::Proxied);
const LOGIN: Kind = kind("POST /login", &[200], Lat::Login);
const FRESH_GET: Kind = kind("JWT GET, fresh token", &[200], Lat::Proxied);
const REFRESH: Kind = kind("POST /auth/refresh", &[200], Lat::Own);
const LOGOUT: Kind = kind("POST /auth/logout (bearer)", &[204], Lat::Own);
const ENDED_TOKEN: Kind = kind("token after logout/reuse", &[401], Lat::Own);
const SPENT_REFRESH: Kind = kind("spent refresh token", &[401], Lat::Own);
const BAD_LOGIN: Kind = kind("wrong password", &[401], Lat::Login);
const NO_CREDENTIALS: Kind = kind("no credentials", &[401], Lat::Own);
const BAD_JWT: Kind = kind("bad JWT signature", &[401], Lat::Own);
const BAD_KEY: Kind = kind("unknown API key", &[401], Lat::Own);
const NO_ROUTE: Kind = kind("no route (deny)", &[404], Lat::Own);
const PREFLIGHT: Kind = kind("CORS preflight", &[204], Lat::Own);
const PREFLIGHT_DENIED: Kind = kind("CORS preflight, unknown origin", &[403], Lat::Own);
const OVERSIZED: Kind = kind("oversized body (Content-Length, Expect)", &[413], Lat::Own);
const OVERSIZED_CHUNKED: Kind = kind("oversized body (chunked)", &[413], Lat::Own);
const BURST: Kind = kind("rate-limit burst", &[200, 429], Lat::Own);
const SESSION_LOGIN: Kind = kind("session sign-in", &[200], Lat::Login);
const SESSION_GET: Kind = kind("session GET", &[200], Lat::Proxied);
const SESSION_POST: Kind = kind("session POST, same origin", &[200], Lat::Proxied);
const SESSION_CSRF: Kind = kind("session POST, cross-site", &[403], Lat::Own);
const SESSION_SSE: Kind = kind("session event stream", &[200], Lat::None);
const SESSION_WS: Kind = kind("session WebSocket", &[101], Lat::None);
const NAVIGATE: Kind = kind("navigation, no cookie", &[302], Lat::Own);
const FETCH_NO_COOKIE: Kind = kind("fetch, no cookie", &[401], Lat::Own);
const SESSION_LOGOUT: Kind = kind("session sign-out", &[204], Lat::Own);
const ENDED_COOKIE: Kind = kind("cookie after sign-out", &[401], Lat::Own);
const SSE: Kind = kind("event stream, 15 s", &[200], Lat::None);
const COMPLETION_SSE: Kind = kind("completion stream", &[200], Lat::None);
const WS: Kind = kind("WebSocket, 15 s", &[101], Lat::None);
const WS_NO_CREDENTIALS: Kind = kind("WebSocket, no credentials", &[401], Lat::Own);

/// Every kind, in the order of the report.
const KINDS: &[&Kind] = &[
    &JWT_GET,
    &JWT_GET_H1,
    &KEY_POST,
    &KEY_POST_H1,
    &UPLOAD,
    &CORS_GET,
    &COMPLETION,
    &LOGIN,
    &FRESH_GET,
    &REFRESH,
    &LOGOUT,
    &ENDED_TOKEN,
    &SPENT_REFRESH,
    &BAD_LOGIN,
    &NO_CREDENTIALS,
    &BAD_JWT,
    &BAD_KEY,
    &NO_ROUTE,
    &PREFLIGHT,
    &PREFLIGHT_DENIED,
    &OVERSIZED,
    &OVERSIZED_CHUNKED,
    &BURST,
    &SESSION_LOGIN,
    &SESSION_GET,
    &SESSION_POST,
    &SESSION_CSRF,
    &SESSION_SSE,
    &SESSION_WS,
    &NAVIGATE,
    &FETCH_NO_COOKIE,
    &SESSION_LOGOUT,
    &ENDED_COOKIE,
    &SSE,
    &COMPLETION_SSE,
    &WS,
    &WS_NO_CREDENTIALS,
];

/// The server's body limit (`max_request_body` in benches/soak/gatehouse.yaml).
const BODY_LIMIT: usize = 64 * 1024;
/// Events of a long stream, and the pause between two (15 s in all).
const SSE_EVENTS: usize = 60;
const SSE_INTERVAL_MS: u64 = 250;
/// Messages of a long WebSocket, and the pause between two (15 s in all).
const WS_MESSAGES: usize = 30;
const WS_INTERVAL: Duration = Duration::from_millis(500);
/// A short request's answer must come within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest wait for a stream's next event or a WebSocket's next frame.
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

// ------------------------------------------------------------ the tally --

/// Answers by kind and status, unexpected ones, and latencies by bucket.
struct Stats {
    load_start: Instant,
    bucket: Duration,
    tally: Mutex<Tally>,
}

#[derive(Default)]
struct Tally {
    /// kind → answer ("200", or what went wrong) → count.
    answers: BTreeMap<&'static str, BTreeMap<String, u64>>,
    unexpected: u64,
    /// The first unexpected answers, in full.
    examples: Vec<String>,
    /// Per bucket: requests, and latencies in µs for Proxied, Own, Login.
    buckets: Vec<Bucket>,
}

#[derive(Default)]
struct Bucket {
    requests: u64,
    latency: [Vec<u32>; 3],
}

const MAX_EXAMPLES: usize = 20;

impl Stats {
    fn lock(&self) -> MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bucket_of(&self, tally: &mut Tally) -> usize {
        let i = (self.load_start.elapsed().as_secs_f64() / self.bucket.as_secs_f64()) as usize;
        if tally.buckets.len() <= i {
            tally.buckets.resize_with(i + 1, Bucket::default);
        }
        i
    }

    /// An answer with `status`, `latency` after the request was sent;
    /// `detail` (gatehouse's error code) is shown when it is unexpected.
    fn answered(&self, kind: &'static Kind, status: u16, latency: Duration, detail: &str) {
        let mut tally = self.lock();
        let i = self.bucket_of(&mut tally);
        let bucket = &mut tally.buckets[i];
        bucket.requests += 1;
        let slot = match kind.lat {
            Lat::Proxied => Some(0),
            Lat::Own => Some(1),
            Lat::Login => Some(2),
            Lat::None => None,
        };
        if let Some(slot) = slot {
            let micros = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
            bucket.latency[slot].push(micros);
        }
        let label = if kind.expect.contains(&status) || detail.is_empty() {
            status.to_string()
        } else {
            format!("{status} {detail}")
        };
        if !kind.expect.contains(&status) {
            note_unexpected(&mut tally, kind, &label);
        }
        *tally
            .answers
            .entry(kind.name)
            .or_default()
            .entry(label)
            .or_default() += 1;
    }

    /// A request that failed (a transport error) or an answer that was wrong.
    fn failed(&self, kind: &'static Kind, what: &str) {
        let mut tally = self.lock();
        let i = self.bucket_of(&mut tally);
        tally.buckets[i].requests += 1;
        note_unexpected(&mut tally, kind, what);
        let label: String = what.chars().take(80).collect();
        *tally
            .answers
            .entry(kind.name)
            .or_default()
            .entry(label)
            .or_default() += 1;
    }
}

fn note_unexpected(tally: &mut Tally, kind: &Kind, what: &str) {
    tally.unexpected += 1;
    if tally.examples.len() < MAX_EXAMPLES {
        tally.examples.push(format!("{}: {what}", kind.name));
    }
}

/// gatehouse's error code in a JSON error body (`{"error": ...}`), or "".
fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(|s| s.chars().take(40).collect()))
        .unwrap_or_default()
}

/// A transport error, short, with its causes (no URL carries a secret).
fn describe(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.chars().take(200).collect()
}

// ------------------------------------------------------------- requests --

/// What the generator shares between its tasks.
struct Ctx {
    https: SocketAddr,
    /// `https://localhost:PORT`, the origin a browser sees.
    origin: String,
    h2: reqwest::Client,
    h1: reqwest::Client,
    tls: Arc<rustls::ClientConfig>,
    user: String,
    password: String,
    api_key: String,
    api_key_id: String,
    cors_origin: String,
    /// The access token of the login at the start (valid for the run).
    token: String,
    rate: f64,
    stats: Arc<Stats>,
    stop: CancellationToken,
}

/// A complete answer.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// Checks nothing.
fn any(_: &Answer) -> Result<(), String> {
    Ok(())
}

impl Ctx {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    fn client(&self, h2: bool) -> &reqwest::Client {
        if h2 {
            &self.h2
        } else {
            &self.h1
        }
    }

    /// Sends `req` and counts its answer under `kind`; the answer when its
    /// status is one `kind` asks for and `check` finds nothing wrong.
    async fn call(
        &self,
        kind: &'static Kind,
        req: reqwest::RequestBuilder,
        check: impl FnOnce(&Answer) -> Result<(), String>,
    ) -> Option<Answer> {
        let sent = Instant::now();
        let res = match req.timeout(REQUEST_TIMEOUT).send().await {
            Ok(res) => res,
            Err(err) => {
                self.stats.failed(kind, &describe(&err));
                return None;
            }
        };
        let latency = sent.elapsed();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = match res.bytes().await {
            Ok(body) => body,
            Err(err) => {
                self.stats.failed(
                    kind,
                    &format!("{status}, then the body failed: {}", describe(&err)),
                );
                return None;
            }
        };
        let answer = Answer {
            status,
            headers,
            body,
        };
        if !kind.expect.contains(&status) {
            self.stats
                .answered(kind, status, latency, &error_code(&answer.body));
            return None;
        }
        if let Err(what) = check(&answer) {
            self.stats.failed(kind, &format!("{status} but {what}"));
            return None;
        }
        self.stats.answered(kind, status, latency, "");
        Some(answer)
    }

    /// `GET /echo/jwt/...` with `token`: the backend must see `user`.
    async fn jwt_echo(&self, kind: &'static Kind, h2: bool, token: &str, i: u64) {
        let req = self
            .client(h2)
            .get(self.url(&format!("/echo/jwt/item?i={i}")))
            .bearer_auth(token);
        let user = self.user.clone();
        self.call(kind, req, |a| identity_is(a, &user)).await;
    }

    /// `POST /login` with the right password: (access, refresh).
    async fn login(&self) -> Option<(String, String)> {
        let req = self
            .h2
            .post(self.url("/login"))
            .json(&json!({"username": self.user, "password": self.password}));
        let answer = self.call(&LOGIN, req, tokens_of).await?;
        token_pair(&answer.json())
    }

    /// A WebSocket to `/ws` with `headers`, counted under `kind`; when it
    /// opens: the greeting, then `messages` echoes `interval` apart.
    async fn websocket(
        &self,
        kind: &'static Kind,
        headers: &[(&'static str, String)],
        greeting: &str,
        messages: usize,
        interval: Duration,
    ) {
        let mut req =
            match format!("wss://localhost:{}/ws", self.https.port()).into_client_request() {
                Ok(req) => req,
                Err(err) => return self.stats.failed(kind, &describe(&err)),
            };
        for (name, value) in headers {
            match http::HeaderValue::from_str(value) {
                Ok(value) => {
                    req.headers_mut().insert(*name, value);
                }
                Err(err) => return self.stats.failed(kind, &describe(&err)),
            }
        }
        let sent = Instant::now();
        let tcp = match TcpStream::connect(self.https).await {
            Ok(tcp) => tcp,
            Err(err) => return self.stats.failed(kind, &describe(&err)),
        };
        let connector = tokio_tungstenite::Connector::Rustls(self.tls.clone());
        let (mut ws, res) =
            match tokio_tungstenite::client_async_tls_with_config(req, tcp, None, Some(connector))
                .await
            {
                Ok(opened) => opened,
                Err(tungstenite::Error::Http(res)) => {
                    let body = res.body().as_deref().unwrap_or_default();
                    let code = error_code(body);
                    return self
                        .stats
                        .answered(kind, res.status().as_u16(), sent.elapsed(), &code);
                }
                Err(err) => return self.stats.failed(kind, &describe(&err)),
            };
        let latency = sent.elapsed();
        let status = res.status().as_u16();
        if !kind.expect.contains(&status) {
            return self.stats.answered(kind, status, latency, "");
        }
        let talk = async {
            match next_frame(&mut ws).await? {
                Message::Text(text) if text.as_str() == greeting => {}
                other => return Err(format!("greeting {other:?}")),
            }
            for i in 0..messages {
                tokio::time::sleep(interval).await;
                let sent = format!("soak {i}");
                ws.send(Message::text(sent.clone()))
                    .await
                    .map_err(|e| format!("send: {}", describe(&e)))?;
                match next_frame(&mut ws).await? {
                    Message::Text(text) if text.as_str() == sent => {}
                    other => return Err(format!("echo {i}: {other:?}")),
                }
            }
            ws.close(None)
                .await
                .map_err(|e| format!("close: {}", describe(&e)))?;
            // The peer's close frame, then the end.
            while let Some(frame) = tokio::time::timeout(FRAME_TIMEOUT, ws.next())
                .await
                .map_err(|_| "no close from the server".to_owned())?
            {
                match frame {
                    Ok(_) => {}
                    Err(tungstenite::Error::ConnectionClosed) => break,
                    Err(err) => return Err(format!("closing: {}", describe(&err))),
                }
            }
            Ok(())
        };
        match talk.await {
            Ok(()) => self.stats.answered(kind, status, latency, ""),
            Err(what) => self.stats.failed(kind, &format!("{status} but {what}")),
        }
    }

    /// An event stream: `req` must answer 200 and a number of events
    /// (`data:` lines) in `events`, none more than [`FRAME_TIMEOUT`] after
    /// the one before, the last ending with `last`.
    async fn event_stream(
        &self,
        kind: &'static Kind,
        req: reqwest::RequestBuilder,
        events: std::ops::RangeInclusive<usize>,
        last: &str,
    ) {
        let sent = Instant::now();
        let res = match req.send().await {
            Ok(res) => res,
            Err(err) => return self.stats.failed(kind, &describe(&err)),
        };
        let latency = sent.elapsed();
        let status = res.status().as_u16();
        if !kind.expect.contains(&status) {
            let body = tokio::time::timeout(FRAME_TIMEOUT, res.bytes())
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            return self
                .stats
                .answered(kind, status, latency, &error_code(&body));
        }
        let mut body = Vec::new();
        let mut chunks = res.bytes_stream();
        let outcome = loop {
            match tokio::time::timeout(FRAME_TIMEOUT, chunks.next()).await {
                Err(_) => break Err(format!("no event for {FRAME_TIMEOUT:?}")),
                Ok(None) => break Ok(()),
                Ok(Some(Ok(chunk))) => body.extend_from_slice(&chunk),
                Ok(Some(Err(err))) => break Err(describe(&err)),
            }
        };
        let text = String::from_utf8_lossy(&body);
        let got = text.lines().filter(|l| l.starts_with("data:")).count();
        let outcome = outcome.and_then(|()| {
            if !events.contains(&got) {
                Err(format!("{got} events (asked for {events:?})"))
            } else if !text.trim_end().ends_with(last) {
                Err(format!("the stream did not end with {last:?}"))
            } else {
                Ok(())
            }
        });
        match outcome {
            Ok(()) => self.stats.answered(kind, status, latency, ""),
            Err(what) => self.stats.failed(kind, &format!("{status} but {what}")),
        }
    }
}

impl Ctx {
    /// `POST /upload` declaring a body over the limit, as curl sends a
    /// large one: with `Expect: 100-continue`, the body only after a `100`.
    /// gatehouse must answer 413 at once, without asking for the body.
    /// (Sent without `Expect`, the body races gatehouse's close: see README
    /// "Reliability".)
    async fn declared_oversized(&self) {
        let kind = &OVERSIZED;
        let length = BODY_LIMIT + BODY_LIMIT / 2;
        let head = format!(
            "POST /upload HTTP/1.1\r\nHost: localhost:{}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: {length}\r\n\
             Expect: 100-continue\r\n\r\n",
            self.https.port(),
            self.token
        );
        let sent = Instant::now();
        let exchange = async {
            let tcp = TcpStream::connect(self.https)
                .await
                .map_err(|e| describe(&e))?;
            let name =
                rustls::pki_types::ServerName::try_from("localhost").map_err(|e| describe(&e))?;
            let mut tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| describe(&e))?;
            tls.write_all(head.as_bytes())
                .await
                .map_err(|e| describe(&e))?;
            let mut answer = read_head(&mut tls).await?;
            let mut latency = sent.elapsed();
            if answer.0 == 100 {
                // Asked for the body: send it, then read the real answer.
                tls.write_all(&vec![b'o'; length])
                    .await
                    .map_err(|e| describe(&e))?;
                answer = read_head(&mut tls).await?;
                latency = sent.elapsed();
            }
            Ok::<_, String>((answer, latency))
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Err(_) => self.stats.failed(kind, "no answer within 30 s"),
            Ok(Err(what)) => self.stats.failed(kind, &what),
            Ok(Ok(((status, body), latency))) => {
                let code = error_code(&body);
                if status == 413 && code != "payload_too_large" {
                    self.stats.failed(kind, &format!("413 but error {code:?}"));
                } else {
                    self.stats.answered(kind, status, latency, &code);
                }
            }
        }
    }
}

/// An HTTP/1.1 answer's status and, when it has a `Content-Length`, its
/// body.
async fn read_head<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<(u16, Vec<u8>), String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await.map_err(|e| describe(&e))?;
        if n == 0 {
            return Err("the connection closed before an answer".to_owned());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("a bad status line: {:?}", head.lines().next()))?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.map_err(|e| describe(&e))?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok((status, body))
}

/// The next WebSocket data frame (pings are answered by tungstenite).
async fn next_frame(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
) -> Result<Message, String> {
    loop {
        match tokio::time::timeout(FRAME_TIMEOUT, ws.next()).await {
            Err(_) => return Err(format!("no frame for {FRAME_TIMEOUT:?}")),
            Ok(None) => return Err("closed".to_owned()),
            Ok(Some(Err(err))) => return Err(describe(&err)),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(Some(Ok(message))) => return Ok(message),
        }
    }
}

/// The value of header `name` that the backend echoed (`/echo`).
fn echoed_header(answer: &Answer, name: &str) -> Option<String> {
    answer.json()["headers"].as_array().and_then(|headers| {
        headers.iter().find_map(|pair| {
            (pair[0].as_str()? == name).then(|| pair[1].as_str().map(str::to_owned))?
        })
    })
}

/// The backend saw `user` in `X-Auth-User`.
fn identity_is(answer: &Answer, user: &str) -> Result<(), String> {
    match echoed_header(answer, "x-auth-user") {
        Some(seen) if seen == user => Ok(()),
        seen => Err(format!("the backend saw X-Auth-User {seen:?}")),
    }
}

fn token_pair(body: &Value) -> Option<(String, String)> {
    Some((
        body["access_token"].as_str()?.to_owned(),
        body["refresh_token"].as_str()?.to_owned(),
    ))
}

fn tokens_of(answer: &Answer) -> Result<(), String> {
    token_pair(&answer.json())
        .map(|_| ())
        .ok_or_else(|| "no token pair in the body".to_owned())
}

/// The session cookie's value in a `Set-Cookie`.
fn session_cookie(answer: &Answer) -> Option<String> {
    answer
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("__Host-gatehouse="))
        .map(|rest| rest.split(';').next().unwrap_or("").to_owned())
        .filter(|value| !value.is_empty())
}

// ------------------------------------------------------------ scenarios --

/// Runs `scenario` again and again until the load stops, starting at most
/// `per_second` times a second (one at a time: a slow answer slows it).
fn paced<F, Fut>(tasks: &mut JoinSet<()>, ctx: &Arc<Ctx>, per_second: f64, scenario: F)
where
    F: Fn(Arc<Ctx>, u64) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let ctx = ctx.clone();
    let period = Duration::from_secs_f64(1.0 / per_second.max(0.001));
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        for i in 0u64.. {
            tokio::select! {
                biased;
                () = ctx.stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            tokio::select! {
                biased;
                () = ctx.stop.cancelled() => break,
                () = scenario(ctx.clone(), i) => {}
            }
        }
    });
}

/// Starts every kind of traffic; `rate` multiplies each request rate and
/// the number of streams held open.
fn start_load(tasks: &mut JoinSet<()>, ctx: &Arc<Ctx>) {
    let r = ctx.rate;
    // Proxied requests with the long-lived token and the API key.
    for h2 in [true, true, false, false] {
        let kind = if h2 { &JWT_GET } else { &JWT_GET_H1 };
        paced(tasks, ctx, 8.0 * r, move |c, i| async move {
            c.jwt_echo(kind, h2, &c.token, i).await;
        });
    }
    for h2 in [true, false] {
        let kind = if h2 { &KEY_POST } else { &KEY_POST_H1 };
        paced(tasks, ctx, 5.0 * r, move |c, i| async move {
            let req = c
                .client(h2)
                .post(c.url(&format!("/echo/key/message?i={i}")))
                .header("x-api-key", &c.api_key)
                .json(&json!({"message": "x".repeat(1000)}));
            let id = c.api_key_id.clone();
            c.call(kind, req, |a| identity_is(a, &id)).await;
        });
    }
    paced(tasks, ctx, 1.0 * r, |c, _| async move {
        let req =
            c.h2.post(c.url("/upload"))
                .header("x-api-key", &c.api_key)
                .body(vec![b'u'; 32 * 1024]);
        c.call(&UPLOAD, req, |a| match a.json()["bytes"].as_u64() {
            Some(32768) => Ok(()),
            other => Err(format!("the backend read {other:?} bytes")),
        })
        .await;
    });
    paced(tasks, ctx, 1.0 * r, |c, _| async move {
        let req =
            c.h2.post(c.url("/v1/chat/completions"))
                .header("x-api-key", &c.api_key)
                .json(&json!({"messages": [{"role": "user", "content": "hello from the soak"}]}));
        c.call(&COMPLETION, req, |a| match a.json()["object"].as_str() {
            Some("chat.completion") => Ok(()),
            other => Err(format!("object {other:?}")),
        })
        .await;
    });

    // CORS.
    paced(tasks, ctx, 2.0 * r, |c, _| async move {
        let origin = c.cors_origin.clone();
        let req =
            c.h2.get(c.url("/echo/jwt/cors"))
                .bearer_auth(&c.token)
                .header("origin", &origin);
        c.call(&CORS_GET, req, |a| allows_origin(a, &origin)).await;
    });
    paced(tasks, ctx, 3.0 * r, |c, _| async move {
        let origin = c.cors_origin.clone();
        let req =
            c.h2.request(reqwest::Method::OPTIONS, c.url("/echo/jwt/cors"))
                .header("origin", &origin)
                .header("access-control-request-method", "POST")
                .header(
                    "access-control-request-headers",
                    "authorization, content-type",
                );
        c.call(&PREFLIGHT, req, |a| allows_origin(a, &origin)).await;
    });
    paced(tasks, ctx, 1.0 * r, |c, _| async move {
        let req =
            c.h2.request(reqwest::Method::OPTIONS, c.url("/echo/jwt/cors"))
                .header("origin", "https://evil.soak.example")
                .header("access-control-request-method", "POST");
        c.call(&PREFLIGHT_DENIED, req, any).await;
    });

    // Refusals gatehouse answers itself.
    paced(tasks, ctx, 4.0 * r, |c, i| async move {
        match i % 5 {
            0 => {
                let req = c.h2.get(c.url("/echo/jwt/x"));
                c.call(&NO_CREDENTIALS, req, www_authenticate).await;
            }
            1 => {
                // A well-formed token whose signature is not gatehouse's.
                let forged = match c.token.rsplit_once('.') {
                    Some((signed, _)) => format!("{signed}.c29hay1mb3JnZWQtc2lnbmF0dXJl"),
                    None => "not.a.token".to_owned(),
                };
                let req = c.h2.get(c.url("/echo/jwt/x")).bearer_auth(forged);
                c.call(&BAD_JWT, req, www_authenticate).await;
            }
            2 => {
                let req =
                    c.h1.get(c.url("/echo/key/x"))
                        .header("x-api-key", "soak-this-key-is-unknown");
                c.call(&BAD_KEY, req, www_authenticate).await;
            }
            3 => {
                let req = c.h2.get(c.url("/nowhere")).bearer_auth(&c.token);
                c.call(&NO_ROUTE, req, any).await;
            }
            _ => {
                c.websocket(&WS_NO_CREDENTIALS, &[], "", 0, Duration::ZERO)
                    .await;
            }
        }
    });
    paced(tasks, ctx, 0.5 * r, |c, _| async move {
        // An unknown user: it is locked out after a few failures, and a
        // locked account is answered the same 401.
        let req =
            c.h1.post(c.url("/login"))
                .json(&json!({"username": "intruder", "password": "guess"}));
        c.call(&BAD_LOGIN, req, any).await;
    });
    paced(tasks, ctx, 1.0 * r, |c, i| async move {
        if i.is_multiple_of(2) {
            c.declared_oversized().await;
        } else {
            // 72 KiB: the last chunk is on its way when gatehouse, having
            // read past the limit, answers and closes.
            let chunks = futures_util::stream::iter(
                (0..9).map(|_| Ok::<_, std::io::Error>(vec![b'c'; BODY_LIMIT / 8])),
            );
            let req =
                c.h1.post(c.url("/upload"))
                    .bearer_auth(&c.token)
                    .body(reqwest::Body::wrap_stream(chunks));
            c.call(&OVERSIZED_CHUNKED, req, payload_too_large).await;
        }
    });
    // 8 requests at once to a route allowing 2/s with a burst of 4.
    paced(tasks, ctx, 0.5 * r, |c, i| async move {
        let burst = (0..8).map(|j| {
            let req =
                c.h2.get(c.url(&format!("/echo/limited/{i}/{j}")))
                    .bearer_auth(&c.token);
            c.call(&BURST, req, |a| {
                if a.status == 429 && a.header("retry-after").is_empty() {
                    Err("no Retry-After".to_owned())
                } else {
                    Ok(())
                }
            })
        });
        futures_util::future::join_all(burst).await;
    });

    // Token lifecycles: login, refresh, then a logout or a refresh-token
    // reuse, after which the family's tokens are refused.
    paced(tasks, ctx, 0.5 * r, |c, i| async move {
        token_lifecycle(&c, i).await;
    });
    // Browser sessions.
    paced(tasks, ctx, 0.33 * r, |c, i| async move {
        browser_session(&c, i).await;
    });

    // Long streams and WebSockets, held open one after the other.
    let streams = (3.0 * r).ceil() as usize;
    for s in 0..streams {
        paced(tasks, ctx, 1000.0, move |c, _| async move {
            let path = format!("/chat/stream?n={SSE_EVENTS}&interval_ms={SSE_INTERVAL_MS}");
            let req = c.client(s % 3 != 2).get(c.url(&path)).bearer_auth(&c.token);
            let last = format!("\"user\":\"{}\"}}", c.user);
            c.event_stream(&SSE, req, SSE_EVENTS..=SSE_EVENTS, &last)
                .await;
        });
    }
    paced(tasks, ctx, 0.25 * r, |c, _| async move {
        let req = c
            .h2
            .post(c.url("/v1/chat/completions"))
            .header("x-api-key", &c.api_key)
            .json(
                &json!({"messages": [{"role": "user", "content": "stream to me"}], "stream": true}),
            );
        // The role chunk, a chunk per word of the reply, the finish, [DONE].
        c.event_stream(&COMPLETION_SSE, req, 4..=1000, "data: [DONE]")
            .await;
    });
    let sockets = (2.0 * r).ceil() as usize;
    for _ in 0..sockets {
        paced(tasks, ctx, 1000.0, |c, _| async move {
            let greeting = format!("hello {}", c.user);
            let auth = [("authorization", format!("Bearer {}", c.token))];
            c.websocket(&WS, &auth, &greeting, WS_MESSAGES, WS_INTERVAL)
                .await;
        });
    }
}

fn allows_origin(answer: &Answer, origin: &str) -> Result<(), String> {
    match answer.header("access-control-allow-origin") {
        allowed if allowed == origin => Ok(()),
        other => Err(format!("Access-Control-Allow-Origin {other:?}")),
    }
}

fn www_authenticate(answer: &Answer) -> Result<(), String> {
    if answer.header("www-authenticate").starts_with("Bearer") {
        Ok(())
    } else {
        Err("no WWW-Authenticate: Bearer".to_owned())
    }
}

fn payload_too_large(answer: &Answer) -> Result<(), String> {
    match error_code(&answer.body).as_str() {
        "payload_too_large" => Ok(()),
        other => Err(format!("error {other:?}")),
    }
}

/// Login, a request with the fresh token, a refresh and a request with its
/// token; then (even `i`) a logout or (odd `i`) the reuse of the spent
/// refresh token, either of which ends the family: its access token and
/// refresh token are refused from then on.
async fn token_lifecycle(c: &Ctx, i: u64) {
    let Some((access, refresh)) = c.login().await else {
        return;
    };
    c.jwt_echo(&FRESH_GET, true, &access, i).await;
    let req =
        c.h2.post(c.url("/auth/refresh"))
            .json(&json!({"refresh_token": refresh}));
    let Some(renewed) = c.call(&REFRESH, req, tokens_of).await else {
        return;
    };
    let Some((access2, refresh2)) = token_pair(&renewed.json()) else {
        return;
    };
    c.jwt_echo(&FRESH_GET, false, &access2, i).await;
    if i.is_multiple_of(2) {
        let req =
            c.h2.post(c.url("/auth/logout"))
                .bearer_auth(&access2)
                .json(&json!({"refresh_token": refresh2}));
        if c.call(&LOGOUT, req, any).await.is_none() {
            return;
        }
    } else {
        // Reuse of a spent refresh token: the whole family is revoked.
        let req =
            c.h1.post(c.url("/auth/refresh"))
                .json(&json!({"refresh_token": refresh}));
        c.call(&SPENT_REFRESH, req, any).await;
    }
    let req = c.h2.get(c.url("/echo/jwt/after")).bearer_auth(&access2);
    c.call(&ENDED_TOKEN, req, www_authenticate).await;
    let req =
        c.h2.post(c.url("/auth/refresh"))
            .json(&json!({"refresh_token": refresh2}));
    c.call(&SPENT_REFRESH, req, any).await;
}

/// A browser's visit: sign in (JSON), a page's fetches, a cross-site POST
/// riding the cookie (refused), an event stream and a WebSocket on the
/// cookie, requests without it (a navigation is sent to the sign-in page,
/// a fetch gets 401), sign out, and the old cookie refused.
async fn browser_session(c: &Ctx, i: u64) {
    let same_origin = |req: reqwest::RequestBuilder| {
        req.header("origin", &c.origin)
            .header("sec-fetch-site", "same-origin")
            .header("sec-fetch-mode", "cors")
    };
    let req = same_origin(c.h2.post(c.url("/auth/login")))
        .json(&json!({"username": c.user, "password": c.password}));
    let Some(signed_in) = c
        .call(&SESSION_LOGIN, req, |a| match session_cookie(a) {
            Some(_) => Ok(()),
            None => Err("no session cookie".to_owned()),
        })
        .await
    else {
        return;
    };
    let Some(value) = session_cookie(&signed_in) else {
        return;
    };
    let cookie = format!("theme=dark; __Host-gatehouse={value}");
    let user = c.user.clone();
    let page = |h2: bool| {
        c.client(h2)
            .get(c.url(&format!("/echo/app/page?i={i}")))
            .header("cookie", &cookie)
            .header("sec-fetch-site", "same-origin")
            .header("sec-fetch-mode", "cors")
    };
    for h2 in [true, false, true] {
        c.call(&SESSION_GET, page(h2), |a| {
            identity_is(a, &user)?;
            match echoed_header(a, "cookie") {
                Some(sent) if sent == "theme=dark" => Ok(()),
                other => Err(format!("the backend saw Cookie {other:?}")),
            }
        })
        .await;
    }
    let req = same_origin(c.h2.post(c.url("/echo/app/message")))
        .header("cookie", &cookie)
        .json(&json!({"message": "hi"}));
    c.call(&SESSION_POST, req, |a| identity_is(a, &user)).await;
    let req =
        c.h2.post(c.url("/echo/app/message"))
            .header("cookie", &cookie)
            .header("origin", "https://evil.soak.example")
            .header("sec-fetch-site", "cross-site")
            .json(&json!({"message": "forged"}));
    c.call(&SESSION_CSRF, req, |a| match error_code(&a.body).as_str() {
        "csrf_rejected" => Ok(()),
        other => Err(format!("error {other:?}")),
    })
    .await;
    let req =
        c.h2.get(c.url("/chat/stream?n=5&interval_ms=100"))
            .header("cookie", &cookie)
            .header("accept", "text/event-stream");
    let last = format!("\"user\":\"{}\"}}", c.user);
    c.event_stream(&SESSION_SSE, req, 5..=5, &last).await;
    let greeting = format!("hello {}", c.user);
    let headers = [("cookie", cookie.clone()), ("origin", c.origin.clone())];
    c.websocket(
        &SESSION_WS,
        &headers,
        &greeting,
        3,
        Duration::from_millis(100),
    )
    .await;
    let req =
        c.h1.get(c.url("/echo/app/page"))
            .header("sec-fetch-mode", "navigate")
            .header("accept", "text/html");
    c.call(&NAVIGATE, req, |a| {
        if a.header("location").starts_with("/auth/login?rd=") {
            Ok(())
        } else {
            Err(format!("Location {:?}", a.header("location")))
        }
    })
    .await;
    let req =
        c.h2.get(c.url("/echo/app/page"))
            .header("sec-fetch-mode", "cors");
    c.call(&FETCH_NO_COOKIE, req, any).await;
    let req = same_origin(c.h2.post(c.url("/auth/logout"))).header("cookie", &cookie);
    if c.call(&SESSION_LOGOUT, req, any).await.is_none() {
        return;
    }
    c.call(&ENDED_COOKIE, page(true), any).await;
}

// ------------------------------------------------------------- sampling --

/// gatehouse, once a second.
#[derive(Clone, Copy)]
struct Sample {
    when: Instant,
    rss_kib: u64,
    fds: usize,
    /// `gatehouse_connections_open{listener="https"}`.
    conns: Option<i64>,
}

struct Sampler {
    pid: u32,
    admin: SocketAddr,
    client: reqwest::Client,
}

impl Sampler {
    /// A sample now; `None` once the process is gone.
    async fn sample(&self) -> Option<Sample> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
        let fds = std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .ok()?
            .count();
        let conns = self.connections_open().await;
        Some(Sample {
            when: Instant::now(),
            rss_kib,
            fds,
            conns,
        })
    }

    async fn connections_open(&self) -> Option<i64> {
        let text = self
            .client
            .get(format!("http://{}/metrics", self.admin))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("gatehouse_connections_open{listener=\"https\"} "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as i64)
    }

    /// What the process's descriptors are, by kind (`socket`, `anon_inode`,
    /// a file's folder), for a report on descriptors that stayed open.
    fn fd_kinds(&self) -> BTreeMap<String, usize> {
        let mut kinds = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir(format!("/proc/{}/fd", self.pid)) else {
            return kinds;
        };
        for entry in entries.flatten() {
            let target = std::fs::read_link(entry.path())
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            let kind = match target.split_once(':') {
                Some((kind, _)) if !target.starts_with('/') => kind.to_owned(),
                _ => std::path::Path::new(&target)
                    .parent()
                    .map_or_else(String::new, |p| p.display().to_string()),
            };
            *kinds.entry(kind).or_default() += 1;
        }
        kinds
    }
}

// --------------------------------------------------------------- report --

fn percentile(sorted: &[u32], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(f64::from(sorted[rank - 1]) / 1000.0)
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.1}"))
}

fn mib(kib: f64) -> String {
    format!("{:.1}", kib / 1024.0)
}

/// Seconds from `start` to `t` (negative before it).
fn since(start: Instant, t: Instant) -> f64 {
    if t >= start {
        (t - start).as_secs_f64()
    } else {
        -(start - t).as_secs_f64()
    }
}

/// The mean RSS of the samples in (`end` − `window`, `end`], seconds of the
/// load that started at `start`.
fn mean_rss(samples: &[Sample], start: Instant, end: f64, window: f64) -> Option<f64> {
    let within: Vec<f64> = samples
        .iter()
        .map(|s| (since(start, s.when), s))
        .filter(|(at, _)| *at > end - window && *at <= end)
        .map(|(_, s)| s)
        .map(|s| s.rss_kib as f64)
        .collect();
    (!within.is_empty()).then(|| within.iter().sum::<f64>() / within.len() as f64)
}

fn print_statuses(tally: &Tally) -> Vec<String> {
    let mut failures = Vec::new();
    println!("| kind | answers | asked for |");
    println!("|---|---|---|");
    let mut total = 0;
    for kind in KINDS {
        let answers = tally.answers.get(kind.name);
        let shown = answers.map_or_else(
            || "none".to_owned(),
            |a| {
                a.iter()
                    .map(|(label, n)| format!("{label}: {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        );
        total += answers.map_or(0, |a| a.values().sum::<u64>());
        let asked: Vec<String> = kind.expect.iter().map(u16::to_string).collect();
        println!("| {} | {shown} | {} |", kind.name, asked.join(", "));
        for status in kind.expect {
            if answers.and_then(|a| a.get(&status.to_string())).is_none() {
                failures.push(format!("{}: never answered {status}", kind.name));
            }
        }
    }
    println!();
    println!("{total} requests, {} unexpected", tally.unexpected);
    for example in &tally.examples {
        println!("  unexpected: {example}");
    }
    if tally.unexpected as usize > tally.examples.len() {
        println!(
            "  … and {} more",
            tally.unexpected as usize - tally.examples.len()
        );
    }
    if tally.unexpected > 0 {
        failures.push(format!("{} unexpected answers", tally.unexpected));
    }
    failures
}

fn print_buckets(
    tally: &Tally,
    samples: &[Sample],
    start: Instant,
    bucket: Duration,
    seconds: u64,
) {
    let width = bucket.as_secs_f64();
    let unit = if bucket.as_secs() == 60 {
        "minute"
    } else {
        "seconds"
    };
    println!(
        "| {unit} | requests | proxied p50 / p99 ms | gatehouse's own answers p50 / p99 ms | password checks p50 / p99 ms | RSS MiB (mean) | fds (max) | connections open (max) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let count = (seconds as f64 / width).ceil() as usize;
    for (i, b) in tally.buckets.iter().enumerate().take(count) {
        let (from, to) = (i as f64 * width, (i + 1) as f64 * width);
        let label = if unit == "minute" {
            (i + 1).to_string()
        } else {
            format!("{from:.0}–{to:.0}")
        };
        let figures: Vec<String> = b
            .latency
            .iter()
            .map(|l| {
                let mut sorted = l.clone();
                sorted.sort_unstable();
                format!(
                    "{} / {}",
                    ms(percentile(&sorted, 0.5)),
                    ms(percentile(&sorted, 0.99))
                )
            })
            .collect();
        let in_bucket: Vec<&Sample> = samples
            .iter()
            .filter(|s| {
                let at = since(start, s.when);
                at > from && at <= to
            })
            .collect();
        let rss = (!in_bucket.is_empty()).then(|| {
            in_bucket.iter().map(|s| s.rss_kib as f64).sum::<f64>() / in_bucket.len() as f64
        });
        let fds = in_bucket.iter().map(|s| s.fds).max();
        let conns = in_bucket.iter().filter_map(|s| s.conns).max();
        println!(
            "| {label} | {} | {} | {} | {} | {} | {} | {} |",
            b.requests,
            figures[0],
            figures[1],
            figures[2],
            rss.map_or_else(|| "–".to_owned(), mib),
            fds.map_or_else(|| "–".to_owned(), |v| v.to_string()),
            conns.map_or_else(|| "–".to_owned(), |v| v.to_string()),
        );
    }
}

// ----------------------------------------------------------------- main --

fn secret(name: &str) -> Result<String, String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("{name} is not set"))
}

fn https_client(
    args: &Args,
    ca: &reqwest::Certificate,
    h1_only: bool,
) -> reqwest::Result<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(ca.clone())
        .tls_built_in_root_certs(false)
        .resolve("localhost", args.https)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        // Below gatehouse's header_read_timeout (10 s): the client, not the
        // server, closes an idle connection, so no request races a close.
        .pool_idle_timeout(Duration::from_secs(5));
    if h1_only {
        builder.http1_only().build()
    } else {
        builder.build()
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("soak: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<bool, String> {
    let password = secret("SOAK_PASSWORD")?;
    let api_key = secret("SOAK_API_KEY")?;
    let pem = std::fs::read(&args.ca).map_err(|e| format!("{}: {e}", args.ca.display()))?;
    let ca = reqwest::Certificate::from_pem(&pem).map_err(|e| describe(&e))?;
    let h2 = https_client(&args, &ca, false).map_err(|e| describe(&e))?;
    let h1 = https_client(&args, &ca, true).map_err(|e| describe(&e))?;
    let mut roots = rustls::RootCertStore::empty();
    let der = CertificateDer::from_pem_slice(&pem).map_err(|e| describe(&e))?;
    roots.add(der).map_err(|e| describe(&e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| describe(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];

    let bucket = Duration::from_secs(if args.seconds >= 180 { 60 } else { 10 });
    let checkpoint = args.rss_checkpoint.unwrap_or(if args.seconds >= 300 {
        120
    } else {
        args.seconds / 3
    }) as f64;
    let window = if args.seconds >= 300 { 10.0 } else { 5.0 };

    // The sampler runs from before the load to the end of the settle time.
    let sampler = Arc::new(Sampler {
        pid: args.pid,
        admin: args.admin,
        client: reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| describe(&e))?,
    });
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let exited = CancellationToken::new();
    let sampling = CancellationToken::new();
    let sampler_task = {
        let (sampler, samples) = (sampler.clone(), samples.clone());
        let (exited, sampling) = (exited.clone(), sampling.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    () = sampling.cancelled() => break,
                    _ = tick.tick() => {}
                }
                match sampler.sample().await {
                    Some(s) => samples
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(s),
                    None => {
                        exited.cancel();
                        break;
                    }
                }
            }
        })
    };
    let snapshot = |samples: &Arc<Mutex<Vec<Sample>>>| {
        samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    };

    // The baseline: gatehouse idle, before the generator's first request
    // (the sampler's admin connection is open by now).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut baseline = usize::MAX;
    for _ in 0..3 {
        let s = sampler.sample().await.ok_or("gatehouse is not running")?;
        baseline = baseline.min(s.fds);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stats = Arc::new(Stats {
        load_start: Instant::now(),
        bucket,
        tally: Mutex::default(),
    });
    let stop = CancellationToken::new();
    let mut ctx = Ctx {
        https: args.https,
        origin: format!("https://localhost:{}", args.https.port()),
        h2,
        h1,
        tls: Arc::new(tls),
        user: args.user.clone(),
        password,
        api_key,
        api_key_id: args.api_key_id.clone(),
        cors_origin: args.cors_origin.clone(),
        token: String::new(),
        rate: args.rate,
        stats: stats.clone(),
        stop: stop.clone(),
    };
    let (token, _) = ctx
        .login()
        .await
        .ok_or("the first login failed: is the user's password SOAK_PASSWORD?")?;
    ctx.token = token;
    let ctx = Arc::new(ctx);
    println!(
        "soak: {} s of mixed load (rate ×{}) on gatehouse pid {}, {} descriptors at rest",
        args.seconds, args.rate, args.pid, baseline
    );

    let mut tasks = JoinSet::new();
    start_load(&mut tasks, &ctx);
    // The backend records every request it sees (for tests): empty it.
    let backend = args.backend;
    let recorder = sampler.client.clone();
    paced(&mut tasks, &ctx, 0.2, move |_, _| {
        let recorder = recorder.clone();
        async move {
            let _ = recorder
                .delete(format!("http://{backend}/__requests"))
                .send()
                .await;
        }
    });
    let progress = {
        let (stats, samples, stop) = (stats.clone(), samples.clone(), stop.clone());
        let every = if args.seconds >= 180 { 60 } else { 10 };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(every));
            tick.tick().await;
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let (requests, unexpected) = {
                    let t = stats.lock();
                    (
                        t.buckets.iter().map(|b| b.requests).sum::<u64>(),
                        t.unexpected,
                    )
                };
                let last = samples
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .last()
                    .copied();
                if let Some(s) = last {
                    eprintln!(
                        "soak: {:>4.0} s: {requests} requests, {unexpected} unexpected; RSS {} MiB, {} fds, {} connections open",
                        since(stats.load_start, s.when),
                        mib(s.rss_kib as f64),
                        s.fds,
                        s.conns.map_or_else(|| "?".to_owned(), |c| c.to_string())
                    );
                }
            }
        })
    };

    let mut failures = Vec::new();
    tokio::select! {
        () = tokio::time::sleep(Duration::from_secs(args.seconds)) => {}
        () = exited.cancelled() => failures.push(format!("gatehouse (pid {}) exited during the load", args.pid)),
    }
    let load_seconds = stats.load_start.elapsed().as_secs_f64();
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    let _ = progress.await;
    // Every client connection closes with the clients.
    drop(ctx);

    // Settle: descriptors back to the baseline, no connection open.
    let settle_start = Instant::now();
    let mut settled = None;
    let mut last = None;
    while settle_start.elapsed() < Duration::from_secs(args.settle) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Some(s) = sampler.sample().await else {
            failures.push(format!(
                "gatehouse (pid {}) exited after the load",
                args.pid
            ));
            break;
        };
        last = Some(s);
        if s.fds <= baseline && s.conns == Some(0) {
            settled = Some(settle_start.elapsed());
            break;
        }
    }
    sampling.cancel();
    let _ = sampler_task.await;
    let samples = snapshot(&samples);

    println!();
    println!("requests by kind and status:");
    println!();
    let tally = stats.lock();
    failures.extend(print_statuses(&tally));
    println!();
    print_buckets(&tally, &samples, stats.load_start, bucket, args.seconds);
    println!();

    let at_checkpoint = mean_rss(&samples, stats.load_start, checkpoint, window);
    let at_end = mean_rss(&samples, stats.load_start, load_seconds, window);
    match (at_checkpoint, at_end) {
        (Some(a), Some(b)) => {
            let growth = (b - a) / a * 100.0;
            let verdict = if growth <= args.max_rss_growth {
                "flat"
            } else {
                failures.push(format!(
                    "RSS grew {growth:.1} % from second {checkpoint:.0} to the end (limit {} %)",
                    args.max_rss_growth
                ));
                "GREW"
            };
            println!(
                "RSS (mean of {window:.0} s): {} MiB at second {checkpoint:.0}, {} MiB at the end (second {load_seconds:.0}): {growth:+.1} % — {verdict} (limit +{} %); peak {} MiB",
                mib(a),
                mib(b),
                args.max_rss_growth,
                mib(samples.iter().map(|s| s.rss_kib).max().unwrap_or(0) as f64),
            );
        }
        _ => failures.push("too few samples to compare RSS".to_owned()),
    }
    let peak_fds = samples.iter().map(|s| s.fds).max().unwrap_or(0);
    let peak_conns = samples.iter().filter_map(|s| s.conns).max().unwrap_or(0);
    match (settled, last) {
        (Some(after), Some(s)) => println!(
            "descriptors: {baseline} at rest, {peak_fds} at the peak, {} {:.1} s after the load (back to baseline); connections open: {peak_conns} at the peak, 0 after",
            s.fds,
            after.as_secs_f64()
        ),
        (_, last) => {
            let (fds, conns) = last.map_or((0, None), |s| (s.fds, s.conns));
            failures.push(format!(
                "{} s after the load: {fds} descriptors (at rest: {baseline}) and {} connections open; descriptors by kind: {:?}",
                args.settle,
                conns.map_or_else(|| "?".to_owned(), |c| c.to_string()),
                sampler.fd_kinds()
            ));
        }
    }
    println!();
    if failures.is_empty() {
        println!("soak PASSED");
        Ok(true)
    } else {
        for failure in &failures {
            println!("soak FAILED: {failure}");
        }
        Ok(false)
    }
}
