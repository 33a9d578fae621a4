//! The config file as written: serde structs mirroring SPEC §2, with
//! `deny_unknown_fields` everywhere and the SPEC's defaults. Nothing here is
//! checked beyond its type; `validate/` turns a [`FileConfig`] into a
//! [`super::Config`].

use indexmap::IndexMap;
use serde::Deserialize;

use super::values::{Dur, Flag, Num, Rate, Secret, Size, Text};

fn text(s: &str) -> Text {
    Text(s.to_owned())
}
fn dur(s: &str) -> Dur {
    Dur(super::values::parse_duration(s).expect("built-in default durations are valid"))
}
fn size(s: &str) -> Size {
    Size(super::values::parse_size(s).expect("built-in default sizes are valid"))
}
fn texts(items: &[&str]) -> Vec<Text> {
    items.iter().map(|s| text(s)).collect()
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Listen,
    pub tls: Tls,
    /// Named upstreams, in file order; the first is the default.
    pub upstreams: IndexMap<String, Upstream>,
    #[serde(default)]
    pub server: Server,
    pub auth: Auth,
    #[serde(default)]
    pub identity_headers: IdentityHeaders,
    /// Pass the client's `Authorization` header on (default true).
    #[serde(default = "yes")]
    pub forward_authorization: Flag,
    #[serde(default)]
    pub rate_limits: RateLimits,
    #[serde(default)]
    pub cors: Cors,
    #[serde(default)]
    pub store: Store,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub default_route: DefaultRoute,
    /// What each principal may spend per period (SPEC §11; default none).
    #[serde(default)]
    pub quotas: Vec<Quota>,
}

fn yes() -> Flag {
    Flag(true)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// TLS listener address (required).
    pub https: Text,
    /// Plain listener answering 308 to HTTPS (default `0.0.0.0:8080`; `null` disables).
    #[serde(default = "default_http")]
    pub http: Option<Text>,
    /// Admin listener (default `127.0.0.1:9901`; `null` disables).
    #[serde(default = "default_admin")]
    pub admin: Option<Text>,
}

