//! Quota counters (SPEC §11): how much each principal has spent of each
//! quota in its current period.
//!
//! A counter is keyed by quota name and principal and holds the window it
//! counts (the period's start and end) and the units used. A counter whose
//! window is older than the one asked about counts from zero: a new period
//! needs no reset. One whose window is *newer* (a replica with a clock
//! ahead wrote it) is counted into as it is, so windows only move forward.
//!
//! - **Embedded store**: the counters live in memory ([`Counters`]), so an
//!   admission is a lock and a hash lookup, never a disk write. Changed
//!   counters are written to the redb file every [`FLUSH_EVERY`] in one
//!   transaction (write-behind), and at shutdown: a crash loses at most the
//!   counting of the last second. They are read back at start.
//! - **Redis**: each counter is a hash `q:<quota>:<principal>` {w, n}
//!   expiring after its period; an admission is one Lua script over all
//!   the request's quota keys (check every one, then count every one), so
//!   replicas agree exactly. The answers are mirrored in memory; while
//!   Redis cannot be reached, admissions count on in that mirror, from the
//!   last synced values, until `max_stale` after the last successful
//!   contact, then fail ([`StoreError::Unavailable`]: 503). What was counted
//!   meanwhile is added to Redis once it is back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::period::Window;
use super::{Backend, Store, StoreError};

/// How often changed embedded counters are written to disk (and how often
/// counting done during a Redis outage is retried into Redis).
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// A counter's name: a quota and a principal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CounterKey {
    pub quota: Arc<str>,
    pub principal: Arc<str>,
}

impl CounterKey {
    pub fn new(quota: &str, principal: &str) -> Self {
        CounterKey {
            quota: Arc::from(quota),
            principal: Arc::from(principal),
        }
    }

    /// The embedded store's key: the two parts joined by a NUL (which
    /// neither a quota name nor a principal can hold).
    pub(crate) fn stored(&self) -> String {
        format!("{}\0{}", self.quota, self.principal)
    }

    pub(crate) fn from_stored(s: &str) -> Option<Self> {
        let (quota, principal) = s.split_once('\0')?;
        Some(CounterKey::new(quota, principal))
    }
}

/// One quota's part of an admission.
#[derive(Debug, Clone)]
pub struct Check {
    pub key: CounterKey,
    /// The window the request falls in.
    pub window: Window,
    /// The principal's limit; `None`: unlimited (counted all the same).
    pub limit: Option<u64>,
    /// Counted at admission: 1 for a requests quota; 0 for a tokens quota,
    /// which is debited when the response ends.
    pub cost: u64,
}

impl Check {
    /// Whether `used` leaves room for this request: a request needs room
    /// for its cost, a tokens quota admits while anything is left.
    fn fits(&self, used: u64) -> bool {
        match self.limit {
            None => true,
            Some(limit) if self.cost > 0 => used.saturating_add(self.cost) <= limit,
            Some(limit) => used < limit,
        }
    }
}

/// What an admission decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Every quota had room and each counted its cost; what each has used
    /// now, in the order of the checks.
    Admitted(Vec<u64>),
    /// `checks[index]` is spent (`used` of it); nothing was counted.
    Refused { index: usize, used: u64 },
}

/// A counter as kept in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    pub window: Window,
    pub used: u64,
}

/// Counters in memory: the embedded store's, and the Redis store's mirror.
#[derive(Debug, Default)]
pub struct Counters {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    counters: HashMap<CounterKey, Counter, crate::FastHash>,
    /// Changed since the last flush (`None`: reset, to be deleted).
    dirty: HashMap<CounterKey, Option<Counter>, crate::FastHash>,
}

impl Inner {
    /// What `key` has used in `window` (a counter of an older window has
    /// used nothing of this one).
    fn used(&self, key: &CounterKey, window: Window) -> u64 {
        match self.counters.get(key) {
            Some(c) if c.window.start >= window.start => c.used,
            _ => 0,
        }
    }

