//! The request pipeline: every stage a request passes through, in order
//! (SPEC §3). One file per stage; this module runs them.
//!
//! 1. `normalize` — refuse ambiguous requests, produce the one normalized
//!    path that routing sees and that is forwarded (`client_ip` — who the
//!    client is, by `trusted_proxies` — is read before, for the log);
//! 2. `cors` — preflights are answered here;
//! 3. `rate_limit` — per client IP;
//! 4. gatehouse's own endpoints (`/login`, `/auth/*`, with the login limit);
//! 5. `route` — the first matching route, or `default_route`, and its limit
//!    per client IP;
//! 6. `authn` then `authz` — the route's credentials, then its roles; then
//!    the route's limit per principal;
//! 7. forward — through `crate::upstream`, with headers rewritten and the
//!    identity headers set;
//! 8. `log` — HSTS, request id, CORS and `RateLimit-*` headers on the
//!    response, one access-log line when it is done.
//!
//! Every error goes through [`GateError::to_response`], the one mapping from
//! error to status and JSON body.

pub mod authn;
pub mod authz;
pub mod client_ip;
pub mod cors;
pub mod log;
pub mod normalize;
pub mod rate_limit;
pub mod route;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, Version};
use hyper::body::Incoming;
use tokio_util::task::TaskTracker;

use crate::activity::Activity;
use crate::auth::api_key::ApiKeys;
use crate::auth::jwt::{KeyError, OwnKeys, Verifier};
use crate::auth::password::Hasher;
use crate::auth::tokens::{self, Issuer, TokenCx};
use crate::auth::users::UsersFile;
use crate::auth::{unix_now, Principal};
use crate::body::{Body, BodyError, Limited};
use crate::config::{AuthMethod, Config, RouteAuth};
use crate::error::GateError;
use crate::metrics::Metrics;
use crate::upstream::headers::{self as fwd, Outgoing};
use crate::upstream::{self, Upstream};
use cors::Cors;
use log::{Logged, Record};
use rate_limit::{Decision, Key, Limiter};
use route::RouteTable;

/// Everything one config generation needs to answer requests. Swapped whole
/// on reload, so a request sees one consistent config from start to end.
pub struct Gate {
    pub config: Arc<Config>,
    pub routes: RouteTable,
    /// Same order as `config.upstreams`.
    pub upstreams: Vec<Upstream>,
    pub verifier: Verifier,
    pub issuer: Issuer,
    pub api_keys: ApiKeys,
    pub users: Arc<UsersFile>,
    pub cors: Cors,
    per_ip: Option<Arc<Limiter>>,
    login_limit: Option<Arc<Limiter>>,
    /// Limiters of the routes that have a `rate_limit`, by route name, with
    /// their `limit` metric label (`route:<name>`).
    route_limits: std::collections::HashMap<Arc<str>, (String, Arc<Limiter>), crate::FastHash>,
    /// Headers only gatehouse sets; an `_` spelling of one is refused (SPEC §3.2).
    proxy_owned: Vec<HeaderName>,
    /// Identity headers: client copies are removed from every request.
    identity_owned: Vec<HeaderName>,
    /// Removed before forwarding: the API key header, and `Authorization`
    /// when `forward_authorization` is false.
    strip: Vec<HeaderName>,
}

