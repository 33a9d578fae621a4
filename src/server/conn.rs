//! Serving one accepted connection: HTTP/1.1 or HTTP/2 (by ALPN or preface),
//! with upgrades, the header-read and idle timeouts, and graceful shutdown.
//!
//! hyper's `header_read_timeout` cuts an HTTP/1.1 client that sends its
//! request head too slowly (slowloris); for HTTP/2, whose heads hyper does
//! not time, the watchdog here cuts a connection whose preface and first
//! `HEADERS`, or any later head, take longer than `header_read_timeout`
//! (what is being received is followed by [`Tracked`]). The watchdog also
//! closes a connection that has no request in flight and moved no bytes for
//! `idle_timeout` (HTTP/2 `PING`s and `SETTINGS` are no traffic), and one
//! whose client has not read what gatehouse writes for `idle_timeout` (a
//! zero window, as nginx's `send_timeout`); a long SSE stream or a slow
//! upstream keeps its connection because a request is in flight.
//! A graceful close (idle or shutdown) that the client does not complete is
//! forced after `CLOSE_GRACE` once no request is in flight.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::{Body as HttpBody, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use crate::activity::{Activity, InFlight, Tracked};

/// How long a connection being closed gracefully (idle, or shutting down) may
/// take to close once no request is in flight. HTTP/2 graceful close waits for
/// the client to answer a PING after the first GOAWAY; a client that never
/// answers would otherwise keep the connection forever. Go's HTTP/2 server
/// waits the same (`goAwayTimeout`).
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Limits applied to one connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_size: usize,
}

impl Limits {
    pub fn from_config(server: &crate::config::Server) -> Self {
        Limits {
            header_read_timeout: server.header_read_timeout,
            idle_timeout: server.idle_timeout,
            max_header_size: server.max_header_size,
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted as in flight.
    pub struct Guarded<B> {
        #[pin]
        inner: B,
        _guard: InFlight,
    }
}

impl<B> Guarded<B> {
    pub fn new(inner: B, guard: InFlight) -> Self {
        Guarded {
            inner,
            _guard: guard,
        }
    }
}

impl<B: HttpBody<Data = Bytes>> HttpBody for Guarded<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves HTTP on `io` until the client closes, the connection idles out, a
/// request head is overdue, or `shutdown` fires (then in-flight requests
/// finish first). `handler` gets each request and the connection's
/// [`Activity`] (a WebSocket tunnel keeps it, and with it the slot).
pub async fn serve<I, F, Fut, B>(
    io: I,
    activity: Arc<Activity>,
    limits: Limits,
    shutdown: CancellationToken,
    handler: F,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>, &Arc<Activity>) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Response<B>> + Send + 'static,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req| {
            let guard = activity.begin();
            let fut = handler(req, &activity);
            async move {
                let res = fut.await;
                Ok::<_, std::convert::Infallible>(res.map(|b| Guarded::new(b, guard)))
            }
        })
    };
    let mut builder = auto::Builder::new(StreamExecutor);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_size.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_size).unwrap_or(u32::MAX))
        .max_concurrent_streams(256);
    // The connection's own child token: polling it on every wake of this
    // task locks only this connection's waiter list, not one shared by all
    // connections.
    let shutdown = shutdown.child_token();
    let io = TokioIo::new(Tracked::new(io, activity.clone()));
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);

    // Set once a graceful close has begun: when to check that it finished.
    let mut draining: Option<tokio::time::Instant> = None;
    loop {
        let deadline = match draining {
            Some(at) => at,
            None => next_check(&activity, limits),
        };
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = shutdown.cancelled(), if draining.is_none() => {
                conn.as_mut().graceful_shutdown();
                draining = Some(tokio::time::Instant::now() + CLOSE_GRACE);
            }
            _ = tokio::time::sleep_until(deadline) => {
                let busy = activity.is_busy();
                if head_overdue(&activity, limits.header_read_timeout) {
                    // An HTTP/2 head (or the preface) trickled in for longer
                    // than header_read_timeout: slot exhaustion, not a client.
                    tracing::debug!("closing a connection whose request head is overdue");
                    return;
                }
                if write_overdue(&activity, limits.idle_timeout) {
                    // The client stopped reading (a zero window) for as long
                    // as a connection may idle: it holds a slot and, through
                    // backpressure, an upstream connection. Close it.
                    tracing::debug!("closing a connection that stopped reading");
                    return;
                }
                if draining.is_some() {
                    if !busy {
                        // The client did not finish the close (an HTTP/2
                        // client that never acknowledges the GOAWAY's PING):
                        // nothing is in flight, so drop the connection.
                        tracing::debug!("closing a connection the client did not close");
                        return;
                    }
                    // Requests still running: they may finish; look again later.
                    draining = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                } else if activity.is_idle(limits.idle_timeout) {
                    conn.as_mut().graceful_shutdown();
                    draining = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                } else if busy {
                    // Busy: look again after another idle period.
                    activity.touch();
                }
            }
        }
    }
}

/// When the watchdog next looks: at the idle deadline, and — while heads are
/// watched (HTTP/2, or not known yet) — when the pending head is due, or
/// one `header_read_timeout` from now (a head may start meanwhile; then the
/// next look is exactly when it is due).
fn next_check(activity: &Activity, limits: Limits) -> tokio::time::Instant {
    let idle = activity.quiet_deadline(limits.idle_timeout);
    let head = if activity.watches_heads() {
        let due = activity
            .head_pending_since()
            .map(|since| since + limits.header_read_timeout)
            .unwrap_or_else(|| std::time::Instant::now() + limits.header_read_timeout);
        Some(due)
    } else {
        None
    };
    let blocked = activity
        .write_blocked_since()
        .map(|since| since + limits.idle_timeout);
    let at = [head, blocked]
        .into_iter()
        .flatten()
        .fold(idle, std::cmp::min);
    tokio::time::Instant::from_std(at)
}

fn write_overdue(activity: &Activity, limit: Duration) -> bool {
    activity
        .write_blocked_since()
        .is_some_and(|since| since.elapsed() >= limit)
}

fn head_overdue(activity: &Activity, limit: Duration) -> bool {
    activity
        .head_pending_since()
        .is_some_and(|since| since.elapsed() >= limit)
}

/// Runs each HTTP/2 stream as its own task, like hyper-util's
/// `TokioExecutor`, but boxed first: tokio moves a task's future into place
/// several times while spawning it, and a stream's future (the whole
/// request pipeline) is over a kilobyte; a box is moved once.
#[derive(Clone, Copy)]
struct StreamExecutor;

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(Box::pin(fut));
    }
}
