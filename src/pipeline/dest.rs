//! The deliver stage of one `[[destinations]]` entry (issue 20): its own outbox lane, backoff,
//! link state and pause, so a FHIR server or an EMR being down never holds back DHIS2 or another
//! destination. Rows are sent one at a time, first in first out, with the request the Tempr
//! rendered ([`DestRequest`]); the answer is classified by [`crate::sync::dest`] and committed
//! before the next row. A row stays `pending` until then, so a crash re-sends it: FHIR Temprs
//! make that harmless with `if_none_exist` (conditional create); the destination's docs say
//! which other systems accept a resend (docs/config.md, `[[destinations]]`).
//!
//! A delivered row renders its chain's next step with the answer in `ctx.previous` (for FHIR
//! `previous.id` is the created resource's id), which may go to any destination, DHIS2 included.
//!
//! State in `sync_state`: `link:<id>` (`up` / `down: <why>`) and `paused:<id>` (set on 401/403,
//! TLS failures and redirects; cleared by `pocketgate sync --resume` or the web page).

use super::{RenderCtx, backoff};
use crate::config::destinations::Destination;
use crate::store::outbox::{self, DestRow};
use crate::store::{Reader, Store, StoreError};
use crate::sync::dest::{Delivery, DestClient, DestOutcome};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;
use tracing::{debug, error, info, warn};

/// `sync_state` key of a destination's pause reason.
pub fn paused_key(id: &str) -> String {
    format!("paused:{id}")
}

/// `sync_state` key of a destination's link state.
pub fn link_key(id: &str) -> String {
    format!("link:{id}")
}

pub struct DestLane {
    store: Store,
    db: PathBuf,
    client: DestClient,
    dest: Destination,
    rc: RenderCtx,
    reader: Option<Reader>,
    /// When old exchanges were last pruned.
    pruned_at: Option<std::time::Instant>,
}

impl DestLane {
    pub fn new(
        store: Store,
        db: PathBuf,
        client: DestClient,
        dest: Destination,
        rc: RenderCtx,
    ) -> Self {
        DestLane {
            store,
            db,
            client,
            dest,
            rc,
            reader: None,
            pruned_at: None,
        }
    }

    fn id(&self) -> &str {
        &self.dest.id.0
    }

