//! Cross-field checks: [`file::FileConfig`](super::file::FileConfig) → [`Config`].
//!
//! Everything a request will rely on is resolved here, once: addresses,
//! header names, methods, route patterns, upstream targets, paths relative to
//! the config file. A rule that cannot hold (credentials with a `*` origin, an
//! RS256 key without a PEM) is an error naming its key before any port is bound.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, Uri};
use ipnet::IpNet;

use super::file::{self, AuthField, FileConfig, RateSpec};
use super::values::{Rate, Secret, Text};
use super::ConfigError;

/// The validated configuration gatehouse runs on.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this config came from.
    pub path: PathBuf,
    pub listen: Listen,
    pub tls: Tls,
    /// In file order; `upstreams[0]` is the default.
    pub upstreams: Vec<Upstream>,
    pub server: Server,
    pub auth: Auth,
    pub identity: IdentityHeaders,
    pub forward_authorization: bool,
    pub rate_limits: RateLimits,
    pub cors: Cors,
    pub store: Store,
    /// In file order: first match wins.
    pub routes: Vec<Route>,
    /// What a request matching no route gets; its name is `default`.
    pub default_route: Route,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub https: SocketAddr,
    pub http: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

#[derive(Debug, Clone)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub min_version: TlsVersion,
    /// `None` when disabled with `hsts: ""`.
    pub hsts: Option<HeaderValue>,
    pub self_signed_if_missing: bool,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    /// `http://host:port` targets (scheme and authority only).
    pub targets: Vec<Uri>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub max_request_body: u64,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub trusted_proxies: Vec<IpNet>,
    pub shutdown_grace: Duration,
    pub max_header_size: usize,
}

/// The key gatehouse signs and checks its own tokens with.
#[derive(Debug, Clone)]
pub enum JwtKey {
    /// HS*: the UTF-8 bytes of the secret.
    Secret(Secret),
    /// HS*: a file with the secret, created if absent.
    SecretFile(PathBuf),
    /// Asymmetric algorithms: PEM files.
    Pem { private: PathBuf, public: PathBuf },
}

#[derive(Debug, Clone)]
pub struct Jwt {
    pub algorithm: jsonwebtoken::Algorithm,
    pub key: JwtKey,
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub leeway: Duration,
    pub accept: Vec<AcceptIssuer>,
}

/// Where an external issuer's keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    JwksUrl(Uri),
    JwksFile(PathBuf),
    PublicKey(PathBuf),
}

#[derive(Debug, Clone)]
pub struct AcceptIssuer {
    pub issuer: String,
    pub audience: Option<String>,
    pub keys: KeySource,
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    pub roles_claim: String,
}

#[derive(Debug, Clone)]
pub struct Endpoints {
    pub login: String,
    pub refresh: String,
    pub logout: String,
    pub me: String,
}

#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: String,
    pub sha256: [u8; 32],
    pub roles: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ApiKeys {
    pub header: HeaderName,
    pub query_param: Option<String>,
    pub keys: Vec<ApiKey>,
}

#[derive(Debug, Clone)]
pub struct Login {
    pub max_failures: u32,
    pub failure_window: Duration,
    pub lockout: Duration,
}

#[derive(Debug, Clone)]
pub struct Auth {
    pub jwt: Jwt,
    pub users_file: PathBuf,
    pub endpoints: Endpoints,
    pub api_keys: ApiKeys,
    pub login: Login,
}

#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub user: HeaderName,
    pub roles: HeaderName,
    pub method: HeaderName,
    pub request_id: HeaderName,
}

/// A token bucket: `count` per `per`, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub rate: Rate,
    pub burst: u32,
}

#[derive(Debug, Clone)]
pub struct RateLimits {
    pub per_ip: Option<Limit>,
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
        scheme: String,
        host: String,
        port: Option<u16>,
    },
    /// `scheme://*.suffix[:port]`: one or more labels before `.suffix`, never
    /// the apex; `port` as for `Exact`.
    Subdomains {
        scheme: String,
        suffix: String,
        port: Option<u16>,
    },
}

