//! Every metric gatehouse exports (SPEC §6), by name, in one registry passed
//! in by the caller — never the global one.
//!
//! Labels are bounded: route and upstream names from the config, methods from
//! a fixed list, status codes, fixed result words. Never a raw path, a user or
//! an IP.

use std::sync::{Arc, OnceLock};

use http::{Method, StatusCode};
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

pub const REQUESTS_TOTAL: &str = "gatehouse_requests_total";
pub const REQUEST_DURATION: &str = "gatehouse_request_duration_seconds";
pub const UPSTREAM_DURATION: &str = "gatehouse_upstream_duration_seconds";
pub const AUTH_TOTAL: &str = "gatehouse_auth_total";
pub const LOGINS_TOTAL: &str = "gatehouse_logins_total";
pub const RATE_LIMITED_TOTAL: &str = "gatehouse_rate_limited_total";
pub const UPSTREAM_ERRORS_TOTAL: &str = "gatehouse_upstream_errors_total";
pub const CONNECTIONS_OPEN: &str = "gatehouse_connections_open";
pub const TLS_HANDSHAKE_ERRORS_TOTAL: &str = "gatehouse_tls_handshake_errors_total";
pub const CONFIG_RELOADS_TOTAL: &str = "gatehouse_config_reloads_total";
pub const TLS_CERT_EXPIRY: &str = "gatehouse_tls_cert_expiry_timestamp_seconds";
pub const BUILD_INFO: &str = "gatehouse_build_info";
pub const RATE_LIMITER_KEYS: &str = "gatehouse_rate_limiter_keys";
pub const RATE_LIMIT_FALLBACKS_TOTAL: &str = "gatehouse_rate_limit_fallbacks_total";
pub const CSRF_REJECTED_TOTAL: &str = "gatehouse_csrf_rejected_total";
pub const SESSIONS_REVOKED_TOTAL: &str = "gatehouse_sessions_revoked_total";
pub const OIDC_LOGINS_TOTAL: &str = "gatehouse_oidc_logins_total";
pub const QUOTA_EXCEEDED_TOTAL: &str = "gatehouse_quota_exceeded_total";
pub const QUOTA_CONSUMED_TOTAL: &str = "gatehouse_quota_consumed_total";
pub const QUOTA_USAGE_MISSING_TOTAL: &str = "gatehouse_quota_usage_missing_total";

/// Upstream error kinds (`kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    Connect,
    Timeout,
    Reset,
    Protocol,
}

impl UpstreamErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamErrorKind::Connect => "connect",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Reset => "reset",
            UpstreamErrorKind::Protocol => "protocol",
        }
    }
}

/// Which listener a connection came in on (`listener` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Https,
    Http,
    Admin,
}

impl Listener {
    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Https => "https",
            Listener::Http => "http",
            Listener::Admin => "admin",
        }
    }
}

/// A bounded label for a request method.
pub fn method_label(method: &Method) -> &'static str {
    METHOD_LABELS[method_index(method)]
}

const METHOD_LABELS: [&str; 8] = [
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "OTHER",
];

fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::POST => 1,
        Method::PUT => 2,
        Method::PATCH => 3,
        Method::DELETE => 4,
        Method::HEAD => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

/// The auth schemes whose `result="ok"` series a route keeps at hand.
const SCHEMES: [&str; 3] = ["jwt", "api_key", "session"];

/// One route's share of the per-request metrics. A label lookup hashes
/// every label value (SipHash) and takes the vector's lock, several times a
/// request; the series a successful request feeds are looked up once per
/// config load instead, on first use, so each still appears only once it
/// has happened.
#[derive(Debug)]
pub struct RouteMetrics {
    /// The route's name: the `route` label.
    pub name: Arc<str>,
    /// `gatehouse_auth_total{route, scheme, result="ok"}`, by [`SCHEMES`].
    authorized: [OnceLock<IntCounter>; SCHEMES.len()],
    /// `gatehouse_requests_total{route, method, status="200"}`, by method.
    ok: [OnceLock<IntCounter>; METHOD_LABELS.len()],
    /// `gatehouse_request_duration_seconds{route}`.
    duration: OnceLock<Histogram>,
}

