//! Sign-in with an identity provider (SPEC §10): OpenID Connect providers
//! found by discovery, and GitHub through its API.
//!
//! - [`Providers`] — one config generation's providers, each a config and
//!   a shared [`Remote`]: the provider as discovered (its endpoints and
//!   keys), kept across reloads by the [`Registry`] so a reload never
//!   forgets a provider that is down now;
//! - discovery ([`Remote::discover`]) checks the document's `issuer`
//!   exactly; the server's upkeep retries it with backoff (at most 30 s
//!   apart) until it succeeds, and refreshes it hourly;
//! - a sign-in [`Flow`]: `state`, `nonce` and the PKCE verifier (256 random
//!   bits each), stored under the SHA-256 of `state` and bound to the
//!   browser by a cookie whose name comes from `state` and whose value only
//!   that browser has;
//! - [`finish`] — the callback's work once the flow is known: the code
//!   exchange, the `id_token` check (`id_token.rs`), userinfo, and the
//!   claim rules (`claims.rs`); GitHub's API in `github.rs`;
//! - `http.rs` — the HTTPS client (system roots plus `ca_file`).
//!
//! Nothing here logs or returns a code, a token or a secret.

pub mod claims;
pub mod github;
pub mod http;
pub mod id_token;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::http::Uri;
use arc_swap::ArcSwapOption;
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use self::claims::Identity;
use self::http::ProviderClient;
use super::jwks::RemoteKeys;
use crate::config::{self, OidcProvider, ProviderKind, TokenAuth};

/// How long a started sign-in may take (SPEC §10).
pub const FLOW_TTL: u64 = 600;
/// The longest wait between two discovery attempts of a provider that is
/// not discovered (SPEC §10: at least every 30 s).
pub const RETRY_AT_MOST: Duration = Duration::from_secs(30);
/// A discovered provider's document is fetched again this often.
pub const REDISCOVER_EVERY: Duration = Duration::from_secs(3600);

/// A provider's endpoints and keys, as discovered (or configured, GitHub).
pub struct Metadata {
    pub authorization_endpoint: Uri,
    pub token_endpoint: Uri,
    pub userinfo_endpoint: Option<Uri>,
    /// OIDC only: the keys `id_token`s are signed with.
    pub keys: Option<Arc<RemoteKeys>>,
    /// OIDC only: the algorithms accepted for its `id_token`s.
    pub algorithms: Vec<Algorithm>,
    /// RFC 9207: the provider says it sends `iss` with every answer, so a
    /// callback without one is refused.
    pub iss_required: bool,
}

/// A provider's remote side, shared by the generations that configure it
/// the same way (same kind and endpoints, same `ca_file`).
pub struct Remote {
    kind: ProviderKind,
    client: ProviderClient,
    metadata: ArcSwapOption<Metadata>,
    schedule: Mutex<Schedule>,
}

struct Schedule {
    next: Instant,
    failures: u32,
    /// Why the last discovery failed, while the provider is not discovered.
    error: Option<String>,
}

impl Remote {
    fn new(cfg: &OidcProvider) -> Result<Arc<Self>, String> {
        let client = ProviderClient::new(&cfg.ca_certs)?;
        let metadata = match &cfg.kind {
            ProviderKind::Github {
                auth_url,
                token_url,
                ..
            } => Some(Arc::new(Metadata {
                authorization_endpoint: auth_url.clone(),
                token_endpoint: token_url.clone(),
                userinfo_endpoint: None,
                keys: None,
                algorithms: Vec::new(),
                iss_required: false,
            })),
            ProviderKind::Oidc { .. } => None,
        };
        Ok(Arc::new(Remote {
            kind: cfg.kind.clone(),
            client,
            metadata: ArcSwapOption::new(metadata),
            schedule: Mutex::new(Schedule {
                next: Instant::now(),
                failures: 0,
                error: Some("discovery has not run yet".into()),
            }),
        }))
    }

    /// The endpoints and keys, once discovered.
    pub fn metadata(&self) -> Option<Arc<Metadata>> {
        self.metadata.load_full()
    }

    /// Why the provider is not usable yet, if it is not.
    pub fn missing(&self) -> Option<String> {
        if self.metadata.load().is_some() {
            return None;
        }
        let schedule = self.schedule.lock().ok()?;
        Some(schedule.error.clone().unwrap_or_default())
    }

