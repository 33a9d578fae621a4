//! The Redis store: the same data as the embedded one, shared by every
//! gatehouse replica. Keys live under `key_prefix`, each with a TTL:
//!
//! - `fam:<sid>` — hash {user, current, expires, revoked}: a refresh family;
//! - `rt:<sha256>` — the family of a refresh token (spent ones too);
//! - `revocations` — sorted set of `jti:<id>` / `sid:<id>` scored by expiry;
//! - `fail:<user>` — hash {count, window_start, locked_until};
//! - `q:<quota>:<principal>` — hash {w: window start, n: units used}: a
//!   quota counter (SPEC §11), expiring a minute after its window.
//!
//! Rotation and failure counting are Lua scripts, atomic across replicas. A
//! revocation is published on `<prefix>revocations` so every replica adds it
//! to its in-memory set at once; each also re-reads the set every
//! [`SYNC_EVERY`], and at once when the master changed or answers again.
//! The master is one URL or whatever the sentinels name ([`Link`]); its
//! connections reconnect with backoff; while Redis is down, calls fail fast
//! with [`StoreError::Unavailable`] and an outage is logged once.
//!
//! Writes that must not be lost in a failover — revocations, refresh-token
//! rotation, login failures (the lockout) — go over a connection of their
//! own and are followed by `WAIT 1` ([`REPLICA_WAIT`]) while the master has
//! a replica in sync, so that the answer leaves only once a replica holds
//! them. A replica that does not acknowledge in time is logged and the
//! write stands (it is on the master); writes stop waiting until a replica
//! is in sync again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;

use super::period::Window;
use super::quota::{Admission, Check, CounterKey};
use super::redis_link::Link;
use super::{Failures, Family, Revoked, Rotation, Session, StoreError};
use crate::config;

/// How often each replica re-reads the whole revocation set.
pub const SYNC_EVERY: Duration = Duration::from_secs(2);

/// How long a write that must survive a failover waits for a replica to
/// acknowledge it (`WAIT 1 250`).
pub const REPLICA_WAIT: Duration = Duration::from_millis(250);

const ROTATE: &str = r"
local sid = redis.call('GET', KEYS[1])
if not sid then return {'unknown'} end
local fam = ARGV[1] .. 'fam:' .. sid
local f = redis.call('HMGET', fam, 'user', 'current', 'expires', 'revoked')
if not f[1] or f[4] == '1' or tonumber(f[3]) < tonumber(ARGV[5]) then return {'unknown'} end
if f[2] ~= ARGV[2] then
  redis.call('HSET', fam, 'revoked', '1')
  return {'reused', sid}
end
redis.call('HSET', fam, 'current', ARGV[3], 'expires', ARGV[4])
redis.call('EXPIREAT', fam, ARGV[4])
redis.call('SET', ARGV[1] .. 'rt:' .. ARGV[3], sid, 'EXAT', ARGV[4])
return {'rotated', sid, f[1]}
";

const FAIL: &str = r"
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local max = tonumber(ARGV[3])
local lockout = tonumber(ARGV[4])
local f = redis.call('HMGET', KEYS[1], 'count', 'window_start', 'locked_until')
local count = tonumber(f[1]) or 0
local ws = tonumber(f[2]) or 0
local lu = tonumber(f[3]) or 0
if now - ws > window then count = 0; ws = now end
count = count + 1
if count >= max then lu = now + lockout; count = 0; ws = now end
redis.call('HSET', KEYS[1], 'count', count, 'window_start', ws, 'locked_until', lu)
local keep = math.max(ws + window, lu) - now
if keep < 1 then keep = 1 end
redis.call('EXPIRE', KEYS[1], keep)
return count
";

