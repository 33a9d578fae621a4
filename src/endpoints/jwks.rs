//! `GET /.well-known/gatehouse/jwks.json` (SPEC §12): the public keys that
//! verify the signed identity assertion — the current one first, then those
//! of `previous_key_files` — for backends (PyJWT's `PyJWKClient`,
//! `jsonwebtoken`). No credentials; also on the admin listener.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::body::Body;

/// Where the document is served, on the HTTPS and the admin listener.
pub const PATH: &str = "/.well-known/gatehouse/jwks.json";

/// The document as an answer. Cached for five minutes: a backend that meets
/// a new `kid` (after a rotation) fetches it again at once anyway.
pub fn response(document: Bytes) -> Response<Body> {
    let mut res = Response::new(Body::full(document));
    *res.status_mut() = StatusCode::OK;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    res
}
