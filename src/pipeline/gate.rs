//! The assembly of the pipeline: [`Gate`], everything one config generation
//! needs to answer requests (swapped whole on reload, so a request sees one
//! consistent config from start to end); [`Shared`], the process-wide parts
//! that outlive a generation; and [`Carried`], what a reload hands on.
//!
//! The route table holds gatehouse's own endpoints first (from
//! `crate::endpoints::TABLE`, at their configured paths), then the config's
//! `routes`: every request is routed to a [`Target`] the same way.

use std::sync::Arc;

use http::header::{self, HeaderName};
use tokio_util::task::TaskTracker;

use super::cors::Cors;
use super::csrf::Trusted;
use super::rate_limit::{self, Limiter, RouteLimit};
use super::route::RouteTable;
use crate::auth::api_key::ApiKeys;
use crate::auth::assertion::{default_issuer, Signer, DEFAULT_ASSERTION_HEADER};
use crate::auth::jwt::{KeyError, OwnKeys, Verifier};
use crate::auth::password::Hasher;
use crate::auth::tokens::Issuer;
use crate::auth::users::UsersFile;
use crate::clock::Clock;
use crate::config::{AuthMethod, Config, Route, RouteAuth, Unauthenticated};
use crate::endpoints::{self, Endpoint};
use crate::metrics::{Metrics, RouteMetrics};
use crate::upstream::headers as fwd;
use crate::upstream::Upstream;

/// What a route sends its requests to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// An upstream, by its index in `config.upstreams`.
    Upstream(usize),
    /// One of gatehouse's own endpoints.
    Endpoint(Endpoint),
}

/// A route's target and limit, beside the route itself in [`RouteTable`].
#[derive(Debug)]
pub struct Destination {
    pub target: Target,
    pub limit: Option<RouteLimit>,
    /// The route's request metrics, at hand.
    pub metrics: Arc<RouteMetrics>,
    /// The quotas on the route: indexes into `config.quotas`, in config
    /// order (empty: the route pays nothing for quotas).
    pub quotas: Vec<usize>,
}

/// Everything one config generation needs to answer requests.
pub struct Gate {
    pub config: Arc<Config>,
    /// gatehouse's endpoints, then `config.routes`, then `default_route`.
    pub routes: RouteTable,
    /// One per route of `routes`, in the same order.
    destinations: Vec<Destination>,
    default_destination: Destination,
    /// Same order as `config.upstreams`.
    pub upstreams: Vec<Upstream>,
    /// The quotas that can count an authenticated principal (those on at
    /// least one route that authenticates), for `/auth/me`.
    pub principal_quotas: Vec<crate::config::Quota>,
    pub verifier: Verifier,
    pub issuer: Issuer,
    pub api_keys: ApiKeys,
    pub users: Arc<UsersFile>,
    pub cors: Cors,
    /// Origins a session-borne unsafe request may come from besides this one.
    pub csrf: Trusted,
    pub per_ip: Option<Arc<Limiter>>,
    /// Headers only gatehouse sets; an `_` spelling of one is refused (SPEC §3.2).
    pub proxy_owned: Vec<HeaderName>,
    /// Identity headers: client copies are removed from every request.
    pub identity_owned: Vec<HeaderName>,
    /// Removed before forwarding: the API key header, and `Authorization`
    /// when `forward_authorization` is false.
    pub strip: Vec<HeaderName>,
    /// Signs the identity assertion (SPEC §12), when configured.
    pub assertion: Option<Signer>,
    /// The identity providers of `auth.oidc` (SPEC §10), when configured.
    pub oidc: Option<crate::auth::oidc::Providers>,
}

