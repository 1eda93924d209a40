//! TCP transports: a server the analyzer connects to, and a client that dials the analyzer
//! (GeneXpert supports both, protocols.md §1.1 "Physical layer").

use super::{Backoff, SourceCtx};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{info, warn};

/// Accept analyzers on `listener` for ever, at most `limits.max_connections` at once; each
/// connection runs its own conversation, and one failing connection ends only itself.
pub async fn serve(listener: TcpListener, ctx: SourceCtx) {
    let slots = Arc::new(Semaphore::new(ctx.limits.max_connections.max(1)));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: wait a little instead of spinning.
                warn!(source = %ctx.id, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            warn!(source = %ctx.id, %peer, "connection refused: max_connections reached");
            drop(stream);
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            run_connection(stream, peer, &ctx).await;
        });
    }
}

async fn run_connection(mut stream: TcpStream, peer: SocketAddr, ctx: &SourceCtx) {
    let _ = stream.set_nodelay(true);
    info!(source = %ctx.id, %peer, "analyzer connected");
    match super::converse(&mut stream, ctx).await {
        Ok(stats) => info!(source = %ctx.id, %peer, %stats, "analyzer disconnected"),
        Err(e) => warn!(source = %ctx.id, %peer, error = %e, "connection ended"),
    }
}

/// Dial the analyzer at `addr`, converse, and redial after a backoff whenever the link ends.
pub async fn dial(addr: SocketAddr, backoff_min: Duration, backoff_max: Duration, ctx: SourceCtx) {
    let mut backoff = Backoff::new(backoff_min, backoff_max);
    loop {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                backoff.reset();
                run_connection(stream, addr, &ctx).await;
            }
            Err(e) => warn!(source = %ctx.id, %addr, error = %e, "cannot reach analyzer"),
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}
