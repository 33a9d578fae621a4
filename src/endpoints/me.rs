//! `GET /auth/me` (SPEC §4): who the bearer token or API key belongs to.
//! The pipeline has authenticated the request already.

use http::{Response, StatusCode};

use crate::auth::Principal;
use crate::body::{json_response, Body};

/// `{"sub","roles","method","exp"}` (`exp` only for tokens).
pub fn answer(p: &Principal) -> Response<Body> {
    let mut body =
        serde_json::json!({ "sub": &*p.user, "roles": p.roles, "method": p.scheme.as_str() });
    if let Some(exp) = p.exp {
        body["exp"] = exp.into();
    }
    json_response(StatusCode::OK, &body)
}
