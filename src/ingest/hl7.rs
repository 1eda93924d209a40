//! One HL7 v2 / MLLP conversation over any byte stream (TCP server or client socket, serial
//! port): bytes → [`Deframer`] → decode → commit → ACK (protocols.md §1.3).
//!
//! * The ACK is written only after [`Store::commit`](crate::store::Store::commit) returned:
//!   `AA`/`CA` when the message is durable; `AE`/`CE` naming the problem when it is durable but
//!   malformed (stored raw with its parse errors, status `invalid`; resending cannot fix it);
//!   `AR` (original mode) / `CE` (enhanced mode) when the commit failed, so the device sends it
//!   again — see [`Outcome::NotStored`] for why those two codes.
//! * A resend of a stored message (same text) is acknowledged again and not stored twice.
//! * The connection stays open for as many messages as the device sends (GeneXpert keeps it
//!   open); a peer that closes after each message (hl7apy) simply ends the conversation.
//! * A half-received message is dropped after `receive_timeout` of silence; garbage between
//!   frames and over-long messages are logged and skipped, the connection goes on.

use super::SourceCtx;
use crate::protocol::hl7::ack::{AckContext, Outcome, build_ack};
use crate::protocol::hl7::decode::decode_message;
use crate::protocol::hl7::mllp::{Deframed, Deframer, MllpError, frame};
use crate::store::{NewMessage, ProtocolKind};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{debug, info, warn};

/// Counters of one conversation, returned when it ends (tests and logs read them).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Hl7Stats {
    /// New messages stored (clean or invalid).
    pub stored: usize,
    /// Of those, stored with parse errors (answered `AE`/`CE`).
    pub invalid: usize,
    pub duplicates: usize,
    pub commit_failures: usize,
    /// Bytes skipped outside any frame.
    pub garbage_bytes: usize,
    /// Frames longer than `limits.max_message_bytes`, or restarted by a new `<VT>`.
    pub rejected_frames: usize,
    /// Half messages dropped after `receive_timeout` of silence or at disconnect.
    pub dropped_partials: usize,
}

/// Run the receiver until the peer closes the stream or an I/O error ends it.
pub async fn converse<S>(io: &mut S, ctx: &SourceCtx) -> std::io::Result<Hl7Stats>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut deframer = Deframer::new(ctx.limits.max_message_bytes);
    let mut stats = Hl7Stats::default();
    let mut buf = vec![0u8; 8192];
    loop {
        let in_frame = deframer.in_frame();
        let read = tokio::select! {
            read = io.read(&mut buf) => Some(read?),
            _ = tokio::time::sleep(ctx.receive_timeout()), if in_frame => None,
        };
        let Some(n) = read else {
            let bytes = deframer.drop_partial();
            stats.dropped_partials += 1;
            warn!(source = %ctx.id, bytes, "partial message dropped after receive_timeout, nothing stored");
            continue;
        };
        if n == 0 {
            if deframer.in_frame() {
                let bytes = deframer.drop_partial();
                stats.dropped_partials += 1;
                warn!(source = %ctx.id, bytes, "connection closed inside a message; partial message dropped");
            }
            return Ok(stats);
        }
        for out in deframer.feed(buf.get(..n).unwrap_or_default()) {
            match out {
                Deframed::Message { text, wire } => {
                    let ack = handle(text, wire, ctx, &mut stats).await;
                    io.write_all(&frame(&ack)).await?;
                    io.flush().await?;
                }
                Deframed::Error(MllpError::Garbage { bytes }) => {
                    stats.garbage_bytes += bytes;
                    warn!(source = %ctx.id, bytes, "bytes outside MLLP frames skipped");
                }
                Deframed::Error(e) => {
                    stats.rejected_frames += 1;
                    warn!(source = %ctx.id, error = %e, "MLLP frame rejected, nothing stored");
                }
            }
        }
    }
}

/// Decode and commit one message; returns the ACK (unframed) to send.
async fn handle(text: Vec<u8>, wire: Vec<u8>, ctx: &SourceCtx, stats: &mut Hl7Stats) -> Vec<u8> {
    let decoded = decode_message(&text, ctx.encoding());
    let ack_ctx = AckContext::from_message(decoded.message.as_ref());
    let parse_errors: Vec<String> = decoded.errors.iter().map(ToString::to_string).collect();
    for e in &parse_errors {
        warn!(source = %ctx.id, error = %e, "message stored with a parse error");
    }
    let new = NewMessage {
        source: ctx.id.clone(),
        protocol: ProtocolKind::Hl7,
        wire,
        text,
        observations: ctx.enriched(decoded.observations),
        parse_errors: parse_errors.clone(),
    };
    let (outcome, why) = match ctx.store.commit(new).await {
        Ok(c) if c.duplicate => {
            stats.duplicates += 1;
            info!(source = %ctx.id, id = %c.id, "resent message already stored; acknowledged again");
            outcome_for(&parse_errors)
        }
        Ok(c) => {
            stats.stored += 1;
            if !parse_errors.is_empty() {
                stats.invalid += 1;
            }
            debug!(source = %ctx.id, id = %c.id, "message stored");
            outcome_for(&parse_errors)
        }
        Err(e) => {
            stats.commit_failures += 1;
            warn!(source = %ctx.id, error = %e, "commit failed; device is told to resend");
            (
                Outcome::NotStored,
                Some(format!("message not stored ({e}); send it again")),
            )
        }
    };
    build_ack(
        &ack_ctx,
        outcome,
        why.as_deref(),
        &hl7_now(),
        &next_control_id(),
    )
}

fn outcome_for(parse_errors: &[String]) -> (Outcome, Option<String>) {
    if parse_errors.is_empty() {
        (Outcome::Stored, None)
    } else {
        (
            Outcome::StoredWithErrors,
            Some(format!("stored as invalid: {}", parse_errors.join("; "))),
        )
    }
}

/// MSH-7 of the ACK: the gateway's clock as HL7 `YYYYMMDDHHMMSS` (local time when the offset is
/// known, else UTC; no zone is written, as in the vendors' examples).
fn hl7_now() -> String {
    let now = time::OffsetDateTime::now_local().unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    let fmt = time::macros::format_description!("[year][month][day][hour][minute][second]");
    now.format(&fmt).unwrap_or_default()
}

/// MSH-10 of the ACK: `PG` + a counter seeded with the start time in milliseconds, so IDs are
/// unique within a run and across restarts, and short (≤ 20 characters, the v2.3.1 limit).
fn next_control_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let seed = u64::try_from(seed).unwrap_or_default();
    let _ = NEXT.compare_exchange(0, seed, Ordering::Relaxed, Ordering::Relaxed);
    format!("PG{}", NEXT.fetch_add(1, Ordering::Relaxed))
}
