//! The signed identity assertion (SPEC §12), end to end: gatehouse signs
//! who the user is on every authenticated forwarded request (and never
//! forwards a client's copy), publishes its keys on both listeners and
//! through `gatehouse export-jwks`, rotates with `previous_key_files`, and
//! both example backends — the FastAPI dependency (PyJWT's `PyJWKClient`)
//! and the axum extractor (`jsonwebtoken`) — accept a valid assertion and
//! refuse one for another audience, an expired one and a forged one.

mod support;

use std::path::Path;

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use support::backends::{assertion_keys, start_fastapi_with, start_rust_backend_with};
use support::*;

/// The assertion's header, lower-case as backends record it.
const HEADER: &str = "x-gatehouse-assertion";
/// The issuer the configs set and the backends expect.
const ISSUER: &str = "https://gate.test";
/// `upstreams.app.audience`: what the backends expect.
const AUDIENCE: &str = "chat-app";

/// A free port for gatehouse's admin listener, so a backend can be told
/// where the JWKS is before gatehouse starts.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn jwks_url(admin: u16) -> String {
    format!("http://127.0.0.1:{admin}/.well-known/gatehouse/jwks.json")
}

/// The config: upstream `app` (audience [`AUDIENCE`]) and `other`
/// (audience `other-app`), both at `backend`; `/echo/open/**` without
/// authentication, `/other/**` to `other`, everything else with a JWT.
fn config(certs: &TestCerts, backend: &Backend, admin: u16, assertion: &str) -> String {
    let upstreams = format!(
        "upstreams:\n  app:\n    url: {url}\n    audience: {AUDIENCE}\n  other:\n    url: {url}\n    audience: other-app\n",
        url = backend.url("")
    );
    let extra = format!(
        "identity_headers:\n  assertion:\n    issuer: {ISSUER}\n    key_file: {dir}/keys/assertion.pem\n{assertion}\
         routes:\n  - path: /echo/open/**\n    auth: none\n  - path: /other/**\n    upstream: other\n    auth: jwt\n\
         default_route:\n  auth: jwt\n",
        dir = certs.dir.path().display()
    );
    config_yaml_with_auth(certs, &upstreams, &jwt_auth(""), &extra)
        .replace("admin: 127.0.0.1:0", &format!("admin: 127.0.0.1:{admin}"))
}

async fn start(backend: &Backend, admin: u16, assertion: &str) -> Gatehouse {
    let certs = TestCerts::new();
    let yaml = config(&certs, backend, admin, assertion);
    let path = certs.dir.path().join("gatehouse.yaml");
    std::fs::write(&path, yaml).expect("write config");
    Gatehouse::start_config(certs, path).await
}

/// The assertion the backend received with the request it last saw.
async fn assertion_seen(backend: &Backend, what: &str) -> String {
    let request = only_request(backend, what).await;
    let values = seen(&request, HEADER);
    assert_eq!(values.len(), 1, "{what}: one assertion: {request}");
    values[0].to_owned()
}

