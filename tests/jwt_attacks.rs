//! Bearer tokens that must be refused (SPEC §2 `auth.jwt`; §4 token
//! claims; §5 `invalid_token`; RFC 8725 JWT best practice): no token,
//! `alg: none`, other keys and algorithms, the public key as an HMAC secret,
//! attacker keys in `jwk`/`jku`/`x5u`, `kid` injection, expired and
//! not-yet-valid tokens, wrong `iss`/`aud`/`typ`, a missing `exp`, and a
//! `crit` header nobody understands (RFC 7515 §4.1.11).
//!
//! Every attack is checked twice: gatehouse's answer (401, SPEC §5 JSON
//! body, RFC 6750 `WWW-Authenticate`) and the backend's record, which must
//! show that the request never reached it — a refusal that still forwarded
//! the request would be no refusal at all.

mod support;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, Header};
use serde_json::json;
use support::*;

// --- JWT attacks (RFC 8725) ------------------------------------------------

#[tokio::test]
async fn missing_token_gets_401_missing_credentials_with_a_bare_challenge() {
    let (backend, gate) = gate_with(JWT_ROUTES).await;
    let res = get_without_credentials(&gate, "/echo/api/x").await;
    assert_401(res, "missing_credentials", CHALLENGE, "no token").await;
    // A non-Bearer scheme is no token either.
    let res = gate
        .client()
        .get(gate.url("/echo/api/x"))
        .header("authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .expect("request");
    assert_401(res, "missing_credentials", CHALLENGE, "Basic credentials").await;
    assert_never_seen(&backend, "a request without a token").await;
}

#[tokio::test]
async fn websocket_upgrade_without_a_valid_token_is_refused_before_the_backend() {
    let (backend, gate) = gate_with(JWT_ROUTES).await;
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Version: 13\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let answer = gate.raw(&raw_get("/echo/api/ws", upgrade)).await;
    assert_raw_error(
        &answer,
        401,
        "missing_credentials",
        "WebSocket without token",
    );
    let forged = sign(
        &Header::new(Algorithm::HS256),
        &access_claims("mallory", &["user"]),
        &hmac(WRONG_SECRET.as_bytes()),
    );
    let answer = gate
        .raw(&raw_get(
            "/echo/api/ws",
            &format!("{}{upgrade}", auth_line(&forged)),
        ))
        .await;
    assert_raw_error(
        &answer,
        401,
        "invalid_token",
        "WebSocket with a forged token",
    );
    assert_never_seen(&backend, "a WebSocket upgrade without a valid token").await;
}

#[tokio::test]
async fn alg_none_token_is_refused() {
    let (backend, gate) = gate_with(JWT_ROUTES).await;
    let claims = access_claims("mallory", &["admin"]);
    let valid_signature = token_for("mallory", &["admin"])
        .rsplit('.')
        .next()
        .expect("a signature")
        .to_owned();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({"alg": alg, "typ": "JWT"});
        for signature in ["", valid_signature.as_str()] {
            let token = hand_made(&header, &claims, signature);
            assert_token_refused(&gate, &backend, "/echo/admin/x", &token, alg).await;
        }
    }
    // No alg at all, or an empty one, even with a correct HMAC.
    for header in [json!({"typ": "JWT"}), json!({"alg": "", "typ": "JWT"})] {
        let token = hand_made_hs256(&header, &claims);
        assert_token_refused(&gate, &backend, "/echo/admin/x", &token, "no alg").await;
    }
    // The signature stripped off a HS256 token.
    let token = hand_made(&json!({"alg": "HS256", "typ": "JWT"}), &claims, "");
    assert_token_refused(&gate, &backend, "/echo/admin/x", &token, "stripped").await;
}

#[tokio::test]
async fn token_signed_with_another_hs_key_is_refused() {
    let (backend, gate) = gate_with(JWT_ROUTES).await;
    let claims = access_claims("mallory", &["admin"]);
    for secret in [
        WRONG_SECRET,
        "",
        "secret",
        &JWT_SECRET[..JWT_SECRET.len() - 1],
    ] {
        let token = sign(
            &Header::new(Algorithm::HS256),
            &claims,
            &hmac(secret.as_bytes()),
        );
        assert_token_refused(&gate, &backend, "/echo/api/x", &token, secret).await;
    }
}