/// GCRA (the generic cell rate algorithm) over Redis's own clock, so every
/// replica agrees. ARGV: emission interval (µs), burst. Returns {allowed,
/// remaining, µs until the bucket is full, µs until the next request fits}.
const GCRA: &str = r"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local tolerance = interval * burst
local new_tat = tat + interval
if new_tat - now > tolerance then
  return {0, 0, tat - now, new_tat - now - tolerance}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, math.floor((tolerance - (new_tat - now)) / interval), new_tat - now, 0}
";

/// One admission over every quota of a request, atomic across replicas:
/// check them all, then count them all. Per key, four ARGV: window start,
/// window end, limit (-1: unlimited), cost (0: a tokens quota, which only
/// needs something left). A counter of an older window counts as empty.
/// Returns {0, used…} when admitted (used after counting), or {i, used} when
/// KEYS[i] is spent.
const QUOTA_ADMIT: &str = r"
local used = {}
for i = 1, #KEYS do
  local b = (i - 1) * 4
  local start = tonumber(ARGV[b + 1])
  local limit = tonumber(ARGV[b + 3])
  local cost = tonumber(ARGV[b + 4])
  local f = redis.call('HMGET', KEYS[i], 'w', 'n')
  local w = tonumber(f[1])
  local u = tonumber(f[2]) or 0
  if not w or w < start then u = 0 end
  used[i] = u
  if limit >= 0 and ((cost > 0 and u + cost > limit) or (cost == 0 and u >= limit)) then
    return {i, u}
  end
end
for i = 1, #KEYS do
  local b = (i - 1) * 4
  local cost = tonumber(ARGV[b + 4])
  if cost > 0 then
    local w = tonumber(redis.call('HGET', KEYS[i], 'w'))
    if not w or w < tonumber(ARGV[b + 1]) then
      redis.call('HSET', KEYS[i], 'w', ARGV[b + 1], 'n', cost)
      redis.call('EXPIREAT', KEYS[i], tonumber(ARGV[b + 2]) + 60)
    else
      redis.call('HINCRBY', KEYS[i], 'n', cost)
    end
    used[i] = used[i] + cost
  end
end
table.insert(used, 1, 0)
return used
";

/// Adds ARGV[3] units (negative: gives back, never below zero) to the quota
/// counter KEYS[1] for the window ARGV[1]..ARGV[2]; returns what it holds.
const QUOTA_ADD: &str = r"
local start = tonumber(ARGV[1])
local n = tonumber(ARGV[3])
local f = redis.call('HMGET', KEYS[1], 'w', 'n')
local w = tonumber(f[1])
local u = tonumber(f[2]) or 0
if not w or w < start then
  if n <= 0 then return 0 end
  redis.call('HSET', KEYS[1], 'w', ARGV[1], 'n', n)
  redis.call('EXPIREAT', KEYS[1], tonumber(ARGV[2]) + 60)
  return n
end
if u + n < 0 then n = -u end
return redis.call('HINCRBY', KEYS[1], 'n', n)
";

/// The answer of the shared (Redis) rate limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedBucket {
    pub allowed: bool,
    pub remaining: u32,
    /// Until the bucket is full again.
    pub reset: Duration,
    /// Until the next request fits (when refused).
    pub retry_after: Duration,
}

pub struct RedisStore {
    link: Arc<Link>,
    prefix: String,
    revoked: Arc<Revoked>,
    rotate: redis::Script,
    fail: redis::Script,
    gcra: redis::Script,
    quota_admit: redis::Script,
    quota_add: redis::Script,
    /// Redis is known to be unreachable (for logging an outage once).
    down: AtomicBool,
    /// Rate limits fell back to local limiters (for logging once).
    limits_local: AtomicBool,
    /// A replica did not acknowledge a write in time (for logging once).
    replica_late: AtomicBool,
    /// Unix seconds of the last answer from Redis (0: none yet).
    contact: AtomicU64,
}

