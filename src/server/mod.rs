//! Listeners, connections, reload and shutdown.
//!
//! A [`Gateway`] owns the current config *generation* (the request pipeline's
//! [`Gate`] and the TLS config) behind an `ArcSwap`: requests and handshakes
//! read it without a lock, and a reload swaps it whole — or, if the new config
//! fails to load, keeps the old one and says why. Listeners are bound
//! separately ([`Listeners::bind`]) so that every config error is found before
//! any port is bound.

pub mod admin;
pub mod conn;
pub mod redirect;
pub mod tls;
mod upkeep;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::activity::Activity;
use crate::config::{self, Config, ConfigError};
use crate::metrics::{Listener, Metrics};
use crate::pipeline::{self, Gate, Shared};
use conn::Limits;

/// `/readyz` fails when the default upstream has not accepted a TCP
/// connection for this long (SPEC §6).
const READY_WITHIN: Duration = Duration::from_secs(10);

/// Why gatehouse could not start (or reload).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("{file}: store: {reason}")]
    Store { file: PathBuf, reason: String },
    #[error("{file}: {source}")]
    Keys {
        file: PathBuf,
        source: crate::auth::jwt::KeyError,
    },
}

/// One config generation: everything swapped together on reload.
pub struct Generation {
    pub gate: Arc<Gate>,
    pub tls: Arc<rustls::ServerConfig>,
}

impl Generation {
    /// Builds a generation; fails without side effects other than creating
    /// a missing self-signed certificate when the config asks for it.
    pub fn build(
        config: Config,
        metrics: &Metrics,
        carried: &pipeline::Carried,
    ) -> Result<Self, StartError> {
        let certified = tls::load(&config.tls)?;
        let file = config.path.clone();
        let gate = Gate::new(Arc::new(config), carried, metrics)
            .map_err(|source| StartError::Keys { file, source })?;
        metrics.tls_cert_expiry.set(certified.not_after as f64);
        for up in &gate.config.upstreams {
            metrics.register_upstream(&up.name);
        }
        Ok(Generation {
            gate: Arc::new(gate),
            tls: certified.config,
        })
    }
}

/// The bound listening sockets.
pub struct Listeners {
    pub https: TcpListener,
    pub http: Option<TcpListener>,
    pub admin: Option<TcpListener>,
}

impl Listeners {
    /// Binds the addresses of `listen`.
    pub async fn bind(listen: &config::Listen) -> std::io::Result<Self> {
        async fn bind(addr: SocketAddr, what: &str) -> std::io::Result<TcpListener> {
            TcpListener::bind(addr).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot listen on {addr} ({what}): {e}"))
            })
        }
        Ok(Listeners {
            https: bind(listen.https, "listen.https").await?,
            http: match listen.http {
                Some(a) => Some(bind(a, "listen.http").await?),
                None => None,
            },
            admin: match listen.admin {
                Some(a) => Some(bind(a, "listen.admin").await?),
                None => None,
            },
        })
    }

    /// The bound addresses: (https, http, admin).
    pub fn local_addrs(&self) -> (SocketAddr, Option<SocketAddr>, Option<SocketAddr>) {
        let addr = |l: &TcpListener| l.local_addr().ok();
        (
            addr(&self.https).unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
            self.http.as_ref().and_then(addr),
            self.admin.as_ref().and_then(addr),
        )
    }
}

/// A running (or ready to run) gatehouse. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    generation: ArcSwap<Generation>,
    shared: Arc<Shared>,
    config_path: PathBuf,
    https_port: AtomicU16,
    epoch: Instant,
    /// Milliseconds since `epoch` of the last successful probe of the
    /// default upstream, plus one (0: never).
    upstream_ok_ms: AtomicU64,
    shutdown: CancellationToken,
    conns: TaskTracker,
}

impl Gateway {
    /// Prepares gatehouse from a loaded config: certificates, keys, users,
    /// the store. Binds nothing.
    pub async fn new(config: Config, registry: prometheus::Registry) -> Result<Self, StartError> {
        let metrics = Metrics::new(registry)?;
        let config_path = config.path.clone();
        let store = crate::store::Store::open(&config.store, config.auth.jwt.access_ttl)
            .await
            .map_err(|e| StartError::Store {
                file: config_path.clone(),
                reason: e.to_string(),
            })?;
        store.spawn_upkeep();
        let carried = pipeline::Carried::default();
        let generation = Generation::build(config, &metrics, &carried)?;
        Ok(Gateway {
            inner: Arc::new(Inner {
                generation: ArcSwap::from_pointee(generation),
                shared: Arc::new(Shared {
                    metrics,
                    store,
                    hasher: crate::auth::password::Hasher::new(),
                    carried,
                    tunnels: TaskTracker::new(),
                    clock: Arc::new(crate::clock::SystemClock),
                }),
                config_path,
                https_port: AtomicU16::new(0),
                epoch: Instant::now(),
                upstream_ok_ms: AtomicU64::new(0),
                shutdown: CancellationToken::new(),
                conns: TaskTracker::new(),
            }),
        })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.shared.metrics
    }

