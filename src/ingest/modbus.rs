//! Modbus polling (protocols.md §1.6): Modbus TCP to a logger's port 502, or Modbus RTU over an
//! RS-485 adapter, through `tokio-modbus`. Each poll reads every configured register (FC1–FC4)
//! with the request timeout; the outcome goes to the pure [`Poller`], and every document it emits
//! is committed through the store like any other message (protocol `modbus`).
//!
//! A transport error or timeout drops the connection (a late answer would otherwise be taken
//! for the next request's) and reconnects with backoff; a Modbus exception keeps it, since the
//! device is there and answering. Documents whose commit failed are kept (up to
//! [`MAX_PENDING`]) and committed with the next poll: an alarm must not be lost to a busy disk.

use super::{Backoff, SourceCtx};
use crate::config::Transport;
use crate::config::modbus::ModbusSettings;
use crate::protocol::modbus::{
    Document, Event, Fault, Poller, PollerSettings, RegisterKind, RegisterSpec, Words, decode,
};
use crate::store::{NewMessage, ProtocolKind};
use std::collections::VecDeque;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::time::MissedTickBehavior;
use tokio_modbus::client::{Client, Context, Reader};
use tokio_modbus::slave::Slave;
use tracing::{debug, info, warn};

/// Documents waiting for a commit that failed; beyond this the oldest are dropped (and logged).
pub const MAX_PENDING: usize = 1024;

