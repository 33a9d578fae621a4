//! Bearer tokens that are accepted (SPEC §2 `auth.jwt`; §3.7; §4 token
//! claims; §6 `gatehouse_auth_total`): own HS256, RS256, ES256 and EdDSA
//! tokens, external issuers from a JWKS file or a PEM key pinned to their
//! algorithms, with roles from a dotted or space-separated claim, the
//! identity headers the real Rust and FastAPI backends get, and the metric
//! that counts each outcome with bounded labels.

mod support;

use jsonwebtoken::{Algorithm, Header};
use serde_json::{json, Value};
use support::*;

// --- valid tokens -----------------------------------------------------------

#[tokio::test]
async fn valid_hs256_token_reaches_the_backend_with_identity_headers() {
    let (backend, gate) = gate_with(JWT_ROUTES).await;
    let token = token_for("alice", &["a", "b"]);
    let request = assert_token_accepted(&gate, &backend, "/echo/api/x", &token, "HS256").await;
    assert_eq!(request["path"], "/echo/api/x");
    assert_identity(&request, "alice", "a,b", "jwt", "HS256");
}

#[tokio::test]
async fn fastapi_backend_sees_the_token_subject_as_the_chat_user() {
    let backend = start_fastapi().await;
    let gate = Gatehouse::start(
        &backend.url(""),
        "routes:\n  - name: chat\n    path: /chat\n    methods: [POST]\n    auth: jwt\n",
    )
    .await;
    let client = gate.client();
    let res = client
        .post(gate.url("/chat"))
        .json(&json!({"message": "hi"}))
        .header("x-auth-user", "mallory")
        .send()
        .await
        .expect("POST /chat");
    assert_401(res, "missing_credentials", CHALLENGE, "no token").await;
    assert_never_seen(&backend, "POST /chat without a token").await;

    let res = client
        .post(gate.url("/chat"))
        .bearer_auth(token_for("alice", &["a", "b"]))
        .header("x-auth-user", "mallory")
        .json(&json!({"message": "hi"}))
        .send()
        .await
        .expect("POST /chat");
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("chat JSON");
    assert_eq!(body, json!({"user": "alice", "reply": "echo: hi"}));
    let request = only_request(&backend, "POST /chat").await;
    assert_identity(&request, "alice", "a,b", "jwt", "FastAPI");
}

#[tokio::test]
async fn rs256_es256_and_eddsa_configs_accept_their_own_tokens() {
    for (alg, name, key) in [
        (Algorithm::RS256, "RS256", own_rsa()),
        (Algorithm::ES256, "ES256", own_ec()),
        (Algorithm::EdDSA, "EdDSA", own_ed()),
    ] {
        let (backend, gate) = gate_with_auth(|dir| own_pem_auth(dir, name, key), JWT_ROUTES).await;
        let claims = access_claims("alice", &["admin", "user"]);
        let token = sign(&Header::new(alg), &claims, &key.encoding(alg));
        let request = assert_token_accepted(&gate, &backend, "/echo/admin/x", &token, name).await;
        assert_identity(&request, "alice", "admin,user", "jwt", name);
        // The public key, used as an HMAC secret, signs nothing.
        let forged = sign(
            &Header::new(Algorithm::HS256),
            &claims,
            &hmac(key.public.as_bytes()),
        );
        assert_token_refused(&gate, &backend, "/echo/admin/x", &forged, name).await;
        // Nor does the configured HS256 secret of the base config, now gone.
        assert_token_refused(&gate, &backend, "/echo/admin/x", &hs256(&claims), name).await;
        // Another key of the same kind.
        let other = match alg {
            Algorithm::RS256 => attacker_rsa().encoding(alg),
            Algorithm::ES256 => keys_org_ec().encoding(alg),
            _ => KeyPem::generate(&rcgen::PKCS_ED25519).encoding(alg),
        };
        let token = sign(&Header::new(alg), &claims, &other);
        assert_token_refused(&gate, &backend, "/echo/admin/x", &token, name).await;
    }
}

#[tokio::test]
async fn external_issuer_from_a_jwks_file_is_accepted_with_roles_from_a_dotted_claim() {
    let (backend, gate) = gate_with_auth(rsa_and_issuers_auth, JWT_ROUTES).await;
    let token = idp_token(&idp_claims("ext-alice", &["admin", "user"]));
    let request = assert_token_accepted(&gate, &backend, "/echo/admin/x", &token, "IdP").await;
    assert_identity(&request, "ext-alice", "admin,user", "jwt", "IdP");
    // Roles elsewhere in the token do not count.
    let claims = with(idp_claims("ext-bob", &["user"]), "roles", json!(["admin"]));
    let res = get_with_token(&gate, "/echo/admin/x", &idp_token(&claims)).await;
    assert_error(res, 403, "forbidden", "roles outside realm_access.roles").await;
    assert_never_seen(&backend, "an IdP token without the admin role").await;
}