    /// The config currently in force.
    pub fn config(&self) -> Arc<Config> {
        self.inner.generation.load().gate.config.clone()
    }

    /// Re-reads the config file (and the certificates and keys it names) and
    /// swaps it in. On failure the running config stays, and the error is
    /// logged and counted.
    pub fn reload(&self) -> Result<(), StartError> {
        let path = &self.inner.config_path;
        let metrics = &self.inner.shared.metrics;
        let result = config::load(path)
            .map_err(StartError::from)
            .and_then(|c| Generation::build(c, metrics, &self.inner.shared.carried));
        match result {
            Ok(generation) => {
                let old = self.inner.generation.load();
                if old.gate.config.listen != generation.gate.config.listen {
                    tracing::warn!(
                        file = %path.display(),
                        "listen addresses changed: they take effect at the next restart"
                    );
                }
                if old.gate.config.store != generation.gate.config.store {
                    tracing::warn!(
                        file = %path.display(),
                        "store settings changed: they take effect at the next restart"
                    );
                }
                self.inner.generation.store(Arc::new(generation));
                metrics.config_reloads.with_label_values(&["success"]).inc();
                tracing::info!(file = %path.display(), "config reloaded");
                Ok(())
            }
            Err(e) => {
                metrics.config_reloads.with_label_values(&["error"]).inc();
                tracing::error!(
                    file = %path.display(),
                    error = %e,
                    "config reload failed; keeping the running config"
                );
                Err(e)
            }
        }
    }

    /// Stops accepting and lets in-flight requests finish (up to
    /// `server.shutdown_grace`); [`Gateway::run`] then returns.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    /// Readiness for `/readyz`.
    pub fn readiness(&self) -> admin::Readiness {
        let ok = self.inner.upstream_ok_ms.load(Ordering::Relaxed);
        let now = self.inner.epoch.elapsed().as_millis() as u64 + 1;
        if ok == 0 || now.saturating_sub(ok) > READY_WITHIN.as_millis() as u64 {
            let generation = self.inner.generation.load();
            let up = generation.gate.default_upstream();
            return Err(format!(
                "default upstream {} accepted no TCP connection in the last {}s",
                up.name,
                READY_WITHIN.as_secs()
            ));
        }
        self.inner
            .shared
            .store
            .readiness(crate::clock::unix_now())?;
        // An identity provider not discovered yet (SPEC §10): its sign-in
        // answers 503, and this says which.
        let generation = self.inner.generation.load();
        if let Some(oidc) = &generation.gate.oidc {
            let missing: Vec<String> = oidc
                .missing()
                .into_iter()
                .map(|(id, why)| format!("identity provider {id} not discovered yet: {why}"))
                .collect();
            if !missing.is_empty() {
                return Err(missing.join("; "));
            }
        }
        Ok(())
    }

    /// Serves on `listeners` until [`Gateway::shutdown`], then drains.
    pub async fn run(self, listeners: Listeners) {
        let (https_addr, _, _) = listeners.local_addrs();
        self.inner
            .https_port
            .store(https_addr.port(), Ordering::Relaxed);
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(self.clone().accept(listeners.https, Listener::Https));
        if let Some(l) = listeners.http {
            tasks.spawn(self.clone().accept(l, Listener::Http));
        }
        if let Some(l) = listeners.admin {
            tasks.spawn(self.clone().accept(l, Listener::Admin));
        }
        tasks.spawn(self.clone().probe_upstream());
        tasks.spawn(self.clone().evict_idle_rate_limit_keys());
        tasks.spawn(self.clone().discover_providers());

        self.inner.shutdown.cancelled().await;
        while tasks.join_next().await.is_some() {}
        let grace = self
            .inner
            .generation
            .load()
            .gate
            .config
            .server
            .shutdown_grace;
        tracing::info!(grace = ?grace, "shutting down: finishing in-flight requests");
        self.inner.conns.close();
        self.inner.shared.tunnels.close();
        let drained = tokio::time::timeout(grace, async {
            self.inner.conns.wait().await;
            self.inner.shared.tunnels.wait().await;
        })
        .await;
        match drained {
            Ok(()) => tracing::info!("all connections finished"),
            Err(_) => {
                tracing::warn!("shutdown grace period over: closing the remaining connections")
            }
        }
        // What the quotas counted since the last write-behind (SPEC §11).
        self.inner.shared.store.flush_quotas().await;
    }