impl Gate {
    /// Builds a generation's pipeline; fails if a configured key cannot be
    /// read (creating `secret_file` when it is absent).
    pub fn new(config: Arc<Config>, carry: &Carried, metrics: &Metrics) -> Result<Self, KeyError> {
        let limiters = &carry.limiters;
        let own_keys = OwnKeys::load(&config.auth.jwt)?;
        let verifier = Verifier::new(&config.auth.jwt, &own_keys, &carry.jwks)?;
        let users = UsersFile::load(&config.auth.users_file).map_err(|reason| KeyError {
            key: "auth.users_file".into(),
            reason,
        })?;
        users.watch();
        let oidc = if config.auth.oidc.providers.is_empty() {
            None
        } else {
            let providers = crate::auth::oidc::Providers::new(&config.auth.oidc, &carry.oidc)
                .map_err(|(i, reason)| KeyError {
                    key: format!("auth.oidc.providers[{i}]"),
                    reason,
                })?;
            // Every provider's series exist from the start, at 0.
            for p in &config.auth.oidc.providers {
                for result in ["success", "denied", "invalid", "provider_error"] {
                    metrics
                        .oidc_logins
                        .with_label_values(&[p.id.as_str(), result]);
                }
            }
            Some(providers)
        };
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
        let assertion = id
            .assertion
            .as_ref()
            .map(|a| Signer::load(a, &default_issuer(&config.tls.cert)))
            .transpose()
            .map_err(|e| KeyError {
                key: "identity_headers.assertion".into(),
                reason: e.to_string(),
            })?;
        let mut identity_owned = vec![
            id.user.clone(),
            id.roles.clone(),
            id.method.clone(),
            id.email.clone(),
        ];
        // A client-sent assertion is always removed, even with none
        // configured (a backend may still trust that header name).
        identity_owned.push(assertion.as_ref().map_or_else(
            || HeaderName::from_static(DEFAULT_ASSERTION_HEADER),
            |s| s.header().clone(),
        ));
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

        // gatehouse's endpoints come first: they are matched before `routes`.
        let login_limit = config.rate_limits.login.map(|l| RouteLimit {
            label: "login".to_owned(),
            limiter: limiters.get("login", l),
            also_counts: Some(metrics.logins.with_label_values(&["rate_limited"])),
        });
        let mut routes = Vec::with_capacity(endpoints::TABLE.len() + config.routes.len());
        let mut destinations = Vec::with_capacity(routes.capacity());
        let sessions = config.auth.sessions.enabled;
        for spec in &endpoints::TABLE {
            // With sessions off, the sign-in page's path is no endpoint: it
            // is routed like any other (SPEC §9); so are the provider
            // endpoints without providers (SPEC §10).
            if !spec.endpoint.enabled(&config.auth) {
                continue;
            }
            // Likewise the JWKS path without an assertion.
            if spec.endpoint == Endpoint::Jwks && config.identity.assertion.is_none() {
                continue;
            }
            let mut auth = spec.auth.to_vec();
            if sessions && spec.session_too {
                auth.push(AuthMethod::Session);
            }
            routes.push(Route {
                name: Arc::from(spec.name),
                pattern: spec.endpoint.pattern(&config.auth),
                methods: None,
                host: None,
                auth: if auth.is_empty() {
                    RouteAuth::None
                } else {
                    RouteAuth::Any(auth)
                },
                // An endpoint answers a browser without a session with the
                // 401 of SPEC §9's table, never a redirect.
                unauthenticated: Unauthenticated::Json,
                roles: Vec::new(),
                rate_limit: None,
                upstream: 0,
            });
            destinations.push(Destination {
                target: Target::Endpoint(spec.endpoint),
                limit: login_limit.clone().filter(|_| spec.login_limit),
                metrics: Arc::new(RouteMetrics::new(Arc::from(spec.name))),
                // gatehouse's own endpoints forward nothing: no quota.
                quotas: Vec::new(),
            });
        }
        let quotas_of = |r: &Route| -> Vec<usize> {
            let on = |q: &&crate::config::Quota| q.routes.contains(&r.name);
            let all = config.quotas.iter().enumerate();
            all.filter(|(_, q)| on(q)).map(|(i, _)| i).collect()
        };
        let route_limit = |r: &Route| {
            r.rate_limit.map(|limit| {
                let label = format!("route:{}", r.name);
                let limiter = limiters.get(&label, limit);
                RouteLimit {
                    label,
                    limiter,
                    also_counts: None,
                }
            })
        };
        for r in &config.routes {
            routes.push(r.clone());
            destinations.push(Destination {
                target: Target::Upstream(r.upstream),
                limit: route_limit(r),
                metrics: Arc::new(RouteMetrics::new(r.name.clone())),
                quotas: quotas_of(r),
            });
        }
        let default = &config.default_route;
        let default_destination = Destination {
            target: Target::Upstream(default.upstream),
            limit: route_limit(default),
            metrics: Arc::new(RouteMetrics::new(default.name.clone())),
            quotas: quotas_of(default),
        };
        let authenticates = |name: &Arc<str>| {
            let all = config.routes.iter().chain([&config.default_route]);
            all.filter(|r| r.name == *name)
                .any(|r| matches!(r.auth, RouteAuth::Any(_)))
        };
        let principal_quotas = config
            .quotas
            .iter()
            .filter(|q| q.routes.iter().any(authenticates))
            .cloned()
            .collect();
        Ok(Gate {
            principal_quotas,
            cors: Cors::new(&config.cors),
            csrf: Trusted::new(&config.auth.sessions.trusted_origins, &config.cors),
            per_ip: config
                .rate_limits
                .per_ip
                .map(|l| limiters.get(rate_limit::PER_IP, l)),
            routes: RouteTable::new(routes, default.clone()),
            destinations,
            default_destination,
            upstreams: config.upstreams.iter().map(Upstream::new).collect(),
            api_keys: ApiKeys::new(&config.auth.api_keys.keys),
            verifier,
            issuer,
            users,
            proxy_owned,
            identity_owned,
            strip,
            assertion,
            oidc,
            config,
        })
    }

    /// The route for a request, and where it goes.
    pub fn route(
        &self,
        method: &http::Method,
        host: Option<&str>,
        path: &str,
    ) -> (&Route, &Destination) {
        match self.routes.locate(method, host, path) {
            Some(i) => (&self.routes.routes()[i], &self.destinations[i]),
            None => (self.routes.default_route(), &self.default_destination),
        }
    }

    /// Where a request goes before it is routed (and if it never is).
    pub fn default_destination(&self) -> &Destination {
        &self.default_destination
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
    /// Identity providers as discovered (SPEC §10).
    pub oidc: crate::auth::oidc::Registry,
}

/// Process-wide parts that outlive a config generation.
pub struct Shared {
    pub metrics: Metrics,
    pub store: crate::store::Store,
    pub hasher: Hasher,
    pub carried: Carried,
    /// Upgraded (WebSocket) tunnels, so shutdown can wait for them.
    pub tunnels: TaskTracker,
    /// What time it is (token expiry, revocations, lockouts).
    pub clock: Arc<dyn Clock>,
}
