//! The admin listener (SPEC §6): `/metrics`, `/healthz`, `/readyz`, the
//! identity assertion's JWKS when it is configured (SPEC §12), and the
//! quota counters for `gatehouse quota show|reset` (SPEC §11: the embedded
//! store's file is held by the running gatehouse, so the CLI asks it here).
//! Plain HTTP, loopback by default, never on the public listeners.

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

/// Where the quota counters are answered: `GET /quota?name=N&principal=P`
/// (the status of SPEC §11) and `POST /quota/reset?name=N&principal=P`.
pub const QUOTA_PATH: &str = "/quota";
pub const QUOTA_RESET_PATH: &str = "/quota/reset";

/// Answers the quota paths from the running config and store.
pub async fn quota<B>(
    req: &Request<B>,
    quotas: &[crate::config::Quota],
    store: &crate::store::Store,
    now: u64,
) -> Response<Body> {
    let (path, method) = (req.uri().path(), req.method());
    let reset = match (path, method) {
        (QUOTA_PATH, &Method::GET) => false,
        (QUOTA_RESET_PATH, &Method::POST) => true,
        (QUOTA_PATH, _) => return rescue(&Failure::Method { allow: "GET" }).to_response(),
        (QUOTA_RESET_PATH, _) => return rescue(&Failure::Method { allow: "POST" }).to_response(),
        _ => return rescue(&Failure::Denied).to_response(),
    };
    let mut name = None;
    let mut principal = None;
    for (k, v) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        match &*k {
            "name" => name = Some(v.into_owned()),
            "principal" => principal = Some(v.into_owned()),
            _ => {}
        }
    }
    let (Some(name), Some(principal)) = (name, principal) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "error": "bad_request", "detail": "name and principal are required" }),
        );
    };
    let Some(q) = quotas.iter().find(|q| *q.name == *name) else {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({ "error": "not_found", "detail": format!("no quota named {name:?}") }),
        );
    };
    if reset {
        let key = crate::store::quota::CounterKey::new(&q.name, &principal);
        if let Err(e) = store.quota_reset(&key).await {
            tracing::warn!(error = %e, "quota reset failed");
            return crate::error::Problem::StoreUnavailable.to_response();
        }
        store.flush_quotas().await;
    }
    match store.quota_status(q, &principal, now).await {
        Ok(status) => json_response(StatusCode::OK, &status),
        Err(e) => {
            tracing::warn!(error = %e, "quota status failed");
            crate::error::Problem::StoreUnavailable.to_response()
        }
    }
}
