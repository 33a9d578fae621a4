//! Rate limiting (SPEC §2 `rate_limits`, §3.5; RFC 6585 429): token buckets
//! (GCRA) per client IP — IPv6 by /64 — and per principal.
//!
//! Each limit is a governor limiter, generic over its clock so tests run on a
//! fake one. With the Redis store, the same limits are enforced across every
//! replica by a GCRA Lua script in Redis (one round trip per check); if Redis
//! cannot answer, the local limiter decides (fail open to local, never to
//! unlimited). Idle keys are evicted every [`EVICT_EVERY`], so memory follows
//! the number of recently active clients. Limiters outlive config reloads
//! when their settings do not change ([`Limiters`]).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, QuantaClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::config::Limit;
use crate::metrics::Metrics;
use crate::store::Store;

/// A limit refused the request (RFC 6585 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limited, retry after {retry_after}s")]
pub struct RateLimited {
    pub retry_after: u64,
}

/// A limit of a route (or an endpoint), with its `limit` metric label
/// (`route:<name>`, or the endpoint's own name, `login`) and, for the login
/// limit, the `gatehouse_logins_total{result="rate_limited"}` it counts in.
#[derive(Clone)]
pub struct RouteLimit {
    pub label: String,
    pub limiter: Arc<Limiter>,
    pub also_counts: Option<prometheus::IntCounter>,
}

/// Checks one limit for `key` — in Redis when the store is shared, else (or
/// if Redis fails) locally — and refuses when it is exhausted. The decision
/// is kept in `rate` for the response's `RateLimit-*` headers.
pub async fn enforce(
    store: &Store,
    metrics: &Metrics,
    label: &str,
    limiter: &Limiter,
    key: &Key,
    rate: &mut Option<Decision>,
) -> Result<(), RateLimited> {
    let limit = limiter.limit;
    let interval = emission_interval(&limit);
    let decision = if store.shares_rate_limits() {
        // Boxed: only a shared limit waits on Redis, and its future is large.
        let key_text = key.to_shared();
        let shared_check = store.rate_check(label, &key_text, interval, limit.burst);
        match Box::pin(shared_check).await {
            Some(Ok(bucket)) => Decision::from_shared(bucket, limit.burst),
            Some(Err(_)) => {
                metrics.rate_limit_fallbacks.inc();
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
        if label != PER_IP && rate.is_none_or(|prev| decision.remaining <= prev.remaining) {
            *rate = Some(decision);
        }
        return Ok(());
    }
    *rate = Some(decision);
    metrics.rate_limited.with_label_values(&[label]).inc();
    Err(RateLimited {
        retry_after: decision.retry_after,
    })
}

/// The `limit` label of `rate_limits.per_ip`.
pub const PER_IP: &str = "per_ip";

impl std::fmt::Debug for RouteLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteLimit")
            .field("label", &self.label)
            .field("limit", &self.limiter.limit)
            .finish_non_exhaustive()
    }
}

/// How often idle keys are evicted.
pub const EVICT_EVERY: Duration = Duration::from_secs(60);

pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// What a bucket is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    V4(u32),
    /// The /64 prefix: one IPv6 host can use a whole /64.
    V6(u64),
    /// An authenticated principal (user or API key id).
    Principal(Arc<str>),
}

impl Key {
    pub fn ip(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Key::V4(u32::from(v4)),
            IpAddr::V6(v6) => Key::V6((u128::from(v6) >> 64) as u64),
        }
    }

    /// A stable string form, for the shared (Redis) limiter.
    pub fn to_shared(&self) -> String {
        match self {
            Key::V4(ip) => format!("ip4:{ip:08x}"),
            Key::V6(prefix) => format!("ip6:{prefix:016x}"),
            Key::Principal(p) => format!("p:{p}"),
        }
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The bucket size, or a quota's limit (`RateLimit-Limit`).
    pub limit: u64,
    /// Requests (or a quota's units) left right now (`RateLimit-Remaining`).
    pub remaining: u64,
    /// Seconds until the bucket is full again (`RateLimit-Reset`).
    pub reset: u64,
    /// Seconds until the next request is allowed (`Retry-After`), when denied.
    pub retry_after: u64,
}

