//! The vocabulary of SPEC §5: every answer gatehouse makes itself for an
//! error, as a status, the `{"error","detail"}` JSON body and the headers
//! that status carries (`WWW-Authenticate` per RFC 6750 §3, `Allow`,
//! `Retry-After`).
//!
//! Nothing below the pipeline's rescue (`pipeline::rescue`) picks a
//! [`Problem`]: stages and endpoints return narrow errors that say what went
//! wrong, and the rescue alone says what the client is told. Details are
//! fixed strings: nothing a client sent, and no secret, is echoed.

use std::borrow::Cow;

use http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};

use crate::body::Body;

/// An answer of SPEC §5.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// SPEC §3.2 refusals and malformed bodies; the detail says which rule.
    #[error("bad request: {0}")]
    BadRequest(Cow<'static, str>),
    #[error("missing credentials")]
    MissingCredentials,
    #[error("invalid token")]
    InvalidToken,
    #[error("invalid api key")]
    InvalidApiKey,
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("forbidden")]
    Forbidden,
    /// A cross-site request riding a session cookie (SPEC §9).
    #[error("csrf rejected")]
    CsrfRejected,
    #[error("not found")]
    NotFound,
    /// `allow` lists the methods the resource answers (RFC 9110 §15.5.6).
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    #[error("payload too large")]
    PayloadTooLarge,
    /// The request body stalled longer than `body_read_timeout`.
    #[error("request timeout")]
    RequestTimeout,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("rate limited, retry after {retry_after}s")]
    RateLimited { retry_after: u64 },
    /// A quota of SPEC §11 is spent: which, and when it starts over (RFC
    /// 3339).
    #[error("quota {quota} exceeded, retry after {retry_after}s")]
    QuotaExceeded {
        quota: std::sync::Arc<str>,
        resets_at: String,
        retry_after: u64,
    },
    #[error("bad gateway")]
    BadGateway,
    #[error("store unavailable")]
    StoreUnavailable,
    /// An identity provider (SPEC §10) not discovered yet.
    #[error("provider unavailable")]
    ProviderUnavailable,
    #[error("gateway timeout")]
    GatewayTimeout,
    /// Too much at once for gatehouse itself (password checks queued
    /// full during a login flood): `503 overloaded`, with `Retry-After`.
    #[error("overloaded, retry after {retry_after}s")]
    Overloaded { retry_after: u64 },
    /// gatehouse failed itself (a token it cannot sign): `500 internal`.
    #[error("internal error")]
    Internal,
}