#[derive(Debug, Clone)]
pub struct Cors {
    pub allowed_origins: Vec<Origin>,
    pub allowed_methods: Vec<Method>,
    pub allowed_headers: Vec<HeaderName>,
    pub expose_headers: Vec<HeaderName>,
    pub allow_credentials: bool,
    pub max_age: Duration,
}

#[derive(Debug, Clone)]
pub enum StoreBackend {
    Embedded { path: PathBuf },
    Redis { url: String, key_prefix: String },
}

#[derive(Debug, Clone)]
pub struct Store {
    pub backend: StoreBackend,
    pub max_stale: Duration,
}

/// How a route authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAuth {
    /// No credentials needed (identity headers are still stripped).
    None,
    /// Any one of these methods.
    Any(Vec<AuthMethod>),
    /// Answer 404 (only for `default_route`).
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Jwt,
    ApiKey,
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
    Segments { segments: Vec<Segment>, rest: bool },
    /// `regex:`, anchored at both ends.
    Regex(regex::Regex),
    /// The default route: matches everything.
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    Wildcard,
}

#[derive(Debug, Clone)]
pub struct Route {
    /// Name used in logs and metrics.
    pub name: Arc<str>,
    pub pattern: Pattern,
    /// `None` matches every method.
    pub methods: Option<Vec<Method>>,
    /// Lowercase host without port; `None` matches every host.
    pub host: Option<String>,
    pub auth: RouteAuth,
    pub roles: Vec<String>,
    pub rate_limit: Option<Limit>,
    /// Index into [`Config::upstreams`].
    pub upstream: usize,
}

/// Collects the file and the key path for an error.
struct Ctx<'a> {
    file: &'a Path,
    dir: PathBuf,
}

impl Ctx<'_> {
    fn err(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_owned(),
            key: key.into(),
            message: message.into(),
        }
    }

    /// A path from the config file, relative to the file's folder.
    fn path(&self, value: &Text) -> PathBuf {
        let p = Path::new(value.as_str());
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.dir.join(p)
        }
    }
}

