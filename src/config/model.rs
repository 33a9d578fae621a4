//! The checked configuration gatehouse runs on: every type and field of
//! [`Config`], each with its unit and its default (SPEC §2).
//!
//! Nothing here parses or checks anything. `file.rs` reads the YAML,
//! `validate/` turns it into these types, and the rest of gatehouse only
//! ever sees a `Config` whose rules already hold: addresses are socket
//! addresses, header names are [`HeaderName`]s, paths are resolved against
//! the config file's folder, upstreams and routes are indexes and patterns.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, Uri};
use ipnet::IpNet;

use super::values::{Rate, Secret};

/// The validated configuration gatehouse runs on.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this config came from; relative paths in it resolve against
    /// its folder.
    pub path: PathBuf,
    /// `listen:`, the addresses gatehouse binds.
    pub listen: Listen,
    /// `tls:`, the HTTPS listener's certificate and policy.
    pub tls: Tls,
    /// `upstreams:`, in file order; `upstreams[0]` is the default (at least one).
    pub upstreams: Vec<Upstream>,
    /// `server:`, limits and timeouts of client connections.
    pub server: Server,
    /// `auth:`, how credentials are issued and checked.
    pub auth: Auth,
    /// `identity_headers:`, the headers that carry the principal to a backend.
    pub identity: IdentityHeaders,
    /// `forward_authorization`: pass the client's `Authorization` header on
    /// (default true; false strips it).
    pub forward_authorization: bool,
    /// `rate_limits:`, the limits every request and every login attempt meet.
    pub rate_limits: RateLimits,
    /// `cors:`, answered by gatehouse alone.
    pub cors: Cors,
    /// `store:`, where revocations, refresh families and counters live.
    pub store: Store,
    /// `routes:`, in file order: first match wins (default none).
    pub routes: Vec<Route>,
    /// `default_route:`, what a request matching no route gets; its name is
    /// `default` (default `auth: jwt`).
    pub default_route: Route,
    /// `quotas:`, in file order: the 429 names the first spent one (default
    /// none).
    pub quotas: Vec<Quota>,
}

/// `listen:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// `listen.https`: the TLS listener, `IP:PORT` (required).
    pub https: SocketAddr,
    /// `listen.http`: the plain listener answering 308 to HTTPS (default
    /// `0.0.0.0:8080`; `None` when set to `null`).
    pub http: Option<SocketAddr>,
    /// `listen.admin`: plain HTTP `/metrics`, `/healthz`, `/readyz` (default
    /// `127.0.0.1:9901`; `None` when set to `null`).
    pub admin: Option<SocketAddr>,
}

/// The lowest TLS version the HTTPS listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// `"1.2"` (the default).
    V1_2,
    /// `"1.3"`.
    V1_3,
}

/// `tls:`.
#[derive(Debug, Clone)]
pub struct Tls {
    /// `tls.cert`: the PEM certificate chain (required).
    pub cert: PathBuf,
    /// `tls.key`: the PEM private key, PKCS#8, PKCS#1 or SEC1 (required).
    pub key: PathBuf,
    /// `tls.min_version` (default `"1.2"`).
    pub min_version: TlsVersion,
    /// `tls.hsts`: the `Strict-Transport-Security` value sent on every HTTPS
    /// response (default `max-age=31536000; includeSubDomains`); `None` when
    /// disabled with `hsts: ""`.
    pub hsts: Option<HeaderValue>,
    /// `tls.self_signed_if_missing`: create a localhost certificate and key
    /// at `cert`/`key` when absent, for development (default false).
    pub self_signed_if_missing: bool,
}

/// One entry of `upstreams:`.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The entry's key, used by routes' `upstream:`.
    pub name: String,
    /// `url` or `urls`: `http://host:port` targets, scheme and authority
    /// only, used round-robin (at least one; no default).
    pub targets: Vec<Uri>,
    /// `connect_timeout`: TCP connect to a target; past it 502 (default 2s).
    pub connect_timeout: Duration,
    /// `response_timeout`: from the end of the request body to the response
    /// headers; past it 504. Streamed bodies are not cut (default 60s).
    pub response_timeout: Duration,
    /// `audience`: the signed assertion's `aud` for requests to this
    /// upstream (default: the upstream's name).
    pub audience: String,
}