    /// Whether discovery is due at `now` (never for GitHub).
    pub fn discovery_due(&self, now: Instant) -> bool {
        matches!(self.kind, ProviderKind::Oidc { .. })
            && self.schedule.lock().is_ok_and(|s| s.next <= now)
    }

    /// Asks for discovery at the next upkeep tick (a reload).
    fn rediscover_soon(&self) {
        if let Ok(mut s) = self.schedule.lock() {
            s.next = Instant::now();
        }
    }

    /// One discovery attempt; its outcome schedules the next one. A
    /// provider discovered before keeps its metadata when this one fails.
    pub async fn discover(&self) -> Result<(), String> {
        let ProviderKind::Oidc { issuer } = &self.kind else {
            return Ok(());
        };
        let result = self.fetch_metadata(issuer).await;
        let Ok(mut s) = self.schedule.lock() else {
            return result;
        };
        match &result {
            Ok(()) => {
                s.failures = 0;
                s.error = None;
                s.next = Instant::now() + REDISCOVER_EVERY;
            }
            Err(e) => {
                s.failures = s.failures.saturating_add(1);
                let backoff = Duration::from_secs(1 << s.failures.min(5)).min(RETRY_AT_MOST);
                s.next = Instant::now() + backoff;
                s.error = Some(e.clone());
            }
        }
        result
    }

    async fn fetch_metadata(&self, issuer: &str) -> Result<(), String> {
        // OIDC Discovery §4: the issuer, any trailing slash removed, then
        // the well-known path.
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let uri: Uri = url.parse().map_err(|_| format!("{url}: not a URL"))?;
        let answer = self.client.get_json(&uri, None).await?;
        if !answer.status.is_success() {
            return Err(format!("{url} answered {}", answer.status));
        }
        let doc = answer.json.ok_or_else(|| format!("{url}: not JSON"))?;
        let named = doc.get("issuer").and_then(Value::as_str);
        if named != Some(issuer) {
            return Err(format!(
                "{url} names the issuer {:?}, not {issuer:?} (they must match exactly)",
                named.unwrap_or("")
            ));
        }
        let endpoint = |name: &str| -> Result<Option<Uri>, String> {
            match doc.get(name).and_then(Value::as_str) {
                None => Ok(None),
                Some(v) => {
                    let u: Uri = v.parse().map_err(|_| format!("{name}: not a URL"))?;
                    if u.scheme_str() != Some("https") {
                        return Err(format!("{name}: not an https URL"));
                    }
                    Ok(Some(u))
                }
            }
        };
        let required = |name: &str| endpoint(name)?.ok_or_else(|| format!("{url} has no {name}"));
        let authorization_endpoint = required("authorization_endpoint")?;
        let token_endpoint = required("token_endpoint")?;
        let jwks_uri = required("jwks_uri")?;
        let userinfo_endpoint = endpoint("userinfo_endpoint")?;
        let algorithms =
            id_token::allowed_algorithms(doc.get("id_token_signing_alg_values_supported"));
        if algorithms.is_empty() {
            return Err(format!(
                "{url}: the provider signs id_tokens with no public-key algorithm"
            ));
        }
        let iss_required = doc
            .get("authorization_response_iss_parameter_supported")
            .and_then(Value::as_bool)
            == Some(true);
        // The key set is kept when the document names the same one.
        let keys = match self.metadata().and_then(|m| m.keys.clone()) {
            Some(keys) if *keys.url() == jwks_uri => keys,
            _ => RemoteKeys::with_tls(jwks_uri, self.client.tls().clone()),
        };
        self.metadata.store(Some(Arc::new(Metadata {
            authorization_endpoint,
            token_endpoint,
            userinfo_endpoint,
            keys: Some(keys),
            algorithms,
            iss_required,
        })));
        Ok(())
    }
}

/// One configured provider.
pub struct Provider {
    pub config: OidcProvider,
    pub remote: Arc<Remote>,
}

/// A generation's `auth.oidc`.
pub struct Providers {
    pub callback: String,
    pub redirect_url: Option<String>,
    pub list: Vec<Provider>,
}

