//! External issuers' verification keys: a JWKS document fetched over HTTPS
//! (`jwks_url`), a JWKS file (`jwks_file`), or one PEM public key
//! (`public_key`).
//!
//! Remote sets are fetched at start and every [`REFRESH_EVERY`], and again
//! when a token names an unknown `kid` — at most once per [`REFETCH_AFTER`]
//! per issuer, so a flood of made-up `kid`s cannot hammer the IdP. A failed
//! fetch keeps the keys already known (an IdP outage does not log everyone
//! out). Keys are only ever looked up by `kid`; a token's own `jwk`, `jku`,
//! `x5u` or `x5c` header is never trusted (see `jwt.rs`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// A remote key set is refreshed this often.
pub const REFRESH_EVERY: Duration = Duration::from_secs(600);
/// An unknown `kid` triggers a refetch at most this often per issuer.
pub const REFETCH_AFTER: Duration = Duration::from_secs(30);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_JWKS_BYTES: usize = 1 << 20;

/// One verification key.
#[derive(Clone)]
pub struct Key {
    pub decoding: DecodingKey,
    /// The algorithm the key is for, when the JWKS says.
    pub alg: Option<Algorithm>,
}

/// Keys by `kid`, plus keys without one.
#[derive(Clone, Default)]
pub struct KeySet {
    by_kid: HashMap<String, Key>,
    anonymous: Vec<Key>,
    /// Which fetch of a remote set this is (1, 2, …; 0 before the first):
    /// tokens verified with an older set are verified again (`jwt.rs` cache).
    serial: u64,
}

impl KeySet {
    /// The key a token should be verified with: the one named by `kid`, or,
    /// for a token without `kid`, the set's only key.
    pub fn find(&self, kid: Option<&str>) -> Option<&Key> {
        match kid {
            Some(kid) => self.by_kid.get(kid),
            None => match (self.by_kid.len(), self.anonymous.len()) {
                (0, 1) => self.anonymous.first(),
                (1, 0) => self.by_kid.values().next(),
                _ => None,
            },
        }
    }

    pub fn len(&self) -> usize {
        self.by_kid.len() + self.anonymous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Parses a JWKS document, keeping signing keys of supported types.
    pub fn from_jwks(json: &[u8]) -> Result<Self, String> {
        let set: JwkSet =
            serde_json::from_slice(json).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys = KeySet::default();
        for jwk in &set.keys {
            if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
                continue;
            }
            let Ok(decoding) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            let alg = jwk.common.key_algorithm.and_then(algorithm_of);
            let key = Key { decoding, alg };
            match &jwk.common.key_id {
                Some(kid) => {
                    keys.by_kid.insert(kid.clone(), key);
                }
                None => keys.anonymous.push(key),
            }
        }
        if keys.is_empty() {
            return Err("the JWKS has no usable signing key".into());
        }
        Ok(keys)
    }

    /// One PEM public key for `alg`'s family.
    pub fn from_pem(pem: &[u8], alg: Algorithm) -> Result<Self, String> {
        let decoding = decoding_key_from_pem(pem, alg)?;
        Ok(KeySet {
            by_kid: HashMap::new(),
            anonymous: vec![Key {
                decoding,
                alg: None,
            }],
            serial: 0,
        })
    }
}

/// A PEM public key for `alg` (RSA for RS*/PS*, EC for ES*, Ed25519 for EdDSA).
pub fn decoding_key_from_pem(pem: &[u8], alg: Algorithm) -> Result<DecodingKey, String> {
    use Algorithm::*;
    let key = match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => DecodingKey::from_rsa_pem(pem),
        ES256 | ES384 => DecodingKey::from_ec_pem(pem),
        EdDSA => DecodingKey::from_ed_pem(pem),
        _ => return Err(format!("{alg:?} has no public key")),
    };
    key.map_err(|e| format!("not a PEM public key for {alg:?}: {e}"))
}

