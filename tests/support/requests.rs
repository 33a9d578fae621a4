//! Requests sent through a gatehouse and assertions on its answers: raw
//! HTTP/1.1 requests whose exact bytes matter (dot-segments, header-name
//! spellings, several `Authorization` headers; reqwest would resolve `..`
//! and lowercase names), bearer-token requests, gatehouse's SPEC §5
//! errors with their RFC 6750 `WWW-Authenticate` challenges, and counting
//! the events of a streamed (SSE) answer.

use futures_util::StreamExt;
use serde_json::Value;

use super::{
    assert_never_seen, bearer_get, body_of, only_request, seen, status_of, Backend, Gatehouse,
};

/// The challenge of a `401` without credentials (RFC 6750 §3).
pub const CHALLENGE: &str = r#"Bearer realm="gatehouse""#;
/// The challenge of a `401` for a token that is not valid (RFC 6750 §3.1).
pub const INVALID_TOKEN_CHALLENGE: &str = r#"Bearer realm="gatehouse", error="invalid_token""#;

/// `<method> <target> HTTP/1.1` with `Host: localhost`, `headers` (each line
/// ending in `\r\n`) and `Connection: close`, so the answer ends with the
/// connection. The target goes out byte for byte.
pub fn raw_request(method: &str, target: impl AsRef<[u8]>, headers: &str) -> Vec<u8> {
    let mut out = format!("{method} ").into_bytes();
    out.extend_from_slice(target.as_ref());
    out.extend_from_slice(
        format!(" HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n").as_bytes(),
    );
    out
}

/// [`raw_request`] for `GET`.
pub fn raw_get(target: &str, headers: &str) -> Vec<u8> {
    raw_request("GET", target, headers)
}

/// `Authorization: Bearer <token>` as a raw header line.
pub fn auth_line(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

/// Every value of header `name` (case-insensitive) in a raw HTTP/1.1 answer.
pub fn raw_headers<'a>(raw: &'a str, name: &str) -> Vec<&'a str> {
    raw.split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

/// The first value of header `name` in a raw HTTP/1.1 answer, if any.
pub fn raw_header<'a>(raw: &'a str, name: &str) -> Option<&'a str> {
    raw_headers(raw, name).first().copied()
}

/// Asserts a raw answer is gatehouse's SPEC §5 error `status`/`code`.
pub fn assert_raw_error(raw: &str, status: u16, code: &str, what: &str) {
    assert_eq!(status_of(raw), status, "{what}:\n{raw}");
    let body: Value = serde_json::from_str(body_of(raw))
        .unwrap_or_else(|e| panic!("{what}: not gatehouse's JSON ({e}):\n{raw}"));
    assert_eq!(body["error"], code, "{what}: {body}");
}

/// Asserts `res` is gatehouse's SPEC §5 error `status`/`code`; its headers.
pub async fn assert_error(
    res: reqwest::Response,
    status: u16,
    code: &str,
    what: &str,
) -> reqwest::header::HeaderMap {
    let headers = res.headers().clone();
    let got = res.status().as_u16();
    let text = res.text().await.expect("error body");
    assert_eq!(got, status, "{what}: {text}");
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{what}: not gatehouse's JSON ({e}): {text}"));
    assert_eq!(body["error"], code, "{what}: {body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{what}: no detail in {body}"
    );
    headers
}

/// Asserts `401` with error `code` and exactly the challenge `challenge`.
pub async fn assert_401(res: reqwest::Response, code: &str, challenge: &str, what: &str) {
    let headers = assert_error(res, 401, code, what).await;
    let got: Vec<_> = headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().expect("ASCII challenge"))
        .collect();
    assert_eq!(got, [challenge], "{what}: WWW-Authenticate");
}

/// Sends `req` and returns the status code of its answer.
pub async fn status_of_sent(req: reqwest::RequestBuilder) -> u16 {
    let res = req.send().await.expect("request through gatehouse");
    res.status().as_u16()
}

/// GET `path` without credentials.
pub async fn get_without_credentials(gate: &Gatehouse, path: &str) -> reqwest::Response {
    gate.client()
        .get(gate.url(path))
        .send()
        .await
        .expect("request through gatehouse")
}

/// GET `path` with `key` in `X-API-Key`.
pub async fn get_with_api_key(gate: &Gatehouse, path: &str, key: &str) -> reqwest::Response {
    gate.client()
        .get(gate.url(path))
        .header("x-api-key", key)
        .send()
        .await
        .expect("request through gatehouse")
}

/// GET `path` with `token` as a bearer token.
pub async fn get_with_token(gate: &Gatehouse, path: &str, token: &str) -> reqwest::Response {
    bearer_get(&gate.client(), gate.url(path), token).await
}

/// Sends `token` to `path` and asserts `401 invalid_token` with the RFC 6750
/// challenge, and that the backend never saw the request.
pub async fn assert_token_refused(
    gate: &Gatehouse,
    backend: &Backend,
    path: &str,
    token: &str,
    what: &str,
) {
    let res = get_with_token(gate, path, token).await;
    assert_401(res, "invalid_token", INVALID_TOKEN_CHALLENGE, what).await;
    assert_never_seen(backend, what).await;
}

/// Sends `token` to `path`, asserts `200` and returns what the backend got.
pub async fn assert_token_accepted(
    gate: &Gatehouse,
    backend: &Backend,
    path: &str,
    token: &str,
    what: &str,
) -> Value {
    let res = get_with_token(gate, path, token).await;
    let status = res.status();
    assert_eq!(status, 200, "{what}: {:?}", res.text().await);
    only_request(backend, what).await
}

/// Asserts the backend got exactly one copy of each identity header, with
/// gatehouse's values.
pub fn assert_identity(request: &Value, user: &str, roles: &str, method: &str, what: &str) {
    assert_eq!(seen(request, "x-auth-user"), [user], "{what}: {request}");
    assert_eq!(seen(request, "x-auth-roles"), [roles], "{what}: {request}");
    assert_eq!(
        seen(request, "x-auth-method"),
        [method],
        "{what}: {request}"
    );
}

/// Streams `path` and counts its Server-Sent Events; signals `first` when the
/// first one arrived. Returns (events, whether the stream ended cleanly).
pub async fn count_events(
    client: reqwest::Client,
    url: String,
    version: reqwest::Version,
    first: tokio::sync::oneshot::Sender<()>,
) -> (usize, bool) {
    let res = client.get(url).send().await.expect("start the stream");
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), version);
    let mut first = Some(first);
    let mut text = String::new();
    let mut body = res.bytes_stream();
    let clean = loop {
        match body.next().await {
            None => break true,
            Some(Err(_)) => break false,
            Some(Ok(bytes)) => text.push_str(&String::from_utf8_lossy(&bytes)),
        }
        if text.contains("data:") {
            if let Some(tx) = first.take() {
                let _ = tx.send(());
            }
        }
    };
    (text.matches("data:").count(), clean)
}
