//! The signed identity assertion (SPEC §12): a short-lived JWT on every
//! authenticated forwarded request, so a backend can *verify* who the user
//! is instead of trusting a plain header; and the JWKS that publishes the
//! keys to verify it with.
//!
//! Signing is on the hot path, so everything that does not change per
//! request is made once per config load: the key, the base64url JOSE header
//! (`alg`, `kid`, `typ`), the issuer, the JWKS document. Per request there
//! is one JSON serialization of the claims, one signature, and the token
//! itself. Keys are PKCS#8 PEM files; a missing `key_file` is created (mode
//! 0600) with a fresh key of the configured algorithm.

use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    RSA_PKCS1_SHA256,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{self, AssertionAlgorithm};

/// The assertion's header unless `identity_headers.assertion.header` says
/// otherwise (lower-case).
pub const DEFAULT_ASSERTION_HEADER: &str = "x-gatehouse-assertion";

/// Why the assertion's keys could not be loaded or made.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct KeyError {
    pub path: String,
    pub reason: String,
}

/// A signing key of one of the three algorithms.
enum SigningKey {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
    Rs256(RsaKeyPair),
}

/// A key as the JWKS publishes it: its `kid` and its public JWK.
struct Published {
    kid: String,
    jwk: serde_json::Value,
}

impl SigningKey {
    /// Reads the PKCS#8 key of `algorithm` in `pem`.
    fn from_pkcs8(algorithm: AssertionAlgorithm, der: &[u8]) -> Result<Self, String> {
        let rejected = |e: aws_lc_rs::error::KeyRejected| {
            format!("not a PKCS#8 {} private key ({e})", algorithm.as_str())
        };
        Ok(match algorithm {
            AssertionAlgorithm::Es256 => SigningKey::Es256(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(rejected)?,
            ),
            AssertionAlgorithm::EdDsa => SigningKey::EdDsa(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(rejected)?,
            ),
            AssertionAlgorithm::Rs256 => {
                let key = RsaKeyPair::from_pkcs8(der).map_err(rejected)?;
                if key.public_modulus_len() < 256 {
                    return Err("an RSA key needs at least 2048 bits".into());
                }
                SigningKey::Rs256(key)
            }
        })
    }

    /// The public JWK (RFC 7517) and its RFC 7638 thumbprint as `kid`.
    fn published(&self) -> Published {
        // RFC 7638: the required members, in lexicographic order, no spaces.
        let (thumbprint_input, mut jwk) = match self {
            SigningKey::Es256(k) => {
                // An uncompressed point: 0x04 || x || y.
                let point = k.public_key().as_ref();
                let (x, y) = (B64.encode(&point[1..33]), B64.encode(&point[33..65]));
                (
                    format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#),
                    serde_json::json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
                )
            }
            SigningKey::EdDsa(k) => {
                let x = B64.encode(k.public_key().as_ref());
                (
                    format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
                    serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x}),
                )
            }
            SigningKey::Rs256(k) => {
                let public = k.public_key();
                let n = B64.encode(public.modulus().big_endian_without_leading_zero());
                let e = B64.encode(public.exponent().big_endian_without_leading_zero());
                (
                    format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
                    serde_json::json!({"kty": "RSA", "n": n, "e": e}),
                )
            }
        };
        let kid = B64.encode(Sha256::digest(thumbprint_input.as_bytes()));
        jwk["kid"] = kid.clone().into();
        jwk["use"] = "sig".into();
        jwk["alg"] = self.algorithm().as_str().into();
        Published { kid, jwk }
    }

    fn algorithm(&self) -> AssertionAlgorithm {
        match self {
            SigningKey::Es256(_) => AssertionAlgorithm::Es256,
            SigningKey::EdDsa(_) => AssertionAlgorithm::EdDsa,
            SigningKey::Rs256(_) => AssertionAlgorithm::Rs256,
        }
    }

    /// The signature of `message`, base64url-encoded onto `out`.
    fn sign_onto(&self, message: &[u8], out: &mut String) -> Option<()> {
        match self {
            SigningKey::Es256(k) => {
                let sig = k.sign(&SystemRandom::new(), message).ok()?;
                B64.encode_string(sig.as_ref(), out);
            }
            SigningKey::EdDsa(k) => B64.encode_string(k.sign(message).as_ref(), out),
            SigningKey::Rs256(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut sig)
                    .ok()?;
                B64.encode_string(&sig, out);
            }
        }
        Some(())
    }
}

