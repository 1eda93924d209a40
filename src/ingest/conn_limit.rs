//! `limits.max_connections` for the HTTP listener: at most N connections are served at once; one
//! more is answered `503 Service Unavailable` with `Retry-After` and closed, so a sender retries
//! later instead of hanging (the byte-stream TCP sources refuse the same way, by closing).

use axum::serve::Listener;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;

/// Seconds a refused sender is asked to wait.
const RETRY_AFTER_SECS: u64 = 5;
/// What is read (and dropped) from a refused connection before it is closed, so the peer gets the
/// answer instead of a reset.
const DRAIN_BYTES: usize = 64 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// A listener that hands out at most `max` connections at a time.
pub struct Limited {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    source: String,
}

impl Limited {
    pub fn new(listener: TcpListener, max: usize, source: impl Into<String>) -> Self {
        Limited {
            listener,
            slots: Arc::new(Semaphore::new(max.max(1))),
            source: source.into(),
        }
    }
}

impl Listener for Limited {
    type Io = Counted;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Counted, std::net::SocketAddr) {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    warn!(source = %self.source, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            match self.slots.clone().try_acquire_owned() {
                Ok(permit) => {
                    return (
                        Counted {
                            stream,
                            _permit: permit,
                        },
                        peer,
                    );
                }
                Err(_) => {
                    warn!(source = %self.source, %peer, "HTTP connection refused with 503: max_connections reached");
                    tokio::spawn(refuse(stream));
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }
}

/// Answer 503 without reading the request, then drain a little and close.
async fn refuse(mut stream: TcpStream) {
    let body = r#"{"error":"too many connections (limits.max_connections); retry later"}"#;
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: {RETRY_AFTER_SECS}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await?;
        let mut buf = [0u8; 4096];
        let mut drained = 0;
        while drained < DRAIN_BYTES {
            match stream.read(&mut buf).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// A served connection; its slot is given back when it closes.
pub struct Counted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
