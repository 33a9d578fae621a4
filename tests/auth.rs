//! Authentication and authorization through a real gatehouse (real TLS) in
//! front of a real backend that records every request it received (SPEC §2
//! `auth`, `routes`, `identity_headers`; §3.2, §3.6, §3.7; §4 token claims;
//! §5 errors; §6 `gatehouse_auth_total`).
//!
//! Every attack is checked twice: gatehouse's answer (status, SPEC §5 JSON
//! body, RFC 6750 `WWW-Authenticate`) and the backend's record, which must
//! show that the request never reached it — a refusal that still forwarded
//! the request would be no refusal at all.
//!
//! Tokens are minted here with `jsonwebtoken` (RFC 7519, RFC 8725 attacks);
//! the ones no library signs (`alg: none`, no `alg`) are put together by hand.
//! Keys are generated at test time with `rcgen`. Requests whose exact bytes
//! matter (dot-segments, header-name spellings, several `Authorization`
//! headers) go out raw over TLS, because reqwest resolves `..` and lowercases
//! header names before sending.

mod support;

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::*;

// --- tokens and keys --------------------------------------------------------

/// `iss` and `aud` of gatehouse's own tokens in the test configs.
const OWN: &str = "gatehouse";
/// The external issuer whose keys come from a JWKS file.
const IDP: &str = "https://idp.example.com/";
/// The `kid` of the IdP's key in that JWKS file.
const IDP_KID: &str = "idp-1";
/// The external issuer whose key is one PEM public key (ES256).
const KEYS_ORG: &str = "https://keys.example.org";
/// An HMAC key that is not the configured one.
const WRONG_SECRET: &str = "not-the-secret-0123456789abcdef0123456789";

const CHALLENGE: &str = r#"Bearer realm="gatehouse""#;
const INVALID_TOKEN_CHALLENGE: &str = r#"Bearer realm="gatehouse", error="invalid_token""#;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

/// Claims of a valid gatehouse access token (SPEC §4) for `sub` with `roles`.
fn access_claims(sub: &str, roles: &[&str]) -> Value {
    let now = now();
    json!({
        "iss": OWN,
        "aud": OWN,
        "sub": sub,
        "roles": roles,
        "iat": now,
        "nbf": now,
        "exp": now + 900,
        "jti": format!("jti-{sub}-{now}"),
        "sid": format!("sid-{sub}"),
        "typ": "access",
    })
}

/// `claims` with `key` set to `value`.
fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

/// `claims` without `key`.
fn without(mut claims: Value, key: &str) -> Value {
    claims
        .as_object_mut()
        .expect("claims are an object")
        .remove(key);
    claims
}

fn sign(header: &Header, claims: &Value, key: &EncodingKey) -> String {
    gatehouse::install_crypto_providers();
    jsonwebtoken::encode(header, claims, key).expect("sign a test token")
}

fn hmac(secret: &[u8]) -> EncodingKey {
    EncodingKey::from_secret(secret)
}

/// An HS256 token signed with the configured secret.
fn hs256(claims: &Value) -> String {
    sign(
        &Header::new(Algorithm::HS256),
        claims,
        &hmac(JWT_SECRET.as_bytes()),
    )
}

/// A valid own HS256 access token.
fn token_for(sub: &str, roles: &[&str]) -> String {
    hs256(&access_claims(sub, roles))
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `header.claims.` plus `signature`, with a hand-written header.
fn hand_made(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    )
}

/// A hand-written header and claims, HS256-signed with the configured secret.
fn hand_made_hs256(header: &Value, claims: &Value) -> String {
    let unsigned = hand_made(header, claims, "");
    let message = unsigned.trim_end_matches('.');
    gatehouse::install_crypto_providers();
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &hmac(JWT_SECRET.as_bytes()),
        Algorithm::HS256,
    )
    .expect("HMAC-sign a hand-made token");
    format!("{message}.{signature}")
}

/// A generated key pair as PEM: PKCS#8 private key, SPKI public key.
struct KeyPem {
    private: String,
    public: String,
}

impl KeyPem {
    fn generate(alg: &'static rcgen::SignatureAlgorithm) -> KeyPem {
        let pair = rcgen::KeyPair::generate_for(alg).expect("generate a test key pair");
        KeyPem {
            private: pair.serialize_pem(),
            public: pair.public_key_pem(),
        }
    }

    /// The signing key for `alg`'s family.
    fn encoding(&self, alg: Algorithm) -> EncodingKey {
        gatehouse::install_crypto_providers();
        let pem = self.private.as_bytes();
        match alg {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
            _ => EncodingKey::from_rsa_pem(pem),
        }
        .expect("test private key PEM")
    }
}

/// Test keys are generated once per test process (RSA generation is slow).
macro_rules! key {
    ($name:ident, $alg:expr) => {
        fn $name() -> &'static KeyPem {
            static KEY: OnceLock<KeyPem> = OnceLock::new();
            KEY.get_or_init(|| KeyPem::generate($alg))
        }
    };
}

key!(own_rsa, &rcgen::PKCS_RSA_SHA256);
key!(own_ec, &rcgen::PKCS_ECDSA_P256_SHA256);
key!(own_ed, &rcgen::PKCS_ED25519);
key!(idp_rsa, &rcgen::PKCS_RSA_SHA256);
key!(keys_org_ec, &rcgen::PKCS_ECDSA_P256_SHA256);
key!(attacker_rsa, &rcgen::PKCS_RSA_SHA256);