pub(super) fn validate(path: &Path, raw: FileConfig) -> Result<Config, ConfigError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let cx = Ctx { file: path, dir };

    let listen = Listen {
        https: addr(&cx, "listen.https", &raw.listen.https)?,
        http: raw
            .listen
            .http
            .as_ref()
            .map(|a| addr(&cx, "listen.http", a))
            .transpose()?,
        admin: raw
            .listen
            .admin
            .as_ref()
            .map(|a| addr(&cx, "listen.admin", a))
            .transpose()?,
    };

    let tls = Tls {
        cert: cx.path(&raw.tls.cert),
        key: cx.path(&raw.tls.key),
        min_version: match raw.tls.min_version.as_str() {
            "1.2" => TlsVersion::V1_2,
            "1.3" => TlsVersion::V1_3,
            other => {
                return Err(cx.err(
                    "tls.min_version",
                    format!("unsupported TLS version {other:?} (expected \"1.2\" or \"1.3\")"),
                ))
            }
        },
        hsts: match raw.tls.hsts.as_str().trim() {
            "" => None,
            v => Some(
                HeaderValue::from_str(v)
                    .map_err(|_| cx.err("tls.hsts", "not a valid header value"))?,
            ),
        },
        self_signed_if_missing: raw.tls.self_signed_if_missing.0,
    };

    if raw.upstreams.is_empty() {
        return Err(cx.err("upstreams", "at least one upstream is required"));
    }
    let mut upstreams = Vec::with_capacity(raw.upstreams.len());
    for (name, up) in &raw.upstreams {
        upstreams.push(upstream(&cx, name, up)?);
    }

    let s = &raw.server;
    let server = Server {
        max_request_body: s.max_request_body.0,
        header_read_timeout: positive(&cx, "server.header_read_timeout", s.header_read_timeout.0)?,
        body_read_timeout: positive(&cx, "server.body_read_timeout", s.body_read_timeout.0)?,
        idle_timeout: positive(&cx, "server.idle_timeout", s.idle_timeout.0)?,
        max_connections: match usize::try_from(s.max_connections.0) {
            Ok(n) if n > 0 => n,
            _ => return Err(cx.err("server.max_connections", "must be at least 1")),
        },
        trusted_proxies: s
            .trusted_proxies
            .iter()
            .enumerate()
            .map(|(i, t)| cidr(&cx, &format!("server.trusted_proxies[{i}]"), t))
            .collect::<Result<_, _>>()?,
        shutdown_grace: s.shutdown_grace.0,
        max_header_size: match usize::try_from(s.max_header_size.0) {
            Ok(n) if n >= 8192 => n,
            _ => return Err(cx.err("server.max_header_size", "must be at least 8KiB")),
        },
    };

    let auth = auth(&cx, &raw.auth)?;

    let ih = &raw.identity_headers;
    let identity = IdentityHeaders {
        user: header(&cx, "identity_headers.user", &ih.user)?,
        roles: header(&cx, "identity_headers.roles", &ih.roles)?,
        method: header(&cx, "identity_headers.method", &ih.method)?,
        request_id: header(&cx, "identity_headers.request_id", &ih.request_id)?,
    };

    let rate_limits = RateLimits {
        per_ip: raw
            .rate_limits
            .per_ip
            .map(|r| limit(&cx, "rate_limits.per_ip", r))
            .transpose()?,
        login: raw
            .rate_limits
            .login
            .map(|r| limit(&cx, "rate_limits.login", r))
            .transpose()?,
    };

    let cors = cors(&cx, &raw.cors)?;

    let store = Store {
        backend: match raw.store.backend.as_str() {
            "embedded" => StoreBackend::Embedded {
                path: cx.path(&raw.store.path),
            },
            "redis" => StoreBackend::Redis {
                url: match &raw.store.url {
                    Some(u)
                        if u.as_str().starts_with("redis://")
                            || u.as_str().starts_with("rediss://") =>
                    {
                        u.0.clone()
                    }
                    Some(_) => {
                        return Err(
                            cx.err("store.url", "expected redis://host:port/db or rediss://…")
                        )
                    }
                    None => return Err(cx.err("store.url", "required when store.backend is redis")),
                },
                key_prefix: raw.store.key_prefix.0.clone(),
            },
            other => {
                return Err(cx.err(
                    "store.backend",
                    format!("unknown store backend {other:?} (expected embedded or redis)"),
                ))
            }
        },
        max_stale: match raw.store.max_stale.0 {
            d if d >= Duration::from_secs(1) => d,
            _ => return Err(cx.err("store.max_stale", "must be at least 1s")),
        },
    };

    let upstream_index = |key: &str, name: &Option<Text>| -> Result<usize, ConfigError> {
        match name {
            None => Ok(0),
            Some(n) => raw
                .upstreams
                .get_index_of(n.as_str())
                .ok_or_else(|| cx.err(key, format!("no upstream named {:?}", n.as_str()))),
        }
    };

    let mut routes = Vec::with_capacity(raw.routes.len());
    for (i, r) in raw.routes.iter().enumerate() {
        let key = format!("routes[{i}]");
        let pattern = match (&r.path, &r.regex) {
            (Some(p), None) => pattern(&cx, &format!("{key}.path"), p.as_str())?,
            (None, Some(re)) => Pattern::Regex(
                regex::Regex::new(&format!("^(?:{})$", re.as_str()))
                    .map_err(|e| cx.err(format!("{key}.regex"), format!("invalid regex: {e}")))?,
            ),
            _ => return Err(cx.err(&key, "exactly one of `path` or `regex` is required")),
        };
        let name = match (&r.name, &r.path, &r.regex) {
            (Some(n), _, _) if !n.as_str().is_empty() => n.0.clone(),
            (_, Some(p), _) => p.0.clone(),
            (_, _, Some(re)) => format!("regex:{}", re.as_str()),
            _ => key.clone(),
        };
        if name == "default" {
            return Err(cx.err(
                format!("{key}.name"),
                "`default` is reserved for default_route",
            ));
        }
        let auth = route_auth(&cx, &format!("{key}.auth"), r.auth.as_ref(), false)?;
        routes.push(Route {
            name: Arc::from(name),
            pattern,
            methods: r
                .methods
                .as_ref()
                .map(|ms| methods(&cx, &format!("{key}.methods"), ms))
                .transpose()?,
            host: r
                .host
                .as_ref()
                .map(|h| route_host(&cx, &format!("{key}.host"), h.as_str()))
                .transpose()?,
            roles: roles(&r.roles),
            rate_limit: r
                .rate_limit
                .map(|l| limit(&cx, &format!("{key}.rate_limit"), l))
                .transpose()?,
            upstream: upstream_index(&format!("{key}.upstream"), &r.upstream)?,
            auth,
        });
        if matches!(routes[i].auth, RouteAuth::None) && !routes[i].roles.is_empty() {
            return Err(cx.err(
                format!("{key}.roles"),
                "roles need an auth method other than none",
            ));
        }
    }

    let d = &raw.default_route;
    let default_route = Route {
        name: Arc::from("default"),
        pattern: Pattern::Any,
        methods: None,
        host: None,
        auth: route_auth(&cx, "default_route.auth", Some(&d.auth), true)?,
        roles: roles(&d.roles),
        rate_limit: d
            .rate_limit
            .map(|l| limit(&cx, "default_route.rate_limit", l))
            .transpose()?,
        upstream: upstream_index("default_route.upstream", &d.upstream)?,
    };

    Ok(Config {
        path: path.to_owned(),
        listen,
        tls,
        upstreams,
        server,
        auth,
        identity,
        forward_authorization: raw.forward_authorization.0,
        rate_limits,
        cors,
        store,
        routes,
        default_route,
    })
}

