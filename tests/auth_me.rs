//! `GET /auth/me` (SPEC §4): gatehouse describes the verified principal of a
//! bearer token or an API key itself, never asking the backend, and answers
//! 401 without valid credentials.

mod support;

use serde_json::{json, Value};
use support::*;

#[tokio::test]
async fn auth_me_describes_a_bearer_token() {
    let (backend, gate) = gate_with_auth(api_key_auth, KEY_ROUTES).await;
    let claims = access_claims("alice", &["a", "b"]);
    let exp = claims["exp"].as_u64().expect("exp");
    let res = get_with_token(&gate, "/auth/me", &hs256(&claims)).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("JSON");
    assert_eq!(
        body,
        json!({"sub": "alice", "roles": ["a", "b"], "method": "jwt", "exp": exp})
    );
    assert!(body["exp"].is_u64(), "exp is an integer: {body}");
    assert_never_seen(&backend, "GET /auth/me").await;
}

#[tokio::test]
async fn auth_me_describes_an_api_key_without_exp() {
    let (backend, gate) = gate_with_auth(api_key_auth, KEY_ROUTES).await;
    let res = get_with_api_key(&gate, "/auth/me", API_KEY).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("JSON");
    assert_eq!(
        body,
        json!({"sub": "ci-bot", "roles": ["service"], "method": "api_key"})
    );
    assert_never_seen(&backend, "GET /auth/me").await;
}

#[tokio::test]
async fn auth_me_without_valid_credentials_is_401() {
    let (backend, gate) = gate_with_auth(api_key_auth, KEY_ROUTES).await;
    let res = get_without_credentials(&gate, "/auth/me").await;
    assert_401(res, "missing_credentials", CHALLENGE, "/auth/me").await;
    let expired = hs256(&with(
        access_claims("alice", &["a"]),
        "exp",
        json!(now() - 3600),
    ));
    let res = get_with_token(&gate, "/auth/me", &expired).await;
    assert_401(
        res,
        "invalid_token",
        INVALID_TOKEN_CHALLENGE,
        "/auth/me expired",
    )
    .await;
    assert_never_seen(&backend, "GET /auth/me").await;
}