impl Gate {
    /// Builds a generation's pipeline; fails if a configured key cannot be
    /// read (creating `secret_file` when it is absent).
    pub fn new(config: Arc<Config>, carry: &Carried) -> Result<Self, KeyError> {
        let limiters = &carry.limiters;
        let own_keys = OwnKeys::load(&config.auth.jwt)?;
        let verifier = Verifier::new(&config.auth.jwt, &own_keys, &carry.jwks)?;
        let users = UsersFile::load(&config.auth.users_file).map_err(|reason| KeyError {
            key: "auth.users_file".into(),
            reason,
        })?;
        users.watch();
        let jwt = &config.auth.jwt;
        let issuer = Issuer {
            algorithm: own_keys.algorithm,
            key: own_keys.encoding.clone(),
            issuer: jwt.issuer.clone(),
            audience: jwt.audience.clone(),
            access_ttl: jwt.access_ttl,
            refresh_ttl: jwt.refresh_ttl,
        };
        let id = &config.identity;
        let identity_owned = vec![id.user.clone(), id.roles.clone(), id.method.clone()];
        let mut proxy_owned = identity_owned.clone();
        proxy_owned.push(id.request_id.clone());
        proxy_owned.extend([
            fwd::X_FORWARDED_FOR,
            fwd::X_FORWARDED_PROTO,
            fwd::X_FORWARDED_HOST,
        ]);
        proxy_owned.extend(fwd::STEERING.iter().map(|n| HeaderName::from_static(n)));
        proxy_owned.push(config.auth.api_keys.header.clone());
        let mut strip = vec![config.auth.api_keys.header.clone()];
        if !config.forward_authorization {
            strip.push(header::AUTHORIZATION);
        }
        let route_limits = config
            .routes
            .iter()
            .chain(std::iter::once(&config.default_route))
            .filter_map(|r| {
                let limit = r.rate_limit?;
                let name = format!("route:{}", r.name);
                let limiter = limiters.get(&name, limit);
                Some((r.name.clone(), (name, limiter)))
            })
            .collect();
        Ok(Gate {
            cors: Cors::new(&config.cors),
            per_ip: config.rate_limits.per_ip.map(|l| limiters.get("per_ip", l)),
            login_limit: config.rate_limits.login.map(|l| limiters.get("login", l)),
            route_limits,
            routes: RouteTable::new(config.routes.clone(), config.default_route.clone()),
            upstreams: config.upstreams.iter().map(Upstream::new).collect(),
            api_keys: ApiKeys::new(&config.auth.api_keys.keys),
            verifier,
            issuer,
            users,
            proxy_owned,
            identity_owned,
            strip,
            config,
        })
    }

    /// The default upstream (the first in the file).
    pub fn default_upstream(&self) -> &Upstream {
        &self.upstreams[0]
    }
}

/// State a config reload hands on to the next generation: rate-limit
/// buckets and remote key sets whose settings did not change.
#[derive(Default)]
pub struct Carried {
    pub limiters: rate_limit::Limiters,
    pub jwks: crate::auth::jwks::RemoteKeySets,
}

/// Process-wide parts that outlive a config generation.
pub struct Shared {
    pub metrics: Metrics,
    pub store: crate::store::Store,
    pub hasher: Hasher,
    pub carried: Carried,
    /// Upgraded (WebSocket) tunnels, so shutdown can wait for them.
    pub tunnels: TaskTracker,
}

/// The connection a request came on.
struct Peer {
    /// The TCP peer.
    addr: SocketAddr,
    /// The peer is in `trusted_proxies`.
    trusted: bool,
    /// The connection's activity: an upgraded tunnel keeps it.
    conn: Arc<Activity>,
}

/// Answers one request on the HTTPS listener; `conn` is the connection it
/// came on.
pub async fn handle(
    gate: Arc<Gate>,
    shared: Arc<Shared>,
    peer: SocketAddr,
    conn: Arc<Activity>,
    req: Request<Incoming>,
) -> Response<Logged> {
    let started = Instant::now();
    let config = &gate.config;
    let (client_ip, trusted_peer) =
        client_ip::client_ip(peer.ip(), req.headers(), &config.server.trusted_proxies);
    let request_id = request_id(req.headers().get(&config.identity.request_id));
    let mut record = Record {
        started,
        request_id,
        client_ip,
        method: req.method().clone(),
        path: String::new(),
        status: http::StatusCode::OK,
        route: gate.routes.default_route().name.clone(),
        user: None,
        auth_method: None,
        upstream: None,
        bytes_sent: 0,
    };

    let origin = req.headers().get(header::ORIGIN).cloned();
    let preflight = Cors::is_preflight(req.method(), req.headers());
    let http1 = req.version() < Version::HTTP_2;
    let peer = Peer {
        addr: peer,
        trusted: trusted_peer,
        conn,
    };
    let mut rate = None;
    let mut response = match proxy(&gate, &shared, &mut record, &mut rate, peer, req).await {
        Ok(res) => res,
        Err(err) => err.to_response(),
    };

    let status = response.status();
    let headers = response.headers_mut();
    // A request whose body was not read to its end leaves the connection
    // unusable (HTTP/1.1 cannot tell where the next request starts): close.
    if http1 && closes_connection(status) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if let Some(decision) = rate {
        decision.write_headers(headers);
    }
    if !preflight {
        // Whatever the backend said, the response's CORS headers are gatehouse's.
        gate.cors.decorate(origin.as_ref(), headers);
    }
    if let Some(hsts) = &config.tls.hsts {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
    headers.insert(
        config.identity.request_id.clone(),
        record.request_id.clone(),
    );
    record.status = response.status();
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, Logged::new(body, record, shared.metrics.clone()))
}

