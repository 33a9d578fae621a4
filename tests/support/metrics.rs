//! Reading gatehouse's Prometheus text (SPEC §6) the way the tests need it:
//! one exact series, or the sum over the series that carry some labels.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The admin listener's `/metrics` text at `admin`.
pub async fn scrape(admin: SocketAddr) -> String {
    super::backends::client()
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body")
}

/// The value of the sample `series` (name and labels, exactly as exported:
/// `name{labels}`, or `name`), if there is one.
pub fn find_sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// [`find_sample`], 0 when absent (a counter nothing has counted yet).
pub fn sample(metrics: &str, series: &str) -> f64 {
    find_sample(metrics, series).unwrap_or(0.0)
}

/// Polls the `/metrics` of `admin` until `series` has `value`, for up to
/// 5 s; the last text either way (so the caller's assertion shows it).
pub async fn wait_for_sample(admin: SocketAddr, series: &str, value: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = scrape(admin).await;
        if find_sample(&text, series) == Some(value) || Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The sum of the samples of `name` whose labels include all of `labels`.
pub fn sum_with_labels(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|line| line.rsplit_once(' '))
        .map(|(_, value)| value.parse::<f64>().expect("a sample value"))
        .sum()
}
