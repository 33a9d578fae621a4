//! Body types: what gatehouse sends to clients and to upstreams.
//!
//! Both stream: a backend's response frames reach the client as they arrive,
//! and a client's request frames go upstream as they arrive, cut off by
//! [`Limited`] at `server.max_request_body` (SPEC §5, 413) or after a gap
//! of `server.body_read_timeout` (408), and followed by [`Progress`] so that
//! `response_timeout` starts when the request body has ended.

use std::error::Error as StdError;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::{Body as HttpBody, Incoming};
use hyper::client::conn::http1::SendRequest;

pub type BoxError = Box<dyn StdError + Send + Sync>;

pin_project_lite::pin_project! {
    /// A response body: gatehouse's own bytes, or a backend's stream (one
    /// that a browser session opened ends with the session).
    #[derive(Debug)]
    #[project = BodyProj]
    pub enum Body {
        Empty,
        Full { data: Option<Bytes> },
        Stream { #[pin] inner: Backend },
        Watched { #[pin] inner: Backend, watch: Box<Watch> },
        Metered { inner: Box<Body>, meter: Box<dyn Meter> },
    }
}

/// Reads a response body's bytes as they pass on to the client (a quota's
/// token usage, SPEC §11), and hears when the body ends. A meter that is
/// dropped before it heard the end learns that the client went away.
pub trait Meter: Send + Sync + 'static {
    /// The next piece of the body, on its way to the client.
    fn data(&mut self, bytes: &[u8]);
    /// The body ended (or failed); called at most once.
    fn end(&mut self);
}

impl std::fmt::Debug for dyn Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Meter")
    }
}

/// Asks whether what opened a stream has ended (a signed-out session),
/// every `every`; once it has, the stream ends (SPEC §9).
pub struct Watch {
    ended: Ended,
    every: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

/// "Has it ended?", asked of the session a stream or tunnel belongs to.
pub type Ended = Arc<dyn Fn() -> bool + Send + Sync>;

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").field("every", &self.every).finish()
    }
}

/// Where a backend connection goes once a response body is done with it:
/// its upstream target's pool of idle connections.
pub trait Home: Send + Sync + 'static {
    /// Takes `sender` back for the next request.
    fn put(&self, sender: SendRequest<Limited>);
}

/// The backend connection a response came on, lent to its body.
pub struct Lease {
    pub sender: SendRequest<Limited>,
    pub home: Arc<dyn Home>,
}

/// A backend's response body. The connection it came on goes back to its
/// pool when the body was read to its end; a body dropped before its end
/// (the client went away, a signed-out session's stream was cut) takes the
/// connection with it, since HTTP/1.1 cannot tell where the next response
/// would start.
pub struct Backend {
    inner: Incoming,
    lease: Option<Lease>,
    /// The body was read to its end.
    read: bool,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

impl HttpBody for Backend {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.read = true,
            Poll::Ready(Some(Ok(_))) => self.read = self.inner.is_end_stream(),
            Poll::Ready(Some(Err(_))) => self.lease = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        // A body the server never polled because it knew it empty (a 204,
        // a HEAD) was read to its end too.
        if self.read || self.inner.is_end_stream() {
            if let Some(Lease { sender, home }) = self.lease.take() {
                home.put(sender);
            }
        }
    }
}

impl Body {
    pub fn empty() -> Self {
        Body::Empty
    }

    pub fn full(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        if data.is_empty() {
            Body::Empty
        } else {
            Body::Full { data: Some(data) }
        }
    }

    /// A backend's response body; `lease` is the connection it came on.
    pub fn stream(inner: Incoming, lease: Option<Lease>) -> Self {
        Body::Stream {
            inner: Backend {
                inner,
                lease,
                read: false,
            },
        }
    }

