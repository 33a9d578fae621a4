//! `rate_limits:`, and the `{ rate, burst }` token bucket routes use too.
//!
//! Rules: a rate is `N/s`, `N/min` or `N/h` with N at least 1 (checked as it
//! is read, in `values.rs`); a `burst` is between 1 and 4294967295.

use super::Ctx;
use crate::config::file::{self, RateSpec};
use crate::config::model::{Limit, RateLimits};
use crate::config::ConfigError;

pub(super) fn rate_limits(cx: &Ctx, raw: &file::RateLimits) -> Result<RateLimits, ConfigError> {
    Ok(RateLimits {
        per_ip: raw
            .per_ip
            .map(|r| limit(cx, "rate_limits.per_ip", r))
            .transpose()?,
        login: raw
            .login
            .map(|r| limit(cx, "rate_limits.login", r))
            .transpose()?,
    })
}

/// A token bucket at `key`; `burst` defaults to the rate's count.
pub(super) fn limit(cx: &Ctx, key: &str, spec: RateSpec) -> Result<Limit, ConfigError> {
    let burst = match spec.burst {
        None => spec.rate.count,
        Some(b) => match u32::try_from(b.0) {
            Ok(b) if b > 0 => b,
            _ => return Err(cx.err(format!("{key}.burst"), "must be between 1 and 4294967295")),
        },
    };
    Ok(Limit {
        rate: spec.rate,
        burst,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::{assert_errors, assert_valid};

    #[test]
    fn every_rate_limits_rule_names_its_key() {
        assert_errors(&[
            // A burst is between 1 and 4294967295.
            (
                "rate_limits:\n  per_ip: { rate: 100/s, burst: 0 }\n",
                "rate_limits.per_ip.burst",
                "must be between 1 and 4294967295",
            ),
            (
                "rate_limits:\n  login: { rate: 5/min, burst: 4294967296 }\n",
                "rate_limits.login.burst",
                "must be between 1 and 4294967295",
            ),
            // From the file's shape: a rate is N/s, N/min or N/h, N at least 1.
            (
                "rate_limits:\n  per_ip: { rate: 100/day }\n",
                "rate_limits.per_ip.rate",
                "invalid rate \"100/day\": expected N/s, N/min or N/h",
            ),
            (
                "rate_limits:\n  login: { rate: 0/min }\n",
                "rate_limits.login.rate",
                "the count must be at least 1",
            ),
            (
                "rate_limits:\n  per_ip: { burst: 5 }\n",
                "rate_limits.per_ip",
                "missing field `rate`",
            ),
            (
                "rate_limits:\n  per_route: { rate: 1/s }\n",
                "rate_limits.per_route",
                "unknown field `per_route`",
            ),
        ]);
    }

    #[test]
    fn valid_rate_limits_sections_pass() {
        let configs = assert_valid(&[
            "",
            "rate_limits:\n  per_ip: null\n  login: { rate: 3/h }\n",
            "rate_limits:\n  per_ip: { rate: 1/s, burst: 4294967295 }\n",
        ]);
        let default = &configs[0].rate_limits;
        let per_ip = default.per_ip.expect("per_ip is on by default");
        assert_eq!((per_ip.rate.count, per_ip.burst), (100, 200));
        let login = default.login.expect("login is on by default");
        assert_eq!(
            (login.rate.count, login.rate.per, login.burst),
            (5, Duration::from_secs(60), 5)
        );
        assert!(configs[1].rate_limits.per_ip.is_none());
        let login = configs[1].rate_limits.login.expect("login");
        assert_eq!(login.burst, 3, "burst defaults to the rate's count");
        assert_eq!(
            configs[2].rate_limits.per_ip.expect("per_ip").burst,
            u32::MAX
        );
    }
}