impl Providers {
    /// The generation's providers, reusing `registry`'s remotes.
    pub fn new(cfg: &config::Oidc, registry: &Registry) -> Result<Self, (usize, String)> {
        let list = cfg
            .providers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Ok(Provider {
                    config: p.clone(),
                    remote: registry.get(p).map_err(|e| (i, e))?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Providers {
            callback: cfg.callback.clone(),
            redirect_url: cfg.redirect_url.clone(),
            list,
        })
    }

    pub fn find(&self, id: &str) -> Option<&Provider> {
        self.list.iter().find(|p| p.config.id == id)
    }

    /// The providers not discovered yet, and why (for `/readyz`).
    pub fn missing(&self) -> Vec<(String, String)> {
        self.list
            .iter()
            .filter_map(|p| p.remote.missing().map(|why| (p.config.id.clone(), why)))
            .collect()
    }

    /// Runs every discovery that is due (the server's upkeep).
    pub async fn discover_due(&self) {
        let now = Instant::now();
        for p in &self.list {
            if !p.remote.discovery_due(now) {
                continue;
            }
            match p.remote.discover().await {
                Ok(()) => tracing::info!(provider = %p.config.id, "identity provider discovered"),
                Err(e) => tracing::warn!(
                    provider = %p.config.id,
                    error = %e,
                    "identity provider discovery failed; its sign-in answers 503 until it succeeds"
                ),
            }
        }
    }
}

/// The remotes of the process, by what they depend on: a reload that keeps
/// a provider's kind, endpoints and CA keeps what was discovered.
#[derive(Default)]
pub struct Registry {
    map: Mutex<HashMap<String, Arc<Remote>>>,
}

impl Registry {
    fn get(&self, cfg: &OidcProvider) -> Result<Arc<Remote>, String> {
        let ca: Vec<u8> = cfg.ca_certs.iter().flat_map(|c| c.to_vec()).collect();
        let key = format!(
            "{}|{:?}|{}",
            cfg.id,
            cfg.kind,
            crate::text::sha256_hex(&base64::engine::general_purpose::STANDARD.encode(ca))
        );
        let mut map = self
            .map
            .lock()
            .map_err(|_| "registry poisoned".to_owned())?;
        map.retain(|_, r| Arc::strong_count(r) > 1);
        if let Some(remote) = map.get(&key) {
            remote.rediscover_soon();
            return Ok(remote.clone());
        }
        let remote = Remote::new(cfg)?;
        map.insert(key, remote.clone());
        Ok(remote)
    }
}

/// A sign-in in progress, stored under the SHA-256 of its `state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// The provider's `id`.
    pub provider: String,
    /// The PKCE `code_verifier` (RFC 7636).
    pub verifier: String,
    pub nonce: String,
    /// Where the browser goes afterwards, validated.
    pub rd: String,
    /// The redirect URI sent with the authorization request (the token
    /// request must repeat it exactly).
    pub redirect_uri: String,
    /// Hex SHA-256 of the flow cookie's value.
    pub binding: String,
}

/// A new flow's secrets.
pub struct Started {
    pub state: String,
    /// The flow cookie's value.
    pub cookie: String,
    pub flow: Flow,
    /// The PKCE `code_challenge` (S256).
    pub challenge: String,
}

