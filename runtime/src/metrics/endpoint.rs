//! The HTTP endpoint: `/metrics`, `/healthz` and `/readyz`, for scrapers and
//! probes.
//!
//! Three fixed routes do not need a web framework: each connection sends one
//! request head, gets one response, and is closed. What the endpoint does
//! need is to keep answering for months whatever connects to it, because an
//! orchestrator restarts a weir whose `/readyz` stops answering:
//!
//! - a connection must send its request head within [`Limits::head_timeout`]
//!   and in at most [`Limits::head_bytes`], or it is answered 408 or 431 and
//!   closed;
//! - at most [`Limits::connections`] are served at once. Past that, a new
//!   connection takes the place of the oldest one that is not being
//!   answered (it has not sent its request yet, or has its answer and has
//!   not closed), which is closed: a client holding many silent connections
//!   cannot keep a probe from being answered. Only when every place is
//!   taken by a request being answered is a new connection refused, with a
//!   503 written without waiting;
//! - the accept loop never waits on a client.
//!
//! `GET` and `HEAD` are answered (`HEAD` with the headers of `GET` and no
//! body); other methods get 405.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::Metrics;

/// What one endpoint accepts from its clients.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Connections served at once.
    pub(crate) connections: usize,
    /// Time a client has to send its request head, from its connection.
    pub(crate) head_timeout: Duration,
    /// Time to write a response: a client that does not read it is dropped.
    pub(crate) write_timeout: Duration,
    /// Largest request head (request line and headers), in bytes.
    pub(crate) head_bytes: usize,
}

impl Limits {
    /// Scrapers and probes open a connection or two every few seconds, and a
    /// request head is one short line and a few headers: these leave a wide
    /// margin for them and little for anything else.
    pub(crate) const DEFAULT: Limits =
        Limits { connections: 64, head_timeout: Duration::from_secs(5), write_timeout: Duration::from_secs(10), head_bytes: 8 * 1024 };
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `stop`.
pub async fn serve(metrics: Metrics, listener: TcpListener, stop: CancellationToken) {
    serve_with(metrics, listener, stop, Limits::DEFAULT).await;
}

/// [`serve`] with chosen limits (tests use short timeouts).
pub(crate) async fn serve_with(metrics: Metrics, listener: TcpListener, stop: CancellationToken, limits: Limits) {
    let open = Arc::new(Mutex::new(Open::default()));
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, most likely: accepting again at
                    // once would fail again and spin.
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    }
                }
            },
        };
        let mut ticket = Ticket::take(&open, limits.connections);
        // Displaced connections close at their task's next turn: give them
        // a few turns (never waiting on a client) before refusing.
        for _ in 0..4 {
            if ticket.is_some() {
                break;
            }
            tokio::task::yield_now().await;
            ticket = Ticket::take(&open, limits.connections);
        }
        match ticket {
            Some(ticket) => {
                let metrics = metrics.clone();
                tokio::spawn(connection(metrics, stream, ticket, limits));
            }
            None => {
                // Every place is answering a request. Say so if the socket
                // takes it at once (a fresh socket's buffer is empty), then
                // close; never wait here.
                let _ = stream.try_write(Response::refused().bytes(false).as_slice());
            }
        }
    }
}

/// The connections being served.
#[derive(Default)]
struct Open {
    /// Connections whose task has not ended, displaced ones included.
    count: usize,
    next_id: u64,
    /// Connections that may be displaced (waiting for their request, or
    /// done answering), oldest first, with the token that closes each.
    waiting: BTreeMap<u64, CancellationToken>,
}

/// One connection's place; given back when dropped.
struct Ticket {
    open: Arc<Mutex<Open>>,
    id: u64,
    /// Cancelled when a newer connection takes this one's place.
    displaced: CancellationToken,
}

impl Ticket {
    /// A place for a new connection, if there is one. When all `limit` are
    /// taken, the oldest connection still waiting for its request gives up
    /// its place; the displaced one may take a moment to close, so up to
    /// twice `limit` sockets can be open for that moment, never more.
    fn take(open: &Arc<Mutex<Open>>, limit: usize) -> Option<Ticket> {
        let mut state = open.lock().unwrap_or_else(PoisonError::into_inner);
        if state.count >= limit {
            if state.count >= limit.saturating_mul(2) {
                return None;
            }
            let (_, oldest) = state.waiting.pop_first()?;
            oldest.cancel();
        }
        state.count += 1;
        let id = state.next_id;
        state.next_id += 1;
        let displaced = CancellationToken::new();
        state.waiting.insert(id, displaced.clone());
        Some(Ticket { open: open.clone(), id, displaced })
    }

