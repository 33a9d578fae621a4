//! Quotas (SPEC §11): after authorization, before forwarding, a request is
//! admitted by every quota of its route that counts its principal — or by
//! none of them.
//!
//! - The principal is the `sub` (JWT, session) or API-key id; on an
//!   `auth: none` route, the client IP (an IPv6 client by its /64).
//! - One admission in the store checks every quota, then counts every
//!   `requests` quota ([`crate::store::quota`]); the first spent quota in
//!   config order is the 429's, with `Retry-After` and `RateLimit-*` for it.
//! - A request gatehouse itself answers with 502/503/504 (the backend
//!   refused, reset, or was too slow) is given back; a backend's own 5xx
//!   counts.
//! - A `tokens` quota admits while anything is left and is debited when
//!   the response ends, or its client goes away: the backend's
//!   `usage_header` (always removed before the client), else the usage read
//!   from the body as it streams ([`super::usage`]), else `fallback_tokens`.

use std::net::IpAddr;
use std::sync::Arc;

use http::header::HeaderMap;
use http::HeaderValue;

use super::rate_limit::Decision;
use super::usage::{header_usage, UsageParser};
use super::Shared;
use crate::auth::Principal;
use crate::body::{Body, Meter};
use crate::config::{Quota, QuotaUnit, UsageSource};
use crate::metrics::Metrics;
use crate::store::period::{self, Window};
use crate::store::quota::{Admission, Check, CounterKey};
use crate::store::{Store, StoreError};
use crate::upstream::ForwardError;

/// Why a request was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// `quota` is spent until `resets_at` (Unix seconds).
    #[error("quota {quota} exceeded")]
    Exceeded {
        quota: Arc<str>,
        resets_at: u64,
        retry_after: u64,
    },
    /// The counters cannot be reached (Redis down past `max_stale`).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who a quota counts: the principal's name, or the client's address on a
/// route without authentication (an IPv6 client by its /64, written
/// `2001:db8:1:2::/64`).
pub fn principal_of(principal: Option<&Principal>, client_ip: IpAddr) -> Arc<str> {
    match principal {
        Some(p) => p.user.clone(),
        None => match client_ip.to_canonical() {
            IpAddr::V4(v4) => Arc::from(v4.to_string()),
            IpAddr::V6(v6) => {
                let prefix = std::net::Ipv6Addr::from(u128::from(v6) & !(u64::MAX as u128));
                Arc::from(format!("{prefix}/64"))
            }
        },
    }
}

/// What an admitted request owes its quotas.
#[derive(Debug, Default)]
pub struct Admitted {
    /// `requests` quotas that counted it (given back on gatehouse's own
    /// 502/503/504).
    requests: Vec<(CounterKey, Window)>,
    /// `tokens` quotas to debit when the response ends.
    tokens: Vec<TokenDebit>,
}

#[derive(Debug)]
struct TokenDebit {
    key: CounterKey,
    window: Window,
    usage: UsageSource,
    header: http::HeaderName,
    fallback: u64,
    /// The backend's usage header, once the response came.
    reported: Option<u64>,
}

/// Admits a request against the quotas `on_route` (indexes into `quotas`)
/// that count its principal; `Ok(None)` when none does. The decision for
/// the response's `RateLimit-*` headers goes into `rate`: the quota closest
/// to spent, or the spent one.
pub async fn admit(
    quotas: &[Quota],
    on_route: &[usize],
    principal: Option<&Principal>,
    client_ip: IpAddr,
    shared: &Shared,
    now: u64,
    rate: &mut Option<Decision>,
) -> Result<Option<Admitted>, QuotaError> {
    let (store, metrics) = (&shared.store, &shared.metrics);
    let roles: &[String] = principal.map_or(&[], |p| &p.roles);
    let who = principal_of(principal, client_ip);
    let applying: Vec<&Quota> = on_route
        .iter()
        .filter_map(|&i| quotas.get(i))
        .filter(|q| q.applies_to(roles))
        .collect();
    if applying.is_empty() {
        return Ok(None);
    }
    let checks: Vec<Check> = applying
        .iter()
        .map(|q| Check {
            key: CounterKey {
                quota: q.name.clone(),
                principal: who.clone(),
            },
            window: period::window(q.period, now),
            limit: q.limit_for(&who),
            cost: u64::from(q.unit == QuotaUnit::Requests),
        })
        .collect();
    match store.quota_admit(&checks).await? {
        Admission::Refused { index, used } => {
            let (q, check) = (applying[index], &checks[index]);
            let limit = check.limit.unwrap_or(u64::MAX);
            let wait = check.window.secs_left(now);
            *rate = Some(Decision {
                allowed: false,
                limit,
                remaining: limit.saturating_sub(used),
                reset: wait,
                retry_after: wait,
            });
            metrics.quota_exceeded.with_label_values(&[&q.name]).inc();
            Err(QuotaError::Exceeded {
                quota: q.name.clone(),
                resets_at: check.window.end,
                retry_after: wait,
            })
        }
        Admission::Admitted(used) => {
            let mut admitted = Admitted::default();
            for ((q, check), used) in applying.iter().zip(checks).zip(used) {
                // An unlimited quota shows no `RateLimit-*` headers.
                if let Some(limit) = check.limit {
                    let decision = Decision {
                        allowed: true,
                        limit,
                        remaining: limit.saturating_sub(used),
                        reset: check.window.secs_left(now),
                        retry_after: 0,
                    };
                    if rate.is_none_or(|prev| decision.remaining <= prev.remaining) {
                        *rate = Some(decision);
                    }
                }
                match q.unit {
                    QuotaUnit::Requests => admitted.requests.push((check.key, check.window)),
                    QuotaUnit::Tokens => admitted.tokens.push(TokenDebit {
                        key: check.key,
                        window: check.window,
                        usage: q.usage,
                        header: q.usage_header.clone(),
                        fallback: q.fallback_tokens,
                        reported: None,
                    }),
                }
            }
            Ok(Some(admitted))
        }
    }
}

