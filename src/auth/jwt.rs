//! Bearer JWTs (SPEC §2 `auth.jwt`, §4; RFC 7519, RFC 8725).
//!
//! A token is accepted only if every one of these holds:
//! - it names a configured issuer (`iss`): gatehouse itself, or an entry of
//!   `accept`;
//! - its `alg` is the one configured for that issuer (never `none`, never an
//!   HMAC algorithm keyed with a public key: the key's family must match);
//! - it carries no `jwk`, `jku`, `x5u` or `x5c` header — keys come from the
//!   config only — and its `kid`, if any, names a configured key (gatehouse's
//!   own tokens carry none);
//! - the signature verifies; `exp` is present and not past, `nbf` not in the
//!   future (both with `leeway`); `aud` matches;
//! - for gatehouse's own tokens, `typ` is `access`.
//!
//! The clock is passed in (`now`), so expiry is tested exactly.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::jwks::{self, KeySet, RemoteKeySets, RemoteKeys};
use super::{Principal, Rejection, Scheme};
use crate::config::{self, JwtKey, KeySource};

/// Longest token considered at all.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// A problem with the configured keys, found at start or reload.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct KeyError {
    /// Config key path, e.g. `auth.jwt.secret_file`.
    pub key: String,
    pub reason: String,
}

fn key_err(key: impl Into<String>, reason: impl Into<String>) -> KeyError {
    KeyError {
        key: key.into(),
        reason: reason.into(),
    }
}

/// gatehouse's own signing and verification keys.
pub struct OwnKeys {
    pub algorithm: Algorithm,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
}

impl OwnKeys {
    /// Loads the keys of `auth.jwt`, creating `secret_file` if it is absent.
    pub fn load(cfg: &config::Jwt) -> Result<Self, KeyError> {
        let algorithm = cfg.algorithm;
        let (encoding, decoding) = match &cfg.key {
            JwtKey::Secret(secret) => {
                let bytes = secret.expose().as_bytes();
                (
                    EncodingKey::from_secret(bytes),
                    DecodingKey::from_secret(bytes),
                )
            }
            JwtKey::SecretFile(path) => {
                let secret = read_or_create_secret(path)?;
                (
                    EncodingKey::from_secret(&secret),
                    DecodingKey::from_secret(&secret),
                )
            }
            JwtKey::Pem { private, public } => {
                let private_pem = std::fs::read(private).map_err(|e| {
                    key_err(
                        "auth.jwt.private_key",
                        format!("{}: {e}", private.display()),
                    )
                })?;
                let public_pem = std::fs::read(public).map_err(|e| {
                    key_err("auth.jwt.public_key", format!("{}: {e}", public.display()))
                })?;
                let encoding = encoding_key_from_pem(&private_pem, algorithm).map_err(|e| {
                    key_err(
                        "auth.jwt.private_key",
                        format!("{}: {e}", private.display()),
                    )
                })?;
                let decoding =
                    jwks::decoding_key_from_pem(&public_pem, algorithm).map_err(|e| {
                        key_err("auth.jwt.public_key", format!("{}: {e}", public.display()))
                    })?;
                (encoding, decoding)
            }
        };
        Ok(OwnKeys {
            algorithm,
            encoding,
            decoding,
        })
    }
}

fn encoding_key_from_pem(pem: &[u8], alg: Algorithm) -> Result<EncodingKey, String> {
    use Algorithm::*;
    let key = match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => EncodingKey::from_rsa_pem(pem),
        ES256 | ES384 => EncodingKey::from_ec_pem(pem),
        EdDSA => EncodingKey::from_ed_pem(pem),
        _ => return Err(format!("{alg:?} has no private key")),
    };
    key.map_err(|e| format!("not a PEM private key for {alg:?}: {e}"))
}

