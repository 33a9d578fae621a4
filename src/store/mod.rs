//! The state gatehouse keeps (SPEC §2 `store`, §4, §11): refresh-token
//! families, revocations, login failure counters and quota counters
//! ([`quota`], over the periods of [`period`]) — in an embedded file (redb)
//! or in Redis, behind one [`Store`].
//!
//! Only SHA-256 hashes of refresh tokens are stored. Revocations are also
//! kept in memory ([`Revoked`]) so that checking a token on every request
//! costs a hash-map lookup, not a store round trip: the embedded store
//! updates it directly; with Redis, every replica gets new revocations
//! through pub/sub at once and re-reads the whole set every
//! [`redis::SYNC_EVERY`] in case a message was lost. If Redis is unreachable
//! for longer than `max_stale`, requests that need the set are refused
//! (fail closed) until it is back. Redis is one server (`store.url`) or the
//! master the Redis Sentinels name (`store.sentinels`), followed through
//! failovers (`redis_link`).

pub mod embedded;
pub mod period;
pub mod quota;
pub mod redis;
mod redis_link;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use crate::config;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached (Redis down) or written (the embedded
    /// file failed I/O: a full disk): 503 `store_unavailable`.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store answered something it should not have.
    #[error("store error: {0}")]
    Broken(String),
    /// The embedded store's file is open in another process (a running
    /// gatehouse).
    #[error("{0} is in use by another process")]
    Busy(String),
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// It was the family's current token: it is spent now, and `new` is current.
    Rotated { sid: String, user: String },
    /// It was already spent: the whole family is revoked now.
    Reused { sid: String },
    /// Unknown, expired, or its family was revoked.
    Unknown,
}

/// A refresh family as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Family {
    pub user: String,
    /// Hex SHA-256 of the family's current refresh token.
    pub current: String,
    /// Unix seconds after which the family is gone.
    pub expires: u64,
    pub revoked: bool,
}

/// A browser session as stored (SPEC §9), under the SHA-256 of its cookie:
/// the cookie itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The principal.
    pub sub: String,
    /// Roles at sign-in (a password session reads the users file's instead).
    pub roles: Vec<String>,
    pub email: Option<String>,
    /// How the user signed in: `password`, or an identity provider's name.
    pub method: String,
    /// The session's refresh family: revoking it ends the session.
    pub sid: String,
    /// Unix seconds of the sign-in.
    pub created: u64,
    /// Unix seconds of the last request that refreshed the record.
    pub last_seen: u64,
    /// Unix seconds after which the session is over, used or not.
    pub absolute_expiry: u64,
    /// Seconds of no use after which the session is over.
    pub idle_timeout: u64,
}

impl Session {
    /// Unix seconds after which the session is over, as things stand.
    pub fn expires_at(&self) -> u64 {
        self.absolute_expiry
            .min(self.last_seen.saturating_add(self.idle_timeout))
    }

    /// The family record that makes the session revocable like a refresh family.
    fn family(&self) -> Family {
        Family {
            user: self.sub.clone(),
            // A session's family has no refresh token.
            current: String::new(),
            expires: self.absolute_expiry,
            revoked: false,
        }
    }
}

/// Login failures of one username.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Failures {
    pub count: u32,
    pub window_start: u64,
    pub locked_until: u64,
}

impl Failures {
    /// Counts one more failure at `now` under `policy`.
    pub fn record(&mut self, now: u64, policy: &config::Login) {
        if now.saturating_sub(self.window_start) > policy.failure_window.as_secs() {
            self.count = 0;
            self.window_start = now;
        }
        self.count += 1;
        if self.count >= policy.max_failures {
            self.locked_until = now + policy.lockout.as_secs();
            self.count = 0;
            self.window_start = now;
        }
    }

    /// Seconds this record must be kept.
    pub fn ttl(&self, now: u64, policy: &config::Login) -> u64 {
        let window_end = self.window_start + policy.failure_window.as_secs();
        window_end.max(self.locked_until).saturating_sub(now).max(1)
    }
}

/// What the revocation set says about a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    Valid,
    Revoked,
    /// The set could not be kept current for longer than `max_stale`.
    Unknown,
}