#[tokio::test]
async fn garbage_bearer_tokens_are_refused() {
    let (backend, gate) = gate_with(JWT_ROUTES).await;
    let valid = token_for("alice", &["user"]);
    let mut flipped = valid.clone().into_bytes();
    let last = flipped.len() - 2;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).expect("ASCII token");
    let other = token_for("mallory", &["admin"]);
    let claims_swapped = {
        let parts: Vec<&str> = valid.split('.').collect();
        let evil: Vec<&str> = other.split('.').collect();
        format!("{}.{}.{}", parts[0], evil[1], parts[2])
    };
    let extra_part = format!("{valid}.x");
    for (token, what) in [
        ("", "empty"),
        ("abc", "one part"),
        ("a.b", "two parts"),
        ("a.b.c.d", "four parts"),
        ("!!!.???.***", "not base64"),
        (flipped.as_str(), "a flipped signature bit"),
        (claims_swapped.as_str(), "claims from another token"),
        (extra_part.as_str(), "an extra part"),
    ] {
        assert_token_refused(&gate, &backend, "/echo/api/x", token, what).await;
    }
}

#[tokio::test]
async fn hs256_token_keyed_with_the_public_key_is_refused() {
    let (backend, gate) = gate_with_auth(rsa_and_issuers_auth, JWT_ROUTES).await;
    let pem = &own_rsa().public;
    for (key, what) in [
        (pem.as_bytes(), "the PEM file's bytes"),
        (
            pem.trim_end().as_bytes(),
            "the PEM without its final newline",
        ),
    ] {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let token = sign(
                &Header::new(alg),
                &access_claims("mallory", &["admin"]),
                &hmac(key),
            );
            assert_token_refused(&gate, &backend, "/echo/admin/x", &token, what).await;
        }
    }
    // Against the ES256 issuer: HS256 keyed with its EC public key PEM.
    let claims = json!({"iss": KEYS_ORG, "sub": "mallory", "roles": ["admin"], "exp": now() + 300});
    let token = sign(
        &Header::new(Algorithm::HS256),
        &claims,
        &hmac(keys_org_ec().public.as_bytes()),
    );
    assert_token_refused(&gate, &backend, "/echo/admin/x", &token, "EC PEM").await;
    // Against the IdP: HS256 keyed with the JWKS file's bytes.
    let token = sign(
        &header_with_kid(Algorithm::HS256, IDP_KID),
        &idp_claims("mallory", &["admin"]),
        &hmac(jwks([idp_rsa().rsa_jwk(IDP_KID)]).as_bytes()),
    );
    assert_token_refused(&gate, &backend, "/echo/admin/x", &token, "JWKS bytes").await;
}

#[tokio::test]
async fn embedded_jwk_header_with_the_attackers_key_is_refused() {
    // RS256 own tokens and the IdP: an RSA key of the attacker's, in `jwk`.
    let (backend, gate) = gate_with_auth(rsa_and_issuers_auth, JWT_ROUTES).await;
    let attacker = attacker_rsa().encoding(Algorithm::RS256);
    let mut header = Header::new(Algorithm::RS256);
    header.jwk = Some(Jwk::from_encoding_key(&attacker, Algorithm::RS256).expect("attacker JWK"));
    for claims in [
        access_claims("mallory", &["admin"]),
        idp_claims("mallory", &["admin"]),
    ] {
        let token = sign(&header, &claims, &attacker);
        assert_token_refused(&gate, &backend, "/echo/admin/x", &token, "RSA jwk").await;
    }
    let mut with_kid = header.clone();
    with_kid.kid = Some(IDP_KID.to_owned());
    let token = sign(&with_kid, &idp_claims("mallory", &["admin"]), &attacker);
    assert_token_refused(&gate, &backend, "/echo/admin/x", &token, "jwk + kid").await;

    // HS256 own tokens: an HMAC key of the attacker's, in `jwk`.
    let (backend, gate) = gate_with(JWT_ROUTES).await;
    let attacker = hmac(WRONG_SECRET.as_bytes());
    let mut header = Header::new(Algorithm::HS256);
    header.jwk = Some(Jwk::from_encoding_key(&attacker, Algorithm::HS256).expect("attacker JWK"));
    let token = sign(&header, &access_claims("mallory", &["admin"]), &attacker);
    assert_token_refused(&gate, &backend, "/echo/admin/x", &token, "oct jwk").await;
}

#[tokio::test]
async fn jku_and_x5u_headers_pointing_at_the_attackers_keys_are_refused() {
    let (backend, gate) = gate_with_auth(rsa_and_issuers_auth, JWT_ROUTES).await;
    let attacker = attacker_rsa().encoding(Algorithm::RS256);
    let url = "https://attacker.example/keys.json".to_owned();
    let mut jku = header_with_kid(Algorithm::RS256, "attacker");
    jku.jku = Some(url.clone());
    let mut x5u = Header::new(Algorithm::RS256);
    x5u.x5u = Some(url.clone());
    let mut jku_idp_kid = header_with_kid(Algorithm::RS256, IDP_KID);
    jku_idp_kid.jku = Some(url);
    for (header, what) in [(jku, "jku"), (x5u, "x5u"), (jku_idp_kid, "jku + IdP kid")] {
        for claims in [
            access_claims("mallory", &["admin"]),
            idp_claims("mallory", &["admin"]),
        ] {
            let token = sign(&header, &claims, &attacker);
            assert_token_refused(&gate, &backend, "/echo/admin/x", &token, what).await;
        }
    }
}

