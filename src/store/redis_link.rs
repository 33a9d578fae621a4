//! The Redis store's way to its master (SPEC §2 `store`): one server named by
//! `store.url`, or whichever server the Redis Sentinels of `store.sentinels`
//! name, followed through failovers with the `redis` crate's own Sentinel
//! client.
//!
//! A [`Node`] is one master with two multiplexed connections (the crate's
//! connection managers, which reconnect with backoff): `conn` for
//! everything, and `durable` for the writes that must survive a failover,
//! each followed by `WAIT` — which holds up every later command on its
//! connection, so those writes have one of their own.
//!
//! A watcher task asks the master `INFO replication` every [`PROBE_EVERY`]
//! (every [`RETRY_EVERY`] while it does not answer, or at once when a
//! command failed): is it still the master, and how many replicas are in
//! sync (what [`Link::has_replica`] answers)? It pings the other connection
//! meanwhile, so that both reconnect soon after Redis is back, not on the
//! first request that needs them. With Sentinel the master is
//! looked up through the sentinels when it does not answer or says it is a
//! replica, and every [`ASK_SENTINELS_EVERY`] anyway (in case it is cut off
//! from the sentinels but not from us); a different answer replaces the
//! node. A URL's server that answers as a replica (a managed Redis moved its
//! primary) gets new connections, which look its name up again. Either event — a new master, or the master answering again after it
//! did not — bumps [`Link::changes`], so the revocation listener resubscribes
//! and the set is re-read at once.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use tokio::sync::{watch, Notify};

use super::StoreError;
use crate::config;

/// How often a healthy master is asked `INFO replication`.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How often an unreachable master is asked again (and, with Sentinel, the
/// sentinels asked where it is).
pub const RETRY_EVERY: Duration = Duration::from_millis(200);
/// The least time between two rounds of the watcher, however often it is
/// woken.
const MIN_GAP: Duration = Duration::from_millis(50);
/// How often the sentinels are asked while the master answers.
pub const ASK_SENTINELS_EVERY: Duration = Duration::from_secs(5);
/// The longest a lookup through the sentinels may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// One master and the connections to it.
pub struct Node {
    /// `host:port`, for logs (never the password).
    pub addr: String,
    /// For the revocation listener's pub/sub connection.
    pub client: redis::Client,
    pub conn: ConnectionManager,
    /// For writes followed by `WAIT`.
    pub durable: ConnectionManager,
}

impl Node {
    fn new(client: redis::Client) -> Result<Node, redis::RedisError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            // One attempt per reconnection: while Redis is down, commands
            // fail at once rather than queue behind a retry's backoff (the
            // watcher and the next command try again).
            .set_number_of_retries(0);
        Ok(Node {
            addr: client.get_connection_info().addr().to_string(),
            conn: client.get_connection_manager_lazy(config.clone())?,
            durable: client.get_connection_manager_lazy(config)?,
            client,
        })
    }
}

pub struct Link {
    /// `None`: a fixed URL.
    sentinel: Option<tokio::sync::Mutex<SentinelClient>>,
    /// The master; `None` until the sentinels named one.
    node: ArcSwapOption<Node>,
    /// Replicas in sync at the last probe (0: writes do not wait).
    replicas: AtomicUsize,
    /// Whether the master answered the last probe.
    healthy: AtomicBool,
    /// A lookup through the sentinels failed (for logging it once).
    lookup_failing: AtomicBool,
    /// Milliseconds since `started` of the last failed lookup (0: none).
    lookup_failed_at: AtomicU64,
    started: std::time::Instant,
    /// Wakes the watcher (a command failed).
    kick: Arc<Notify>,
    changes: watch::Sender<u64>,
}

impl Link {
    /// Prepares the way to the master without connecting (gatehouse starts
    /// while Redis is down).
    pub fn open(server: &config::RedisServer) -> Result<Arc<Link>, StoreError> {
        let (sentinel, node) = match server {
            config::RedisServer::Url { url } => {
                let client = redis::Client::open(url.expose())
                    .map_err(|e| StoreError::Broken(format!("store.url: {e}")))?;
                let node = Node::new(client).map_err(|e| StoreError::Broken(e.to_string()))?;
                (None, Some(Arc::new(node)))
            }
            config::RedisServer::Sentinel(s) => {
                let addrs = s
                    .sentinels
                    .iter()
                    .map(|(host, port)| redis::ConnectionAddr::Tcp(host.clone(), *port));
                let broken =
                    |e: redis::RedisError| StoreError::Broken(format!("store.sentinels: {e}"));
                let mut builder =
                    SentinelClientBuilder::new(addrs, &s.master_name, SentinelServerType::Master)
                        .map_err(broken)?;
                if let Some(password) = &s.password {
                    builder = builder.set_client_to_redis_password(password.expose());
                }
                if let Some(password) = &s.sentinel_password {
                    builder = builder.set_client_to_sentinel_password(password.expose());
                }
                let client = builder.build().map_err(broken)?;
                (Some(tokio::sync::Mutex::new(client)), None)
            }
        };
        Ok(Arc::new(Link {
            sentinel,
            node: ArcSwapOption::new(node),
            replicas: AtomicUsize::new(0),
            healthy: AtomicBool::new(false),
            lookup_failing: AtomicBool::new(false),
            lookup_failed_at: AtomicU64::new(0),
            started: std::time::Instant::now(),
            kick: Arc::new(Notify::new()),
            changes: watch::channel(0).0,
        }))
    }