/// `server:`.
#[derive(Debug, Clone)]
pub struct Server {
    /// `max_request_body`: the largest request body, in bytes; 413 above it
    /// (default 10MiB).
    pub max_request_body: u64,
    /// `header_read_timeout`: time to finish the TLS handshake and send a
    /// complete request head, HTTP/1.1 and HTTP/2 alike (default 10s).
    pub header_read_timeout: Duration,
    /// `body_read_timeout`: the longest gap between two pieces of a request
    /// body; 408 and the connection closed above it (default 30s).
    pub body_read_timeout: Duration,
    /// `idle_timeout`: a connection with no request in flight and no bytes
    /// either way this long is closed, tunnels included (default 60s).
    pub idle_timeout: Duration,
    /// `max_connections`: open client connections per listener above which
    /// new ones are refused (default 10000; at least 1).
    pub max_connections: usize,
    /// `trusted_proxies`: networks whose `X-Forwarded-For` / `-Proto` are
    /// believed; a bare IP is a /32 or /128 (default none).
    pub trusted_proxies: Vec<IpNet>,
    /// `shutdown_grace`: how long in-flight requests may run after SIGTERM
    /// (default 30s).
    pub shutdown_grace: Duration,
    /// `max_header_size`: the largest request head (request line and
    /// headers), in bytes; 431 above it (default 64KiB; at least 8KiB).
    pub max_header_size: usize,
}

/// The key gatehouse signs and checks its own tokens with (`auth.jwt`).
#[derive(Debug, Clone)]
pub enum JwtKey {
    /// `secret`, HS*: the UTF-8 bytes of the string (at least 32 bytes).
    Secret(Secret),
    /// `secret_file`, HS*: a file holding the secret, created (32 random
    /// bytes, base64url, mode 0600) when absent.
    SecretFile(PathBuf),
    /// `private_key` and `public_key`, asymmetric algorithms: PEM files.
    Pem {
        /// The PEM private key tokens are signed with.
        private: PathBuf,
        /// The PEM public key tokens are verified with.
        public: PathBuf,
    },
}

/// `auth.jwt:` (required: it holds the key).
#[derive(Debug, Clone)]
pub struct Jwt {
    /// `algorithm` of gatehouse's own tokens, the only one accepted for them
    /// (default HS256).
    pub algorithm: jsonwebtoken::Algorithm,
    /// `secret`, `secret_file`, or `private_key` + `public_key` (no default).
    pub key: JwtKey,
    /// `issuer`: the `iss` of gatehouse's tokens (default `gatehouse`).
    pub issuer: String,
    /// `audience`: the `aud` of gatehouse's tokens (default `gatehouse`).
    pub audience: String,
    /// `access_ttl`: access token lifetime (default 15m).
    pub access_ttl: Duration,
    /// `refresh_ttl`: refresh token lifetime (default 7d).
    pub refresh_ttl: Duration,
    /// `leeway`: clock skew allowed on `exp` and `nbf` (default 30s).
    pub leeway: Duration,
    /// `accept`: other issuers whose tokens are accepted (default none).
    pub accept: Vec<AcceptIssuer>,
}

/// Where an external issuer's public keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// `jwks_url`: an `https://` JWKS document.
    JwksUrl(Uri),
    /// `jwks_file`: a JWKS document on disk.
    JwksFile(PathBuf),
    /// `public_key`: one PEM public key.
    PublicKey(PathBuf),
}

/// One entry of `auth.jwt.accept`.
#[derive(Debug, Clone)]
pub struct AcceptIssuer {
    /// `issuer`: the `iss` its tokens carry (required).
    pub issuer: String,
    /// `audience`: the `aud` required of its tokens (default: not checked).
    pub audience: Option<String>,
    /// Exactly one of `jwks_url`, `jwks_file` or `public_key` (required).
    pub keys: KeySource,
    /// `algorithms` it signs with, public-key ones only (required, non-empty).
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// `roles_claim`: the claim holding roles, a list or a space-separated
    /// string (default `roles`).
    pub roles_claim: String,
}

