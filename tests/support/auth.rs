//! Gatehouses configured for authentication: the `auth:` blocks of the
//! authentication tests (an HS256 secret, own asymmetric keys, external
//! issuers from a JWKS file and a PEM key, API keys) and their route sets,
//! each started in front of a fresh Rust backend.

use std::path::Path;

use super::tokens::{
    idp_rsa, jwks, keys_org_ec, own_rsa, sha256_hex, KeyPem, IDP, IDP_KID, KEYS_ORG,
};
use super::{
    config_yaml_with_auth, start_rust_backend, upstream, Backend, Gatehouse, TestCerts, JWT_SECRET,
};

/// `/echo/api/**` needs a JWT, `/echo/admin/**` a JWT with the role `admin`.
pub const JWT_ROUTES: &str = "\
routes:
  - name: api
    path: /echo/api/**
    auth: jwt
  - name: admin
    path: /echo/admin/**
    auth: jwt
    roles: [admin]
";

/// Routes for the API key tests: an API key only, a JWT only, either, either
/// with the role `admin`, and an open route.
pub const KEY_ROUTES: &str = "\
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
pub const ADMIN_ROUTES: &str = "\
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

/// Like [`gate_with`], but `auth(dir)` is the whole `auth:` block (indented
/// two spaces; it may write key files into `dir`, the config file's folder,
/// and name them relative to it).
pub async fn gate_with_auth(
    auth: impl FnOnce(&Path) -> String,
    extra: &str,
) -> (Backend, Gatehouse) {
    let backend = start_rust_backend().await;
    let certs = TestCerts::new();
    let auth = auth(certs.dir.path());
    let yaml = config_yaml_with_auth(&certs, &upstream(&backend.url("")), &auth, extra);
    let gate = Gatehouse::start_yaml(certs, &yaml).await;
    (backend, gate)
}

fn write(dir: &Path, name: &str, contents: &str) {
    std::fs::write(dir.join(name), contents).expect("write a test key file");
}

/// `auth:` for an asymmetric own algorithm: `alg` with `key` as PEM files.
pub fn own_pem_auth(dir: &Path, alg: &str, key: &KeyPem) -> String {
    write(dir, "own.key", &key.private);
    write(dir, "own.pub", &key.public);
    format!("  jwt:\n    algorithm: {alg}\n    private_key: own.key\n    public_key: own.pub\n")
}

/// `auth:` with own RS256 tokens and two external issuers: the IdP (JWKS
/// file, RS256, audience `chatbot`, roles at `realm_access.roles`) and
/// keys.example.org (one ES256 PEM key, no audience, roles at `roles`).
pub fn rsa_and_issuers_auth(dir: &Path) -> String {
    write(dir, "idp-jwks.json", &jwks([idp_rsa().rsa_jwk(IDP_KID)]));
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
pub const API_KEY: &str = "gh_test-api-key-for-ci-bot_0123456789";

/// `auth:` with the base HS256 secret and one API key, `ci-bot` with role
/// `service`, accepted in `X-API-Key` or the `api_key` query parameter.
pub fn api_key_auth(_: &Path) -> String {
    format!(
        "  jwt:\n    secret: {JWT_SECRET}\n\
         \x20 api_keys:\n    query_param: api_key\n    keys:\n\
         \x20     - id: ci-bot\n        sha256: {}\n        roles: [service]\n",
        sha256_hex(API_KEY)
    )
}