impl RouteMetrics {
    pub fn new(name: Arc<str>) -> Self {
        RouteMetrics {
            name,
            authorized: Default::default(),
            ok: Default::default(),
            duration: OnceLock::new(),
        }
    }

    /// Counts an authorization decision of this route for `scheme`.
    pub fn authorized(&self, metrics: &Metrics, scheme: &str, allowed: bool) {
        match SCHEMES
            .iter()
            .position(|s| *s == scheme)
            .filter(|_| allowed)
        {
            Some(i) => self.authorized[i]
                .get_or_init(|| metrics.auth.with_label_values(&[&self.name, scheme, "ok"]))
                .inc(),
            None => {
                let result = if allowed { "ok" } else { "forbidden" };
                metrics
                    .auth
                    .with_label_values(&[&self.name, scheme, result])
                    .inc()
            }
        }
    }

    /// Counts a request this route answered, and how long it took.
    pub fn answered(&self, metrics: &Metrics, method: &Method, status: StatusCode, secs: f64) {
        let m = method_index(method);
        if status == StatusCode::OK {
            self.ok[m]
                .get_or_init(|| {
                    metrics
                        .requests
                        .with_label_values(&[&*self.name, METHOD_LABELS[m], "200"])
                })
                .inc();
        } else {
            metrics
                .requests
                .with_label_values(&[&*self.name, METHOD_LABELS[m], status.as_str()])
                .inc();
        }
        self.duration
            .get_or_init(|| metrics.request_duration.with_label_values(&[&self.name]))
            .observe(secs);
    }
}

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_duration: HistogramVec,
    pub auth: IntCounterVec,
    pub logins: IntCounterVec,
    pub rate_limited: IntCounterVec,
    pub upstream_errors: IntCounterVec,
    pub connections_open: IntGaugeVec,
    pub tls_handshake_errors: IntCounter,
    pub config_reloads: IntCounterVec,
    pub tls_cert_expiry: Gauge,
    pub rate_limiter_keys: IntGaugeVec,
    pub rate_limit_fallbacks: IntCounter,
    pub csrf_rejected: IntCounterVec,
    /// Sessions ended before their time, by `reason`: `logout`,
    /// `user_removed` (gone from the users file, or disabled there).
    pub sessions_revoked: IntCounterVec,
    /// Sign-ins through an identity provider (SPEC §10), by provider id
    /// (from the config; `unknown` when the callback names no flow) and
    /// `result`: `success`, `denied`, `invalid`, `provider_error`.
    pub oidc_logins: IntCounterVec,
    /// Requests refused with 429 `quota_exceeded`, by `quota` (SPEC §11).
    pub quota_exceeded: IntCounterVec,
    /// Units finally debited, by `quota` and `unit` (a request given back
    /// is not counted).
    pub quota_consumed: IntCounterVec,
    /// Token responses that ended with no usage seen (debited
    /// `fallback_tokens`), by `quota`.
    pub quota_usage_missing: IntCounterVec,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