/// `auth.endpoints:`, paths gatehouse answers itself, before `routes`.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// `login`: `POST` username and password for tokens (default `/login`).
    pub login: String,
    /// `refresh`: a refresh token for new tokens (default `/auth/refresh`).
    pub refresh: String,
    /// `logout`: revoke an access token and its family (default `/auth/logout`).
    pub logout: String,
    /// `me`: who the credentials belong to (default `/auth/me`).
    pub me: String,
    /// `session_login`: the browser sign-in page and form (default
    /// `/auth/login`; an endpoint only with sessions on).
    pub session_login: String,
}

/// `auth.sessions.same_site`: the cookie's `SameSite` (`none` is refused:
/// every cross-site request would carry the session).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    Strict,
}

impl SameSite {
    /// The attribute's value.
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
        }
    }
}

/// `auth.sessions.login_page`: where a browser signs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginPage {
    /// `builtin`: gatehouse's own page at `endpoints.session_login`.
    Builtin,
    /// A path the app serves itself; it gets `?rd=` and posts the form to
    /// `endpoints.session_login`.
    App(String),
}

/// `auth.sessions:`, browser sign-in with a cookie (SPEC §9).
#[derive(Debug, Clone)]
pub struct Sessions {
    /// `enabled` (default false): the cookie, the sign-in page and the
    /// `session` route method.
    pub enabled: bool,
    /// `cookie`: the cookie's name (default `__Host-gatehouse`; must start
    /// with `__Host-`, which binds it to this host, `Secure` and `Path=/`).
    pub cookie: String,
    /// `same_site` (default `lax`).
    pub same_site: SameSite,
    /// `idle_timeout`: a session unused this long ends (default 12h; the
    /// record is touched at most once a minute).
    pub idle_timeout: Duration,
    /// `absolute_timeout`: a session ends this long after sign-in, used or
    /// not (default 7d).
    pub absolute_timeout: Duration,
    /// `persistent` (default true): the cookie has `Max-Age` =
    /// `absolute_timeout`; false: it ends with the browser.
    pub persistent: bool,
    /// `login_page` (default `builtin`).
    pub login_page: LoginPage,
    /// `after_logout`: where a browser goes after signing out (default
    /// `/auth/login`); a path.
    pub after_logout: String,
    /// `allowed_redirect_hosts`: hosts (`name` or `name:port`, lowercase) an
    /// absolute `https` `rd` may go to (default none: paths only).
    pub allowed_redirect_hosts: Vec<String>,
    /// `csrf.trusted_origins` (default none).
    pub trusted_origins: Vec<Origin>,
    /// `app_name`: the name on the built-in sign-in page (default `gatehouse`).
    pub app_name: String,
}

/// One entry of `auth.api_keys.keys`.
#[derive(Debug, Clone)]
pub struct ApiKey {
    /// `id`: the principal, sent as the user identity header (required,
    /// non-empty, unique, no commas or control characters).
    pub id: String,
    /// `sha256`: the SHA-256 of the key, from 64 hex digits (required).
    pub sha256: [u8; 32],
    /// `roles` the key carries (default none).
    pub roles: Vec<String>,
}

/// `auth.api_keys:`.
#[derive(Debug, Clone)]
pub struct ApiKeys {
    /// `header` carrying a key (default `X-API-Key`).
    pub header: HeaderName,
    /// `query_param` carrying a key, stripped before forwarding (default
    /// none: off).
    pub query_param: Option<String>,
    /// `keys` (default none).
    pub keys: Vec<ApiKey>,
}

/// `auth.login:`, the per-username lockout.
#[derive(Debug, Clone)]
pub struct Login {
    /// `max_failures`: failed logins per username within `failure_window`
    /// that lock it (default 5; at least 1).
    pub max_failures: u32,
    /// `failure_window`: the window failures are counted in (default 15m).
    pub failure_window: Duration,
    /// `lockout`: how long a username stays locked (default 15m).
    pub lockout: Duration,
}

/// `auth:`.
#[derive(Debug, Clone)]
pub struct Auth {
    /// `jwt` (required).
    pub jwt: Jwt,
    /// `users_file`: the users and password hashes of SPEC §4 (default
    /// `users.yaml`, next to the config file).
    pub users_file: PathBuf,
    /// `endpoints`.
    pub endpoints: Endpoints,
    /// `api_keys`.
    pub api_keys: ApiKeys,
    /// `login`.
    pub login: Login,
    /// `sessions`.
    pub sessions: Sessions,
    /// `oidc`: sign-in with identity providers (SPEC §10).
    pub oidc: Oidc,
}

