//! Each target's connections: HTTP/1.1 keep-alive connections to one
//! backend address, opened on demand and kept while idle.
//!
//! A request takes the most recently used idle connection that is ready
//! (a warm one), or opens a new one (`connect_timeout`, `TCP_NODELAY`, TCP
//! keep-alive). Its response body hands the connection back once read to
//! its end ([`crate::body::Backend`]); a connection the backend closed, one
//! idle longer than [`IDLE_FOR`] and any beyond [`MAX_IDLE`] are dropped. A
//! request that a pooled connection could not take (the backend closed it
//! as the request went out, before any byte of it was written) is sent
//! again on a new connection, as the request was never seen.
//!
//! One small lock per target, held to push or pop a handle: no lookup,
//! no hashing, no task per request.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::client::conn::TrySendError;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::{BodyError, Home, Lease, Limited};

/// How long an unused connection is kept.
pub const IDLE_FOR: Duration = Duration::from_secs(90);

/// How many idle connections a target keeps at most.
pub const MAX_IDLE: usize = 256;

/// TCP keep-alive probes on an upstream connection start after this long.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// One target's idle connections.
#[derive(Default)]
pub struct Idle {
    conns: Mutex<Vec<(SendRequest<Limited>, Instant)>>,
}

impl Home for Idle {
    fn put(&self, sender: SendRequest<Limited>) {
        if sender.is_closed() {
            return;
        }
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        if conns.len() < MAX_IDLE {
            conns.push((sender, Instant::now()));
        }
    }
}

impl Idle {
    /// The most recently used connection that can take a request now.
    /// Closed ones are dropped on the way; one still finishing its last
    /// exchange stays for a later request.
    fn take(&self) -> Option<SendRequest<Limited>> {
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        let mut i = conns.len();
        while i > 0 {
            i -= 1;
            let sender = &conns[i].0;
            if sender.is_ready() {
                return Some(conns.swap_remove(i).0);
            }
            if sender.is_closed() {
                // The last one moves to `i`: it was looked at already.
                conns.swap_remove(i);
            }
        }
        None
    }

    /// Drops the connections idle for longer than `idle_for` and those the
    /// backend closed.
    pub fn reap(&self, idle_for: Duration) {
        let now = Instant::now();
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        conns.retain(|(sender, since)| !sender.is_closed() && now - *since < idle_for);
    }

    /// How many connections are idle.
    pub fn len(&self) -> usize {
        self.conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a request got no response from its backend.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be opened (refused, unreachable, timed out).
    Connect,
    /// The backend's answer was not HTTP.
    Protocol,
    /// The connection broke before the response head.
    Reset,
    /// No response head within `response_timeout` (judged by the caller).
    Timeout,
    /// The client's body failed on its way up.
    Body(BodyError),
}

impl SendError {
    fn of(err: &hyper::Error) -> SendError {
        if let Some(body) = BodyError::find(err) {
            return SendError::Body(body);
        }
        if err.is_parse() || err.is_parse_status() || err.is_parse_too_large() {
            return SendError::Protocol;
        }
        SendError::Reset
    }
}

/// A response and the connection it came on.
pub type Answered = (Response<Incoming>, Lease);

/// Where a target's requests go: its address and its idle connections.
pub struct Dial {
    /// `host` and `port`; a host name is resolved at each connect.
    pub host: Box<str>,
    pub port: u16,
    pub idle: Arc<Idle>,
    pub connect_timeout: Duration,
}

impl Dial {
    /// Sends `req` (origin-form URI, `Host` set) on an idle connection, or a
    /// new one. With a connection idle, the request is handed over before
    /// the future is first polled, so the future does not carry it.
    pub fn send(
        &self,
        req: Request<Limited>,
    ) -> Sending<'_, impl Future<Output = Result<Response<Incoming>, Refused>> + Send> {
        let state = match self.idle.take() {
            Some(mut sender) => State::Pooled {
                answer: sender.try_send_request(req),
                sender: Some(sender),
            },
            None => State::Fresh {
                fresh: Box::pin(self.fresh(req)),
            },
        };
        Sending { dial: self, state }
    }

    /// Opens a connection and sends `req` on it.
    fn fresh(
        &self,
        req: Request<Limited>,
    ) -> impl Future<Output = Result<Answered, SendError>> + Send + 'static {
        let connecting = connect((self.host.clone(), self.port), self.connect_timeout);
        let home: Arc<dyn Home> = self.idle.clone();
        async move {
            let mut sender = connecting.await?;
            match sender.send_request(req).await {
                Ok(res) => Ok((res, Lease { sender, home })),
                Err(e) => Err(SendError::of(&e)),
            }
        }
    }
}

/// A pooled connection's refusal, with the request when none of it was sent.
pub type Refused = TrySendError<Request<Limited>>;

/// A request on a new connection: rare once a target is warm, so boxed.
type Fresh = Pin<Box<dyn Future<Output = Result<Answered, SendError>> + Send>>;

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<P> {
        Pooled { #[pin] answer: P, sender: Option<SendRequest<Limited>> },
        Fresh { fresh: Fresh },
    }
}

pin_project_lite::pin_project! {
    /// A request on its way to a target (see [`Dial::send`]).
    pub struct Sending<'d, P> {
        dial: &'d Dial,
        #[pin]
        state: State<P>,
    }
}

impl<P> Future for Sending<'_, P>
where
    P: Future<Output = Result<Response<Incoming>, Refused>>,
{
    type Output = Result<Answered, SendError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let retry = match this.state.as_mut().project() {
                StateProj::Fresh { fresh } => return fresh.as_mut().poll(cx),
                StateProj::Pooled { answer, sender } => match ready!(answer.poll(cx)) {
                    Ok(res) => {
                        let Some(sender) = sender.take() else {
                            return Poll::Ready(Err(SendError::Reset));
                        };
                        let home: Arc<dyn Home> = this.dial.idle.clone();
                        return Poll::Ready(Ok((res, Lease { sender, home })));
                    }
                    Err(mut refused) => match refused.take_message() {
                        // The connection closed before the request went
                        // out: no byte of it was seen, send it anew.
                        Some(req) => req,
                        None => return Poll::Ready(Err(SendError::of(refused.error()))),
                    },
                },
            };
            let fresh = Box::pin(this.dial.fresh(retry));
            this.state.set(State::Fresh { fresh });
        }
    }
}

/// Opens a connection to `(host, port)` within `timeout` and starts its
/// HTTP/1.1 exchange (upgrades allowed: a WebSocket's `101` becomes a tunnel).
async fn connect(
    (host, port): (Box<str>, u16),
    timeout: Duration,
) -> Result<SendRequest<Limited>, SendError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect((&*host, port))).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, %host, port, "upstream connect failed");
            return Err(SendError::Connect);
        }
        Err(_) => {
            tracing::debug!(%host, port, "upstream connect timed out");
            return Err(SendError::Connect);
        }
    };
    // Best effort: a socket that refuses either still carries requests.
    let _ = stream.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
    let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| {
            tracing::debug!(error = %e, "upstream handshake failed");
            SendError::Connect
        })?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}
