//! Body types: what gatehouse sends to clients and to upstreams.
//!
//! Both stream: a backend's response frames reach the client as they arrive,
//! and a client's request frames go upstream as they arrive, cut off by
//! [`Limited`] at `server.max_request_body` (SPEC §5, 413).

use std::error::Error as StdError;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::{Body as HttpBody, Incoming};

pub type BoxError = Box<dyn StdError + Send + Sync>;

pin_project_lite::pin_project! {
    /// A response body: gatehouse's own bytes, or a backend's stream.
    #[derive(Debug)]
    #[project = BodyProj]
    pub enum Body {
        Empty,
        Full { data: Option<Bytes> },
        Stream { #[pin] inner: Incoming },
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

    pub fn stream(inner: Incoming) -> Self {
        Body::Stream { inner }
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
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full { data } => data.is_none(),
            Body::Stream { inner } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Body::Stream { inner } => inner.size_hint(),
        }
    }
}

/// The request body crossed `server.max_request_body`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("request body larger than {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: u64,
}

pin_project_lite::pin_project! {
    /// A client's request body on its way upstream, failing with
    /// [`BodyTooLarge`] once more than `limit` bytes went through — which
    /// aborts the upstream request mid-stream.
    pub struct Limited {
        #[pin]
        inner: Option<Incoming>,
        remaining: u64,
        limit: u64,
    }
}

impl Limited {
    pub fn new(inner: Incoming, limit: u64) -> Self {
        Limited {
            inner: Some(inner),
            remaining: limit,
            limit,
        }
    }

    /// A body with nothing in it (upgrade requests, retries).
    pub fn empty() -> Self {
        Limited {
            inner: None,
            remaining: 0,
            limit: 0,
        }
    }
}

impl HttpBody for Limited {
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
        match ready!(inner.poll_frame(cx)) {
            None => Poll::Ready(None),
            Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > *this.remaining {
                        *this.remaining = 0;
                        return Poll::Ready(Some(Err(BodyTooLarge { limit: *this.limit }.into())));
                    }
                    *this.remaining -= len;
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

/// Whether `err` (or anything in its source chain) is a [`BodyTooLarge`].
pub fn is_body_too_large(err: &(dyn StdError + 'static)) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.is::<BodyTooLarge>() {
            return true;
        }
        cur = e.source();
    }
    false
}
