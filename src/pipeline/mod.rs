//! The stages after the durable commit: render (stored message → Tempr → outbox row) and
//! deliver (outbox rows → DHIS2 → outcome). Each stage reads the database and is woken by the
//! store's change notification; nothing here holds the only copy of anything: a row is
//! `pending` until DHIS2's answer has been classified and committed, so a crash re-sends it with
//! the same deterministic UIDs (an update under CREATE_AND_UPDATE, never a duplicate).

pub mod dest;

use crate::config::Dhis2Settings;
use crate::record::{Dhis2Request, Endpoint, Payload, RecordId};
use crate::store::outbox::{self, NewRequest, OutboxRow, Rendered, ToRender};
use crate::store::{Reader, Store, StoreError};
use crate::sync::classify::{ObjectError, Outcome};
use crate::sync::client::{Dhis2Client, LinkState, ResponseBody, SendOptions};
use crate::sync::metadata::{self, MetadataCache};
use crate::tempr::{self, TemprSet};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tracing::{debug, error, info, warn};

/// Messages rendered per pass.
const RENDER_BATCH: usize = 100;
/// `sync_state` key of the cached DHIS2 metadata (JSON).
const METADATA_KEY: &str = "metadata";
/// How often the metadata cache is refreshed while the link is up.
const METADATA_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// What every Tempr run gets besides the record (`ctx`).
#[derive(Clone)]
pub struct RenderCtx {
    pub temprs: Arc<TemprSet>,
    pub limits: tempr::Limits,
    pub gateway: String,
    pub org_unit: Option<String>,
    /// DHIS2 metadata last fetched (kept in the store, so it works offline): each rendered
    /// request is checked against it before it is queued.
    pub metadata: Arc<RwLock<Option<MetadataCache>>>,
}

impl RenderCtx {
    /// `previous`: the last chain step's response and request (either system's, as JSON).
    pub fn ctx(&self, previous: Option<(&Value, Value)>) -> Value {
        let (response, request) = match previous {
            Some((resp, req)) => (resp.clone(), req),
            None => (Value::Null, Value::Null),
        };
        json!({
            "gateway": { "name": self.gateway },
            "org_unit": self.org_unit,
            "previous": response,
            "previous_request": request,
        })
    }

    /// Render every matching chain head for one stored message (pure but for script threads).
    pub fn render(&self, m: &ToRender) -> Rendered {
        let record = tempr::record_view(m.id.0, &m.source, &m.received_at, &m.observations);
        let heads = self.temprs.matching(&record);
        if heads.is_empty() {
            return Rendered::Unmatched;
        }
        let ctx = self.ctx(None);
        let mut out = Vec::new();
        for t in heads {
            match tempr::render(t, &record, &ctx, &self.limits) {
                Ok(request) => {
                    if let Payload::Dhis2(r) = &request
                        && let Err(e) = self.check(r)
                    {
                        return Rendered::Failed(format!("Tempr {} v{}: {e}", t.name, t.version));
                    }
                    out.push(NewRequest {
                        tempr: t.name.clone(),
                        tempr_version: t.version,
                        step: 0,
                        request,
                    })
                }
                Err(e) => return Rendered::Failed(format!("Tempr {} v{}: {e}", t.name, t.version)),
            }
        }
        Rendered::Requests(out)
    }

    /// Local validation against the cached metadata (dhis2.md §4–§5): what DHIS2 would reject
    /// is reported now, offline, naming the data element and the value.
    pub fn check(&self, request: &Dhis2Request) -> Result<(), String> {
        let guard = self.metadata.read().unwrap_or_else(|e| e.into_inner());
        let Some(md) = guard.as_ref() else {
            return Ok(());
        };
        let errors = metadata::validate(request, md);
        if errors.is_empty() {
            Ok(())
        } else {
            let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            Err(format!("DHIS2 would reject this: {}", lines.join("; ")))
        }
    }

    /// Load the metadata cache kept in the store (if any).
    pub fn load_metadata(&self, db: &std::path::Path) {
        let cached = Reader::open(db)
            .ok()
            .and_then(|r| outbox::get_state(r.conn(), METADATA_KEY).ok().flatten())
            .and_then(|json| MetadataCache::from_json(json.as_bytes()).ok());
        if let Some(md) = cached {
            *self.metadata.write().unwrap_or_else(|e| e.into_inner()) = Some(md);
        }
    }

