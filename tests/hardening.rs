//! The attack classes of the adversarial review (issue 10), each against a
//! real gatehouse over real TLS, sent as raw bytes or hand-built HTTP/2
//! frames where a well-behaved client would hide the attack:
//!
//! - no tunnel carries unauthenticated requests (only WebSocket upgrades are
//!   relayed; a tunnel keeps its connection slot and idles out);
//! - every slow client is cut in bounded time (HTTP/2 heads, request bodies),
//!   while a slow upload is never a 504;
//! - one validated host (`Host`, `:authority`) or a 400;
//! - parsers refuse ambiguity (duplicate body fields, malformed chunks,
//!   CONNECT/TRACE, `Max-Forwards`);
//! - headers that steer a backend never reach it from a client.
//!
//! Some backends here are deliberately naive raw-TCP servers: they switch
//! protocols whenever asked (or unasked), as a careless backend would, so the
//! tests show that gatehouse, not the backend, keeps the tunnel shut.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// --- a naive backend ----------------------------------------------------------

/// What [`NaiveBackend`] answers to an `Upgrade`.
#[derive(Clone, Copy)]
enum Switch {
    /// `101` naming whatever protocol the request asked for.
    AsAsked,
    /// `101` naming this protocol, whatever was asked.
    To(&'static str),
    /// `101 Upgrade: h2c` to every request, upgrade or not.
    Always,
}

/// A raw-TCP backend that records every request head and every byte sent
/// after it switched protocols, and answers everything else `200 ok`.
struct NaiveBackend {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    tunneled: Arc<Mutex<Vec<u8>>>,
}

impl NaiveBackend {
    async fn start(switch: Switch) -> NaiveBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let heads = Arc::new(Mutex::new(Vec::new()));
        let tunneled = Arc::new(Mutex::new(Vec::new()));
        let (h, t) = (heads.clone(), tunneled.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(naive_connection(tcp, switch, h.clone(), t.clone()));
            }
        });
        NaiveBackend {
            addr,
            heads,
            tunneled,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().expect("heads").clone()
    }

    fn tunneled(&self) -> String {
        String::from_utf8_lossy(&self.tunneled.lock().expect("bytes")).into_owned()
    }
}

