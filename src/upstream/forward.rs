//! Sending a request upstream and streaming the answer back.
//!
//! Bodies are never buffered: the client's body frames go upstream as they
//! arrive (cut off at the size limit), the backend's frames come back as it
//! writes them. `response_timeout` bounds the wait for response headers only,
//! so SSE and other long streams are not cut. A `101 Switching Protocols`
//! turns the connection into a byte tunnel (WebSockets), tracked so a
//! graceful shutdown waits for it.

use std::error::Error as StdError;
use std::time::{Duration, Instant};

use http::request::Parts;
use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_util::task::TaskTracker;

use super::{Target, Upstream};
use crate::body::{is_body_too_large, Body, Limited};
use crate::metrics::{Metrics, UpstreamErrorKind};

/// The upstream's response, ready for the client.
pub struct Forwarded {
    pub response: Response<Body>,
    /// Time from sending to response headers.
    pub upstream_elapsed: Duration,
}

/// Why forwarding failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    #[error("upstream {}", .0.as_str())]
    Upstream(UpstreamErrorKind),
    #[error("request body over the limit")]
    BodyTooLarge,
}

/// Sends `parts` + `body` to a target of `upstream` at `path`, and returns its
/// response. On a refused connection, a request without a body is retried
/// once on another live target.
pub async fn forward(
    upstream: &Upstream,
    mut parts: Parts,
    path: PathAndQuery,
    body: Limited,
    client_upgrade: Option<OnUpgrade>,
    tunnels: &TaskTracker,
    metrics: &Metrics,
) -> Result<Forwarded, ForwardError> {
    use hyper::body::Body as _;
    parts.version = Version::HTTP_11;
    let started = Instant::now();
    let mut target = upstream.pick();
    // Only a request with no body can be replayed on another target.
    let retry = (upstream.targets.len() > 1 && body.is_end_stream())
        .then(|| (parts.method.clone(), parts.headers.clone(), path.clone()));

    parts.uri = target_uri(target, path);
    let mut result = send(upstream, Request::from_parts(parts, body)).await;

    if let (Err(SendError::Connect), Some((method, headers, path))) = (&result, retry) {
        upstream.mark_down(target);
        metrics
            .upstream_errors
            .with_label_values(&[&upstream.name, UpstreamErrorKind::Connect.as_str()])
            .inc();
        if let Some(other) = upstream.pick_other(target) {
            target = other;
            let mut req = Request::new(Limited::empty());
            *req.method_mut() = method;
            *req.headers_mut() = headers;
            *req.uri_mut() = target_uri(target, path);
            result = send(upstream, req).await;
        }
    }

    let upstream_elapsed = started.elapsed();
    let response = match result {
        Ok(res) => res,
        Err(err) => {
            let kind = match err {
                SendError::BodyTooLarge => return Err(ForwardError::BodyTooLarge),
                SendError::Connect => {
                    upstream.mark_down(target);
                    UpstreamErrorKind::Connect
                }
                SendError::Timeout => UpstreamErrorKind::Timeout,
                SendError::Reset => UpstreamErrorKind::Reset,
                SendError::Protocol => UpstreamErrorKind::Protocol,
            };
            metrics
                .upstream_errors
                .with_label_values(&[&upstream.name, kind.as_str()])
                .inc();
            return Err(ForwardError::Upstream(kind));
        }
    };
    metrics
        .upstream_duration
        .with_label_values(&[&upstream.name])
        .observe(upstream_elapsed.as_secs_f64());

    let mut response = response;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            // The backend switched protocols unasked: nothing sane to relay.
            metrics
                .upstream_errors
                .with_label_values(&[&upstream.name, UpstreamErrorKind::Protocol.as_str()])
                .inc();
            return Err(ForwardError::Upstream(UpstreamErrorKind::Protocol));
        };
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        tunnels.spawn(tunnel(client_upgrade, upstream_upgrade));
        let (mut parts, _) = response.into_parts();
        super::headers::rewrite_response(&mut parts.headers, true);
        return Ok(Forwarded {
            response: Response::from_parts(parts, Body::empty()),
            upstream_elapsed,
        });
    }
    let (mut parts, incoming) = response.into_parts();
    // The client speaks its own HTTP version, whatever the backend spoke.
    parts.version = Version::HTTP_11;
    super::headers::rewrite_response(&mut parts.headers, false);
    Ok(Forwarded {
        response: Response::from_parts(parts, Body::stream(incoming)),
        upstream_elapsed,
    })
}

fn target_uri(target: &Target, path: PathAndQuery) -> Uri {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(target.authority.clone());
    parts.path_and_query = Some(path);
    // Scheme, authority and path are each valid, so the URI is.
    Uri::from_parts(parts).expect("scheme, authority and path form a valid URI")
}

enum SendError {
    Connect,
    Timeout,
    Reset,
    Protocol,
    BodyTooLarge,
}

async fn send(
    upstream: &Upstream,
    req: Request<Limited>,
) -> Result<Response<hyper::body::Incoming>, SendError> {
    match tokio::time::timeout(upstream.response_timeout, upstream.client.request(req)).await {
        Err(_) => Err(SendError::Timeout),
        Ok(Ok(res)) => Ok(res),
        Ok(Err(e)) => Err(classify(&e)),
    }
}

fn classify(err: &hyper_util::client::legacy::Error) -> SendError {
    if is_body_too_large(err) {
        return SendError::BodyTooLarge;
    }
    if err.is_connect() {
        return SendError::Connect;
    }
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_parse() || h.is_parse_status() || h.is_parse_too_large() {
                return SendError::Protocol;
            }
        }
        cur = e.source();
    }
    SendError::Reset
}

/// Relays bytes both ways between an upgraded client and backend connection
/// until either side closes.
async fn tunnel(
    client: OnUpgrade,
    upstream: impl std::future::Future<Output = Result<hyper::upgrade::Upgraded, hyper::Error>>,
) {
    match tokio::try_join!(client, upstream) {
        Ok((client, upstream)) => {
            let mut client = TokioIo::new(client);
            let mut upstream = TokioIo::new(upstream);
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                tracing::debug!(error = %e, "upgraded connection ended with an error");
            }
        }
        Err(e) => tracing::debug!(error = %e, "protocol upgrade failed"),
    }
}