#[tokio::test]
async fn kid_injection_on_own_tokens_is_refused() {
    let (backend, gate) = gate_with(JWT_ROUTES).await;
    let claims = access_claims("mallory", &["admin"]);
    for (kid, secret) in [
        // /dev/null reads as an empty key.
        ("../../dev/null", &b""[..]),
        ("../../../../../../dev/null", &b"\0"[..]),
        ("x' OR 1=1", &b"1"[..]),
        ("x' UNION SELECT 'attacker-key'--", &b"attacker-key"[..]),
        ("|cat /etc/passwd", WRONG_SECRET.as_bytes()),
    ] {
        let header = header_with_kid(Algorithm::HS256, kid);
        let token = sign(&header, &claims, &hmac(secret));
        assert_token_refused(&gate, &backend, "/echo/admin/x", &token, kid).await;
    }
}

#[tokio::test]
async fn kid_injection_on_an_external_issuer_is_refused() {
    let (backend, gate) = gate_with_auth(rsa_and_issuers_auth, JWT_ROUTES).await;
    let attacker = attacker_rsa().encoding(Algorithm::RS256);
    let claims = idp_claims("mallory", &["admin"]);
    for kid in [
        "../../dev/null",
        "x' OR 1=1",
        "idp-1' OR '1'='1",
        "../idp-jwks.json",
        "",
    ] {
        let token = sign(&header_with_kid(Algorithm::RS256, kid), &claims, &attacker);
        assert_token_refused(&gate, &backend, "/echo/admin/x", &token, kid).await;
    }
    // The IdP's own kid, or none, with the attacker's signature.
    for header in [
        header_with_kid(Algorithm::RS256, IDP_KID),
        Header::new(Algorithm::RS256),
    ] {
        let token = sign(&header, &claims, &attacker);
        assert_token_refused(&gate, &backend, "/echo/admin/x", &token, "IdP kid").await;
    }
}

#[tokio::test]
async fn expired_token_is_refused_beyond_leeway_and_accepted_within_it() {
    let (backend, gate) = gate_with(JWT_ROUTES).await;
    let now = now();
    for exp in [now - 120, now - 3600, 1] {
        let claims = access_claims("alice", &["user"]);
        let iat = json!(exp.saturating_sub(900));
        let token = hs256(&with(with(claims, "exp", json!(exp)), "iat", iat));
        assert_token_refused(&gate, &backend, "/echo/api/x", &token, "expired").await;
    }
    // Default leeway: 30s.
    let token = hs256(&with(
        access_claims("alice", &["user"]),
        "exp",
        json!(now - 5),
    ));
    let request = assert_token_accepted(&gate, &backend, "/echo/api/x", &token, "leeway").await;
    assert_identity(&request, "alice", "user", "jwt", "inside leeway");
}

// A token verified and cached, then expired, is refused: shown without
// waiting, on a fake clock, by the unit tests of `src/auth/jwt.rs`
// (`a_valid_token_is_accepted_until_exp_plus_leeway_even_from_the_cache`)
// and `src/pipeline/tests.rs`
// (`a_token_is_refused_once_the_clock_passes_its_expiry_and_leeway`).

#[tokio::test]
async fn not_yet_valid_token_is_refused_beyond_leeway_and_accepted_within_it() {
    let (backend, gate) = gate_with(JWT_ROUTES).await;
    let now = now();
    let token = hs256(&with(
        access_claims("alice", &["user"]),
        "nbf",
        json!(now + 120),
    ));
    assert_token_refused(&gate, &backend, "/echo/api/x", &token, "nbf in 2 min").await;
    let token = hs256(&with(
        access_claims("alice", &["user"]),
        "nbf",
        json!(now + 5),
    ));
    assert_token_accepted(&gate, &backend, "/echo/api/x", &token, "nbf in 5s").await;
}

