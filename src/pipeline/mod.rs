//! The request pipeline: every stage a request passes, in order (SPEC §3).
//! One file per stage; this module only runs them, and one rescue
//! ([`rescue`]) turns the error a stage returns into SPEC §5's answer.
//!
//! 1. `normalize` — refuse `CONNECT`/`TRACE` and ambiguous heads, validate
//!    the one host, produce the one normalized path that routing sees and
//!    that is forwarded (`client_ip` — who the client is, by
//!    `trusted_proxies` — is read before, for the log);
//! 2. `cors` — preflights are answered here;
//! 3. `rate_limit` — per client IP; an `OPTIONS` with `Max-Forwards: 0` is
//!    answered here;
//! 4. `route` — gatehouse's own endpoints, then `routes`, then
//!    `default_route`: a [`Target`] (an upstream or an endpoint), the
//!    target's method rule, and the route's limit per client IP;
//! 5. `authn` then `authz` — the route's credentials (a route with
//!    `session` sends a browser without one to sign in, `session`; a
//!    session-borne unsafe request passes `csrf`), then its roles; then the
//!    route's limit per principal; then the route's quotas (`quota`: all
//!    or nothing, a response's tokens read by `usage` as it streams);
//! 6. the target — an endpoint (`crate::endpoints`) answers, or the request
//!    goes upstream through a [`Forward`] with its headers rewritten;
//! 7. `log` — HSTS, request id, CORS and `RateLimit-*` headers on the
//!    response, one access-log line when it is done.
//!
//! The pipeline runs without sockets: [`handle`] takes any request body and
//! any [`Forward`], and reads the time from [`Shared::clock`].

pub mod authn;
pub mod authz;
pub mod client_ip;
pub mod cors;
pub mod csrf;
pub mod gate;
pub mod log;
pub mod normalize;
pub mod quota;
pub mod rate_limit;
pub mod rescue;
pub mod route;
pub mod session;
pub mod usage;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Method, Request, Response, Version};
use hyper::body::Incoming;
use tokio_util::task::TaskTracker;

use crate::activity::Activity;
use crate::auth::assertion::{Signer, Subject};
use crate::auth::{AuthError, Principal, Scheme};
use crate::body::{Body, BodyError, Limited};
use crate::config::{AuthMethod, RouteAuth};
use crate::endpoints::{self, Endpoint};
use crate::host::Canonical;
use crate::metrics::Metrics;
use crate::upstream::headers::{self as fwd, Outgoing};
use crate::upstream::{self, ClientUpgrade, ForwardError, Forwarded, Upstream};
use cors::Cors;
pub use gate::{Carried, Destination, Gate, Shared, Target};
use log::{Logged, Record};
use rate_limit::{Decision, Key, RouteLimit};
use rescue::Failure;

/// What a stage decided: go on to the next one, or answer now (rare:
/// boxed, so that going on costs no room).
pub enum Flow {
    Continue,
    Respond(Box<Response<Body>>),
}

/// A request on its way to an upstream, headers rewritten.
pub struct Outbound<B> {
    pub parts: Parts,
    /// The normalized path and the query, as forwarded.
    pub path: PathAndQuery,
    pub body: Limited<B>,
    pub upgrade: Option<ClientUpgrade>,
}

/// The pipeline's one door to the network: sends a request to an upstream
/// and gives back its response. [`Upstreams`] is the real one; tests pass a
/// fake and run the whole pipeline in-process.
pub trait Forward<B>: Send + Sync + 'static {
    fn forward(
        &self,
        upstream: &Upstream,
        request: Outbound<B>,
        tunnels: &TaskTracker,
        metrics: &Metrics,
    ) -> impl Future<Output = Result<Forwarded, ForwardError>> + Send;
}

/// Forwarding through each upstream's pooled HTTP client.
#[derive(Debug, Clone, Copy, Default)]
pub struct Upstreams;