async fn proxy(
    gate: &Gate,
    shared: &Shared,
    record: &mut Record,
    rate: &mut Option<Decision>,
    peer: Peer,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, GateError> {
    let config = &gate.config;

    // 1. Normalize: refusals happen before anything else reads the request.
    // CONNECT would open a tunnel; TRACE would echo credentials back
    // (cross-site tracing): neither is ever forwarded.
    if matches!(*req.method(), Method::CONNECT | Method::TRACE) {
        return Err(GateError::MethodNotAllowed {
            allow: PROXIED_METHODS,
        });
    }
    let host = normalize::check_head(req.uri(), req.headers(), &gate.proxy_owned)?;
    // RFC 9112 §3.2: an HTTP/1.1 request without Host is refused.
    if req.version() == Version::HTTP_11 && !req.headers().contains_key(header::HOST) {
        return Err(GateError::BadRequest("a Host header is required".into()));
    }
    let target = match normalize::normalize_uri(req.uri()) {
        Ok(t) => t,
        Err(refusal) => {
            record.path = req.uri().path().to_owned();
            return Err(refusal.into());
        }
    };
    // Logged from here on, whatever happens next.
    record.path.clone_from(&target.path);
    let now = unix_now();
    let api_key_param = config.auth.api_keys.query_param.as_deref();
    let client = Key::ip(record.client_ip);

    // 2. CORS preflight: answered here, never forwarded.
    if Cors::is_preflight(req.method(), req.headers()) {
        return gate.cors.preflight(req.headers());
    }

    // 3. Rate limit per client IP.
    if let Some(limiter) = &gate.per_ip {
        enforce(shared, "per_ip", limiter, &client, rate).await?;
    }

    // RFC 9110 §7.6.2: an OPTIONS with `Max-Forwards: 0` is for the first
    // recipient to answer (TRACE was refused above).
    if req.method() == Method::OPTIONS && max_forwards(req.headers()) == Some(0) {
        let mut res = Response::new(Body::empty());
        res.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(PROXIED_METHODS));
        return Ok(res);
    }

    // 4. gatehouse's own endpoints come before the routes.
    let endpoints = &config.auth.endpoints;
    let endpoint = [
        (&endpoints.login, Endpoint::Login),
        (&endpoints.refresh, Endpoint::Refresh),
        (&endpoints.logout, Endpoint::Logout),
        (&endpoints.me, Endpoint::Me),
    ]
    .into_iter()
    .find_map(|(path, e)| (target.path == *path).then_some(e));
    if let Some(endpoint) = endpoint {
        record.route = endpoint.route_name();
        if endpoint == Endpoint::Login && req.method() == http::Method::POST {
            if let Some(limiter) = &gate.login_limit {
                // Every attempt counts, whatever its outcome.
                enforce(shared, "login", limiter, &client, rate)
                    .await
                    .inspect_err(|_| {
                        shared
                            .metrics
                            .logins
                            .with_label_values(&["rate_limited"])
                            .inc();
                    })?;
            }
        }
        let query = target.query.as_deref();
        return match endpoint {
            // Boxed, like every rare path: the proxy future stays small
            // (hyper moves it into place for every request).
            Endpoint::Me => Box::pin(me(gate, shared, &req, query, now)).await,
            _ => Box::pin(token_endpoint(gate, shared, endpoint, req, now)).await,
        };
    }

    // 5. Route, and its own limit per client IP (per principal after 6).
    let host_name = host.as_ref().map(crate::host::Canonical::name);
    let route = gate.routes.find(req.method(), host_name, &target.path);
    record.route = route.name.clone();

    let route_limit = gate.route_limits.get(&route.name);
    if let Some((name, limiter)) = route_limit {
        enforce(shared, name, limiter, &client, rate).await?;
    }

    // 6. Authenticate, then authorize.
    let principal = match &route.auth {
        RouteAuth::Deny => return Err(GateError::NotFound),
        RouteAuth::None => None,
        RouteAuth::Any(methods) => {
            let checked = sign_in(
                gate,
                shared,
                &route.name,
                methods,
                &route.roles,
                &req,
                target.query.as_deref(),
                now,
            )
            .await?;
            Some(checked)
        }
    };
    if let Some(p) = &principal {
        record.user = Some(p.user.clone());
        record.auth_method = Some(p.scheme.as_str());
        if let Some((name, limiter)) = route_limit {
            let key = Key::Principal(p.user.clone());
            enforce(shared, name, limiter, &key, rate).await?;
        }
    }

    // The forwarded path is the normalized one, never the raw target; an
    // API key in the query never travels upstream.
    let query = match (target.query.as_deref(), api_key_param) {
        (Some(q), Some(param)) => authn::strip_query_param(q, param),
        (q, _) => q.map(str::to_owned),
    };
    let forwarded_path = path_and_query(&target.path, query.as_deref())?;

    let limit = config.server.max_request_body;
    if content_length(req.headers()).is_some_and(|len| len > limit) {
        return Err(GateError::PayloadTooLarge);
    }

    // Only a WebSocket upgrade is relayed (SPEC §3.7); any other `Upgrade`
    // (`h2c`, custom protocols) is stripped with the hop-by-hop headers, so
    // the backend never switches and no tunnel can skip authentication.
    let websocket = req.version() == Version::HTTP_11 && fwd::is_websocket_upgrade(req.headers());
    let client_upgrade = websocket.then(|| upstream::ClientUpgrade {
        on: hyper::upgrade::on(&mut req),
        conn: peer.conn.clone(),
        idle_timeout: config.server.idle_timeout,
    });
    // Any other recipient of an OPTIONS gets one hop fewer (RFC 9110 §7.6.2).
    if req.method() == Method::OPTIONS {
        if let Some(n) = max_forwards(req.headers()) {
            req.headers_mut()
                .insert(header::MAX_FORWARDS, HeaderValue::from(n.saturating_sub(1)));
        }
    }

    let identity = principal.as_deref().map(|p| identity_headers(config, p));
    let (mut parts, incoming) = req.into_parts();
    fwd::rewrite_request(
        &mut parts.headers,
        &Outgoing {
            peer_ip: peer.addr.ip(),
            from_trusted_proxy: peer.trusted,
            host: host.as_ref().map(crate::host::Canonical::value),
            request_id_header: &config.identity.request_id,
            request_id: &record.request_id,
            owned: &gate.identity_owned,
            remove: &gate.strip,
            identity: identity.as_ref().map_or(&[], |h| &h[..]),
            websocket,
        },
    );
    let body = Limited::new(incoming, limit, config.server.body_read_timeout);
    let up = &gate.upstreams[route.upstream];
    let forwarded = upstream::forward(
        up,
        parts,
        forwarded_path,
        body,
        client_upgrade,
        &shared.tunnels,
        &shared.metrics,
    )
    .await?;
    record.upstream = Some(forwarded.upstream_elapsed);
    Ok(forwarded.response)
}