    /// Whether `tempr` names a next step: only then does a delivered row need its message read
    /// back (the record and the request as JSON) for [`RenderCtx::render_next`]; before, every
    /// delivered row was (peer bench: ~6 % of the gateway's CPU for single-step Temprs).
    pub fn has_next(&self, tempr: &str) -> bool {
        self.temprs.get(tempr).is_some_and(|t| t.next.is_some())
    }

    /// Render the next step of a chain with the previous step's response: `tempr` at `step`
    /// sent `request` (JSON) and got `response`.
    fn render_next(
        &self,
        m: &ToRender,
        tempr: &str,
        step: u32,
        request: Value,
        response: &Value,
    ) -> Option<Result<NewRequest, String>> {
        let current = self.temprs.get(tempr)?;
        let next_name = current.next.as_ref()?;
        let Some(next) = self.temprs.get(next_name) else {
            return Some(Err(format!(
                "Tempr {tempr} names next {next_name}, which does not exist"
            )));
        };
        let record = tempr::record_view(m.id.0, &m.source, &m.received_at, &m.observations);
        // A step's own [match] still applies: a record it does not match ends the chain here.
        if !next.enabled || !next.matcher.matches(&record) {
            return None;
        }
        let ctx = self.ctx(Some((response, request)));
        Some(
            tempr::render(next, &record, &ctx, &self.limits)
                .map(|request| NewRequest {
                    tempr: next.name.clone(),
                    tempr_version: next.version,
                    step: step + 1,
                    request,
                })
                .map_err(|e| format!("Tempr {} v{}: {e}", next.name, next.version)),
        )
    }
}