    /// Whether a new connection may take this one's place: while it waits
    /// for its request, not while it answers, again once it has answered.
    fn set_displaceable(&self, displaceable: bool) {
        let mut state = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if displaceable {
            state.waiting.insert(self.id, self.displaced.clone());
        } else {
            state.waiting.remove(&self.id);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        state.count -= 1;
        state.waiting.remove(&self.id);
    }
}

async fn connection(metrics: Metrics, mut stream: TcpStream, ticket: Ticket, limits: Limits) {
    let head = tokio::select! {
        // A newer connection needed the place: close without a word.
        _ = ticket.displaced.cancelled() => return,
        head = tokio::time::timeout(limits.head_timeout, read_head(&mut stream, limits.head_bytes)) => head,
    };
    ticket.set_displaceable(false);
    let (response, head_only) = match head {
        Err(_) => (Response::timed_out(limits.head_timeout), false),
        Ok(Err(_)) | Ok(Ok(Head::Empty)) => return,
        Ok(Ok(Head::TooLarge)) => (Response::too_large(limits.head_bytes), false),
        Ok(Ok(Head::Complete(head))) => route(&metrics, &head),
    };
    let written = tokio::time::timeout(limits.write_timeout, async {
        stream.write_all(&response.bytes(head_only)).await?;
        stream.shutdown().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        return;
    }
    // Closing a socket with unread input resets the connection, and the
    // reset can destroy the response before the client reads it (a 431 or a
    // 405 leaves input unread). So read what is left, a little at most,
    // until the client closes: briefly, and giving up the place to any new
    // connection, as the answer is out.
    ticket.set_displaceable(true);
    let drain = async {
        let mut left = [0u8; 4096];
        for _ in 0..16 {
            if !matches!(stream.read(&mut left).await, Ok(n) if n > 0) {
                break;
            }
        }
    };
    tokio::select! {
        _ = ticket.displaced.cancelled() => {}
        _ = tokio::time::timeout(LINGER, drain) => {}
    }
}

/// How long a connection stays open after its response, for the client to
/// read it and close.
const LINGER: Duration = Duration::from_secs(1);

/// What a client sent before its response.
enum Head {
    /// The request head, up to its blank line, or all that came before the
    /// client closed its side.
    Complete(Vec<u8>),
    /// Nothing at all.
    Empty,
    /// More than the limit without the blank line that ends a head.
    TooLarge,
}

async fn read_head(stream: &mut TcpStream, limit: usize) -> std::io::Result<Head> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        let searched = head.len().saturating_sub(3);
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            // The client closed its side: answer what it sent (`printf 'GET
            // /metrics\n' | nc` is a request too).
            return Ok(if head.is_empty() { Head::Empty } else { Head::Complete(head) });
        }
        head.extend_from_slice(&buf[..n]);
        let tail = &head[searched..];
        if tail.windows(4).any(|w| w == b"\r\n\r\n") || tail.windows(2).any(|w| w == b"\n\n") {
            return Ok(Head::Complete(head));
        }
        if head.len() >= limit {
            return Ok(Head::TooLarge);
        }
    }
}

/// The response to a request head, and whether it is a `HEAD` request.
fn route(metrics: &Metrics, head: &[u8]) -> (Response, bool) {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_ascii_whitespace();
    let (Some(method), Some(target)) = (words.next(), words.next()) else {
        return (Response::text("400 Bad Request", "bad request: send GET /metrics, /healthz or /readyz\n".to_owned()), false);
    };
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            let mut response = Response::text("405 Method Not Allowed", format!("method {method} is not allowed: use GET or HEAD\n"));
            response.allow = true;
            return (response, false);
        }
    };
    let path = target.split(['?', '#']).next().unwrap_or(target);
    let response = match path {
        "/metrics" => {
            Response { status: "200 OK", content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8", body: metrics.render(), allow: false }
        }
        "/healthz" => Response::text("200 OK", "ok\n".to_owned()),
        "/readyz" => match metrics.readiness() {
            Ok(()) => Response::text("200 OK", "ready\n".to_owned()),
            Err(why) => Response::text("503 Service Unavailable", format!("not ready: {why}\n")),
        },
        _ => Response::text("404 Not Found", "not found: try /metrics, /healthz or /readyz\n".to_owned()),
    };
    (response, head_only)
}

struct Response {
    status: &'static str,
    content_type: &'static str,
    body: String,
    /// Whether to list the allowed methods (with a 405).
    allow: bool,
}

impl Response {
    fn text(status: &'static str, body: String) -> Response {
        Response { status, content_type: "text/plain; charset=utf-8", body, allow: false }
    }

    fn timed_out(timeout: Duration) -> Response {
        Response::text("408 Request Timeout", format!("request timeout: send the request within {}\n", crate::config::format_duration(timeout)))
    }

    fn too_large(limit: usize) -> Response {
        Response::text(
            "431 Request Header Fields Too Large",
            format!("request too large: the request line and headers must fit in {limit} bytes\n"),
        )
    }

    fn refused() -> Response {
        Response::text("503 Service Unavailable", "busy: too many connections to the metrics endpoint, try again\n".to_owned())
    }

