//! The gateway's upkeep, beside the requests: the default upstream is
//! probed with a TCP connect every [`PROBE_EVERY`] (for `/readyz`, and to
//! skip dead targets early), idle rate-limit keys are evicted every
//! `EVICT_EVERY`, with the `gatehouse_rate_limiter_keys` gauge updated, and
//! identity providers (SPEC §10) are discovered: at start, after a reload,
//! again with backoff (at most 30 s apart) while one is down, and hourly.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpStream;

use super::Gateway;
use crate::pipeline;

/// How often the default upstream is probed for `/readyz`.
pub(super) const PROBE_EVERY: Duration = Duration::from_secs(2);

/// How often the upkeep looks for a provider discovery that is due.
const DISCOVERY_TICK: Duration = Duration::from_millis(500);

impl Gateway {
    /// Runs the identity providers' discoveries as they fall due.
    pub(super) async fn discover_providers(self) {
        loop {
            let gate = self.inner.generation.load().gate.clone();
            if let Some(oidc) = &gate.oidc {
                tokio::select! {
                    _ = oidc.discover_due() => {}
                    _ = self.inner.shutdown.cancelled() => return,
                }
            }
            drop(gate);
            tokio::select! {
                _ = tokio::time::sleep(DISCOVERY_TICK) => {}
                _ = self.inner.shutdown.cancelled() => return,
            }
        }
    }

    /// Evicts idle rate-limit keys every [`pipeline::rate_limit::EVICT_EVERY`]
    /// and reports how many each limiter still tracks; closes upstream
    /// connections idle for longer than [`crate::upstream::pool::IDLE_FOR`].
    pub(super) async fn evict_idle_rate_limit_keys(self) {
        let mut tick = tokio::time::interval(pipeline::rate_limit::EVICT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.inner.shutdown.cancelled() => return,
            }
            let shared = &self.inner.shared;
            // Upstream connections unused for long are closed on the way.
            for up in &self.inner.generation.load().gate.upstreams {
                up.reap_idle();
            }
            shared.metrics.rate_limiter_keys.reset();
            for (name, keys) in shared.carried.limiters.evict_idle() {
                shared
                    .metrics
                    .rate_limiter_keys
                    .with_label_values(&[&name])
                    .set(keys as i64);
            }
        }
    }

    /// Probes the default upstream's targets with a TCP connect every
    /// [`PROBE_EVERY`], for `/readyz` and to skip dead targets early.
    pub(super) async fn probe_upstream(self) {
        let mut tick = tokio::time::interval(PROBE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.inner.shutdown.cancelled() => return,
            }
            let generation = self.inner.generation.load_full();
            let up = generation.gate.default_upstream();
            let mut any = false;
            for target in &up.targets {
                let addr = target.authority.as_str();
                let ok = matches!(
                    tokio::time::timeout(up.connect_timeout, TcpStream::connect(addr)).await,
                    Ok(Ok(_))
                );
                if ok {
                    up.mark_up(target);
                    any = true;
                } else if !up.is_down(target) {
                    up.mark_down(target);
                }
            }
            if any {
                let now = self.inner.epoch.elapsed().as_millis() as u64 + 1;
                self.inner.upstream_ok_ms.store(now, Ordering::Relaxed);
            }
        }
    }
}