/// Reads the HMAC secret file (its trimmed UTF-8 text is the key), creating
/// it with 32 random bytes, base64url, mode 0600, if it does not exist.
fn read_or_create_secret(path: &Path) -> Result<Vec<u8>, KeyError> {
    let err = |reason: String| {
        key_err(
            "auth.jwt.secret_file",
            format!("{}: {reason}", path.display()),
        )
    };
    if !path.exists() {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        let bytes: [u8; 32] = rand::random();
        let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        crate::files::write_private(path, text.as_bytes()).map_err(|e| err(e.to_string()))?;
        tracing::info!(file = %path.display(), "created a new JWT secret");
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let secret = text.trim();
    if secret.len() < 32 {
        return Err(err("the secret must be at least 32 bytes".into()));
    }
    Ok(secret.as_bytes().to_vec())
}

/// Claims of gatehouse's own access tokens (SPEC §4).
#[derive(Debug, Deserialize)]
struct OwnClaims {
    /// A string, as RFC 7519 §4.1.1 says: jsonwebtoken would also accept an
    /// array holding the issuer.
    iss: String,
    sub: String,
    #[serde(default)]
    roles: Vec<String>,
    exp: u64,
    nbf: Option<u64>,
    jti: Option<String>,
    sid: Option<String>,
    typ: Option<String>,
}

#[derive(Deserialize)]
struct Peek {
    iss: Option<Value>,
}

struct Own {
    issuer: String,
    algorithm: Algorithm,
    key: DecodingKey,
    validation: Validation,
}

enum Keys {
    Static(KeySet),
    Remote(Arc<RemoteKeys>),
}

struct External {
    issuer: String,
    validations: Vec<(Algorithm, Validation)>,
    keys: Keys,
    /// `roles_claim` split on `.` (e.g. `realm_access.roles`).
    roles_path: Vec<String>,
}

/// Verifies bearer tokens.
pub struct Verifier {
    own: Own,
    external: Vec<External>,
    leeway: u64,
    cache: TokenCache,
}

/// Tokens that verified, keyed by the whole token, so that a token seen
/// again costs a hash-table lookup instead of a signature check and two JSON
/// parses (README "Performance").
///
/// What makes this safe:
/// - a hit needs every byte of the token to be equal to one that verified
///   (a token that differs anywhere — header, claims or signature — is
///   another entry), and only tokens that passed every check of
///   [`Verifier::verify_uncached`] are stored (failures are not cached, so
///   forged tokens cannot fill it); the table's hash is randomly seeded;
/// - `exp` is checked again on every hit, with the same leeway;
/// - a token verified with a remote JWKS key is trusted only while that key
///   set is the current one: any refetch invalidates it;
/// - revocation is not decided here: the pipeline checks `jti`/`sid` against
///   the store on every request, cached or not;
/// - each config generation has its own cache: a reload with other keys,
///   issuers or audience starts empty;
/// - it is bounded by weight (about the bytes it holds), so memory cannot grow
///   with the number of distinct tokens.
type TokenCache = quick_cache::sync::Cache<Box<str>, Verified, Weight>;

/// Total weight (≈ bytes) of cached principals.
const CACHE_BYTES: u64 = 8 << 20;
/// Entries expected at most; quick_cache sizes its tables by this.
const CACHE_ITEMS: usize = 4096;

#[derive(Clone)]
struct Verified {
    /// Its `exp` is the token's (always set for a token).
    principal: Arc<Principal>,
    /// The remote key set (issuer index, serial) whose key verified the token.
    remote: Option<(usize, u64)>,
}

#[derive(Clone)]
struct Weight;

impl quick_cache::Weighter<Box<str>, Verified> for Weight {
    fn weight(&self, token: &Box<str>, v: &Verified) -> u64 {
        let p = &v.principal;
        let text = token.len()
            + p.user.len()
            + p.roles.iter().map(|r| r.len() + 24).sum::<usize>()
            + p.jti.as_ref().map_or(0, String::len)
            + p.sid.as_ref().map_or(0, String::len)
            + p.user_value.len()
            + p.roles_value.len();
        // The entry, the principal and its allocations' overhead.
        (text + 256) as u64
    }
}

fn validation(alg: Algorithm, issuer: &str, audience: Option<&str>) -> Validation {
    let mut v = Validation::new(alg);
    // exp and nbf are checked against the injected clock below.
    v.validate_exp = false;
    v.validate_nbf = false;
    v.leeway = 0;
    v.set_issuer(&[issuer]);
    let mut required: HashSet<String> = ["exp", "iss", "sub"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    match audience {
        Some(aud) => {
            v.set_audience(&[aud]);
            required.insert("aud".into());
        }
        None => v.validate_aud = false,
    }
    v.required_spec_claims = required;
    v
}

impl Verifier {
    /// Builds the verifier from config; reads PEM and JWKS files, and takes
    /// remote JWKS from `remote` (which fetches them and keeps them fresh).
    pub fn new(
        cfg: &config::Jwt,
        own_keys: &OwnKeys,
        remote: &RemoteKeySets,
    ) -> Result<Self, KeyError> {
        let own = Own {
            issuer: cfg.issuer.clone(),
            algorithm: own_keys.algorithm,
            key: own_keys.decoding.clone(),
            validation: validation(own_keys.algorithm, &cfg.issuer, Some(&cfg.audience)),
        };
        let mut external = Vec::with_capacity(cfg.accept.len());
        for (i, a) in cfg.accept.iter().enumerate() {
            let at = |k: &str| format!("auth.jwt.accept[{i}].{k}");
            let keys = match &a.keys {
                KeySource::JwksUrl(url) => {
                    Keys::Remote(remote.get(url).map_err(|e| key_err(at("jwks_url"), e))?)
                }
                KeySource::JwksFile(path) => {
                    Keys::Static(jwks::load_file(path).map_err(|e| key_err(at("jwks_file"), e))?)
                }
                KeySource::PublicKey(path) => {
                    let pem = std::fs::read(path).map_err(|e| {
                        key_err(at("public_key"), format!("{}: {e}", path.display()))
                    })?;
                    let alg = a.algorithms[0];
                    if a.algorithms
                        .iter()
                        .any(|other| family(*other) != family(alg))
                    {
                        return Err(key_err(
                            at("algorithms"),
                            "one public key serves one algorithm family",
                        ));
                    }
                    Keys::Static(KeySet::from_pem(&pem, alg).map_err(|e| {
                        key_err(at("public_key"), format!("{}: {e}", path.display()))
                    })?)
                }
            };
            if a.issuer == cfg.issuer {
                return Err(key_err(at("issuer"), "must differ from auth.jwt.issuer"));
            }
            external.push(External {
                issuer: a.issuer.clone(),
                validations: a
                    .algorithms
                    .iter()
                    .map(|alg| (*alg, validation(*alg, &a.issuer, a.audience.as_deref())))
                    .collect(),
                keys,
                roles_path: a.roles_claim.split('.').map(str::to_owned).collect(),
            });
        }
        Ok(Verifier {
            own,
            external,
            leeway: cfg.leeway.as_secs(),
            cache: TokenCache::with_weighter(CACHE_ITEMS, CACHE_BYTES, Weight),
        })
    }

    /// Verifies `token` at time `now` (Unix seconds): from the cache of
    /// verified tokens (see `TokenCache`) or in full.
    pub async fn verify(&self, token: &str, now: u64) -> Result<Arc<Principal>, Rejection> {
        if let Some(hit) = self.cache.get(token) {
            if self.key_still_current(hit.remote) {
                let exp = hit.principal.exp.unwrap_or(0);
                if let Err(expired) = self.check_times(exp, None, now) {
                    self.cache.remove(token);
                    return Err(expired);
                }
                return Ok(hit.principal);
            }
            self.cache.remove(token);
        }
        // Boxed: the full check (with a possible JWKS fetch) is a large future,
        // and only a cache miss needs it; the hit path stays small.
        let (principal, remote) = Box::pin(self.verify_uncached(token, now)).await?;
        let principal = Arc::new(principal);
        let verified = Verified {
            principal: principal.clone(),
            remote,
        };
        self.cache.insert(token.into(), verified);
        Ok(principal)
    }

    /// Every check, without the cache: what a token costs the first time it
    /// is seen. For benchmarks; requests go through [`Verifier::verify`].
    pub async fn verify_without_cache(
        &self,
        token: &str,
        now: u64,
    ) -> Result<Principal, Rejection> {
        self.verify_uncached(token, now).await.map(|(p, _)| p)
    }

    /// Whether the remote key set that verified a cached token is still the
    /// current one (always true for keys from the config).
    fn key_still_current(&self, remote: Option<(usize, u64)>) -> bool {
        let Some((issuer, serial)) = remote else {
            return true;
        };
        match self.external.get(issuer).map(|e| &e.keys) {
            Some(Keys::Remote(keys)) => keys.serial() == serial,
            _ => false,
        }
    }

    /// Every check of the module doc; also says which remote key set (issuer
    /// index, serial) verified the token, if one did.
    async fn verify_uncached(
        &self,
        token: &str,
        now: u64,
    ) -> Result<(Principal, Option<(usize, u64)>), Rejection> {
        if token.len() > MAX_TOKEN_LEN || token.bytes().filter(|b| *b == b'.').count() != 2 {
            return Err(Rejection::Invalid);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| Rejection::Invalid)?;
        // Keys named by the token itself are never trusted (RFC 8725 §3.10).
        // A `crit` header lists extensions the verifier MUST understand
        // (RFC 7515 §4.1.11); gatehouse understands none, so it refuses.
        if header.jwk.is_some()
            || header.jku.is_some()
            || header.x5u.is_some()
            || header.x5c.is_some()
            || header.crit.is_some()
        {
            return Err(Rejection::Invalid);
        }
        // With no external issuer, `iss` is checked by the validation
        // itself: no need to read the claims twice.
        if self.external.is_empty() {
            return Ok((self.verify_own(token, &header, now)?, None));
        }
        let peek: Peek = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|_| Rejection::Invalid)?;
        let Some(Value::String(iss)) = peek.iss else {
            return Err(Rejection::Invalid);
        };
        if iss == self.own.issuer {
            Ok((self.verify_own(token, &header, now)?, None))
        } else if let Some(i) = self.external.iter().position(|e| e.issuer == iss) {
            self.verify_external(i, token, &header, now).await
        } else {
            Err(Rejection::Invalid)
        }
    }

    fn check_times(&self, exp: u64, nbf: Option<u64>, now: u64) -> Result<(), Rejection> {
        if exp.saturating_add(self.leeway) < now {
            return Err(Rejection::Expired);
        }
        if nbf.is_some_and(|nbf| nbf > now.saturating_add(self.leeway)) {
            return Err(Rejection::Invalid);
        }
        Ok(())
    }

    fn verify_own(&self, token: &str, header: &Header, now: u64) -> Result<Principal, Rejection> {
        if header.alg != self.own.algorithm || header.kid.is_some() {
            return Err(Rejection::Invalid);
        }
        let data = jsonwebtoken::decode::<OwnClaims>(token, &self.own.key, &self.own.validation)
            .map_err(|_| Rejection::Invalid)?;
        let c = data.claims;
        if c.iss != self.own.issuer {
            return Err(Rejection::Invalid);
        }
        self.check_times(c.exp, c.nbf, now)?;
        if c.typ.as_deref() != Some("access") {
            return Err(Rejection::Invalid);
        }
        Principal::new(&c.sub, c.roles, Scheme::Jwt, Some(c.exp), c.jti, c.sid)
    }

    /// Verifies a token of `self.external[issuer]`.
    async fn verify_external(
        &self,
        issuer: usize,
        token: &str,
        header: &Header,
        now: u64,
    ) -> Result<(Principal, Option<(usize, u64)>), Rejection> {
        let ext = &self.external[issuer];
        let Some((_, validation)) = ext.validations.iter().find(|(alg, _)| *alg == header.alg)
        else {
            return Err(Rejection::Invalid);
        };
        let kid = header.kid.as_deref();
        let (key, remote) = match &ext.keys {
            Keys::Static(set) => (set.find(kid).cloned(), None),
            Keys::Remote(keys) => match keys.find(kid).await {
                Some((key, serial)) => (Some(key), Some((issuer, serial))),
                None => (None, None),
            },
        };
        let Some(key) = key else {
            return Err(Rejection::Invalid);
        };
        if key.alg.is_some_and(|a| a != header.alg) {
            return Err(Rejection::Invalid);
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, validation)
            .map_err(|_| Rejection::Invalid)?;
        let claims = data.claims;
        let exp = claims
            .get("exp")
            .and_then(Value::as_f64)
            .ok_or(Rejection::Invalid)?;
        let nbf = claims.get("nbf").and_then(Value::as_f64);
        self.check_times(exp as u64, nbf.map(|n| n as u64), now)?;
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or(Rejection::Invalid)?;
        let roles = roles_at(&claims, &ext.roles_path);
        let jti = claims.get("jti").and_then(Value::as_str).map(str::to_owned);
        let principal = Principal::new(sub, roles, Scheme::Jwt, Some(exp as u64), jti, None)?;
        Ok((principal, remote))
    }
}

fn family(alg: Algorithm) -> jsonwebtoken::AlgorithmFamily {
    alg.family()
}

/// Roles at a dotted claim path: a list of strings, or a space-separated string.
pub(crate) fn roles_at(claims: &Map<String, Value>, path: &[String]) -> Vec<String> {
    let mut cur: Option<&Value> = None;
    for (i, seg) in path.iter().enumerate() {
        cur = if i == 0 {
            claims.get(seg)
        } else {
            cur.and_then(|v| v.get(seg))
        };
    }
    match cur {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    //! The JWT attack matrix (RFC 8725) against gatehouse's own tokens, on
    //! a clock set by hand: nothing sleeps to see a token expire.

    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &str = "jwt-unit-test-secret-0123456789abcdef";
    const NOW: u64 = 1_900_000_000;

    fn verifier() -> Verifier {
        crate::install_crypto_providers();
        let dir = tempfile::tempdir().expect("temp dir");
        let yaml = format!(
            "listen:\n  https: 127.0.0.1:0\ntls:\n  cert: c.pem\n  key: k.pem\n\
             upstreams:\n  app:\n    url: http://127.0.0.1:9\n\
             auth:\n  jwt:\n    secret: {SECRET}\n"
        );
        let config = crate::config::parse(&dir.path().join("g.yaml"), &yaml).expect("config");
        let own = OwnKeys::load(&config.auth.jwt).expect("keys");
        Verifier::new(&config.auth.jwt, &own, &RemoteKeySets::default()).expect("verifier")
    }

    fn claims() -> Value {
        json!({
            "iss": "gatehouse", "aud": "gatehouse", "sub": "alice", "roles": ["user"],
            "iat": NOW, "nbf": NOW, "exp": NOW + 900, "jti": "j1", "sid": "s1",
            "typ": "access",
        })
    }

    fn with(mut c: Value, key: &str, value: Value) -> Value {
        c[key] = value;
        c
    }

    fn without(mut c: Value, key: &str) -> Value {
        c.as_object_mut().expect("object").remove(key);
        c
    }

    fn sign_with(header: &Header, claims: &Value, secret: &str) -> String {
        crate::install_crypto_providers();
        encode(header, claims, &EncodingKey::from_secret(secret.as_bytes())).expect("sign")
    }

    fn sign(claims: &Value) -> String {
        sign_with(&Header::new(Algorithm::HS256), claims, SECRET)
    }

    fn b64(v: &Value) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    async fn check(v: &Verifier, token: &str, now: u64) -> Result<String, Rejection> {
        v.verify(token, now).await.map(|p| p.user.to_string())
    }

    #[tokio::test]
    async fn a_valid_token_is_accepted_until_exp_plus_leeway_even_from_the_cache() {
        let v = verifier();
        let token = sign(&claims());
        assert_eq!(check(&v, &token, NOW).await, Ok("alice".into()));
        // Cached now; the cache re-checks expiry with the clock it is given.
        assert_eq!(check(&v, &token, NOW + 900 + 30).await, Ok("alice".into()));
        assert_eq!(
            check(&v, &token, NOW + 900 + 31).await,
            Err(Rejection::Expired)
        );
        // And without the cache.
        assert_eq!(
            v.verify_without_cache(&token, NOW + 931).await.err(),
            Some(Rejection::Expired)
        );
    }

    #[tokio::test]
    async fn a_token_not_yet_valid_is_refused_beyond_the_leeway() {
        let v = verifier();
        let early = sign(&with(claims(), "nbf", json!(NOW + 60)));
        assert_eq!(check(&v, &early, NOW).await, Err(Rejection::Invalid));
        assert_eq!(check(&v, &early, NOW + 30).await, Ok("alice".into()));
    }

    #[tokio::test]
    async fn the_attack_matrix_is_refused() {
        let v = verifier();
        let hs = |alg| Header::new(alg);
        let mut kid = Header::new(Algorithm::HS256);
        kid.kid = Some("k1".into());
        let mut crit = Header::new(Algorithm::HS256);
        crit.crit = Some(vec!["exp".into()]);
        let mut jku = Header::new(Algorithm::HS256);
        jku.jku = Some("https://evil.example/jwks".into());
        let cases: Vec<(&str, String)> = vec![
            (
                "another algorithm of the family",
                sign_with(&hs(Algorithm::HS512), &claims(), SECRET),
            ),
            (
                "another key",
                sign_with(
                    &hs(Algorithm::HS256),
                    &claims(),
                    "not-the-secret-0123456789abcdef",
                ),
            ),
            ("a kid on an own token", sign_with(&kid, &claims(), SECRET)),
            ("a crit header", sign_with(&crit, &claims(), SECRET)),
            ("a jku header", sign_with(&jku, &claims(), SECRET)),
            ("no exp", sign(&without(claims(), "exp"))),
            (
                "exp as a string",
                sign(&with(claims(), "exp", json!("2100-01-01"))),
            ),
            (
                "another issuer",
                sign(&with(claims(), "iss", json!("evil"))),
            ),
            (
                "the issuer in an array",
                sign(&with(claims(), "iss", json!(["gatehouse"]))),
            ),
            (
                "another audience",
                sign(&with(claims(), "aud", json!("other"))),
            ),
            (
                "not an access token",
                sign(&with(claims(), "typ", json!("refresh"))),
            ),
            ("no sub", sign(&without(claims(), "sub"))),
            (
                "a sub with a trailing space",
                sign(&with(claims(), "sub", json!("admin "))),
            ),
            (
                "a sub with a comma",
                sign(&with(claims(), "sub", json!("alice,admin"))),
            ),
            (
                "a role with a newline",
                sign(&with(claims(), "roles", json!(["user\nadmin"]))),
            ),
            (
                "alg none",
                format!(
                    "{}.{}.",
                    b64(&json!({"alg": "none", "typ": "JWT"})),
                    b64(&claims())
                ),
            ),
            (
                "no alg",
                format!("{}.{}.sig", b64(&json!({"typ": "JWT"})), b64(&claims())),
            ),
            ("two segments", "a.b".into()),
            ("four segments", format!("{}.x", sign(&claims()))),
            (
                "too long",
                format!("{}{}", sign(&claims()), "A".repeat(MAX_TOKEN_LEN)),
            ),
            ("not base64", "!!.@@.##".into()),
        ];
        for (what, token) in cases {
            assert!(check(&v, &token, NOW).await.is_err(), "{what}: accepted");
        }
    }

    #[tokio::test]
    async fn a_refused_token_is_never_cached_as_accepted() {
        let v = verifier();
        let forged = sign_with(
            &Header::new(Algorithm::HS256),
            &claims(),
            "not-the-secret-0123456789abcdef",
        );
        for _ in 0..2 {
            assert_eq!(check(&v, &forged, NOW).await, Err(Rejection::Invalid));
        }
    }
}
