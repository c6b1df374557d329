//! The client connection's byte stream, guarded: what hyper cannot be told to do itself.
//!
//! hyper parses; this wrapper only counts bytes and watches the clock between requests:
//!
//! * **idle**: no byte of a next request for `idle_timeout_s`: the connection is closed;
//! * **head**: from a request's first byte, at most `max_header_bytes` reach hyper (reads are
//!   cut to what is left of the allowance). If hyper asks for more while the head is still
//!   incomplete, the head is too large: 431. If the head is not complete within
//!   `header_timeout_s`: 408. A client that goes away mid-head is counted as `client_gone`.
//! * a refusal writes the router's own JSON answer, shuts the write side and reads and drops
//!   what the client still sends (up to 2 s) before closing, so the client reads the answer
//!   instead of a reset. The same linger applies when hyper closes a connection the service
//!   marked as refused (413, 408 for a body, 431 for too many headers).
//!
//! The service (`server.rs`) moves the phase: `REQUEST` when a head is complete (hyper calls
//! it), `IDLE` again when its answer is ready.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::Dp;

pub const IDLE: u8 = 0;
pub const HEAD: u8 = 1;
pub const REQUEST: u8 = 2;
const LINGER: Duration = Duration::from_secs(2);

pub struct ConnShared {
    pub phase: AtomicU8,
    pub refused: AtomicBool,
}

impl ConnShared {
    pub fn new() -> ConnShared {
        ConnShared { phase: AtomicU8::new(IDLE), refused: AtomicBool::new(false) }
    }
}

struct Refusal {
    out: Bytes,
    written: usize,
    shut: bool,
}

pub struct Guarded {
    inner: TcpStream,
    shared: Arc<ConnShared>,
    dp: Arc<Dp>,
    seen_phase: u8,
    head_bytes: usize,
    max_header_bytes: usize,
    header_timeout: Duration,
    idle_timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    refusal: Option<Refusal>,
    lingering: bool,
}

impl Guarded {
    pub fn new(inner: TcpStream, shared: Arc<ConnShared>, dp: Arc<Dp>) -> Guarded {
        let (max_header_bytes, header_timeout, idle_timeout) = {
            let table = dp.table();
            let s = &table.settings;
            (s.max_header_bytes, Duration::from_secs_f64(s.header_timeout_s), Duration::from_secs_f64(s.idle_timeout_s))
        };
        Guarded {
            inner,
            shared,
            dp,
            seen_phase: IDLE,
            head_bytes: 0,
            max_header_bytes,
            header_timeout,
            idle_timeout,
            deadline: Box::pin(tokio::time::sleep(idle_timeout)),
            refusal: None,
            lingering: false,
        }
    }

