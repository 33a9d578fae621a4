//! Memory of the per-IP rate limiter (issue 5): the process's RSS before,
//! after 1,000,000 distinct client IPs, and after their buckets are evicted.
//! A fake clock stands in for the minute that passes before eviction.
//!
//! `cargo bench --bench limiter_memory`

use std::time::Duration;

use gatehouse::config::{values::parse_rate, Limit};
use gatehouse::pipeline::rate_limit::{Key, Limiter};
use governor::clock::FakeRelativeClock;

/// Resident set size of this process, in MiB (Linux).
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let clock = FakeRelativeClock::default();
    let limit = Limit {
        rate: parse_rate("100/s").expect("rate"),
        burst: 200,
    };
    let limiter = Limiter::with_clock(limit, clock.clone());
    let before = rss_mib();
    for i in 0..1_000_000u32 {
        // Distinct public-looking IPv4 clients.
        limiter.check(&Key::V4(0x0B00_0000 + i));
    }
    let full = rss_mib();
    let keys = limiter.len();
    clock.advance(Duration::from_secs(60));
    limiter.evict_idle();
    let evicted = rss_mib();
    println!("limiter memory (per_ip 100/s burst 200):");
    println!("  RSS before:                       {before:8.1} MiB");
    println!("  RSS after 1,000,000 client IPs:   {full:8.1} MiB  ({keys} keys)");
    println!(
        "  RSS after eviction:               {evicted:8.1} MiB  ({} keys)",
        limiter.len()
    );
    println!("  goal (issue 6): <= 100 MiB, back near the baseline after eviction");
}
