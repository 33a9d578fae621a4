//! Sending a request upstream and streaming the answer back.
//!
//! Bodies are never buffered: the client's body frames go upstream as they
//! arrive (cut off at the size limit or a stall), the backend's frames come
//! back as it writes them.
//!
//! `response_timeout` counts from the end of the request body to the
//! response headers (Envoy's route timeout): a slow upload is never a 504,
//! and SSE and other long streams are not cut. While the body is still
//! going up, the upstream must keep taking it: one that takes no piece for
//! `response_timeout` while the client has more to give is a 504 too.
//!
//! A `101 Switching Protocols` that answers a WebSocket upgrade turns the
//! connection into a byte tunnel, tracked so a graceful shutdown waits for
//! it; it keeps the client connection's slot (`max_connections`, the
//! `connections_open` gauge) and closes after `idle_timeout` without a byte
//! either way. A `101` to anything else is a protocol error (502): no tunnel
//! ever carries what authentication did not see.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_util::task::TaskTracker;

use super::pool::{Answered, SendError};
use super::{Target, Upstream};
use crate::activity::Activity;
use crate::body::{Body, BodyError, Ended, Limited, Progress};
use crate::metrics::{Metrics, UpstreamErrorKind};

/// A client's WebSocket upgrade, to be joined to the backend's after a `101`.
pub struct ClientUpgrade {
    pub on: OnUpgrade,
    /// The client connection: the tunnel holds it (and with it the slot)
    /// and reads from it when bytes last moved.
    pub conn: Arc<Activity>,
    /// `server.idle_timeout`: a tunnel quiet this long is closed.
    pub idle_timeout: Duration,
    /// The browser session that opened it, if one did: the tunnel closes
    /// once it has ended (asked every [`crate::body::Watch`] period).
    pub ended: Option<(Ended, Duration)>,
}

/// The upstream's response, ready for the client.
pub struct Forwarded {
    pub response: Response<Body>,
    /// Time from sending to response headers.
    pub upstream_elapsed: Duration,
}

/// Why forwarding failed: the upstream's doing, or the client's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    #[error("upstream {}", .0.as_str())]
    Upstream(UpstreamErrorKind),
    #[error(transparent)]
    Body(#[from] BodyError),
}

/// Sends `parts` + `body` to a target of `upstream` at `path`, and returns its
/// response. On a refused connection, a request without a body is retried
/// once on another live target.
///
/// The request is prepared and handed to the client before the returned
/// future is first polled (as the first poll would): an `async fn` would keep
/// its arguments — the request head and body, a few hundred bytes — in its
/// state for its whole life, and every request's future would carry them
/// twice.
pub fn forward<'u, 't, 'm>(
    upstream: &'u Upstream,
    mut parts: Parts,
    path: PathAndQuery,
    mut body: Limited,
    client_upgrade: Option<ClientUpgrade>,
    tunnels: &'t TaskTracker,
    metrics: &'m Metrics,
) -> impl std::future::Future<Output = Result<Forwarded, ForwardError>> + Send + use<'u, 't, 'm> {
    use hyper::body::Body as _;
    parts.version = Version::HTTP_11;
    let progress = body.follow();
    let started = Instant::now();
    let target = upstream.pick();
    // Only a request with no body can be replayed on another target.
    let retry = (upstream.targets.len() > 1 && body.is_end_stream())
        .then(|| (parts.method.clone(), parts.headers.clone(), path.clone()));
    // Origin-form: the backend is reached directly, `Host` is set.
    parts.uri = Uri::from(path);
    let request = Box::pin(target.dial.send(Request::from_parts(parts, body)));
    async move {
        let mut target = target;
        let mut result = answer(request, progress, upstream.response_timeout).await;
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
                *req.uri_mut() = Uri::from(path);
                // Boxed: a rare path, kept out of every request's future.
                let again = target.dial.send(req);
                result = Box::pin(answer(again, None, upstream.response_timeout)).await;
            }
        }
        respond(
            upstream,
            target,
            started,
            result,
            client_upgrade,
            tunnels,
            metrics,
        )
    }
}

