//! Upstreams: named groups of backend targets with their connection pools.
//!
//! Each target keeps its own HTTP/1.1 keep-alive connections (`pool.rs`);
//! an upstream picks its targets round-robin. A target that refused a
//! connection is skipped for [`DOWN_FOR`]; when every target is down the
//! least-recently-failed one is tried anyway rather than failing outright.
//! `forward.rs` sends requests, `headers.rs` rewrites them.

pub mod forward;
pub mod headers;
pub mod pool;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http::uri::Authority;
use prometheus::Histogram;

use crate::config;
use crate::metrics::Metrics;

pub use forward::{forward, ClientUpgrade, ForwardError, Forwarded};

/// How long a target that refused a connection is skipped.
pub const DOWN_FOR: Duration = Duration::from_secs(10);

/// One backend address.
pub struct Target {
    pub authority: Authority,
    /// Milliseconds since [`Upstream::epoch`] until which this target is skipped (0: up).
    down_until: AtomicU64,
    /// Its connections.
    pub dial: pool::Dial,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("authority", &self.authority)
            .field("idle", &self.dial.idle.len())
            .finish_non_exhaustive()
    }
}

/// A named upstream: its targets, each with its connections.
pub struct Upstream {
    pub name: Arc<str>,
    /// The signed identity assertion's `aud` for this upstream.
    pub audience: Arc<str>,
    pub targets: Vec<Target>,
    next: AtomicUsize,
    epoch: Instant,
    pub response_timeout: Duration,
    pub connect_timeout: Duration,
    /// `gatehouse_upstream_duration_seconds{upstream}`, looked up on first
    /// use instead of for every request.
    duration: OnceLock<Histogram>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("targets", &self.targets)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    pub fn new(cfg: &config::Upstream) -> Self {
        Upstream {
            name: Arc::from(cfg.name.as_str()),
            audience: Arc::from(cfg.audience.as_str()),
            targets: cfg
                .targets
                .iter()
                .filter_map(|u| u.authority().cloned())
                .map(|authority| Target {
                    dial: pool::Dial {
                        // An IPv6 literal without its brackets.
                        host: authority.host().trim_matches(['[', ']']).into(),
                        port: authority.port_u16().unwrap_or(80),
                        idle: Arc::default(),
                        connect_timeout: cfg.connect_timeout,
                    },
                    authority,
                    down_until: AtomicU64::new(0),
                })
                .collect(),
            next: AtomicUsize::new(0),
            epoch: Instant::now(),
            response_timeout: cfg.response_timeout,
            connect_timeout: cfg.connect_timeout,
            duration: OnceLock::new(),
        }
    }

    /// Records how long this upstream took to answer with its headers.
    pub fn observe(&self, metrics: &Metrics, elapsed: Duration) {
        self.duration
            .get_or_init(|| metrics.upstream_duration.with_label_values(&[&self.name]))
            .observe(elapsed.as_secs_f64());
    }

    /// Drops the connections idle for longer than [`pool::IDLE_FOR`].
    pub fn reap_idle(&self) {
        for target in &self.targets {
            target.dial.idle.reap(pool::IDLE_FOR);
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The next target to try, skipping any that is marked down (unless all are).
    pub fn pick(&self) -> &Target {
        let n = self.targets.len();
        let start = if n > 1 {
            self.next.fetch_add(1, Ordering::Relaxed) % n
        } else {
            0
        };
        let now = self.now_ms();
        let mut best = &self.targets[start];
        for i in 0..n {
            let t = &self.targets[(start + i) % n];
            let until = t.down_until.load(Ordering::Relaxed);
            if until <= now {
                return t;
            }
            if until < best.down_until.load(Ordering::Relaxed) {
                best = t;
            }
        }
        best
    }

    /// Another live target than `tried`, if there is one.
    pub fn pick_other(&self, tried: &Target) -> Option<&Target> {
        let now = self.now_ms();
        self.targets
            .iter()
            .find(|t| !std::ptr::eq(*t, tried) && t.down_until.load(Ordering::Relaxed) <= now)
    }

    /// Skips `target` for [`DOWN_FOR`].
    pub fn mark_down(&self, target: &Target) {
        let until = self.now_ms() + DOWN_FOR.as_millis() as u64;
        target.down_until.store(until, Ordering::Relaxed);
    }

    /// Marks `target` live again (a health probe reached it).
    pub fn mark_up(&self, target: &Target) {
        target.down_until.store(0, Ordering::Relaxed);
    }

    /// Whether `target` is currently skipped.
    pub fn is_down(&self, target: &Target) -> bool {
        target.down_until.load(Ordering::Relaxed) > self.now_ms()
    }
}