/// `auth.oidc:` (SPEC §10).
#[derive(Debug, Clone)]
pub struct Oidc {
    /// `callback`: the path every provider sends the browser back to
    /// (default `/auth/oidc/callback`).
    pub callback: String,
    /// `redirect_url`: the redirect URI, exactly (default none: `https://`
    /// + the request's host and port + `callback`).
    pub redirect_url: Option<String>,
    /// `providers`, in file order (default none).
    pub providers: Vec<OidcProvider>,
}

/// What kind of provider, and where it is.
// Built once per config load, a few per process: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderKind {
    /// `type: oidc`: OpenID Connect, found by discovery at `issuer` (an
    /// `https` URL, compared exactly with the discovered one).
    Oidc { issuer: String },
    /// `type: github`: OAuth2 and GitHub's REST API (`auth_url`,
    /// `token_url`, `api_url`; defaults github.com's).
    Github {
        auth_url: Uri,
        token_url: Uri,
        api_url: Uri,
    },
}

/// How the client authenticates at the token endpoint (`token_auth`,
/// RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAuth {
    /// `client_secret_basic` (the default): HTTP Basic.
    Basic,
    /// `client_secret_post`: in the form body.
    Post,
}

/// One entry of `auth.oidc.providers`.
#[derive(Debug, Clone)]
pub struct OidcProvider {
    /// `id`: `[a-z0-9-]+`, unique; in URLs and metrics (required).
    pub id: String,
    /// `name`: the sign-in button's label (default: `Google`, `GitHub`, … for
    /// well-known ids, else the id).
    pub name: String,
    /// `type` and its endpoints.
    pub kind: ProviderKind,
    /// `client_id` (required).
    pub client_id: String,
    /// `client_secret`, or the trimmed text of `client_secret_file`, read
    /// at load (required).
    pub client_secret: Secret,
    /// `scopes` (default `[openid, email, profile]`; GitHub `[read:user,
    /// user:email]`, plus `read:org` with `allowed_orgs`).
    pub scopes: Vec<String>,
    /// `token_auth` (default `client_secret_basic`).
    pub token_auth: TokenAuth,
    /// `ca_file`: a PEM CA certificate trusted for this provider besides the
    /// system's roots (default none). Never a way to turn checking off.
    pub ca_file: Option<PathBuf>,
    /// The certificates of `ca_file`, read at load.
    pub ca_certs: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// `username_claim`: the claim that becomes the user (default `email`;
    /// GitHub: always the login).
    pub username_claim: String,
    /// `allowed_email_domains`, lowercase (default none).
    pub allowed_email_domains: Vec<String>,
    /// `allowed_emails`, lowercase (default none; with no domains either,
    /// any email passes).
    pub allowed_emails: Vec<String>,
    /// `required_claims`: claim → accepted values (default none).
    pub required_claims: Vec<(String, Vec<String>)>,
    /// `roles_claim`, split on `.` (default `groups`).
    pub roles_claim: Vec<String>,
    /// `role_map`: claim value → gatehouse role (default none).
    pub role_map: Vec<(String, String)>,
    /// `default_roles`: always granted (default none).
    pub default_roles: Vec<String>,
    /// `allowed_orgs` (GitHub; default none: any).
    pub allowed_orgs: Vec<String>,
    /// `allowed_users` (GitHub; default none: any).
    pub allowed_users: Vec<String>,
}

/// `identity_headers:`, set on forwarded requests; client-sent copies are
/// removed.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    /// `user`: the principal (default `X-Auth-User`).
    pub user: HeaderName,
    /// `roles`: comma-separated (default `X-Auth-Roles`).
    pub roles: HeaderName,
    /// `method`: `jwt`, `api_key` or `session` (default `X-Auth-Method`).
    pub method: HeaderName,
    /// `email`: a verified email of a session signed in through an
    /// identity provider (default `X-Auth-Email`).
    pub email: HeaderName,
    /// `request_id`: kept when the client's is well-formed, else generated
    /// (default `X-Request-Id`).
    pub request_id: HeaderName,
    /// `assertion`: a signed identity assertion on every authenticated
    /// forwarded request (SPEC §12); `None` (the default) sends none.
    pub assertion: Option<Assertion>,
}

