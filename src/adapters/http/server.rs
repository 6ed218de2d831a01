//! The HTTP server: the poem endpoint served by hyper, with the two timeouts poem's own
//! server lacks (contract §9): a client must send its request headers within
//! `header_read` of their first byte, and a keep-alive connection with no request in flight
//! is closed after `idle`. (hyper's own header timeout also counts the idle time between
//! requests, so it cannot give both.)

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper_util::rt::{TokioExecutor, TokioIo};
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Addr, Endpoint, EndpointExt, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// How long a client may take (`HEADER_READ_TIMEOUT_SECONDS`, `IDLE_TIMEOUT_SECONDS`).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From the first byte of a request to the end of its headers.
    pub header_read: Duration,
    /// A connection with no request in flight and no byte of a new one.
    pub idle: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and gives the
/// requests in flight `grace` to finish before cutting them off.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: impl Endpoint<Output = Response> + 'static,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> io::Result<()> {
    let app = Arc::new(app.boxed());
    let local = LocalAddr(Addr::SocketAddr(listener.local_addr()?));
    let connections = hyper_util::server::graceful::GracefulShutdown::new();
    // Every connection's task, so those still running after the grace are cut off.
    let mut tasks = tokio::task::JoinSet::new();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // Without a timer hyper's own header timeout is off; the connection's watch below does it.
    builder.http1().header_read_timeout(None);
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let activity = Arc::new(Activity::default());
        let io = TokioIo::new(Watched::new(stream, activity.clone(), timeouts));
        let (app, local, remote) = (app.clone(), local.clone(), RemoteAddr(Addr::SocketAddr(remote)));
        let service = hyper::service::service_fn(move |request| {
            // The headers are in: no timeout applies until the answer has been sent.
            let guard = InFlight::new(&activity);
            let (app, local, remote) = (app.clone(), local.clone(), remote.clone());
            async move {
                let request = poem::Request::from((request, local, remote, poem::http::uri::Scheme::HTTP));
                let response: hyper::Response<BoxBody<Bytes, io::Error>> = app.get_response(request).await.into();
                Ok::<_, Infallible>(response.map(|body| Tracked { body, _guard: guard }))
            }
        });
        let connection = connections.watch(builder.serve_connection(io, service).into_owned());
        tasks.spawn(async move {
            // A client that went away or timed out ends its connection; nothing to report.
            let _ = connection.await;
        });
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    if tokio::time::timeout(grace, connections.shutdown()).await.is_err() {
        tracing::warn!("requests still in flight after the shutdown grace; cut off");
    }
    // Dropping the set aborts the connections left.
    drop(tasks);
    Ok(())
}

/// What the requests of one connection are doing.
#[derive(Default)]
struct Activity {
    /// Requests whose headers were complete, since the connection opened.
    heads: AtomicUsize,
    /// Requests being answered.
    in_flight: AtomicUsize,
    /// The connection's reader, woken when the last answer is done so the idle clock starts.
    reader: futures::task::AtomicWaker,
}

/// Counts a request in flight on its connection until its answer's body is dropped (sent,
/// or given up).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.heads.fetch_add(1, Ordering::SeqCst);
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.reader.wake();
        }
    }
}

/// An answer's body that keeps its request counted as in flight.
struct Tracked {
    body: BoxBody<Bytes, io::Error>,
    _guard: InFlight,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, io::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// A connection's socket that fails its read once the client is too slow: idle with no
/// request in flight for `idle`, or sending a request's headers for longer than
/// `header_read` since their first byte. hyper then closes the connection.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    /// `activity.heads` when last looked at.
    heads: usize,
    timeouts: Timeouts,
    /// Bytes of a request whose headers are not complete yet have arrived.
    reading_head: bool,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl Watched {
    fn new(inner: TcpStream, activity: Arc<Activity>, timeouts: Timeouts) -> Self {
        Watched { inner, activity, heads: 0, timeouts, reading_head: false, deadline: None }
    }
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let heads = this.activity.heads.load(Ordering::SeqCst);
        if heads != this.heads {
            // A request's headers came in since: the next byte starts a new request.
            this.heads = heads;
            this.reading_head = false;
            this.deadline = None;
        }
        this.activity.reader.register(cx.waker());
        if this.activity.in_flight.load(Ordering::SeqCst) > 0 {
            // A request is being answered (its body may still be arriving): no bound here.
            this.deadline = None;
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before && !this.reading_head {
                    // The first byte of a request: its headers must be in within the bound.
                    this.reading_head = true;
                    this.deadline = Some(Box::pin(tokio::time::sleep(this.timeouts.header_read)));
                }
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Pending => {}
        }
        let (reading_head, timeouts) = (this.reading_head, this.timeouts);
        let deadline = this.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeouts.idle)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                let why = if reading_head { "request headers not received in time" } else { "idle connection" };
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