fn addr(cx: &Ctx, key: &str, value: &Text) -> Result<SocketAddr, ConfigError> {
    value.as_str().trim().parse().map_err(|_| {
        cx.err(
            key,
            format!(
                "invalid listen address {:?} (expected IP:PORT, e.g. 0.0.0.0:8443)",
                value.as_str()
            ),
        )
    })
}

/// A route's `host`: a name or IP literal, lowercase, without port or
/// trailing dot — validated by the same parser as requests' hosts, so a
/// route can name only a host a request can match.
fn route_host(cx: &Ctx, key: &str, raw: &str) -> Result<String, ConfigError> {
    match crate::host::parse(raw.trim().as_bytes()) {
        Ok(host) if host.port.is_none() => Ok(host.name().to_ascii_lowercase()),
        _ => Err(cx.err(
            key,
            format!(
                "{raw:?}: expected a host name without port (requests match on the name alone)"
            ),
        )),
    }
}

fn positive(cx: &Ctx, key: &str, d: Duration) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        Err(cx.err(key, "must be greater than zero"))
    } else {
        Ok(d)
    }
}

fn cidr(cx: &Ctx, key: &str, value: &Text) -> Result<IpNet, ConfigError> {
    let s = value.as_str().trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map(|n| n.trunc())
        .map_err(|_| {
            cx.err(
                key,
                format!("invalid CIDR {s:?} (expected e.g. 10.0.0.0/8)"),
            )
        })
}

fn header(cx: &Ctx, key: &str, value: &Text) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(value.as_str().trim().as_bytes())
        .map_err(|_| cx.err(key, format!("invalid header name {:?}", value.as_str())))
}

fn methods(cx: &Ctx, key: &str, items: &[Text]) -> Result<Vec<Method>, ConfigError> {
    items
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let upper = m.as_str().trim().to_ascii_uppercase();
            Method::from_bytes(upper.as_bytes()).map_err(|_| {
                cx.err(
                    format!("{key}[{i}]"),
                    format!("invalid method {:?}", m.as_str()),
                )
            })
        })
        .collect()
}