/// A fresh PKCS#8 PEM private key of `algorithm`.
fn generate(algorithm: AssertionAlgorithm) -> Result<String, String> {
    let alg = match algorithm {
        AssertionAlgorithm::Es256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        AssertionAlgorithm::EdDsa => &rcgen::PKCS_ED25519,
        AssertionAlgorithm::Rs256 => &rcgen::PKCS_RSA_SHA256,
    };
    let key = rcgen::KeyPair::generate_for(alg).map_err(|e| e.to_string())?;
    Ok(key.serialize_pem())
}

/// Reads the key at `path`, or — when `create` and there is none — makes
/// one and writes it there (mode 0600, its folder created if missing).
fn load_key(
    path: &Path,
    algorithm: AssertionAlgorithm,
    create: bool,
) -> Result<SigningKey, KeyError> {
    let err = |reason: String| KeyError {
        path: path.display().to_string(),
        reason,
    };
    if create && !path.exists() {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        let pem = generate(algorithm).map_err(err)?;
        crate::files::write_private(path, pem.as_bytes()).map_err(|e| err(e.to_string()))?;
        tracing::info!(file = %path.display(), algorithm = algorithm.as_str(), "created the identity assertion's signing key");
    }
    let der = PrivatePkcs8KeyDer::from_pem_file(path)
        .map_err(|e| err(format!("not a PKCS#8 PEM private key ({e})")))?;
    SigningKey::from_pkcs8(algorithm, der.secret_pkcs8_der()).map_err(err)
}

/// Who an assertion speaks for.
pub struct Subject<'a> {
    pub sub: &'a str,
    pub roles: &'a [String],
    /// `jwt`, `api_key` or `session`.
    pub method: &'a str,
    pub email: Option<&'a str>,
    pub sid: Option<&'a str>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    roles: &'a [String],
    method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<&'a str>,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: &'a str,
}

/// Signs assertions with the current key; publishes it and the previous ones.
pub struct Signer {
    header: HeaderName,
    issuer: String,
    ttl: u64,
    key: SigningKey,
    kid: String,
    /// The base64url JOSE header and its `.`, the same for every token.
    prefix: String,
    /// The JWKS document (current key first, then the previous ones).
    jwks: Bytes,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Loads (or creates) the keys of `cfg`; `default_issuer` is used when
    /// the config names none.
    pub fn load(cfg: &config::Assertion, default_issuer: &str) -> Result<Self, KeyError> {
        let key = load_key(&cfg.key_file, cfg.algorithm, true)?;
        let current = key.published();
        let mut keys = vec![current.jwk];
        let mut kids = vec![current.kid.clone()];
        for path in &cfg.previous_key_files {
            // A previous key may be of another algorithm: try each.
            let old = [
                AssertionAlgorithm::Es256,
                AssertionAlgorithm::EdDsa,
                AssertionAlgorithm::Rs256,
            ]
            .into_iter()
            .find_map(|alg| load_key(path, alg, false).ok())
            .ok_or_else(|| KeyError {
                path: path.display().to_string(),
                reason: "not a PKCS#8 PEM ES256, EdDSA or RS256 private key".into(),
            })?
            .published();
            if !kids.contains(&old.kid) {
                kids.push(old.kid);
                keys.push(old.jwk);
            }
        }
        let header = serde_json::json!({
            "alg": cfg.algorithm.as_str(),
            "kid": current.kid,
            "typ": "JWT",
        });
        let mut prefix = B64.encode(header.to_string());
        prefix.push('.');
        Ok(Signer {
            header: cfg.header.clone(),
            issuer: cfg
                .issuer
                .clone()
                .unwrap_or_else(|| default_issuer.to_owned()),
            ttl: cfg.ttl.as_secs(),
            key,
            kid: current.kid,
            prefix,
            jwks: Bytes::from(serde_json::json!({ "keys": keys }).to_string()),
        })
    }

    /// The header the assertion travels in.
    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// The `kid` new assertions are signed with.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The JWKS document: `{"keys":[…]}`, the current key first.
    pub fn jwks(&self) -> Bytes {
        self.jwks.clone()
    }

