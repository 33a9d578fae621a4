//! The embedded store: one crash-safe redb file (created with its folder if
//! missing). redb calls block, so each runs on the blocking pool.
//!
//! Every commit is durable when it returns (redb's default, two-phase and
//! fsynced), so what gatehouse acknowledged survives a `kill -9`. When the
//! file fails I/O (the disk is full, say), redb refuses every later call
//! until the database is closed and opened again; so a failed call closes
//! it, the call is answered [`StoreError::Unavailable`] (503
//! `store_unavailable`), and the next call opens the file again (redb's
//! recovery rolls back to the last commit), at most every [`REOPEN_EVERY`]:
//! the store comes back by itself once there is space again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::quota::{self, CounterKey, Counters};
use super::{Failures, Family, Revoked, Rotation, Session, StoreError};
use crate::config;

/// sid → JSON [`Family`].
const FAMILIES: TableDefinition<&str, &[u8]> = TableDefinition::new("families");
/// hex SHA-256 of every refresh token issued → `sid` (spent ones included, to detect reuse).
const REFRESH: TableDefinition<&str, &str> = TableDefinition::new("refresh_tokens");
/// Refresh-token expiry by hash, for purging.
const REFRESH_EXPIRES: TableDefinition<&str, u64> = TableDefinition::new("refresh_expires");
/// `jti:<id>` / `sid:<id>` → Unix seconds until which it is revoked.
const REVOKED: TableDefinition<&str, u64> = TableDefinition::new("revoked");
/// username → JSON [`Failures`].
const FAILURES: TableDefinition<&str, &[u8]> = TableDefinition::new("login_failures");
/// hex SHA-256 of a session cookie → JSON [`Session`].
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
/// hex SHA-256 of a sign-in flow's `state` → its expiry (8 bytes, big
/// endian) and the flow (SPEC §10).
const FLOWS: TableDefinition<&str, &[u8]> = TableDefinition::new("oidc_flows");
/// `<quota>\0<principal>` → a quota counter (`quota::encode`), written
/// behind the in-memory counters.
const QUOTAS: TableDefinition<&str, &[u8]> = TableDefinition::new("quota_counters");

/// How often a store file that failed I/O is tried again.
pub const REOPEN_EVERY: Duration = Duration::from_millis(250);

pub struct Embedded {
    file: Arc<File>,
}

/// The database file, open or (after an I/O failure) waiting to be opened
/// again.
struct File {
    path: PathBuf,
    /// `None` after an I/O failure, until the file is open again. Held for
    /// reading by every call; for writing only to close and reopen it.
    db: RwLock<Option<Database>>,
    /// How many times the file was opened, so that calls that failed on
    /// one opening close only that one.
    opened: AtomicU64,
    /// No new opening before this instant.
    next_try: Mutex<Instant>,
}

/// Anything that is not redb's (a JSON record, the blocking pool).
fn broken(e: impl std::fmt::Display) -> StoreError {
    StoreError::Broken(e.to_string())
}

/// A redb error: I/O (the disk is full, the file vanished) makes the store
/// unavailable until it is reopened; anything else is a broken store.
fn failed(e: impl Into<redb::Error>) -> StoreError {
    let e: redb::Error = e.into();
    match e {
        redb::Error::Io(_)
        | redb::Error::PreviousIo
        | redb::Error::DatabaseClosed
        | redb::Error::Backend(_) => StoreError::Unavailable(e.to_string()),
        e => StoreError::Broken(e.to_string()),
    }
}

/// Opens (or creates) the file at `path`; one that another process holds
/// open is [`StoreError::Busy`].
fn open_file(path: &Path) -> Result<Database, StoreError> {
    Database::create(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Busy(path.display().to_string()),
        e => match failed(e) {
            StoreError::Unavailable(why) => {
                StoreError::Unavailable(format!("{}: {why}", path.display()))
            }
            other => broken(format!("{}: {other}", path.display())),
        },
    })
}