fn roles(items: &[Text]) -> Vec<String> {
    items.iter().map(|r| r.0.clone()).collect()
}

fn limit(cx: &Ctx, key: &str, spec: RateSpec) -> Result<Limit, ConfigError> {
    let burst = match spec.burst {
        None => spec.rate.count,
        Some(b) => match u32::try_from(b.0) {
            Ok(b) if b > 0 => b,
            _ => return Err(cx.err(format!("{key}.burst"), "must be between 1 and 4294967295")),
        },
    };
    Ok(Limit {
        rate: spec.rate,
        burst,
    })
}

fn upstream(cx: &Ctx, name: &str, up: &file::Upstream) -> Result<Upstream, ConfigError> {
    let key = format!("upstreams.{name}");
    let urls: Vec<(String, &Text)> = match (&up.url, &up.urls) {
        (Some(u), None) => vec![(format!("{key}.url"), u)],
        (None, Some(us)) if !us.is_empty() => us
            .iter()
            .enumerate()
            .map(|(i, u)| (format!("{key}.urls[{i}]"), u))
            .collect(),
        _ => {
            return Err(cx.err(
                &key,
                "exactly one of `url` or a non-empty `urls` is required",
            ))
        }
    };
    let mut targets = Vec::with_capacity(urls.len());
    for (k, u) in urls {
        let uri: Uri = u
            .as_str()
            .trim()
            .parse()
            .map_err(|_| cx.err(&k, format!("invalid URL {:?}", u.as_str())))?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(cx.err(
                &k,
                format!(
                    "{:?}: expected http://host:port (https upstreams are not supported)",
                    u.as_str()
                ),
            ));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(cx.err(
                &k,
                "an upstream URL has no path or query: gatehouse forwards the request's own path",
            ));
        }
        let base = Uri::builder()
            .scheme("http")
            .authority(uri.authority().map(|a| a.as_str()).unwrap_or_default())
            .path_and_query("/")
            .build()
            .map_err(|_| cx.err(&k, "invalid URL"))?;
        targets.push(base);
    }
    Ok(Upstream {
        name: name.to_owned(),
        targets,
        connect_timeout: positive(cx, &format!("{key}.connect_timeout"), up.connect_timeout.0)?,
        response_timeout: positive(
            cx,
            &format!("{key}.response_timeout"),
            up.response_timeout.0,
        )?,
    })
}

fn algorithm(cx: &Ctx, key: &str, name: &str) -> Result<jsonwebtoken::Algorithm, ConfigError> {
    use jsonwebtoken::Algorithm::*;
    Ok(match name.trim() {
        "HS256" => HS256,
        "HS384" => HS384,
        "HS512" => HS512,
        "RS256" => RS256,
        "RS384" => RS384,
        "RS512" => RS512,
        "PS256" => PS256,
        "PS384" => PS384,
        "PS512" => PS512,
        "ES256" => ES256,
        "ES384" => ES384,
        "EdDSA" => EdDSA,
        other => {
            return Err(cx.err(
                key,
                format!("unsupported algorithm {other:?} (HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA)"),
            ))
        }
    })
}

fn is_hmac(alg: jsonwebtoken::Algorithm) -> bool {
    use jsonwebtoken::Algorithm::*;
    matches!(alg, HS256 | HS384 | HS512)
}

fn endpoint(cx: &Ctx, key: &str, value: &Text) -> Result<String, ConfigError> {
    let v = value.as_str().trim();
    if !v.starts_with('/') || v.contains(['?', '#', ' ']) || v.contains("//") {
        return Err(cx.err(key, format!("{v:?} is not a normalized absolute path")));
    }
    Ok(v.to_owned())
}

