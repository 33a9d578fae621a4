//! The embedded store: one crash-safe redb file (created with its folder if
//! missing). redb calls block, so each runs on the blocking pool.

use std::path::PathBuf;
use std::sync::Arc;

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

pub struct Embedded {
    db: Arc<Database>,
}

fn broken(e: impl std::fmt::Display) -> StoreError {
    StoreError::Broken(e.to_string())
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
        let db = tokio::task::spawn_blocking(move || -> Result<Database, StoreError> {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| broken(format!("{}: {e}", dir.display())))?;
            }
            let db = Database::create(&path).map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => {
                    StoreError::Busy(path.display().to_string())
                }
                e => broken(format!("{}: {e}", path.display())),
            })?;
            let txn = db.begin_write().map_err(broken)?;
            {
                // Create every table so reads never meet a missing one.
                txn.open_table(FAMILIES).map_err(broken)?;
                txn.open_table(REFRESH).map_err(broken)?;
                txn.open_table(REFRESH_EXPIRES).map_err(broken)?;
                let now = crate::clock::unix_now();
                let table = txn.open_table(REVOKED).map_err(broken)?;
                for entry in table.iter().map_err(broken)? {
                    let (key, until) = entry.map_err(broken)?;
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
                txn.open_table(FAILURES).map_err(broken)?;
                txn.open_table(SESSIONS).map_err(broken)?;
                txn.open_table(FLOWS).map_err(broken)?;
                let table = txn.open_table(QUOTAS).map_err(broken)?;
                for entry in table.iter().map_err(broken)? {
                    let (key, value) = entry.map_err(broken)?;
                    let key = CounterKey::from_stored(key.value());
                    let counter = quota::decode(value.value());
                    if let (Some(key), Some(counter)) = (key, counter) {
                        if counter.window.end > now {
                            counters.load(key, counter);
                        }
                    }
                }
            }
            txn.commit().map_err(broken)?;
            Ok(db)
        })
        .await
        .map_err(broken)??;
        Ok(Embedded { db: Arc::new(db) })
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(broken)?
    }

    pub async fn new_family(&self, sid: &str, family: Family) -> Result<(), StoreError> {
        let sid = sid.to_owned();
        self.run(move |db| {
            let txn = db.begin_write().map_err(broken)?;
            {
                let json = serde_json::to_vec(&family).map_err(broken)?;
                txn.open_table(FAMILIES)
                    .map_err(broken)?
                    .insert(sid.as_str(), json.as_slice())
                    .map_err(broken)?;
                txn.open_table(REFRESH)
                    .map_err(broken)?
                    .insert(family.current.as_str(), sid.as_str())
                    .map_err(broken)?;
                txn.open_table(REFRESH_EXPIRES)
                    .map_err(broken)?
                    .insert(family.current.as_str(), family.expires)
                    .map_err(broken)?;
            }
            txn.commit().map_err(broken)
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
            let txn = db.begin_write().map_err(broken)?;
            let outcome = {
                let mut refresh = txn.open_table(REFRESH).map_err(broken)?;
                let sid = match refresh.get(presented.as_str()).map_err(broken)? {
                    Some(sid) => sid.value().to_owned(),
                    None => return Ok(Rotation::Unknown),
                };
                let mut families = txn.open_table(FAMILIES).map_err(broken)?;
                let mut family: Family = match families.get(sid.as_str()).map_err(broken)? {
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
                        .map_err(broken)?;
                    Rotation::Reused { sid }
                } else {
                    family.current = new.clone();
                    family.expires = expires;
                    let json = serde_json::to_vec(&family).map_err(broken)?;
                    families
                        .insert(sid.as_str(), json.as_slice())
                        .map_err(broken)?;
                    refresh.insert(new.as_str(), sid.as_str()).map_err(broken)?;
                    txn.open_table(REFRESH_EXPIRES)
                        .map_err(broken)?
                        .insert(new.as_str(), expires)
                        .map_err(broken)?;
                    Rotation::Rotated {
                        sid,
                        user: family.user,
                    }
                }
            };
            txn.commit().map_err(broken)?;
            Ok(outcome)
        })
        .await
    }

    pub async fn family_of(&self, hash: &str) -> Result<Option<String>, StoreError> {
        let hash = hash.to_owned();
        self.run(move |db| {
            let txn = db.begin_read().map_err(broken)?;
            let table = txn.open_table(REFRESH).map_err(broken)?;
            Ok(table
                .get(hash.as_str())
                .map_err(broken)?
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
            let txn = db.begin_write().map_err(broken)?;
            {
                let mut revoked = txn.open_table(REVOKED).map_err(broken)?;
                if let Some((key, until)) = &jti {
                    revoked.insert(key.as_str(), until).map_err(broken)?;
                }
                if let Some((sid, until)) = &sid {
                    revoked
                        .insert(format!("sid:{sid}").as_str(), until)
                        .map_err(broken)?;
                    let mut families = txn.open_table(FAMILIES).map_err(broken)?;
                    let family: Option<Family> = match families.get(sid.as_str()).map_err(broken)? {
                        Some(json) => Some(serde_json::from_slice(json.value()).map_err(broken)?),
                        None => None,
                    };
                    if let Some(mut family) = family {
                        family.revoked = true;
                        let json = serde_json::to_vec(&family).map_err(broken)?;
                        families
                            .insert(sid.as_str(), json.as_slice())
                            .map_err(broken)?;
                    }
                }
            }
            txn.commit().map_err(broken)
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
            let txn = db.begin_write().map_err(broken)?;
            {
                txn.open_table(FAMILIES)
                    .map_err(broken)?
                    .insert(sid.as_str(), family.as_slice())
                    .map_err(broken)?;
                txn.open_table(SESSIONS)
                    .map_err(broken)?
                    .insert(hash.as_str(), json.as_slice())
                    .map_err(broken)?;
            }
            txn.commit().map_err(broken)
        })
        .await
    }

    /// The session under `hash`, and whether its family is revoked (or gone).
    pub async fn session(&self, hash: &str) -> Result<Option<(Session, bool)>, StoreError> {
        let hash = hash.to_owned();
        self.run(move |db| {
            let txn = db.begin_read().map_err(broken)?;
            let sessions = txn.open_table(SESSIONS).map_err(broken)?;
            let Some(json) = sessions.get(hash.as_str()).map_err(broken)? else {
                return Ok(None);
            };
            let session: Session = serde_json::from_slice(json.value()).map_err(broken)?;
            let families = txn.open_table(FAMILIES).map_err(broken)?;
            let revoked = match families.get(session.sid.as_str()).map_err(broken)? {
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
            let txn = db.begin_write().map_err(broken)?;
            {
                let mut sessions = txn.open_table(SESSIONS).map_err(broken)?;
                // Only a session still there is written back: one ended
                // meanwhile stays ended.
                if sessions.get(hash.as_str()).map_err(broken)?.is_some() {
                    sessions
                        .insert(hash.as_str(), json.as_slice())
                        .map_err(broken)?;
                }
            }
            txn.commit().map_err(broken)
        })
        .await
    }

    pub async fn end_session(&self, hash: &str) -> Result<(), StoreError> {
        let hash = hash.to_owned();
        self.run(move |db| {
            let txn = db.begin_write().map_err(broken)?;
            txn.open_table(SESSIONS)
                .map_err(broken)?
                .remove(hash.as_str())
                .map_err(broken)?;
            txn.commit().map_err(broken)
        })
        .await
    }

    pub async fn put_flow(&self, key: &str, flow: &str, expires: u64) -> Result<(), StoreError> {
        let key = key.to_owned();
        let mut value = expires.to_be_bytes().to_vec();
        value.extend_from_slice(flow.as_bytes());
        self.run(move |db| {
            let txn = db.begin_write().map_err(broken)?;
            txn.open_table(FLOWS)
                .map_err(broken)?
                .insert(key.as_str(), value.as_slice())
                .map_err(broken)?;
            txn.commit().map_err(broken)
        })
        .await
    }

    /// Removes the flow under `key` in one write transaction and returns
    /// it if it had not expired at `now`: two callbacks with one `state`
    /// cannot both get it.
    pub async fn take_flow(&self, key: &str, now: u64) -> Result<Option<String>, StoreError> {
        let key = key.to_owned();
        self.run(move |db| {
            let txn = db.begin_write().map_err(broken)?;
            let taken = {
                let mut table = txn.open_table(FLOWS).map_err(broken)?;
                let removed = table.remove(key.as_str()).map_err(broken)?;
                removed.and_then(|v| {
                    let v = v.value();
                    let expires = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
                    let flow = String::from_utf8(v.get(8..)?.to_vec()).ok()?;
                    (expires >= now).then_some(flow)
                })
            };
            txn.commit().map_err(broken)?;
            Ok(taken)
        })
        .await
    }

    pub async fn failures(&self, user: &str) -> Result<Option<Failures>, StoreError> {
        let user = user.to_owned();
        self.run(move |db| {
            let txn = db.begin_read().map_err(broken)?;
            let table = txn.open_table(FAILURES).map_err(broken)?;
            match table.get(user.as_str()).map_err(broken)? {
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
            let txn = db.begin_write().map_err(broken)?;
            {
                let mut table = txn.open_table(FAILURES).map_err(broken)?;
                let mut f: Failures = match table.get(user.as_str()).map_err(broken)? {
                    Some(json) => serde_json::from_slice(json.value()).map_err(broken)?,
                    None => Failures::default(),
                };
                f.record(now, &policy);
                let json = serde_json::to_vec(&f).map_err(broken)?;
                table
                    .insert(user.as_str(), json.as_slice())
                    .map_err(broken)?;
            }
            txn.commit().map_err(broken)
        })
        .await
    }

    pub async fn login_succeeded(&self, user: &str) -> Result<(), StoreError> {
        let user = user.to_owned();
        self.run(move |db| {
            let txn = db.begin_write().map_err(broken)?;
            txn.open_table(FAILURES)
                .map_err(broken)?
                .remove(user.as_str())
                .map_err(broken)?;
            txn.commit().map_err(broken)
        })
        .await
    }

    /// Writes changed quota counters (`None`: deleted) in one transaction.
    pub async fn write_counters(
        &self,
        entries: Vec<(CounterKey, Option<quota::Counter>)>,
    ) -> Result<(), (StoreError, Vec<(CounterKey, Option<quota::Counter>)>)> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let written = (|| {
                let txn = db.begin_write().map_err(broken)?;
                {
                    let mut table = txn.open_table(QUOTAS).map_err(broken)?;
                    for (key, counter) in &entries {
                        let stored = key.stored();
                        match counter {
                            Some(c) => {
                                table
                                    .insert(stored.as_str(), quota::encode(c).as_slice())
                                    .map_err(broken)?;
                            }
                            None => {
                                table.remove(stored.as_str()).map_err(broken)?;
                            }
                        }
                    }
                }
                txn.commit().map_err(broken)
            })();
            written.map_err(|e| (e, entries))
        })
        .await
        .map_err(|e| (broken(e), Vec::new()))?
    }

    /// Deletes expired revocations, families, refresh hashes and failure records.
    pub async fn purge(&self, now: u64) -> Result<(), StoreError> {
        self.run(move |db| {
            let txn = db.begin_write().map_err(broken)?;
            {
                txn.open_table(REVOKED)
                    .map_err(broken)?
                    .retain(|_, until| until >= now)
                    .map_err(broken)?;
                txn.open_table(FAMILIES)
                    .map_err(broken)?
                    .retain(|_, json| {
                        serde_json::from_slice::<Family>(json).is_ok_and(|f| f.expires >= now)
                    })
                    .map_err(broken)?;
                let mut expired = Vec::new();
                txn.open_table(REFRESH_EXPIRES)
                    .map_err(broken)?
                    .retain(|hash, expires| {
                        let keep = expires >= now;
                        if !keep {
                            expired.push(hash.to_owned());
                        }
                        keep
                    })
                    .map_err(broken)?;
                let mut refresh = txn.open_table(REFRESH).map_err(broken)?;
                for hash in expired {
                    refresh.remove(hash.as_str()).map_err(broken)?;
                }
                txn.open_table(SESSIONS)
                    .map_err(broken)?
                    .retain(|_, json| {
                        serde_json::from_slice::<Session>(json).is_ok_and(|s| s.expires_at() >= now)
                    })
                    .map_err(broken)?;
                txn.open_table(FLOWS)
                    .map_err(broken)?
                    .retain(|_, v| {
                        v.get(..8)
                            .and_then(|b| b.try_into().ok())
                            .is_some_and(|b| u64::from_be_bytes(b) >= now)
                    })
                    .map_err(broken)?;
                txn.open_table(QUOTAS)
                    .map_err(broken)?
                    .retain(|_, value| quota::decode(value).is_some_and(|c| c.window.end > now))
                    .map_err(broken)?;
                // A failure record older than a day has no window or lock left.
                txn.open_table(FAILURES)
                    .map_err(broken)?
                    .retain(|_, json| {
                        serde_json::from_slice::<Failures>(json)
                            .is_ok_and(|f| f.locked_until >= now || f.window_start + 86_400 >= now)
                    })
                    .map_err(broken)?;
            }
            txn.commit().map_err(broken)
        })
        .await
    }
}
