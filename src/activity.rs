//! What one client connection did, and when: the clock its watchdogs read.
//!
//! - [`Activity`] is shared by a connection's IO, its requests, its watchdog
//!   (`server::conn`) and, after a WebSocket upgrade, its tunnel
//!   (`upstream::forward`). It also holds the connection's slot (its place
//!   in `max_connections` and `gatehouse_connections_open`), which is given
//!   back only when the last of them lets go — so a tunnel keeps its slot.
//! - [`Tracked`] is the connection's IO: every byte read or written marks
//!   the connection active. On an HTTP/2 connection it also follows the frame
//!   layer (RFC 9113 §4.1: a 9-byte header, then the payload) to know when a
//!   request head is being received — from the preface to the first
//!   complete `HEADERS`, and from any `HEADERS` frame to the frame that ends
//!   the head (`END_HEADERS`) — so that `header_read_timeout` bounds a
//!   trickled HTTP/2 head as hyper's own timer bounds an HTTP/1.1 one.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// RFC 9113 §3.4: what an HTTP/2 client sends first.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADERS: u8 = 0x1;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_END_HEADERS: u8 = 0x4;
const FRAME_DATA: u8 = 0x0;

/// Activity of one connection.
pub struct Activity {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last byte moved either way.
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
    /// Milliseconds since `epoch`, plus one, since when a request head has
    /// been awaited (0: none is). Starts at the connection's start.
    head_since: AtomicU64,
    /// Whether `head_since` is kept (HTTP/2, or not known yet); hyper keeps
    /// its own header timer for HTTP/1.1.
    watch_heads: AtomicBool,
    /// Milliseconds since `epoch`, plus one, since when a write to the
    /// client has been waiting for it to read (0: none is).
    write_blocked_since: AtomicU64,
    /// A response was sent without reading its request's body to the end
    /// (a 413 or 408): closing lingers (see [`Tracked`]).
    linger: AtomicBool,
    /// The connection's slot; dropped with the last reference.
    _slot: Option<Box<dyn Send + Sync>>,
}

impl std::fmt::Debug for Activity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Activity")
            .field("last_ms", &self.last_ms)
            .field("in_flight", &self.in_flight)
            .field("head_since", &self.head_since)
            .finish_non_exhaustive()
    }
}