impl Problem {
    pub fn status(&self) -> StatusCode {
        use Problem::*;
        match self {
            BadRequest(_) => StatusCode::BAD_REQUEST,
            MissingCredentials | InvalidToken | InvalidApiKey | InvalidCredentials => {
                StatusCode::UNAUTHORIZED
            }
            Forbidden | CsrfRejected => StatusCode::FORBIDDEN,
            NotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            RateLimited { .. } | QuotaExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            BadGateway => StatusCode::BAD_GATEWAY,
            StoreUnavailable | ProviderUnavailable | Overloaded { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `error` code of the JSON body.
    pub fn code(&self) -> &'static str {
        use Problem::*;
        match self {
            BadRequest(_) => "bad_request",
            MissingCredentials => "missing_credentials",
            InvalidToken => "invalid_token",
            InvalidApiKey => "invalid_api_key",
            InvalidCredentials => "invalid_credentials",
            Forbidden => "forbidden",
            CsrfRejected => "csrf_rejected",
            NotFound => "not_found",
            MethodNotAllowed { .. } => "method_not_allowed",
            PayloadTooLarge => "payload_too_large",
            RequestTimeout => "request_timeout",
            UnsupportedMediaType => "unsupported_media_type",
            RateLimited { .. } => "rate_limited",
            QuotaExceeded { .. } => "quota_exceeded",
            BadGateway => "bad_gateway",
            StoreUnavailable => "store_unavailable",
            ProviderUnavailable => "provider_unavailable",
            GatewayTimeout => "gateway_timeout",
            Overloaded { .. } => "overloaded",
            Internal => "internal",
        }
    }

    /// The human-readable `detail` of the JSON body.
    pub fn detail(&self) -> &str {
        use Problem::*;
        match self {
            BadRequest(why) => why.as_ref(),
            MissingCredentials => "Authentication required",
            InvalidToken => "Invalid or expired token",
            InvalidApiKey => "Invalid API key",
            InvalidCredentials => "Invalid credentials",
            Forbidden => "Insufficient permissions",
            CsrfRejected => "Cross-site request refused",
            NotFound => "Not found",
            MethodNotAllowed { .. } => "Method not allowed",
            PayloadTooLarge => "Request body too large",
            RequestTimeout => "The request body was not received in time",
            UnsupportedMediaType => "Unsupported content type",
            RateLimited { .. } => "Too many requests",
            QuotaExceeded { .. } => "Quota exceeded for this period",
            BadGateway => "The upstream server is unreachable or sent an invalid response",
            StoreUnavailable => "The session store is unavailable",
            ProviderUnavailable => "The identity provider cannot be reached yet",
            GatewayTimeout => "The upstream server did not answer in time",
            Overloaded { .. } => "Too many sign-ins at once; try again shortly",
            Internal => "gatehouse failed to answer",
        }
    }

    /// The response gatehouse sends for this error.
    pub fn to_response(&self) -> Response<Body> {
        self.to_response_with_login(None)
    }

    /// The response, with `"login_url"` in the body when given (a route a
    /// browser can sign in to, SPEC §9).
    pub fn to_response_with_login(&self, login_url: Option<&str>) -> Response<Body> {
        let mut body = serde_json::json!({ "error": self.code(), "detail": self.detail() });
        if let Some(url) = login_url {
            body["login_url"] = url.into();
        }
        if let Problem::QuotaExceeded {
            quota, resets_at, ..
        } = self
        {
            body["quota"] = (**quota).into();
            body["resets_at"] = resets_at.as_str().into();
        }
        let mut res = Response::new(Body::full(body.to_string()));
        *res.status_mut() = self.status();
        let h = res.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        match self {
            // RFC 6750 §3: the challenge, with error="invalid_token" when a
            // token was presented and refused.
            Problem::MissingCredentials | Problem::InvalidCredentials => {
                h.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="gatehouse""#),
                );
            }
            Problem::InvalidToken | Problem::InvalidApiKey => {
                h.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="gatehouse", error="invalid_token""#),
                );
            }
            Problem::MethodNotAllowed { allow } => {
                h.insert(http::header::ALLOW, HeaderValue::from_static(allow));
            }
            Problem::RateLimited { retry_after }
            | Problem::QuotaExceeded { retry_after, .. }
            | Problem::Overloaded { retry_after } => {
                h.insert(RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            _ => {}
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_401_carries_a_bearer_challenge() {
        for e in [
            Problem::MissingCredentials,
            Problem::InvalidToken,
            Problem::InvalidApiKey,
            Problem::InvalidCredentials,
        ] {
            let res = e.to_response();
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
            let challenge = res.headers()[WWW_AUTHENTICATE].to_str().unwrap();
            assert!(
                challenge.starts_with(r#"Bearer realm="gatehouse""#),
                "{challenge}"
            );
        }
        let res = Problem::InvalidToken.to_response();
        assert!(res.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains(r#"error="invalid_token""#));
    }

    #[test]
    fn rate_limited_says_when_to_retry() {
        let res = Problem::RateLimited { retry_after: 7 }.to_response();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(res.headers()[RETRY_AFTER], "7");
    }

    #[test]
    fn upstream_failures_map_to_gateway_codes_not_400() {
        assert_eq!(Problem::BadGateway.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            Problem::GatewayTimeout.status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(Problem::GatewayTimeout.code(), "gateway_timeout");
    }
}