fn default_http() -> Option<Text> {
    Some(text("0.0.0.0:8080"))
}
fn default_admin() -> Option<Text> {
    Some(text("127.0.0.1:9901"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain (required).
    pub cert: Text,
    /// PEM private key: PKCS#8, PKCS#1 or SEC1 (required).
    pub key: Text,
    /// Lowest TLS version accepted: "1.2" (default) or "1.3".
    #[serde(default = "default_min_version")]
    pub min_version: Text,
    /// The `Strict-Transport-Security` value; "" disables.
    #[serde(default = "default_hsts")]
    pub hsts: Text,
    /// Create a self-signed localhost certificate at `cert`/`key` if absent (default false).
    #[serde(default)]
    pub self_signed_if_missing: Flag,
}

fn default_min_version() -> Text {
    text("1.2")
}
fn default_hsts() -> Text {
    text("max-age=31536000; includeSubDomains")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// One target, `http://host:port`.
    pub url: Option<Text>,
    /// Several targets, round-robin; a failing one is skipped for 10s.
    pub urls: Option<Vec<Text>>,
    /// TCP connect timeout (default 2s); past it the request gets 502.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Dur,
    /// Time to response headers (default 60s); past it 504. Streamed bodies are not cut.
    #[serde(default = "default_response_timeout")]
    pub response_timeout: Dur,
    /// The signed assertion's `aud` for this upstream (default: its name).
    pub audience: Option<Text>,
}

fn default_connect_timeout() -> Dur {
    dur("2s")
}
fn default_response_timeout() -> Dur {
    dur("60s")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Largest request body accepted, in bytes (default 10MiB); 413 above it.
    pub max_request_body: Size,
    /// Time a client has to finish its TLS handshake and send a request head,
    /// HTTP/1.1 and HTTP/2 alike (default 10s).
    pub header_read_timeout: Dur,
    /// Longest gap between two pieces of a request body, proxied or read by
    /// gatehouse itself; 408 and the connection closed above it (default 30s).
    pub body_read_timeout: Dur,
    /// A connection with no request in flight and no traffic this long is closed (default 60s).
    pub idle_timeout: Dur,
    /// Open client connections per listener above which new ones are refused (default 10000).
    pub max_connections: Num,
    /// CIDRs whose `X-Forwarded-For` / `-Proto` are believed (default none).
    pub trusted_proxies: Vec<Text>,
    /// How long in-flight requests may run after SIGTERM (default 30s).
    pub shutdown_grace: Dur,
    /// Largest request head (request line and headers) accepted (default 64KiB); 431 above it.
    pub max_header_size: Size,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            max_request_body: size("10MiB"),
            header_read_timeout: dur("10s"),
            body_read_timeout: dur("30s"),
            idle_timeout: dur("60s"),
            max_connections: Num(10_000),
            trusted_proxies: Vec::new(),
            shutdown_grace: dur("30s"),
            max_header_size: size("64KiB"),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    pub jwt: Jwt,
    /// The users file (default `users.yaml`, next to the config file).
    #[serde(default = "default_users_file")]
    pub users_file: Text,
    #[serde(default)]
    pub endpoints: Endpoints,
    #[serde(default)]
    pub api_keys: ApiKeys,
    #[serde(default)]
    pub login: Login,
    #[serde(default)]
    pub sessions: Sessions,
    /// Sign-in with identity providers (SPEC §10).
    #[serde(default)]
    pub oidc: Oidc,
}

fn default_users_file() -> Text {
    text("users.yaml")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jwt {
    /// Signing algorithm of gatehouse's own tokens (default HS256).
    #[serde(default = "default_algorithm")]
    pub algorithm: Text,
    /// HS*: the key is the UTF-8 bytes of this string.
    pub secret: Option<Secret>,
    /// HS*: a file holding the key; created (32 random bytes, mode 0600) if absent.
    pub secret_file: Option<Text>,
    /// RS/PS/ES/EdDSA: PEM private key used to sign.
    pub private_key: Option<Text>,
    /// RS/PS/ES/EdDSA: PEM public key used to verify.
    pub public_key: Option<Text>,
    #[serde(default = "default_gatehouse")]
    pub issuer: Text,
    #[serde(default = "default_gatehouse")]
    pub audience: Text,
    /// Access token lifetime (default 15m).
    #[serde(default = "default_access_ttl")]
    pub access_ttl: Dur,
    /// Refresh token lifetime (default 7d).
    #[serde(default = "default_refresh_ttl")]
    pub refresh_ttl: Dur,
    /// Clock skew allowed on `exp`/`nbf` (default 30s).
    #[serde(default = "default_leeway")]
    pub leeway: Dur,
    /// Other issuers whose tokens are accepted.
    #[serde(default)]
    pub accept: Vec<AcceptIssuer>,
}

fn default_algorithm() -> Text {
    text("HS256")
}
fn default_gatehouse() -> Text {
    text("gatehouse")
}
fn default_access_ttl() -> Dur {
    dur("15m")
}
fn default_refresh_ttl() -> Dur {
    dur("7d")
}
fn default_leeway() -> Dur {
    dur("30s")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptIssuer {
    pub issuer: Text,
    pub audience: Option<Text>,
    pub jwks_url: Option<Text>,
    pub jwks_file: Option<Text>,
    pub public_key: Option<Text>,
    #[serde(default)]
    pub algorithms: Vec<Text>,
    /// Claim holding roles: a list or a space-separated string (default `roles`).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: Text,
}

fn default_roles_claim() -> Text {
    text("roles")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Endpoints {
    pub login: Text,
    pub refresh: Text,
    pub logout: Text,
    pub me: Text,
    /// The browser sign-in page and form (SPEC §9), with sessions on.
    pub session_login: Text,
}

impl Default for Endpoints {
    fn default() -> Self {
        Endpoints {
            login: text("/login"),
            refresh: text("/auth/refresh"),
            logout: text("/auth/logout"),
            me: text("/auth/me"),
            session_login: text("/auth/login"),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKeys {
    /// Header carrying an API key (default `X-API-Key`).
    pub header: Text,
    /// Query parameter carrying an API key (default none); stripped before forwarding.
    pub query_param: Option<Text>,
    pub keys: Vec<ApiKey>,
}

impl Default for ApiKeys {
    fn default() -> Self {
        ApiKeys {
            header: text("X-API-Key"),
            query_param: None,
            keys: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    pub id: Text,
    /// Hex SHA-256 of the key.
    pub sha256: Text,
    #[serde(default)]
    pub roles: Vec<Text>,
}

/// `auth.sessions` (SPEC §9).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sessions {
    pub enabled: Flag,
    pub cookie: Text,
    pub same_site: Text,
    pub idle_timeout: Dur,
    pub absolute_timeout: Dur,
    pub persistent: Flag,
    pub login_page: Text,
    pub after_logout: Text,
    pub allowed_redirect_hosts: Vec<Text>,
    pub csrf: Csrf,
    /// The name the built-in sign-in page shows (not in SPEC §9: a note in
    /// the README).
    pub app_name: Text,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            enabled: Flag(false),
            cookie: text("__Host-gatehouse"),
            same_site: text("lax"),
            idle_timeout: dur("12h"),
            absolute_timeout: dur("7d"),
            persistent: Flag(true),
            login_page: text("builtin"),
            after_logout: text("/auth/login"),
            allowed_redirect_hosts: Vec::new(),
            csrf: Csrf::default(),
            app_name: text("gatehouse"),
        }
    }
}

/// `auth.oidc` (SPEC §10).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Oidc {
    /// The one callback path of every provider (default `/auth/oidc/callback`).
    pub callback: Text,
    /// The redirect URI, exactly (default: `https://<request host><callback>`).
    pub redirect_url: Option<Text>,
    pub providers: Vec<OidcProvider>,
}

impl Default for Oidc {
    fn default() -> Self {
        Oidc {
            callback: text("/auth/oidc/callback"),
            redirect_url: None,
            providers: Vec::new(),
        }
    }
}

/// One entry of `auth.oidc.providers`; defaults that depend on `type` are
/// applied by validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProvider {
    pub id: Text,
    /// `oidc` (default) or `github`.
    #[serde(rename = "type", default = "default_provider_type")]
    pub kind: Text,
    /// The label of its sign-in button (default: from `id`).
    pub name: Option<Text>,
    pub issuer: Option<Text>,
    pub client_id: Option<Text>,
    pub client_secret: Option<Secret>,
    pub client_secret_file: Option<Text>,
    pub scopes: Option<Vec<Text>>,
    #[serde(default = "default_token_auth")]
    pub token_auth: Text,
    pub ca_file: Option<Text>,
    pub username_claim: Option<Text>,
    #[serde(default)]
    pub allowed_email_domains: Vec<Text>,
    #[serde(default)]
    pub allowed_emails: Vec<Text>,
    #[serde(default)]
    pub required_claims: IndexMap<String, OneOrMany>,
    pub roles_claim: Option<Text>,
    #[serde(default)]
    pub role_map: IndexMap<String, Text>,
    #[serde(default)]
    pub default_roles: Vec<Text>,
    /// GitHub: endpoints (GitHub Enterprise, tests).
    pub auth_url: Option<Text>,
    pub token_url: Option<Text>,
    pub api_url: Option<Text>,
    #[serde(default)]
    pub allowed_orgs: Vec<Text>,
    #[serde(default)]
    pub allowed_users: Vec<Text>,
}

/// A value or a list of values (`required_claims`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(Text),
    Many(Vec<Text>),
}

fn default_provider_type() -> Text {
    text("oidc")
}

fn default_token_auth() -> Text {
    text("client_secret_basic")
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Csrf {
    /// Origins allowed to send cookie-borne unsafe requests, besides this
    /// origin and CORS origins with credentials.
    pub trusted_origins: Vec<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Login {
    pub max_failures: Num,
    pub failure_window: Dur,
    pub lockout: Dur,
}

impl Default for Login {
    fn default() -> Self {
        Login {
            max_failures: Num(5),
            failure_window: dur("15m"),
            lockout: dur("15m"),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityHeaders {
    pub user: Text,
    pub roles: Text,
    pub method: Text,
    /// A verified email (OIDC and GitHub sign-in, SPEC §10).
    pub email: Text,
    pub request_id: Text,
    /// The signed identity assertion (SPEC §12); absent: none is sent.
    pub assertion: Option<Assertion>,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        IdentityHeaders {
            user: text("X-Auth-User"),
            roles: text("X-Auth-Roles"),
            method: text("X-Auth-Method"),
            email: text("X-Auth-Email"),
            request_id: text("X-Request-Id"),
            assertion: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Assertion {
    pub header: Text,
    /// ES256 | EdDSA | RS256 (default ES256).
    pub algorithm: Text,
    /// PKCS#8 PEM; created (mode 0600) if absent.
    pub key_file: Text,
    /// Published after a rotation, never used to sign.
    pub previous_key_files: Vec<Text>,
    /// Default: `https://<the TLS certificate's first name>`.
    pub issuer: Option<Text>,
    pub ttl: Dur,
}

impl Default for Assertion {
    fn default() -> Self {
        Assertion {
            header: text("X-Gatehouse-Assertion"),
            algorithm: text("ES256"),
            key_file: text("../data/assertion.pem"),
            previous_key_files: Vec::new(),
            issuer: None,
            ttl: dur("60s"),
        }
    }
}

/// `{ rate: 100/s, burst: 200 }`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateSpec {
    pub rate: Rate,
    /// Requests allowed at once (default: the rate's count).
    pub burst: Option<Num>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    /// Every request, per client IP (default 100/s, burst 200; `null` disables).
    #[serde(default = "default_per_ip")]
    pub per_ip: Option<RateSpec>,
    /// `POST` to the login endpoint, per client IP (default 5/min, burst 5; `null` disables).
    #[serde(default = "default_login_rate")]
    pub login: Option<RateSpec>,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            per_ip: default_per_ip(),
            login: default_login_rate(),
        }
    }
}

fn rate_spec(rate: &str, burst: u64) -> Option<RateSpec> {
    Some(RateSpec {
        rate: super::values::parse_rate(rate).expect("built-in default rates are valid"),
        burst: Some(Num(burst)),
    })
}
fn default_per_ip() -> Option<RateSpec> {
    rate_spec("100/s", 200)
}
fn default_login_rate() -> Option<RateSpec> {
    rate_spec("5/min", 5)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cors {
    pub allowed_origins: Vec<Text>,
    pub allowed_methods: Vec<Text>,
    pub allowed_headers: Vec<Text>,
    pub expose_headers: Vec<Text>,
    pub allow_credentials: Flag,
    pub max_age: Dur,
}

impl Default for Cors {
    fn default() -> Self {
        Cors {
            allowed_origins: Vec::new(),
            allowed_methods: texts(&["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]),
            allowed_headers: texts(&["Authorization", "Content-Type", "X-API-Key"]),
            expose_headers: Vec::new(),
            allow_credentials: Flag(false),
            max_age: dur("10m"),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Store {
    /// `embedded` (default) or `redis`.
    pub backend: Text,
    /// Embedded store file (default `../data/gatehouse.db`).
    pub path: Text,
    /// Redis URL, for `backend: redis`.
    pub url: Option<Text>,
    /// Redis Sentinel `host:port` list, for `backend: redis` (instead of `url`).
    pub sentinels: Option<Vec<Text>>,
    /// The name the sentinels monitor the master under.
    pub master_name: Option<Text>,
    /// With `sentinels`: the password of the master and its replicas.
    pub password: Option<Secret>,
    /// With `sentinels`: the sentinels' own password, if they have one.
    pub sentinel_password: Option<Secret>,
    pub key_prefix: Text,
    /// Redis down: how long proxied requests trust the last synced revocations (default 30s).
    pub max_stale: Dur,
}

/// By hand: the Redis URL may hold a password (the passwords are
/// [`Secret`]s and print as `***` anyway).
impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .field("path", &self.path)
            .field("url", &self.url.as_ref().map(|_| "***"))
            .field("sentinels", &self.sentinels)
            .field("master_name", &self.master_name)
            .field("password", &self.password)
            .field("sentinel_password", &self.sentinel_password)
            .field("key_prefix", &self.key_prefix)
            .field("max_stale", &self.max_stale)
            .finish()
    }
}

impl Default for Store {
    fn default() -> Self {
        Store {
            backend: text("embedded"),
            path: text("../data/gatehouse.db"),
            url: None,
            sentinels: None,
            master_name: None,
            password: None,
            sentinel_password: None,
            key_prefix: text("gatehouse:"),
            max_stale: dur("30s"),
        }
    }
}

/// `auth:` of a route: one method name or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum AuthField {
    One(Text),
    Any(Vec<Text>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Name used in logs and metrics (default: the pattern).
    pub name: Option<Text>,
    /// `/exact`, `/prefix/**`, `/a/*/b`.
    pub path: Option<Text>,
    /// Anchored regular expression over the normalized path.
    pub regex: Option<Text>,
    /// Methods matched (default all).
    pub methods: Option<Vec<Text>>,
    /// Host matched, case-insensitive (default any).
    pub host: Option<Text>,
    /// `none`, `jwt`, `api_key`, `session`, or a list (any one suffices). Default `jwt`.
    pub auth: Option<AuthField>,
    /// With `session`: `auto` (default), `json` or `redirect` (SPEC §9).
    pub unauthenticated: Option<Text>,
    /// The principal needs at least one of these roles.
    #[serde(default)]
    pub roles: Vec<Text>,
    pub rate_limit: Option<RateSpec>,
    /// Upstream name (default: the first upstream).
    pub upstream: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DefaultRoute {
    /// `jwt` (default), `api_key`, `session`, `none`, a list, or `deny` (404).
    pub auth: AuthField,
    /// With `session`: `auto` (default), `json` or `redirect` (SPEC §9).
    pub unauthenticated: Option<Text>,
    pub roles: Vec<Text>,
    pub rate_limit: Option<RateSpec>,
    pub upstream: Option<Text>,
}

impl Default for DefaultRoute {
    fn default() -> Self {
        DefaultRoute {
            auth: AuthField::One(text("jwt")),
            unauthenticated: None,
            roles: Vec::new(),
            rate_limit: None,
            upstream: None,
        }
    }
}

/// One entry of `quotas:` (SPEC §11). The token-only keys are options so
/// that validation can tell one written on a `requests` quota.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    pub name: Text,
    /// Route names (`default` for `default_route`).
    #[serde(default)]
    pub routes: Vec<Text>,
    /// `requests` (default) or `tokens`.
    #[serde(default = "default_quota_unit")]
    pub unit: Text,
    /// Per principal per period (required).
    pub limit: Option<Num>,
    /// `day` (default), `week`, `month` or a duration.
    #[serde(default = "default_quota_period")]
    pub period: Text,
    #[serde(default)]
    pub roles: Vec<Text>,
    #[serde(default)]
    pub overrides: Vec<QuotaOverride>,
    /// tokens: `openai` (default) or `header`.
    pub usage: Option<Text>,
    /// tokens: the header a backend reports usage in (default `X-Gatehouse-Usage`).
    pub usage_header: Option<Text>,
    /// tokens: debited when a response ends with no usage seen (default 0).
    pub fallback_tokens: Option<Num>,
}

fn default_quota_unit() -> Text {
    text("requests")
}
fn default_quota_period() -> Text {
    text("day")
}

/// `{ principal: alice, limit: 1000 }` or `limit: unlimited`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaOverride {
    pub principal: Text,
    pub limit: Text,
}