    /// Adds `n` (or takes `-n`, never below zero) to `key` in `window`.
    fn add(&mut self, key: &CounterKey, window: Window, n: i64) -> u64 {
        let counter = self
            .counters
            .entry(key.clone())
            .or_insert(Counter { window, used: 0 });
        if counter.window.start < window.start {
            *counter = Counter { window, used: 0 };
        }
        counter.used = if n >= 0 {
            counter.used.saturating_add(n.unsigned_abs())
        } else {
            counter.used.saturating_sub(n.unsigned_abs())
        };
        let now = *counter;
        self.dirty.insert(key.clone(), Some(now));
        now.used
    }
}

impl Counters {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain numbers behind: usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks every quota, then counts every one, under one lock: all or
    /// nothing.
    pub fn admit(&self, checks: &[Check]) -> Admission {
        let mut inner = self.lock();
        for (index, check) in checks.iter().enumerate() {
            let used = inner.used(&check.key, check.window);
            if !check.fits(used) {
                return Admission::Refused { index, used };
            }
        }
        Admission::Admitted(
            checks
                .iter()
                .map(|c| inner.add(&c.key, c.window, c.cost as i64))
                .collect(),
        )
    }

    /// Adds `n` units (negative: gives them back, never below zero).
    pub fn add(&self, key: &CounterKey, window: Window, n: i64) -> u64 {
        self.lock().add(key, window, n)
    }

    /// What `key` has used in `window`.
    pub fn used(&self, key: &CounterKey, window: Window) -> u64 {
        self.lock().used(key, window)
    }

    /// Sets `key` to what the shared store said (the Redis mirror).
    pub fn set(&self, key: &CounterKey, window: Window, used: u64) {
        let mut inner = self.lock();
        let counter = inner
            .counters
            .entry(key.clone())
            .or_insert(Counter { window, used });
        if counter.window.start <= window.start {
            *counter = Counter { window, used };
        }
    }

    /// Forgets `key`: its principal starts its period over.
    pub fn reset(&self, key: &CounterKey) {
        let mut inner = self.lock();
        inner.counters.remove(key);
        inner.dirty.insert(key.clone(), None);
    }

    /// Loads a counter read from disk.
    pub fn load(&self, key: CounterKey, counter: Counter) {
        self.lock().counters.insert(key, counter);
    }

    /// What changed since the last call, to be written.
    pub fn take_dirty(&self) -> Vec<(CounterKey, Option<Counter>)> {
        self.lock().dirty.drain().collect()
    }

    /// Marks counters changed again (their write failed), unless they
    /// changed meanwhile.
    pub fn redirty(&self, entries: Vec<(CounterKey, Option<Counter>)>) {
        let mut inner = self.lock();
        for (key, value) in entries {
            inner.dirty.entry(key).or_insert(value);
        }
    }

    /// Forgets counters whose window ended before `now`.
    pub fn purge(&self, now: u64) {
        let mut inner = self.lock();
        inner.counters.retain(|_, c| c.window.end > now);
    }