/// Settles an admitted request's `requests` quotas once forwarding is
/// over: given back when gatehouse answers 502/503/504 itself (nothing was
/// served), else counted in `gatehouse_quota_consumed_total`.
pub fn settle(
    admitted: &Admitted,
    failed: Option<&ForwardError>,
    store: &Store,
    metrics: &Metrics,
) {
    let give_back = matches!(failed, Some(ForwardError::Upstream(_)));
    for (key, window) in &admitted.requests {
        if give_back {
            store.quota_debit(key, *window, -1);
        } else {
            metrics
                .quota_consumed
                .with_label_values(&[&key.quota, QuotaUnit::Requests.as_str()])
                .inc();
        }
    }
}

/// The backend's response on a route with quotas: every `tokens` quota's
/// usage header removed (whoever the principal), and the body metered for
/// the `tokens` quotas that admitted the request.
pub fn response(
    quotas: &[Quota],
    on_route: &[usize],
    admitted: Option<Admitted>,
    response: http::Response<Body>,
    store: &Store,
    metrics: &Metrics,
) -> http::Response<Body> {
    let (mut parts, body) = response.into_parts();
    let mut reported: Vec<(http::HeaderName, Option<HeaderValue>)> = Vec::new();
    for q in on_route.iter().filter_map(|&i| quotas.get(i)) {
        if q.unit == QuotaUnit::Tokens && !reported.iter().any(|(h, _)| *h == q.usage_header) {
            let value = remove_all(&mut parts.headers, &q.usage_header);
            reported.push((q.usage_header.clone(), value));
        }
    }
    let Some(mut admitted) = admitted.filter(|a| !a.tokens.is_empty()) else {
        return http::Response::from_parts(parts, body);
    };
    let mut needs_body = false;
    for debit in &mut admitted.tokens {
        debit.reported = reported
            .iter()
            .find(|(h, _)| *h == debit.header)
            .and_then(|(_, v)| v.as_ref())
            .and_then(header_usage);
        needs_body |= debit.usage == UsageSource::OpenAi && debit.reported.is_none();
    }
    let meter = TokenMeter {
        parser: needs_body.then(|| UsageParser::for_response(&parts.headers)),
        debits: admitted.tokens,
        store: store.clone(),
        metrics: metrics.clone(),
        done: false,
    };
    http::Response::from_parts(parts, body.metered(Box::new(meter)))
}

/// Removes every `name` header; the last one's value.
fn remove_all(headers: &mut HeaderMap, name: &http::HeaderName) -> Option<HeaderValue> {
    match headers.entry(name) {
        http::header::Entry::Occupied(e) => e.remove_entry_mult().1.last(),
        http::header::Entry::Vacant(_) => None,
    }
}

/// Debits a response's tokens when its body ends, or when it is dropped
/// before (the client went away): the usage seen by then, else
/// `fallback_tokens`.
struct TokenMeter {
    parser: Option<UsageParser>,
    debits: Vec<TokenDebit>,
    store: Store,
    metrics: Metrics,
    done: bool,
}

impl TokenMeter {
    fn finish(&mut self, ended: bool) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let seen = match &mut self.parser {
            Some(p) if ended => p.finish(),
            Some(p) => p.last(),
            None => None,
        };
        for d in &self.debits {
            let usage = match d.usage {
                UsageSource::Header => d.reported,
                UsageSource::OpenAi => d.reported.or(seen),
            };
            let tokens = usage.unwrap_or_else(|| {
                self.metrics
                    .quota_usage_missing
                    .with_label_values(&[&d.key.quota])
                    .inc();
                d.fallback
            });
            if tokens > 0 {
                let n = i64::try_from(tokens).unwrap_or(i64::MAX);
                self.store.quota_debit(&d.key, d.window, n);
            }
            self.metrics
                .quota_consumed
                .with_label_values(&[&d.key.quota, QuotaUnit::Tokens.as_str()])
                .inc_by(tokens);
        }
    }
}

impl Meter for TokenMeter {
    fn data(&mut self, bytes: &[u8]) {
        if let Some(p) = &mut self.parser {
            p.feed(bytes);
        }
    }

    fn end(&mut self) {
        self.finish(true);
    }
}

impl Drop for TokenMeter {
    fn drop(&mut self) {
        self.finish(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_principal_is_the_user_or_the_client_address_ipv6_by_its_64() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(&*principal_of(None, ip("192.0.2.7")), "192.0.2.7");
        assert_eq!(&*principal_of(None, ip("::ffff:192.0.2.7")), "192.0.2.7");
        assert_eq!(
            &*principal_of(None, ip("2001:db8:1:2:aaaa::9")),
            "2001:db8:1:2::/64"
        );
        let alice = Principal::new("alice", vec![], crate::auth::Scheme::Jwt, None, None, None)
            .expect("principal");
        assert_eq!(&*principal_of(Some(&alice), ip("192.0.2.7")), "alice");
    }
}