fn algorithm_of(k: KeyAlgorithm) -> Option<Algorithm> {
    use KeyAlgorithm as K;
    Some(match k {
        K::RS256 => Algorithm::RS256,
        K::RS384 => Algorithm::RS384,
        K::RS512 => Algorithm::RS512,
        K::PS256 => Algorithm::PS256,
        K::PS384 => Algorithm::PS384,
        K::PS512 => Algorithm::PS512,
        K::ES256 => Algorithm::ES256,
        K::ES384 => Algorithm::ES384,
        K::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// Reads a JWKS file.
pub fn load_file(path: &Path) -> Result<KeySet, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    KeySet::from_jwks(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

type HttpsClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<Bytes>,
>;

/// A key set fetched from an HTTPS URL and kept current.
pub struct RemoteKeys {
    url: Uri,
    keys: ArcSwap<KeySet>,
    /// Serializes fetches.
    fetching: tokio::sync::Mutex<()>,
    /// When an unknown `kid` last triggered a fetch (scheduled fetches do
    /// not count: they must never delay a key the IdP just rotated in).
    last_refetch: std::sync::Mutex<Option<Instant>>,
    client: HttpsClient,
}

impl RemoteKeys {
    pub fn new(url: Uri) -> Result<Arc<Self>, String> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("no TLS root certificates for {url}: {e}"))?
            .https_only()
            .enable_http1()
            .build();
        Ok(Self::with_connector(url, connector))
    }

    /// A set fetched with the given TLS settings (an identity provider's
    /// own roots, SPEC §10 `ca_file`), kept fresh as [`RemoteKeySets`] does.
    pub fn with_tls(url: Uri, tls: rustls::ClientConfig) -> Arc<Self> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        let keys = Self::with_connector(url, connector);
        keys.keep_fresh();
        keys
    }

    fn with_connector(
        url: Uri,
        connector: hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    ) -> Arc<Self> {
        Arc::new(RemoteKeys {
            url,
            keys: ArcSwap::from_pointee(KeySet::default()),
            fetching: tokio::sync::Mutex::new(()),
            last_refetch: std::sync::Mutex::new(None),
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    pub fn url(&self) -> &Uri {
        &self.url
    }

    /// The keys known now.
    pub fn current(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    /// The serial of the current set: it changes with every fetch stored.
    pub fn serial(&self) -> u64 {
        self.keys.load().serial
    }

    /// The key for `kid` and the serial of the set it is in, refetching the
    /// set first if `kid` is unknown — at most once per [`REFETCH_AFTER`],
    /// however many unknown `kid`s come.
    pub async fn find(&self, kid: Option<&str>) -> Option<(Key, u64)> {
        let found = |set: &KeySet| set.find(kid).map(|key| (key.clone(), set.serial));
        if let Some(found) = found(&self.keys.load()) {
            return Some(found);
        }
        let _fetching = self.fetching.lock().await;
        // A fetch we waited for may have brought it.
        if let Some(found) = found(&self.keys.load()) {
            return Some(found);
        }
        {
            let Ok(mut last) = self.last_refetch.lock() else {
                return None;
            };
            let now = Instant::now();
            if !refetch_due(*last, now) {
                return None;
            }
            *last = Some(now);
        }
        self.fetch_and_store().await;
        found(&self.keys.load())
    }

    /// Fetches the set now (a scheduled refresh).
    pub async fn refresh(&self) {
        let _fetching = self.fetching.lock().await;
        self.fetch_and_store().await;
    }

    /// One fetch; errors are logged and the keys already known stay.
    async fn fetch_and_store(&self) {
        match self.fetch().await {
            Ok(mut keys) => {
                tracing::debug!(url = %self.url, keys = keys.len(), "fetched JWKS");
                // Fetches are serialized (`fetching`): serials only grow.
                keys.serial = self.keys.load().serial + 1;
                self.keys.store(Arc::new(keys));
            }
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "JWKS fetch failed; keeping the keys already known")
            }
        }
    }

    /// Fetches now and every [`REFRESH_EVERY`] in a background task, which
    /// ends once nothing holds these keys any more. Needs a Tokio runtime;
    /// without one (e.g. `gatehouse check`) nothing is spawned.
    fn keep_fresh(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(self);
        runtime.spawn(async move {
            loop {
                let Some(keys) = weak.upgrade() else { return };
                keys.refresh().await;
                drop(keys);
                tokio::time::sleep(REFRESH_EVERY).await;
            }
        });
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let req = http::Request::get(self.url.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let res = tokio::time::timeout(FETCH_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        if !res.status().is_success() {
            return Err(format!("status {}", res.status()));
        }
        let body = tokio::time::timeout(
            FETCH_TIMEOUT,
            Limited::new(res.into_body(), MAX_JWKS_BYTES).collect(),
        )
        .await
        .map_err(|_| "timed out reading the body".to_owned())?
        .map_err(|e| e.to_string())?
        .to_bytes();
        KeySet::from_jwks(&body)
    }
}

/// Whether an unknown `kid` may trigger a fetch at `now`, the last one it
/// triggered having been at `last`: never more than once per
/// [`REFETCH_AFTER`].
fn refetch_due(last: Option<Instant>, now: Instant) -> bool {
    last.is_none_or(|t| now.saturating_duration_since(t) >= REFETCH_AFTER)
}

/// The remote key sets of the process, by URL: a config reload reuses the
/// set (and its keys) of every `jwks_url` it keeps, so an IdP that is down
/// during a reload does not log anyone out.
#[derive(Default)]
pub struct RemoteKeySets {
    map: std::sync::Mutex<HashMap<String, Arc<RemoteKeys>>>,
}

impl RemoteKeySets {
    /// The set for `url`: the live one, or a new one (fetched at once and
    /// kept fresh).
    pub fn get(&self, url: &Uri) -> Result<Arc<RemoteKeys>, String> {
        let mut map = self
            .map
            .lock()
            .map_err(|_| "JWKS registry poisoned".to_owned())?;
        // Sets no generation uses any more are let go.
        map.retain(|_, keys| Arc::strong_count(keys) > 1);
        if let Some(keys) = map.get(&url.to_string()) {
            return Ok(keys.clone());
        }
        let keys = RemoteKeys::new(url.clone())?;
        keys.keep_fresh();
        map.insert(url.to_string(), keys.clone());
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_kid_refetches_at_most_once_per_thirty_seconds() {
        let t0 = Instant::now();
        assert!(refetch_due(None, t0), "the first unknown kid fetches");
        assert!(!refetch_due(Some(t0), t0));
        assert!(!refetch_due(Some(t0), t0 + Duration::from_secs(29)));
        assert!(
            refetch_due(Some(t0), t0 + REFETCH_AFTER),
            "and again after 30 s"
        );
        assert_eq!(REFETCH_AFTER, Duration::from_secs(30), "SPEC §10");
    }
}