/// A JWKS document holding `key`'s public half under `kid`. The JWK names no
/// `alg`, so only the issuer's `algorithms` pin what is accepted.
fn jwks(key: &KeyPem, kid: &str) -> String {
    let mut jwk = Jwk::from_encoding_key(&key.encoding(Algorithm::RS256), Algorithm::RS256)
        .expect("JWK from the test key");
    jwk.common.key_id = Some(kid.to_owned());
    jwk.common.key_algorithm = None;
    serde_json::to_string(&JwkSet { keys: vec![jwk] }).expect("JWKS JSON")
}

/// A header for `alg` with `kid`.
fn header_with_kid(alg: Algorithm, kid: &str) -> Header {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    header
}

/// Claims of a valid token from the IdP of the JWKS file.
fn idp_claims(sub: &str, roles: &[&str]) -> Value {
    let now = now();
    json!({
        "iss": IDP,
        "aud": "chatbot",
        "sub": sub,
        "realm_access": { "roles": roles },
        "iat": now,
        "exp": now + 300,
    })
}

fn idp_token(claims: &Value) -> String {
    sign(
        &header_with_kid(Algorithm::RS256, IDP_KID),
        claims,
        &idp_rsa().encoding(Algorithm::RS256),
    )
}

// --- gateways ---------------------------------------------------------------

/// A fresh Rust backend and a gatehouse in front of it with the base config
/// of `tests/support` (HS256 with `JWT_SECRET`, issuer and audience
/// `gatehouse`) and `extra` top-level YAML.
async fn gate_with(extra: &str) -> (Backend, Gate) {
    let backend = start_rust_backend().await;
    let gate = Gate::start(&backend.url(""), extra).await;
    (backend, gate)
}

/// Like [`gate_with`], but `auth(dir)` is the whole `auth:` block (indented
/// two spaces; it may write key files into `dir`, the config file's folder,
/// and name them relative to it).
async fn gate_with_auth(auth: impl FnOnce(&Path) -> String, extra: &str) -> (Backend, Gate) {
    let backend = start_rust_backend().await;
    let certs = TestCerts::new();
    let auth = auth(certs.dir.path());
    let yaml = config_yaml_with_auth(&certs, &upstream(&backend.url("")), &auth, extra);
    let gate = Gate::start_yaml(certs, &yaml).await;
    (backend, gate)
}

fn write(dir: &Path, name: &str, contents: &str) {
    std::fs::write(dir.join(name), contents).expect("write a test key file");
}

/// `auth:` for an asymmetric own algorithm: `alg` with `key` as PEM files.
fn own_pem_auth(dir: &Path, alg: &str, key: &KeyPem) -> String {
    write(dir, "own.key", &key.private);
    write(dir, "own.pub", &key.public);
    format!("  jwt:\n    algorithm: {alg}\n    private_key: own.key\n    public_key: own.pub\n")
}

/// `auth:` with own RS256 tokens and two external issuers: the IdP (JWKS
/// file, RS256, audience `chatbot`, roles at `realm_access.roles`) and
/// keys.example.org (one ES256 PEM key, no audience, roles at `roles`).
fn rsa_and_issuers_auth(dir: &Path) -> String {
    write(dir, "idp-jwks.json", &jwks(idp_rsa(), IDP_KID));
    write(dir, "keys-org.pub", &keys_org_ec().public);
    let own = own_pem_auth(dir, "RS256", own_rsa());
    format!(
        "{own}    accept:\n\
         \x20     - issuer: {IDP}\n\
         \x20       audience: chatbot\n\
         \x20       jwks_file: idp-jwks.json\n\
         \x20       algorithms: [RS256]\n\
         \x20       roles_claim: realm_access.roles\n\
         \x20     - issuer: {KEYS_ORG}\n\
         \x20       public_key: keys-org.pub\n\
         \x20       algorithms: [ES256]\n"
    )
}

/// The API key of `ci-bot` in [`api_key_auth`].
const API_KEY: &str = "gh_test-api-key-for-ci-bot_0123456789";

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `auth:` with the base HS256 secret and one API key, `ci-bot` with role
/// `service`, accepted in `X-API-Key` or the `api_key` query parameter.
fn api_key_auth(_: &Path) -> String {
    format!(
        "  jwt:\n    secret: {JWT_SECRET}\n\
         \x20 api_keys:\n    query_param: api_key\n    keys:\n\
         \x20     - id: ci-bot\n        sha256: {}\n        roles: [service]\n",
        sha256_hex(API_KEY)
    )
}

