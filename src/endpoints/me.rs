//! `GET /auth/me` (SPEC §4, §9): who the bearer token, API key or session
//! belongs to.
//! The pipeline has authenticated the request already.

use http::{Response, StatusCode};

use crate::auth::{Principal, Scheme};
use crate::body::{json_response, Body};

/// `{"sub","roles","method","exp"}` (`exp` only for tokens).
pub fn answer(p: &Principal) -> Response<Body> {
    let mut body =
        serde_json::json!({ "sub": &*p.user, "roles": p.roles, "method": p.scheme.as_str() });
    match (p.scheme, p.exp) {
        // A session's end slides with its use: said as a time (SPEC §9).
        (Scheme::Session, Some(exp)) => body["expires_at"] = super::session::rfc3339(exp).into(),
        (_, Some(exp)) => body["exp"] = exp.into(),
        (_, None) => {}
    }
    json_response(StatusCode::OK, &body)
}