    /// The response as sent; `head_only` leaves the body out but keeps its
    /// `Content-Length`, as `HEAD` asks.
    fn bytes(&self, head_only: bool) -> Vec<u8> {
        let allow = if self.allow { "Allow: GET, HEAD\r\n" } else { "" };
        let mut out = format!(
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if !head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    struct Endpoint {
        address: std::net::SocketAddr,
        stop: CancellationToken,
    }

    impl Drop for Endpoint {
        fn drop(&mut self) {
            self.stop.cancel();
        }
    }

    async fn endpoint(limits: Limits) -> Endpoint {
        let metrics = Metrics::new(false);
        metrics.set_running(1, true);
        metrics.nats_connected(true);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(serve_with(metrics, listener, stop.clone(), limits));
        Endpoint { address, stop }
    }

    /// Sends `request` and reads the whole response, within 5 seconds.
    async fn exchange(address: std::net::SocketAddr, request: &[u8]) -> String {
        send(address, request, false).await
    }

    /// Like [`exchange`]; `half_close` closes the sending side after the
    /// request, as `printf ... | nc` does.
    async fn send(address: std::net::SocketAddr, request: &[u8], half_close: bool) -> String {
        let work = async {
            let mut stream = TcpStream::connect(address).await.unwrap();
            stream.write_all(request).await.unwrap();
            if half_close {
                stream.shutdown().await.unwrap();
            }
            let mut response = Vec::new();
            // A reset after a full response still leaves the response read.
            let _ = stream.read_to_end(&mut response).await;
            String::from_utf8_lossy(&response).into_owned()
        };
        tokio::time::timeout(Duration::from_secs(5), work).await.expect("an answer within 5 s")
    }

    fn fast() -> Limits {
        Limits { connections: 8, head_timeout: Duration::from_millis(300), write_timeout: Duration::from_secs(1), head_bytes: 1024 }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn methods_and_routes() {
        let e = endpoint(fast()).await;
        let get = exchange(e.address, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(get.starts_with("HTTP/1.1 200 OK\r\n"), "{get}");
        assert!(get.ends_with("\r\n\r\nready\n"), "{get}");

        let head = exchange(e.address, b"HEAD /readyz HTTP/1.1\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Content-Length: 6\r\n"), "the length GET's body would have: {head}");
        assert!(head.ends_with("\r\n\r\n"), "no body: {head}");

        let metrics = exchange(e.address, b"HEAD /metrics?x=1 HTTP/1.0\n\n").await;
        assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n") && metrics.ends_with("\r\n\r\n"), "{metrics}");

        let post = exchange(e.address, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
        assert!(post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{post}");
        assert!(post.contains("Allow: GET, HEAD\r\n"), "{post}");

        assert!(exchange(e.address, b"GET /nope HTTP/1.1\r\n\r\n").await.starts_with("HTTP/1.1 404 "));
        assert!(exchange(e.address, b"\r\n\r\n").await.starts_with("HTTP/1.1 400 "));
        let closed_early = send(e.address, b"GET /healthz", true).await;
        assert!(closed_early.ends_with("\r\n\r\nok\n"), "a client that closes its side is answered: {closed_early}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_or_slow_request_is_answered_and_closed() {
        let e = endpoint(fast()).await;
        let large = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(4000));
        let answer = exchange(e.address, large.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");

        let started = Instant::now();
        let answer = exchange(e.address, b"GET /metrics HTTP/1.1\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{answer}");
        assert!(started.elapsed() >= Duration::from_millis(300), "not before the head timeout");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn silent_connections_do_not_keep_a_probe_out() {
        let mut limits = fast();
        limits.head_timeout = Duration::from_secs(30);
        let e = endpoint(limits).await;
        // Far more silent connections than places, held for longer than
        // the test.
        let mut silent = Vec::new();
        for _ in 0..100 {
            silent.push(TcpStream::connect(e.address).await.unwrap());
        }
        for _ in 0..3 {
            let answer = exchange(e.address, b"GET /readyz HTTP/1.1\r\n\r\n").await;
            assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        }
        // The oldest silent ones were closed to make room.
        let mut buf = [0u8; 16];
        let first = tokio::time::timeout(Duration::from_secs(5), silent[0].read(&mut buf))
            .await
            .expect("closed, not waiting");
        assert!(matches!(first, Ok(0) | Err(_)), "{first:?}");
    }

    #[test]
    fn places_are_given_back_and_taken_from_the_oldest_waiting() {
        let open = Arc::new(Mutex::new(Open::default()));
        let a = Ticket::take(&open, 2).unwrap();
        let b = Ticket::take(&open, 2).unwrap();
        a.set_displaceable(false);
        // Full: the oldest still waiting (b) gives up its place, not a.
        let c = Ticket::take(&open, 2).unwrap();
        assert!(b.displaced.is_cancelled() && !a.displaced.is_cancelled());
        // b has not closed yet; c is waiting and can be displaced in turn.
        let d = Ticket::take(&open, 2).unwrap();
        assert!(c.displaced.is_cancelled());
        // 4 open (twice the limit): refused until some close.
        assert!(Ticket::take(&open, 2).is_none());
        drop((b, c));
        assert_eq!(open.lock().unwrap().count, 2);
        d.set_displaceable(false);
        assert!(Ticket::take(&open, 2).is_none(), "both places answer requests");
        drop((a, d));
        assert_eq!(open.lock().unwrap().count, 0);
        assert!(open.lock().unwrap().waiting.is_empty());
    }
}
