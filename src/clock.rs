//! The clock gatehouse reads token expiry, revocations, lockouts and store
//! upkeep from: seconds since the Unix epoch. The pipeline is handed a
//! [`Clock`], so tests set the time ([`FakeClock`]) instead of sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Seconds since the Unix epoch.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn unix_now(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_now(&self) -> u64 {
        unix_now()
    }
}

/// A clock set by hand, shared by its clones (tests, benchmarks).
#[derive(Debug, Clone, Default)]
pub struct FakeClock(Arc<AtomicU64>);

impl FakeClock {
    /// A clock showing `now` (Unix seconds).
    pub fn at(now: u64) -> Self {
        FakeClock(Arc::new(AtomicU64::new(now)))
    }

    /// Moves the clock on by `seconds`.
    pub fn advance(&self, seconds: u64) {
        self.0.fetch_add(seconds, Ordering::Relaxed);
    }
}

impl Clock for FakeClock {
    fn unix_now(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Seconds since the Unix epoch, from the system clock.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Unix seconds as RFC 3339 in UTC (`2026-11-30T00:00:00Z`): session
/// expiry, quota resets.
pub fn rfc3339(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_796_000_000), "2026-11-30T00:53:20Z");
    }

    #[test]
    fn a_fake_clock_moves_only_when_told_and_its_clones_agree() {
        let clock = FakeClock::at(1_000);
        let seen_by_other = clock.clone();
        assert_eq!(clock.unix_now(), 1_000);
        clock.advance(61);
        assert_eq!(seen_by_other.unix_now(), 1_061);
        assert!(SystemClock.unix_now() > 1_700_000_000);
    }
}