    /// This body, ending early once `ended` says so (asked every `every`);
    /// only a backend's stream can go on long enough to need it.
    pub fn watched(self, ended: Ended, every: Duration) -> Self {
        match self {
            Body::Metered { inner, meter } => Body::Metered {
                inner: Box::new(inner.watched(ended, every)),
                meter,
            },
            Body::Stream { inner } => Body::Watched {
                inner,
                watch: Box::new(Watch {
                    ended,
                    every,
                    timer: Box::pin(tokio::time::sleep(every)),
                }),
            },
            other => other,
        }
    }

    /// This body, with every piece shown to `meter` as it passes.
    pub fn metered(self, meter: Box<dyn Meter>) -> Self {
        Body::Metered {
            inner: Box::new(self),
            meter,
        }
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.project() {
            BodyProj::Empty => Poll::Ready(None),
            BodyProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            BodyProj::Stream { inner } => inner.poll_frame(cx),
            BodyProj::Watched { inner, watch } => {
                while watch.timer.as_mut().poll(cx).is_ready() {
                    if (watch.ended)() {
                        // A clean end: an `EventSource` reconnects, and is
                        // then told to sign in.
                        return Poll::Ready(None);
                    }
                    let next = tokio::time::Instant::now() + watch.every;
                    watch.timer.as_mut().reset(next);
                }
                inner.poll_frame(cx)
            }
            BodyProj::Metered { inner, meter } => {
                let polled = Pin::new(&mut **inner).poll_frame(cx);
                match &polled {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(data) = frame.data_ref() {
                            meter.data(data);
                        }
                        // The server may not ask again once the body says
                        // it is over.
                        if inner.is_end_stream() {
                            meter.end();
                        }
                    }
                    Poll::Ready(Some(Err(_)) | None) => meter.end(),
                    Poll::Pending => {}
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full { data } => data.is_none(),
            Body::Stream { inner } | Body::Watched { inner, .. } => inner.is_end_stream(),
            Body::Metered { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Body::Stream { inner } | Body::Watched { inner, .. } => inner.size_hint(),
            Body::Metered { inner, .. } => inner.size_hint(),
        }
    }
}

/// A JSON response gatehouse makes itself (token answers, `/auth/me`, the
/// admin endpoints).
pub fn json_response(status: http::StatusCode, value: &serde_json::Value) -> http::Response<Body> {
    let mut res = http::Response::new(Body::full(value.to_string()));
    *res.status_mut() = status;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    res
}

/// Why a client's request body could not be read to its end. Each is the
/// client's doing, never the upstream's (SPEC §5: 413, 408, 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The body crossed `server.max_request_body` (or an endpoint's limit).
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// No piece of the body arrived for `server.body_read_timeout`.
    #[error("request body stalled for {after:?}")]
    Stalled { after: Duration },
    /// The body's framing was broken (bad chunk), or the client went away
    /// before its end.
    #[error("malformed or incomplete request body")]
    Malformed,
}

impl BodyError {
    /// The [`BodyError`] in `err` or anywhere in its source chain.
    pub fn find(err: &(dyn StdError + 'static)) -> Option<BodyError> {
        let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
        while let Some(e) = cur {
            if let Some(found) = e.downcast_ref::<BodyError>() {
                return Some(*found);
            }
            cur = e.source();
        }
        None
    }
}

/// How far a request body has gone upstream, for `response_timeout`, which
/// counts from the end of the request body (SPEC §2). Shared by the body and
/// the forwarder.
#[derive(Debug)]
pub struct Progress {
    epoch: Instant,
    /// The body ended (every byte went upstream).
    done: AtomicBool,
    /// Milliseconds since `epoch` when the upstream last took a piece.
    last_ms: AtomicU64,
    /// The body is waiting for the client (its gaps are
    /// `body_read_timeout`'s business, not the upstream's).
    waiting_on_client: AtomicBool,
    ended: tokio::sync::Notify,
}

impl Progress {
    fn new() -> Arc<Self> {
        Arc::new(Progress {
            epoch: Instant::now(),
            done: AtomicBool::new(false),
            last_ms: AtomicU64::new(0),
            waiting_on_client: AtomicBool::new(false),
            ended: tokio::sync::Notify::new(),
        })
    }