    pub fn len(&self) -> usize {
        self.lock().counters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Counting done while Redis could not be reached, to be added to it once
/// it is back: per counter, its window and the units.
#[derive(Debug, Default)]
pub struct Pending {
    inner: Mutex<HashMap<CounterKey, (Window, i64), crate::FastHash>>,
}

impl Pending {
    fn lock(&self) -> MutexGuard<'_, HashMap<CounterKey, (Window, i64), crate::FastHash>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, key: &CounterKey, window: Window, n: i64) {
        let mut map = self.lock();
        let entry = map.entry(key.clone()).or_insert((window, 0));
        if entry.0.start < window.start {
            *entry = (window, 0);
        }
        entry.1 += n;
    }

    pub fn take(&self) -> Vec<(CounterKey, (Window, i64))> {
        self.lock().drain().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

impl Store {
    /// Admits a request against `checks`, all or nothing (see
    /// [`Counters::admit`]); in Redis, one atomic script.
    pub async fn quota_admit(&self, checks: &[Check]) -> Result<Admission, StoreError> {
        let Backend::Redis(r) = &self.backend else {
            return Ok(self.counters.admit(checks));
        };
        match r.quota_admit(checks).await {
            Ok(admission) => {
                if let Admission::Admitted(used) = &admission {
                    for (c, used) in checks.iter().zip(used) {
                        self.counters.set(&c.key, c.window, *used);
                    }
                }
                Ok(admission)
            }
            Err(e) => {
                if self.quotas_stale() {
                    return Err(e);
                }
                // Counted here, from the last synced values, and added to
                // Redis once it is back.
                let admission = self.counters.admit(checks);
                if matches!(admission, Admission::Admitted(_)) {
                    for c in checks.iter().filter(|c| c.cost > 0) {
                        self.pending.add(&c.key, c.window, c.cost as i64);
                    }
                }
                Ok(admission)
            }
        }
    }

    /// Adds `n` units to a counter (negative: gives them back) without
    /// waiting: in memory at once (embedded), or in Redis from a task of
    /// its own (counted locally and added later if Redis cannot be reached).
    pub fn quota_debit(&self, key: &CounterKey, window: Window, n: i64) {
        let Backend::Redis(r) = &self.backend else {
            self.counters.add(key, window, n);
            return;
        };
        let (r, key, counters, pending) = (
            r.clone(),
            key.clone(),
            self.counters.clone(),
            self.pending.clone(),
        );
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            pending.add(&key, window, n);
            return;
        };
        runtime.spawn(async move {
            match r.quota_add(&key, window, n).await {
                Ok(used) => counters.set(&key, window, used),
                Err(_) => {
                    counters.add(&key, window, n);
                    pending.add(&key, window, n);
                }
            }
        });
    }

    /// What a counter has used in `window` (during a Redis outage, the
    /// local count while it is fresh enough).
    pub async fn quota_used(&self, key: &CounterKey, window: Window) -> Result<u64, StoreError> {
        let Backend::Redis(r) = &self.backend else {
            return Ok(self.counters.used(key, window));
        };
        match r.quota_used(key, window).await {
            Ok(used) => {
                self.counters.set(key, window, used);
                Ok(used)
            }
            Err(_) if !self.quotas_stale() => Ok(self.counters.used(key, window)),
            Err(e) => Err(e),
        }
    }

    /// Starts `key`'s period over, on every replica at once.
    pub async fn quota_reset(&self, key: &CounterKey) -> Result<(), StoreError> {
        if let Backend::Redis(r) = &self.backend {
            r.quota_reset(key).await?;
        }
        self.counters.reset(key);
        Ok(())
    }

    /// Writes the changed embedded counters to disk; with Redis, adds what
    /// was counted during an outage. Runs every [`FLUSH_EVERY`] and at
    /// shutdown.
    pub async fn flush_quotas(&self) {
        let dirty = self.counters.take_dirty();
        match &self.backend {
            Backend::Embedded(db) => {
                if dirty.is_empty() {
                    return;
                }
                if let Err((e, entries)) = db.write_counters(dirty).await {
                    tracing::warn!(error = %e, "writing quota counters failed; retrying");
                    self.counters.redirty(entries);
                }
            }
            Backend::Redis(r) => {
                // The mirror needs no writing.
                drop(dirty);
                if self.pending.is_empty() {
                    return;
                }
                let mut entries = self.pending.take().into_iter();
                for (key, (window, n)) in entries.by_ref() {
                    match r.quota_add(&key, window, n).await {
                        Ok(used) => self.counters.set(&key, window, used),
                        Err(_) => {
                            self.pending.add(&key, window, n);
                            break;
                        }
                    }
                }
                for (key, (window, n)) in entries {
                    self.pending.add(&key, window, n);
                }
            }
        }
    }

    /// Where `principal` stands with quota `q` at `now`: SPEC §11's
    /// `{"name","unit","limit","used","remaining","resets_at"}` (`limit` and
    /// `remaining` null when unlimited), as `/auth/me` and the CLI show it.
    pub async fn quota_status(
        &self,
        q: &crate::config::Quota,
        principal: &str,
        now: u64,
    ) -> Result<serde_json::Value, StoreError> {
        let window = super::period::window(q.period, now);
        let key = CounterKey::new(&q.name, principal);
        let used = self.quota_used(&key, window).await?;
        let limit = q.limit_for(principal);
        Ok(serde_json::json!({
            "name": &*q.name,
            "unit": q.unit.as_str(),
            "limit": limit,
            "used": used,
            "remaining": limit.map(|l| l.saturating_sub(used)),
            "resets_at": super::period::rfc3339(window.end),
        }))
    }

    /// Whether Redis has not answered for longer than `max_stale`: then
    /// quota routes fail closed (SPEC §11).
    fn quotas_stale(&self) -> bool {
        match &self.backend {
            Backend::Embedded(_) => false,
            Backend::Redis(r) => {
                crate::clock::unix_now().saturating_sub(r.last_contact()) > self.revoked.max_stale
            }
        }
    }
}

/// A counter as the embedded store writes it: window start, window end and
/// units used, little-endian.
pub(crate) fn encode(c: &Counter) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..8].copy_from_slice(&c.window.start.to_le_bytes());
    out[8..16].copy_from_slice(&c.window.end.to_le_bytes());
    out[16..].copy_from_slice(&c.used.to_le_bytes());
    out
}

