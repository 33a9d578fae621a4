//! API keys (SPEC §2 `auth.api_keys`; §3.7; §5 `invalid_api_key`): a key in
//! `X-API-Key` or the query authenticates its principal and never reaches
//! the backend in any spelling; a wrong key, a key on a JWT-only route, a
//! bad bearer token next to a good key are refused; and a key made by
//! `gatehouse gen-api-key`, pasted into the config, authenticates.

mod support;

use std::path::Path;

use serde_json::{json, Value};
use support::*;

// --- API keys ---------------------------------------------------------------

/// Asserts nothing of the API key reached the backend in `request`.
fn assert_no_api_key(request: &Value, what: &str) {
    assert!(seen(request, "x-api-key").is_empty(), "{what}: {request}");
    let text = request.to_string();
    assert!(
        !text.contains(API_KEY),
        "{what}: the key reached the backend: {text}"
    );
    assert!(
        !request["query"]
            .as_str()
            .unwrap_or("")
            .to_ascii_lowercase()
            .contains("api"),
        "{what}: {request}"
    );
}

#[tokio::test]
async fn api_key_in_the_header_authenticates_and_is_not_forwarded() {
    let (backend, gate) = gate_with_auth(api_key_auth, KEY_ROUTES).await;
    for path in ["/echo/keyed/x", "/echo/either/x"] {
        let res = get_with_api_key(&gate, path, API_KEY).await;
        assert_eq!(res.status(), 200, "{path}: {:?}", res.text().await);
        let request = only_request(&backend, path).await;
        assert_identity(&request, "ci-bot", "service", "api_key", path);
        assert_no_api_key(&request, path);
    }
    // An open route never forwards it either.
    gate.raw(&raw_get(
        "/echo/open/x?api_key=k",
        &format!("X-API-Key: {API_KEY}\r\n"),
    ))
    .await;
    let request = only_request(&backend, "open route").await;
    assert_no_api_key(&request, "open route");
}

#[tokio::test]
async fn api_key_in_the_query_is_stripped_in_every_spelling() {
    let (backend, gate) = gate_with_auth(api_key_auth, KEY_ROUTES).await;
    for (query, kept) in [
        (format!("api_key={API_KEY}"), ""),
        (format!("a=1&api_key={API_KEY}&b=2"), "a=1&b=2"),
        (format!("a=1&api%5Fkey={API_KEY}"), "a=1"),
        (format!("api%5fkey={API_KEY}&b=2"), "b=2"),
        (format!("%61%70%69%5F%6B%65%79={API_KEY}"), ""),
    ] {
        let target = format!("/echo/keyed/x?{query}");
        let answer = gate.raw(&raw_get(&target, "")).await;
        assert_eq!(status_of(&answer), 200, "{target}:\n{answer}");
        let request = only_request(&backend, &target).await;
        assert_eq!(request["query"], kept, "{target}");
        assert_identity(&request, "ci-bot", "service", "api_key", &target);
        assert_no_api_key(&request, &target);
    }
}

#[tokio::test]
async fn wrong_api_key_gets_401_invalid_api_key() {
    let (backend, gate) = gate_with_auth(api_key_auth, KEY_ROUTES).await;
    let wrong_last = format!("{}x", &API_KEY[..API_KEY.len() - 1]);
    for key in [
        "nope",
        &API_KEY[..API_KEY.len() - 1],
        &wrong_last,
        "",
        "Bearer x",
    ] {
        let res = get_with_api_key(&gate, "/echo/keyed/x", key).await;
        let headers = assert_error(res, 401, "invalid_api_key", key).await;
        let challenge = headers["www-authenticate"].to_str().expect("ASCII");
        assert!(challenge.starts_with(CHALLENGE), "{challenge}");
        assert_never_seen(&backend, "a wrong API key").await;
    }
    // Two keys, one right: ambiguous, refused.
    let answer = gate
        .raw(&raw_get(
            &format!("/echo/keyed/x?api_key={API_KEY}"),
            "X-API-Key: nope\r\n",
        ))
        .await;
    assert_eq!(status_of(&answer), 401, "{answer}");
    assert_never_seen(&backend, "two API keys").await;
}

