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

use crate::auth::jwks::{Key, RemoteKeys};

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
    check(token, &header, &key, expect)
}

/// The checks once the key is found.
fn check(
    token: &str,
    header: &jsonwebtoken::Header,
    key: &Key,
    expect: &Expect<'_>,
) -> Result<Map<String, Value>, &'static str> {
    if !is_asymmetric(header.alg) || !expect.algorithms.contains(&header.alg) {
        return Err("id_token algorithm not allowed");
    }
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
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    struct Signer {
        encoding: EncodingKey,
        key: Key,
    }

    fn es256() -> Signer {
        let pair = rcgen::KeyPair::generate().expect("P-256 key");
        Signer {
            encoding: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
            key: Key {
                decoding: jsonwebtoken::DecodingKey::from_ec_pem(pair.public_key_pem().as_bytes())
                    .unwrap(),
                alg: None,
            },
        }
    }

    fn claims() -> Value {
        json!({"iss": "https://idp.example", "aud": "client", "sub": "u1",
               "exp": NOW + 60, "iat": NOW, "nonce": "the-nonce"})
    }

    fn expect() -> Expect<'static> {
        Expect {
            issuer: "https://idp.example",
            client_id: "client",
            algorithms: &[Algorithm::ES256],
            nonce: "the-nonce",
            leeway: 30,
            now: NOW,
        }
    }

    fn run(
        token: &str,
        key: &Key,
        expect: &Expect<'_>,
    ) -> Result<Map<String, Value>, &'static str> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| "header")?;
        check(token, &header, key, expect)
    }

    fn signed(s: &Signer, claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), claims, &s.encoding).unwrap()
    }

    #[test]
    fn a_good_id_token_passes() {
        let s = es256();
        let c = run(&signed(&s, &claims()), &s.key, &expect()).unwrap();
        assert_eq!(c["sub"], "u1");
        let mut several = claims();
        several["aud"] = json!(["client", "other"]);
        several["azp"] = json!("client");
        assert!(run(&signed(&s, &several), &s.key, &expect()).is_ok());
    }

    #[test]
    fn every_claim_check_refuses_its_token() {
        let s = es256();
        let cases: Vec<(&str, Value)> = vec![
            ("iss", json!("https://idp.example/")),
            ("aud", json!("other")),
            ("aud", json!(["other", "client2"])),
            ("azp", json!("other")),
            ("exp", json!(NOW - 31)),
            ("iat", json!(NOW + 31)),
            ("nbf", json!(NOW + 31)),
            ("nonce", json!("another-nonce")),
            ("sub", json!("")),
        ];
        for (claim, value) in cases {
            let mut c = claims();
            c[claim] = value.clone();
            assert!(
                run(&signed(&s, &c), &s.key, &expect()).is_err(),
                "{claim}: {value}"
            );
        }
        for missing in ["nonce", "iat", "exp", "sub", "iss", "aud"] {
            let mut c = claims();
            c.as_object_mut().unwrap().remove(missing);
            assert!(
                run(&signed(&s, &c), &s.key, &expect()).is_err(),
                "without {missing}"
            );
        }
        let mut several = claims();
        several["aud"] = json!(["client", "other"]);
        assert!(
            run(&signed(&s, &several), &s.key, &expect()).is_err(),
            "several audiences, no azp"
        );
        // Within the leeway is fine.
        let mut c = claims();
        c["exp"] = json!(NOW - 29);
        assert!(run(&signed(&s, &c), &s.key, &expect()).is_ok());
    }

    #[test]
    fn another_key_none_and_hmac_are_never_accepted() {
        let (s, other) = (es256(), es256());
        let token = signed(&s, &claims());
        assert_eq!(
            run(&token, &other.key, &expect()),
            Err("id_token signature invalid")
        );
        // HS256 "signed" with the public key's bytes, the classic confusion.
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(b"client-secret"),
        )
        .unwrap();
        let mut lax = expect();
        let algs = [Algorithm::ES256, Algorithm::HS256];
        lax.algorithms = &algs;
        assert_eq!(
            run(&hs, &s.key, &lax),
            Err("id_token algorithm not allowed")
        );
        // alg none: an unsigned token.
        use base64::Engine as _;
        let b64 =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let none = format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&claims()));
        assert!(run(&none, &s.key, &expect()).is_err());
        // An algorithm the provider does not announce.
        let mut rs_only = expect();
        rs_only.algorithms = &[Algorithm::RS256];
        assert!(run(&token, &s.key, &rs_only).is_err());
        // A key the JWKS pins to another algorithm.
        let pinned = Key {
            alg: Some(Algorithm::ES384),
            ..s.key.clone()
        };
        assert!(run(&token, &pinned, &expect()).is_err());
    }

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