pub(crate) fn decode(bytes: &[u8]) -> Option<Counter> {
    let n = |i: usize| -> Option<u64> {
        Some(u64::from_le_bytes(bytes.get(i..i + 8)?.try_into().ok()?))
    };
    Some(Counter {
        window: Window {
            start: n(0)?,
            end: n(8)?,
        },
        used: n(16)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Window = Window {
        start: 86_400,
        end: 172_800,
    };
    const NEXT: Window = Window {
        start: 172_800,
        end: 259_200,
    };

    fn check(quota: &str, limit: Option<u64>, cost: u64) -> Check {
        Check {
            key: CounterKey::new(quota, "alice"),
            window: DAY,
            limit,
            cost,
        }
    }

    #[test]
    fn an_admission_counts_every_quota_or_none() {
        let c = Counters::default();
        let checks = [check("daily", Some(3), 1), check("burst", Some(2), 1)];
        assert_eq!(c.admit(&checks), Admission::Admitted(vec![1, 1]));
        assert_eq!(c.admit(&checks), Admission::Admitted(vec![2, 2]));
        // The second is spent: the first is not counted either.
        assert_eq!(c.admit(&checks), Admission::Refused { index: 1, used: 2 });
        assert_eq!(c.used(&checks[0].key, DAY), 2);
    }

    #[test]
    fn a_tokens_quota_admits_while_anything_is_left_and_counts_nothing() {
        let c = Counters::default();
        let tokens = [check("tokens", Some(100), 0)];
        assert_eq!(c.admit(&tokens), Admission::Admitted(vec![0]));
        c.add(&tokens[0].key, DAY, 99);
        assert_eq!(c.admit(&tokens), Admission::Admitted(vec![99]));
        c.add(&tokens[0].key, DAY, 500);
        assert_eq!(
            c.admit(&tokens),
            Admission::Refused {
                index: 0,
                used: 599
            }
        );
    }

    #[test]
    fn unlimited_counts_without_refusing() {
        let c = Counters::default();
        let q = [check("q", None, 1)];
        for i in 1..=5 {
            assert_eq!(c.admit(&q), Admission::Admitted(vec![i]));
        }
    }

    #[test]
    fn a_new_window_starts_from_zero_and_an_older_one_counts_into_the_newer() {
        let c = Counters::default();
        let key = CounterKey::new("q", "alice");
        c.add(&key, DAY, 7);
        assert_eq!(c.used(&key, NEXT), 0);
        assert_eq!(c.add(&key, NEXT, 1), 1);
        // A late answer of the old window counts where the counter is now.
        assert_eq!(c.add(&key, DAY, 1), 2);
        assert_eq!(c.used(&key, DAY), 2);
    }

    #[test]
    fn giving_back_never_goes_below_zero_and_reset_forgets() {
        let c = Counters::default();
        let key = CounterKey::new("q", "alice");
        c.add(&key, DAY, 1);
        assert_eq!(c.add(&key, DAY, -1), 0);
        assert_eq!(c.add(&key, DAY, -1), 0);
        c.add(&key, DAY, 4);
        c.take_dirty();
        c.reset(&key);
        assert_eq!(c.used(&key, DAY), 0);
        assert_eq!(c.take_dirty(), vec![(key, None)]);
    }

    #[test]
    fn counters_round_trip_through_their_stored_form() {
        let counter = Counter {
            window: DAY,
            used: 12_345,
        };
        assert_eq!(decode(&encode(&counter)), Some(counter));
        assert_eq!(decode(&[1, 2, 3]), None);
        let key = CounterKey::new("chat-daily", "ci-bot");
        assert_eq!(CounterKey::from_stored(&key.stored()), Some(key));
    }
}