    async fn accept(self, listener: TcpListener, which: Listener) {
        let open = Arc::new(AtomicUsize::new(0));
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = self.inner.shutdown.cancelled() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly.
                    tracing::warn!(listener = which.as_str(), error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let max = self
                .inner
                .generation
                .load()
                .gate
                .config
                .server
                .max_connections;
            if open.load(Ordering::Relaxed) >= max {
                tracing::debug!(
                    listener = which.as_str(),
                    max,
                    "connection refused: max_connections reached"
                );
                drop(tcp);
                continue;
            }
            let _ = tcp.set_nodelay(true);
            // The slot is held by the connection's activity: an upgraded
            // tunnel keeps it after the HTTP connection has handed over.
            let guard = ConnGuard::new(open.clone(), &self.inner.shared.metrics, which);
            let activity = Activity::new(Some(Box::new(guard)));
            let this = self.clone();
            self.inner.conns.spawn(async move {
                match which {
                    Listener::Https => this.serve_https(tcp, peer, activity).await,
                    Listener::Http | Listener::Admin => {
                        this.serve_plain(tcp, which, activity).await
                    }
                }
            });
        }
    }

    async fn serve_https(self, tcp: TcpStream, peer: SocketAddr, activity: Arc<Activity>) {
        let generation = self.inner.generation.load_full();
        let limits = Limits::from_config(&generation.gate.config.server);
        let acceptor = TlsAcceptor::from(generation.tls.clone());
        drop(generation);
        let metrics = &self.inner.shared.metrics;
        let tls = match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(tcp)).await
        {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                metrics.tls_handshake_errors.inc();
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                metrics.tls_handshake_errors.inc();
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        };
        let inner = self.inner.clone();
        let handler = move |req, conn: &Arc<Activity>| {
            // Each request sees the generation current when it arrives.
            let gate = inner.generation.load().gate.clone();
            let shared = inner.shared.clone();
            // Not boxed: hyper moves the request's future into place by
            // value, but an allocation of its size costs more than the copies
            // (`benches/load/callgrind.sh`); keep the future small instead.
            pipeline::handle(gate, shared, peer, conn.clone(), req, pipeline::Upstreams)
        };
        conn::serve(tls, activity, limits, self.inner.shutdown.clone(), handler).await;
    }

    async fn serve_plain(self, tcp: TcpStream, which: Listener, activity: Arc<Activity>) {
        let limits = Limits::from_config(&self.inner.generation.load().gate.config.server);
        let this = self.clone();
        let handler = move |req: http::Request<hyper::body::Incoming>, _: &Arc<Activity>| {
            let this = this.clone();
            async move {
                match which {
                    Listener::Admin if req.uri().path().starts_with(admin::QUOTA_PATH) => {
                        let gate = this.inner.generation.load().gate.clone();
                        let shared = &this.inner.shared;
                        let now = shared.clock.unix_now();
                        admin::quota(&req, &gate.config.quotas, &shared.store, now).await
                    }
                    Listener::Admin => admin::handle(
                        &req,
                        &this.inner.shared.metrics,
                        || this.readiness(),
                        || {
                            let generation = this.inner.generation.load();
                            generation.gate.assertion.as_ref().map(|s| s.jwks())
                        },
                    ),
                    _ => redirect::redirect(&req, this.inner.https_port.load(Ordering::Relaxed)),
                }
            }
        };
        conn::serve(tcp, activity, limits, self.inner.shutdown.clone(), handler).await;
    }
}

/// Counts an open connection (for `max_connections` and the gauge).
struct ConnGuard {
    open: Arc<AtomicUsize>,
    gauge: prometheus::IntGauge,
}

impl ConnGuard {
    fn new(open: Arc<AtomicUsize>, metrics: &Metrics, which: Listener) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        let gauge = metrics
            .connections_open
            .with_label_values(&[which.as_str()]);
        gauge.inc();
        ConnGuard { open, gauge }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.gauge.dec();
    }
}