async fn naive_connection(
    mut tcp: TcpStream,
    switch: Switch,
    heads: Arc<Mutex<Vec<String>>>,
    tunneled: Arc<Mutex<Vec<u8>>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        heads.lock().expect("heads").push(head.clone());
        let asked = head
            .lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(n, _)| n.eq_ignore_ascii_case("upgrade"))
            })
            .map(|(_, v)| v.trim().to_owned());
        let protocol = match (switch, asked) {
            (Switch::Always, _) => Some("h2c".to_owned()),
            (Switch::AsAsked, Some(asked)) => Some(asked),
            (Switch::To(p), Some(_)) => Some(p.to_owned()),
            (_, None) => None,
        };
        let Some(protocol) = protocol else {
            let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            if tcp.write_all(ok).await.is_err() {
                return;
            }
            continue;
        };
        let switching = format!(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\n\r\n"
        );
        if tcp.write_all(switching.as_bytes()).await.is_err() {
            return;
        }
        // Everything from here on is "inside the tunnel".
        tunneled.lock().expect("bytes").extend_from_slice(&buf);
        loop {
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => tunneled
                    .lock()
                    .expect("bytes")
                    .extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// A public catch-all and an `/admin` that needs a JWT.
const ADMIN_NEEDS_JWT: &str = "\
routes:
  - name: admin
    path: /admin/**
    auth: jwt
default_route:
  auth: none
";

/// Every `HTTP/1.1 NNN` status line in a raw answer, in order.
fn statuses(raw: &str) -> Vec<u16> {
    raw.split("HTTP/1.1 ")
        .skip(1)
        .filter_map(|s| s.get(..3)?.parse().ok())
        .collect()
}

// --- no tunnel carries unauthenticated requests -------------------------------

#[tokio::test]
async fn h2c_upgrade_on_a_public_route_is_stripped_so_no_tunnel_skips_auth() {
    let backend = NaiveBackend::start(Switch::AsAsked).await;
    let gate = Gatehouse::start(&backend.url(), ADMIN_NEEDS_JWT).await;
    // The upgrade, then what a client would send inside the h2c tunnel: a
    // request for /admin without a token.
    let raw = gate
        .raw(
            b"GET /public HTTP/1.1\r\nHost: localhost\r\n\
              Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
              HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n\
              GET /admin/secret HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await;
    assert_eq!(statuses(&raw), [200, 401], "{raw}");
    let heads = backend.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    let head = heads[0].to_ascii_lowercase();
    assert!(head.starts_with("get /public "), "{head}");
    assert!(
        !head.contains("upgrade"),
        "the backend was asked to switch: {head}"
    );
    assert!(!head.contains("http2-settings"), "{head}");
    assert_eq!(backend.tunneled(), "", "bytes went through a tunnel");
}

#[tokio::test]
async fn custom_and_listed_upgrade_protocols_are_stripped_too() {
    let backend = NaiveBackend::start(Switch::AsAsked).await;
    let gate = Gatehouse::start(&backend.url(), ADMIN_NEEDS_JWT).await;
    for protocol in ["foo/1", "TLS/1.2", "websocket, h2c", "h2c, websocket"] {
        let raw = gate
            .raw(
                format!(
                    "GET /public HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n\
                     Upgrade: {protocol}\r\n\r\n\
                     GET /admin/secret HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .await;
        assert_eq!(statuses(&raw), [200, 401], "{protocol}: {raw}");
    }
    for head in backend.heads() {
        assert!(!head.to_ascii_lowercase().contains("upgrade"), "{head}");
    }
    assert_eq!(backend.tunneled(), "");
}

#[tokio::test]
async fn a_101_to_another_protocol_than_websocket_is_a_502_and_relays_nothing() {
    let backend = NaiveBackend::start(Switch::To("h2c")).await;
    let gate = Gatehouse::start(&backend.url(), ADMIN_NEEDS_JWT).await;
    let raw = gate
        .raw(
            b"GET /chat HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n\
              Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n\
              GET /admin/secret HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await;
    assert_eq!(statuses(&raw).first(), Some(&502), "{raw}");
    assert!(!raw.contains(" 101 "), "{raw}");
    assert_eq!(backend.tunneled(), "", "bytes went through a tunnel");
}

#[tokio::test]
async fn a_101_nobody_asked_for_is_a_502() {
    let backend = NaiveBackend::start(Switch::Always).await;
    let gate = Gatehouse::start(&backend.url(), ADMIN_NEEDS_JWT).await;
    let raw = gate
        .raw(b"GET /public HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(status_of(&raw), 502, "{raw}");
    assert!(body_of(&raw).contains("bad_gateway"), "{raw}");
}

/// Opens a WebSocket through gatehouse to the Rust backend's `/ws` and reads
/// its greeting.
async fn open_websocket(
    gate: &Gatehouse,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>> {
    let (mut ws, response) = gate.websocket("/ws").await.expect("websocket handshake");
    assert_eq!(response.status(), 101);
    let greeting = ws.next().await.expect("greeting").expect("greeting frame");
    assert!(greeting.to_text().expect("text").starts_with("hello"));
    ws
}

fn https_connections_open(metrics: &str) -> Option<f64> {
    find_sample(metrics, r#"gatehouse_connections_open{listener="https"}"#)
}

#[tokio::test]
async fn a_websocket_tunnel_holds_its_connection_slot_until_it_closes() {
    let (_backend, gate) = gate_with(&open_with_server("  max_connections: 1\n")).await;
    let mut ws = open_websocket(&gate).await;
    // The HTTP connection has handed over to the tunnel; the slot stays taken.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(https_connections_open(&gate.metrics().await), Some(1.0));
    let mut second = TcpStream::connect(gate.https).await.expect("tcp connect");
    assert!(
        wait_until_closed(&mut second, Duration::from_secs(2)).await,
        "a second connection was accepted beside an open tunnel with max_connections: 1"
    );
    // The tunnel still works, then closes and gives its slot back.
    ws.send(tokio_tungstenite::tungstenite::Message::text("ping"))
        .await
        .expect("send");
    let echo = ws.next().await.expect("echo").expect("echo frame");
    assert_eq!(echo.to_text().expect("text"), "ping");
    ws.close(None).await.expect("close");
    drop(ws);
    let deadline = Instant::now() + Duration::from_secs(3);
    while https_connections_open(&gate.metrics().await) != Some(0.0) {
        assert!(Instant::now() < deadline, "the closed tunnel kept its slot");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let res = gate.client().get(gate.url("/health")).send().await;
    assert_eq!(res.expect("a new connection is served").status(), 200);
}

#[tokio::test]
async fn an_idle_websocket_tunnel_is_closed_after_idle_timeout_and_a_busy_one_is_not() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), &open_with_server("  idle_timeout: 1s\n")).await;
    // Busy: a message every 300 ms for 2.5 s keeps the tunnel open.
    let mut busy = open_websocket(&gate).await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        busy.send(tokio_tungstenite::tungstenite::Message::text("tick"))
            .await
            .expect("a busy tunnel stays open");
        let echo = busy.next().await.expect("echo").expect("echo frame");
        assert_eq!(echo.to_text().expect("text"), "tick");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Idle: closed within about a second of silence.
    let mut idle = open_websocket(&gate).await;
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(4), async {
        loop {
            match idle.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(m)) if m.is_close() => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "an idle tunnel was still open after 4 s");
    assert!(started.elapsed() >= Duration::from_millis(900));
}

// --- slow clients: HTTP/2 heads -----------------------------------------------

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One HTTP/2 frame (RFC 9113 §4.1).
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("small payload");
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

const SETTINGS: u8 = 0x4;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const PING: u8 = 0x6;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// HPACK "literal header field without indexing, new name", no Huffman
/// (RFC 7541 §6.2.2): enough to write any request head by hand.
fn hpack(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0);
        for s in [name, value] {
            out.push(u8::try_from(s.len()).expect("short field"));
            out.extend_from_slice(s.as_bytes());
        }
    }
    out
}

fn get_head(path: &str) -> Vec<u8> {
    hpack(&[
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "localhost"),
        (":path", path),
    ])
}

/// Writes `first`, then each of `drip` every `every`, and says how long the
/// server took to close the connection (None: still open after `within`).
async fn h2_time_to_close(
    gate: &Gatehouse,
    first: Vec<u8>,
    drip: Vec<Vec<u8>>,
    every: Duration,
    within: Duration,
) -> Option<Duration> {
    let tls = gate.tls_connect(&[b"h2"]).await;
    let (mut reader, mut writer) = tokio::io::split(tls);
    let started = Instant::now();
    writer.write_all(&first).await.expect("write");
    let dripper = tokio::spawn(async move {
        for piece in drip {
            tokio::time::sleep(every).await;
            if writer.write_all(&piece).await.is_err() || writer.flush().await.is_err() {
                return;
            }
        }
        // Keep the write half (and so the connection) open.
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    let closed = loop {
        match tokio::time::timeout_at(deadline, reader.read(&mut buf)).await {
            Err(_) => break None,
            Ok(Ok(0)) | Ok(Err(_)) => break Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    };
    dripper.abort();
    closed
}

/// Short head timeout, long idle timeout: only the head timeout can cut.
const SLOW_HEADS: &str =
    "default_route:\n  auth: none\nserver:\n  header_read_timeout: 1s\n  idle_timeout: 60s\n";

fn preface() -> Vec<u8> {
    let mut first = H2_PREFACE.to_vec();
    first.extend(frame(SETTINGS, 0, 0, &[]));
    first
}

#[tokio::test]
async fn an_h2_client_that_sends_the_preface_and_no_headers_is_cut_at_header_read_timeout() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), SLOW_HEADS).await;
    // PINGs every 300 ms: the connection is never quiet, only headless.
    let pings = (0..40u8).map(|i| frame(PING, 0, 0, &[i; 8])).collect();
    let took = h2_time_to_close(
        &gate,
        preface(),
        pings,
        Duration::from_millis(300),
        Duration::from_secs(5),
    )
    .await;
    let took = took.expect("a headless h2 connection was still open after 5 s");
    assert!(
        took >= Duration::from_millis(900),
        "cut too early: {took:?}"
    );
    assert!(took < Duration::from_millis(2500), "cut too late: {took:?}");
}

#[tokio::test]
async fn a_trickled_h2_head_is_cut_at_header_read_timeout_first_or_later_request() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), SLOW_HEADS).await;
    // A HEADERS frame whose payload arrives one byte every 300 ms: the HTTP/2
    // parser waits for the whole frame, so only gatehouse's watch can cut it.
    let head = frame(HEADERS, END_STREAM | END_HEADERS, 1, &get_head("/health"));
    let drip = |frame: &[u8]| -> Vec<Vec<u8>> { frame[9..].iter().map(|b| vec![*b]).collect() };
    let mut first = preface();
    first.extend_from_slice(&head[..9]);
    let took = h2_time_to_close(
        &gate,
        first,
        drip(&head),
        Duration::from_millis(300),
        Duration::from_secs(5),
    )
    .await
    .expect("a trickled first head was still open after 5 s");
    assert!(
        took >= Duration::from_millis(900),
        "cut too early: {took:?}"
    );
    assert!(took < Duration::from_millis(2500), "cut too late: {took:?}");

    // A complete request first, then a head trickled over CONTINUATION
    // frames on the next stream.
    let second = get_head("/health");
    let mut first = preface();
    first.extend(head.clone());
    first.extend(frame(HEADERS, END_STREAM, 3, &second[..4]));
    let continuation = frame(CONTINUATION, END_HEADERS, 3, &second[4..]);
    first.extend_from_slice(&continuation[..9]);
    let took = h2_time_to_close(
        &gate,
        first,
        drip(&continuation),
        Duration::from_millis(300),
        Duration::from_secs(5),
    )
    .await
    .expect("a trickled second head was still open after 5 s");
    assert!(
        took >= Duration::from_millis(900),
        "cut too early: {took:?}"
    );
    assert!(took < Duration::from_millis(2500), "cut too late: {took:?}");
}

#[tokio::test]
async fn a_complete_h2_request_and_a_quiet_connection_are_not_cut_by_the_head_timeout() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), SLOW_HEADS).await;
    let mut first = preface();
    first.extend(frame(
        HEADERS,
        END_STREAM | END_HEADERS,
        1,
        &get_head("/health"),
    ));
    // Nothing more: no head is pending, and the idle timeout is 60 s.
    let took = h2_time_to_close(
        &gate,
        first,
        Vec::new(),
        Duration::from_millis(200),
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(took, None, "a well-behaved h2 connection was cut");
}

// --- slow clients: request bodies ---------------------------------------------

/// Everything read until the server closes, an error, or 5 s without data.
async fn read_answer<R: tokio::io::AsyncRead + Unpin>(reader: &mut R) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), reader.read(&mut buf)).await {
            Err(_) | Ok(Ok(0)) | Ok(Err(_)) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends `head` and `sent` of its body over TLS, then stalls; returns the
/// answer and how long it took.
async fn stall_body(gate: &Gatehouse, head: &str, sent: &[u8]) -> (String, Duration) {
    let mut tls = gate.tls_connect(&[b"http/1.1"]).await;
    let started = Instant::now();
    tls.write_all(head.as_bytes()).await.expect("head");
    tls.write_all(sent).await.expect("part of the body");
    let out = read_answer(&mut tls).await;
    (
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

const SLOW_BODIES: &str = "default_route:\n  auth: none\nserver:\n  body_read_timeout: 1s\n";

#[tokio::test]
async fn a_stalled_request_body_gets_408_and_the_connection_closes() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), SLOW_BODIES).await;
    for (what, head) in [
        (
            "proxied",
            "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n",
        ),
        (
            "proxied, chunked",
            "POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
        ),
        (
            "/login",
            "POST /login HTTP/1.1\r\nHost: localhost\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n",
        ),
        (
            "/auth/refresh",
            "POST /auth/refresh HTTP/1.1\r\nHost: localhost\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n",
        ),
    ] {
        let sent: &[u8] = if what.contains("chunked") {
            b"3\r\nabc\r\n"
        } else {
            b"{\"u"
        };
        let (raw, took) = stall_body(&gate, head, sent).await;
        assert_eq!(status_of(&raw), 408, "{what}: {raw}");
        assert!(
            body_of(&raw).contains("\"request_timeout\""),
            "{what}: {raw}"
        );
        assert!(
            raw.to_ascii_lowercase().contains("connection: close"),
            "{what}: {raw}"
        );
        assert!(
            took >= Duration::from_millis(900),
            "{what}: too early: {took:?}"
        );
        assert!(
            took < Duration::from_secs(4),
            "{what}: not closed: {took:?}"
        );
    }
}

#[tokio::test]
async fn a_login_body_trickled_below_the_gap_is_still_cut_in_bounded_time() {
    // A byte every 400 ms never leaves a 1 s gap; gatehouse reads its own
    // (small) bodies whole within body_read_timeout.
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), SLOW_BODIES).await;
    let tls = gate.tls_connect(&[b"http/1.1"]).await;
    let (mut reader, mut writer) = tokio::io::split(tls);
    let started = Instant::now();
    writer
        .write_all(
            b"POST /login HTTP/1.1\r\nHost: localhost\r\n\
              Content-Type: application/json\r\nContent-Length: 200\r\n\r\n",
        )
        .await
        .expect("head");
    let trickle = tokio::spawn(async move {
        for _ in 0..200 {
            if writer.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    });
    let raw = String::from_utf8_lossy(&read_answer(&mut reader).await).into_owned();
    trickle.abort();
    assert_eq!(status_of(&raw), 408, "{raw}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_slow_upload_is_never_a_504_because_response_timeout_starts_at_its_end() {
    let backend = start_rust_backend().await;
    let upstreams = format!(
        "upstreams:\n  app:\n    url: {}\n    response_timeout: 1s\n",
        backend.url("")
    );
    let gate = Gatehouse::start_with(&upstreams, "default_route:\n  auth: none\n").await;
    // 2 MiB in 8 pieces, 400 ms apart: 2.8 s of upload, longer than the
    // 1 s response_timeout.
    let piece = vec![b'x'; 256 * 1024];
    let pieces = futures_util::stream::iter(0..8).then(move |i| {
        let piece = piece.clone();
        async move {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            Ok::<_, std::io::Error>(piece)
        }
    });
    let started = Instant::now();
    let res = gate
        .client()
        .post(gate.url("/upload"))
        .body(reqwest::Body::wrap_stream(pieces))
        .send()
        .await
        .expect("upload");
    let status = res.status();
    let body: Value = res.json().await.expect("JSON");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["bytes"], 2 * 1024 * 1024, "{body}");
    assert!(started.elapsed() >= Duration::from_millis(2500));
}

#[tokio::test]
async fn a_backend_that_never_answers_is_still_a_504_after_the_body_ends() {
    // A backend that accepts connections and never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = silent.local_addr().expect("addr");
    let _keep = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            held.push(tcp);
        }
    });
    let upstreams =
        format!("upstreams:\n  app:\n    url: http://{addr}\n    response_timeout: 1s\n");
    let gate = Gatehouse::start_with(&upstreams, "default_route:\n  auth: none\n").await;
    let started = Instant::now();
    let res = gate
        .client()
        .post(gate.url("/upload"))
        .body(vec![b'x'; 1024])
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 504);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_gets_413_while_the_backend_still_waits() {
    let backend = start_rust_backend().await;
    let upstreams = format!(
        "upstreams:\n  app:\n    url: {}\n    response_timeout: 1s\n",
        backend.url("")
    );
    let gate =
        Gatehouse::start_with(&upstreams, &open_with_server("  max_request_body: 1KiB\n")).await;
    // 512 bytes, then (after the 1 s response_timeout has passed, while the
    // backend waits for the rest) 1 KiB more: that is the client's 413,
    // not the backend's 504.
    let tls = gate.tls_connect(&[b"http/1.1"]).await;
    let (mut reader, mut writer) = tokio::io::split(tls);
    writer
        .write_all(
            format!(
                "POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
                 200\r\n{}\r\n",
                "x".repeat(512)
            )
            .as_bytes(),
        )
        .await
        .expect("first chunk");
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let chunk = format!("400\r\n{}\r\n", "y".repeat(1024));
        let _ = writer.write_all(chunk.as_bytes()).await;
        // The body never ends.
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let raw = String::from_utf8_lossy(&read_answer(&mut reader).await).into_owned();
    late.abort();
    assert_eq!(status_of(&raw), 413, "{raw}");
    assert!(body_of(&raw).contains("payload_too_large"), "{raw}");
}

#[tokio::test]
async fn a_malformed_chunked_body_is_the_clients_400_not_an_upstream_error() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), "default_route:\n  auth: none\n").await;
    for body in [
        "zz\r\nabc\r\n0\r\n\r\n",
        "3\r\nabcdef\r\n0\r\n\r\n",
        "3\r\nabc\r\nzz\r\n",
        "-3\r\nabc\r\n0\r\n\r\n",
    ] {
        let raw = gate
            .raw(
                format!(
                    "POST /upload HTTP/1.1\r\nHost: localhost\r\n\
                     Transfer-Encoding: chunked\r\n\r\n{body}"
                )
                .as_bytes(),
            )
            .await;
        assert_eq!(status_of(&raw), 400, "{body:?}: {raw}");
        assert!(body_of(&raw).contains("bad_request"), "{body:?}: {raw}");
    }
    let metrics = gate.metrics().await;
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("gatehouse_upstream_errors_total{") && !l.ends_with(" 0")),
        "a client's broken body was counted as an upstream error:\n{metrics}"
    );
}

// --- one validated host -------------------------------------------------------

const HOSTED_ADMIN: &str = "\
routes:
  - name: admin
    host: admin.example.com
    path: /**
    auth: jwt
default_route:
  auth: none
";

#[tokio::test]
async fn a_host_that_is_not_host_and_port_is_a_400_and_reaches_no_route() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), HOSTED_ADMIN).await;
    for host in [
        "x@admin.example.com",
        "admin.example.com@x",
        "admin.example.com/x",
        "admin.example.com?x",
        "admin.example.com#x",
        "admin.example.com\\x",
        "\"admin.example.com\"",
        "'admin.example.com'",
        "admin.example.com x",
        "admin.example.com:",
        "admin.example.com:99999",
        "admin.example.com:8443:1",
        "[admin.example.com]",
        "admin.example.com]",
        "admin%2eexample.com",
        "admin..example.com",
        "127.1",
    ] {
        let raw = gate
            .raw(
                format!("GET /echo/x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await;
        assert_eq!(status_of(&raw), 400, "Host: {host}: {raw}");
        assert!(body_of(&raw).contains("bad_request"), "Host: {host}: {raw}");
    }
    let seen: Value = support::recorded(backend.addr).await;
    assert_eq!(seen.as_array().map(Vec::len), Some(0), "{seen}");
    // The same host in any case, with a trailing dot and a port, is the
    // admin route's.
    for host in [
        "ADMIN.example.com",
        "admin.example.com.",
        "Admin.Example.Com.:8443",
    ] {
        let raw = gate
            .raw(
                format!("GET /echo/x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await;
        assert_eq!(status_of(&raw), 401, "Host: {host}: {raw}");
    }
}

#[tokio::test]
async fn an_h2_authority_with_userinfo_is_a_400() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), HOSTED_ADMIN).await;
    let mut first = preface();
    let head = hpack(&[
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "x@admin.example.com"),
        (":path", "/echo/x"),
    ]);
    first.extend(frame(HEADERS, END_STREAM | END_HEADERS, 1, &head));
    let mut tls = gate.tls_connect(&[b"h2"]).await;
    tls.write_all(&first).await.expect("write");
    // The answer's HEADERS frame: gatehouse's 400 is HPACK static index 12
    // (`:status 400`), byte 0x8c.
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n @ 1..)) =
        tokio::time::timeout(Duration::from_secs(1), tls.read(&mut buf)).await
    {
        raw.extend_from_slice(&buf[..n]);
    }
    let statuses: Vec<u8> = h2_frames(&raw)
        .into_iter()
        .filter(|(kind, _)| *kind == HEADERS)
        .filter_map(|(_, payload)| payload.first().copied())
        .collect();
    assert_eq!(statuses, [0x8c], "{raw:?}");
    let seen: Value = support::recorded(backend.addr).await;
    assert_eq!(seen.as_array().map(Vec::len), Some(0), "{seen}");
}

/// The frames in `raw` as (type, payload).
fn h2_frames(raw: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    let mut rest = raw;
    while rest.len() >= 9 {
        let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        if rest.len() < 9 + len {
            break;
        }
        frames.push((rest[3], rest[9..9 + len].to_vec()));
        rest = &rest[9 + len..];
    }
    frames
}

#[tokio::test]
async fn the_backend_sees_the_canonical_host_in_host_and_x_forwarded_host() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), "default_route:\n  auth: none\n").await;
    let port = gate.https.port();
    let raw = gate
        .raw(
            format!("GET /echo/x HTTP/1.1\r\nHost: LocalHost.:{port}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
    assert_eq!(status_of(&raw), 200, "{raw}");
    let echo: Value = serde_json::from_str(body_of(&raw)).expect("echo JSON");
    let header = |name: &str| -> Vec<String> {
        echo["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .filter(|p| p[0] == name)
            .map(|p| p[1].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(header("x-forwarded-host"), [format!("localhost:{port}")]);
    assert_eq!(header("host"), [format!("localhost:{port}")]);
}

// --- parsers refuse ambiguity -------------------------------------------------

#[tokio::test]
async fn connect_and_trace_get_405_and_never_reach_the_backend() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), "default_route:\n  auth: none\n").await;
    for request in [
        "CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n",
        "CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n",
        "TRACE /echo/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        "TRACE /echo/x HTTP/1.1\r\nHost: localhost\r\nMax-Forwards: 0\r\nConnection: close\r\n\r\n",
    ] {
        let raw = gate.raw(request.as_bytes()).await;
        assert_eq!(status_of(&raw), 405, "{request:?}: {raw}");
        assert!(body_of(&raw).contains("method_not_allowed"), "{raw}");
        assert!(raw.to_ascii_lowercase().contains("\r\nallow: "), "{raw}");
    }
    let seen: Value = support::recorded(backend.addr).await;
    assert_eq!(seen.as_array().map(Vec::len), Some(0), "{seen}");
}

#[tokio::test]
async fn options_with_max_forwards_zero_is_answered_here_and_others_lose_a_hop() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), "default_route:\n  auth: none\n").await;
    let raw = gate
        .raw(b"OPTIONS /echo/x HTTP/1.1\r\nHost: localhost\r\nMax-Forwards: 0\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(status_of(&raw), 200, "{raw}");
    assert!(raw.to_ascii_lowercase().contains("\r\nallow: "), "{raw}");
    let seen: Value = support::recorded(backend.addr).await;
    assert_eq!(seen.as_array().map(Vec::len), Some(0), "{seen}");
    let raw = gate
        .raw(b"OPTIONS /echo/x HTTP/1.1\r\nHost: localhost\r\nMax-Forwards: 3\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(status_of(&raw), 200, "{raw}");
    let echo: Value = serde_json::from_str(body_of(&raw)).expect("echo JSON");
    let forwarded: Vec<&str> = echo["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter(|p| p[0] == "max-forwards")
        .filter_map(|p| p[1].as_str())
        .collect();
    assert_eq!(forwarded, ["2"]);
}

#[tokio::test]
async fn a_login_body_with_a_field_given_twice_is_a_400() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), "default_route:\n  auth: none\n").await;
    let client = gate.client();
    for (content_type, body) in [
        (
            "application/json",
            r#"{"username":"demo","password":"x","username":"admin"}"#,
        ),
        (
            "application/json",
            r#"{"username":"demo","password":"x","password":"y"}"#,
        ),
        (
            "application/x-www-form-urlencoded",
            "username=demo&password=x&username=admin",
        ),
        (
            "application/x-www-form-urlencoded",
            "username=demo&password=x&password=y",
        ),
    ] {
        for path in ["/login", "/auth/refresh"] {
            let res = client
                .post(gate.url(path))
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .expect("request");
            let status = res.status();
            let json: Value = res.json().await.expect("JSON");
            assert_eq!(status, 400, "{path} {body}: {json}");
            assert_eq!(json["error"], "bad_request", "{path} {body}");
        }
    }
    let metrics = gate.metrics().await;
    assert!(
        metrics.contains("gatehouse_logins_total{result=\"bad_request\"} 4"),
        "{metrics}"
    );
}

// --- headers that steer a backend ---------------------------------------------

#[tokio::test]
async fn headers_that_steer_a_backend_never_reach_it_from_a_client() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), "default_route:\n  auth: none\n").await;
    // The names with `_` (gunicorn's `SCRIPT_NAME`, …) are sent on their own
    // below: one of them folds onto another steering name.
    let (plain, underscored): (Vec<&str>, Vec<&str>) = gatehouse::upstream::headers::STEERING
        .iter()
        .partition(|name| !name.contains('_'));
    let mut request =
        String::from("GET /echo/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for name in &plain {
        request.push_str(&format!("{name}: 10.0.0.1\r\n"));
    }
    request.push_str("X-Kept: yes\r\n\r\n");
    let raw = gate.raw(request.as_bytes()).await;
    assert_eq!(status_of(&raw), 200, "{raw}");
    let echo: Value = serde_json::from_str(body_of(&raw)).expect("echo JSON");
    let names: Vec<&str> = echo["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter_map(|p| p[0].as_str())
        .collect();
    for name in &plain {
        assert!(
            !names.contains(name),
            "{name} reached the backend: {names:?}"
        );
    }
    assert!(names.contains(&"x-kept"), "{names:?}");
    for name in underscored {
        let raw = gate
            .raw(
                format!("GET /echo/x HTTP/1.1\r\nHost: localhost\r\n{name}: /admin\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await;
        match status_of(&raw) {
            400 => {}
            200 => assert!(
                !body_of(&raw).contains(&format!("\"{name}\"")),
                "{name}: {raw}"
            ),
            other => panic!("{name}: {other}: {raw}"),
        }
    }
    // Spelled with `_`, they are refused: CGI-style backends read them as the
    // `-` spelling.
    for name in ["X_Real_IP", "True_Client_IP", "X_HTTP_Method_Override"] {
        let raw = gate
            .raw(
                format!("GET /echo/x HTTP/1.1\r\nHost: localhost\r\n{name}: 1\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await;
        assert_eq!(status_of(&raw), 400, "{name}: {raw}");
    }
}

// --- found by the security review ---------------------------------------------

/// CPU seconds this process has used (user + system), from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / 100.0
}

#[tokio::test]
async fn a_paused_upload_longer_than_response_timeout_costs_no_cpu_and_still_succeeds() {
    // The wait for the end of the body must sleep, not spin, while the
    // client pauses (body_read_timeout allows it, response_timeout is short).
    let backend = start_rust_backend().await;
    let upstreams = format!(
        "upstreams:\n  app:\n    url: {}\n    response_timeout: 1s\n",
        backend.url("")
    );
    let gate = Gatehouse::start_with(
        &upstreams,
        "default_route:\n  auth: none\nserver:\n  body_read_timeout: 10s\n",
    )
    .await;
    let pieces = futures_util::stream::iter(0..2).then(|i| async move {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(3000)).await;
        }
        Ok::<_, std::io::Error>(vec![b'x'; 1024])
    });
    let before = cpu_seconds();
    let res = gate
        .client()
        .post(gate.url("/upload"))
        .body(reqwest::Body::wrap_stream(pieces))
        .send()
        .await
        .expect("upload");
    let used = cpu_seconds() - before;
    assert_eq!(res.status(), 200);
    assert!(used < 1.0, "{used:.2} CPU seconds spent on a 3 s pause");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_after_idle_timeout() {
    // A backend with a 64 MiB answer, and a client that never reads it.
    let big = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = big.local_addr().expect("addr");
    const SIZE: usize = 64 << 20;
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = big.accept().await {
            tokio::spawn(async move {
                let mut head = [0u8; 1024];
                let _ = tcp.read(&mut head).await;
                let start = format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n");
                let _ = tcp.write_all(start.as_bytes()).await;
                let chunk = vec![b'x'; 1 << 20];
                for _ in 0..64 {
                    if tcp.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let gate = Gatehouse::start(
        &format!("http://{addr}"),
        "default_route:\n  auth: none\nserver:\n  idle_timeout: 1s\n",
    )
    .await;
    let mut tls = gate.tls_connect(&[b"http/1.1"]).await;
    tls.write_all(b"GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("request");
    // Not reading: gatehouse's writes block on a full window.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got += n,
            Err(_) => panic!("the connection was still open after 9 s"),
        }
    }
    assert!(
        got < SIZE,
        "the whole answer came: the connection was never cut"
    );
}

#[tokio::test]
async fn h2_pings_do_not_keep_an_idle_connection_open() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(
        &backend.url(""),
        "default_route:\n  auth: none\nserver:\n  idle_timeout: 1s\n  header_read_timeout: 30s\n",
    )
    .await;
    let mut first = preface();
    first.extend(frame(
        HEADERS,
        END_STREAM | END_HEADERS,
        1,
        &get_head("/health"),
    ));
    let pings = (0..40u8).map(|i| frame(PING, 0, 0, &[i; 8])).collect();
    let took = h2_time_to_close(
        &gate,
        first,
        pings,
        Duration::from_millis(300),
        Duration::from_secs(6),
    )
    .await
    .expect("PINGs kept an idle h2 connection open");
    assert!(took >= Duration::from_millis(900), "{took:?}");
}

#[tokio::test]
async fn a_request_without_any_host_is_a_400_and_skips_no_host_bound_route() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start(&backend.url(""), HOSTED_ADMIN).await;
    for request in [
        "GET /echo/x HTTP/1.0\r\n\r\n",
        "GET http://admin.example.com/echo/x HTTP/1.1\r\nConnection: close\r\n\r\n",
    ] {
        let raw = gate.raw(request.as_bytes()).await;
        assert_eq!(status_of(&raw), 400, "{request:?}: {raw}");
    }
    let seen: Value = support::recorded(backend.addr).await;
    assert_eq!(seen.as_array().map(Vec::len), Some(0), "{seen}");
}

#[tokio::test]
async fn a_declared_body_over_the_limit_still_being_sent_gets_its_413_not_a_reset() {
    let backend = start_rust_backend().await;
    let gate = Gatehouse::start_with(
        &upstream(&backend.url("")),
        &open_with_server("  max_request_body: 1KiB\n"),
    )
    .await;
    // The client sends its whole (refused) body without waiting, as a
    // client that does not ask `Expect: 100-continue` does: gatehouse
    // answers 413 at once and closes — lingering, so that the rest of the
    // body does not reset the connection before the client read the answer.
    for attempt in 0..10 {
        let tls = gate.tls_connect(&[b"http/1.1"]).await;
        let (mut reader, mut writer) = tokio::io::split(tls);
        // 1 MiB of the 8 declared: what a client has in flight when the
        // answer reaches it. A client like hyper's gives up on a write error
        // without reading the answer, so every byte must be taken.
        let sender = tokio::spawn(async move {
            let head =
                "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 8388608\r\n\r\n";
            writer.write_all(head.as_bytes()).await?;
            let chunk = vec![b'x'; 64 * 1024];
            for _ in 0..16 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                writer.write_all(&chunk).await?;
            }
            writer.flush().await
        });
        let raw = String::from_utf8_lossy(&read_answer(&mut reader).await).into_owned();
        let sent = sender.await.expect("sender");
        assert_eq!(status_of(&raw), 413, "attempt {attempt}: {raw:?}");
        assert!(body_of(&raw).contains("payload_too_large"), "{raw}");
        assert!(
            sent.is_ok(),
            "attempt {attempt}: the body was cut off: {sent:?}"
        );
    }
}