#[tokio::test]
async fn api_key_on_a_jwt_only_route_is_missing_credentials() {
    let (backend, gate) = gate_with_auth(api_key_auth, KEY_ROUTES).await;
    for target in [
        "/echo/jwt/x".to_owned(),
        format!("/echo/jwt/x?api_key={API_KEY}"),
    ] {
        let answer = gate
            .raw(&raw_get(&target, &format!("X-API-Key: {API_KEY}\r\n")))
            .await;
        assert_raw_error(&answer, 401, "missing_credentials", &target);
        assert_eq!(raw_headers(&answer, "www-authenticate"), [CHALLENGE]);
        assert_never_seen(&backend, "an API key on a JWT-only route").await;
    }
    // And a bearer token on an API-key-only route.
    let res = get_with_token(&gate, "/echo/keyed/x", &token_for("alice", &["admin"])).await;
    assert_401(
        res,
        "missing_credentials",
        CHALLENGE,
        "JWT on api_key route",
    )
    .await;
    assert_never_seen(&backend, "a JWT on an API-key-only route").await;
}

#[tokio::test]
async fn invalid_bearer_token_is_not_rescued_by_a_valid_api_key() {
    let (backend, gate) = gate_with_auth(api_key_auth, KEY_ROUTES).await;
    let expired = hs256(&with(
        access_claims("alice", &["admin"]),
        "exp",
        json!(now() - 3600),
    ));
    for bad in ["garbage", "", expired.as_str()] {
        let answer = gate
            .raw(&raw_get(
                "/echo/either/x",
                &format!("Authorization: Bearer {bad}\r\nX-API-Key: {API_KEY}\r\n"),
            ))
            .await;
        assert_raw_error(&answer, 401, "invalid_token", "bad bearer + good key");
        assert_never_seen(&backend, "a bad bearer token with a good API key").await;
    }
    // A valid token with a wrong key is refused too.
    let token = token_for("alice", &["admin"]);
    let answer = gate
        .raw(&raw_get(
            "/echo/either/x",
            &format!("{}X-API-Key: nope\r\n", auth_line(&token)),
        ))
        .await;
    assert_eq!(status_of(&answer), 401, "{answer}");
    assert_never_seen(&backend, "a good bearer token with a bad API key").await;
}

// --- gatehouse gen-api-key --------------------------------------------------

#[tokio::test]
async fn generated_api_key_pasted_into_the_config_authenticates() {
    let out = std::process::Command::new(binary())
        .args(["gen-api-key", "--name", "ci-bot"])
        .output()
        .expect("run gatehouse gen-api-key");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    let (key, snippet) = stdout.split_once('\n').expect("the key, then the YAML");
    let key = key.trim().to_owned();
    assert!(key.len() >= 32, "a long random key: {key:?}");
    assert!(snippet.contains("- id: ci-bot"), "{snippet}");
    assert!(
        !snippet.contains(&key),
        "the snippet holds the hash, not the key"
    );
    let pasted: String = snippet.lines().map(|l| format!("      {l}\n")).collect();
    let auth = move |_: &Path| {
        format!("  jwt:\n    secret: {JWT_SECRET}\n  api_keys:\n    keys:\n{pasted}")
    };
    let (backend, gate) = gate_with_auth(auth, KEY_ROUTES).await;
    let res = get_with_api_key(&gate, "/echo/keyed/x", &key).await;
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    let request = only_request(&backend, "the generated key").await;
    assert_eq!(seen(&request, "x-auth-user"), ["ci-bot"]);
    assert_eq!(seen(&request, "x-auth-method"), ["api_key"]);
}