/// Revoked token ids and refresh families, in memory, until they expire.
#[derive(Debug, Default)]
pub struct Revoked {
    jtis: DashMap<String, u64, crate::FastHash>,
    sids: DashMap<String, u64, crate::FastHash>,
    /// Unix seconds of the last successful sync (Redis); `u64::MAX`: always current.
    synced_at: AtomicU64,
    /// Seconds the set may go without a sync before it is distrusted.
    pub(crate) max_stale: u64,
}

impl Revoked {
    fn new(always_current: bool, max_stale: u64) -> Self {
        Revoked {
            synced_at: AtomicU64::new(if always_current { u64::MAX } else { 0 }),
            max_stale,
            ..Default::default()
        }
    }

    pub fn insert_jti(&self, jti: &str, until: u64) {
        self.jtis.insert(jti.to_owned(), until);
    }

    pub fn insert_sid(&self, sid: &str, until: u64) {
        self.sids.insert(sid.to_owned(), until);
    }

    pub(crate) fn mark_synced(&self, now: u64) {
        if self.synced_at.load(Ordering::Relaxed) != u64::MAX {
            self.synced_at.store(now, Ordering::Relaxed);
        }
    }

    /// Whether the set is too old to trust at `now`.
    pub fn is_stale(&self, now: u64) -> bool {
        let synced = self.synced_at.load(Ordering::Relaxed);
        synced != u64::MAX && now.saturating_sub(synced) > self.max_stale
    }

    /// The hot-path check of a token's `jti` and `sid`.
    pub fn check(&self, jti: Option<&str>, sid: Option<&str>, now: u64) -> Revocation {
        if self.is_stale(now) {
            return Revocation::Unknown;
        }
        let hit = |map: &DashMap<String, u64, crate::FastHash>, key: Option<&str>| {
            key.and_then(|k| map.get(k))
                .is_some_and(|until| *until >= now)
        };
        if hit(&self.jtis, jti) || hit(&self.sids, sid) {
            Revocation::Revoked
        } else {
            Revocation::Valid
        }
    }

    /// Forgets entries that have expired.
    pub fn purge(&self, now: u64) {
        self.jtis.retain(|_, until| *until >= now);
        self.sids.retain(|_, until| *until >= now);
    }

    pub fn len(&self) -> usize {
        self.jtis.len() + self.sids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone)]
enum Backend {
    Embedded(Arc<embedded::Embedded>),
    Redis(Arc<redis::RedisStore>),
}

/// The store, whichever backend holds it. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    revoked: Arc<Revoked>,
    /// How long a revoked family's access tokens can still be alive.
    access_ttl: u64,
    /// Sessions this process has read, by hash, with when the store last
    /// said each was live: while Redis is unreachable, a session keeps
    /// working from here until the revocations are too stale to trust
    /// (`max_stale`), as a JWT does (SPEC §5) — if it was seen live less
    /// than `access_ttl` ago, for a revocation (of its family) is only kept
    /// in memory that long.
    sessions_seen: Arc<DashMap<String, Seen, crate::FastHash>>,
    /// Quota counters: the embedded store's own, or the Redis mirror.
    counters: Arc<quota::Counters>,
    /// Redis: counting done while it could not be reached.
    pending: Arc<quota::Pending>,
}

/// A session as last read, and when (Unix seconds).
type Seen = (Session, u64);

/// At most this many sessions are remembered for an outage (then the
/// memory starts over: ~300 bytes each).
const SESSIONS_SEEN_MAX: usize = 100_000;

/// A session read from the store less than this many seconds ago is
/// answered from memory (a browser's burst of requests reads the store
/// once, not once each).
const SESSION_FRESH: u64 = 2;