/// Turns the upstream's answer (or failure) into the client's response.
fn respond(
    upstream: &Upstream,
    target: &Target,
    started: Instant,
    result: Result<Answered, SendError>,
    client_upgrade: Option<ClientUpgrade>,
    tunnels: &TaskTracker,
    metrics: &Metrics,
) -> Result<Forwarded, ForwardError> {
    let upstream_elapsed = started.elapsed();
    let (mut response, lease) = match result {
        Ok(answered) => answered,
        Err(err) => {
            let kind = match err {
                SendError::Body(e) => return Err(ForwardError::Body(e)),
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
    upstream.observe(metrics, upstream_elapsed);

    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let answered_websocket = super::headers::names_websocket(response.headers());
        let Some(client_upgrade) = client_upgrade.filter(|_| answered_websocket) else {
            // The backend switched protocols unasked, or to another
            // protocol than WebSocket: nothing may be relayed. Dropping the
            // response drops the backend connection with it.
            metrics
                .upstream_errors
                .with_label_values(&[&upstream.name, UpstreamErrorKind::Protocol.as_str()])
                .inc();
            return Err(ForwardError::Upstream(UpstreamErrorKind::Protocol));
        };
        // The connection is the tunnel's now: never back to the pool.
        drop(lease);
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
        response: Response::from_parts(parts, Body::stream(incoming, Some(lease))),
        upstream_elapsed,
    })
}

/// Waits for the response headers of a request handed to the client:
/// without a deadline while the request body goes up (unless the upstream
/// stops taking it), then for `limit` (`response_timeout`) from the end of
/// the body.
async fn answer<R>(
    request: R,
    progress: Option<Arc<Progress>>,
    limit: Duration,
) -> Result<Answered, SendError>
where
    R: std::future::Future<Output = Result<Answered, SendError>>,
{
    tokio::pin!(request);
    if let Some(progress) = progress {
        let mut look_at = progress.last_taken() + limit;
        while !progress.is_done() {
            tokio::select! {
                res = &mut request => return res,
                () = progress.finished() => break,
                () = tokio::time::sleep_until(look_at.into()) => {
                    let now = Instant::now();
                    // The client's own gaps are body_read_timeout's to
                    // judge: look again one response_timeout later (never
                    // at a deadline already past, which would spin).
                    if progress.waiting_on_client() {
                        look_at = now + limit;
                    } else if progress.last_taken() + limit <= now {
                        return Err(SendError::Timeout);
                    } else {
                        look_at = progress.last_taken() + limit;
                    }
                }
            }
        }
    }
    match tokio::time::timeout(limit, request).await {
        Err(_) => Err(SendError::Timeout),
        Ok(answered) => answered,
    }
}

/// Relays bytes both ways between an upgraded client and backend connection
/// until either side closes or no byte moved for the idle timeout. The
/// client connection's activity (and slot) is held until then.
async fn tunnel(
    client: ClientUpgrade,
    upstream: impl std::future::Future<Output = Result<hyper::upgrade::Upgraded, hyper::Error>>,
) {
    let ClientUpgrade {
        on,
        conn,
        idle_timeout,
        ended,
    } = client;
    let (client_io, upstream_io) = match tokio::try_join!(on, upstream) {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!(error = %e, "protocol upgrade failed");
            return;
        }
    };
    let mut client_io = TokioIo::new(client_io);
    let mut upstream_io = TokioIo::new(upstream_io);
    // Every byte of the tunnel passes the client connection's IO, which
    // marks its activity: the tunnel is idle when that connection is quiet.
    conn.touch();
    let relay = tokio::io::copy_bidirectional(&mut client_io, &mut upstream_io);
    tokio::pin!(relay);
    loop {
        tokio::select! {
            res = relay.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "upgraded connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(conn.quiet_deadline(idle_timeout).into()) => {
                if conn.is_quiet(idle_timeout) {
                    tracing::debug!("closing an idle upgraded connection");
                    return;
                }
            }
            () = tokio::time::sleep(ended.as_ref().map_or(Duration::MAX, |(_, every)| *every)), if ended.is_some() => {
                if ended.as_ref().is_some_and(|(ended, _)| ended()) {
                    tracing::debug!("closing an upgraded connection whose session ended");
                    return;
                }
            }
        }
    }
}