/// The claims of a token, unverified (the tests verify through backends).
fn claims_of(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWS");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// `claims` signed ES256 with the key in `pem`, under `kid`.
fn sign(pem: &[u8], kid: &str, claims: &Value) -> String {
    let mut header = Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    header.typ = Some("JWT".into());
    encode(
        &header,
        claims,
        &EncodingKey::from_ec_pem(pem).expect("an EC key"),
    )
    .expect("signed")
}

/// What `/verified/whoami` of `backend` answers for `token`, sent directly.
async fn verified(backend: &Backend, token: &str) -> (u16, Value) {
    let res = reqwest::Client::new()
        .get(backend.url("/verified/whoami"))
        .header(HEADER, token)
        .send()
        .await
        .expect("the backend answers");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Both backends verify gatehouse's assertions with its published keys, and
/// refuse any other: for another audience, expired, or signed by a stranger.
#[tokio::test]
async fn both_example_backends_verify_the_assertion_and_refuse_bad_ones() {
    for fastapi in [false, true] {
        let admin = free_port();
        let url = jwks_url(admin);
        let backend = if fastapi {
            start_fastapi_with(&[
                ("GATEHOUSE_JWKS_URL", &url),
                ("GATEHOUSE_AUDIENCE", AUDIENCE),
                ("GATEHOUSE_ISSUER", ISSUER),
            ])
            .await
        } else {
            start_rust_backend_with(Some(assertion_keys(&url, AUDIENCE, ISSUER))).await
        };
        let name = backend.name;
        let gw = start(&backend, admin, "").await;
        let c = gw.client();

        // Through gatehouse: verified, and it names the user.
        let res = c
            .get(gw.url("/verified/whoami"))
            .bearer_auth(token_for("alice", &["user", "admin"]))
            .send()
            .await
            .expect("through gatehouse");
        assert_eq!(res.status(), 200, "{name}");
        let who: Value = res.json().await.expect("JSON");
        assert_eq!(who["sub"], "alice", "{name}");
        assert_eq!(who["roles"], json!(["user", "admin"]), "{name}");
        assert_eq!(who["method"], "jwt", "{name}");

        // Without gatehouse, an assertion still has to be valid.
        let (status, _) = verified(&backend, "").await;
        assert_eq!(status, 401, "{name}: an empty assertion");
        // A real one, meant for the other upstream: another audience.
        clear_recorded(backend.addr).await;
        let res = c
            .get(gw.url("/other/echo"))
            .bearer_auth(token_for("alice", &["user"]))
            .send()
            .await
            .expect("to the other upstream");
        assert_eq!(res.status(), 404, "{name}: the backend has no /other/echo");
        let for_other = assertion_seen(&backend, "the other upstream").await;
        assert_eq!(claims_of(&for_other)["aud"], "other-app");
        let (status, _) = verified(&backend, &for_other).await;
        assert_eq!(status, 401, "{name}: another audience");

        // Made with gatehouse's own key: valid, then expired.
        let pem = std::fs::read(gw.certs.dir.path().join("keys/assertion.pem")).expect("the key");
        let kid = jsonwebtoken::decode_header(&for_other)
            .expect("header")
            .kid
            .expect("kid");
        let now = jsonwebtoken::get_current_timestamp();
        let mut claims = claims_of(&for_other);
        claims["aud"] = AUDIENCE.into();
        claims["sub"] = "mallory".into();
        let (status, body) = verified(&backend, &sign(&pem, &kid, &claims)).await;
        assert_eq!(
            status, 200,
            "{name}: the real key signs what it signs: {body}"
        );
        claims["iat"] = (now - 600).into();
        claims["nbf"] = (now - 600).into();
        claims["exp"] = (now - 540).into();
        let (status, _) = verified(&backend, &sign(&pem, &kid, &claims)).await;
        assert_eq!(status, 401, "{name}: expired");

        // Signed by a stranger's key under gatehouse's kid: forged.
        let stranger = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .expect("a key")
            .serialize_pem();
        claims["iat"] = now.into();
        claims["nbf"] = now.into();
        claims["exp"] = (now + 60).into();
        let (status, _) = verified(&backend, &sign(stranger.as_bytes(), &kid, &claims)).await;
        assert_eq!(status, 401, "{name}: forged");
        // And with `alg: none`.
        let unsigned = format!(
            "{}.{}.",
            b64url(br#"{"alg":"none","typ":"JWT"}"#),
            b64url(claims.to_string().as_bytes())
        );
        let (status, _) = verified(&backend, &unsigned).await;
        assert_eq!(status, 401, "{name}: unsigned");
    }
}

/// Every authenticated forwarded request carries a fresh assertion with the
/// SPEC's claims; an anonymous one carries none; a client's copy never
/// reaches the backend.
#[tokio::test]
async fn authenticated_requests_carry_a_fresh_assertion_and_client_copies_are_removed() {
    let backend = start_rust_backend().await;
    let gw = start(&backend, free_port(), "    ttl: 2m\n").await;
    let c = gw.client();
    let token = token_for("alice", &["user"]);
    let mut seen_tokens = Vec::new();
    for _ in 0..2 {
        clear_recorded(backend.addr).await;
        let res = c
            .get(gw.url("/echo/x"))
            .bearer_auth(&token)
            .header(HEADER, "forged.by.client")
            .header("X-Gatehouse_Assertion", "also.forged")
            .send()
            .await
            .expect("request");
        // The `_` spelling of a header gatehouse owns is refused outright.
        if res.status() == 400 {
            let res = c
                .get(gw.url("/echo/x"))
                .bearer_auth(&token)
                .header(HEADER, "forged.by.client")
                .send()
                .await
                .expect("request");
            assert_eq!(res.status(), 200);
        } else {
            assert_eq!(res.status(), 200);
        }
        let value = assertion_seen(&backend, "an authenticated request").await;
        assert_ne!(value, "forged.by.client");
        seen_tokens.push(value);
    }
    assert_ne!(seen_tokens[0], seen_tokens[1], "fresh for every request");
    let header = jsonwebtoken::decode_header(&seen_tokens[0]).expect("a JWS");
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    let claims = claims_of(&seen_tokens[0]);
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], AUDIENCE);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["roles"], json!(["user"]));
    assert_eq!(claims["method"], "jwt");
    assert_eq!(claims["nbf"], claims["iat"]);
    assert_eq!(
        claims["exp"].as_u64().expect("exp") - claims["iat"].as_u64().expect("iat"),
        120
    );
    assert_eq!(claims["jti"].as_str().map(str::len), Some(32));
    assert!(claims.get("email").is_none(), "{claims}");

    // Anonymous: none, and the client's is gone.
    clear_recorded(backend.addr).await;
    let res = c
        .get(gw.url("/echo/open/y"))
        .header(HEADER, "forged.by.client")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let request = only_request(&backend, "an anonymous request").await;
    assert!(seen(&request, HEADER).is_empty(), "{request}");
}