    /// The master as last known. With Sentinel and none known yet (just
    /// started, or no task watches: the CLI), looks it up now — unless a
    /// lookup is under way or failed a moment ago: then `None` at once.
    pub async fn node(&self) -> Option<Arc<Node>> {
        if let Some(node) = self.node.load_full() {
            return Some(node);
        }
        let failed_at = self.lookup_failed_at.load(Ordering::Relaxed);
        let recently = failed_at != 0
            && self.elapsed_ms().saturating_sub(failed_at) < RETRY_EVERY.as_millis() as u64;
        if self.sentinel.is_some() && !recently {
            self.lookup(false).await;
        }
        self.node.load_full()
    }

    /// Whether a replica was in sync at the last look: then writes that
    /// must survive a failover wait for one.
    pub fn has_replica(&self) -> bool {
        self.replicas.load(Ordering::Relaxed) > 0
    }

    /// A replica did not acknowledge in time: writes stop waiting until the
    /// next probe finds one in sync again.
    pub fn replica_lagging(&self) {
        self.replicas.store(0, Ordering::Relaxed);
    }

    /// A command failed: look again soon.
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// Bumped when the master changed or answers again after it did not.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// Milliseconds since the link was opened, at least 1.
    fn elapsed_ms(&self) -> u64 {
        (self.started.elapsed().as_millis() as u64).max(1)
    }

    /// Starts the watcher; it ends when the link is dropped.
    pub fn spawn_watch(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let kick = self.kick.clone();
        tokio::spawn(async move {
            let mut last_asked: Option<tokio::time::Instant> = None;
            loop {
                let Some(link) = weak.upgrade() else { return };
                let ask = last_asked.is_none_or(|at| at.elapsed() >= ASK_SENTINELS_EVERY);
                let healthy = link.check(ask).await;
                if ask || !healthy {
                    last_asked = Some(tokio::time::Instant::now());
                }
                drop(link);
                tokio::time::sleep(MIN_GAP).await;
                let every = if healthy { PROBE_EVERY } else { RETRY_EVERY };
                tokio::select! {
                    _ = tokio::time::sleep(every - MIN_GAP) => {}
                    _ = kick.notified() => {}
                }
            }
        });
    }

    /// One round of the watcher; whether the master answered as master.
    async fn check(&self, ask_sentinels: bool) -> bool {
        let node = self.node.load_full();
        let probe = match &node {
            Some(node) => self.probe(node).await,
            None => Probe::Down,
        };
        let mut healthy = probe == Probe::Master;
        if self.sentinel.is_some() {
            if (ask_sentinels || !healthy) && self.lookup(true).await {
                if let Some(node) = self.node.load_full() {
                    healthy = self.probe(&node).await == Probe::Master;
                }
            }
        } else if let (Probe::Replica, Some(node)) = (probe, node) {
            // The URL's server was demoted (a managed Redis's failover):
            // new connections, with a new DNS lookup, may reach the master
            // (tried again each round while it answers as a replica).
            if let Ok(fresh) = Node::new(node.client.clone()) {
                self.node.store(Some(Arc::new(fresh)));
            }
        }
        if healthy && !self.healthy.swap(true, Ordering::Relaxed) {
            self.changed();
        } else if !healthy {
            self.healthy.store(false, Ordering::Relaxed);
            self.replicas.store(0, Ordering::Relaxed);
        }
        healthy
    }

