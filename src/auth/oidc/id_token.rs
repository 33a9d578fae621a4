//! The `id_token` check of OpenID Connect Core §3.1.3.7, in full: a
//! signature by a key of the provider's JWKS (looked up by `kid` only, never
//! a key the token names itself) with an asymmetric algorithm the provider
//! allows (never `none`, never HMAC: a client secret is not a signing key
//! here); `iss` exactly the issuer; `aud` holding `client_id`; `azp`, when
//! present (and required with several audiences), `client_id`; `exp` and
//! `iat` with `auth.jwt.leeway`; `nonce` the flow's, compared in constant
//! time.

use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use crate::auth::jwks::RemoteKeys;

/// What the check needs to know.
pub struct Expect<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    /// The algorithms the provider signs with, asymmetric ones only.
    pub algorithms: &'a [Algorithm],
    pub nonce: &'a str,
    pub leeway: u64,
    pub now: u64,
}

/// The longest `id_token` looked at.
const MAX_LEN: usize = 16 * 1024;

/// The token's claims when every check holds; else why not (for the log:
/// never the token).
pub async fn verify(
    token: &str,
    keys: &RemoteKeys,
    expect: &Expect<'_>,
) -> Result<Map<String, Value>, &'static str> {
    if token.len() > MAX_LEN || token.bytes().filter(|b| *b == b'.').count() != 2 {
        return Err("id_token is not a signed JWT");
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| "id_token header unreadable")?;
    if header.crit.is_some() {
        return Err("id_token has a crit header");
    }
    if !is_asymmetric(header.alg) || !expect.algorithms.contains(&header.alg) {
        return Err("id_token algorithm not allowed");
    }
    let Some((key, _)) = keys.find(header.kid.as_deref()).await else {
        return Err("id_token signed by a key not in the provider's JWKS");
    };
    if key.alg.is_some_and(|a| a != header.alg) {
        return Err("id_token algorithm is not its key's");
    }
    let mut v = Validation::new(header.alg);
    v.set_issuer(&[expect.issuer]);
    v.set_audience(&[expect.client_id]);
    // Times are checked below, against gatehouse's clock.
    v.leeway = 0;
    v.validate_exp = false;
    v.validate_nbf = false;
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &v).map_err(
        |e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidIssuer => "id_token iss is not the issuer",
            jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                "id_token aud does not hold client_id"
            }
            jsonwebtoken::errors::ErrorKind::InvalidSignature => "id_token signature invalid",
            _ => "id_token invalid",
        },
    )?;
    let claims = data.claims;
    // Belt and braces: the exact issuer, whatever the library allows.
    if claims.get("iss").and_then(Value::as_str) != Some(expect.issuer) {
        return Err("id_token iss is not the issuer");
    }
    let several_audiences = matches!(claims.get("aud"), Some(Value::Array(a)) if a.len() > 1);
    match claims.get("azp") {
        Some(Value::String(azp)) if azp == expect.client_id => {}
        Some(_) => return Err("id_token azp is not client_id"),
        None if several_audiences => return Err("id_token has several audiences and no azp"),
        None => {}
    }
    let time = |name: &str| claims.get(name).and_then(Value::as_f64);
    let exp = time("exp").ok_or("id_token has no exp")?;
    if exp + (expect.leeway as f64) < expect.now as f64 {
        return Err("id_token expired");
    }
    if time("nbf").is_some_and(|nbf| nbf > (expect.now + expect.leeway) as f64) {
        return Err("id_token not valid yet");
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_f64)
        .ok_or("id_token has no iat")?;
    if iat > (expect.now + expect.leeway) as f64 {
        return Err("id_token issued in the future");
    }
    let nonce = claims
        .get("nonce")
        .and_then(Value::as_str)
        .ok_or("id_token has no nonce")?;
    if !bool::from(nonce.as_bytes().ct_eq(expect.nonce.as_bytes())) {
        return Err("id_token nonce is not the flow's");
    }
    match claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => Ok(claims),
        _ => Err("id_token has no sub"),
    }
}

/// Public-key algorithms: the only ones an `id_token` is accepted with.
pub fn is_asymmetric(alg: Algorithm) -> bool {
    use Algorithm::*;
    matches!(
        alg,
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 | ES256 | ES384 | EdDSA
    )
}

/// The algorithms of a discovery document's
/// `id_token_signing_alg_values_supported` gatehouse accepts; RS256 when
/// it names none (OIDC Discovery §3: RS256 must be supported).
pub fn allowed_algorithms(named: Option<&Value>) -> Vec<Algorithm> {
    let Some(Value::Array(names)) = named else {
        return vec![Algorithm::RS256];
    };
    names
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|n| n.parse::<Algorithm>().ok())
        .filter(|a| is_asymmetric(*a))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_key_algorithms_are_ever_allowed() {
        let named = serde_json::json!(["none", "HS256", "RS256", "ES256", "EdDSA", "XX"]);
        assert_eq!(
            allowed_algorithms(Some(&named)),
            [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]
        );
        assert_eq!(allowed_algorithms(None), [Algorithm::RS256]);
        assert!(allowed_algorithms(Some(&serde_json::json!(["HS512"]))).is_empty());
        assert!(!is_asymmetric(Algorithm::HS256));
    }
}
