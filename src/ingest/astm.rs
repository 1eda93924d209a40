//! One ASTM E1381/E1394 conversation over any byte stream (TCP socket, serial port, pty):
//! bytes → [`Session`] → commit → reply. The final ACK of a message is written only after
//! [`Store::commit`](crate::store::Store::commit) returned; a failed commit answers NAK.

use super::SourceCtx;
use crate::protocol::astm::decode;
use crate::protocol::astm::session::{CompleteMessage, Session, SessionEvent};
use crate::store::{NewMessage, ProtocolKind};
use std::collections::VecDeque;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Counters of one conversation, returned when it ends (tests and logs read them).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConversationStats {
    pub stored: usize,
    pub duplicates: usize,
    pub commit_failures: usize,
    pub rejected_frames: usize,
    pub dropped_partials: usize,
}

/// Run the receiver until the peer closes the stream or an I/O error ends it.
pub async fn converse<S>(io: &mut S, ctx: &SourceCtx) -> std::io::Result<ConversationStats>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut session = Session::new(ctx.session_limits());
    let mut stats = ConversationStats::default();
    let mut buf = vec![0u8; 8192];
    loop {
        let deadline = session.deadline().map(Instant::from_std);
        let events = tokio::select! {
            read = io.read(&mut buf) => {
                let n = read?;
                if n == 0 {
                    return Ok(stats);
                }
                session.feed(&buf[..n], Instant::now().into_std())
            }
            _ = sleep_until(deadline) => session.poll_timeout(Instant::now().into_std()),
        };
        handle(events, &mut session, io, ctx, &mut stats).await?;
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn handle<S>(
    events: Vec<SessionEvent>,
    session: &mut Session,
    io: &mut S,
    ctx: &SourceCtx,
    stats: &mut ConversationStats,
) -> std::io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    let mut queue: VecDeque<SessionEvent> = events.into();
    while let Some(ev) = queue.pop_front() {
        match ev {
            SessionEvent::Reply(byte) => {
                io.write_all(&[byte]).await?;
                io.flush().await?;
            }
            SessionEvent::Commit(msg) => {
                let stored = commit(msg, ctx, stats).await;
                let more = session.confirm(stored, Instant::now().into_std());
                // The answers to this commit come before anything queued after it.
                for e in more.into_iter().rev() {
                    queue.push_front(e);
                }
            }
            SessionEvent::Rejected(e) => {
                stats.rejected_frames += 1;
                warn!(source = %ctx.id, error = %e, "frame rejected (NAK sent)");
            }
            SessionEvent::Dropped { reason, bytes } => {
                stats.dropped_partials += 1;
                warn!(source = %ctx.id, ?reason, bytes, "partial message dropped, nothing stored");
            }
            SessionEvent::EndOfTransfer => debug!(source = %ctx.id, "end of transfer"),
        }
    }
    Ok(())
}

/// Decode and commit one message; `true` when it is durable (new or already stored).
async fn commit(msg: CompleteMessage, ctx: &SourceCtx, stats: &mut ConversationStats) -> bool {
    let decoded = decode::decode_message(&msg.text, ctx.encoding());
    let parse_errors: Vec<String> = decoded.errors.iter().map(|e| e.to_string()).collect();
    for e in &parse_errors {
        warn!(source = %ctx.id, error = %e, "message stored with a parse error");
    }
    let new = NewMessage {
        source: ctx.id.clone(),
        protocol: ProtocolKind::Astm,
        wire: msg.wire,
        text: msg.text,
        observations: ctx.enriched(decoded.observations),
        parse_errors,
    };
    match ctx.store.commit(new).await {
        Ok(c) if c.duplicate => {
            stats.duplicates += 1;
            info!(source = %ctx.id, id = %c.id, "resent message already stored; acknowledged again");
            true
        }
        Ok(_) => {
            stats.stored += 1;
            true
        }
        Err(e) => {
            stats.commit_failures += 1;
            warn!(source = %ctx.id, error = %e, "commit failed; device gets NAK and will resend");
            false
        }
    }
}