#[tokio::test]
async fn external_issuer_with_a_public_key_takes_roles_from_a_space_separated_string() {
    let (backend, gate) = gate_with_auth(rsa_and_issuers_auth, JWT_ROUTES).await;
    let claims = json!({
        "iss": KEYS_ORG,
        "sub": "svc-b",
        "roles": "reader writer admin",
        "iat": now(),
        "exp": now() + 300,
    });
    let token = sign(
        &Header::new(Algorithm::ES256),
        &claims,
        &keys_org_ec().encoding(Algorithm::ES256),
    );
    let request = assert_token_accepted(&gate, &backend, "/echo/admin/x", &token, "ES256").await;
    assert_identity(
        &request,
        "svc-b",
        "reader,writer,admin",
        "jwt",
        "ES256 issuer",
    );
}

#[tokio::test]
async fn external_issuer_is_pinned_to_its_algorithms() {
    let (backend, gate) = gate_with_auth(rsa_and_issuers_auth, JWT_ROUTES).await;
    let claims = idp_claims("ext-alice", &["admin"]);
    for alg in [Algorithm::RS384, Algorithm::RS512, Algorithm::PS256] {
        let token = sign(
            &header_with_kid(alg, IDP_KID),
            &claims,
            &idp_rsa().encoding(alg),
        );
        assert_token_refused(
            &gate,
            &backend,
            "/echo/admin/x",
            &token,
            &format!("{alg:?}"),
        )
        .await;
    }
    // The IdP's key cannot mint gatehouse's own tokens either.
    let own = access_claims("mallory", &["admin"]);
    for header in [
        Header::new(Algorithm::RS256),
        header_with_kid(Algorithm::RS256, IDP_KID),
    ] {
        let token = sign(&header, &own, &idp_rsa().encoding(Algorithm::RS256));
        assert_token_refused(&gate, &backend, "/echo/admin/x", &token, "IdP key, own iss").await;
    }
}

#[tokio::test]
async fn external_token_with_wrong_claims_is_refused() {
    let (backend, gate) = gate_with_auth(rsa_and_issuers_auth, JWT_ROUTES).await;
    let good = idp_claims("ext-alice", &["admin"]);
    let now = now();
    for (claims, what) in [
        (with(good.clone(), "aud", json!("gatehouse")), "wrong aud"),
        (without(good.clone(), "aud"), "no aud"),
        (without(good.clone(), "exp"), "no exp"),
        (with(good.clone(), "exp", json!(now - 120)), "expired"),
        (with(good.clone(), "nbf", json!(now + 120)), "not yet valid"),
        (
            with(good.clone(), "iss", json!("https://idp.example.com")),
            "iss without /",
        ),
        (without(good.clone(), "sub"), "no sub"),
    ] {
        assert_token_refused(&gate, &backend, "/echo/admin/x", &idp_token(&claims), what).await;
    }
}

// --- metrics ----------------------------------------------------------------

#[tokio::test]
async fn auth_metrics_count_ok_missing_invalid_expired_and_forbidden() {
    let (_backend, gate) = gate_with(JWT_ROUTES).await;
    let client = gate.client();
    let send = |path: &str, token: Option<String>| {
        let mut req = client.get(gate.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        async move { req.send().await.expect("request").status().as_u16() }
    };
    let user = || Some(token_for("alice", &["user"]));
    let expired = hs256(&with(
        access_claims("alice", &["user"]),
        "exp",
        json!(now() - 3600),
    ));
    let forged = sign(
        &Header::new(Algorithm::HS256),
        &access_claims("alice", &["user"]),
        &hmac(WRONG_SECRET.as_bytes()),
    );
    for _ in 0..2 {
        assert_eq!(send("/echo/api/x", user()).await, 200);
    }
    assert_eq!(send("/echo/api/x", None).await, 401);
    for _ in 0..3 {
        assert_eq!(send("/echo/api/x", Some(forged.clone())).await, 401);
    }
    assert_eq!(send("/echo/api/x", Some(expired.clone())).await, 401);
    assert_eq!(send("/echo/admin/x", user()).await, 403);
    assert_eq!(send("/nowhere", None).await, 401);

    let text = gate.metrics().await;
    let auth = |route: &str, result: &str| {
        sum_with_labels(
            &text,
            "gatehouse_auth_total",
            &[("route", route), ("scheme", "jwt"), ("result", result)],
        )
    };
    assert_eq!(auth("api", "ok"), 2.0, "{text}");
    assert_eq!(auth("api", "missing"), 1.0, "{text}");
    assert_eq!(auth("api", "invalid"), 3.0, "{text}");
    assert_eq!(auth("api", "expired"), 1.0, "{text}");
    assert_eq!(auth("admin", "forbidden"), 1.0, "{text}");
    assert_eq!(auth("default", "missing"), 1.0, "{text}");
    // Labels are bounded: no user, token or path in any series.
    for secret in [
        "alice",
        &forged[forged.len() - 20..],
        "/echo/api/x",
        "/nowhere",
    ] {
        assert!(!text.contains(secret), "{secret} appears in the metrics");
    }
}