/// `identity_headers.assertion:` (SPEC §12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    /// `header` (default `X-Gatehouse-Assertion`); a client-sent copy is
    /// always removed.
    pub header: HeaderName,
    /// `algorithm` (default ES256).
    pub algorithm: AssertionAlgorithm,
    /// `key_file`: the signing key, PKCS#8 PEM, created (mode 0600) when
    /// absent (default `../data/assertion.pem`, beside the config).
    pub key_file: PathBuf,
    /// `previous_key_files`: keys still published after a rotation, never
    /// used to sign (default none).
    pub previous_key_files: Vec<PathBuf>,
    /// `issuer`: the `iss` claim (default `https://<the TLS certificate's
    /// first name>`, read when the config is loaded).
    pub issuer: Option<String>,
    /// `ttl`: `exp` − `iat` (default 60s; 1s to 1h).
    pub ttl: Duration,
}

/// The assertion's signing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionAlgorithm {
    Es256,
    EdDsa,
    Rs256,
}

impl AssertionAlgorithm {
    /// The JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            AssertionAlgorithm::Es256 => "ES256",
            AssertionAlgorithm::EdDsa => "EdDSA",
            AssertionAlgorithm::Rs256 => "RS256",
        }
    }
}

/// A token bucket, `{ rate: N/s, burst: N }`: `rate.count` per `rate.per`,
/// up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// `rate`: `N/s`, `N/min` or `N/h` (required, N at least 1).
    pub rate: Rate,
    /// `burst`: requests allowed at once (default: the rate's N; 1 to
    /// 4294967295).
    pub burst: u32,
}

/// `rate_limits:`, per client IP (IPv6 per /64).
#[derive(Debug, Clone)]
pub struct RateLimits {
    /// `per_ip`: every request (default 100/s, burst 200; `None` when `null`).
    pub per_ip: Option<Limit>,
    /// `login`: every `POST` to a login endpoint (default 5/min, burst 5;
    /// `None` when `null`).
    pub login: Option<Limit>,
}

/// An allowed CORS origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Any origin (`"*"`).
    Any,
    /// `scheme://host[:port]`: scheme and host lowercase, host without
    /// trailing dot, `port` the effective one (the scheme's default when
    /// none is written).
    Exact {
        /// `http` or `https`.
        scheme: String,
        /// The lowercase host.
        host: String,
        /// The effective port.
        port: Option<u16>,
    },
    /// `scheme://*.suffix[:port]`: one or more labels before `.suffix`, never
    /// the apex; `port` as for `Exact`.
    Subdomains {
        /// `http` or `https`.
        scheme: String,
        /// The lowercase domain the labels stand before.
        suffix: String,
        /// The effective port.
        port: Option<u16>,
    },
}

impl Origin {
    /// Whether a request's `origin` is this configured one: scheme and host
    /// case-insensitively, the effective port, and for `*.suffix` at least
    /// one label before the suffix. `"*"` matches every origin (CSRF's
    /// trusted list never holds it).
    pub fn matches(&self, origin: &crate::host::Origin<'_>) -> bool {
        match self {
            Origin::Any => true,
            Origin::Exact { scheme, host, port } => {
                scheme.eq_ignore_ascii_case(origin.scheme)
                    && *port == origin.effective_port()
                    && origin.host.name_eq(host)
            }
            Origin::Subdomains {
                scheme,
                suffix,
                port,
            } => {
                let name = origin.host.name().as_bytes();
                let suffix = suffix.as_bytes();
                scheme.eq_ignore_ascii_case(origin.scheme)
                    && *port == origin.effective_port()
                    && name.len() > suffix.len() + 1
                    && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                    && name[name.len() - suffix.len() - 1] == b'.'
            }
        }
    }
}

/// `cors:`.
#[derive(Debug, Clone)]
pub struct Cors {
    /// `allowed_origins` (default none: every preflight is answered 403).
    pub allowed_origins: Vec<Origin>,
    /// `allowed_methods` (default GET, HEAD, POST, PUT, PATCH, DELETE).
    pub allowed_methods: Vec<Method>,
    /// `allowed_headers` (default Authorization, Content-Type, X-API-Key).
    pub allowed_headers: Vec<HeaderName>,
    /// `expose_headers` (default none).
    pub expose_headers: Vec<HeaderName>,
    /// `allow_credentials` (default false; never with a `"*"` origin).
    pub allow_credentials: bool,
    /// `max_age`: how long a browser may cache a preflight answer (default 10m).
    pub max_age: Duration,
}

