//! The token endpoints over HTTP (SPEC §4): `POST /login` and
//! `/auth/refresh` answer tokens, `POST /auth/logout` ends a session. They
//! read their (small) body themselves, under the same rules as a proxied
//! body — a size limit, no gap over `body_read_timeout` — and, at most
//! 16 KiB, whole within `body_read_timeout`, so a login trickled a byte at
//! a time holds no connection slot. The token logic is [`crate::auth::tokens`].

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt as _;

use super::{Cx, Endpoint};
use crate::auth::tokens::{self as logic, TokenError};
use crate::auth::Principal;
use crate::body::{json_response, Body, BodyError, Limited};

/// `POST /login` or `/auth/refresh`: a token response.
pub async fn issue<B>(
    endpoint: Endpoint,
    cx: &Cx<'_>,
    req: Request<B>,
    now: u64,
) -> Result<Response<Body>, TokenError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    let login = endpoint == Endpoint::Login;
    let answer = async {
        let kind = logic::body_kind(content_type(&req))?;
        let body = read_body(cx, req).await?;
        if login {
            let request = logic::parse_login(kind, &body)?;
            logic::login(&cx.tokens, request, now).await
        } else {
            let token = logic::parse_refresh(kind, &body)?;
            logic::refresh(&cx.tokens, &token, now).await
        }
    }
    .await;
    let answer = answer.inspect_err(|e| {
        if login && is_bad_request(e) {
            cx.tokens
                .metrics
                .logins
                .with_label_values(&["bad_request"])
                .inc();
        }
    })?;
    let mut res = json_response(StatusCode::OK, &answer);
    // RFC 6749 §5.1: token responses are never cached.
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(res)
}

/// `POST /auth/logout`: the access token the pipeline verified, its family,
/// and the family of an optional `{"refresh_token"}` stop working.
pub async fn logout<B>(
    cx: &Cx<'_>,
    req: Request<B>,
    principal: &Principal,
    now: u64,
) -> Result<Response<Body>, TokenError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    let kind = match logic::body_kind(content_type(&req)) {
        Ok(kind) => Some(kind),
        // No body, no content type: nothing but the token to end.
        Err(_) if content_type(&req).is_none() => None,
        Err(e) => return Err(e),
    };
    let body = read_body(cx, req).await?;
    let refresh = logic::parse_logout(kind, &body)?;
    logic::logout(&cx.tokens, principal, refresh.as_deref(), now).await?;
    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::NO_CONTENT;
    Ok(res)
}

pub(super) fn content_type<B>(req: &Request<B>) -> Option<&str> {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
}

/// Whether the login metric counts `e` as `bad_request`.
fn is_bad_request(e: &TokenError) -> bool {
    matches!(
        e,
        TokenError::UnsupportedMediaType | TokenError::BadBody(_) | TokenError::Body(_)
    )
}

/// The whole body, at most [`logic::MAX_BODY`] bytes, within
/// `body_read_timeout`.
pub(super) async fn read_body<B>(cx: &Cx<'_>, req: Request<B>) -> Result<Bytes, TokenError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    let limit = logic::MAX_BODY as u64;
    if content_length(&req).is_some_and(|len| len > limit) {
        return Err(BodyError::TooLarge { limit }.into());
    }
    let within = cx.body_read_timeout;
    let read = Limited::new(req.into_body(), limit, within).collect();
    match tokio::time::timeout(within, read).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) => Err(BodyError::find(e.as_ref())
            .unwrap_or(BodyError::Malformed)
            .into()),
        Err(_) => Err(BodyError::Stalled { after: within }.into()),
    }
}

fn content_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}