/// 256 random bits, base64url: 43 characters.
fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `value` has the shape of a [`random_token`].
pub fn well_formed(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Starts a flow for `provider`.
pub fn start(provider: &str, rd: String, redirect_uri: String) -> Started {
    let state = random_token();
    let cookie = random_token();
    let verifier = random_token();
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    Started {
        flow: Flow {
            provider: provider.to_owned(),
            verifier,
            nonce: random_token(),
            rd,
            redirect_uri,
            binding: crate::text::sha256_hex(&cookie),
        },
        state,
        cookie,
        challenge,
    }
}

/// The store key of a flow: the SHA-256 of its `state`.
pub fn flow_key(state: &str) -> String {
    crate::text::sha256_hex(state)
}

/// The flow cookie's name: the session cookie's, `-oidc-`, and 16 hex
/// digits from the SHA-256 of `state` (one cookie per flow: parallel tabs
/// do not clobber each other).
pub fn flow_cookie_name(session_cookie: &str, state: &str) -> String {
    let hash = Sha256::digest(format!("cookie:{state}").as_bytes());
    let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{session_cookie}{FLOW_COOKIE_INFIX}{hex}")
}

/// What follows the session cookie's name in a flow cookie's.
pub const FLOW_COOKIE_INFIX: &str = "-oidc-";

/// Whether `presented` (the flow cookie's value) is the one `flow` was
/// bound to, in constant time.
pub fn bound_to(flow: &Flow, presented: &str) -> bool {
    use subtle::ConstantTimeEq;
    let hash = crate::text::sha256_hex(presented);
    bool::from(hash.as_bytes().ct_eq(flow.binding.as_bytes()))
}

/// The authorization request's URL (RFC 6749 §4.1.1, OIDC Core §3.1.2.1,
/// RFC 7636 §4.3).
pub fn authorization_url(provider: &Provider, metadata: &Metadata, started: &Started) -> String {
    let cfg = &provider.config;
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("response_type", "code")
        .append_pair("client_id", &cfg.client_id)
        .append_pair("redirect_uri", &started.flow.redirect_uri)
        .append_pair("scope", &cfg.scopes.join(" "))
        .append_pair("state", &started.state)
        .append_pair("code_challenge", &started.challenge)
        .append_pair("code_challenge_method", "S256");
    if matches!(cfg.kind, ProviderKind::Oidc { .. }) {
        query.append_pair("nonce", &started.flow.nonce);
    }
    let base = metadata.authorization_endpoint.to_string();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{}", query.finish())
}

/// The `result` of a refused sign-in (`gatehouse_oidc_logins_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The claim rules said no.
    Denied,
    /// A bad or replayed state, no flow cookie, a bad token or nonce.
    Invalid,
    /// An `error=` from the provider, or a failed exchange.
    ProviderError,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Invalid => "invalid",
            Outcome::ProviderError => "provider_error",
        }
    }
}

/// A refused sign-in: the metric's result and the reason for the log
/// (never a code, token or secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub outcome: Outcome,
    pub reason: String,
}

impl Failed {
    pub fn denied(reason: impl Into<String>) -> Self {
        Failed {
            outcome: Outcome::Denied,
            reason: reason.into(),
        }
    }
    pub fn invalid(reason: impl Into<String>) -> Self {
        Failed {
            outcome: Outcome::Invalid,
            reason: reason.into(),
        }
    }
    pub fn provider(reason: impl Into<String>) -> Self {
        Failed {
            outcome: Outcome::ProviderError,
            reason: reason.into(),
        }
    }
}

/// The callback's work once its flow is known and bound to the browser:
/// the code exchange (with the PKCE verifier), then the `id_token` and
/// userinfo (OIDC) or GitHub's API, then the claim rules.
pub async fn finish(
    provider: &Provider,
    metadata: &Metadata,
    flow: &Flow,
    code: &str,
    leeway: u64,
    now: u64,
) -> Result<Identity, Failed> {
    let cfg = &provider.config;
    let client = &provider.remote.client;
    let secret = cfg.client_secret.expose();
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", flow.redirect_uri.as_str()),
        ("code_verifier", flow.verifier.as_str()),
    ];
    let basic = match cfg.token_auth {
        TokenAuth::Basic => Some((cfg.client_id.as_str(), secret)),
        TokenAuth::Post => {
            form.push(("client_id", &cfg.client_id));
            form.push(("client_secret", secret));
            None
        }
    };
    let answer = client
        .post_form(&metadata.token_endpoint, &form, basic)
        .await
        .map_err(|e| Failed::provider(format!("code exchange: {e}")))?;
    let tokens = answer.json.unwrap_or(Value::Null);
    if !answer.status.is_success() || tokens.get("error").is_some() {
        let error = tokens
            .get("error")
            .and_then(Value::as_str)
            .map(safe_code)
            .unwrap_or_default();
        return Err(Failed::provider(format!(
            "code exchange refused: status {}, error {error:?}",
            answer.status
        )));
    }
    let access_token = tokens.get("access_token").and_then(Value::as_str);
    match &cfg.kind {
        ProviderKind::Github { api_url, .. } => {
            let token = access_token
                .ok_or_else(|| Failed::provider("code exchange gave no access_token"))?;
            github::identity(client, cfg, api_url, token).await
        }
        ProviderKind::Oidc { issuer } => {
            let id_token = tokens
                .get("id_token")
                .and_then(Value::as_str)
                .ok_or_else(|| Failed::provider("code exchange gave no id_token"))?;
            let keys = metadata
                .keys
                .as_ref()
                .ok_or_else(|| Failed::provider("no keys"))?;
            let expect = id_token::Expect {
                issuer,
                client_id: &cfg.client_id,
                algorithms: &metadata.algorithms,
                nonce: &flow.nonce,
                leeway,
                now,
            };
            let mut claims = id_token::verify(id_token, keys, &expect)
                .await
                .map_err(Failed::invalid)?;
            if needs_userinfo(cfg, &claims) {
                if let (Some(url), Some(token)) = (&metadata.userinfo_endpoint, access_token) {
                    merge_userinfo(client, url, token, &mut claims).await?;
                }
            }
            claims::apply(cfg, &claims).map_err(Failed::denied)
        }
    }
}