impl Metrics {
    /// Registers every metric in `registry`.
    pub fn new(registry: Registry) -> Result<Self, prometheus::Error> {
        fn counter(
            r: &Registry,
            name: &str,
            help: &str,
            labels: &[&str],
        ) -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            r.register(Box::new(c.clone()))?;
            Ok(c)
        }
        fn histogram(
            r: &Registry,
            name: &str,
            help: &str,
            labels: &[&str],
        ) -> Result<HistogramVec, prometheus::Error> {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                labels,
            )?;
            r.register(Box::new(h.clone()))?;
            Ok(h)
        }
        let r = &registry;
        let connections_open = IntGaugeVec::new(
            Opts::new(
                CONNECTIONS_OPEN,
                "Client connections currently open, per listener.",
            ),
            &["listener"],
        )?;
        r.register(Box::new(connections_open.clone()))?;
        for l in [Listener::Https, Listener::Http, Listener::Admin] {
            connections_open.with_label_values(&[l.as_str()]).set(0);
        }
        let tls_handshake_errors = IntCounter::new(
            TLS_HANDSHAKE_ERRORS_TOTAL,
            "TLS handshakes that failed or timed out.",
        )?;
        r.register(Box::new(tls_handshake_errors.clone()))?;
        let tls_cert_expiry = Gauge::new(
            TLS_CERT_EXPIRY,
            "Expiry (notAfter) of the served certificate, as a Unix timestamp.",
        )?;
        r.register(Box::new(tls_cert_expiry.clone()))?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                BUILD_INFO,
                "Always 1; the version label says which gatehouse runs.",
            ),
            &["version"],
        )?;
        r.register(Box::new(build_info.clone()))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        let rate_limiter_keys = IntGaugeVec::new(
            Opts::new(
                RATE_LIMITER_KEYS,
                "Client or principal keys a local rate limiter tracks, by limit.",
            ),
            &["limit"],
        )?;
        r.register(Box::new(rate_limiter_keys.clone()))?;
        let rate_limit_fallbacks = IntCounter::new(
            RATE_LIMIT_FALLBACKS_TOTAL,
            "Rate-limit checks decided locally because the shared (Redis) limiter was unreachable.",
        )?;
        r.register(Box::new(rate_limit_fallbacks.clone()))?;
        let metrics = Metrics {
            csrf_rejected: counter(
                r,
                CSRF_REJECTED_TOTAL,
                "Cross-site requests refused on a session (SPEC §9), by route.",
                &["route"],
            )?,
            sessions_revoked: counter(
                r,
                SESSIONS_REVOKED_TOTAL,
                "Browser sessions ended before their time, by reason.",
                &["reason"],
            )?,
            oidc_logins: counter(
                r,
                OIDC_LOGINS_TOTAL,
                "Sign-ins through an identity provider, by provider and result.",
                &["provider", "result"],
            )?,
            quota_exceeded: counter(
                r,
                QUOTA_EXCEEDED_TOTAL,
                "Requests refused because a quota was spent, by quota.",
                &["quota"],
            )?,
            quota_consumed: counter(
                r,
                QUOTA_CONSUMED_TOTAL,
                "Quota units debited (requests or tokens), by quota and unit.",
                &["quota", "unit"],
            )?,
            quota_usage_missing: counter(
                r,
                QUOTA_USAGE_MISSING_TOTAL,
                "Token responses that reported no usage (fallback_tokens debited), by quota.",
                &["quota"],
            )?,
            requests: counter(
                r,
                REQUESTS_TOTAL,
                "Requests answered, by route, method and status.",
                &["route", "method", "status"],
            )?,
            request_duration: histogram(
                r,
                REQUEST_DURATION,
                "Time from request head to the end of the response, by route.",
                &["route"],
            )?,
            upstream_duration: histogram(
                r,
                UPSTREAM_DURATION,
                "Time from forwarding to upstream response headers, by upstream.",
                &["upstream"],
            )?,
            auth: counter(
                r,
                AUTH_TOTAL,
                "Authentication decisions, by route, scheme and result.",
                &["route", "scheme", "result"],
            )?,
            logins: counter(r, LOGINS_TOTAL, "Login attempts, by result.", &["result"])?,
            rate_limited: counter(
                r,
                RATE_LIMITED_TOTAL,
                "Requests refused with 429, by limit.",
                &["limit"],
            )?,
            upstream_errors: counter(
                r,
                UPSTREAM_ERRORS_TOTAL,
                "Failed upstream exchanges, by upstream and kind.",
                &["upstream", "kind"],
            )?,
            config_reloads: counter(
                r,
                CONFIG_RELOADS_TOTAL,
                "Config reloads, by result.",
                &["result"],
            )?,
            connections_open,
            tls_handshake_errors,
            tls_cert_expiry,
            rate_limiter_keys,
            rate_limit_fallbacks,
            registry,
        };
        // Fixed label sets start at 0, so dashboards see 0 rather than nothing.
        for result in ["success", "error"] {
            metrics.config_reloads.with_label_values(&[result]);
        }
        for result in [
            "success",
            "invalid_credentials",
            "locked",
            "rate_limited",
            "bad_request",
        ] {
            metrics.logins.with_label_values(&[result]);
        }
        Ok(metrics)
    }

    /// Starts the error counters of `upstream` at 0.
    pub fn register_upstream(&self, upstream: &str) {
        for kind in [
            UpstreamErrorKind::Connect,
            UpstreamErrorKind::Timeout,
            UpstreamErrorKind::Reset,
            UpstreamErrorKind::Protocol,
        ] {
            self.upstream_errors
                .with_label_values(&[upstream, kind.as_str()]);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        // Encoding into a Vec cannot fail on I/O; a metric family that
        // violated the format would be a bug caught by the promtool test.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(metrics: &Metrics, line_start: &str) -> Option<String> {
        let text = String::from_utf8(metrics.render()).expect("utf-8");
        text.lines()
            .find(|l| l.starts_with(line_start))
            .map(|l| l.rsplit(' ').next().unwrap_or_default().to_owned())
    }

    #[test]
    fn a_routes_series_appear_on_first_use_and_outlive_a_reload() {
        let metrics = Metrics::new(Registry::new()).expect("metrics");
        let chat = RouteMetrics::new(Arc::from("chat"));
        let ok = r#"gatehouse_requests_total{method="GET",route="chat",status="200"}"#;
        let authz = r#"gatehouse_auth_total{result="ok",route="chat",scheme="jwt"}"#;
        assert_eq!(
            sample(&metrics, ok),
            None,
            "nothing before the first request"
        );
        assert_eq!(sample(&metrics, authz), None);

        chat.authorized(&metrics, "jwt", true);
        chat.answered(&metrics, &Method::GET, StatusCode::OK, 0.01);
        chat.answered(&metrics, &Method::GET, StatusCode::OK, 0.01);
        // Other statuses, refusals and unlisted schemes take the plain lookup.
        chat.answered(&metrics, &Method::GET, StatusCode::NOT_FOUND, 0.01);
        chat.authorized(&metrics, "jwt", false);
        chat.authorized(&metrics, "other", true);
        assert_eq!(sample(&metrics, ok).as_deref(), Some("2"));
        assert_eq!(sample(&metrics, authz).as_deref(), Some("1"));
        let not_found = r#"gatehouse_requests_total{method="GET",route="chat",status="404"}"#;
        assert_eq!(sample(&metrics, not_found).as_deref(), Some("1"));
        let forbidden = r#"gatehouse_auth_total{result="forbidden",route="chat",scheme="jwt"}"#;
        assert_eq!(sample(&metrics, forbidden).as_deref(), Some("1"));
        let other = r#"gatehouse_auth_total{result="ok",route="chat",scheme="other"}"#;
        assert_eq!(sample(&metrics, other).as_deref(), Some("1"));
        let count = r#"gatehouse_request_duration_seconds_count{route="chat"}"#;
        assert_eq!(sample(&metrics, count).as_deref(), Some("3"));

        // A config reload makes new handles for the same series: counts go on.
        let reloaded = RouteMetrics::new(Arc::from("chat"));
        reloaded.answered(&metrics, &Method::GET, StatusCode::OK, 0.01);
        reloaded.authorized(&metrics, "jwt", true);
        assert_eq!(sample(&metrics, ok).as_deref(), Some("3"));
        assert_eq!(sample(&metrics, authz).as_deref(), Some("2"));
        // Every method has its own series.
        chat.answered(
            &metrics,
            &Method::from_bytes(b"PURGE").unwrap(),
            StatusCode::OK,
            0.01,
        );
        let purge = r#"gatehouse_requests_total{method="OTHER",route="chat",status="200"}"#;
        assert_eq!(sample(&metrics, purge).as_deref(), Some("1"));
    }
}