    /// A fresh assertion for `who`, for the backend `audience`, issued at
    /// `now` (Unix seconds). `None` only if the key fails to sign.
    pub fn sign(&self, who: &Subject<'_>, audience: &str, now: u64) -> Option<HeaderValue> {
        let jti = jti();
        let claims = Claims {
            iss: &self.issuer,
            aud: audience,
            sub: who.sub,
            roles: who.roles,
            method: who.method,
            email: who.email,
            sid: who.sid,
            iat: now,
            nbf: now,
            exp: now + self.ttl,
            jti: std::str::from_utf8(&jti).ok()?,
        };
        let json = serde_json::to_vec(&claims).ok()?;
        // header.claims.signature, in one buffer sized for the largest
        // signature (RSA-4096: 683 base64url characters).
        let mut token = String::with_capacity(self.prefix.len() + json.len() * 4 / 3 + 700);
        token.push_str(&self.prefix);
        B64.encode_string(&json, &mut token);
        let signed_len = token.len();
        token.push('.');
        let mut signature = String::with_capacity(700);
        self.key
            .sign_onto(&token.as_bytes()[..signed_len], &mut signature)?;
        token.push_str(&signature);
        HeaderValue::from_maybe_shared(Bytes::from(token)).ok()
    }
}

/// 128 random bits as 32 hex digits.
fn jti() -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n: u128 = rand::random();
    let mut id = [0u8; 32];
    for (i, digit) in id.iter_mut().enumerate() {
        *digit = HEX[((n >> (124 - 4 * i)) & 0xf) as usize];
    }
    id
}

/// The default `iss`: `https://` and the first name of the TLS certificate
/// at `cert` (its first DNS name, else its common name), or
/// `https://localhost` when it cannot be read.
pub fn default_issuer(cert: &Path) -> String {
    let name = CertificateDer::pem_file_iter(cert)
        .ok()
        .and_then(|mut certs| certs.next())
        .and_then(Result::ok)
        .and_then(|leaf| {
            let (_, parsed) = x509_parser::parse_x509_certificate(&leaf).ok()?;
            let dns = parsed
                .subject_alternative_name()
                .ok()
                .flatten()
                .and_then(|san| {
                    san.value.general_names.iter().find_map(|n| match n {
                        x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                        _ => None,
                    })
                });
            dns.or_else(|| {
                parsed
                    .subject()
                    .iter_common_name()
                    .next()
                    .and_then(|cn| cn.as_str().ok())
                    .map(str::to_owned)
            })
        });
    format!("https://{}", name.as_deref().unwrap_or("localhost"))
}