    fn start_refusal(&mut self, status: &str, error: &str, counter: &'static str) {
        self.dp.acc.client_error(counter);
        let body = serde_json::json!({ "error": error }).to_string();
        let name = self.dp.table().router_name.clone();
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-mco-router: {}\r\nconnection: close\r\n\r\n",
            body.len(),
            name.to_str().unwrap_or("mco-router")
        );
        self.refusal = Some(Refusal { out: Bytes::from(head + &body), written: 0, shut: false });
        self.deadline.as_mut().reset(Instant::now() + LINGER);
    }

    /// Write the refusal, shut the write side, then read and drop until EOF or the linger ends.
    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let refusal = self.refusal.as_mut().expect("refusing");
        while refusal.written < refusal.out.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &refusal.out[refusal.written..]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(n)) => refusal.written += n,
                Poll::Pending => return Poll::Pending,
            }
        }
        if !refusal.shut {
            refusal.shut = true;
            if let Poll::Pending = Pin::new(&mut self.inner).poll_shutdown(cx) {
                refusal.shut = false;
                return Poll::Pending;
            }
        }
        self.drain(cx)
    }

    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut scratch = [0u8; 8192];
        loop {
            if self.deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

use std::future::Future;

impl AsyncRead for Guarded {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.refusal.is_some() {
            return this.poll_refusal(cx); // ends in EOF for hyper
        }
        let phase = this.shared.phase.load(Ordering::Relaxed);
        if phase != this.seen_phase {
            this.seen_phase = phase;
            if phase == IDLE {
                this.head_bytes = 0;
                this.deadline.as_mut().reset(Instant::now() + this.idle_timeout);
            }
        }
        if phase == REQUEST {
            return Pin::new(&mut this.inner).poll_read(cx, buf); // the body: the service keeps its deadline
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            if phase == IDLE {
                return Poll::Ready(Ok(())); // idle for too long: EOF, hyper closes
            }
            let error = format!("request headers not received within {} s", fmt_s(this.header_timeout));
            this.start_refusal("408 Request Timeout", &error, "header_timeout");
            return this.poll_refusal(cx);
        }
        let allowance = this.max_header_bytes.saturating_sub(this.head_bytes);
        if allowance == 0 {
            // hyper wants more and the head is not complete yet: it is too large
            let error = format!("request headers are larger than {} bytes", this.max_header_bytes);
            this.start_refusal("431 Request Header Fields Too Large", &error, "header_too_large");
            return this.poll_refusal(cx);
        }
        let n = {
            let mut limited = buf.take(allowance);
            match Pin::new(&mut this.inner).poll_read(cx, &mut limited) {
                Poll::Ready(Ok(())) => limited.filled().len(),
                other => return other,
            }
        };
        if n == 0 {
            if phase == HEAD && this.head_bytes > 0 {
                this.dp.acc.client_error("client_gone");
            }
            return Poll::Ready(Ok(()));
        }
        // SAFETY: `limited` was carved out of `buf`'s unfilled part and `n` bytes of it were filled
        unsafe { buf.assume_init(n) };
        buf.advance(n);
        if phase == IDLE {
            this.shared.phase.store(HEAD, Ordering::Relaxed);
            this.seen_phase = HEAD;
            this.deadline.as_mut().reset(Instant::now() + this.header_timeout);
        }
        this.head_bytes += n;
        Poll::Ready(Ok(()))
    }
}

impl Guarded {
    /// hyper writes while a head is incomplete only to refuse it (a parse error, or more
    /// headers than `max_headers`): the router's own JSON answer replaces hyper's bare one.
    fn intercept(&mut self, data: &[u8]) -> bool {
        if self.refusal.is_some() {
            return true; // (already replaced)
        }
        if self.shared.phase.load(Ordering::Relaxed) != HEAD {
            return false;
        }
        let max_headers = self.dp.table().settings.max_headers;
        if data.starts_with(b"HTTP/1.1 431") {
            let error = format!("more than {max_headers} request headers");
            self.start_refusal("431 Request Header Fields Too Large", &error, "header_too_large");
        } else {
            self.start_refusal("400 Bad Request", "malformed HTTP request", "bad_request");
        }
        true
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if self.intercept(data) {
            return Poll::Ready(Ok(data.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>])
                           -> Poll<io::Result<usize>> {
        let first = bufs.iter().find(|b| !b.is_empty()).map(|b| &b[..]).unwrap_or(&[]);
        if self.intercept(first) {
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.refusal.is_some() {
            return this.poll_refusal(cx);
        }
        if !this.shared.refused.load(Ordering::Relaxed) {
            return Pin::new(&mut this.inner).poll_shutdown(cx);
        }
        // the service refused a request whose rest may still be on its way: linger as above
        if !this.lingering {
            if let Poll::Pending = Pin::new(&mut this.inner).poll_shutdown(cx) {
                return Poll::Pending;
            }
            this.lingering = true;
            this.deadline.as_mut().reset(Instant::now() + LINGER);
        }
        this.drain(cx)
    }
}

pub fn fmt_s(d: Duration) -> String {
    // as Python prints a float: 10.0, 0.5
    let s = d.as_secs_f64();
    if s.fract() == 0.0 { format!("{s:.1}") } else { format!("{s}") }
}