impl Decision {
    /// The shared (Redis) limiter's answer as a decision.
    pub fn from_shared(b: crate::store::redis::SharedBucket, limit: u32) -> Self {
        Decision {
            allowed: b.allowed,
            limit: u64::from(limit),
            remaining: u64::from(b.remaining.min(limit)),
            reset: ceil_secs(b.reset),
            retry_after: ceil_secs(b.retry_after).max(u64::from(!b.allowed)),
        }
    }

    /// Writes the `RateLimit-*` headers (and `Retry-After` when denied).
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        headers.insert(RATELIMIT_LIMIT, HeaderValue::from(self.limit));
        headers.insert(RATELIMIT_REMAINING, HeaderValue::from(self.remaining));
        headers.insert(RATELIMIT_RESET, HeaderValue::from(self.reset));
        if !self.allowed {
            headers.insert(
                http::header::RETRY_AFTER,
                HeaderValue::from(self.retry_after.max(1)),
            );
        }
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The time one request's worth of the bucket takes to refill.
pub fn emission_interval(limit: &Limit) -> Duration {
    limit.rate.per / limit.rate.count.max(1)
}

type Inner<K, C> =
    RateLimiter<K, DashMapStateStore<K, crate::FastHash>, C, StateInformationMiddleware>;

/// One limit, enforced in this process. Each kind of key has its own map, so
/// that an IPv4 bucket costs a `u32` key rather than the whole [`Key`] enum:
/// a million client IPs take half the memory.
pub struct Limiter<C: Clock = QuantaClock> {
    pub limit: Limit,
    v4: Inner<u32, C>,
    v6: Inner<u64, C>,
    principals: Inner<Arc<str>, C>,
    clock: C,
}

impl<C: Clock + Clone> Limiter<C> {
    pub fn with_clock(limit: Limit, clock: C) -> Self {
        let burst = NonZeroU32::new(limit.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let interval = emission_interval(&limit).max(Duration::from_nanos(1));
        let quota = Quota::with_period(interval)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Limiter {
            limit,
            v4: keyed(quota, clock.clone()),
            v6: keyed(quota, clock.clone()),
            principals: keyed(quota, clock.clone()),
            clock,
        }
    }

    pub fn check(&self, key: &Key) -> Decision {
        let interval = emission_interval(&self.limit);
        let checked = match key {
            Key::V4(ip) => self.v4.check_key(ip),
            Key::V6(prefix) => self.v6.check_key(prefix),
            Key::Principal(p) => self.principals.check_key(p),
        };
        match checked {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                let missing = self.limit.burst.saturating_sub(remaining);
                Decision {
                    allowed: true,
                    limit: u64::from(self.limit.burst),
                    remaining: u64::from(remaining),
                    reset: ceil_secs(interval * missing),
                    retry_after: 0,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Decision {
                    allowed: false,
                    limit: u64::from(self.limit.burst),
                    remaining: 0,
                    reset: ceil_secs(interval * self.limit.burst.saturating_sub(1) + wait),
                    retry_after: ceil_secs(wait).max(1),
                }
            }
        }
    }

    /// Forgets buckets that are full again (their clients went quiet).
    pub fn evict_idle(&self) {
        self.v4.retain_recent();
        self.v4.shrink_to_fit();
        self.v6.retain_recent();
        self.v6.shrink_to_fit();
        self.principals.retain_recent();
        self.principals.shrink_to_fit();
    }

    /// Keys currently tracked.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len() + self.principals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn keyed<K, C>(quota: Quota, clock: C) -> Inner<K, C>
where
    K: std::hash::Hash + Eq + Clone,
    C: Clock,
{
    let store = DashMapStateStore::with_hasher(crate::FastHash::default());
    RateLimiter::<_, _, _, StateInformationMiddleware>::new(quota, store, clock)
}

impl Limiter<QuantaClock> {
    pub fn new(limit: Limit) -> Self {
        Limiter::with_clock(limit, QuantaClock::default())
    }
}

/// Every limiter of the process, by name and settings, so that a reload
/// keeps the buckets of limits it did not change.
#[derive(Default)]
pub struct Limiters {
    map: Mutex<HashMap<(String, LimitKey), Arc<Limiter>>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LimitKey {
    count: u32,
    per: Duration,
    burst: u32,
}

impl Limiters {
    /// The limiter called `name` with settings `limit`: the existing one if
    /// nothing changed, else a new one.
    pub fn get(&self, name: &str, limit: Limit) -> Arc<Limiter> {
        let key = LimitKey {
            count: limit.rate.count,
            per: limit.rate.per,
            burst: limit.burst,
        };
        let Ok(mut map) = self.map.lock() else {
            return Arc::new(Limiter::new(limit));
        };
        map.retain(|(n, k), _| n != name || *k == key);
        map.entry((name.to_owned(), key))
            .or_insert_with(|| Arc::new(Limiter::new(limit)))
            .clone()
    }

    /// Evicts idle keys everywhere, and drops the limiters no config
    /// generation holds any more; the key count per limiter name.
    pub fn evict_idle(&self) -> Vec<(String, usize)> {
        let Ok(mut map) = self.map.lock() else {
            return Vec::new();
        };
        map.retain(|_, limiter| Arc::strong_count(limiter) > 1);
        map.iter()
            .map(|((name, _), limiter)| {
                limiter.evict_idle();
                (name.clone(), limiter.len())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::values::parse_rate;
    use governor::clock::FakeRelativeClock;

    fn limiter(rate: &str, burst: u32) -> (Limiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let limit = Limit {
            rate: parse_rate(rate).unwrap(),
            burst,
        };
        (Limiter::with_clock(limit, clock.clone()), clock)
    }

    #[test]
    fn burst_is_allowed_then_refused_until_one_interval_passes() {
        let (l, clock) = limiter("5/min", 5);
        let k = Key::ip("192.0.2.1".parse().unwrap());
        for i in 0..5 {
            let d = l.check(&k);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 4 - i);
        }
        let d = l.check(&k);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, 12);
        assert_eq!(d.limit, 5);
        clock.advance(Duration::from_secs(11));
        assert!(!l.check(&k).allowed);
        clock.advance(Duration::from_secs(1));
        assert!(l.check(&k).allowed);
    }

    #[test]
    fn clients_have_separate_buckets_but_an_ipv6_64_shares_one() {
        let (l, _) = limiter("1/h", 1);
        assert!(l.check(&Key::ip("192.0.2.1".parse().unwrap())).allowed);
        assert!(l.check(&Key::ip("192.0.2.2".parse().unwrap())).allowed);
        assert!(
            l.check(&Key::ip("2001:db8:1:2::1".parse().unwrap()))
                .allowed
        );
        assert!(
            !l.check(&Key::ip("2001:db8:1:2:ffff::9".parse().unwrap()))
                .allowed
        );
        assert!(
            l.check(&Key::ip("2001:db8:1:3::1".parse().unwrap()))
                .allowed
        );
        assert_eq!(
            Key::ip("::ffff:192.0.2.1".parse().unwrap()),
            Key::ip("192.0.2.1".parse().unwrap())
        );
    }

    #[test]
    fn reset_counts_the_seconds_until_the_bucket_is_full() {
        let (l, _) = limiter("1/s", 10);
        let k = Key::Principal("alice".into());
        for _ in 0..3 {
            l.check(&k);
        }
        let d = l.check(&k);
        assert_eq!((d.remaining, d.reset), (6, 4));
    }

    #[test]
    fn idle_keys_are_evicted() {
        let (l, clock) = limiter("10/s", 10);
        for i in 0..1000u32 {
            l.check(&Key::V4(i));
        }
        assert_eq!(l.len(), 1000);
        clock.advance(Duration::from_secs(5));
        l.evict_idle();
        assert_eq!(l.len(), 0);
    }

    #[test]
    fn reload_keeps_unchanged_limiters_and_replaces_changed_ones() {
        let limiters = Limiters::default();
        let a = Limit {
            rate: parse_rate("5/min").unwrap(),
            burst: 5,
        };
        let b = Limit {
            rate: parse_rate("6/min").unwrap(),
            burst: 5,
        };
        let first = limiters.get("login", a);
        assert!(Arc::ptr_eq(&first, &limiters.get("login", a)));
        assert!(!Arc::ptr_eq(&first, &limiters.get("login", b)));
    }
}