/// The `authn` then `authz` stages for one request: its credentials for
/// `methods`, verified (and checked against revocations), then `roles`.
#[allow(clippy::too_many_arguments)]
async fn sign_in(
    gate: &Gate,
    shared: &Shared,
    route: &str,
    methods: &[AuthMethod],
    roles: &[String],
    req: &Request<Incoming>,
    query: Option<&str>,
    now: u64,
) -> Result<Arc<Principal>, GateError> {
    let keys = &gate.config.auth.api_keys;
    let param = if query.is_some() {
        keys.query_param.as_deref()
    } else {
        None
    };
    let creds = authn::credentials(req.headers(), query, methods, &keys.header, param);
    let p = authn::authenticate(
        gate,
        shared.store.revoked(),
        route,
        methods,
        &creds,
        now,
        &shared.metrics,
    )
    .await?;
    authz::authorize(&p, roles, route, &shared.metrics)?;
    Ok(p)
}

/// Checks one limit for `key` — in Redis when the store is shared, else (or
/// if Redis fails) locally — and refuses with 429 when it is exhausted.
/// The decision is kept in `rate` for the response's `RateLimit-*` headers.
async fn enforce(
    shared: &Shared,
    name: &str,
    limiter: &Limiter,
    key: &Key,
    rate: &mut Option<Decision>,
) -> Result<(), GateError> {
    let limit = limiter.limit;
    let interval = rate_limit::emission_interval(&limit);
    let decision = if shared.store.shares_rate_limits() {
        // Boxed: only a shared limit waits on Redis, and its future is large.
        let key_text = key.to_shared();
        let shared_check = shared
            .store
            .rate_check(name, &key_text, interval, limit.burst);
        match Box::pin(shared_check).await {
            Some(Ok(bucket)) => Decision::from_shared(bucket, limit.burst),
            Some(Err(_)) => {
                shared.metrics.rate_limit_fallbacks.inc();
                limiter.check(key)
            }
            None => limiter.check(key),
        }
    } else {
        limiter.check(key)
    };
    if decision.allowed {
        // The per-IP limit only shows itself when it refuses.
        // Report the bucket closest to refusing (per IP or per principal).
        if name != "per_ip" && rate.is_none_or(|prev| decision.remaining <= prev.remaining) {
            *rate = Some(decision);
        }
        return Ok(());
    }
    *rate = Some(decision);
    shared.metrics.rate_limited.with_label_values(&[name]).inc();
    Err(GateError::RateLimited {
        retry_after: decision.retry_after,
    })
}