/// `store.backend` and the settings of the chosen one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreBackend {
    /// `embedded` (the default): one file on this host.
    Embedded {
        /// `path`: the store file; its folder is created if missing
        /// (default `../data/gatehouse.db`).
        path: PathBuf,
    },
    /// `redis`: shared by replicas, rate-limit buckets included.
    Redis {
        /// Where the master is: `url`, or `sentinels` and `master_name`
        /// (one of them is required for this backend).
        server: RedisServer,
        /// `key_prefix` of every key gatehouse writes (default `gatehouse:`).
        key_prefix: String,
    },
}

/// How the Redis store finds its master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisServer {
    /// One server.
    Url {
        /// `url`: `redis://` (TLS, `rediss://`, is refused for now). It may hold a password, so it
        /// prints as `***`; the store reads it with [`Secret::expose`].
        url: Secret,
    },
    /// `sentinels` + `master_name`: the master is whichever server the
    /// Redis Sentinels name, followed through failovers.
    Sentinel(Sentinels),
}

/// `store.sentinels` and the keys that go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentinels {
    /// `sentinels`: `host:port` of each Sentinel, in the order they are asked
    /// (at least one; run three or more so that they can agree on a failover).
    pub sentinels: Vec<(String, u16)>,
    /// `master_name`: the name the sentinels monitor the master under
    /// (required).
    pub master_name: String,
    /// `password`: the master's and the replicas' (`requirepass`), if they
    /// have one; prints as `***`.
    pub password: Option<Secret>,
    /// `sentinel_password`: the sentinels' own (their `requirepass`), if they
    /// have one; prints as `***`.
    pub sentinel_password: Option<Secret>,
}

/// `store:`. Compared as a whole on reload: a change takes effect at the
/// next restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    /// `backend` (default `embedded`).
    pub backend: StoreBackend,
    /// `max_stale`: with Redis down, how long proxied requests trust the last
    /// synced revocations before failing closed (default 30s; at least 1s).
    pub max_stale: Duration,
}

/// How a route authenticates (`auth:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAuth {
    /// `none`: no credentials needed (identity headers are still stripped).
    None,
    /// Any one of these methods (default `[jwt]`).
    Any(Vec<AuthMethod>),
    /// `deny`: answer 404 (only for `default_route`).
    Deny,
}

/// A credential a route accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// `jwt`: a bearer token.
    Jwt,
    /// `api_key`: a key in the API-key header or query parameter.
    ApiKey,
    /// `session`: the browser session cookie (SPEC §9).
    Session,
}

/// What a route with `session` answers a request without credentials
/// (`unauthenticated:`, SPEC §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unauthenticated {
    /// A browser navigation (GET/HEAD) is redirected to the sign-in page,
    /// everything else gets the 401 JSON with `login_url`.
    #[default]
    Auto,
    /// Always the 401 JSON.
    Json,
    /// GET and HEAD are always redirected.
    Redirect,
}

/// A route's path pattern, already checked to be in normalized form.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// `/exact`
    Exact(String),
    /// `/prefix/**`: `/prefix` itself and everything below it. Holds `/prefix`.
    Prefix(String),
    /// `/users/*/profile`: `*` matches exactly one non-empty segment; an
    /// optional trailing `/**` matches everything below.
    Segments {
        /// The segments after the leading `/`, trailing `/**` excluded.
        segments: Vec<Segment>,
        /// Whether a trailing `/**` was written.
        rest: bool,
    },
    /// `regex:`, anchored at both ends.
    Regex(regex::Regex),
    /// The default route: matches everything.
    Any,
}

/// One segment of a [`Pattern::Segments`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Matches this text exactly.
    Literal(String),
    /// `*`: matches any one non-empty segment.
    Wildcard,
}