fn auth(cx: &Ctx, raw: &file::Auth) -> Result<Auth, ConfigError> {
    let j = &raw.jwt;
    let alg = algorithm(cx, "auth.jwt.algorithm", j.algorithm.as_str())?;
    let key = if is_hmac(alg) {
        match (&j.secret, &j.secret_file) {
            (Some(s), None) => {
                if s.expose().len() < 32 {
                    return Err(cx.err(
                        "auth.jwt.secret",
                        "must be at least 32 bytes (run `gatehouse gen-secret` for one)",
                    ));
                }
                JwtKey::Secret(s.clone())
            }
            (None, Some(f)) => JwtKey::SecretFile(cx.path(f)),
            _ => {
                return Err(cx.err(
                    "auth.jwt",
                    format!("{alg:?} needs exactly one of `secret` or `secret_file`"),
                ))
            }
        }
    } else {
        match (&j.private_key, &j.public_key, &j.secret, &j.secret_file) {
            (Some(private), Some(public), None, None) => JwtKey::Pem {
                private: cx.path(private),
                public: cx.path(public),
            },
            _ => {
                return Err(cx.err(
                    "auth.jwt",
                    format!(
                        "{alg:?} needs `private_key` and `public_key` (PEM files) and no `secret`"
                    ),
                ))
            }
        }
    };
    let mut accept = Vec::with_capacity(j.accept.len());
    for (i, a) in j.accept.iter().enumerate() {
        let key = format!("auth.jwt.accept[{i}]");
        let keys = match (&a.jwks_url, &a.jwks_file, &a.public_key) {
            (Some(u), None, None) => {
                let uri: Uri = u
                    .as_str()
                    .parse()
                    .map_err(|_| cx.err(format!("{key}.jwks_url"), "invalid URL"))?;
                if uri.scheme_str() != Some("https") {
                    return Err(cx.err(format!("{key}.jwks_url"), "must be an https:// URL"));
                }
                KeySource::JwksUrl(uri)
            }
            (None, Some(f), None) => KeySource::JwksFile(cx.path(f)),
            (None, None, Some(p)) => KeySource::PublicKey(cx.path(p)),
            _ => {
                return Err(cx.err(
                    &key,
                    "exactly one of `jwks_url`, `jwks_file` or `public_key` is required",
                ))
            }
        };
        if a.algorithms.is_empty() {
            return Err(cx.err(
                format!("{key}.algorithms"),
                "list the algorithms this issuer signs with",
            ));
        }
        let algorithms = a
            .algorithms
            .iter()
            .enumerate()
            .map(|(k, name)| algorithm(cx, &format!("{key}.algorithms[{k}]"), name.as_str()))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(k) = algorithms.iter().position(|a| is_hmac(*a)) {
            return Err(cx.err(
                format!("{key}.algorithms[{k}]"),
                "external issuers are verified with public keys: HS* is not allowed",
            ));
        }
        accept.push(AcceptIssuer {
            issuer: a.issuer.0.clone(),
            audience: a.audience.as_ref().map(|a| a.0.clone()),
            keys,
            algorithms,
            roles_claim: a.roles_claim.0.clone(),
        });
    }
    let jwt = Jwt {
        algorithm: alg,
        key,
        issuer: j.issuer.0.clone(),
        audience: j.audience.0.clone(),
        access_ttl: positive(cx, "auth.jwt.access_ttl", j.access_ttl.0)?,
        refresh_ttl: positive(cx, "auth.jwt.refresh_ttl", j.refresh_ttl.0)?,
        leeway: j.leeway.0,
        accept,
    };

    let e = &raw.endpoints;
    let endpoints = Endpoints {
        login: endpoint(cx, "auth.endpoints.login", &e.login)?,
        refresh: endpoint(cx, "auth.endpoints.refresh", &e.refresh)?,
        logout: endpoint(cx, "auth.endpoints.logout", &e.logout)?,
        me: endpoint(cx, "auth.endpoints.me", &e.me)?,
    };

    let mut keys = Vec::with_capacity(raw.api_keys.keys.len());
    for (i, k) in raw.api_keys.keys.iter().enumerate() {
        let key = format!("auth.api_keys.keys[{i}]");
        let hex = k.sha256.as_str().trim();
        let sha256 = decode_hex32(hex).ok_or_else(|| {
            cx.err(
                format!("{key}.sha256"),
                "expected 64 hex digits (the SHA-256 of the key)",
            )
        })?;
        if k.id.as_str().is_empty() {
            return Err(cx.err(format!("{key}.id"), "must not be empty"));
        }
        if !crate::text::is_header_safe(k.id.as_str()) {
            return Err(cx.err(
                format!("{key}.id"),
                "must have no control characters and no commas (it is sent in X-Auth-User)",
            ));
        }
        if let Some(i) = k
            .roles
            .iter()
            .position(|r| !crate::text::is_header_safe(r.as_str()))
        {
            return Err(cx.err(
                format!("{key}.roles[{i}]"),
                "must be non-empty, with no control characters and no commas",
            ));
        }
        if keys.iter().any(|other: &ApiKey| other.id == k.id.as_str()) {
            return Err(cx.err(
                format!("{key}.id"),
                format!("duplicate id {:?}", k.id.as_str()),
            ));
        }
        keys.push(ApiKey {
            id: k.id.0.clone(),
            sha256,
            roles: roles(&k.roles),
        });
    }
    let api_keys = ApiKeys {
        header: header(cx, "auth.api_keys.header", &raw.api_keys.header)?,
        query_param: raw.api_keys.query_param.as_ref().map(|q| q.0.clone()),
        keys,
    };

    let l = &raw.login;
    let login = Login {
        max_failures: match u32::try_from(l.max_failures.0) {
            Ok(n) if n > 0 => n,
            _ => return Err(cx.err("auth.login.max_failures", "must be at least 1")),
        },
        failure_window: positive(cx, "auth.login.failure_window", l.failure_window.0)?,
        lockout: l.lockout.0,
    };

    Ok(Auth {
        jwt,
        users_file: cx.path(&raw.users_file),
        endpoints,
        api_keys,
        login,
    })
}

