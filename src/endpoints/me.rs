//! `GET /auth/me` (SPEC §4, §9, §11): who the bearer token, API key or
//! session belongs to, and where it stands with the quotas that count it.
//! The pipeline has authenticated the request already.

use http::{Response, StatusCode};

use crate::auth::{Principal, Scheme};
use crate::body::{json_response, Body};
use crate::config::Quota;
use crate::store::{Store, StoreError};

/// `{"sub","roles","method","exp"}` (`exp` only for tokens), and `quotas`
/// when any quota counts this principal.
pub async fn answer(
    p: &Principal,
    quotas: &[Quota],
    store: &Store,
    now: u64,
) -> Result<Response<Body>, StoreError> {
    let mut body = identity(p);
    let applying = quotas.iter().filter(|q| q.applies_to(&p.roles));
    let mut shown = Vec::new();
    for q in applying {
        shown.push(store.quota_status(q, &p.user, now).await?);
    }
    if !shown.is_empty() {
        body["quotas"] = shown.into();
    }
    Ok(json_response(StatusCode::OK, &body))
}

/// The identity part of the answer.
fn identity(p: &Principal) -> serde_json::Value {
    let mut body =
        serde_json::json!({ "sub": &*p.user, "roles": p.roles, "method": p.scheme.as_str() });
    match (p.scheme, p.exp) {
        // A session's end slides with its use: said as a time (SPEC §9).
        (Scheme::Session, Some(exp)) => body["expires_at"] = crate::clock::rfc3339(exp).into(),
        (_, Some(exp)) => body["exp"] = exp.into(),
        (_, None) => {}
    }
    body
}