impl Forward<Incoming> for Upstreams {
    fn forward(
        &self,
        upstream: &Upstream,
        request: Outbound<Incoming>,
        tunnels: &TaskTracker,
        metrics: &Metrics,
    ) -> impl Future<Output = Result<Forwarded, ForwardError>> + Send {
        let Outbound {
            parts,
            path,
            body,
            upgrade,
        } = request;
        upstream::forward(upstream, parts, path, body, upgrade, tunnels, metrics)
    }
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
/// came on, `forward` the way to the upstreams.
pub async fn handle<B, F>(
    gate: Arc<Gate>,
    shared: Arc<Shared>,
    peer: SocketAddr,
    conn: Arc<Activity>,
    req: Request<B>,
    forward: F,
) -> Response<Logged>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    F: Forward<B>,
{
    let started = Instant::now();
    let config = &gate.config;
    let (client_ip, trusted_peer) =
        client_ip::client_ip(peer.ip(), req.headers(), &config.server.trusted_proxies);
    let request_id = log::request_id(req.headers().get(&config.identity.request_id));
    let mut record = Record {
        started,
        request_id,
        client_ip,
        method: req.method().clone(),
        path: String::new(),
        status: http::StatusCode::OK,
        route: gate.default_destination().metrics.clone(),
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
    let run = run(&gate, &shared, &mut record, &mut rate, &peer, req, forward);
    let mut response = match run.await {
        Ok(res) => res,
        Err(failure) => rescue::respond(&failure),
    };

    let status = response.status();
    let headers = response.headers_mut();
    // A request whose body was not read to its end leaves the connection
    // unusable (HTTP/1.1 cannot tell where the next request starts): close.
    if http1 && closes_connection(status) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        // The client may still be sending that body: the close lingers.
        peer.conn.linger_on_close();
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

/// The stages, in order.
async fn run<B, F>(
    gate: &Gate,
    shared: &Shared,
    record: &mut Record,
    rate: &mut Option<Decision>,
    peer: &Peer,
    req: Request<B>,
    forward: F,
) -> Result<Response<Body>, Failure>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    F: Forward<B>,
{
    // 1. Normalize: refusals happen before anything else reads the request.
    if matches!(*req.method(), Method::CONNECT | Method::TRACE) {
        // CONNECT would open a tunnel; TRACE would echo credentials back
        // (cross-site tracing): neither is ever forwarded.
        return Err(Failure::Method {
            allow: PROXIED_METHODS,
        });
    }
    let host = normalize::check_head(req.uri(), req.headers(), &gate.proxy_owned)?;
    // RFC 9112 §3.2: an HTTP/1.1 request carries `Host`, whatever its target.
    // And a request with no host at all (HTTP/1.0, HTTP/2 without
    // `:authority`) would skip every host-bound route: refused too.
    let http11_without_host =
        req.version() == Version::HTTP_11 && !req.headers().contains_key(header::HOST);
    if host.is_none() || http11_without_host {
        return Err(normalize::Refusal::HostRequired.into());
    }
    let target = normalize::normalize_uri(req.uri()).inspect_err(|_| {
        record.path = req.uri().path().to_owned();
    })?;
    // Logged from here on, whatever happens next.
    record.path.clone_from(&target.path);
    let now = shared.clock.unix_now();
    let client = Key::ip(record.client_ip);

    // 2. CORS preflight: answered here, never forwarded.
    if let Flow::Respond(res) = gate.cors.stage(req.method(), req.headers())? {
        return Ok(*res);
    }

    // 3. Rate limit per client IP; what is for gatehouse itself to answer.
    if let Some(limiter) = &gate.per_ip {
        let label = rate_limit::PER_IP;
        rate_limit::enforce(
            &shared.store,
            &shared.metrics,
            label,
            limiter,
            &client,
            rate,
        )
        .await?;
    }
    if let Flow::Respond(res) = max_forwards_zero(&req) {
        return Ok(*res);
    }

    // 4. Route to a target; its method rule and its limit per client IP.
    let host_name = host.as_ref().map(Canonical::name);
    let (route, destination) = gate.route(req.method(), host_name, &target.path);
    record.route = destination.metrics.clone();
    let sessions = &gate.config.auth.sessions;
    if let Target::Endpoint(endpoint) = destination.target {
        let spec = endpoint.spec();
        if !spec.methods.contains(req.method()) {
            return Err(Failure::Method { allow: spec.allow });
        }
        // A sign-in or sign-out form posted from another site (SPEC §9).
        if sessions.enabled && spec.csrf && *req.method() == Method::POST {
            csrf(gate, shared, &route.name, &req, host.as_ref())?;
        }
    }
    // An endpoint's limit may count some methods only (the sign-in page is
    // not a login attempt; its form is).
    let counted = match destination.target {
        Target::Endpoint(endpoint) => endpoint.spec().limited.contains(req.method()),
        Target::Upstream(_) => true,
    };
    if let Some(limit) = destination.limit.as_ref().filter(|_| counted) {
        limited(shared, limit, &client, rate).await?;
    }

    // 5. Authenticate, then authorize; then the limit per principal.
    let principal = match &route.auth {
        RouteAuth::Deny => return Err(Failure::Denied),
        RouteAuth::None => None,
        RouteAuth::Any(methods) => 'auth: {
            let cookie = sessions.enabled.then_some(sessions.cookie.as_str());
            let checkers = authn::Checkers {
                verifier: &gate.verifier,
                api_keys: &gate.api_keys,
                revoked: shared.store.revoked(),
                metrics: &shared.metrics,
                sessions: cookie.map(|_| authn::SessionCheck {
                    store: &shared.store,
                    users: &gate.users,
                }),
            };
            let keys = &gate.config.auth.api_keys;
            let query = target.query.as_deref();
            let param = query.and(keys.query_param.as_deref());
            let creds =
                authn::credentials(req.headers(), query, methods, &keys.header, param, cookie);
            let p = match authn::authenticate(&checkers, &route.name, methods, &creds, now).await {
                Ok(p) => p,
                // An endpoint for which an ended session is done already
                // (signing out): it clears the cookie (its form was
                // checked for CSRF above).
                Err(AuthError::SessionEnded)
                    if matches!(destination.target,
                        Target::Endpoint(e) if e.spec().ended_session_done) =>
                {
                    break 'auth None;
                }
                Err(cause) if sessions.enabled && methods.contains(&AuthMethod::Session) => {
                    return Err(sign_in(gate, route, cause, &req, &target));
                }
                Err(cause) => return Err(cause.into()),
            };
            // Known from here on: a refusal below (CSRF, roles) is logged
            // with who was refused.
            record.user = Some(p.user.clone());
            record.auth_method = Some(p.scheme.as_str());
            if p.scheme == Scheme::Session {
                let websocket = fwd::is_websocket_upgrade(req.headers());
                if session::needs_csrf(req.method(), websocket) {
                    csrf(gate, shared, &route.name, &req, host.as_ref())?;
                }
            }
            authz::authorize(&p, &route.roles, &destination.metrics, &shared.metrics)?;
            Some(p)
        }
    };
    if let (Some(p), Some(limit)) = (&principal, &destination.limit) {
        limited(shared, limit, &Key::Principal(p.user.clone()), rate).await?;
    }
    // Then the quotas (SPEC §11); a route without any pays nothing here.
    let admitted = if destination.quotas.is_empty() {
        None
    } else {
        let admit = quota::admit(
            &gate.config.quotas,
            &destination.quotas,
            principal.as_deref(),
            record.client_ip,
            shared,
            now,
            rate,
        );
        // Boxed, as what it owes: a route without quotas carries a `None`.
        Box::pin(admit).await?.map(Box::new)
    };

    // 6. The target answers.
    match destination.target {
        Target::Endpoint(endpoint) => {
            let cx = endpoints::Cx {
                tokens: crate::auth::tokens::TokenCx {
                    issuer: &gate.issuer,
                    users: &gate.users,
                    hasher: &shared.hasher,
                    store: &shared.store,
                    login_policy: &gate.config.auth.login,
                    metrics: &shared.metrics,
                },
                body_read_timeout: gate.config.server.body_read_timeout,
                sessions,
                session_login: &gate.config.auth.endpoints.session_login,
                quotas: &gate.principal_quotas,
                jwks: gate.assertion.as_ref().map(Signer::jwks),
                oidc: gate.oidc.as_ref(),
                path: &target.path,
                host: host.as_ref().and_then(|h| h.value().to_str().ok()),
                leeway: gate.config.auth.jwt.leeway.as_secs(),
            };
            // Boxed, like every rare path: the request's future stays small
            // (hyper moves it into place for every request).
            if matches!(endpoint, Endpoint::OidcStart | Endpoint::OidcCallback) {
                let answer = endpoints::answer_oidc(endpoint, &cx, req, now);
                return Ok(Box::pin(answer).await?);
            }
            let answer = endpoints::answer(endpoint, &cx, req, principal, now);
            Ok(Box::pin(answer).await?)
        }
        Target::Upstream(index) => {
            // What a session opens ends with it (SPEC §9).
            let ended = principal
                .as_deref()
                .and_then(|p| session_ended(gate, shared, p));
            let up = &gate.upstreams[index];
            let assertion = match (&gate.assertion, principal.as_deref()) {
                (Some(signer), Some(p)) => Some((signer, signed(signer, p, &up.audience, now)?)),
                _ => None,
            };
            let mut outbound = outbound(gate, record, peer, req, host, &target, principal)?;
            if let Some((signer, value)) = assertion {
                outbound
                    .parts
                    .headers
                    .insert(signer.header().clone(), value);
            }
            if let Some(upgrade) = &mut outbound.upgrade {
                upgrade.ended = ended.clone().map(|e| (e, SESSION_WATCH));
            }
            let forwarded = forward
                .forward(up, outbound, &shared.tunnels, &shared.metrics)
                .await;
            if let Some(admitted) = &admitted {
                let failed = forwarded.as_ref().err();
                quota::settle(admitted, failed, &shared.store, &shared.metrics);
            }
            let forwarded = forwarded?;
            record.upstream = Some(forwarded.upstream_elapsed);
            let mut response = match ended {
                Some(ended) => forwarded.response.map(|b| b.watched(ended, SESSION_WATCH)),
                None => forwarded.response,
            };
            if !destination.quotas.is_empty() {
                response = quota::response(
                    &gate.config.quotas,
                    &destination.quotas,
                    admitted.map(|a| *a),
                    response,
                    &shared.store,
                    &shared.metrics,
                );
            }
            Ok(response)
        }
    }
}

/// A fresh signed identity assertion for `p` (SPEC §12), for the backend
/// `audience`. A key that cannot sign is gatehouse's own failure: 500,
/// never a request forwarded without the assertion the backend expects.
fn signed(
    signer: &Signer,
    p: &Principal,
    audience: &str,
    now: u64,
) -> Result<HeaderValue, Failure> {
    let who = Subject {
        sub: &p.user,
        roles: &p.roles,
        method: p.scheme.as_str(),
        // A verified email of a provider sign-in (SPEC §10).
        email: p.email.as_ref().and_then(|e| e.to_str().ok()),
        sid: p.sid.as_deref(),
    };
    signer.sign(&who, audience, now).ok_or(Failure::Unsigned)
}

/// The answer to a request on a route with `session` that authentication
/// refused: sent to sign in, or the plain refusal.
fn sign_in<B>(
    gate: &Gate,
    route: &crate::config::Route,
    cause: crate::auth::AuthError,
    req: &Request<B>,
    target: &normalize::Target,
) -> Failure {
    let keys = &gate.config.auth.api_keys;
    // The path and query to come back to, without an API key.
    let query = match (target.query.as_deref(), &keys.query_param) {
        (Some(q), Some(param)) => authn::strip_query_param(q, param),
        (q, _) => q.map(str::to_owned),
    };
    let back = match query {
        Some(q) => format!("{}?{q}", target.path),
        None => target.path.clone(),
    };
    let config = &gate.config.auth;
    match session::sign_in(
        cause,
        route.unauthenticated,
        req.method(),
        req.headers(),
        &back,
        &config.sessions,
        &config.endpoints.session_login,
    ) {
        Some(answer) => Failure::SignIn(Box::new(answer)),
        None => cause.into(),
    }
}

/// SPEC §9's CSRF check for a request riding a session (or posting a
/// sign-in or sign-out form), counted per route when refused.
fn csrf<B>(
    gate: &Gate,
    shared: &Shared,
    route: &str,
    req: &Request<B>,
    host: Option<&Canonical>,
) -> Result<(), Failure> {
    let Some(host) = host else {
        return Err(normalize::Refusal::HostRequired.into());
    };
    csrf::check(req.headers(), host, &gate.csrf).map_err(|why| {
        shared
            .metrics
            .csrf_rejected
            .with_label_values(&[route])
            .inc();
        why.into()
    })
}

/// How often a stream or tunnel a session opened asks whether the session
/// has ended (SPEC §9: closed within 5 s of a logout or revocation, on every
/// replica — revocations reach the others through the store at once).
const SESSION_WATCH: std::time::Duration = std::time::Duration::from_secs(1);

/// "Has this session ended?" for a session principal: revoked (a logout on
/// any replica), or — for a password session — its user removed or
/// disabled in the users file (the next request ends it in the store).
fn session_ended(gate: &Gate, shared: &Shared, p: &Principal) -> Option<crate::body::Ended> {
    if p.scheme != Scheme::Session {
        return None;
    }
    let sid = p.sid.clone()?;
    let store = shared.store.clone();
    let clock = shared.clock.clone();
    let users = p
        .from_users_file
        .then(|| (gate.users.clone(), p.user.clone()));
    Some(Arc::new(move || {
        let revoked = store.revoked().check(None, Some(&sid), clock.unix_now())
            == crate::store::Revocation::Revoked;
        revoked
            || users
                .as_ref()
                .is_some_and(|(users, name)| users.get(name).is_none_or(|user| user.disabled))
    }))
}

/// Enforces a route's limit for `key`, counting a refusal where the limit
/// says (the login limit in `gatehouse_logins_total`).
async fn limited(
    shared: &Shared,
    limit: &RouteLimit,
    key: &Key,
    rate: &mut Option<Decision>,
) -> Result<(), rate_limit::RateLimited> {
    let (store, metrics) = (&shared.store, &shared.metrics);
    rate_limit::enforce(store, metrics, &limit.label, &limit.limiter, key, rate)
        .await
        .inspect_err(|_| {
            if let Some(counter) = &limit.also_counts {
                counter.inc();
            }
        })
}

/// The request as it goes upstream: the normalized path (an API key in the
/// query removed), headers rewritten (SPEC §3.7), the body limited, and a
/// WebSocket upgrade (the only one relayed) prepared.
fn outbound<B>(
    gate: &Gate,
    record: &Record,
    peer: &Peer,
    mut req: Request<B>,
    host: Option<Canonical>,
    target: &normalize::Target,
    principal: Option<Arc<Principal>>,
) -> Result<Outbound<B>, Failure>
where
    B: http_body::Body<Data = Bytes>,
{
    let config = &gate.config;
    let query = match (target.query.as_deref(), &config.auth.api_keys.query_param) {
        (Some(q), Some(param)) => authn::strip_query_param(q, param),
        (q, _) => q.map(str::to_owned),
    };
    let path = normalize::path_and_query(&target.path, query.as_deref())?;

    let limit = config.server.max_request_body;
    if content_length(req.headers()).is_some_and(|len| len > limit) {
        return Err(BodyError::TooLarge { limit }.into());
    }

    // Only a WebSocket upgrade is relayed (SPEC §3.7); any other `Upgrade`
    // (`h2c`, custom protocols) is stripped with the hop-by-hop headers, so
    // the backend never switches and no tunnel can skip authentication.
    let websocket = req.version() == Version::HTTP_11 && fwd::is_websocket_upgrade(req.headers());
    let upgrade = websocket.then(|| ClientUpgrade {
        on: hyper::upgrade::on(&mut req),
        conn: peer.conn.clone(),
        idle_timeout: config.server.idle_timeout,
        ended: None,
    });
    // Any other recipient of an OPTIONS gets one hop fewer (RFC 9110 §7.6.2).
    if req.method() == Method::OPTIONS {
        if let Some(n) = max_forwards(req.headers()) {
            req.headers_mut()
                .insert(header::MAX_FORWARDS, HeaderValue::from(n.saturating_sub(1)));
        }
    }

    let identity = principal
        .as_deref()
        .map(|p| authn::identity_headers(config, p));
    let (mut parts, body) = req.into_parts();
    // gatehouse's own cookie never reaches the app, even with sessions
    // switched off since it was set; the app's cookies pass.
    crate::auth::sessions::strip(&mut parts.headers, &config.auth.sessions.cookie);
    fwd::rewrite_request(
        &mut parts.headers,
        &Outgoing {
            peer_ip: peer.addr.ip(),
            from_trusted_proxy: peer.trusted,
            host: host.as_ref().map(Canonical::value),
            request_id_header: &config.identity.request_id,
            request_id: &record.request_id,
            owned: &gate.identity_owned,
            remove: &gate.strip,
            identity: identity.as_ref().map_or(&[], |h| &h[..]),
            websocket,
        },
    );
    // A verified email (SPEC §10); client copies went with the identity
    // headers above.
    if let Some(email) = principal.as_deref().and_then(|p| p.email.clone()) {
        parts.headers.insert(config.identity.email.clone(), email);
    }
    Ok(Outbound {
        parts,
        path,
        body: Limited::new(body, limit, config.server.body_read_timeout),
        upgrade,
    })
}

/// What gatehouse proxies, for the `Allow` of a refused CONNECT or TRACE and
/// of an `OPTIONS` it answers itself.
const PROXIED_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// RFC 9110 §7.6.2: an `OPTIONS` with `Max-Forwards: 0` is for the first
/// recipient to answer (a TRACE never gets this far).
fn max_forwards_zero<B>(req: &Request<B>) -> Flow {
    if req.method() != Method::OPTIONS || max_forwards(req.headers()) != Some(0) {
        return Flow::Continue;
    }
    let mut res = Response::new(Body::empty());
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(PROXIED_METHODS));
    Flow::Respond(Box::new(res))
}

/// `Max-Forwards` as a number, when it is one (RFC 9110 §7.6.2).
fn max_forwards(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::MAX_FORWARDS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Whether an answer means the request body was not read to its end (a
/// stalled or oversized body).
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

#[cfg(test)]
mod tests;