/// The JWKS on the HTTPS listener (no credentials, whatever the routes
/// say) and on the admin listener, the same as `gatehouse export-jwks`; a
/// rotation signs with the new key and still publishes the old one.
#[tokio::test]
async fn the_keys_are_published_everywhere_and_survive_a_rotation() {
    let backend = start_rust_backend().await;
    let admin = free_port();
    let gw = start(&backend, admin, "").await;
    let public = gw
        .client()
        .get(gw.url("/.well-known/gatehouse/jwks.json"))
        .send()
        .await
        .expect("JWKS over HTTPS");
    assert_eq!(
        public.status(),
        200,
        "no credentials needed (default_route is jwt)"
    );
    assert_eq!(public.headers()["content-type"], "application/jwk-set+json");
    let public: Value = public.json().await.expect("JSON");
    let on_admin: Value = reqwest::get(jwks_url(admin))
        .await
        .expect("JWKS on the admin listener")
        .json()
        .await
        .expect("JSON");
    assert_eq!(public, on_admin);
    let keys = public["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], "EC");
    assert_eq!(keys[0]["alg"], "ES256");
    assert!(keys[0].get("d").is_none(), "no private part: {}", keys[0]);
    let first_kid = keys[0]["kid"].as_str().expect("kid").to_owned();
    // The key file was created private.
    let key_file = gw.certs.dir.path().join("keys/assertion.pem");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file)
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // `gatehouse export-jwks` prints the same document.
    let out = std::process::Command::new(binary())
        .args(["--config"])
        .arg(&gw.config_path)
        .arg("export-jwks")
        .output()
        .expect("export-jwks runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(exported, public);

    // Rotate: the old key becomes a previous one, a new EdDSA key signs.
    let previous = gw.certs.dir.path().join("keys/previous.pem");
    std::fs::rename(&key_file, &previous).expect("move the key");
    let yaml = config(
        &gw.certs,
        &backend,
        admin,
        &format!(
            "    algorithm: EdDSA\n    previous_key_files: [{}]\n",
            previous.display()
        ),
    );
    std::fs::write(&gw.config_path, yaml).expect("rewrite the config");
    gw.gateway.reload().expect("reload");
    let rotated: Value = reqwest::get(jwks_url(admin))
        .await
        .expect("JWKS")
        .json()
        .await
        .expect("JSON");
    let kids: Vec<&str> = rotated["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(kids.len(), 2, "{rotated}");
    assert_eq!(kids[1], first_kid, "the old key is still published");
    clear_recorded(backend.addr).await;
    let res = gw
        .client()
        .get(gw.url("/echo/z"))
        .bearer_auth(token_for("alice", &["user"]))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let token = assertion_seen(&backend, "after the rotation").await;
    let header = jsonwebtoken::decode_header(&token).expect("JWS");
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    assert_eq!(header.kid.as_deref(), Some(kids[0]), "the new key signs");
    assert!(key_file.exists(), "a new key was created");
}

/// Without `identity_headers.assertion`, nothing is signed and the JWKS
/// path is an ordinary path.
#[tokio::test]
async fn without_an_assertion_nothing_is_signed_or_published() {
    let backend = start_rust_backend().await;
    let gw = Gatehouse::start(&backend.url(""), OPEN).await;
    clear_recorded(backend.addr).await;
    let res = gw
        .client()
        .get(gw.url("/echo/x"))
        .header(HEADER, "forged.by.client")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let request = only_request(&backend, "no assertion configured").await;
    // Still never forwarded from a client.
    assert!(seen(&request, HEADER).is_empty(), "{request}");
    assert!(!Path::new(&gw.certs.dir.path().join("keys")).exists());
}