#[tokio::test]
async fn token_from_a_wrong_issuer_is_refused() {
    let (backend, gate) = gate_with(JWT_ROUTES).await;
    for iss in [
        json!("evil"),
        json!("Gatehouse"),
        json!("gatehouse "),
        json!(["gatehouse"]),
    ] {
        let token = hs256(&with(
            access_claims("mallory", &["admin"]),
            "iss",
            iss.clone(),
        ));
        assert_token_refused(&gate, &backend, "/echo/api/x", &token, &iss.to_string()).await;
    }
    let token = hs256(&without(access_claims("mallory", &["admin"]), "iss"));
    assert_token_refused(&gate, &backend, "/echo/api/x", &token, "no iss").await;
}

#[tokio::test]
async fn token_for_a_wrong_audience_is_refused() {
    let (backend, gate) = gate_with(JWT_ROUTES).await;
    for aud in [json!("chatbot"), json!(["other"]), json!("")] {
        let token = hs256(&with(
            access_claims("mallory", &["user"]),
            "aud",
            aud.clone(),
        ));
        assert_token_refused(&gate, &backend, "/echo/api/x", &token, &aud.to_string()).await;
    }
    let token = hs256(&without(access_claims("mallory", &["user"]), "aud"));
    assert_token_refused(&gate, &backend, "/echo/api/x", &token, "no aud").await;
}

#[tokio::test]
async fn token_without_exp_is_refused() {
    let (backend, gate) = gate_with(JWT_ROUTES).await;
    let token = hs256(&without(access_claims("mallory", &["user"]), "exp"));
    assert_token_refused(&gate, &backend, "/echo/api/x", &token, "no exp").await;
    for exp in [json!(null), json!("9999999999"), json!(-1)] {
        let token = hs256(&with(
            access_claims("mallory", &["user"]),
            "exp",
            exp.clone(),
        ));
        assert_token_refused(&gate, &backend, "/echo/api/x", &token, &exp.to_string()).await;
    }
}

#[tokio::test]
async fn hs512_token_is_refused_where_hs256_is_configured() {
    let (backend, gate) = gate_with(JWT_ROUTES).await;
    for alg in [Algorithm::HS512, Algorithm::HS384] {
        let token = sign(
            &Header::new(alg),
            &access_claims("alice", &["user"]),
            &hmac(JWT_SECRET.as_bytes()),
        );
        assert_token_refused(&gate, &backend, "/echo/api/x", &token, &format!("{alg:?}")).await;
    }
}

#[tokio::test]
async fn own_token_that_is_not_an_access_token_is_refused() {
    let (backend, gate) = gate_with(JWT_ROUTES).await;
    let token = hs256(&without(access_claims("alice", &["user"]), "typ"));
    assert_token_refused(&gate, &backend, "/echo/api/x", &token, "no typ").await;
    for typ in ["refresh", "Access", "id", ""] {
        let token = hs256(&with(access_claims("alice", &["user"]), "typ", json!(typ)));
        assert_token_refused(&gate, &backend, "/echo/api/x", &token, typ).await;
    }
}

// --- crit (RFC 7515 §4.1.11; issue 10) ----------------------------------------

#[tokio::test]
async fn a_jws_with_a_crit_header_is_refused_for_own_and_accepted_issuers() {
    // RFC 7515 §4.1.11: the verifier must understand every extension `crit`
    // names, and gatehouse understands none.
    let (backend, gate) = gate_with_auth(rsa_and_issuers_auth, JWT_ROUTES).await;
    let crit = |alg: Algorithm, kid: Option<&str>| {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        header.crit = Some(vec!["exp".to_owned()]);
        header
    };
    let own = sign(
        &crit(Algorithm::RS256, None),
        &access_claims("alice", &["user"]),
        &own_rsa().encoding(Algorithm::RS256),
    );
    assert_token_refused(&gate, &backend, "/echo/api/x", &own, "own token with crit").await;
    let idp = sign(
        &crit(Algorithm::RS256, Some(IDP_KID)),
        &idp_claims("alice", &["user"]),
        &idp_rsa().encoding(Algorithm::RS256),
    );
    assert_token_refused(
        &gate,
        &backend,
        "/echo/api/x",
        &idp,
        "JWKS issuer with crit",
    )
    .await;
    let claims = json!({"iss": KEYS_ORG, "sub": "alice", "roles": ["user"], "exp": now() + 300});
    let keys_org = sign(
        &crit(Algorithm::ES256, None),
        &claims,
        &keys_org_ec().encoding(Algorithm::ES256),
    );
    assert_token_refused(
        &gate,
        &backend,
        "/echo/api/x",
        &keys_org,
        "PEM issuer with crit",
    )
    .await;
    // Without `crit` the same tokens pass: the refusal is the header's.
    let idp = idp_token(&idp_claims("alice", &["user"]));
    assert_token_accepted(&gate, &backend, "/echo/api/x", &idp, "IdP without crit").await;
}