impl Embedded {
    /// Opens (or creates) the file at `path`, and loads its revocations into
    /// `revoked` and its quota counters into `counters`. A file another
    /// process holds open is [`StoreError::Busy`].
    pub async fn open(
        path: PathBuf,
        revoked: Arc<Revoked>,
        counters: Arc<Counters>,
    ) -> Result<Self, StoreError> {
        let file = tokio::task::spawn_blocking(move || -> Result<File, StoreError> {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| broken(format!("{}: {e}", dir.display())))?;
            }
            let db = open_file(&path)?;
            let txn = db.begin_write().map_err(failed)?;
            {
                // Create every table so reads never meet a missing one.
                txn.open_table(FAMILIES).map_err(failed)?;
                txn.open_table(REFRESH).map_err(failed)?;
                txn.open_table(REFRESH_EXPIRES).map_err(failed)?;
                let now = crate::clock::unix_now();
                let table = txn.open_table(REVOKED).map_err(failed)?;
                for entry in table.iter().map_err(failed)? {
                    let (key, until) = entry.map_err(failed)?;
                    let (key, until) = (key.value(), until.value());
                    if until < now {
                        continue;
                    }
                    if let Some(jti) = key.strip_prefix("jti:") {
                        revoked.insert_jti(jti, until);
                    } else if let Some(sid) = key.strip_prefix("sid:") {
                        revoked.insert_sid(sid, until);
                    }
                }
                txn.open_table(FAILURES).map_err(failed)?;
                txn.open_table(SESSIONS).map_err(failed)?;
                txn.open_table(FLOWS).map_err(failed)?;
                let table = txn.open_table(QUOTAS).map_err(failed)?;
                for entry in table.iter().map_err(failed)? {
                    let (key, value) = entry.map_err(failed)?;
                    let key = CounterKey::from_stored(key.value());
                    let counter = quota::decode(value.value());
                    if let (Some(key), Some(counter)) = (key, counter) {
                        if counter.window.end > now {
                            counters.load(key, counter);
                        }
                    }
                }
            }
            txn.commit().map_err(failed)?;
            Ok(File {
                path,
                db: RwLock::new(Some(db)),
                opened: AtomicU64::new(1),
                next_try: Mutex::new(Instant::now()),
            })
        })
        .await
        .map_err(broken)??;
        Ok(Embedded {
            file: Arc::new(file),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || file.with(f))
            .await
            .map_err(broken)?
    }

    pub async fn new_family(&self, sid: &str, family: Family) -> Result<(), StoreError> {
        let sid = sid.to_owned();
        self.run(move |db| {
            let txn = db.begin_write().map_err(failed)?;
            {
                let json = serde_json::to_vec(&family).map_err(broken)?;
                txn.open_table(FAMILIES)
                    .map_err(failed)?
                    .insert(sid.as_str(), json.as_slice())
                    .map_err(failed)?;
                txn.open_table(REFRESH)
                    .map_err(failed)?
                    .insert(family.current.as_str(), sid.as_str())
                    .map_err(failed)?;
                txn.open_table(REFRESH_EXPIRES)
                    .map_err(failed)?
                    .insert(family.current.as_str(), family.expires)
                    .map_err(failed)?;
            }
            txn.commit().map_err(failed)
        })
        .await
    }

    pub async fn rotate(
        &self,
        presented: &str,
        new: &str,
        expires: u64,
        now: u64,
    ) -> Result<Rotation, StoreError> {
        let (presented, new) = (presented.to_owned(), new.to_owned());
        self.run(move |db| {
            let txn = db.begin_write().map_err(failed)?;
            let outcome = {
                let mut refresh = txn.open_table(REFRESH).map_err(failed)?;
                let sid = match refresh.get(presented.as_str()).map_err(failed)? {
                    Some(sid) => sid.value().to_owned(),
                    None => return Ok(Rotation::Unknown),
                };
                let mut families = txn.open_table(FAMILIES).map_err(failed)?;
                let mut family: Family = match families.get(sid.as_str()).map_err(failed)? {
                    Some(json) => serde_json::from_slice(json.value()).map_err(broken)?,
                    None => return Ok(Rotation::Unknown),
                };
                if family.revoked || family.expires < now {
                    return Ok(Rotation::Unknown);
                }
                if family.current != presented {
                    family.revoked = true;
                    let json = serde_json::to_vec(&family).map_err(broken)?;
                    families
                        .insert(sid.as_str(), json.as_slice())
                        .map_err(failed)?;
                    Rotation::Reused { sid }
                } else {
                    family.current = new.clone();
                    family.expires = expires;
                    let json = serde_json::to_vec(&family).map_err(broken)?;
                    families
                        .insert(sid.as_str(), json.as_slice())
                        .map_err(failed)?;
                    refresh.insert(new.as_str(), sid.as_str()).map_err(failed)?;
                    txn.open_table(REFRESH_EXPIRES)
                        .map_err(failed)?
                        .insert(new.as_str(), expires)
                        .map_err(failed)?;
                    Rotation::Rotated {
                        sid,
                        user: family.user,
                    }
                }
            };
            txn.commit().map_err(failed)?;
            Ok(outcome)
        })
        .await
    }

    pub async fn family_of(&self, hash: &str) -> Result<Option<String>, StoreError> {
        let hash = hash.to_owned();
        self.run(move |db| {
            let txn = db.begin_read().map_err(failed)?;
            let table = txn.open_table(REFRESH).map_err(failed)?;
            Ok(table
                .get(hash.as_str())
                .map_err(failed)?
                .map(|v| v.value().to_owned()))
        })
        .await
    }

    pub async fn revoke(
        &self,
        jti: Option<(&str, u64)>,
        sid: Option<(&str, u64)>,
    ) -> Result<(), StoreError> {
        let jti = jti.map(|(j, u)| (format!("jti:{j}"), u));
        let sid = sid.map(|(s, u)| (s.to_owned(), u));
        self.run(move |db| {
            let txn = db.begin_write().map_err(failed)?;
            {
                let mut revoked = txn.open_table(REVOKED).map_err(failed)?;
                if let Some((key, until)) = &jti {
                    revoked.insert(key.as_str(), until).map_err(failed)?;
                }
                if let Some((sid, until)) = &sid {
                    revoked
                        .insert(format!("sid:{sid}").as_str(), until)
                        .map_err(failed)?;
                    let mut families = txn.open_table(FAMILIES).map_err(failed)?;
                    let family: Option<Family> = match families.get(sid.as_str()).map_err(failed)? {
                        Some(json) => Some(serde_json::from_slice(json.value()).map_err(broken)?),
                        None => None,
                    };
                    if let Some(mut family) = family {
                        family.revoked = true;
                        let json = serde_json::to_vec(&family).map_err(broken)?;
                        families
                            .insert(sid.as_str(), json.as_slice())
                            .map_err(failed)?;
                    }
                }
            }
            txn.commit().map_err(failed)
        })
        .await
    }

    pub async fn new_session(
        &self,
        hash: &str,
        session: &Session,
        family: Family,
    ) -> Result<(), StoreError> {
        let (hash, sid) = (hash.to_owned(), session.sid.clone());
        let json = serde_json::to_vec(session).map_err(broken)?;
        let family = serde_json::to_vec(&family).map_err(broken)?;
        self.run(move |db| {
            let txn = db.begin_write().map_err(failed)?;
            {
                txn.open_table(FAMILIES)
                    .map_err(failed)?
                    .insert(sid.as_str(), family.as_slice())
                    .map_err(failed)?;
                txn.open_table(SESSIONS)
                    .map_err(failed)?
                    .insert(hash.as_str(), json.as_slice())
                    .map_err(failed)?;
            }
            txn.commit().map_err(failed)
        })
        .await
    }

    /// The session under `hash`, and whether its family is revoked (or gone).
    pub async fn session(&self, hash: &str) -> Result<Option<(Session, bool)>, StoreError> {
        let hash = hash.to_owned();
        self.run(move |db| {
            let txn = db.begin_read().map_err(failed)?;
            let sessions = txn.open_table(SESSIONS).map_err(failed)?;
            let Some(json) = sessions.get(hash.as_str()).map_err(failed)? else {
                return Ok(None);
            };
            let session: Session = serde_json::from_slice(json.value()).map_err(broken)?;
            let families = txn.open_table(FAMILIES).map_err(failed)?;
            let revoked = match families.get(session.sid.as_str()).map_err(failed)? {
                Some(json) => {
                    serde_json::from_slice::<Family>(json.value())
                        .map_err(broken)?
                        .revoked
                }
                None => true,
            };
            Ok(Some((session, revoked)))
        })
        .await
    }

    pub async fn put_session(&self, hash: &str, session: &Session) -> Result<(), StoreError> {
        let hash = hash.to_owned();
        let json = serde_json::to_vec(session).map_err(broken)?;
        self.run(move |db| {
            let txn = db.begin_write().map_err(failed)?;
            {
                let mut sessions = txn.open_table(SESSIONS).map_err(failed)?;
                // Only a session still there is written back: one ended
                // meanwhile stays ended.
                if sessions.get(hash.as_str()).map_err(failed)?.is_some() {
                    sessions
                        .insert(hash.as_str(), json.as_slice())
                        .map_err(failed)?;
                }
            }
            txn.commit().map_err(failed)
        })
        .await
    }

    pub async fn end_session(&self, hash: &str) -> Result<(), StoreError> {
        let hash = hash.to_owned();
        self.run(move |db| {
            let txn = db.begin_write().map_err(failed)?;
            txn.open_table(SESSIONS)
                .map_err(failed)?
                .remove(hash.as_str())
                .map_err(failed)?;
            txn.commit().map_err(failed)
        })
        .await
    }

    pub async fn put_flow(&self, key: &str, flow: &str, expires: u64) -> Result<(), StoreError> {
        let key = key.to_owned();
        let mut value = expires.to_be_bytes().to_vec();
        value.extend_from_slice(flow.as_bytes());
        self.run(move |db| {
            let txn = db.begin_write().map_err(failed)?;
            txn.open_table(FLOWS)
                .map_err(failed)?
                .insert(key.as_str(), value.as_slice())
                .map_err(failed)?;
            txn.commit().map_err(failed)
        })
        .await
    }

    /// Removes the flow under `key` in one write transaction and returns
    /// it if it had not expired at `now`: two callbacks with one `state`
    /// cannot both get it.
    pub async fn take_flow(&self, key: &str, now: u64) -> Result<Option<String>, StoreError> {
        let key = key.to_owned();
        self.run(move |db| {
            let txn = db.begin_write().map_err(failed)?;
            let taken = {
                let mut table = txn.open_table(FLOWS).map_err(failed)?;
                let removed = table.remove(key.as_str()).map_err(failed)?;
                removed.and_then(|v| {
                    let v = v.value();
                    let expires = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
                    let flow = String::from_utf8(v.get(8..)?.to_vec()).ok()?;
                    (expires >= now).then_some(flow)
                })
            };
            txn.commit().map_err(failed)?;
            Ok(taken)
        })
        .await
    }

    pub async fn failures(&self, user: &str) -> Result<Option<Failures>, StoreError> {
        let user = user.to_owned();
        self.run(move |db| {
            let txn = db.begin_read().map_err(failed)?;
            let table = txn.open_table(FAILURES).map_err(failed)?;
            match table.get(user.as_str()).map_err(failed)? {
                Some(json) => Ok(Some(serde_json::from_slice(json.value()).map_err(broken)?)),
                None => Ok(None),
            }
        })
        .await
    }

    pub async fn login_failed(
        &self,
        user: &str,
        now: u64,
        policy: config::Login,
    ) -> Result<(), StoreError> {
        let user = user.to_owned();
        self.run(move |db| {
            let txn = db.begin_write().map_err(failed)?;
            {
                let mut table = txn.open_table(FAILURES).map_err(failed)?;
                let mut f: Failures = match table.get(user.as_str()).map_err(failed)? {
                    Some(json) => serde_json::from_slice(json.value()).map_err(broken)?,
                    None => Failures::default(),
                };
                f.record(now, &policy);
                let json = serde_json::to_vec(&f).map_err(broken)?;
                table
                    .insert(user.as_str(), json.as_slice())
                    .map_err(failed)?;
            }
            txn.commit().map_err(failed)
        })
        .await
    }

    pub async fn login_succeeded(&self, user: &str) -> Result<(), StoreError> {
        let user = user.to_owned();
        self.run(move |db| {
            let txn = db.begin_write().map_err(failed)?;
            txn.open_table(FAILURES)
                .map_err(failed)?
                .remove(user.as_str())
                .map_err(failed)?;
            txn.commit().map_err(failed)
        })
        .await
    }

    /// Writes changed quota counters (`None`: deleted) in one transaction.
    pub async fn write_counters(
        &self,
        entries: Vec<(CounterKey, Option<quota::Counter>)>,
    ) -> Result<(), (StoreError, Vec<(CounterKey, Option<quota::Counter>)>)> {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            let written = file.with(|db| {
                let txn = db.begin_write().map_err(failed)?;
                {
                    let mut table = txn.open_table(QUOTAS).map_err(failed)?;
                    for (key, counter) in &entries {
                        let stored = key.stored();
                        match counter {
                            Some(c) => {
                                table
                                    .insert(stored.as_str(), quota::encode(c).as_slice())
                                    .map_err(failed)?;
                            }
                            None => {
                                table.remove(stored.as_str()).map_err(failed)?;
                            }
                        }
                    }
                }
                txn.commit().map_err(failed)
            });
            written.map_err(|e| (e, entries))
        })
        .await
        .map_err(|e| (broken(e), Vec::new()))?
    }

    /// Deletes expired revocations, families, refresh hashes and failure records.
    pub async fn purge(&self, now: u64) -> Result<(), StoreError> {
        self.run(move |db| {
            let txn = db.begin_write().map_err(failed)?;
            {
                txn.open_table(REVOKED)
                    .map_err(failed)?
                    .retain(|_, until| until >= now)
                    .map_err(failed)?;
                txn.open_table(FAMILIES)
                    .map_err(failed)?
                    .retain(|_, json| {
                        serde_json::from_slice::<Family>(json).is_ok_and(|f| f.expires >= now)
                    })
                    .map_err(failed)?;
                let mut expired = Vec::new();
                txn.open_table(REFRESH_EXPIRES)
                    .map_err(failed)?
                    .retain(|hash, expires| {
                        let keep = expires >= now;
                        if !keep {
                            expired.push(hash.to_owned());
                        }
                        keep
                    })
                    .map_err(failed)?;
                let mut refresh = txn.open_table(REFRESH).map_err(failed)?;
                for hash in expired {
                    refresh.remove(hash.as_str()).map_err(failed)?;
                }
                txn.open_table(SESSIONS)
                    .map_err(failed)?
                    .retain(|_, json| {
                        serde_json::from_slice::<Session>(json).is_ok_and(|s| s.expires_at() >= now)
                    })
                    .map_err(failed)?;
                txn.open_table(FLOWS)
                    .map_err(failed)?
                    .retain(|_, v| {
                        v.get(..8)
                            .and_then(|b| b.try_into().ok())
                            .is_some_and(|b| u64::from_be_bytes(b) >= now)
                    })
                    .map_err(failed)?;
                txn.open_table(QUOTAS)
                    .map_err(failed)?
                    .retain(|_, value| quota::decode(value).is_some_and(|c| c.window.end > now))
                    .map_err(failed)?;
                // A failure record older than a day has no window or lock left.
                txn.open_table(FAILURES)
                    .map_err(failed)?
                    .retain(|_, json| {
                        serde_json::from_slice::<Failures>(json)
                            .is_ok_and(|f| f.locked_until >= now || f.window_start + 86_400 >= now)
                    })
                    .map_err(failed)?;
            }
            txn.commit().map_err(failed)
        })
        .await
    }
}