/// `gatehouse export-jwks` and the JWKS endpoints: the document for `cfg`
/// (creating the key if it is missing, as a start would).
pub fn export_jwks(cfg: &config::Assertion) -> Result<Bytes, KeyError> {
    Ok(Signer::load(cfg, "")?.jwks())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
    use std::time::Duration;

    fn config(dir: &Path, algorithm: AssertionAlgorithm) -> config::Assertion {
        config::Assertion {
            header: HeaderName::from_static("x-gatehouse-assertion"),
            algorithm,
            key_file: dir.join("keys/assertion.pem"),
            previous_key_files: Vec::new(),
            issuer: Some("https://chat.example.com".into()),
            ttl: Duration::from_secs(60),
        }
    }

    const ALICE_ROLES: &[&str] = &["user", "admin"];

    fn alice() -> (Vec<String>, &'static str) {
        (ALICE_ROLES.iter().map(|r| r.to_string()).collect(), "alice")
    }

    /// Verifies `token` with the JWKS of `signer`, as a backend would.
    fn verify(signer: &Signer, token: &str, audience: &str, alg: Algorithm) -> serde_json::Value {
        let jwks: jsonwebtoken::jwk::JwkSet =
            serde_json::from_slice(&signer.jwks()).expect("a JWKS");
        let kid = decode_header(token).expect("header").kid.expect("kid");
        let jwk = jwks.find(&kid).expect("the kid is published");
        let key = DecodingKey::from_jwk(jwk).expect("a key");
        let mut validation = Validation::new(alg);
        validation.set_audience(&[audience]);
        validation.set_issuer(&["https://chat.example.com"]);
        validation.leeway = 0;
        decode::<serde_json::Value>(token, &key, &validation)
            .expect("verifies")
            .claims
    }

    #[test]
    fn each_algorithm_signs_what_its_jwks_verifies() {
        let now = jsonwebtoken::get_current_timestamp();
        for (alg, jose) in [
            (AssertionAlgorithm::Es256, Algorithm::ES256),
            (AssertionAlgorithm::EdDsa, Algorithm::EdDSA),
            (AssertionAlgorithm::Rs256, Algorithm::RS256),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let cfg = config(dir.path(), alg);
            let signer = Signer::load(&cfg, "unused").expect("a new key");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&cfg.key_file)
                    .expect("created")
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{alg:?}");
            }
            let (roles, sub) = alice();
            let who = Subject {
                sub,
                roles: &roles,
                method: "session",
                email: Some("alice@example.com"),
                sid: Some("s1"),
            };
            let token = signer.sign(&who, "app", now).expect("signed");
            let token = token.to_str().expect("ascii");
            let header = decode_header(token).expect("header");
            assert_eq!(header.alg, jose);
            assert_eq!(header.typ.as_deref(), Some("JWT"));
            assert_eq!(header.kid.as_deref(), Some(signer.kid()));
            let claims = verify(&signer, token, "app", jose);
            assert_eq!(claims["sub"], "alice");
            assert_eq!(claims["roles"], serde_json::json!(["user", "admin"]));
            assert_eq!(claims["method"], "session");
            assert_eq!(claims["email"], "alice@example.com");
            assert_eq!(claims["sid"], "s1");
            assert_eq!(claims["iat"], now);
            assert_eq!(claims["nbf"], now);
            assert_eq!(claims["exp"], now + 60);
            assert_eq!(claims["jti"].as_str().map(str::len), Some(32));
            // Fresh every time.
            let again = signer.sign(&who, "app", now).expect("signed");
            assert_ne!(again.to_str().expect("ascii"), token);
            // The same key is read back on the next load.
            let reloaded = Signer::load(&cfg, "unused").expect("the saved key");
            assert_eq!(reloaded.kid(), signer.kid());
        }
    }

    #[test]
    fn unknown_claims_are_left_out_and_the_default_issuer_applies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = config(dir.path(), AssertionAlgorithm::Es256);
        cfg.issuer = None;
        let signer = Signer::load(&cfg, "https://gate.example").expect("key");
        assert_eq!(signer.issuer(), "https://gate.example");
        let who = Subject {
            sub: "ci-bot",
            roles: &[],
            method: "api_key",
            email: None,
            sid: None,
        };
        let token = signer.sign(&who, "app", 1_000).expect("signed");
        let payload = token
            .to_str()
            .expect("ascii")
            .split('.')
            .nth(1)
            .expect("claims");
        let claims: serde_json::Value =
            serde_json::from_slice(&B64.decode(payload).expect("base64url")).expect("JSON");
        assert!(
            claims.get("email").is_none() && claims.get("sid").is_none(),
            "{claims}"
        );
        assert_eq!(claims["iss"], "https://gate.example");
        assert_eq!(claims["roles"], serde_json::json!([]));
    }

    #[test]
    fn a_rotation_signs_with_the_new_key_and_still_publishes_the_old() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(dir.path(), AssertionAlgorithm::Es256);
        let old = Signer::load(&cfg, "").expect("first key");
        let previous = dir.path().join("keys/previous.pem");
        std::fs::rename(&cfg.key_file, &previous).expect("move the old key");
        let mut rotated = config(dir.path(), AssertionAlgorithm::EdDsa);
        rotated.previous_key_files = vec![previous.clone()];
        let new = Signer::load(&rotated, "").expect("a new key");
        assert_ne!(new.kid(), old.kid());
        let jwks: serde_json::Value = serde_json::from_slice(&new.jwks()).expect("JSON");
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .filter_map(|k| k["kid"].as_str())
            .collect();
        assert_eq!(kids, [new.kid(), old.kid()]);
        // No private part is ever published.
        for k in jwks["keys"].as_array().expect("keys") {
            assert!(k.get("d").is_none() && k.get("p").is_none(), "{k}");
        }
        // A previous key that cannot be read is an error, not a silent gap.
        rotated.previous_key_files = vec![dir.path().join("missing.pem")];
        let err = Signer::load(&rotated, "").expect_err("missing previous key");
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }

    #[test]
    fn a_key_of_another_algorithm_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(dir.path(), AssertionAlgorithm::EdDsa);
        Signer::load(&cfg, "").expect("an Ed25519 key");
        let wrong = config(dir.path(), AssertionAlgorithm::Es256);
        let err = Signer::load(&wrong, "").expect_err("an Ed25519 key for ES256");
        assert!(err.to_string().contains("ES256"), "{err}");
    }
}