impl Store {
    /// Opens the configured store (creating the embedded file and its folder
    /// if missing). A Redis store opens even while Redis is down; it then
    /// answers [`StoreError::Unavailable`] until Redis is back.
    pub async fn open(
        cfg: &config::Store,
        access_ttl: std::time::Duration,
    ) -> Result<Self, StoreError> {
        let max_stale = cfg.max_stale.as_secs();
        match &cfg.backend {
            config::StoreBackend::Embedded { path } => {
                let revoked = Arc::new(Revoked::new(true, max_stale));
                let counters = Arc::new(quota::Counters::default());
                let db = embedded::Embedded::open(path.clone(), revoked.clone(), counters.clone())
                    .await?;
                Ok(Store {
                    backend: Backend::Embedded(Arc::new(db)),
                    revoked,
                    access_ttl: access_ttl.as_secs(),
                    sessions_seen: Arc::default(),
                    counters,
                    pending: Arc::default(),
                })
            }
            config::StoreBackend::Redis { server, key_prefix } => {
                let revoked = Arc::new(Revoked::new(false, max_stale));
                let store = redis::RedisStore::open(server, key_prefix, revoked.clone())?;
                Ok(Store {
                    backend: Backend::Redis(store),
                    revoked,
                    access_ttl: access_ttl.as_secs(),
                    sessions_seen: Arc::default(),
                    counters: Arc::default(),
                    pending: Arc::default(),
                })
            }
        }
    }

    /// The in-memory revocation set.
    pub fn revoked(&self) -> &Revoked {
        &self.revoked
    }

    /// `Err(reason)` when the store cannot serve (for `/readyz`).
    pub fn readiness(&self, now: u64) -> Result<(), String> {
        match &self.backend {
            Backend::Embedded(_) => Ok(()),
            Backend::Redis(r) => r.readiness(now),
        }
    }