/// Whether a claim the rules read is missing from the `id_token`.
fn needs_userinfo(cfg: &OidcProvider, claims: &Map<String, Value>) -> bool {
    let root = |path: &str| path.split('.').next().unwrap_or(path).to_owned();
    let mut wanted = vec![
        "email".to_owned(),
        "email_verified".to_owned(),
        root(&cfg.username_claim),
    ];
    if let (false, Some(first)) = (cfg.role_map.is_empty(), cfg.roles_claim.first()) {
        wanted.push(first.clone());
    }
    wanted.extend(cfg.required_claims.iter().map(|(c, _)| root(c)));
    wanted
        .iter()
        .any(|c| !claims.contains_key(c) && claims::claim_at(claims, c).is_none())
}

/// Adds the claims the `id_token` lacks from userinfo, whose `sub` must be
/// the token's (OIDC Core §5.3.2).
async fn merge_userinfo(
    client: &ProviderClient,
    url: &Uri,
    access_token: &str,
    claims: &mut Map<String, Value>,
) -> Result<(), Failed> {
    let answer = client
        .get_json(url, Some(access_token))
        .await
        .map_err(|e| Failed::provider(format!("userinfo: {e}")))?;
    if !answer.status.is_success() {
        return Err(Failed::provider(format!(
            "userinfo answered {}",
            answer.status
        )));
    }
    let Some(Value::Object(info)) = answer.json else {
        return Err(Failed::provider("userinfo sent no JSON object"));
    };
    if info.get("sub") != claims.get("sub") {
        return Err(Failed::invalid("userinfo sub is not the id_token's"));
    }
    for (name, value) in info {
        claims.entry(name).or_insert(value);
    }
    Ok(())
}

/// A provider's error code as it may be logged: RFC 6749 error codes are
/// `[\x20-\x21\x23-\x5B\x5D-\x7E]`; anything else, or a long one, is cut.
pub fn safe_code(code: &str) -> String {
    code.chars()
        .take(64)
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-' || *c == '.')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flow_has_fresh_256_bit_secrets_and_an_s256_challenge() {
        let a = start("corp", "/".into(), "https://h/cb".into());
        let b = start("corp", "/".into(), "https://h/cb".into());
        for s in [&a.state, &a.cookie, &a.flow.verifier, &a.flow.nonce] {
            assert!(well_formed(s), "{s}");
        }
        assert_ne!(a.state, b.state);
        assert_ne!(a.flow.nonce, b.flow.nonce);
        assert_ne!(a.state, a.flow.nonce);
        // RFC 7636 appendix B's example.
        let digest = Sha256::digest(b"dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        assert_eq!(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(bound_to(&a.flow, &a.cookie));
        assert!(!bound_to(&a.flow, &b.cookie));
    }

    #[test]
    fn each_flow_has_its_own_cookie_name() {
        let a = flow_cookie_name("__Host-gatehouse", "s1");
        let b = flow_cookie_name("__Host-gatehouse", "s2");
        assert!(
            a.starts_with("__Host-gatehouse-oidc-") && a.len() == 38,
            "{a}"
        );
        assert_ne!(a, b);
        assert_eq!(a, flow_cookie_name("__Host-gatehouse", "s1"));
    }

    #[test]
    fn provider_error_codes_are_logged_only_as_safe_text() {
        assert_eq!(safe_code("access_denied"), "access_denied");
        assert_eq!(safe_code("a\nb\"c<script>"), "abcscript");
        assert_eq!(safe_code(&"x".repeat(100)).len(), 64);
    }
}