/// gatehouse's own endpoints (SPEC §4), matched before the routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Login,
    Refresh,
    Logout,
    Me,
}

static ENDPOINT_NAMES: std::sync::LazyLock<[Arc<str>; 4]> =
    std::sync::LazyLock::new(|| ["login", "auth_refresh", "auth_logout", "auth_me"].map(Arc::from));

impl Endpoint {
    /// The route name in logs and metrics.
    fn route_name(self) -> Arc<str> {
        ENDPOINT_NAMES[self as usize].clone()
    }
}

/// `POST /login`, `/auth/refresh`, `/auth/logout`.
async fn token_endpoint(
    gate: &Gate,
    shared: &Shared,
    endpoint: Endpoint,
    req: Request<Incoming>,
    now: u64,
) -> Result<Response<Body>, GateError> {
    use http_body_util::BodyExt as _;
    let count_login = |result: &str| {
        if endpoint == Endpoint::Login {
            shared.metrics.logins.with_label_values(&[result]).inc();
        }
    };
    if req.method() != http::Method::POST {
        return Err(GateError::MethodNotAllowed { allow: "POST" });
    }
    let config = &gate.config;
    // Logout needs the access token it ends.
    let principal = if endpoint == Endpoint::Logout {
        let route = endpoint.route_name();
        Some(
            sign_in(
                gate,
                shared,
                &route,
                &[AuthMethod::Jwt],
                &[],
                &req,
                None,
                now,
            )
            .await?,
        )
    } else {
        None
    };
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let kind = match (endpoint, tokens::body_kind(content_type.as_deref())) {
        (Endpoint::Logout, Err(_)) if content_type.is_none() => None,
        (_, Ok(kind)) => Some(kind),
        (_, Err(e)) => {
            count_login("bad_request");
            return Err(e);
        }
    };
    if content_length(req.headers()).is_some_and(|len| len > tokens::MAX_BODY as u64) {
        count_login("bad_request");
        return Err(GateError::PayloadTooLarge);
    }
    // Read under the rules of a proxied body (a size limit, no gap longer
    // than body_read_timeout) and, being at most 16 KiB, whole within
    // body_read_timeout: a login trickled a byte at a time holds no slot.
    let limit = config.server.body_read_timeout;
    let read = Limited::new(req.into_body(), tokens::MAX_BODY as u64, limit).collect();
    let body = match tokio::time::timeout(limit, read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) => {
            count_login("bad_request");
            let error = BodyError::find(e.as_ref()).unwrap_or(BodyError::Malformed);
            return Err(error.into());
        }
        Err(_) => {
            count_login("bad_request");
            return Err(BodyError::Stalled { after: limit }.into());
        }
    };
    let cx = TokenCx {
        issuer: &gate.issuer,
        users: &gate.users,
        hasher: &shared.hasher,
        store: &shared.store,
        login_policy: &config.auth.login,
        metrics: &shared.metrics,
    };
    let answer = match endpoint {
        Endpoint::Login => {
            let login = tokens::parse_login(kind.unwrap_or(tokens::BodyKind::Json), &body)
                .inspect_err(|_| count_login("bad_request"))?;
            tokens::login(&cx, login, now).await?
        }
        Endpoint::Refresh => {
            let token = tokens::parse_refresh(kind.unwrap_or(tokens::BodyKind::Json), &body)?;
            tokens::refresh(&cx, &token, now).await?
        }
        Endpoint::Logout | Endpoint::Me => {
            let refresh = tokens::parse_logout(kind, &body)?;
            if let Some(p) = &principal {
                tokens::logout(&cx, p, refresh.as_deref(), now).await?;
            }
            let mut res = Response::new(Body::empty());
            *res.status_mut() = http::StatusCode::NO_CONTENT;
            return Ok(res);
        }
    };
    let mut res = crate::error::json_response(http::StatusCode::OK, &answer);
    // RFC 6749 §5.1: token responses are never cached.
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(res)
}