    /// Starts a refresh family whose current token hashes to `hash`.
    pub async fn new_family(&self, sid: &str, family: Family) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.new_family(sid, family).await,
            Backend::Redis(r) => r.new_family(sid, family).await,
        }
    }

    /// Spends the refresh token hashing to `presented`, making `new` current
    /// (expiring at `expires`), or revokes its family if it was spent already.
    pub async fn rotate(
        &self,
        presented: &str,
        new: &str,
        expires: u64,
        now: u64,
    ) -> Result<Rotation, StoreError> {
        let rotation = match &self.backend {
            Backend::Embedded(db) => db.rotate(presented, new, expires, now).await?,
            Backend::Redis(r) => r.rotate(presented, new, expires, now).await?,
        };
        if let Rotation::Reused { sid } = &rotation {
            // The family's access tokens die with it.
            self.revoke(None, Some(sid), now).await?;
        }
        Ok(rotation)
    }

    /// The family of the refresh token hashing to `hash`, if it is known.
    pub async fn family_of(&self, hash: &str) -> Result<Option<String>, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.family_of(hash).await,
            Backend::Redis(r) => r.family_of(hash).await,
        }
    }

    /// Revokes an access token (`jti`, until its `exp`) and/or a refresh
    /// family (`sid`): its refresh tokens stop working, and so do its access
    /// tokens (remembered for `access_ttl`, their longest possible life).
    pub async fn revoke(
        &self,
        jti: Option<(&str, u64)>,
        sid: Option<&str>,
        now: u64,
    ) -> Result<(), StoreError> {
        let sid_until = now + self.access_ttl;
        match &self.backend {
            Backend::Embedded(db) => db.revoke(jti, sid.map(|s| (s, sid_until))).await?,
            Backend::Redis(r) => r.revoke(jti, sid.map(|s| (s, sid_until)), now).await?,
        }
        if let Some((jti, until)) = jti {
            self.revoked.insert_jti(jti, until);
        }
        if let Some(sid) = sid {
            self.revoked.insert_sid(sid, sid_until);
        }
        Ok(())
    }

    /// Stores a new session under `hash` (the SHA-256 of its cookie), with
    /// its family.
    pub async fn new_session(&self, hash: &str, session: &Session) -> Result<(), StoreError> {
        let family = session.family();
        match &self.backend {
            Backend::Embedded(db) => db.new_session(hash, session, family).await,
            Backend::Redis(r) => r.new_session(hash, session, family).await,
        }
    }

    /// The live session stored under `hash`: not expired at `now`, and its
    /// family not revoked.
    ///
    /// With Redis unreachable, a session read before is still answered
    /// from memory while the revocations are fresh enough to trust (the
    /// caller checks the session's family against them); after that, or
    /// for a session never seen, the store's error.
    pub async fn session(&self, hash: &str, now: u64) -> Result<Option<Session>, StoreError> {
        if let Some(remembered) = self.fresh_session(hash, now) {
            return Ok(remembered);
        }
        let found = match &self.backend {
            Backend::Embedded(db) => db.session(hash).await,
            Backend::Redis(r) => r.session(hash).await,
        };
        let found = match found {
            Ok(found) => found,
            Err(e @ StoreError::Unavailable(_)) => {
                let seen = self.sessions_seen.get(hash).map(|s| s.clone());
                return match seen {
                    // Any revocation since it was seen is still in memory.
                    Some((session, at))
                        if !self.revoked.is_stale(now)
                            && now.saturating_sub(at) < self.access_ttl =>
                    {
                        Ok(Some(session).filter(|s| s.expires_at() >= now))
                    }
                    _ => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        let live = found
            .filter(|(session, revoked)| !revoked && session.expires_at() >= now)
            .map(|(session, _)| session);
        match &live {
            Some(session) => self.remember(hash, session, now),
            None => {
                self.sessions_seen.remove(hash);
            }
        }
        Ok(live)
    }

    /// A session the store said was live less than [`SESSION_FRESH`] ago,
    /// answered from memory: whether it ended since is for the revocations
    /// in memory to say, as they do for a JWT (every way a session ends
    /// revokes its family, on every replica at once). `None`: ask the store
    /// (not read lately, or the revocations too stale to trust).
    fn fresh_session(&self, hash: &str, now: u64) -> Option<Option<Session>> {
        let seen = self.sessions_seen.get(hash)?;
        let (session, at) = &*seen;
        if now.saturating_sub(*at) >= SESSION_FRESH {
            return None;
        }
        match self.revoked.check(None, Some(&session.sid), now) {
            Revocation::Valid => Some(Some(session.clone()).filter(|s| s.expires_at() >= now)),
            Revocation::Revoked => {
                drop(seen);
                self.sessions_seen.remove(hash);
                Some(None)
            }
            Revocation::Unknown => None,
        }
    }

    fn remember(&self, hash: &str, session: &Session, now: u64) {
        if self.sessions_seen.len() >= SESSIONS_SEEN_MAX {
            self.sessions_seen.clear();
        }
        self.sessions_seen
            .insert(hash.to_owned(), (session.clone(), now));
    }

    /// Writes `session` back (its `last_seen` moved on).
    pub async fn touch_session(&self, hash: &str, session: &Session) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.put_session(hash, session).await?,
            Backend::Redis(r) => r.put_session(hash, session).await?,
        }
        // What is remembered moves on with it (it is as fresh as it was).
        if let Some(mut seen) = self.sessions_seen.get_mut(hash) {
            seen.0.last_seen = session.last_seen;
        }
        Ok(())
    }

    /// Forgets the session stored under `hash`.
    pub async fn end_session(&self, hash: &str) -> Result<(), StoreError> {
        self.sessions_seen.remove(hash);
        match &self.backend {
            Backend::Embedded(db) => db.end_session(hash).await,
            Backend::Redis(r) => r.end_session(hash).await,
        }
    }

    /// Stores a sign-in flow (SPEC §10) under `key` (the SHA-256 of its
    /// `state`) until `expires` (Unix seconds).
    pub async fn put_flow(&self, key: &str, flow: &str, expires: u64) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.put_flow(key, flow, expires).await,
            Backend::Redis(r) => r.put_flow(key, flow, expires).await,
        }
    }

    /// Takes the flow under `key`: it is gone afterwards, whoever asks (a
    /// `state` is spent once), and an expired one is `None`.
    pub async fn take_flow(&self, key: &str, now: u64) -> Result<Option<String>, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.take_flow(key, now).await,
            Backend::Redis(r) => r.take_flow(key).await,
        }
    }

    /// Whether `user` is locked out at `now`.
    pub async fn is_locked(&self, user: &str, now: u64) -> Result<bool, StoreError> {
        let failures = match &self.backend {
            Backend::Embedded(db) => db.failures(user).await?,
            Backend::Redis(r) => r.failures(user).await?,
        };
        Ok(failures.is_some_and(|f| f.locked_until > now))
    }

    /// Counts a failed login for `user`.
    pub async fn login_failed(
        &self,
        user: &str,
        now: u64,
        policy: &config::Login,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.login_failed(user, now, policy.clone()).await,
            Backend::Redis(r) => r.login_failed(user, now, policy).await,
        }
    }

    /// Forgets `user`'s failures after a successful login.
    pub async fn login_succeeded(&self, user: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.login_succeeded(user).await,
            Backend::Redis(r) => r.login_succeeded(user).await,
        }
    }

    /// Whether rate limits are shared (Redis) rather than local.
    pub fn shares_rate_limits(&self) -> bool {
        matches!(self.backend, Backend::Redis(_))
    }

    /// Checks a shared (Redis) rate limit; `None` with the embedded store,
    /// whose limits are the local ones.
    pub async fn rate_check(
        &self,
        name: &str,
        key: &str,
        interval: std::time::Duration,
        burst: u32,
    ) -> Option<Result<redis::SharedBucket, StoreError>> {
        match &self.backend {
            Backend::Embedded(_) => None,
            Backend::Redis(r) => Some(r.rate_check(name, key, interval, burst).await),
        }
    }

    /// Drops expired entries, in memory and in the store.
    pub async fn purge(&self, now: u64) {
        self.revoked.purge(now);
        self.counters.purge(now);
        let keep_for = self.access_ttl;
        self.sessions_seen
            .retain(|_, (s, at)| s.expires_at() >= now && now.saturating_sub(*at) < keep_for);
        let result = match &self.backend {
            Backend::Embedded(db) => db.purge(now).await,
            Backend::Redis(r) => r.purge(now).await,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "purging expired store entries failed");
        }
    }

    /// Background upkeep: purging every minute, and for Redis the
    /// revocation sync. Ends when every clone of the store is gone.
    pub fn spawn_upkeep(&self) {
        let weak = Arc::downgrade(&self.revoked);
        let store = self.clone_weak();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                let (Some(_alive), Some(store)) = (weak.upgrade(), store.upgrade()) else {
                    return;
                };
                store.purge(crate::clock::unix_now()).await;
            }
        });
        if let Backend::Redis(r) = &self.backend {
            r.spawn_sync();
        }
        // Quota counters: written behind (embedded), or what was counted
        // during a Redis outage added to Redis.
        let store = self.clone_weak();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(quota::FLUSH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(store) = store.upgrade() else {
                    return;
                };
                store.flush_quotas().await;
            }
        });
    }

    fn clone_weak(&self) -> WeakStore {
        WeakStore {
            backend: match &self.backend {
                Backend::Embedded(db) => WeakBackend::Embedded(Arc::downgrade(db)),
                Backend::Redis(r) => WeakBackend::Redis(Arc::downgrade(r)),
            },
            revoked: Arc::downgrade(&self.revoked),
            access_ttl: self.access_ttl,
            sessions_seen: Arc::downgrade(&self.sessions_seen),
            counters: Arc::downgrade(&self.counters),
            pending: Arc::downgrade(&self.pending),
        }
    }
}

