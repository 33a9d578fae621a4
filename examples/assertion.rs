//! Verifying gatehouse's signed identity assertion in an axum backend (SPEC
//! §12): an extractor, [`GatehouseIdentity`], that refuses a request whose
//! `X-Gatehouse-Assertion` is missing, forged, expired or meant for another
//! backend, with keys fetched from gatehouse's JWKS (cached; fetched again
//! for a key id not seen before, i.e. after a rotation).
//!
//! ```ignore
//! let keys = Arc::new(AssertionKeys::new(jwks_url, "app", "https://chat.example.com"));
//! let app = Router::new()
//!     .route("/whoami", get(|GatehouseIdentity(who): GatehouseIdentity| async move {
//!         format!("hello {}", who.sub)
//!     }))
//!     .layer(Extension(keys));
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Extension;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::RwLock;

/// The header gatehouse puts the assertion in.
pub const ASSERTION_HEADER: &str = "x-gatehouse-assertion";

/// What the assertion says.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub roles: Vec<String>,
    pub method: String,
    pub email: Option<String>,
}

/// Where gatehouse's keys are, and what this backend accepts.
pub struct AssertionKeys {
    jwks_url: String,
    audience: String,
    issuer: String,
    client: reqwest::Client,
    /// The last JWKS fetched, and when.
    cached: RwLock<Option<(JwkSet, Instant)>>,
}

/// Fetched again at most this often when an unknown `kid` shows up (a
/// forged token must not make the backend hammer gatehouse).
const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(10);

impl AssertionKeys {
    pub fn new(jwks_url: &str, audience: &str, issuer: &str) -> Self {
        AssertionKeys {
            jwks_url: jwks_url.to_owned(),
            audience: audience.to_owned(),
            issuer: issuer.to_owned(),
            client: reqwest::Client::new(),
            cached: RwLock::new(None),
        }
    }

    /// The claims of a valid assertion, or why not.
    pub async fn verify(&self, token: &str) -> Result<Claims, String> {
        let header = decode_header(token).map_err(|e| e.to_string())?;
        let allowed = [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256];
        if !allowed.contains(&header.alg) {
            return Err(format!("algorithm {:?} not accepted", header.alg));
        }
        let kid = header.kid.ok_or("no kid")?;
        let key = match self.key(&kid).await? {
            Some(key) => key,
            None => {
                self.refetch().await?;
                self.key(&kid).await?.ok_or("unknown kid")?
            }
        };
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[&self.audience]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "aud", "iss"]);
        validation.leeway = 5;
        decode::<Claims>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| e.to_string())
    }

    async fn key(&self, kid: &str) -> Result<Option<DecodingKey>, String> {
        if self.cached.read().await.is_none() {
            self.refetch().await?;
        }
        let cached = self.cached.read().await;
        let Some(jwk) = cached.as_ref().and_then(|(set, _)| set.find(kid)) else {
            return Ok(None);
        };
        DecodingKey::from_jwk(jwk)
            .map(Some)
            .map_err(|e| e.to_string())
    }

    async fn refetch(&self) -> Result<(), String> {
        let mut cached = self.cached.write().await;
        if cached
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() < REFETCH_AT_MOST_EVERY)
        {
            return Ok(());
        }
        let set: JwkSet = self
            .client
            .get(&self.jwks_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("fetching the JWKS: {e}"))?
            .json()
            .await
            .map_err(|e| format!("reading the JWKS: {e}"))?;
        *cached = Some((set, Instant::now()));
        Ok(())
    }
}

/// The verified identity of the request; a request without a valid
/// assertion is refused with 401 before the handler runs.
pub struct GatehouseIdentity(pub Claims);

impl<S: Send + Sync> FromRequestParts<S> for GatehouseIdentity {
    type Rejection = (StatusCode, String);

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Extension(keys) = Extension::<Arc<AssertionKeys>>::from_request_parts(parts, state)
            .await
            .map_err(|_| {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no assertion keys configured".to_owned(),
                )
            })?;
        let token = parts
            .headers
            .get(ASSERTION_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or((StatusCode::UNAUTHORIZED, "no identity assertion".to_owned()))?;
        keys.verify(token)
            .await
            .map(GatehouseIdentity)
            .map_err(|why| {
                (
                    StatusCode::UNAUTHORIZED,
                    format!("invalid identity assertion: {why}"),
                )
            })
    }
}