fn decode_hex32(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

fn route_auth(
    cx: &Ctx,
    key: &str,
    field: Option<&AuthField>,
    is_default: bool,
) -> Result<RouteAuth, ConfigError> {
    let names: Vec<&Text> = match field {
        None => return Ok(RouteAuth::Any(vec![AuthMethod::Jwt])),
        Some(AuthField::One(one)) => vec![one],
        Some(AuthField::Any(list)) => list.iter().collect(),
    };
    if names.is_empty() {
        return Err(cx.err(key, "list at least one auth method"));
    }
    let mut methods = Vec::new();
    for name in &names {
        match name.as_str().trim() {
            "none" | "deny" if names.len() > 1 => {
                return Err(cx.err(
                    key,
                    format!("{:?} cannot be combined with other methods", name.as_str()),
                ))
            }
            "none" => return Ok(RouteAuth::None),
            "deny" if is_default => return Ok(RouteAuth::Deny),
            "jwt" => methods.push(AuthMethod::Jwt),
            "api_key" => methods.push(AuthMethod::ApiKey),
            other => {
                let expected = if is_default {
                    "none, jwt, api_key or deny"
                } else {
                    "none, jwt or api_key"
                };
                return Err(cx.err(
                    key,
                    format!("unknown auth method {other:?} (expected {expected})"),
                ));
            }
        }
    }
    methods.dedup();
    Ok(RouteAuth::Any(methods))
}

fn pattern(cx: &Ctx, key: &str, p: &str) -> Result<Pattern, ConfigError> {
    let p = p.trim();
    let bad = |why: &str| cx.err(key, format!("{p:?}: {why}"));
    if !p.starts_with('/') {
        return Err(bad("a path pattern starts with /"));
    }
    if p.contains(['?', '#', '%', '\\']) || p.contains("//") {
        return Err(bad(
            "a path pattern is a normalized path: no //, ?, #, % or \\",
        ));
    }
    let (body, rest) = match p.strip_suffix("/**") {
        Some(body) => (body, true),
        None => (p, false),
    };
    let segments: Vec<&str> = body.split('/').skip(1).collect();
    if segments.iter().any(|s| *s == "." || *s == "..") {
        return Err(bad("dot-segments never match a normalized path"));
    }
    if segments.iter().any(|s| s.contains("**")) {
        return Err(bad(
            "`**` is only allowed as the last segment, as /prefix/**",
        ));
    }
    if segments.iter().any(|s| s.contains('*') && *s != "*") {
        return Err(bad("`*` stands for a whole segment"));
    }
    let has_wildcard = segments.contains(&"*");
    Ok(match (has_wildcard, rest) {
        (false, false) => Pattern::Exact(p.to_owned()),
        (false, true) => Pattern::Prefix(body.to_owned()),
        (true, _) => Pattern::Segments {
            segments: segments
                .iter()
                .map(|s| match *s {
                    "*" => Segment::Wildcard,
                    lit => Segment::Literal(lit.to_owned()),
                })
                .collect(),
            rest,
        },
    })
}

fn cors(cx: &Ctx, raw: &file::Cors) -> Result<Cors, ConfigError> {
    let mut allowed_origins = Vec::with_capacity(raw.allowed_origins.len());
    for (i, o) in raw.allowed_origins.iter().enumerate() {
        allowed_origins.push(origin(
            cx,
            &format!("cors.allowed_origins[{i}]"),
            o.as_str(),
        )?);
    }
    let allow_credentials = raw.allow_credentials.0;
    if allow_credentials {
        if let Some(i) = allowed_origins.iter().position(|o| *o == Origin::Any) {
            return Err(cx.err(
                format!("cors.allowed_origins[{i}]"),
                "\"*\" cannot be combined with allow_credentials: true (browsers refuse it); list the origins",
            ));
        }
    }
    let headers = |key: &str, items: &[Text]| -> Result<Vec<HeaderName>, ConfigError> {
        items
            .iter()
            .enumerate()
            .map(|(i, h)| header(cx, &format!("{key}[{i}]"), h))
            .collect()
    };
    Ok(Cors {
        allowed_origins,
        allowed_methods: methods(cx, "cors.allowed_methods", &raw.allowed_methods)?,
        allowed_headers: headers("cors.allowed_headers", &raw.allowed_headers)?,
        expose_headers: headers("cors.expose_headers", &raw.expose_headers)?,
        allow_credentials,
        max_age: raw.max_age.0,
    })
}

fn origin(cx: &Ctx, key: &str, raw: &str) -> Result<Origin, ConfigError> {
    let o = raw.trim().to_ascii_lowercase();
    if o == "*" {
        return Ok(Origin::Any);
    }
    let bad = || {
        cx.err(
            key,
            format!("{raw:?}: expected scheme://host[:port] or scheme://*.domain[:port]"),
        )
    };
    // `*.` is the only thing an origin here may have that a browser's may not.
    let (text, wildcard) = match o.split_once("://*.") {
        Some((scheme, rest)) => (format!("{scheme}://{rest}"), true),
        None => (o.clone(), false),
    };
    let parsed = crate::host::parse_origin(text.as_bytes()).map_err(|_| bad())?;
    if !matches!(parsed.scheme, "http" | "https") {
        return Err(bad());
    }
    let scheme = parsed.scheme.to_owned();
    let port = parsed.effective_port();
    let host = parsed.host.name().to_owned();
    if wildcard {
        if !host.contains('.') && host != "localhost" || host.starts_with('[') {
            return Err(cx.err(
                key,
                format!("{raw:?}: a wildcard needs a domain with at least two labels after *."),
            ));
        }
        return Ok(Origin::Subdomains {
            scheme,
            suffix: host,
            port,
        });
    }
    Ok(Origin::Exact { scheme, host, port })
}