impl File {
    /// Runs `f` on the open database, opening it again first if an I/O
    /// failure closed it. A call that fails I/O closes the database: redb
    /// would refuse every later call on it.
    fn with<T>(&self, f: impl FnOnce(&Database) -> Result<T, StoreError>) -> Result<T, StoreError> {
        if self
            .db
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
        {
            self.reopen()?;
        }
        let (result, opened) = {
            let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
            let Some(db) = db.as_ref() else {
                // Closed again meanwhile, by another call's failure.
                return Err(StoreError::Unavailable(self.closed()));
            };
            (f(db), self.opened.load(Ordering::Acquire))
        };
        match result {
            Err(StoreError::Unavailable(why)) => {
                let why = format!("{}: {why}", self.path.display());
                self.close(opened, &why);
                Err(StoreError::Unavailable(why))
            }
            other => other,
        }
    }

    /// Why a call finds the database closed.
    fn closed(&self) -> String {
        format!(
            "{}: closed after an I/O failure, not open again yet",
            self.path.display()
        )
    }

    /// Closes the database if it is still the `opened`th opening, after a
    /// call on it failed I/O (`why`).
    fn close(&self, opened: u64, why: &str) {
        let mut db = self.db.write().unwrap_or_else(PoisonError::into_inner);
        if db.is_some() && self.opened.load(Ordering::Acquire) == opened {
            tracing::error!(
                error = %why,
                "the embedded store failed I/O: closed, and opened again at its next use"
            );
            *db = None;
        }
    }

    /// Opens the closed database again (redb rolls back to the last
    /// commit), at most every [`REOPEN_EVERY`].
    fn reopen(&self) -> Result<(), StoreError> {
        let mut db = self.db.write().unwrap_or_else(PoisonError::into_inner);
        if db.is_some() {
            return Ok(());
        }
        {
            let mut next_try = self.next_try.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            if now < *next_try {
                return Err(StoreError::Unavailable(self.closed()));
            }
            *next_try = now + REOPEN_EVERY;
        }
        match open_file(&self.path) {
            Ok(opened) => {
                *db = Some(opened);
                self.opened.fetch_add(1, Ordering::AcqRel);
                tracing::warn!(file = %self.path.display(), "the embedded store is open again");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "the embedded store cannot be opened again yet");
                Err(match e {
                    StoreError::Unavailable(why) | StoreError::Broken(why) => {
                        StoreError::Unavailable(why)
                    }
                    busy @ StoreError::Busy(_) => busy,
                })
            }
        }
    }
}