enum WeakBackend {
    Embedded(std::sync::Weak<embedded::Embedded>),
    Redis(std::sync::Weak<redis::RedisStore>),
}

struct WeakStore {
    backend: WeakBackend,
    revoked: std::sync::Weak<Revoked>,
    access_ttl: u64,
    sessions_seen: std::sync::Weak<DashMap<String, Seen, crate::FastHash>>,
    counters: std::sync::Weak<quota::Counters>,
    pending: std::sync::Weak<quota::Pending>,
}

impl WeakStore {
    fn upgrade(&self) -> Option<Store> {
        Some(Store {
            backend: match &self.backend {
                WeakBackend::Embedded(w) => Backend::Embedded(w.upgrade()?),
                WeakBackend::Redis(w) => Backend::Redis(w.upgrade()?),
            },
            revoked: self.revoked.upgrade()?,
            access_ttl: self.access_ttl,
            sessions_seen: self.sessions_seen.upgrade()?,
            counters: self.counters.upgrade()?,
            pending: self.pending.upgrade()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn policy() -> config::Login {
        config::Login {
            max_failures: 3,
            failure_window: Duration::from_secs(60),
            lockout: Duration::from_secs(300),
        }
    }

    /// An embedded store in a fresh folder (kept as long as the folder).
    async fn embedded_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = config::Store {
            backend: config::StoreBackend::Embedded {
                path: dir.path().join("store.db"),
            },
            max_stale: Duration::from_secs(30),
        };
        let store = Store::open(&cfg, Duration::from_secs(900))
            .await
            .expect("embedded store");
        (dir, store)
    }

    #[tokio::test]
    async fn a_sign_in_flow_is_taken_once_and_never_after_it_expires() {
        let (_dir, store) = embedded_store().await;
        store.put_flow("a", "{\"flow\":1}", 1600).await.unwrap();
        store.put_flow("b", "{}", 1600).await.unwrap();
        assert_eq!(
            store.take_flow("a", 1000).await.unwrap().as_deref(),
            Some("{\"flow\":1}")
        );
        assert_eq!(store.take_flow("a", 1000).await.unwrap(), None, "spent");
        assert_eq!(store.take_flow("b", 1601).await.unwrap(), None, "expired");
        assert_eq!(store.take_flow("b", 1000).await.unwrap(), None, "and gone");
        store.put_flow("c", "{}", 1600).await.unwrap();
        store.purge(1601).await;
        assert_eq!(store.take_flow("c", 0).await.unwrap(), None, "purged");
    }

    #[tokio::test]
    async fn a_session_read_a_moment_ago_comes_from_memory_until_revoked_or_older() {
        let (_dir, store) = embedded_store().await;
        let session = Session {
            sub: "alice".into(),
            roles: vec!["user".into()],
            email: None,
            method: "password".into(),
            sid: "sid-1".into(),
            created: 1000,
            last_seen: 1000,
            absolute_expiry: 100_000,
            idle_timeout: 3600,
        };
        store
            .new_family(
                "sid-1",
                Family {
                    user: "alice".into(),
                    current: "r".into(),
                    expires: 100_000,
                    revoked: false,
                },
            )
            .await
            .unwrap();
        store.new_session("h", &session).await.unwrap();
        assert_eq!(
            store.session("h", 1000).await.unwrap(),
            Some(session.clone())
        );
        // Gone from the store behind this process's back (as a backend
        // could lose it): still answered for a moment, then not.
        match &store.backend {
            Backend::Embedded(db) => db.end_session("h").await.unwrap(),
            Backend::Redis(_) => unreachable!("embedded"),
        }
        assert_eq!(
            store.session("h", 1001).await.unwrap(),
            Some(session.clone())
        );
        assert_eq!(
            store.session("h", 1000 + SESSION_FRESH).await.unwrap(),
            None
        );
        // A revocation ends a remembered session at once.
        store.new_session("h2", &session).await.unwrap();
        assert!(store.session("h2", 2000).await.unwrap().is_some());
        store.revoke(None, Some("sid-1"), 2000).await.unwrap();
        assert_eq!(store.session("h2", 2000).await.unwrap(), None);
    }

    #[test]
    fn failures_lock_after_the_maximum_within_the_window() {
        let mut f = Failures::default();
        f.record(1000, &policy());
        f.record(1010, &policy());
        assert_eq!(f.locked_until, 0);
        f.record(1020, &policy());
        assert_eq!(f.locked_until, 1320);
    }

    #[test]
    fn failures_outside_the_window_start_over() {
        let mut f = Failures::default();
        f.record(1000, &policy());
        f.record(1010, &policy());
        f.record(1100, &policy());
        assert_eq!((f.count, f.locked_until), (1, 0));
    }

    #[test]
    fn revoked_set_answers_until_expiry_and_fails_closed_when_stale() {
        let r = Revoked::new(false, 30);
        r.mark_synced(100);
        r.insert_jti("j", 200);
        r.insert_sid("s", 150);
        assert_eq!(r.check(Some("j"), None, 120), Revocation::Revoked);
        assert_eq!(r.check(None, Some("s"), 120), Revocation::Revoked);
        assert_eq!(
            r.check(Some("other"), Some("other"), 120),
            Revocation::Valid
        );
        assert_eq!(r.check(Some("j"), None, 131), Revocation::Unknown);
        r.mark_synced(170);
        assert_eq!(r.check(None, Some("s"), 170), Revocation::Valid);
        r.purge(201);
        assert!(r.is_empty());
    }
}