    /// A read on the lane's own connection (reopened after an error).
    fn read<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let reader = match self.reader.take() {
            Some(r) => r,
            None => Reader::open(&self.db)?,
        };
        let result = f(reader.conn());
        if result.is_ok() {
            self.reader = Some(reader);
        }
        result.map_err(StoreError::Query)
    }

    /// Deliver for ever: the lane's head when it is due, else sleep until it is or something new
    /// is stored.
    pub async fn run(mut self) {
        let mut changes = self.store.subscribe();
        info!(destination = %self.id(), kind = self.dest.kind().name(), "destination lane started");
        // The pause reason last logged: said once, not on every commit while paused.
        let mut told: Option<String> = None;
        loop {
            let paused_key = paused_key(self.id());
            let paused = self.read(|c| outbox::get_state(c, &paused_key));
            if let Ok(Some(why)) = paused {
                if told.as_deref() != Some(why.as_str()) {
                    warn!(destination = %self.id(), reason = %why, "destination paused; fix the cause, then resume it on the dashboard or run `pocketgate sync --resume`");
                    told = Some(why);
                }
                let _ = tokio::time::timeout(Duration::from_secs(10), changes.changed()).await;
                continue;
            }
            if told.take().is_some() {
                info!(destination = %self.id(), "destination resumed");
            }
            match self.pass().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    warn!(destination = %self.id(), error = %e, "destination pass failed; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
            let id = self.id().to_owned();
            let wait = self
                .read(|c| outbox::next_due_in_ms_for(c, &id))
                .ok()
                .flatten()
                .map(|ms| Duration::from_millis(ms.max(20) as u64))
                .unwrap_or(Duration::from_secs(30))
                .min(Duration::from_secs(30));
            let _ = tokio::time::timeout(wait, changes.changed()).await;
        }
    }

    /// Send the lane's head if it is due and commit what the destination said. Returns whether a
    /// row was handled.
    pub async fn pass(&mut self) -> Result<bool, StoreError> {
        let id = self.id().to_owned();
        let Some(row) = self.read(|c| outbox::due_dest(c, &id))? else {
            return Ok(false);
        };
        let d = self.client.send(&row.request).await;
        debug!(destination = %id, row = row.id, outcome = d.outcome.kind(), status = ?d.status, took = ?d.took, "sent");
        let response = d.response.to_string();
        if self.dest.store_exchanges {
            self.keep_exchange(&row, &d, &response).await?;
        }
        match d.outcome {
            DestOutcome::Delivered => {
                let next = if !self.rc.has_next(&row.tempr) {
                    None
                } else {
                    self.read(|c| outbox::message(c, row.message_id))?
                        .and_then(|m| {
                            self.rc.render_next(
                                &m,
                                &row.tempr,
                                row.step,
                                serde_json::to_value(&row.request).unwrap_or(Value::Null),
                                &d.response,
                            )
                        })
                };
                self.store
                    .write_derived(move |tx| {
                        outbox::mark_delivered(tx, row.id, &response)?;
                        match next {
                            Some(Ok(req)) => {
                                outbox::insert_request(tx, row.message_id, &req)?;
                            }
                            Some(Err(e)) => {
                                outbox::mark_chain_failed(tx, row.message_id, &e)?;
                            }
                            None => outbox::settle_message(tx, row.message_id)?,
                        }
                        outbox::set_state(tx, &link_key(&id), Some("up"))
                    })
                    .await?;
            }
            DestOutcome::Rejected { why } => {
                warn!(destination = %id, row = row.id, reason = %why, "destination rejected the request");
                let why = format!("{id}: {why}");
                self.store
                    .write_derived(move |tx| {
                        outbox::mark_rejected(tx, row.id, &why, &response)?;
                        outbox::settle_message(tx, row.message_id)
                    })
                    .await?;
            }
            DestOutcome::Retry { why, after } => {
                let delay = after.unwrap_or_else(|| self.backoff(&row));
                info!(destination = %id, row = row.id, reason = %why, retry_in = ?delay, "destination not reachable or busy; will retry");
                let ms = delay.as_millis() as i64;
                let why = format!("{id}: {why}");
                self.store
                    .write_derived(move |tx| {
                        outbox::mark_retry(tx, row.id, &why, ms)?;
                        outbox::set_state(tx, &link_key(&id), Some(&format!("down: {why}")))
                    })
                    .await?;
            }
            DestOutcome::Pause { why } => {
                error!(destination = %id, reason = %why, "destination paused");
                self.store
                    .write(move |tx| outbox::set_state(tx, &paused_key(&id), Some(&why)))
                    .await?;
            }
        }
        Ok(true)
    }

    /// `store_exchanges = true`: keep what was sent and answered; exchanges older than
    /// `keep_exchanges` are deleted at most once a minute, a bounded batch at a time.
    async fn keep_exchange(
        &mut self,
        row: &DestRow,
        d: &Delivery,
        response: &str,
    ) -> Result<(), StoreError> {
        let (id, request, response) = (
            self.id().to_owned(),
            row.request.clone(),
            response.to_owned(),
        );
        let (outbox_id, outcome, status) = (row.id, d.outcome.kind(), d.status);
        let took_ms = d.took.as_millis() as i64;
        let prune = self
            .pruned_at
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(60));
        if prune {
            self.pruned_at = Some(std::time::Instant::now());
        }
        let cutoff = crate::store::retention::cutoff(
            time::OffsetDateTime::now_utc(),
            self.dest.keep_exchanges,
        );
        self.store
            .write_derived(move |tx| {
                outbox::insert_exchange(
                    tx,
                    &outbox::Exchange {
                        destination: &id,
                        outbox_id,
                        request: &request,
                        outcome,
                        status,
                        response: &response,
                        took_ms,
                    },
                )?;
                if prune {
                    outbox::prune_exchanges(tx, &id, &cutoff, 1_000)?;
                }
                Ok(())
            })
            .await
    }

    fn backoff(&self, row: &DestRow) -> Duration {
        backoff(
            self.dest.retry_min,
            self.dest.retry_max,
            row.attempts,
            row.id as u64,
        )
    }
}
