//! The one rescue: every stage and endpoint returns a narrow error that
//! says what went wrong; here alone it becomes what the client is told, a
//! [`Problem`] of SPEC §5 (status, JSON body, challenge headers). Anything
//! gatehouse did not expect of itself is `500 internal`. (linkerd2-proxy's
//! `ServerRescue` has the same shape.)

use http::Response;

use crate::auth::tokens::TokenError;
use crate::auth::AuthError;
use crate::body::Body;
use crate::body::BodyError;
use crate::endpoints::oidc::Error as OidcError;
use crate::error::Problem;
use crate::metrics::UpstreamErrorKind;
use crate::store::StoreError;
use crate::upstream::ForwardError;

use super::cors::PreflightRefused;
use super::csrf::CsrfRejected;
use super::normalize::Refusal;
use super::quota::QuotaError;
use super::rate_limit::RateLimited;
use super::session::SignIn;

/// A stage refused a request or failed to answer it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Refusal(#[from] Refusal),
    /// A method the target does not take (`allow` lists those it does).
    #[error("method not allowed")]
    Method { allow: &'static str },
    /// `default_route: deny`.
    #[error("no route")]
    Denied,
    #[error(transparent)]
    Preflight(#[from] PreflightRefused),
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error(transparent)]
    Forward(#[from] ForwardError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Csrf(#[from] CsrfRejected),
    #[error(transparent)]
    Quota(#[from] QuotaError),
    /// A route a browser can sign in to, without a credential that holds:
    /// a redirect to the sign-in page, or the 401 with `login_url`.
    #[error("sign-in needed: {}", .0.cause)]
    SignIn(Box<SignIn>),
    /// The identity assertion could not be signed.
    #[error("the identity assertion could not be signed")]
    Unsigned,
    /// A sign-in through an identity provider that did not happen (SPEC §10).
    #[error(transparent)]
    Oidc(#[from] OidcError),
}

/// The response for `failure`: the rescue's [`Problem`], or the answer that
/// sends a browser to sign in.
pub fn respond(failure: &Failure) -> Response<Body> {
    match failure {
        Failure::SignIn(sign_in) => sign_in.response(rescue(&sign_in.cause.into())),
        Failure::Oidc(OidcError::Refused(refused)) => refused.response(rescue(failure)),
        other => rescue(other).to_response(),
    }
}

/// What the client is told about `failure`.
pub fn rescue(failure: &Failure) -> Problem {
    match failure {
        Failure::Refusal(r) => Problem::BadRequest(r.to_string().into()),
        Failure::Method { allow } => Problem::MethodNotAllowed { allow },
        Failure::Denied => Problem::NotFound,
        Failure::Preflight(_) => Problem::Forbidden,
        Failure::RateLimited(RateLimited { retry_after }) => Problem::RateLimited {
            retry_after: *retry_after,
        },
        Failure::Auth(e) => match e {
            AuthError::Missing | AuthError::SessionEnded => Problem::MissingCredentials,
            AuthError::StoreUnavailable => Problem::StoreUnavailable,
            AuthError::InvalidToken => Problem::InvalidToken,
            AuthError::InvalidApiKey => Problem::InvalidApiKey,
            AuthError::Forbidden => Problem::Forbidden,
            AuthError::RevocationsStale => Problem::StoreUnavailable,
        },
        Failure::Body(e) => body(e),
        Failure::Forward(e) => match e {
            ForwardError::Body(e) => body(e),
            ForwardError::Upstream(UpstreamErrorKind::Timeout) => Problem::GatewayTimeout,
            ForwardError::Upstream(_) => Problem::BadGateway,
        },
        Failure::Token(e) => match e {
            TokenError::UnsupportedMediaType => Problem::UnsupportedMediaType,
            TokenError::BadBody(why) => Problem::BadRequest((*why).into()),
            TokenError::Body(e) => body(e),
            TokenError::InvalidCredentials => Problem::InvalidCredentials,
            TokenError::InvalidToken => Problem::InvalidToken,
            TokenError::Store(e) => store(e),
            TokenError::Signing => Problem::Internal,
            // A queue of password checks drains in well under a second.
            TokenError::Busy(_) => Problem::Overloaded { retry_after: 1 },
        },
        Failure::Csrf(why) => {
            tracing::debug!(reason = %why, "cross-site request refused");
            Problem::CsrfRejected
        }
        Failure::SignIn(sign_in) => rescue(&sign_in.cause.into()),
        Failure::Quota(QuotaError::Exceeded {
            quota,
            resets_at,
            retry_after,
        }) => Problem::QuotaExceeded {
            quota: quota.clone(),
            resets_at: crate::store::period::rfc3339(*resets_at),
            retry_after: *retry_after,
        },
        Failure::Quota(QuotaError::Store(e)) => store(e),
        Failure::Unsigned => {
            tracing::error!("the identity assertion's key failed to sign");
            Problem::Internal
        }
        Failure::Oidc(e) => match e {
            OidcError::UnknownProvider => Problem::NotFound,
            OidcError::Unavailable => Problem::ProviderUnavailable,
            OidcError::Refused(_) => Problem::Forbidden,
            OidcError::Store(e) => store(e),
        },
    }
}

fn body(e: &BodyError) -> Problem {
    match e {
        BodyError::TooLarge { .. } => Problem::PayloadTooLarge,
        BodyError::Stalled { .. } => Problem::RequestTimeout,
        BodyError::Malformed => Problem::BadRequest("malformed request body".into()),
    }
}

fn store(e: &StoreError) -> Problem {
    tracing::warn!(error = %e, "the store failed");
    Problem::StoreUnavailable
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[test]
    fn every_failure_gets_its_status_and_upstream_failures_are_never_400() {
        let cases: [(Failure, StatusCode); 14] = [
            (Refusal::DotSegment.into(), StatusCode::BAD_REQUEST),
            (
                Failure::Method { allow: "POST" },
                StatusCode::METHOD_NOT_ALLOWED,
            ),
            (Failure::Denied, StatusCode::NOT_FOUND),
            (PreflightRefused.into(), StatusCode::FORBIDDEN),
            (
                RateLimited { retry_after: 3 }.into(),
                StatusCode::TOO_MANY_REQUESTS,
            ),
            (AuthError::Missing.into(), StatusCode::UNAUTHORIZED),
            (AuthError::Forbidden.into(), StatusCode::FORBIDDEN),
            (
                AuthError::RevocationsStale.into(),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                BodyError::Stalled {
                    after: std::time::Duration::from_secs(1),
                }
                .into(),
                StatusCode::REQUEST_TIMEOUT,
            ),
            (
                ForwardError::Upstream(UpstreamErrorKind::Timeout).into(),
                StatusCode::GATEWAY_TIMEOUT,
            ),
            (
                ForwardError::Upstream(UpstreamErrorKind::Protocol).into(),
                StatusCode::BAD_GATEWAY,
            ),
            (
                ForwardError::Body(BodyError::Malformed).into(),
                StatusCode::BAD_REQUEST,
            ),
            (
                TokenError::Store(StoreError::Unavailable("down".into())).into(),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                TokenError::Signing.into(),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (failure, status) in cases {
            let problem = rescue(&failure);
            assert_eq!(problem.status(), status, "{failure:?}");
            assert_eq!(problem.to_response().status(), status, "{failure:?}");
        }
    }

    #[test]
    fn a_store_failure_never_shows_its_reason() {
        let failure = TokenError::Store(StoreError::Unavailable("redis://:hunter2@x".into()));
        let problem = rescue(&failure.into());
        assert!(!problem.detail().contains("hunter2"));
    }
}
