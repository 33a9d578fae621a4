//! Token minting for the tests: claims of gatehouse's own access tokens and
//! of external issuers, signed with `jsonwebtoken` (RFC 7519; the RFC 8725
//! attacks too), or put together by hand where no library would sign them
//! (`alg: none`, no `alg`). Key pairs are generated at test time with
//! `rcgen`, once per test binary, and published as JWKS documents.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::JWT_SECRET;

/// `iss` and `aud` of gatehouse's own tokens in the test configs.
pub const OWN: &str = "gatehouse";
/// The external issuer whose keys come from a JWKS file.
pub const IDP: &str = "https://idp.example.com/";
/// The `kid` of the IdP's key in that JWKS file.
pub const IDP_KID: &str = "idp-1";
/// The external issuer whose key is one PEM public key (ES256).
pub const KEYS_ORG: &str = "https://keys.example.org";
/// An HMAC key that is not the configured one.
pub const WRONG_SECRET: &str = "not-the-secret-0123456789abcdef0123456789";

/// Seconds since the Unix epoch, as `iat`, `nbf` and `exp` count them.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

/// Claims of a valid gatehouse access token (SPEC §4) for `sub` with `roles`.
pub fn access_claims(sub: &str, roles: &[&str]) -> Value {
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
pub fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

/// `claims` without `key`.
pub fn without(mut claims: Value, key: &str) -> Value {
    claims
        .as_object_mut()
        .expect("claims are an object")
        .remove(key);
    claims
}

/// `claims` under `header`, signed with `key`.
pub fn sign(header: &Header, claims: &Value, key: &EncodingKey) -> String {
    gatehouse::install_crypto_providers();
    jsonwebtoken::encode(header, claims, key).expect("sign a test token")
}

/// An HMAC signing key.
pub fn hmac(secret: &[u8]) -> EncodingKey {
    EncodingKey::from_secret(secret)
}

/// An HS256 token signed with the configured secret.
pub fn hs256(claims: &Value) -> String {
    sign(
        &Header::new(Algorithm::HS256),
        claims,
        &hmac(JWT_SECRET.as_bytes()),
    )
}

/// A valid own HS256 access token.
pub fn token_for(sub: &str, roles: &[&str]) -> String {
    hs256(&access_claims(sub, roles))
}

/// base64url without padding (RFC 7515 §2).
pub fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The decoded JSON of part `part` of a JWT (0 the header, 1 the claims).
pub fn jwt_part(token: &str, part: usize) -> Value {
    let b64 = token.split('.').nth(part).expect("a JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64)
        .expect("JWT part is base64url");
    serde_json::from_slice(&bytes).expect("JWT part is JSON")
}

/// `header.claims.` plus `signature`, with a hand-written header.
pub fn hand_made(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    )
}

/// A hand-written header and claims, HS256-signed with the configured secret.
pub fn hand_made_hs256(header: &Value, claims: &Value) -> String {
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

/// The lowercase hex SHA-256 of `s`, as configs name API keys and as Redis
/// keys name refresh tokens.
pub fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A generated key pair as PEM: PKCS#8 private key, SPKI public key.
pub struct KeyPem {
    pub private: String,
    pub public: String,
}

impl KeyPem {
    pub fn generate(alg: &'static rcgen::SignatureAlgorithm) -> KeyPem {
        let pair = rcgen::KeyPair::generate_for(alg).expect("generate a test key pair");
        KeyPem {
            private: pair.serialize_pem(),
            public: pair.public_key_pem(),
        }
    }

    /// The signing key for `alg`'s family.
    pub fn encoding(&self, alg: Algorithm) -> EncodingKey {
        gatehouse::install_crypto_providers();
        let pem = self.private.as_bytes();
        match alg {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
            _ => EncodingKey::from_rsa_pem(pem),
        }
        .expect("test private key PEM")
    }

    /// The public half of this RSA key as a JWK under `kid`. It names no
    /// `alg`, so only the issuer's `algorithms` pin what is accepted.
    pub fn rsa_jwk(&self, kid: &str) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.encoding(Algorithm::RS256), Algorithm::RS256)
            .expect("JWK from the test key");
        jwk.common.key_id = Some(kid.to_owned());
        jwk.common.key_algorithm = None;
        jwk
    }
}

/// `fn $name() -> &'static KeyPem`: a key pair generated once per test
/// binary, on first use (RSA generation is slow).
macro_rules! test_key {
    ($(#[$doc:meta])* $name:ident, $alg:expr) => {
        $(#[$doc])*
        pub fn $name() -> &'static $crate::support::tokens::KeyPem {
            static KEY: std::sync::OnceLock<$crate::support::tokens::KeyPem> =
                std::sync::OnceLock::new();
            KEY.get_or_init(|| $crate::support::tokens::KeyPem::generate($alg))
        }
    };
}
#[allow(unused_imports)]
pub(crate) use test_key;

test_key!(
    /// gatehouse's own RS256 key.
    own_rsa,
    &rcgen::PKCS_RSA_SHA256
);
test_key!(
    /// gatehouse's own ES256 key.
    own_ec,
    &rcgen::PKCS_ECDSA_P256_SHA256
);
test_key!(
    /// gatehouse's own EdDSA key.
    own_ed,
    &rcgen::PKCS_ED25519
);
test_key!(
    /// The [`IDP`]'s key, published under [`IDP_KID`].
    idp_rsa,
    &rcgen::PKCS_RSA_SHA256
);
test_key!(
    /// The ES256 key of [`KEYS_ORG`].
    keys_org_ec,
    &rcgen::PKCS_ECDSA_P256_SHA256
);
test_key!(
    /// An RSA key nobody trusts.
    attacker_rsa,
    &rcgen::PKCS_RSA_SHA256
);

/// A JWKS document (RFC 7517 §5) holding `keys`.
pub fn jwks(keys: impl IntoIterator<Item = Jwk>) -> String {
    let keys = keys.into_iter().collect();
    serde_json::to_string(&JwkSet { keys }).expect("JWKS JSON")
}

/// A header for `alg` with `kid`.
pub fn header_with_kid(alg: Algorithm, kid: &str) -> Header {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    header
}

/// Claims of a valid token from the IdP of the JWKS file.
pub fn idp_claims(sub: &str, roles: &[&str]) -> Value {
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

/// `claims` signed with the IdP's key under its `kid`.
pub fn idp_token(claims: &Value) -> String {
    sign(
        &header_with_kid(Algorithm::RS256, IDP_KID),
        claims,
        &idp_rsa().encoding(Algorithm::RS256),
    )
}