/// Poll the device for ever: connect, poll every `poll_interval`, reconnect after failures.
pub async fn run(transport: Transport, settings: ModbusSettings, ctx: SourceCtx) {
    let (min, max) = match &transport {
        Transport::TcpClient {
            backoff_min,
            backoff_max,
            ..
        } => (*backoff_min, *backoff_max),
        Transport::Serial(s) => (s.reopen_after, s.reopen_after * 8),
        Transport::TcpServer { .. } | Transport::Mqtt(_) | Transport::Folder(_) => {
            // Config validation refuses this; a source that cannot poll only logs.
            warn!(source = %ctx.id, "modbus needs transport tcp-client or serial; source not started");
            return;
        }
    };
    let mut backoff = Backoff::new(min, max);
    let mut poller = Poller::new(
        settings.registers.clone(),
        PollerSettings {
            unit_id: settings.unit_id,
            summary_interval: settings.summary_interval,
            fault_after: settings.fault_after,
        },
    );
    let mut pending = VecDeque::new();
    loop {
        match connect(&transport, &settings).await {
            Ok(mut client) => {
                info!(source = %ctx.id, unit_id = settings.unit_id, "modbus device connected");
                let mut ticker = tokio::time::interval(settings.poll_interval);
                ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    let (docs, reconnect) = match poll(&mut client, &settings).await {
                        Ok(words) => {
                            backoff.reset();
                            (poller.answered(now(), &words), false)
                        }
                        Err((fault, reconnect)) => {
                            debug!(source = %ctx.id, error = %fault, "poll failed");
                            (poller.failed(now(), fault), reconnect)
                        }
                    };
                    commit(&ctx, &mut pending, docs).await;
                    if reconnect {
                        break;
                    }
                }
                let _ = tokio::time::timeout(settings.timeout, client.disconnect()).await;
            }
            Err(why) => {
                debug!(source = %ctx.id, error = %why, "cannot reach modbus device");
                let docs = poller.failed(now(), Fault::Link(why));
                commit(&ctx, &mut pending, docs).await;
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

async fn connect(transport: &Transport, settings: &ModbusSettings) -> Result<Context, String> {
    let slave = Slave(settings.unit_id);
    match transport {
        Transport::TcpClient { connect, .. } => {
            let dial = tokio_modbus::client::tcp::connect_slave(*connect, slave);
            match tokio::time::timeout(settings.timeout, dial).await {
                Ok(Ok(ctx)) => Ok(ctx),
                Ok(Err(e)) => Err(format!("cannot connect to {connect}: {e}")),
                Err(_) => Err(format!("cannot connect to {connect}: timed out")),
            }
        }
        Transport::Serial(s) => {
            // An RS-485 adapter named by USB id or by-id pattern is looked up at every open.
            let dirs = super::usb_serial::DeviceDirs::from_env();
            let (path, _) = super::usb_serial::locate(s, &dirs)
                .map_err(|why| format!("RS-485 adapter not present: {why}"))?;
            let path = path.display().to_string();
            let port = tokio_serial::SerialStream::open(&super::serial::builder(s, &path))
                .map_err(|e| format!("cannot open {path}: {e}"))?;
            Ok(tokio_modbus::client::rtu::attach_slave(port, slave))
        }
        Transport::TcpServer { .. } | Transport::Mqtt(_) | Transport::Folder(_) => {
            Err("modbus polls over tcp-client or serial only".into())
        }
    }
}

/// Read every register once. A failure says whether the link must be reopened.
async fn poll(client: &mut Context, s: &ModbusSettings) -> Result<Vec<Words>, (Fault, bool)> {
    let mut out = Vec::with_capacity(s.registers.len());
    for spec in &s.registers {
        out.push(read(client, spec, s.timeout).await?);
    }
    Ok(out)
}

async fn read(
    client: &mut Context,
    spec: &RegisterSpec,
    timeout: Duration,
) -> Result<Words, (Fault, bool)> {
    let (addr, n) = (spec.address, spec.count());
    let bits = |r: tokio_modbus::Result<Vec<bool>>| {
        r.map(|r| r.map(|b| b.into_iter().take(1).map(u16::from).collect()))
    };
    let call = async {
        match spec.kind {
            RegisterKind::Holding => client.read_holding_registers(addr, n).await,
            RegisterKind::Input => client.read_input_registers(addr, n).await,
            RegisterKind::Coil => bits(client.read_coils(addr, n).await),
            RegisterKind::Discrete => bits(client.read_discrete_inputs(addr, n).await),
        }
    };
    let place = spec.place();
    match tokio::time::timeout(timeout, call).await {
        Err(_) => Err((Fault::Timeout { place }, true)),
        Ok(Err(e)) => Err((Fault::Link(format!("{e} (reading {place})")), true)),
        Ok(Ok(Err(code))) => Err((
            Fault::Exception {
                code: u8::from(code),
                place,
            },
            false,
        )),
        Ok(Ok(Ok(words))) => Ok(words),
    }
}

/// Commit what is pending, oldest first; stop at the first failure (kept for the next poll).
async fn commit(ctx: &SourceCtx, pending: &mut VecDeque<Document>, docs: Vec<Document>) {
    for doc in &docs {
        log_event(ctx, doc);
    }
    pending.extend(docs);
    while pending.len() > MAX_PENDING {
        pending.pop_front();
        warn!(source = %ctx.id, "modbus document dropped: store unavailable and {MAX_PENDING} waiting");
    }
    while let Some(doc) = pending.front() {
        let bytes = doc.to_bytes();
        let (observations, parse_errors) = match decode(&bytes) {
            Ok(obs) => (obs, Vec::new()),
            Err(e) => (Vec::new(), vec![e.to_string()]),
        };
        let new = NewMessage {
            source: ctx.id.clone(),
            protocol: ProtocolKind::Modbus,
            wire: bytes.clone(),
            text: bytes,
            observations,
            parse_errors,
        };
        match ctx.store.commit(new).await {
            Ok(c) => {
                debug!(source = %ctx.id, id = %c.id, "modbus document stored");
                pending.pop_front();
            }
            Err(e) => {
                warn!(source = %ctx.id, error = %e, waiting = pending.len(), "commit failed; retried with the next poll");
                return;
            }
        }
    }
}

fn log_event(ctx: &SourceCtx, doc: &Document) {
    let id = &ctx.id;
    match &doc.event {
        Event::Summary { registers, .. } => {
            debug!(source = %id, registers = registers.len(), "modbus summary")
        }
        Event::Alarm {
            register, value, ..
        } => warn!(source = %id, register = %register.name, value, "ALARM: value out of range"),
        Event::AlarmClear {
            register, value, ..
        } => info!(source = %id, register = %register.name, value, "alarm cleared"),
        Event::Fault { error, .. } => warn!(source = %id, %error, "modbus device fault"),
        Event::Recovered { since, .. } => {
            info!(source = %id, %since, "modbus device answering again")
        }
    }
}