/// Render stored messages for ever (woken by new commits).
pub async fn render_loop(store: Store, db: PathBuf, rc: RenderCtx) {
    let mut changes = store.subscribe();
    let mut busy = false;
    loop {
        match render_pass(&store, &db, &rc).await {
            Ok(0) => {
                let quiet = if busy { SETTLE_AFTER } else { IDLE_WAIT };
                let woken = tokio::time::timeout(quiet, changes.changed()).await.is_ok();
                if !woken && std::mem::take(&mut busy) {
                    settle_memory(&store, None).await;
                }
            }
            Ok(n) => {
                busy = true;
                debug!(rendered = n, "render pass");
                if n < RENDER_BATCH {
                    // Less than a full batch was waiting: let the next commits gather (see COALESCE).
                    tokio::time::sleep(COALESCE).await;
                }
            }
            Err(e) => {
                warn!(error = %e, "render pass failed; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// A stage that has had nothing to do for this long after a burst gives its memory back
/// ([`settle_memory`]). Settling at every catch-up instead (several times a second under a
/// steady flow) dropped the page caches and reopened connections the next message needed.
const SETTLE_AFTER: Duration = Duration::from_secs(2);
/// After a pass that found less than a full batch, a stage waits this long before the next, so
/// that under a steady flow each render or deliver transaction (and each DHIS2 POST) carries what
/// arrived meanwhile instead of the one or two messages of the last commit. Measured with
/// `cargo bench --bench peer` (benches/results): without it, the render and deliver stages ran a
/// transaction for every ingest commit (~6 messages) and took half the CPU of the box. It adds at
/// most this much to the time a result takes to reach DHIS2; no device waits on it (the ACK
/// follows the ingest commit).
const COALESCE: Duration = Duration::from_millis(20);
/// How long an idle render stage sleeps when no commit wakes it.
const IDLE_WAIT: Duration = Duration::from_secs(5);

/// After a burst of work (a backlog rendered or delivered): give SQLite's page caches and glibc's
/// freed arenas back, so the box returns near its idle size instead of keeping its peak. The
/// deliver stage's reader is closed (it reopens on the next query).
async fn settle_memory(store: &Store, reader: Option<Reader>) {
    if let Some(r) = &reader {
        let _ = r.release_memory();
    }
    drop(reader);
    let _ = store.release_memory().await;
    crate::store::return_freed_heap();
    debug!("idle after a burst: caches released");
}

/// One pass: render up to a batch of `received` messages. Returns how many were handled.
pub async fn render_pass(
    store: &Store,
    db: &std::path::Path,
    rc: &RenderCtx,
) -> Result<usize, StoreError> {
    let reader = Reader::open(db)?;
    let batch = outbox::to_render(reader.conn(), RENDER_BATCH)?;
    drop(reader);
    if batch.is_empty() {
        return Ok(0);
    }
    let rc2 = rc.clone();
    // Script Temprs may run up to their wall-clock budget: keep them off the async threads.
    let results = tokio::task::spawn_blocking(move || {
        batch
            .iter()
            .map(|m| (m.id, rc2.render(m)))
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|_| StoreError::WriterGone)?;
    let n = results.len();
    for (id, r) in &results {
        if let Rendered::Failed(e) = r {
            warn!(message = %id, error = %e, "render failed");
        }
    }
    store
        .write_derived(move |tx| {
            for (id, r) in &results {
                outbox::record_render(tx, *id, r)?;
            }
            Ok(())
        })
        .await?;
    Ok(n)
}

/// Everything the deliver stage needs.
pub struct Deliver {
    pub store: Store,
    pub db: PathBuf,
    pub client: Dhis2Client,
    pub settings: Dhis2Settings,
    pub rc: RenderCtx,
    /// The stage's read connection, opened once (reopened after an error) instead of per query.
    reader: Mutex<Option<Reader>>,
}

/// What one deliver pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassStats {
    /// Rows were left for the next pass (the batch was full, or the next rows go elsewhere).
    pub more_waiting: bool,
    pub requests: usize,
    pub delivered: usize,
    pub rejected: usize,
    pub retried: usize,
    /// Sync is paused (401/403/302/TLS); the reason is in `sync_state.paused`.
    pub paused: bool,
}

impl Deliver {
    pub fn new(
        store: Store,
        db: PathBuf,
        client: Dhis2Client,
        settings: Dhis2Settings,
        rc: RenderCtx,
    ) -> Self {
        Deliver {
            store,
            db,
            client,
            settings,
            rc,
            reader: Mutex::new(None),
        }
    }

    /// Run a read query on the stage's own read connection.
    fn read<T>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut guard = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let reader = match guard.take() {
            Some(r) => r,
            None => Reader::open(&self.db)?,
        };
        let result = f(reader.conn());
        if result.is_ok() {
            *guard = Some(reader);
        }
        result.map_err(StoreError::Query)
    }

    /// Deliver for ever: send due rows, sleep until the next is due or something new is stored.
    /// While the link is down, a cheap probe (`/api/ping`, `/api/system/ping`) runs with backoff
    /// instead of re-sending payloads; sync resumes by itself when the probe answers.
    pub async fn run(self) {
        let mut changes = self.store.subscribe();
        let mut metadata_at: Option<std::time::Instant> = None;
        let mut probe_failures = 0u32;
        let mut busy = false;
        let mut last_work = std::time::Instant::now();
        loop {
            if let Some(why) = self.paused() {
                warn!(reason = %why, "sync paused; fix the cause, then run `pocketgate sync --resume`");
                let _ = tokio::time::timeout(Duration::from_secs(10), changes.changed()).await;
                continue;
            }
            if self.link_down() {
                match self.client.ping().await {
                    Ok(LinkState::Up { .. }) => {
                        info!("DHIS2 reachable again; resuming sync");
                        probe_failures = 0;
                        let _ = self
                            .store
                            .write(|tx| {
                                outbox::set_state(tx, "link", Some("up"))?;
                                // The backlog is due now, not at the end of its last backoff.
                                tx.execute("UPDATE outbox SET next_attempt_ms = 0 WHERE status = 'pending'", [])
                                    .map(|_| ())
                            })
                            .await;
                    }
                    Ok(LinkState::Unauthorized { why }) => {
                        let _ = self
                            .store
                            .write(move |tx| outbox::set_state(tx, "paused", Some(&why)))
                            .await;
                        continue;
                    }
                    Ok(LinkState::Degraded { .. }) | Err(_) => {
                        probe_failures += 1;
                        let wait = backoff(
                            self.settings.retry_min,
                            self.settings.retry_max,
                            probe_failures,
                            1,
                        );
                        debug!(retry_in = ?wait, "DHIS2 still unreachable");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                }
            }
            if metadata_at.is_none_or(|t| t.elapsed() > METADATA_MAX_AGE) {
                match self.refresh_metadata().await {
                    Ok(()) => metadata_at = Some(std::time::Instant::now()),
                    Err(e) => {
                        warn!(error = %e, "metadata refresh failed; using the cached copy");
                        metadata_at = Some(
                            std::time::Instant::now() - METADATA_MAX_AGE + Duration::from_secs(300),
                        );
                    }
                }
            }
            match self.pass().await {
                Ok(stats) if stats.requests > 0 => {
                    busy = true;
                    last_work = std::time::Instant::now();
                    debug!(?stats, "deliver pass");
                    if !stats.more_waiting {
                        tokio::time::sleep(COALESCE).await;
                    }
                    continue;
                }
                Ok(_) if busy && last_work.elapsed() >= SETTLE_AFTER => {
                    busy = false;
                    let reader = self.reader.lock().unwrap_or_else(|e| e.into_inner()).take();
                    settle_memory(&self.store, reader).await;
                }
                Ok(_) => {}
                Err(e) => {
                    // A store error (disk full): wait like the render stage does instead of
                    // retrying at once (it logged ~600 failures a second in the disk-full test).
                    warn!(error = %e, "deliver pass failed; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
            let wait = self
                .read(outbox::next_due_in_ms)
                .ok()
                .flatten()
                .map(|ms| Duration::from_millis(ms.max(50) as u64))
                .unwrap_or(Duration::from_secs(30))
                .min(Duration::from_secs(30));
            // Still settling: come back when the quiet period ends, even with nothing due.
            let wait = if busy {
                wait.min(
                    SETTLE_AFTER.saturating_sub(last_work.elapsed()) + Duration::from_millis(10),
                )
            } else {
                wait
            };
            let _ = tokio::time::timeout(wait, changes.changed()).await;
        }
    }

    /// False only when the server is known to be 2.42 or later.
    fn server_has_legacy_events(&self) -> bool {
        self.read(|c| outbox::get_state(c, "server_version"))
            .ok()
            .flatten()
            .and_then(|v| v.parse::<crate::sync::client::Dhis2Version>().ok())
            .is_none_or(|v| v.has_legacy_events())
    }

    fn link_down(&self) -> bool {
        self.read(|c| outbox::get_state(c, "link"))
            .ok()
            .flatten()
            .is_some_and(|l| l.starts_with("down"))
    }

    /// Fetch the server version (dhis2.md §0.1 decides which APIs exist) and the programs, data
    /// sets, org units and tracked entity types the Temprs may name (dhis2.md §5); keep both in the
    /// store for offline use.
    pub async fn refresh_metadata(&self) -> Result<(), String> {
        let info = self.client.system_info().await.map_err(|e| e.to_string())?;
        let version = info.version.to_string();
        info!(version = %version, "DHIS2 server version");
        self.store
            .write(move |tx| outbox::set_state(tx, "server_version", Some(&version)))
            .await
            .map_err(|e| e.to_string())?;
        let mut md = MetadataCache::default();
        for path in [
            metadata::PROGRAMS_PATH,
            metadata::DATA_SETS_PATH,
            metadata::ORGANISATION_UNITS_PATH,
            metadata::TRACKED_ENTITY_TYPES_PATH,
        ] {
            let v = self
                .client
                .get_json(path)
                .await
                .map_err(|e| e.to_string())?;
            let part =
                serde_json::from_value::<MetadataCache>(v).map_err(|e| format!("{path}: {e}"))?;
            md.merge(part);
        }
        let json = serde_json::to_string(&md).map_err(|e| e.to_string())?;
        self.store
            .write(move |tx| outbox::set_state(tx, METADATA_KEY, Some(&json)))
            .await
            .map_err(|e| e.to_string())?;
        info!(
            programs = md.programs.len(),
            org_units = md.organisation_units.len(),
            "DHIS2 metadata refreshed"
        );
        *self.rc.metadata.write().unwrap_or_else(|e| e.into_inner()) = Some(md);
        Ok(())
    }

    fn paused(&self) -> Option<String> {
        self.read(|c| outbox::get_state(c, "paused")).ok().flatten()
    }

    /// Send one batch of due rows and record the outcome.
    pub async fn pass(&self) -> Result<PassStats, StoreError> {
        let due = self.read(|c| outbox::due(c, self.max_rows()))?;
        let Some(first) = due.first() else {
            return Ok(PassStats::default());
        };
        let endpoint = first.request.endpoint;
        let limit = self.limit_for(endpoint);
        let waiting = due.len();
        let batch: Vec<OutboxRow> = due
            .into_iter()
            .take_while(|r| r.request.endpoint == endpoint)
            .take(limit)
            .collect();
        let mut stats = PassStats {
            more_waiting: batch.len() >= limit || batch.len() < waiting,
            ..PassStats::default()
        };
        self.send_rows(batch, &mut stats).await?;
        Ok(stats)
    }

    fn max_rows(&self) -> usize {
        self.settings
            .batch_events
            .max(self.settings.batch_tracked_entities)
            .max(1)
    }

    fn limit_for(&self, endpoint: Endpoint) -> usize {
        match endpoint {
            Endpoint::Tracker => self.settings.batch_tracked_entities.max(1),
            Endpoint::Events => self.settings.batch_events.max(1),
            Endpoint::DataValueSets => self.settings.batch_events.max(1),
            Endpoint::Get => 1,
        }
    }

    /// Send `rows` as one request; on a whole-batch rejection or a 413, send them one by one so a
    /// single bad record cannot hold back the others.
    async fn send_rows(
        &self,
        rows: Vec<OutboxRow>,
        stats: &mut PassStats,
    ) -> Result<(), StoreError> {
        if rows[0].request.endpoint == Endpoint::Events && !self.server_has_legacy_events() {
            // DHIS2 2.42 removed /api/events (dhis2.md §0.1): say so instead of a bare 404.
            let errors = vec![ObjectError {
                code: "LEGACY_EVENTS_REMOVED".into(),
                uid: None,
                object_type: None,
                message: "this DHIS2 (2.42+) has no /api/events; change the Tempr to endpoint = \"tracker\""
                    .into(),
            }];
            return self
                .record(rows, Outcome::Rejected(errors), Value::Null, false, stats)
                .await;
        }
        let request = merge(&rows);
        stats.requests += 1;
        let opts = SendOptions {
            async_mode: false,
            atomic_object: true,
        };
        let (outcome, body, unreachable) = match self.client.send(&request, &opts).await {
            Ok((outcome, meta)) => (outcome, body_json(meta.body), false),
            Err(e) => (e.outcome(), json!({ "error": e.to_string() }), true),
        };
        let isolate = rows.len() > 1
            && matches!(
                outcome,
                Outcome::Rejected(_) | Outcome::Retry { split: true, .. }
            );
        if isolate {
            debug!(
                rows = rows.len(),
                "batch refused as a whole; sending rows one by one"
            );
            for row in rows {
                Box::pin(self.send_rows(vec![row], stats)).await?;
            }
            return Ok(());
        }
        self.record(rows, outcome, body, unreachable, stats).await
    }

    /// Record an outcome. `unreachable`: no HTTP answer at all (DNS, connect, timeout) — the link
    /// is marked down and probed cheaply until it answers; an HTTP error status (5xx, 429) only
    /// backs the queue off.
    async fn record(
        &self,
        rows: Vec<OutboxRow>,
        outcome: Outcome,
        body: Value,
        unreachable: bool,
        stats: &mut PassStats,
    ) -> Result<(), StoreError> {
        let response = body.to_string();
        match outcome {
            Outcome::Delivered(_) => self.delivered(rows, &[], &body, &response, stats).await,
            Outcome::Partial { rejected, .. } => {
                self.delivered(rows, &rejected, &body, &response, stats)
                    .await
            }
            Outcome::Rejected(errors) => {
                let why = describe(&errors);
                stats.rejected += rows.len();
                warn!(rows = rows.len(), error = %why, "DHIS2 rejected");
                self.store
                    .write_derived(move |tx| {
                        for r in &rows {
                            outbox::mark_rejected(tx, r.id, &why, &response)?;
                            outbox::settle_message(tx, r.message_id)?;
                        }
                        Ok(())
                    })
                    .await
            }
            Outcome::Retry { why, .. } | Outcome::Job { id: why } => {
                stats.retried += rows.len();
                let attempts = rows.iter().map(|r| r.attempts).max().unwrap_or(0);
                let delay = backoff(
                    self.settings.retry_min,
                    self.settings.retry_max,
                    attempts,
                    rows[0].id as u64,
                );
                info!(rows = rows.len(), reason = %why, retry_in = ?delay, "DHIS2 not reachable or busy; will retry");
                let ms = delay.as_millis() as i64;
                self.store
                    .write_derived(move |tx| {
                        for r in &rows {
                            outbox::mark_retry(tx, r.id, &why, ms)?;
                        }
                        if unreachable {
                            outbox::set_state(tx, "link", Some(&format!("down: {why}")))?;
                        }
                        Ok(())
                    })
                    .await
            }
            Outcome::Pause { why } => {
                stats.paused = true;
                error!(reason = %why, "sync paused");
                self.store
                    .write(move |tx| outbox::set_state(tx, "paused", Some(&why)))
                    .await
            }
        }
    }

    /// Rows whose objects DHIS2 accepted become delivered (and render their chain's next step);
    /// rows with an object in `rejected` become rejected with that error.
    async fn delivered(
        &self,
        rows: Vec<OutboxRow>,
        rejected: &[ObjectError],
        body: &Value,
        response: &str,
        stats: &mut PassStats,
    ) -> Result<(), StoreError> {
        let mut plan = Vec::new();
        for row in rows {
            let uids = object_uids(&row.request.body);
            let errors: Vec<ObjectError> = rejected
                .iter()
                .filter(|e| e.uid.as_ref().is_some_and(|u| uids.contains(u)))
                .cloned()
                .collect();
            if !errors.is_empty() {
                stats.rejected += 1;
                plan.push((row, Err(describe(&errors)), None));
                continue;
            }
            stats.delivered += 1;
            let next = if !self.rc.has_next(&row.tempr) {
                None
            } else {
                match self.read(|c| outbox::message(c, row.message_id))? {
                    Some(m) => self.rc.render_next(
                        &m,
                        &row.tempr,
                        row.step,
                        serde_json::to_value(&row.request).unwrap_or(Value::Null),
                        body,
                    ),
                    None => None,
                }
            };
            plan.push((row, Ok(()), next));
        }
        let response = response.to_owned();
        self.store
            .write_derived(move |tx| {
                let mut touched: Vec<RecordId> = Vec::new();
                for (row, result, next) in &plan {
                    match result {
                        Ok(()) => {
                            outbox::mark_delivered(tx, row.id, &response)?;
                            match next {
                                Some(Ok(req)) => {
                                    outbox::insert_request(tx, row.message_id, req)?;
                                }
                                Some(Err(e)) => {
                                    outbox::mark_chain_failed(tx, row.message_id, e)?;
                                    continue;
                                }
                                None => {}
                            }
                        }
                        Err(why) => outbox::mark_rejected(tx, row.id, why, &response)?,
                    }
                    touched.push(row.message_id);
                }
                for id in touched {
                    outbox::settle_message(tx, id)?;
                }
                outbox::set_state(tx, "link", Some("up"))
            })
            .await
    }
}

/// One request for a batch of rows of the same endpoint: arrays are concatenated in row order.
pub fn merge(rows: &[OutboxRow]) -> Dhis2Request {
    if rows.len() == 1 {
        return rows[0].request.clone();
    }
    let endpoint = rows[0].request.endpoint;
    let keys: &[&str] = match endpoint {
        Endpoint::Tracker => &["trackedEntities", "enrollments", "events", "relationships"],
        Endpoint::Events => &["events"],
        Endpoint::DataValueSets => &["dataValues"],
        Endpoint::Get => &[],
    };
    let mut merged = serde_json::Map::new();
    for row in rows {
        let body = &row.request.body;
        for key in keys {
            let items: Vec<Value> = match (endpoint, body.get(*key)) {
                (_, Some(Value::Array(a))) => a.clone(),
                // A single legacy event without the {"events": […]} wrapper.
                (Endpoint::Events, None) if body.get("event").is_some() => vec![body.clone()],
                _ => Vec::new(),
            };
            let items = if endpoint == Endpoint::DataValueSets {
                // Values inherit the set-level period/orgUnit/attributeOptionCombo they were rendered with.
                items
                    .into_iter()
                    .map(|mut v| {
                        for k in ["period", "orgUnit", "attributeOptionCombo"] {
                            if let (Some(obj), Some(top)) = (v.as_object_mut(), body.get(k)) {
                                obj.entry(k).or_insert_with(|| top.clone());
                            }
                        }
                        v
                    })
                    .collect()
            } else {
                items
            };
            if let Value::Array(a) = merged
                .entry(key.to_string())
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                a.extend(items);
            }
        }
    }
    Dhis2Request {
        endpoint,
        path: None,
        body: Value::Object(merged),
    }
}

/// The object UIDs a request creates or updates (nested payloads included).
pub fn object_uids(body: &Value) -> HashSet<String> {
    let mut out = HashSet::new();
    fn walk(v: &Value, out: &mut HashSet<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    if matches!(
                        k.as_str(),
                        "trackedEntity" | "enrollment" | "event" | "relationship"
                    ) && let Value::String(s) = v
                    {
                        out.insert(s.clone());
                    }
                    walk(v, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(body, &mut out);
    out
}

/// A response body as JSON for the outbox row and the next chain step (non-JSON bodies, e.g.
/// nginx HTML, are kept as a string, cut to 4 KiB).
fn body_json(body: ResponseBody) -> Value {
    match body {
        ResponseBody::Empty => Value::Null,
        ResponseBody::Json(v) => v,
        ResponseBody::Raw(bytes) => {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]).into_owned();
            Value::String(text)
        }
    }
}

fn describe(errors: &[ObjectError]) -> String {
    if errors.is_empty() {
        return "rejected by DHIS2 (no detail given)".into();
    }
    errors
        .iter()
        .map(|e| match &e.uid {
            Some(uid) => format!("{} {uid}: {}", e.code, e.message),
            None => format!("{}: {}", e.code, e.message),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Exponential backoff with ±50 % jitter: `min · 2^attempts`, capped at `max`.
pub fn backoff(min: Duration, max: Duration, attempts: u32, salt: u64) -> Duration {
    let base = min.saturating_mul(1u32 << attempts.min(20)).min(max);
    // Cheap jitter without a RNG dependency: mix the clock with the row id.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let x = (nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)) % 1000;
    base.mul_f64(0.5 + x as f64 / 1000.0).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, endpoint: Endpoint, body: Value) -> OutboxRow {
        OutboxRow {
            id,
            message_id: RecordId(id),
            tempr: "t".into(),
            tempr_version: 1,
            step: 0,
            request: Dhis2Request {
                endpoint,
                path: None,
                body,
            },
            attempts: 0,
        }
    }

    #[test]
    fn tracker_rows_merge_array_by_array_in_row_order() {
        let rows = [
            row(
                1,
                Endpoint::Tracker,
                json!({"events": [{"event": "EvA00000001"}]}),
            ),
            row(
                2,
                Endpoint::Tracker,
                json!({"trackedEntities": [{"trackedEntity": "TeB00000001"}], "events": [{"event": "EvB00000001"}]}),
            ),
        ];
        let m = merge(&rows);
        assert_eq!(m.body["events"][0]["event"], "EvA00000001");
        assert_eq!(m.body["events"][1]["event"], "EvB00000001");
        assert_eq!(m.body["trackedEntities"][0]["trackedEntity"], "TeB00000001");
    }

    #[test]
    fn data_values_keep_their_set_level_period_and_org_unit() {
        let rows = [
            row(
                1,
                Endpoint::DataValueSets,
                json!({"period": "202611", "orgUnit": "OuA00000001", "dataValues": [{"dataElement": "d", "value": "1"}]}),
            ),
            row(
                2,
                Endpoint::DataValueSets,
                json!({"period": "202612", "orgUnit": "OuA00000001", "dataValues": [{"dataElement": "d", "value": "2"}]}),
            ),
        ];
        let m = merge(&rows);
        assert_eq!(m.body["dataValues"][0]["period"], "202611");
        assert_eq!(m.body["dataValues"][1]["period"], "202612");
    }

    #[test]
    fn object_uids_finds_nested_objects() {
        let body = json!({"trackedEntities": [{"trackedEntity": "TeA00000001",
            "enrollments": [{"enrollment": "EnA00000001", "events": [{"event": "EvA00000001"}]}]}]});
        let uids = object_uids(&body);
        assert_eq!(uids.len(), 3);
        assert!(uids.contains("EvA00000001"));
    }

    #[test]
    fn backoff_grows_and_stays_within_jitter_and_cap() {
        let (min, max) = (Duration::from_secs(5), Duration::from_secs(600));
        for attempts in 0..12 {
            let d = backoff(min, max, attempts, 7);
            let base = min.saturating_mul(1 << attempts).min(max);
            assert!(d >= base.mul_f64(0.5) && d <= max, "{attempts}: {d:?}");
        }
    }
}