    /// Asks `node` `INFO replication`: is it a master (noting its replicas
    /// in sync)? A server that refuses `INFO` counts as a master without
    /// replicas. Pings the `durable` connection meanwhile, so that it too
    /// finds out that it broke (and reconnects) before a write needs it.
    async fn probe(&self, node: &Node) -> Probe {
        let (mut conn, mut durable) = (node.conn.clone(), node.durable.clone());
        let mut info = redis::cmd("INFO");
        info.arg("replication");
        let ping = redis::cmd("PING");
        let (info, _) = tokio::join!(
            info.query_async::<String>(&mut conn),
            ping.query_async::<()>(&mut durable)
        );
        let refused = |e: &redis::RedisError| {
            matches!(
                e.kind(),
                redis::ErrorKind::Server(
                    redis::ServerErrorKind::ResponseError | redis::ServerErrorKind::NoPerm
                )
            )
        };
        match info.map(|text| replication(&text)) {
            Ok((true, in_sync)) => {
                self.replicas.store(in_sync, Ordering::Relaxed);
                Probe::Master
            }
            Err(e) if refused(&e) => {
                self.replicas.store(0, Ordering::Relaxed);
                Probe::Master
            }
            Ok((false, _)) => {
                if self.healthy.load(Ordering::Relaxed) {
                    tracing::warn!(server = %node.addr, "the redis store's server is a replica now: reconnecting");
                }
                Probe::Replica
            }
            Err(_) => Probe::Down,
        }
    }

    /// Asks the sentinels for the master (waiting for a lookup under way,
    /// or not); true if it is another server than before.
    async fn lookup(&self, wait: bool) -> bool {
        let Some(sentinel) = &self.sentinel else {
            return false;
        };
        let mut sentinel = if wait {
            sentinel.lock().await
        } else {
            match sentinel.try_lock() {
                Ok(guard) => guard,
                Err(_) => return false,
            }
        };
        let found = tokio::time::timeout(LOOKUP_TIMEOUT, sentinel.async_get_client()).await;
        drop(sentinel);
        let client = match found {
            Ok(Ok(client)) => client,
            failed => {
                self.lookup_failed_at
                    .store(self.elapsed_ms(), Ordering::Relaxed);
                if !self.lookup_failing.swap(true, Ordering::Relaxed) {
                    let error = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => format!("no answer within {LOOKUP_TIMEOUT:?}"),
                    };
                    tracing::warn!(%error, "the redis sentinels name no reachable master");
                }
                return false;
            }
        };
        if self.lookup_failing.swap(false, Ordering::Relaxed) {
            tracing::info!("the redis sentinels name a reachable master again");
        }
        let addr = client.get_connection_info().addr().to_string();
        let current = self.node.load_full();
        if current.as_ref().is_some_and(|node| node.addr == addr) {
            return false;
        }
        let node = match Node::new(client) {
            Ok(node) => node,
            Err(e) => {
                tracing::warn!(error = %e, master = %addr, "cannot connect to the redis master the sentinels name");
                return false;
            }
        };
        match &current {
            Some(old) => {
                tracing::warn!(from = %old.addr, to = %addr, "redis failover: the store follows the new master")
            }
            None => tracing::info!(master = %addr, "redis master found through the sentinels"),
        }
        self.node.store(Some(Arc::new(node)));
        self.replicas.store(0, Ordering::Relaxed);
        self.changed();
        true
    }
}

/// What a probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Master,
    /// It answers, as a replica.
    Replica,
    Down,
}

/// From `INFO replication`: whether the server is a master, and how many
/// replicas are online and acknowledged within the last two seconds
/// (replicas acknowledge every second).
fn replication(info: &str) -> (bool, usize) {
    let mut master = false;
    let mut in_sync = 0;
    for line in info.lines().map(str::trim) {
        if line == "role:master" {
            master = true;
            continue;
        }
        let Some((name, fields)) = line.split_once(':') else {
            continue;
        };
        let numbered = name
            .strip_prefix("slave")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !numbered {
            continue;
        }
        let field = |key: &str| {
            fields
                .split(',')
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        };
        let lag = field("lag").and_then(|l| l.parse::<u64>().ok());
        if field("state") == Some("online") && lag.is_some_and(|l| l <= 2) {
            in_sync += 1;
        }
    }
    (master, in_sync)
}

#[cfg(test)]
mod tests {
    use super::replication;

    #[test]
    fn replicas_count_when_online_and_acknowledging() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:3\r\n\
                    slave0:ip=10.0.0.2,port=6379,state=online,offset=3167,lag=0\r\n\
                    slave1:ip=10.0.0.3,port=6379,state=wait_bgsave,offset=0,lag=0\r\n\
                    slave2:ip=10.0.0.4,port=6379,state=online,offset=3000,lag=7\r\n\
                    master_failover_state:no-failover\r\nmaster_repl_offset:3167\r\n";
        assert_eq!(replication(info), (true, 1));
        assert_eq!(
            replication("# Replication\r\nrole:master\r\nconnected_slaves:0\r\n"),
            (true, 0)
        );
        assert_eq!(
            replication("role:slave\r\nmaster_host:10.0.0.1\r\nslave_read_repl_offset:3167\r\nslave_priority:100\r\n"),
            (false, 0),
            "a replica's own slave_* fields are not replicas"
        );
        assert_eq!(replication(""), (false, 0));
    }
}