    /// Whether the whole body went upstream.
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Waits until the whole body went upstream.
    pub async fn finished(&self) {
        while !self.is_done() {
            self.ended.notified().await;
        }
    }

    /// When the upstream last took a piece of the body.
    pub fn last_taken(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// Whether the body is waiting for the client rather than the upstream.
    pub fn waiting_on_client(&self) -> bool {
        self.waiting_on_client.load(Ordering::Relaxed)
    }

    fn took_piece(&self) {
        self.waiting_on_client.store(false, Ordering::Relaxed);
        self.last_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn end(&self) {
        self.done.store(true, Ordering::Release);
        // `notify_one` keeps a permit if the forwarder is not waiting yet.
        self.ended.notify_one();
    }
}

pin_project_lite::pin_project! {
    /// A client's request body on its way upstream (or into one of
    /// gatehouse's own endpoints). It fails with a [`BodyError`] — which
    /// aborts the upstream request mid-stream — once more than `limit`
    /// bytes went through, when no piece arrives for `gap`
    /// (`body_read_timeout`), or when the client's framing breaks.
    pub struct Limited<B = Incoming> {
        #[pin]
        inner: Option<B>,
        remaining: u64,
        limit: u64,
        gap: Duration,
        // Armed while waiting for the client; re-armed after each piece.
        // Boxed (made only for a body that has to wait): the upstream
        // client needs an `Unpin` body.
        stall: Option<Pin<Box<tokio::time::Sleep>>>,
        rearm: bool,
        progress: Option<Arc<Progress>>,
    }
}

impl<B: HttpBody<Data = Bytes>> Limited<B> {
    /// `inner`, cut off after `limit` bytes or a `gap` with no data.
    pub fn new(inner: B, limit: u64, gap: Duration) -> Self {
        Limited {
            inner: Some(inner),
            remaining: limit,
            limit,
            gap,
            stall: None,
            rearm: false,
            progress: None,
        }
    }

    /// A body with nothing in it (upgrade requests, retries).
    pub fn empty() -> Self {
        Limited {
            inner: None,
            remaining: 0,
            limit: 0,
            gap: Duration::ZERO,
            stall: None,
            rearm: false,
            progress: None,
        }
    }

    /// Follows how far this body has gone upstream (see [`Progress`]); `None`
    /// when it is empty, so there is nothing to follow.
    pub fn follow(&mut self) -> Option<Arc<Progress>> {
        if self.is_end_stream() {
            return None;
        }
        let progress = Progress::new();
        self.progress = Some(progress.clone());
        Some(progress)
    }
}

impl<B> HttpBody for Limited<B>
where
    B: HttpBody<Data = Bytes>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(None);
        };
        let polled = inner.poll_frame(cx);
        let frame = match polled {
            Poll::Pending => {
                if let Some(p) = this.progress {
                    p.waiting_on_client.store(true, Ordering::Relaxed);
                }
                let deadline = tokio::time::Instant::now() + *this.gap;
                let sleep = match this.stall {
                    Some(sleep) => {
                        if *this.rearm {
                            sleep.as_mut().reset(deadline);
                        }
                        sleep
                    }
                    None => this
                        .stall
                        .insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                *this.rearm = false;
                ready!(sleep.as_mut().poll(cx));
                let after = *this.gap;
                return Poll::Ready(Some(Err(BodyError::Stalled { after }.into())));
            }
            Poll::Ready(frame) => frame,
        };
        *this.rearm = true;
        match frame {
            None => {
                if let Some(p) = this.progress {
                    p.end();
                }
                Poll::Ready(None)
            }
            Some(Err(_)) => Poll::Ready(Some(Err(BodyError::Malformed.into()))),
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > *this.remaining {
                        *this.remaining = 0;
                        let limit = *this.limit;
                        return Poll::Ready(Some(Err(BodyError::TooLarge { limit }.into())));
                    }
                    *this.remaining -= len;
                }
                if let Some(p) = this.progress {
                    p.took_piece();
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|i| i.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or(SizeHint::with_exact(0), |i| i.size_hint())
    }
}