/// One entry of `routes:`, or `default_route:`.
#[derive(Debug, Clone)]
pub struct Route {
    /// `name`, used in logs and metrics (default: the pattern; `default`
    /// for `default_route`, and reserved for it).
    pub name: Arc<str>,
    /// `path` or `regex` (exactly one; [`Pattern::Any`] for `default_route`).
    pub pattern: Pattern,
    /// `methods` matched; `None` matches every method (the default).
    pub methods: Option<Vec<Method>>,
    /// `host` matched: lowercase, without port or trailing dot; `None`
    /// matches every host (the default).
    pub host: Option<String>,
    /// `auth` (default `jwt`).
    pub auth: RouteAuth,
    /// `unauthenticated` (default `auto`; only with `session`).
    pub unauthenticated: Unauthenticated,
    /// `roles`: the principal needs at least one (default none: any
    /// authenticated principal).
    pub roles: Vec<String>,
    /// `rate_limit`: per IP, and per principal once known (default none).
    pub rate_limit: Option<Limit>,
    /// `upstream`: an index into [`Config::upstreams`] (default 0, the first).
    pub upstream: usize,
}

/// What a quota counts (`unit:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaUnit {
    /// `requests` (the default): one per admitted request.
    Requests,
    /// `tokens`: the LLM tokens a response reports.
    Tokens,
}

impl QuotaUnit {
    /// The `unit` of `/auth/me`, the CLI and the `unit` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaUnit::Requests => "requests",
            QuotaUnit::Tokens => "tokens",
        }
    }
}

/// The period a quota's count starts over after (`period:`), in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// `day` (the default): from 00:00 UTC.
    Day,
    /// `week`: from Monday 00:00 UTC (ISO weeks).
    Week,
    /// `month`: from the 1st, 00:00 UTC.
    Month,
    /// A duration (`6h`), in whole seconds: fixed windows aligned to the
    /// Unix epoch.
    Every(u64),
}

/// Where a tokens quota reads a response's usage (`usage:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageSource {
    /// `openai` (the default): the `usage_header` when the backend sends it,
    /// else `usage.total_tokens` of a JSON body or of the last SSE `data:`
    /// event that has a `usage`.
    OpenAi,
    /// `header`: the `usage_header` only.
    Header,
}

/// One entry of a quota's `overrides:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaOverride {
    /// `principal`: a `sub`, an API-key id, or a client IP (`auth: none`;
    /// an IPv6 client as its /64, `2001:db8:1:2::/64`).
    pub principal: String,
    /// `limit`: at least 1; `None` for `unlimited`.
    pub limit: Option<u64>,
}

/// One entry of `quotas:` (SPEC §11).
#[derive(Debug, Clone)]
pub struct Quota {
    /// `name`: unique; in 429 bodies, metrics and `/auth/me` (required).
    pub name: Arc<str>,
    /// `routes`: the names of the routes it counts on (`default` for
    /// `default_route`; at least one, each naming a route).
    pub routes: Vec<Arc<str>>,
    /// `unit` (default `requests`).
    pub unit: QuotaUnit,
    /// `limit`: per principal per period, at least 1 (required).
    pub limit: u64,
    /// `period` (default `day`).
    pub period: Period,
    /// `roles`: only principals holding one of these count (default none:
    /// every principal; a client IP holds no role).
    pub roles: Vec<String>,
    /// `overrides`: another limit for some principals (default none; one
    /// entry per principal).
    pub overrides: Vec<QuotaOverride>,
    /// `usage` (tokens only; default `openai`).
    pub usage: UsageSource,
    /// `usage_header` (tokens only; default `X-Gatehouse-Usage`): an integer
    /// the backend may set; always removed before the client.
    pub usage_header: HeaderName,
    /// `fallback_tokens` (tokens only; default 0): debited when a response
    /// ends, or its client goes away, with no usage seen.
    pub fallback_tokens: u64,
}

impl Quota {
    /// The limit for `principal`: its override's, else the quota's; `None`
    /// is unlimited.
    pub fn limit_for(&self, principal: &str) -> Option<u64> {
        match self.overrides.iter().find(|o| o.principal == principal) {
            Some(o) => o.limit,
            None => Some(self.limit),
        }
    }

    /// Whether a principal holding `roles` is counted by this quota.
    pub fn applies_to(&self, roles: &[String]) -> bool {
        self.roles.is_empty() || self.roles.iter().any(|w| roles.iter().any(|r| r == w))
    }
}