impl Activity {
    /// A new connection's activity, holding `slot` until the connection and
    /// anything it was upgraded into are gone.
    pub fn new(slot: Option<Box<dyn Send + Sync>>) -> Arc<Self> {
        Arc::new(Activity {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            head_since: AtomicU64::new(1),
            watch_heads: AtomicBool::new(true),
            write_blocked_since: AtomicU64::new(0),
            linger: AtomicBool::new(false),
            _slot: slot,
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The connection closes with a request body unread: its close lingers,
    /// so the client reads the answer instead of a reset.
    pub fn linger_on_close(&self) {
        self.linger.store(true, Ordering::Relaxed);
    }

    fn at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    /// Marks the connection active now.
    pub fn touch(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// When the connection will have been quiet (no bytes either way) for `idle`.
    pub fn quiet_deadline(&self, idle: Duration) -> Instant {
        self.at(self.last_ms.load(Ordering::Relaxed)) + idle
    }

    /// Whether no byte moved either way for `idle`.
    pub fn is_quiet(&self, idle: Duration) -> bool {
        Instant::now() >= self.quiet_deadline(idle)
    }

    /// Whether no request is in flight and no byte moved for `idle`.
    pub fn is_idle(&self, idle: Duration) -> bool {
        !self.is_busy() && self.is_quiet(idle)
    }

    /// Whether a request is in flight.
    pub fn is_busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// Marks a request in flight until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Since when a request head has been awaited and not completed, if one
    /// is (HTTP/2 and not-yet-known connections only).
    pub fn head_pending_since(&self) -> Option<Instant> {
        if !self.watch_heads.load(Ordering::Relaxed) {
            return None;
        }
        match self.head_since.load(Ordering::Relaxed) {
            0 => None,
            since => Some(self.at(since - 1)),
        }
    }

    /// Whether heads are watched here (not an HTTP/1.1 connection).
    pub fn watches_heads(&self) -> bool {
        self.watch_heads.load(Ordering::Relaxed)
    }

    fn head_started(&self) {
        let since = self.now_ms() + 1;
        let _ = self
            .head_since
            .compare_exchange(0, since, Ordering::Relaxed, Ordering::Relaxed);
    }

    fn head_done(&self) {
        self.head_since.store(0, Ordering::Relaxed);
    }

    /// Since when the client has not read what gatehouse writes to it, if
    /// it has stopped (a slot held by a zero window, like nginx's
    /// `send_timeout`).
    pub fn write_blocked_since(&self) -> Option<Instant> {
        match self.write_blocked_since.load(Ordering::Relaxed) {
            0 => None,
            since => Some(self.at(since - 1)),
        }
    }

    fn write_blocked(&self) {
        let since = self.now_ms() + 1;
        let _ = self.write_blocked_since.compare_exchange(
            0,
            since,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    fn write_unblocked(&self) {
        if self.write_blocked_since.load(Ordering::Relaxed) != 0 {
            self.write_blocked_since.store(0, Ordering::Relaxed);
        }
    }

    fn not_h2(&self) {
        self.watch_heads.store(false, Ordering::Relaxed);
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

/// Where [`Tracked`] is in the HTTP/2 frame layer of what it read.
#[derive(Debug, Clone, Copy)]
enum Frames {
    /// Matching the client preface; `n` bytes matched so far.
    Preface { n: usize },
    /// Reading a frame header; `n` of its 9 bytes are in `buf`.
    Header { buf: [u8; 9], n: usize },
    /// Skipping a frame payload; at its end the head is complete if
    /// `ends_head`; `counts` if the frame is traffic (see [`follow_frames`]).
    Payload {
        left: u32,
        ends_head: bool,
        counts: bool,
    },
    /// Not HTTP/2: nothing to follow.
    Off,
}

pin_project_lite::pin_project! {
    /// IO that records when it last moved bytes, and (HTTP/2) when a
    /// request head is being received.
    pub struct Tracked<T> {
        #[pin]
        inner: T,
        activity: Arc<Activity>,
        frames: Frames,
        // Set once the write side is shut, for a lingering close.
        lingering: Option<Box<Lingering>>,
    }
}

/// A lingering close (RFC 9112 §9.6): the answer is out and the write side
/// shut, but the client may still be sending the body that was refused; what
/// it sends is read and dropped until it closes, for at most [`LINGER_FOR`]
/// and [`LINGER_MAX`] bytes — closing at once with unread data would reset
/// the connection, and the client could lose the answer.
struct Lingering {
    until: Pin<Box<tokio::time::Sleep>>,
    drained: usize,
}

/// How long a lingering close reads what the client still sends.
const LINGER_FOR: Duration = Duration::from_secs(2);

/// How much a lingering close reads, at most.
const LINGER_MAX: usize = 4 * 1024 * 1024;

impl<T> Tracked<T> {
    /// Starts tracking `inner`; the time to the first request head counts
    /// from here (after the TLS handshake, which has its own timeout).
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        activity.touch();
        activity
            .head_since
            .store(activity.now_ms() + 1, Ordering::Relaxed);
        Tracked {
            inner,
            activity,
            frames: Frames::Preface { n: 0 },
            lingering: None,
        }
    }
}

/// Follows the frame layer through `bytes`, telling `activity` when a
/// request head starts and ends. Says whether the bytes were traffic that
/// keeps a connection from idling out: any byte of HTTP/1.1, and the
/// `HEADERS`, `CONTINUATION` and `DATA` frames of HTTP/2 — not `PING`,
/// `SETTINGS` or `WINDOW_UPDATE`, which a client could send forever to hold
/// its slot without asking for anything.
fn follow_frames(state: &mut Frames, activity: &Activity, mut bytes: &[u8]) -> bool {
    let mut traffic = false;
    while !bytes.is_empty() {
        match state {
            Frames::Off => return true,
            Frames::Preface { n } => {
                let take = (H2_PREFACE.len() - *n).min(bytes.len());
                if bytes[..take] != H2_PREFACE[*n..*n + take] {
                    // HTTP/1.1: hyper's own header timer applies.
                    activity.not_h2();
                    *state = Frames::Off;
                    return true;
                }
                *n += take;
                bytes = &bytes[take..];
                if *n == H2_PREFACE.len() {
                    *state = Frames::Header { buf: [0; 9], n: 0 };
                }
            }
            Frames::Header { buf, n } => {
                let take = (9 - *n).min(bytes.len());
                buf[*n..*n + take].copy_from_slice(&bytes[..take]);
                *n += take;
                bytes = &bytes[take..];
                if *n < 9 {
                    continue;
                }
                let left = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]);
                let (kind, flags) = (buf[3], buf[4]);
                let is_head = kind == FRAME_HEADERS || kind == FRAME_CONTINUATION;
                if kind == FRAME_HEADERS {
                    activity.head_started();
                }
                let ends_head = is_head && flags & FLAG_END_HEADERS != 0;
                let counts = is_head || kind == FRAME_DATA;
                traffic |= counts;
                *state = Frames::Payload {
                    left,
                    ends_head,
                    counts,
                };
                if left == 0 {
                    finish_payload(state, activity);
                }
            }
            Frames::Payload { left, counts, .. } => {
                let take = (*left as usize).min(bytes.len());
                *left -= take as u32;
                traffic |= *counts && take > 0;
                bytes = &bytes[take..];
                if *left == 0 {
                    finish_payload(state, activity);
                }
            }
        }
    }
    traffic
}

fn finish_payload(state: &mut Frames, activity: &Activity) {
    if let Frames::Payload {
        ends_head: true, ..
    } = state
    {
        activity.head_done();
    }
    *state = Frames::Header { buf: [0; 9], n: 0 };
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
            let traffic = matches!(this.frames, Frames::Off)
                || follow_frames(this.frames, this.activity, &buf.filled()[before..]);
            if traffic {
                this.activity.touch();
            }
        }
        res
    }
}

impl<T> Tracked<T> {
    /// Notes what a write did: a write that made progress is traffic (on
    /// HTTP/1.1: an HTTP/2 write may be the answer to a client's PING, and
    /// its responses keep a request in flight anyway) and unblocks; one that
    /// could not is the client not reading.
    fn wrote<R>(
        activity: &Activity,
        frames: &Frames,
        res: &Poll<std::io::Result<R>>,
        made_progress: bool,
    ) {
        match res {
            Poll::Pending => activity.write_blocked(),
            Poll::Ready(_) => {
                activity.write_unblocked();
                if made_progress
                    && !matches!(frames, Frames::Header { .. } | Frames::Payload { .. })
                {
                    activity.touch();
                }
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite> AsyncWrite for Tracked<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let res = this.inner.poll_write(cx, buf);
        let progress = matches!(res, Poll::Ready(Ok(n)) if n > 0);
        Self::wrote(this.activity, this.frames, &res, progress);
        res
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let res = this.inner.poll_write_vectored(cx, bufs);
        let progress = matches!(res, Poll::Ready(Ok(n)) if n > 0);
        Self::wrote(this.activity, this.frames, &res, progress);
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let res = this.inner.poll_flush(cx);
        Self::wrote(this.activity, this.frames, &res, false);
        res
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut this = self.project();
        if this.lingering.is_none() {
            std::task::ready!(this.inner.as_mut().poll_shutdown(cx))?;
            if !this.activity.linger.load(Ordering::Relaxed) {
                return Poll::Ready(Ok(()));
            }
            *this.lingering = Some(Box::new(Lingering {
                until: Box::pin(tokio::time::sleep(LINGER_FOR)),
                drained: 0,
            }));
        }
        let Some(linger) = this.lingering.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let mut scratch = [0u8; 4096];
        loop {
            if linger.until.as_mut().poll(cx).is_ready() || linger.drained >= LINGER_MAX {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match this.inner.as_mut().poll_read(cx, &mut buf) {
                // The client closed (or broke): done.
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => linger.drained += buf.filled().len(),
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = len.to_be_bytes()[1..].to_vec();
        f.extend([kind, flags, 0, 0, 0, 1]);
        f.extend_from_slice(payload);
        f
    }

    fn feed(activity: &Activity, state: &mut Frames, bytes: &[u8], one_at_a_time: bool) {
        if one_at_a_time {
            for b in bytes {
                follow_frames(state, activity, std::slice::from_ref(b));
            }
        } else {
            follow_frames(state, activity, bytes);
        }
    }

    #[test]
    fn a_head_is_pending_from_the_start_until_the_first_complete_headers() {
        for trickle in [false, true] {
            let a = Activity::new(None);
            let mut s = Frames::Preface { n: 0 };
            assert!(a.head_pending_since().is_some());
            feed(&a, &mut s, H2_PREFACE, trickle);
            feed(&a, &mut s, &frame(0x4, 0, &[0; 6]), trickle); // SETTINGS
            assert!(a.head_pending_since().is_some());
            feed(&a, &mut s, &frame(FRAME_HEADERS, 0, b"abc"), trickle);
            assert!(a.head_pending_since().is_some());
            feed(&a, &mut s, &frame(FRAME_CONTINUATION, 0, b"de"), trickle);
            assert!(a.head_pending_since().is_some());
            let last = frame(FRAME_CONTINUATION, FLAG_END_HEADERS, b"f");
            feed(&a, &mut s, &last[..last.len() - 1], trickle);
            assert!(a.head_pending_since().is_some(), "payload not complete");
            feed(&a, &mut s, &last[last.len() - 1..], trickle);
            assert!(a.head_pending_since().is_none());
            // DATA and PING frames start no head; a new HEADERS does.
            feed(&a, &mut s, &frame(0x0, 0, b"body"), trickle);
            feed(&a, &mut s, &frame(0x6, 0, &[0; 8]), trickle);
            assert!(a.head_pending_since().is_none());
            feed(&a, &mut s, &frame(FRAME_HEADERS, 0x1, b"x"), trickle);
            assert!(a.head_pending_since().is_some());
            feed(
                &a,
                &mut s,
                &frame(FRAME_CONTINUATION, FLAG_END_HEADERS, b""),
                trickle,
            );
            assert!(a.head_pending_since().is_none());
        }
    }

    #[test]
    fn http1_turns_the_watch_off() {
        let a = Activity::new(None);
        let mut s = Frames::Preface { n: 0 };
        feed(&a, &mut s, b"GET / HTTP/1.1\r\n", false);
        assert!(matches!(s, Frames::Off));
        assert!(!a.watches_heads());
        assert!(a.head_pending_since().is_none());
    }

    #[test]
    fn the_slot_is_held_until_the_last_reference_goes() {
        struct Slot(Arc<AtomicBool>);
        impl Drop for Slot {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let released = Arc::new(AtomicBool::new(false));
        let a = Activity::new(Some(Box::new(Slot(released.clone()))));
        let tunnel = a.clone();
        drop(a);
        assert!(!released.load(Ordering::SeqCst));
        drop(tunnel);
        assert!(released.load(Ordering::SeqCst));
    }
}
