//! The last stage: one JSON access-log line and the request metrics, written
//! when the response body is finished (or dropped, if the client went away),
//! so the line carries the bytes really sent and the whole duration (SPEC §7).
//!
//! Lines go through `tracing` with target [`TARGET`]; `main.rs` routes that
//! target to stdout as JSON. Only bounded, non-secret fields are logged: the
//! normalized path never includes the query string.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use http_body::{Frame, SizeHint};
use hyper::body::Body as HttpBody;

use crate::body::Body;
use crate::metrics::{Metrics, RouteMetrics};

/// The `tracing` target of access-log lines.
pub const TARGET: &str = "gatehouse::access";

/// What the access-log line says about a request.
pub struct Record {
    pub started: Instant,
    /// Checked or made by the pipeline: 1–128 chars of `[A-Za-z0-9._-]`.
    pub request_id: http::HeaderValue,
    pub client_ip: IpAddr,
    pub method: Method,
    pub path: String,
    pub status: StatusCode,
    /// The route (its name and request metrics).
    pub route: Arc<RouteMetrics>,
    pub user: Option<Arc<str>>,
    pub auth_method: Option<&'static str>,
    pub upstream: Option<Duration>,
    pub bytes_sent: u64,
}

pin_project_lite::pin_project! {
    /// A response body that logs its request when it is done.
    pub struct Logged {
        #[pin]
        inner: Body,
        record: Option<Box<Record>>,
        metrics: Option<Metrics>,
    }

    impl PinnedDrop for Logged {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let (Some(record), Some(metrics)) = (this.record.take(), this.metrics.as_ref()) {
                finish(&record, metrics);
            }
        }
    }
}

impl Logged {
    pub fn new(inner: Body, record: Record, metrics: Metrics) -> Self {
        Logged {
            inner,
            record: Some(Box::new(record)),
            metrics: Some(metrics),
        }
    }

    /// A body that logs nothing (admin and redirect listeners use plain bodies;
    /// this is for the rare response made outside a request's pipeline).
    pub fn unlogged(inner: Body) -> Self {
        Logged {
            inner,
            record: None,
            metrics: None,
        }
    }
}

impl HttpBody for Logged {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let (Some(data), Some(record)) = (frame.data_ref(), this.record.as_mut()) {
                record.bytes_sent += data.len() as u64;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn finish(r: &Record, metrics: &Metrics) {
    let elapsed = r.started.elapsed();
    r.route
        .answered(metrics, &r.method, r.status, elapsed.as_secs_f64());
    tracing::info!(
        target: TARGET,
        request_id = r.request_id.to_str().unwrap_or_default(),
        client_ip = %r.client_ip,
        method = %r.method,
        path = %r.path,
        status = r.status.as_u16(),
        route = %r.route.name,
        user = r.user.as_deref(),
        auth_method = r.auth_method,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        upstream_ms = r.upstream.map(|d| d.as_secs_f64() * 1000.0),
        bytes_sent = r.bytes_sent,
    );
}

/// The client's `X-Request-Id` if it is 1–128 chars of `[A-Za-z0-9._-]`,
/// else a fresh random one (32 hex digits).
pub fn request_id(client: Option<&HeaderValue>) -> HeaderValue {
    if let Some(v) = client {
        let b = v.as_bytes();
        if (1..=128).contains(&b.len())
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        {
            return v.clone();
        }
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n: u128 = rand::random();
    let mut id = [0u8; 32];
    for (i, digit) in id.iter_mut().enumerate() {
        *digit = HEX[((n >> (124 - 4 * i)) & 0xf) as usize];
    }
    // Hex digits are valid header bytes.
    HeaderValue::from_bytes(&id).expect("hex digits form a header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_request_id_is_kept_only_when_well_formed() {
        let ok = HeaderValue::from_static("abc-123_x.y");
        assert_eq!(request_id(Some(&ok)), "abc-123_x.y");
        let random = request_id(None);
        assert_eq!(random.len(), 32);
        assert!(random.as_bytes().iter().all(u8::is_ascii_hexdigit));
        assert_ne!(random, request_id(None));
        let bad = HeaderValue::from_static("has space");
        let generated = request_id(Some(&bad));
        assert_eq!(generated.len(), 32);
        let long = HeaderValue::from_str(&"a".repeat(129)).unwrap();
        assert_ne!(request_id(Some(&long)), "a".repeat(129));
    }
}