/// Routes for the JWT tests.
const JWT_ROUTES: &str = "\
routes:
  - name: api
    path: /echo/api/**
    auth: jwt
  - name: admin
    path: /echo/admin/**
    auth: jwt
    roles: [admin]
";

/// Routes for the API key tests.
const KEY_ROUTES: &str = "\
routes:
  - name: keyed
    path: /echo/keyed/**
    auth: api_key
  - name: jwt-only
    path: /echo/jwt/**
    auth: jwt
  - name: either
    path: /echo/either/**
    auth: [jwt, api_key]
  - name: admin
    path: /echo/admin/**
    auth: [jwt, api_key]
    roles: [admin]
  - name: open
    path: /echo/open/**
    auth: none
";

/// An open `/public` next to an `admin` route, and a host-bound open route.
const ADMIN_ROUTES: &str = "\
routes:
  - name: public
    path: /public/**
    auth: none
  - name: admin
    path: /admin/**
    auth: jwt
    roles: [admin]
  - name: internal
    path: /internal/**
    host: internal.example
    auth: none
";

// --- requests and assertions ------------------------------------------------

/// `<method> <target> HTTP/1.1` with `Host: localhost`, `headers` (each line
/// ending in `\r\n`) and `Connection: close`, so the answer ends with the
/// connection.
fn request(method: &str, target: &str, headers: &str) -> Vec<u8> {
    format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n")
        .into_bytes()
}

fn get(target: &str, headers: &str) -> Vec<u8> {
    request("GET", target, headers)
}

fn auth_line(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

/// Every value of header `name` (case-insensitive) in a raw HTTP/1.1 answer.
fn raw_headers<'a>(raw: &'a str, name: &str) -> Vec<&'a str> {
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

/// Every value of header `name` a recorded request carried.
fn seen<'a>(request: &'a Value, name: &str) -> Vec<&'a str> {
    request["headers"]
        .as_array()
        .expect("recorded headers are an array")
        .iter()
        .filter(|pair| pair[0].as_str() == Some(name))
        .filter_map(|pair| pair[1].as_str())
        .collect()
}

/// Asserts the backend received nothing since its record was last cleared.
async fn assert_never_seen(backend: &Backend, what: &str) {
    let seen = recorded(backend.addr).await;
    assert_eq!(seen, json!([]), "{}: the backend saw {what}", backend.name);
}

/// The one request the backend received since its record was last cleared;
/// clears the record.
async fn only_request(backend: &Backend, what: &str) -> Value {
    let seen = recorded(backend.addr).await;
    let list = seen.as_array().expect("recorded requests are an array");
    assert_eq!(
        list.len(),
        1,
        "{}: expected exactly one request for {what}, got {seen}",
        backend.name
    );
    clear_recorded(backend.addr).await;
    list[0].clone()
}

/// Asserts a raw answer is gatehouse's SPEC §5 error `status`/`code`.
fn assert_raw_error(raw: &str, status: u16, code: &str, what: &str) {
    assert_eq!(status_of(raw), status, "{what}:\n{raw}");
    let body: Value = serde_json::from_str(body_of(raw))
        .unwrap_or_else(|e| panic!("{what}: not gatehouse's JSON ({e}):\n{raw}"));
    assert_eq!(body["error"], code, "{what}: {body}");
}

/// Asserts `res` is gatehouse's SPEC §5 error `status`/`code`; its headers.
async fn assert_error(
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
async fn assert_401(res: reqwest::Response, code: &str, challenge: &str, what: &str) {
    let headers = assert_error(res, 401, code, what).await;
    let got: Vec<_> = headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().expect("ASCII challenge"))
        .collect();
    assert_eq!(got, [challenge], "{what}: WWW-Authenticate");
}

/// GET `path` with `token` as a bearer token.
async fn get_with_token(gate: &Gate, path: &str, token: &str) -> reqwest::Response {
    gate.client()
        .get(gate.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request through gatehouse")
}

/// Sends `token` to `path` and asserts `401 invalid_token` with the RFC 6750
/// challenge, and that the backend never saw the request.
async fn assert_token_refused(gate: &Gate, backend: &Backend, path: &str, token: &str, what: &str) {
    let res = get_with_token(gate, path, token).await;
    assert_401(res, "invalid_token", INVALID_TOKEN_CHALLENGE, what).await;
    assert_never_seen(backend, what).await;
}

/// Sends `token` to `path`, asserts `200` and returns what the backend got.
async fn assert_token_accepted(
    gate: &Gate,
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
fn assert_identity(request: &Value, user: &str, roles: &str, method: &str, what: &str) {
    assert_eq!(seen(request, "x-auth-user"), [user], "{what}: {request}");
    assert_eq!(seen(request, "x-auth-roles"), [roles], "{what}: {request}");
    assert_eq!(
        seen(request, "x-auth-method"),
        [method],
        "{what}: {request}"
    );
}

// --- routes -----------------------------------------------------------------

/// Every pattern kind, with open routes (forwarded without credentials) so
/// the default route (`jwt`, 401) shows which requests matched none.
const ROUTES: &str = "\
routes:
  - name: exact
    path: /exact
    auth: none
  - name: prefix
    path: /prefix/**
    auth: none
  - name: star
    path: /a/*/b
    auth: none
  - name: regex
    regex: '^/foo/.*/bar$'
    auth: none
  - name: get-only
    path: /methods
    methods: [GET]
    auth: none
  - name: host
    path: /hosted/**
    host: API.Example.com
    auth: none
  - name: open-first
    path: /first/**
    auth: none
  - name: guarded-later
    path: /first/**
    auth: jwt
  - name: guarded-first
    path: /second/**
    auth: jwt
  - name: open-later
    path: /second/open
    auth: none
";

/// Sends `raw` without credentials. `Some(path)` the backend saw when
/// gatehouse forwarded it (an open route matched); `None` when gatehouse
/// answered the default route's `401 missing_credentials` and the backend saw
/// nothing.
async fn route_outcome(gate: &Gate, backend: &Backend, raw: &[u8]) -> Option<String> {
    let shown = String::from_utf8_lossy(raw).into_owned();
    let answer = gate.raw(raw).await;
    if status_of(&answer) == 401 {
        assert_raw_error(&answer, 401, "missing_credentials", &shown);
        assert_never_seen(backend, &shown).await;
        return None;
    }
    let request = only_request(backend, &shown).await;
    let path = request["path"].as_str().expect("recorded path").to_owned();
    Some(match request["query"].as_str() {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path,
    })
}

async fn assert_routed(gate: &Gate, backend: &Backend, target: &str, forwarded_as: &str) {
    assert_eq!(
        route_outcome(gate, backend, &get(target, ""))
            .await
            .as_deref(),
        Some(forwarded_as),
        "GET {target} should match an open route"
    );
}

async fn assert_unrouted(gate: &Gate, backend: &Backend, target: &str) {
    assert_eq!(
        route_outcome(gate, backend, &get(target, "")).await,
        None,
        "GET {target} should match no open route"
    );
}

#[tokio::test]
async fn exact_pattern_matches_only_that_path() {
    let (backend, gate) = gate_with(ROUTES).await;
    assert_routed(&gate, &backend, "/exact", "/exact").await;
    assert_routed(&gate, &backend, "/exact?x=1", "/exact?x=1").await;
    for other in ["/exact/", "/exact/x", "/exactx", "/exac", "/EXACT"] {
        assert_unrouted(&gate, &backend, other).await;
    }
}

#[tokio::test]
async fn prefix_pattern_matches_the_prefix_and_everything_below_it() {
    let (backend, gate) = gate_with(ROUTES).await;
    for path in ["/prefix", "/prefix/", "/prefix/a", "/prefix/a/b/c"] {
        assert_routed(&gate, &backend, path, path).await;
    }
    for other in ["/prefixx", "/prefix-x/a", "/pre", "/x/prefix"] {
        assert_unrouted(&gate, &backend, other).await;
    }
}

#[tokio::test]
async fn star_matches_exactly_one_segment() {
    let (backend, gate) = gate_with(ROUTES).await;
    for path in ["/a/x/b", "/a/anything-at-all/b"] {
        assert_routed(&gate, &backend, path, path).await;
    }
    for other in ["/a/b", "/a//b", "/a/x/y/b", "/a/x/b/c", "/a/x/bb"] {
        assert_unrouted(&gate, &backend, other).await;
    }
}

#[tokio::test]
async fn regex_route_is_anchored_and_never_sees_the_query() {
    let (backend, gate) = gate_with(ROUTES).await;
    assert_routed(&gate, &backend, "/foo/x/bar", "/foo/x/bar").await;
    assert_routed(&gate, &backend, "/foo/x/y/bar?q=1", "/foo/x/y/bar?q=1").await;
    // The query is not part of the matched path, and the pattern is anchored.
    for other in [
        "/foo/x?y=/bar",
        "/foo/x/bar/baz",
        "/zz/foo/x/bar",
        "/foo/bar",
    ] {
        assert_unrouted(&gate, &backend, other).await;
    }
}

#[tokio::test]
async fn methods_limit_a_route_and_other_methods_fall_to_the_default_route() {
    let (backend, gate) = gate_with(ROUTES).await;
    assert_routed(&gate, &backend, "/methods", "/methods").await;
    for method in ["POST", "DELETE", "PUT"] {
        let raw = request(method, "/methods", "Content-Length: 0\r\n");
        assert_eq!(
            route_outcome(&gate, &backend, &raw).await,
            None,
            "{method} /methods matched the GET-only route"
        );
    }
}

#[tokio::test]
async fn host_matches_case_insensitively_and_ignores_the_port() {
    let (backend, gate) = gate_with(ROUTES).await;
    for host in ["api.example.com", "API.EXAMPLE.COM", "Api.Example.Com:8443"] {
        let raw = format!("GET /hosted/x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        assert_eq!(
            route_outcome(&gate, &backend, raw.as_bytes())
                .await
                .as_deref(),
            Some("/hosted/x"),
            "Host: {host}"
        );
    }
    for host in ["localhost", "api.example.com.evil", "xapi.example.com"] {
        let raw = format!("GET /hosted/x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        assert_eq!(
            route_outcome(&gate, &backend, raw.as_bytes()).await,
            None,
            "Host: {host} matched the host-bound route"
        );
    }
}

#[tokio::test]
async fn first_matching_route_wins_in_file_order() {
    let (backend, gate) = gate_with(ROUTES).await;
    // An open route before a guarded one with the same pattern: open.
    assert_routed(&gate, &backend, "/first/x", "/first/x").await;
    // A guarded prefix before a more specific open route: guarded.
    assert_unrouted(&gate, &backend, "/second/open").await;
}

#[tokio::test]
async fn host_bound_route_cannot_be_bypassed_with_a_trailing_dot() {
    // `admin.example.com.` is the same host as `admin.example.com` (an
    // absolute DNS name); Traefik's Host matcher treats them alike. If the
    // host-bound route did not match it, the request would fall to the
    // default route, which any authenticated user passes, and reach the
    // backend's admin virtual host with `Host: admin.example.com.`.
    let extra = "\
routes:
  - name: admin-host
    path: /**
    host: admin.example.com
    auth: jwt
    roles: [admin]
";
    let (backend, gate) = gate_with(extra).await;
    let user = auth_line(&token_for("mallory", &["user"]));
    for host in [
        "admin.example.com",
        "ADMIN.example.com:443",
        "admin.example.com.",
    ] {
        let raw =
            format!("GET /echo/x HTTP/1.1\r\nHost: {host}\r\n{user}Connection: close\r\n\r\n");
        let answer = gate.raw(raw.as_bytes()).await;
        assert_raw_error(&answer, 403, "forbidden", &format!("Host: {host}"));
        assert_never_seen(&backend, &format!("a user token with Host: {host}")).await;
    }
}

#[tokio::test]
async fn default_route_requires_a_jwt_unless_configured() {
    let (backend, gate) = gate_with(ROUTES).await;
    let res = gate
        .client()
        .get(gate.url("/nowhere"))
        .send()
        .await
        .expect("request");
    assert_401(res, "missing_credentials", CHALLENGE, "default route").await;
    assert_never_seen(&backend, "an unauthenticated request to the default route").await;
    let token = token_for("alice", &["user"]);
    let request = assert_token_accepted(&gate, &backend, "/echo/nowhere", &token, "default").await;
    assert_eq!(request["path"], "/echo/nowhere");
    assert_identity(&request, "alice", "user", "jwt", "default route");
}

#[tokio::test]
async fn default_route_deny_answers_404_not_found() {
    let extra = format!("{JWT_ROUTES}default_route:\n  auth: deny\n");
    let (backend, gate) = gate_with(&extra).await;
    let token = token_for("alice", &["admin"]);
    for with_token in [false, true] {
        let mut req = gate.client().get(gate.url("/nowhere"));
        if with_token {
            req = req.bearer_auth(&token);
        }
        let res = req.send().await.expect("request");
        assert_error(res, 404, "not_found", "default_route: deny").await;
        assert_never_seen(&backend, "a request to a denied default route").await;
    }
    // Declared routes still work.
    assert_token_accepted(&gate, &backend, "/echo/api/x", &token, "api route").await;
}

// --- path confusion ---------------------------------------------------------

/// Targets that a backend could read as `/admin`, or that gatehouse could
/// route differently from what it forwards.
const ADMIN_CONFUSIONS: [&str; 6] = [
    "/public/../admin",
    "//admin",
    "/%61dmin",
    "/admin%2F",
    "/public/..;/admin",
    "/PUBLIC/../admin",
];

/// More spellings of the same idea.
const MORE_ADMIN_CONFUSIONS: [&str; 16] = [
    "/public/%2e%2e/admin",
    "/public/%2E%2E/admin",
    "/public/.%2e/admin",
    "/public/..%2Fadmin",
    "/public/..%2fadmin",
    "/public%2F..%2Fadmin",
    "/public/..%3B/admin",
    "/public/%2e%2e;/admin",
    "/public/..\\admin",
    "/public/x/../../admin",
    "/public/./../admin",
    "/./admin",
    "//admin//x",
    "/%2561dmin",
    "/admin;x=1",
    "/admin%00",
];

#[tokio::test]
async fn path_confusion_without_a_token_is_refused_or_needs_credentials() {
    let (backend, gate) = gate_with(ADMIN_ROUTES).await;
    for target in ADMIN_CONFUSIONS.iter().chain(&MORE_ADMIN_CONFUSIONS) {
        let answer = gate.raw(&get(target, "")).await;
        let status = status_of(&answer);
        assert!(
            status == 400 || status == 401,
            "GET {target}: expected 400 or 401, got:\n{answer}"
        );
        if status == 401 {
            assert_raw_error(&answer, 401, "missing_credentials", target);
        }
        assert_never_seen(&backend, &format!("GET {target}")).await;
    }
    // The ones that normalize to /admin are routed to it, not refused.
    for target in ["//admin", "/%61dmin", "//admin//x"] {
        let answer = gate.raw(&get(target, "")).await;
        assert_raw_error(&answer, 401, "missing_credentials", target);
    }
}

#[tokio::test]
async fn path_confusion_with_a_non_admin_token_is_refused_or_forbidden() {
    let (backend, gate) = gate_with(ADMIN_ROUTES).await;
    let token = token_for("mallory", &["user"]);
    for target in ADMIN_CONFUSIONS {
        let answer = gate.raw(&get(target, &auth_line(&token))).await;
        let status = status_of(&answer);
        assert!(
            status == 400 || status == 403,
            "GET {target} with a user token: expected 400 or 403, got:\n{answer}"
        );
        if status == 403 {
            assert_raw_error(&answer, 403, "forbidden", target);
        }
        assert_never_seen(&backend, &format!("GET {target} with a user token")).await;
    }
}

#[tokio::test]
async fn normalized_spellings_of_admin_reach_it_only_with_an_admin_token() {
    let (backend, gate) = gate_with(ADMIN_ROUTES).await;
    let token = token_for("root", &["admin"]);
    for target in ["//admin/x", "/%61dmin/x", "/admin//x"] {
        let answer = gate.raw(&get(target, &auth_line(&token))).await;
        assert_ne!(status_of(&answer), 400, "{target}:\n{answer}");
        let request = only_request(&backend, target).await;
        // The backend gets the normalized path gatehouse routed on.
        assert_eq!(request["path"], "/admin/x", "{target}");
        assert_identity(&request, "root", "admin", "jwt", target);
    }
}

// --- spoofed identity headers -----------------------------------------------

/// Client copies of the identity headers, in several spellings.
const SPOOFED: &str = "X-Auth-User: mallory\r\n\
                       x-auth-user: mallory2\r\n\
                       X-AUTH-USER: mallory3\r\n\
                       X-Auth-Roles: admin\r\n\
                       X-Auth-Method: jwt\r\n";

#[tokio::test]
async fn client_identity_headers_never_reach_the_backend_on_an_open_route() {
    let (backend, gate) = gate_with(ADMIN_ROUTES).await;
    let answer = gate.raw(&get("/public/x", SPOOFED)).await;
    assert_ne!(status_of(&answer), 400, "{answer}");
    let request = only_request(&backend, "an open route").await;
    for name in ["x-auth-user", "x-auth-roles", "x-auth-method"] {
        assert!(
            seen(&request, name).is_empty(),
            "{name} reached the backend on an open route: {request}"
        );
    }
    // Over HTTP/2 too.
    let res = gate
        .client()
        .get(gate.url("/public/x"))
        .header("x-auth-user", "mallory")
        .header("x-auth-roles", "admin")
        .header("x-auth-method", "jwt")
        .send()
        .await
        .expect("request");
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    let request = only_request(&backend, "an open route over HTTP/2").await;
    for name in ["x-auth-user", "x-auth-roles", "x-auth-method"] {
        assert!(seen(&request, name).is_empty(), "{name}: {request}");
    }
}

#[tokio::test]
async fn custom_identity_header_names_are_the_ones_stripped_and_set() {
    let extra = format!(
        "identity_headers:\n  user: X-Remote-User\n  roles: X-Remote-Groups\n  method: X-Remote-Auth\n{ADMIN_ROUTES}"
    );
    let (backend, gate) = gate_with(&extra).await;
    let token = token_for("alice", &["admin"]);
    let spoof = "X-Remote-User: mallory\r\nX-Remote-Groups: root\r\nX-Remote-Auth: api_key\r\n";
    gate.raw(&get("/admin/x", &format!("{}{spoof}", auth_line(&token))))
        .await;
    let request = only_request(&backend, "custom identity headers").await;
    assert_eq!(seen(&request, "x-remote-user"), ["alice"], "{request}");
    assert_eq!(seen(&request, "x-remote-groups"), ["admin"], "{request}");
    assert_eq!(seen(&request, "x-remote-auth"), ["jwt"], "{request}");
    gate.raw(&get("/public/x", spoof)).await;
    let request = only_request(&backend, "custom identity headers, open").await;
    for name in ["x-remote-user", "x-remote-groups", "x-remote-auth"] {
        assert!(seen(&request, name).is_empty(), "{name}: {request}");
    }
    let answer = gate.raw(&get("/public/x", "X_Remote_User: root\r\n")).await;
    assert_raw_error(&answer, 400, "bad_request", "X_Remote_User");
    assert_never_seen(&backend, "X_Remote_User").await;
}

#[tokio::test]
async fn authenticated_route_forwards_only_gatehouses_identity_headers() {
    let (backend, gate) = gate_with(ADMIN_ROUTES).await;
    let token = token_for("alice", &["admin", "user"]);
    let headers = format!("{}{SPOOFED}", auth_line(&token));
    let answer = gate.raw(&get("/admin/x", &headers)).await;
    assert_ne!(status_of(&answer), 400, "{answer}");
    let request = only_request(&backend, "an authenticated route").await;
    assert_identity(&request, "alice", "admin,user", "jwt", "spoofed headers");
}

#[tokio::test]
async fn underscore_spelling_of_an_identity_header_is_refused() {
    let (backend, gate) = gate_with(ADMIN_ROUTES).await;
    let token = token_for("alice", &["admin"]);
    for spoof in [
        "X_Auth_User: admin",
        "x_auth_user: admin",
        "X_Auth_Roles: admin",
        "X_Auth_Method: jwt",
        "X_API_Key: whatever",
        "X-Auth_User: admin",
        "X_Forwarded_For: 127.0.0.1",
        "X_Request_Id: spoofed",
    ] {
        for (target, creds) in [
            ("/public/x", String::new()),
            ("/admin/x", auth_line(&token)),
        ] {
            let answer = gate.raw(&get(target, &format!("{creds}{spoof}\r\n"))).await;
            assert_raw_error(&answer, 400, "bad_request", &format!("{target} {spoof}"));
            assert_never_seen(&backend, &format!("{target} with {spoof}")).await;
        }
    }
    // Over HTTP/2 too.
    let res = gate
        .client()
        .get(gate.url("/public/x"))
        .header("x_auth_user", "admin")
        .send()
        .await
        .expect("request");
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert_error(res, 400, "bad_request", "x_auth_user over HTTP/2").await;
    assert_never_seen(&backend, "x_auth_user over HTTP/2").await;
}

#[tokio::test]
async fn connection_header_cannot_strip_the_identity_headers() {
    let (backend, gate) = gate_with(ADMIN_ROUTES).await;
    let token = token_for("alice", &["admin"]);
    let raw = format!(
        "GET /admin/x HTTP/1.1\r\nHost: localhost\r\n{}\
         X-Auth-User: mallory\r\n\
         Connection: close, X-Auth-User, X-Auth-Roles, X-Auth-Method, X-Request-Id\r\n\r\n",
        auth_line(&token)
    );
    let answer = gate.raw(raw.as_bytes()).await;
    assert_ne!(status_of(&answer), 400, "{answer}");
    let request = only_request(&backend, "Connection: X-Auth-User").await;
    assert_identity(&request, "alice", "admin", "jwt", "Connection: X-Auth-User");
    assert_eq!(seen(&request, "x-request-id").len(), 1, "{request}");
}

#[tokio::test]
async fn duplicate_authorization_headers_are_refused() {
    let (backend, gate) = gate_with(ADMIN_ROUTES).await;
    let admin = token_for("root", &["admin"]);
    let user = token_for("mallory", &["user"]);
    for (first, second) in [
        (auth_line(&user), auth_line(&admin)),
        (auth_line(&admin), auth_line(&admin)),
        (
            auth_line(&admin),
            "authorization: Basic Zm9vOmJhcg==\r\n".to_owned(),
        ),
        (auth_line("garbage"), auth_line(&admin)),
    ] {
        for target in ["/admin/x", "/public/x"] {
            let answer = gate.raw(&get(target, &format!("{first}{second}"))).await;
            assert_raw_error(&answer, 400, "bad_request", "two Authorization headers");
            assert_never_seen(&backend, "a request with two Authorization headers").await;
        }
    }
}

#[tokio::test]
async fn untrusted_forwarding_headers_do_not_change_routing_or_auth() {
    let (backend, gate) = gate_with(ADMIN_ROUTES).await;
    let rewrites = "X-Original-URL: /public/x\r\n\
                    X-Rewrite-URL: /public/x\r\n\
                    X-Original-URI: /public/x\r\n\
                    X-Forwarded-Uri: /public/x\r\n\
                    X-Forwarded-Path: /public/x\r\n\
                    X-Forwarded-Prefix: /public\r\n\
                    X-Forwarded-For: 10.9.8.7\r\n\
                    X-Forwarded-Proto: https\r\n\
                    X-Forwarded-Host: internal.example\r\n\
                    X-Real-IP: 10.9.8.7\r\n\
                    Forwarded: for=10.9.8.7;proto=https;host=internal.example\r\n";
    let answer = gate.raw(&get("/admin/x", rewrites)).await;
    assert_raw_error(
        &answer,
        401,
        "missing_credentials",
        "/admin with X-Original-URL",
    );
    assert_never_seen(&backend, "/admin with rewrite headers").await;

    // X-Forwarded-Host does not select a host-bound route; only Host does.
    let answer = gate.raw(&get("/internal/x", rewrites)).await;
    assert_raw_error(&answer, 401, "missing_credentials", "X-Forwarded-Host");
    assert_never_seen(&backend, "/internal with X-Forwarded-Host").await;
    let direct = "GET /internal/x HTTP/1.1\r\nHost: internal.example\r\nConnection: close\r\n\r\n";
    gate.raw(direct.as_bytes()).await;
    let request = only_request(&backend, "Host: internal.example").await;
    assert_eq!(request["path"], "/internal/x");

    // On an open route the rewrite headers are forwarded to nobody.
    gate.raw(&get("/public/x", rewrites)).await;
    let request = only_request(&backend, "/public with rewrite headers").await;
    for name in [
        "x-original-url",
        "x-rewrite-url",
        "x-original-uri",
        "x-forwarded-uri",
        "x-forwarded-path",
        "x-forwarded-prefix",
        "x-real-ip",
        "forwarded",
    ] {
        assert!(
            seen(&request, name).is_empty(),
            "{name} reached the backend"
        );
    }
    assert_eq!(seen(&request, "x-forwarded-for"), ["127.0.0.1"]);
}

// --- JWT attacks (RFC 8725) ------------------------------------------------

#[tokio::test]
async fn missing_token_gets_401_missing_credentials_with_a_bare_challenge() {
    let (backend, gate) = gate_with(JWT_ROUTES).await;
    let res = gate
        .client()
        .get(gate.url("/echo/api/x"))
        .send()
        .await
        .expect("request");
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
    let answer = gate.raw(&get("/echo/api/ws", upgrade)).await;
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
        .raw(&get(
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
        &hmac(jwks(idp_rsa(), IDP_KID).as_bytes()),
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

#[tokio::test]
async fn a_verified_and_cached_token_is_refused_once_it_expires() {
    // Verified tokens are cached by their hash: the cache must check exp.
    let (backend, gate) = gate_with_auth(|_| jwt_auth("    leeway: 0s\n"), JWT_ROUTES).await;
    let exp = now() + 2;
    let token = hs256(&with(access_claims("alice", &["user"]), "exp", json!(exp)));
    for what in ["first use", "second use (cached)"] {
        assert_token_accepted(&gate, &backend, "/echo/api/x", &token, what).await;
    }
    while now() <= exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_token_refused(
        &gate,
        &backend,
        "/echo/api/x",
        &token,
        "expired after caching",
    )
    .await;
}

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
    let gate = Gate::start(
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
        let res = gate
            .client()
            .get(gate.url(path))
            .header("x-api-key", API_KEY)
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 200, "{path}: {:?}", res.text().await);
        let request = only_request(&backend, path).await;
        assert_identity(&request, "ci-bot", "service", "api_key", path);
        assert_no_api_key(&request, path);
    }
    // An open route never forwards it either.
    gate.raw(&get(
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
        let answer = gate.raw(&get(&target, "")).await;
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
        let res = gate
            .client()
            .get(gate.url("/echo/keyed/x"))
            .header("x-api-key", key)
            .send()
            .await
            .expect("request");
        let headers = assert_error(res, 401, "invalid_api_key", key).await;
        let challenge = headers["www-authenticate"].to_str().expect("ASCII");
        assert!(challenge.starts_with(CHALLENGE), "{challenge}");
        assert_never_seen(&backend, "a wrong API key").await;
    }
    // Two keys, one right: ambiguous, refused.
    let answer = gate
        .raw(&get(
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
            .raw(&get(&target, &format!("X-API-Key: {API_KEY}\r\n")))
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
            .raw(&get(
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
        .raw(&get(
            "/echo/either/x",
            &format!("{}X-API-Key: nope\r\n", auth_line(&token)),
        ))
        .await;
    assert_eq!(status_of(&answer), 401, "{answer}");
    assert_never_seen(&backend, "a good bearer token with a bad API key").await;
}

// --- roles ------------------------------------------------------------------

#[tokio::test]
async fn principal_without_the_role_gets_403_and_with_it_200() {
    let (backend, gate) = gate_with_auth(api_key_auth, KEY_ROUTES).await;
    for roles in [&[][..], &["user"][..], &["Admin", "admins"][..]] {
        let res = get_with_token(&gate, "/echo/admin/x", &token_for("bob", roles)).await;
        assert_error(res, 403, "forbidden", &format!("roles {roles:?}")).await;
        assert_never_seen(&backend, "a token without the admin role").await;
    }
    let res = gate
        .client()
        .get(gate.url("/echo/admin/x"))
        .header("x-api-key", API_KEY)
        .send()
        .await
        .expect("request");
    assert_error(res, 403, "forbidden", "API key with role service").await;
    assert_never_seen(&backend, "an API key without the admin role").await;

    let token = token_for("root", &["user", "admin"]);
    let request = assert_token_accepted(&gate, &backend, "/echo/admin/x", &token, "admin").await;
    assert_identity(&request, "root", "user,admin", "jwt", "admin");
}

// --- forward_authorization --------------------------------------------------

#[tokio::test]
async fn authorization_is_forwarded_by_default() {
    let (backend, gate) = gate_with(JWT_ROUTES).await;
    let token = token_for("alice", &["user"]);
    let request = assert_token_accepted(&gate, &backend, "/echo/api/x", &token, "default").await;
    assert_eq!(
        seen(&request, "authorization"),
        [format!("Bearer {token}").as_str()]
    );
}

#[tokio::test]
async fn forward_authorization_false_strips_authorization() {
    let (backend, gate) = gate_with(&format!("forward_authorization: false\n{JWT_ROUTES}")).await;
    let token = token_for("alice", &["user"]);
    let request = assert_token_accepted(&gate, &backend, "/echo/api/x", &token, "stripped").await;
    assert!(seen(&request, "authorization").is_empty(), "{request}");
    assert!(!request.to_string().contains(&token), "{request}");
    assert_identity(
        &request,
        "alice",
        "user",
        "jwt",
        "forward_authorization: false",
    );
}

// --- GET /auth/me -----------------------------------------------------------

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
    let res = gate
        .client()
        .get(gate.url("/auth/me"))
        .header("x-api-key", API_KEY)
        .send()
        .await
        .expect("request");
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
    let res = gate
        .client()
        .get(gate.url("/auth/me"))
        .send()
        .await
        .expect("request");
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
    let res = gate
        .client()
        .get(gate.url("/echo/keyed/x"))
        .header("x-api-key", &key)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    let request = only_request(&backend, "the generated key").await;
    assert_eq!(seen(&request, "x-auth-user"), ["ci-bot"]);
    assert_eq!(seen(&request, "x-auth-method"), ["api_key"]);
}

// --- metrics ----------------------------------------------------------------

/// The sum of the samples of `name` whose labels include all of `labels`.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|line| line.rsplit_once(' '))
        .map(|(_, value)| value.parse::<f64>().expect("a sample value"))
        .sum()
}

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
        metric(
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

// --- identity forwarded exactly as verified (issue 10) ----------------------

#[tokio::test]
async fn an_identity_with_surrounding_whitespace_is_refused_not_trimmed() {
    // An HTTP parser trims header values: `"admin "` would reach the backend
    // as `admin`, an identity nobody verified.
    let (backend, gate) = gate_with(JWT_ROUTES).await;
    for (sub, roles, what) in [
        ("admin ", vec!["user"], "sub with a trailing space"),
        (" admin", vec!["user"], "sub with a leading space"),
        ("alice", vec!["admin "], "role with a trailing space"),
        ("alice", vec![" admin"], "role with a leading space"),
        ("admin\u{a0}", vec!["user"], "sub with a no-break space"),
    ] {
        let token = hs256(&access_claims(sub, &roles));
        assert_token_refused(&gate, &backend, "/echo/api/x", &token, what).await;
    }
    // The same identity without the space is accepted as itself.
    let token = hs256(&access_claims("admin", &["user"]));
    let seen_request =
        assert_token_accepted(&gate, &backend, "/echo/api/x", &token, "no space").await;
    assert_identity(&seen_request, "admin", "user", "jwt", "no space");
}

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