/// `GET /auth/me` (SPEC §4): who the bearer token or API key belongs to.
async fn me(
    gate: &Gate,
    shared: &Shared,
    req: &Request<Incoming>,
    query: Option<&str>,
    now: u64,
) -> Result<Response<Body>, GateError> {
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        return Err(GateError::MethodNotAllowed { allow: "GET, HEAD" });
    }
    let route = Endpoint::Me.route_name();
    let methods = [AuthMethod::Jwt, AuthMethod::ApiKey];
    let p = sign_in(gate, shared, &route, &methods, &[], req, query, now).await?;
    let mut body =
        serde_json::json!({ "sub": &*p.user, "roles": p.roles, "method": p.scheme.as_str() });
    if let Some(exp) = p.exp {
        body["exp"] = exp.into();
    }
    Ok(crate::error::json_response(http::StatusCode::OK, &body))
}

/// The identity headers of an authenticated request (values made once, with
/// the principal).
fn identity_headers(config: &Config, p: &Principal) -> [(HeaderName, HeaderValue); 3] {
    let id = &config.identity;
    [
        (id.user.clone(), p.user_value.clone()),
        (id.roles.clone(), p.roles_value.clone()),
        (
            id.method.clone(),
            HeaderValue::from_static(p.scheme.as_str()),
        ),
    ]
}

/// The client's `X-Request-Id` if it is 1–128 chars of `[A-Za-z0-9._-]`,
/// else a fresh random one (32 hex digits).
fn request_id(client: Option<&HeaderValue>) -> HeaderValue {
    if let Some(v) = client {
        let b = v.as_bytes();
        if (1..=128).contains(&b.len())
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        {
            return v.clone();
        }
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n: u128 = rand::random();
    let mut id = [0u8; 32];
    for (i, digit) in id.iter_mut().enumerate() {
        *digit = HEX[((n >> (124 - 4 * i)) & 0xf) as usize];
    }
    // Hex digits are valid header bytes.
    HeaderValue::from_bytes(&id).expect("hex digits form a header value")
}

/// What gatehouse proxies, for the `Allow` of a refused CONNECT or TRACE and
/// of an `OPTIONS` it answers itself.
const PROXIED_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// `Max-Forwards` as a number, when it is one (RFC 9110 §7.6.2).
fn max_forwards(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::MAX_FORWARDS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Whether an answer means the request body was not read to its end (a
/// stalled, oversized or malformed body).
fn closes_connection(status: http::StatusCode) -> bool {
    use http::StatusCode;
    matches!(
        status,
        StatusCode::REQUEST_TIMEOUT | StatusCode::PAYLOAD_TOO_LARGE
    )
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn path_and_query(path: &str, query: Option<&str>) -> Result<PathAndQuery, GateError> {
    let mut s = String::with_capacity(path.len() + query.map_or(0, |q| q.len() + 1));
    s.push_str(path);
    if let Some(q) = query {
        s.push('?');
        s.push_str(q);
    }
    PathAndQuery::from_maybe_shared(Bytes::from(s))
        .map_err(|_| GateError::BadRequest("invalid request target".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_request_id_is_kept_only_when_well_formed() {
        let ok = HeaderValue::from_static("abc-123_x.y");
        assert_eq!(request_id(Some(&ok)), "abc-123_x.y");
        let random = request_id(None);
        assert_eq!(random.len(), 32);
        assert!(random.as_bytes().iter().all(u8::is_ascii_hexdigit));
        assert_ne!(random, request_id(None));
        let bad = HeaderValue::from_static("has space");
        let generated = request_id(Some(&bad));
        assert_eq!(generated.len(), 32);
        let long = HeaderValue::from_str(&"a".repeat(129)).unwrap();
        assert_ne!(request_id(Some(&long)), "a".repeat(129));
    }
}
