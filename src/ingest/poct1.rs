//! One POCT1-A2 conversation over a byte stream (protocols.md §1.4): bytes →
//! [`Manager`](crate::protocol::poct1::Manager) → commit → reply. The ACK.R01 of an observation
//! message is written only after [`Store::commit`](crate::store::Store::commit) returned: `AA`
//! when it is durable (new or already stored), `AE` when the commit failed (the device keeps the
//! result and sends it again). A half document is dropped after `receive_timeout` of silence.

use super::SourceCtx;
use crate::protocol::poct1::{Event, Manager, ManagerOptions, ObsMessage, Reply, Stamp};
use crate::store::{NewMessage, ProtocolKind};
use std::collections::VecDeque;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Counters of one conversation, returned when it ends (tests and logs read them).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Poct1Stats {
    pub stored: usize,
    pub duplicates: usize,
    pub commit_failures: usize,
    pub replies: usize,
    pub rejected: usize,
    pub dropped_partials: usize,
    pub escapes: usize,
}

/// Run the manager side until the device closes the stream or an I/O error ends it.
pub async fn converse<S>(io: &mut S, ctx: &SourceCtx) -> std::io::Result<Poct1Stats>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut manager = Manager::new(ManagerOptions {
        max_message_bytes: ctx.limits.max_message_bytes,
        receive_timeout: ctx.receive_timeout(),
        encoding: ctx.encoding(),
        ..ManagerOptions::default()
    });
    let mut conv = Conversation {
        ctx,
        stats: Poct1Stats::default(),
        next_control_id: 1,
    };
    let mut buf = vec![0u8; 8192];
    loop {
        let deadline = manager.deadline().map(Instant::from_std);
        let events = tokio::select! {
            read = io.read(&mut buf) => {
                let n = read?;
                if n == 0 {
                    return Ok(conv.stats);
                }
                manager.feed(&buf[..n], Instant::now().into_std())
            }
            _ = sleep_until(deadline) => manager.poll_timeout(Instant::now().into_std()),
        };
        conv.handle(events, &mut manager, io).await?;
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

struct Conversation<'a> {
    ctx: &'a SourceCtx,
    stats: Poct1Stats,
    next_control_id: u64,
}

impl Conversation<'_> {
    async fn handle<S>(
        &mut self,
        events: Vec<Event>,
        manager: &mut Manager,
        io: &mut S,
    ) -> std::io::Result<()>
    where
        S: AsyncWrite + Unpin,
    {
        let id = &self.ctx.id;
        let mut queue: VecDeque<Event> = events.into();
        while let Some(ev) = queue.pop_front() {
            match ev {
                Event::Reply(reply) => self.send(&reply, io).await?,
                Event::Commit(msg) => {
                    let stored = self.commit(msg).await;
                    // The ACK of this commit comes before anything queued after it.
                    for e in manager.confirm(stored).into_iter().rev() {
                        queue.push_front(e);
                    }
                }
                Event::Hello(dev) => debug!(
                    source = %id,
                    vendor = dev.device.vendor.as_deref().unwrap_or("?"),
                    model = dev.device.model.as_deref().unwrap_or("?"),
                    serial = dev.device.serial.as_deref().unwrap_or("?"),
                    max_message_bytes = manager.max_message_bytes(),
                    "device said hello"
                ),
                Event::DeviceAck(ack) => debug!(source = %id, ?ack, "device acknowledged"),
                Event::Rejected(e) => {
                    self.stats.rejected += 1;
                    warn!(source = %id, error = %e, "document rejected, nothing stored");
                }
                Event::Skipped(e) => warn!(source = %id, error = %e, "bytes skipped"),
                Event::Dropped { reason, bytes } => {
                    self.stats.dropped_partials += 1;
                    warn!(source = %id, ?reason, bytes, "partial message dropped, nothing stored");
                }
                Event::Escape { dropped } => {
                    self.stats.escapes += 1;
                    warn!(source = %id, dropped, "device sent ESC (abort)");
                }
                Event::End => debug!(source = %id, "device ended the conversation (END.R01)"),
            }
        }
        Ok(())
    }

    async fn send<S>(&mut self, reply: &Reply, io: &mut S) -> std::io::Result<()>
    where
        S: AsyncWrite + Unpin,
    {
        let stamp = Stamp {
            control_id: self.next_control_id.to_string(),
            creation_dttm: now_iso8601(),
        };
        self.next_control_id += 1;
        io.write_all(&reply.to_xml(&stamp)).await?;
        io.flush().await?;
        self.stats.replies += 1;
        Ok(())
    }

    /// Commit one observation message; `true` when it is durable (new or already stored).
    async fn commit(&mut self, msg: ObsMessage) -> bool {
        let id = &self.ctx.id;
        for e in &msg.parse_errors {
            warn!(source = %id, error = %e, "message stored with a parse error");
        }
        let new = NewMessage {
            source: id.clone(),
            protocol: ProtocolKind::Poct1,
            wire: msg.xml.clone(),
            text: msg.xml,
            observations: self.ctx.enriched(msg.observations),
            parse_errors: msg.parse_errors,
        };
        match self.ctx.store.commit(new).await {
            Ok(c) if c.duplicate => {
                self.stats.duplicates += 1;
                info!(source = %id, id = %c.id, "resent message already stored; acknowledged again");
                true
            }
            Ok(_) => {
                self.stats.stored += 1;
                true
            }
            Err(e) => {
                self.stats.commit_failures += 1;
                warn!(source = %id, error = %e, "commit failed; device gets ACK AE and will resend");
                false
            }
        }
    }
}

/// `HDR.creation_dttm` of our replies: UTC with an explicit offset.
fn now_iso8601() -> String {
    let fmt =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]+00:00");
    time::OffsetDateTime::now_utc()
        .format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00+00:00".into())
}
