//! The admin listener (SPEC §6): `/metrics`, `/healthz`, `/readyz`, and the
//! identity assertion's JWKS when it is configured (SPEC §12). Plain
//! HTTP, loopback by default, never on the public listeners.

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::body::json_response;
use crate::body::Body;
use crate::metrics::Metrics;
use crate::pipeline::rescue::{rescue, Failure};

/// Whether gatehouse is ready for traffic, and if not, why.
pub type Readiness = Result<(), String>;

pub fn handle<B>(
    req: &Request<B>,
    metrics: &Metrics,
    readiness: impl FnOnce() -> Readiness,
    jwks: impl FnOnce() -> Option<bytes::Bytes>,
) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return rescue(&Failure::Method { allow: "GET, HEAD" }).to_response();
    }
    match req.uri().path() {
        "/metrics" => {
            let mut res = Response::new(Body::full(metrics.render()));
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            res
        }
        "/healthz" => json_response(StatusCode::OK, &json!({ "status": "ok" })),
        "/readyz" => match readiness() {
            Ok(()) => json_response(StatusCode::OK, &json!({ "status": "ready" })),
            Err(reason) => json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({ "status": "not_ready", "reason": reason }),
            ),
        },
        crate::endpoints::jwks::PATH => match jwks() {
            Some(document) => crate::endpoints::jwks::response(document),
            None => rescue(&Failure::Denied).to_response(),
        },
        _ => rescue(&Failure::Denied).to_response(),
    }
}