impl RedisStore {
    /// Prepares the connection (made lazily, so gatehouse starts while
    /// Redis is down).
    pub fn open(
        server: &config::RedisServer,
        prefix: &str,
        revoked: Arc<Revoked>,
    ) -> Result<Arc<Self>, StoreError> {
        Ok(Arc::new(RedisStore {
            link: Link::open(server)?,
            prefix: prefix.to_owned(),
            revoked,
            rotate: redis::Script::new(ROTATE),
            fail: redis::Script::new(FAIL),
            gcra: redis::Script::new(GCRA),
            quota_admit: redis::Script::new(QUOTA_ADMIT),
            quota_add: redis::Script::new(QUOTA_ADD),
            down: AtomicBool::new(false),
            limits_local: AtomicBool::new(false),
            replica_late: AtomicBool::new(false),
            contact: AtomicU64::new(0),
        }))
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}{id}", self.prefix)
    }

    fn channel(&self) -> String {
        format!("{}revocations", self.prefix)
    }

    /// Maps a Redis error, noting an outage (and telling the link to look
    /// at the master again).
    fn fail_with(&self, e: redis::RedisError) -> StoreError {
        self.link.kick();
        self.note(false, &e.to_string());
        StoreError::Unavailable(e.to_string())
    }

    /// The connection to the master, or [`StoreError::Unavailable`] while
    /// none is known (Sentinel: none named yet).
    async fn conn(&self) -> Result<ConnectionManager, StoreError> {
        match self.link.node().await {
            Some(node) => Ok(node.conn.clone()),
            None => Err(self.no_master()),
        }
    }

    /// The connection for writes followed by `WAIT` (see [`Self::replicate`]).
    async fn durable(&self) -> Result<ConnectionManager, StoreError> {
        match self.link.node().await {
            Some(node) => Ok(node.durable.clone()),
            None => Err(self.no_master()),
        }
    }

    fn no_master(&self) -> StoreError {
        let why = "the redis sentinels have named no reachable master yet";
        self.link.kick();
        self.note(false, why);
        StoreError::Unavailable(why.into())
    }

    /// After a write on `conn` that must survive a failover: while the
    /// master has a replica in sync, waits (up to [`REPLICA_WAIT`]) until
    /// one holds it. The write stands either way.
    async fn replicate(&self, conn: &mut ConnectionManager) {
        if !self.link.has_replica() {
            return;
        }
        let acked: Result<i64, _> = redis::cmd("WAIT")
            .arg(1)
            .arg(REPLICA_WAIT.as_millis() as u64)
            .query_async(conn)
            .await;
        match acked {
            Ok(n) if n >= 1 => {
                if self.replica_late.swap(false, Ordering::Relaxed) {
                    tracing::info!("a redis replica acknowledges the store's writes again");
                }
            }
            failed => {
                self.link.replica_lagging();
                if !self.replica_late.swap(true, Ordering::Relaxed) {
                    let error = match failed {
                        Err(e) => e.to_string(),
                        Ok(_) => format!("no acknowledgement within {REPLICA_WAIT:?}"),
                    };
                    tracing::warn!(%error, "no redis replica acknowledged a revocation, rotation or login failure: a failover now could lose it");
                }
            }
        }
    }

    /// Unix seconds of the last answer from Redis (0: none yet).
    pub fn last_contact(&self) -> u64 {
        self.contact.load(Ordering::Relaxed)
    }

    fn note(&self, ok: bool, why: &str) {
        if ok {
            self.contact
                .fetch_max(crate::clock::unix_now(), Ordering::Relaxed);
            if self.down.swap(false, Ordering::Relaxed) {
                tracing::info!("redis store reachable again");
                // The watcher confirms it, and the listener resubscribes.
                self.link.kick();
            }
        } else if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %why, "redis store unreachable: login, refresh and logout answer 503 until it is back");
        }
    }

    pub fn readiness(&self, now: u64) -> Result<(), String> {
        if self.revoked.is_stale(now) {
            Err("redis store: revocations not synced recently (is Redis reachable?)".into())
        } else {
            Ok(())
        }
    }

    /// Adds to `pipe` the commands that store `family` as `fam:<sid>`, a
    /// hash that expires with it.
    fn put_family(&self, pipe: &mut redis::Pipeline, sid: &str, family: &Family) {
        let fam = self.key("fam:", sid);
        pipe.hset_multiple(
            &fam,
            &[
                ("user", family.user.as_str()),
                ("current", family.current.as_str()),
                ("expires", &family.expires.to_string()),
                ("revoked", "0"),
            ],
        )
        .ignore()
        .cmd("EXPIREAT")
        .arg(&fam)
        .arg(family.expires)
        .ignore();
    }

    /// Runs `pipe` atomically, noting whether Redis answered.
    async fn run(&self, pipe: &mut redis::Pipeline) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        pipe.atomic()
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.fail_with(e))?;
        self.note(true, "");
        Ok(())
    }

    pub async fn new_family(&self, sid: &str, family: Family) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        self.put_family(&mut pipe, sid, &family);
        pipe.cmd("SET")
            .arg(self.key("rt:", &family.current))
            .arg(sid)
            .arg("EXAT")
            .arg(family.expires)
            .ignore();
        self.run(&mut pipe).await
    }

    pub async fn rotate(
        &self,
        presented: &str,
        new: &str,
        expires: u64,
        now: u64,
    ) -> Result<Rotation, StoreError> {
        let mut conn = self.durable().await?;
        let out: Vec<String> = self
            .rotate
            .key(self.key("rt:", presented))
            .arg(&self.prefix)
            .arg(presented)
            .arg(new)
            .arg(expires)
            .arg(now)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.fail_with(e))?;
        self.note(true, "");
        self.replicate(&mut conn).await;
        Ok(match out.as_slice() {
            [kind, sid, user] if kind == "rotated" => Rotation::Rotated {
                sid: sid.clone(),
                user: user.clone(),
            },
            [kind, sid] if kind == "reused" => Rotation::Reused { sid: sid.clone() },
            _ => Rotation::Unknown,
        })
    }

    pub async fn family_of(&self, hash: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn().await?;
        let sid: Option<String> = conn
            .get(self.key("rt:", hash))
            .await
            .map_err(|e| self.fail_with(e))?;
        self.note(true, "");
        Ok(sid)
    }

    pub async fn revoke(
        &self,
        jti: Option<(&str, u64)>,
        sid: Option<(&str, u64)>,
        _now: u64,
    ) -> Result<(), StoreError> {
        let set = self.key("revocations", "");
        let mut pipe = redis::pipe();
        pipe.atomic();
        let mut messages = Vec::new();
        if let Some((jti, until)) = jti {
            let member = format!("jti:{jti}");
            pipe.zadd(&set, &member, until).ignore();
            messages.push(format!("{member}:{until}"));
        }
        if let Some((sid, until)) = sid {
            let member = format!("sid:{sid}");
            pipe.zadd(&set, &member, until).ignore();
            let fam = self.key("fam:", sid);
            pipe.hset(&fam, "revoked", "1").ignore();
            // HSET re-creates a family that already expired: give it a TTL.
            // A revoked family refuses its refresh tokens, so it need not
            // outlive its access tokens (`until`).
            pipe.cmd("EXPIREAT").arg(&fam).arg(until).ignore();
            messages.push(format!("{member}:{until}"));
        }
        for m in &messages {
            pipe.publish(self.channel(), m).ignore();
        }
        let mut conn = self.durable().await?;
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.fail_with(e))?;
        self.note(true, "");
        self.replicate(&mut conn).await;
        Ok(())
    }

    /// A session is a JSON string under `sess:<hash>` that expires with the
    /// session, plus its family's hash (`fam:<sid>`), as a refresh family.
    pub async fn new_session(
        &self,
        hash: &str,
        session: &Session,
        family: Family,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(session).map_err(|e| StoreError::Broken(e.to_string()))?;
        let mut pipe = redis::pipe();
        self.put_family(&mut pipe, &session.sid, &family);
        pipe.cmd("SET")
            .arg(self.key("sess:", hash))
            .arg(json)
            .arg("EXAT")
            .arg(session.expires_at())
            .ignore();
        self.run(&mut pipe).await
    }

    /// The session under `hash`, and whether its family is revoked (or gone).
    pub async fn session(&self, hash: &str) -> Result<Option<(Session, bool)>, StoreError> {
        let mut conn = self.conn().await?;
        let json: Option<String> = redis::cmd("GET")
            .arg(self.key("sess:", hash))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.fail_with(e))?;
        self.note(true, "");
        let Some(json) = json else {
            return Ok(None);
        };
        let session: Session =
            serde_json::from_str(&json).map_err(|e| StoreError::Broken(e.to_string()))?;
        let revoked: Option<String> = redis::cmd("HGET")
            .arg(self.key("fam:", &session.sid))
            .arg("revoked")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.fail_with(e))?;
        Ok(Some((session, revoked.as_deref() != Some("0"))))
    }

    /// Writes a session back, only if it is still there (`XX`): one ended
    /// meanwhile stays ended.
    pub async fn put_session(&self, hash: &str, session: &Session) -> Result<(), StoreError> {
        let json = serde_json::to_string(session).map_err(|e| StoreError::Broken(e.to_string()))?;
        let mut conn = self.conn().await?;
        redis::cmd("SET")
            .arg(self.key("sess:", hash))
            .arg(json)
            .arg("XX")
            .arg("EXAT")
            .arg(session.expires_at())
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.fail_with(e))?;
        self.note(true, "");
        Ok(())
    }

    pub async fn end_session(&self, hash: &str) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        redis::cmd("DEL")
            .arg(self.key("sess:", hash))
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.fail_with(e))?;
        self.note(true, "");
        Ok(())
    }

    /// A sign-in flow is a string under `flow:<hash>` that expires with it.
    pub async fn put_flow(&self, key: &str, flow: &str, expires: u64) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        redis::cmd("SET")
            .arg(self.key("flow:", key))
            .arg(flow)
            .arg("EXAT")
            .arg(expires)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.fail_with(e))?;
        self.note(true, "");
        Ok(())
    }

    /// `GETDEL`: one atomic read-and-delete, so a `state` is spent once
    /// across every replica.
    pub async fn take_flow(&self, key: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn().await?;
        let flow: Option<String> = redis::cmd("GETDEL")
            .arg(self.key("flow:", key))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.fail_with(e))?;
        self.note(true, "");
        Ok(flow)
    }

    pub async fn failures(&self, user: &str) -> Result<Option<Failures>, StoreError> {
        let mut conn = self.conn().await?;
        let (count, window_start, locked_until): (Option<u32>, Option<u64>, Option<u64>) =
            redis::cmd("HMGET")
                .arg(self.key("fail:", user))
                .arg("count")
                .arg("window_start")
                .arg("locked_until")
                .query_async(&mut conn)
                .await
                .map_err(|e| self.fail_with(e))?;
        self.note(true, "");
        Ok(window_start.map(|window_start| Failures {
            count: count.unwrap_or(0),
            window_start,
            locked_until: locked_until.unwrap_or(0),
        }))
    }

    pub async fn login_failed(
        &self,
        user: &str,
        now: u64,
        policy: &config::Login,
    ) -> Result<(), StoreError> {
        let mut conn = self.durable().await?;
        let _: i64 = self
            .fail
            .key(self.key("fail:", user))
            .arg(now)
            .arg(policy.failure_window.as_secs())
            .arg(policy.max_failures)
            .arg(policy.lockout.as_secs())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.fail_with(e))?;
        self.note(true, "");
        self.replicate(&mut conn).await;
        Ok(())
    }

    pub async fn login_succeeded(&self, user: &str) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let _: i64 = conn
            .del(self.key("fail:", user))
            .await
            .map_err(|e| self.fail_with(e))?;
        self.note(true, "");
        Ok(())
    }

    pub async fn purge(&self, now: u64) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let _: i64 = conn
            .zrembyscore(self.key("revocations", ""), "-inf", now.saturating_sub(1))
            .await
            .map_err(|e| self.fail_with(e))?;
        Ok(())
    }

    /// One check of the shared limiter `name` for `key`.
    pub async fn rate_check(
        &self,
        name: &str,
        key: &str,
        interval: Duration,
        burst: u32,
    ) -> Result<SharedBucket, StoreError> {
        let Some(node) = self.link.node().await else {
            return Err(self.limits_fall_back("no redis master known".into()));
        };
        let mut conn = node.conn.clone();
        let result: Result<(i64, i64, i64, i64), _> = self
            .gcra
            // The settings are part of the key: a changed limit starts fresh.
            .key(format!(
                "{}rl:{name}:{}x{burst}:{key}",
                self.prefix,
                interval.as_micros()
            ))
            .arg(interval.as_micros().max(1) as u64)
            .arg(burst)
            .invoke_async(&mut conn)
            .await;
        match result {
            Ok((allowed, remaining, reset, retry)) => {
                if self.limits_local.swap(false, Ordering::Relaxed) {
                    tracing::info!("rate limits are shared through redis again");
                }
                let us = |v: i64| Duration::from_micros(v.max(0) as u64);
                Ok(SharedBucket {
                    allowed: allowed == 1,
                    remaining: remaining.clamp(0, i64::from(u32::MAX)) as u32,
                    reset: us(reset),
                    retry_after: us(retry),
                })
            }
            Err(e) => {
                self.link.kick();
                Err(self.limits_fall_back(e.to_string()))
            }
        }
    }

    fn limits_fall_back(&self, error: String) -> StoreError {
        if !self.limits_local.swap(true, Ordering::Relaxed) {
            tracing::warn!(%error, "redis unreachable: rate limits fall back to this replica's local limiters");
        }
        StoreError::Unavailable(error)
    }

    fn quota_key(&self, key: &CounterKey) -> String {
        format!("{}q:{}:{}", self.prefix, key.quota, key.principal)
    }

    /// One atomic admission over `checks` (see [`QUOTA_ADMIT`]).
    pub async fn quota_admit(&self, checks: &[Check]) -> Result<Admission, StoreError> {
        let mut invocation = self.quota_admit.prepare_invoke();
        for c in checks {
            invocation
                .key(self.quota_key(&c.key))
                .arg(c.window.start)
                .arg(c.window.end)
                .arg(c.limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX)))
                .arg(c.cost);
        }
        let mut conn = self.conn().await?;
        let out: Vec<i64> = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.fail_with(e))?;
        self.note(true, "");
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        match out.as_slice() {
            [0, used @ ..] if used.len() == checks.len() => {
                Ok(Admission::Admitted(used.iter().map(|&u| n(u)).collect()))
            }
            [i, used] if *i >= 1 && n(*i) as usize <= checks.len() => Ok(Admission::Refused {
                index: n(*i) as usize - 1,
                used: n(*used),
            }),
            _ => Err(StoreError::Broken("unexpected quota answer".into())),
        }
    }

    /// Adds `n` units to a counter (negative: gives back); what it holds now.
    pub async fn quota_add(
        &self,
        key: &CounterKey,
        window: Window,
        n: i64,
    ) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        let used: i64 = self
            .quota_add
            .key(self.quota_key(key))
            .arg(window.start)
            .arg(window.end)
            .arg(n)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.fail_with(e))?;
        self.note(true, "");
        Ok(u64::try_from(used).unwrap_or(0))
    }

    /// What a counter has used in `window`.
    pub async fn quota_used(&self, key: &CounterKey, window: Window) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        let (w, n): (Option<u64>, Option<u64>) = redis::cmd("HMGET")
            .arg(self.quota_key(key))
            .arg("w")
            .arg("n")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.fail_with(e))?;
        self.note(true, "");
        Ok(match (w, n) {
            (Some(w), Some(n)) if w >= window.start => n,
            _ => 0,
        })
    }

    /// Deletes a counter: every replica sees it at once.
    pub async fn quota_reset(&self, key: &CounterKey) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let _: i64 = conn
            .del(self.quota_key(key))
            .await
            .map_err(|e| self.fail_with(e))?;
        self.note(true, "");
        Ok(())
    }

    /// Re-reads every live revocation into the in-memory set.
    async fn sync(&self) -> Result<(), StoreError> {
        let now = crate::clock::unix_now();
        let mut conn = self.conn().await?;
        let live: Vec<(String, u64)> = conn
            .zrangebyscore_withscores(self.key("revocations", ""), now, "+inf")
            .await
            .map_err(|e| self.fail_with(e))?;
        for (member, until) in live {
            self.apply(&member, until);
        }
        self.revoked.mark_synced(now);
        self.note(true, "");
        Ok(())
    }

    fn apply(&self, member: &str, until: u64) {
        if let Some(jti) = member.strip_prefix("jti:") {
            self.revoked.insert_jti(jti, until);
        } else if let Some(sid) = member.strip_prefix("sid:") {
            self.revoked.insert_sid(sid, until);
        }
    }

    /// Starts the watcher of the master ([`Link::spawn_watch`]) and the
    /// revocation sync: a full re-read every [`SYNC_EVERY`] (or a third of
    /// `max_stale` if that is shorter, so a healthy Redis never looks
    /// stale), and a pub/sub listener for immediate updates (reconnecting
    /// with backoff). Both start over at once when the master changed or
    /// answers again. All end when the store is dropped.
    pub fn spawn_sync(self: &Arc<Self>) {
        self.link.spawn_watch();
        let every = SYNC_EVERY
            .min(Duration::from_millis(
                self.revoked.max_stale.saturating_mul(1000) / 3,
            ))
            .max(Duration::from_millis(100));
        let weak = Arc::downgrade(self);
        let mut changes = self.link.changes();
        tokio::spawn(async move {
            loop {
                let Some(store) = weak.upgrade() else { return };
                let _ = store.sync().await;
                drop(store);
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    changed = changes.changed() => if changed.is_err() { return },
                }
            }
        });
        let weak = Arc::downgrade(self);
        let mut changes = self.link.changes();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                let Some(store) = weak.upgrade() else { return };
                changes.mark_unchanged();
                let listened = store.listen(&mut changes).await;
                drop(store);
                if listened {
                    backoff = Duration::from_millis(100);
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    changed = changes.changed() => if changed.is_err() { return },
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
    }

    /// Listens for published revocations on the master until the
    /// connection drops or the master changes (re-reading the whole set once
    /// subscribed, for what was published before); true if it got as far
    /// as subscribing.
    async fn listen(&self, changes: &mut tokio::sync::watch::Receiver<u64>) -> bool {
        let Some(node) = self.link.node().await else {
            return false;
        };
        let pubsub =
            tokio::time::timeout(Duration::from_secs(1), node.client.get_async_pubsub()).await;
        let Ok(Ok(mut pubsub)) = pubsub else {
            return false;
        };
        if pubsub.subscribe(self.channel()).await.is_err() {
            return false;
        }
        // What was published before the subscription: read it all.
        let _ = self.sync().await;
        let mut messages = pubsub.on_message();
        loop {
            let msg = tokio::select! {
                msg = messages.next() => msg,
                _ = changes.changed() => return true,
            };
            let Some(msg) = msg else { return true };
            let Ok(payload) = msg.get_payload::<String>() else {
                continue;
            };
            if let Some((member, until)) = payload.rsplit_once(':') {
                if let Ok(until) = until.parse() {
                    self.apply(member, until);
                }
            }
        }
    }
}
