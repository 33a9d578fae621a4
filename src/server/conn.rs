//! Serving one accepted connection: HTTP/1.1 or HTTP/2 (by ALPN or preface),
//! with upgrades, the header-read and idle timeouts, and graceful shutdown.
//!
//! hyper's `header_read_timeout` cuts a client that sends its request head too
//! slowly (slowloris). The idle watchdog here closes a connection that has no
//! request in flight and moved no bytes for `idle_timeout`; a long SSE stream
//! or a slow upstream keeps its connection because a request is in flight.
//! A graceful close (idle or shutdown) that the client does not complete is
//! forced after [`CLOSE_GRACE`] once no request is in flight.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::{Body as HttpBody, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

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

/// Activity of one connection, shared by its IO, its requests and its watchdog.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        })
    }

    fn touch(&self) {
        self.last_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle_deadline(&self, idle: Duration) -> tokio::time::Instant {
        let last = self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        tokio::time::Instant::from_std(last + idle)
    }

    fn is_idle(&self, idle: Duration) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
            && Instant::now()
                >= self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + idle
    }

    /// Marks a request in flight until the returned guard (kept by the
    /// response body) is dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }
}

/// A request in flight on a connection.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project_lite::pin_project! {
    /// IO that records when it last moved bytes.
    pub struct Tracked<T> {
        #[pin]
        inner: T,
        activity: Arc<Activity>,
    }
}

impl<T> Tracked<T> {
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        activity.touch();
        Tracked { inner, activity }
    }
}

impl<T: AsyncRead> AsyncRead for Tracked<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let res = this.inner.poll_read(cx, buf);
        if buf.filled().len() != before {
            this.activity.touch();
        }
        res
    }
}

impl<T: AsyncWrite> AsyncWrite for Tracked<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let res = this.inner.poll_write(cx, buf);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        res
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let res = this.inner.poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
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

/// Serves HTTP on `io` until the client closes, the connection idles out, or
/// `shutdown` fires (then in-flight requests finish first).
pub async fn serve<I, F, Fut, B>(
    io: I,
    activity: Arc<Activity>,
    limits: Limits,
    shutdown: CancellationToken,
    handler: F,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Response<B>> + Send + 'static,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req| {
            let guard = activity.begin();
            let fut = handler(req);
            async move {
                let res = fut.await;
                Ok::<_, std::convert::Infallible>(res.map(|b| Guarded::new(b, guard)))
            }
        })
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
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
        let deadline = draining.unwrap_or_else(|| activity.idle_deadline(limits.idle_timeout));
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
                let busy = activity.in_flight.load(Ordering::Acquire) > 0;
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
