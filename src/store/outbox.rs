//! Queries of the render → outbox → sync stages. Reads take any connection; writes are meant to
//! run inside [`Store::write`](super::Store::write) on the writer thread.

use super::RecordStatus;
use crate::record::{
    DHIS2_DESTINATION, DestRequest, Dhis2Request, Endpoint, Observation, Payload, RecordId,
};
use rusqlite::{Connection, OptionalExtension, params};

/// A stored message waiting for its Temprs.
#[derive(Debug, Clone)]
pub struct ToRender {
    pub id: RecordId,
    pub source: String,
    pub received_at: String,
    pub observations: Vec<Observation>,
}

/// One DHIS2 request waiting to be sent (or re-sent).
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub message_id: RecordId,
    pub tempr: String,
    pub tempr_version: u32,
    pub step: u32,
    pub request: Dhis2Request,
    pub attempts: u32,
}

/// What rendering produced for one message.
#[derive(Debug, Clone)]
pub enum Rendered {
    /// One request per matching Tempr (chain heads; later steps are rendered after delivery).
    Requests(Vec<NewRequest>),
    /// No Tempr applies.
    Unmatched,
    /// A Tempr failed; the message keeps the readable error.
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct NewRequest {
    pub tempr: String,
    pub tempr_version: u32,
    pub step: u32,
    pub request: Payload,
}

/// One request waiting in a `[[destinations]]` lane (the DHIS2 lane reads [`OutboxRow`]s).
#[derive(Debug, Clone)]
pub struct DestRow {
    pub id: i64,
    pub message_id: RecordId,
    pub tempr: String,
    pub step: u32,
    pub request: DestRequest,
    pub attempts: u32,
}

fn endpoint_str(e: Endpoint) -> &'static str {
    match e {
        Endpoint::Tracker => "tracker",
        Endpoint::Events => "events",
        Endpoint::DataValueSets => "data_value_sets",
        Endpoint::Get => "get",
    }
}

fn now_ms() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000
}

fn json_err(e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

/// Messages in status `received`, oldest first.
pub fn to_render(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<ToRender>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, source, received_at FROM messages WHERE status = 'received' ORDER BY id LIMIT ?1",
    )?;
    let heads = stmt
        .query_map([limit as i64], |r| {
            Ok(ToRender {
                id: RecordId(r.get(0)?),
                source: r.get(1)?,
                received_at: r.get(2)?,
                observations: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(heads.len());
    for mut m in heads {
        m.observations = observations(conn, m.id)?;
        out.push(m);
    }
    Ok(out)
}

/// A message's observations in record order.
fn observations(conn: &Connection, id: RecordId) -> rusqlite::Result<Vec<Observation>> {
    let mut stmt =
        conn.prepare_cached("SELECT body FROM observations WHERE message_id = ?1 ORDER BY seq")?;
    let bodies = stmt.query_map([id.0], |r| r.get::<_, String>(0))?;
    bodies
        .map(|body| {
            serde_json::from_str(&body?).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })
        })
        .collect()
}

/// Observations of one message (for chain steps and `pocketgate rerender`).
pub fn message(conn: &Connection, id: RecordId) -> rusqlite::Result<Option<ToRender>> {
    let head = conn
        .prepare_cached("SELECT id, source, received_at FROM messages WHERE id = ?1")?
        .query_row([id.0], |r| {
            Ok(ToRender {
                id: RecordId(r.get(0)?),
                source: r.get(1)?,
                received_at: r.get(2)?,
                observations: Vec::new(),
            })
        })
        .optional()?;
    let Some(mut m) = head else { return Ok(None) };
    m.observations = observations(conn, m.id)?;
    Ok(Some(m))
}

/// Record what rendering produced; the message leaves `received`.
pub fn record_render(conn: &Connection, id: RecordId, rendered: &Rendered) -> rusqlite::Result<()> {
    let (status, error) = match rendered {
        Rendered::Requests(reqs) => {
            for r in reqs {
                insert_request(conn, id, r)?;
            }
            (RecordStatus::Rendered, None)
        }
        Rendered::Unmatched => (RecordStatus::Unmatched, None),
        Rendered::Failed(e) => (RecordStatus::RenderFailed, Some(e.as_str())),
    };
    conn.prepare_cached("UPDATE messages SET status = ?2, error = ?3 WHERE id = ?1")?
        .execute(params![id.0, status.as_str(), error])?;
    Ok(())
}

pub fn insert_request(conn: &Connection, id: RecordId, r: &NewRequest) -> rusqlite::Result<i64> {
    let (endpoint, body) = match &r.request {
        Payload::Dhis2(req) => (
            endpoint_str(req.endpoint),
            serde_json::to_string(req).map_err(json_err)?,
        ),
        Payload::Dest { request, .. } => {
            ("request", serde_json::to_string(request).map_err(json_err)?)
        }
    };
    conn.prepare_cached(
        "INSERT INTO outbox (message_id, tempr, tempr_version, step, destination, endpoint, request, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
    )?
    .execute(params![
        id.0,
        r.tempr,
        r.tempr_version,
        r.step,
        r.request.destination(),
        endpoint,
        body
    ])?;
    Ok(conn.last_insert_rowid())
}

/// The oldest pending rows, in id order, as long as their retry time has come. Delivery is
/// first-in first-out: a row waiting for its retry holds back the rows behind it, so results
/// reach DHIS2 in the order they were received (a patient's events stay in order). Rows that
/// DHIS2 rejected leave the queue and hold back nothing.
pub fn due(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<OutboxRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, message_id, tempr, tempr_version, step, request, attempts, next_attempt_ms FROM outbox
         WHERE destination = 'dhis2' AND status = 'pending' ORDER BY id LIMIT ?1",
    )?;
    let now = now_ms();
    let rows = stmt
        .query_map(params![limit as i64], |r| {
            let body: String = r.get(5)?;
            let request: Dhis2Request = from_json(5, &body)?;
            let next: i64 = r.get(7)?;
            Ok((
                next,
                OutboxRow {
                    id: r.get(0)?,
                    message_id: RecordId(r.get(1)?),
                    tempr: r.get(2)?,
                    tempr_version: r.get(3)?,
                    step: r.get(4)?,
                    request,
                    attempts: r.get(6)?,
                },
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows
        .into_iter()
        .take_while(|(next, _)| *next <= now)
        .map(|(_, row)| row)
        .collect())
}

/// Milliseconds until the head of the DHIS2 lane is due (None: nothing pending).
pub fn next_due_in_ms(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    next_due_in_ms_for(conn, DHIS2_DESTINATION)
}

/// Milliseconds until the head of `destination`'s lane is due (None: nothing pending).
pub fn next_due_in_ms_for(conn: &Connection, destination: &str) -> rusqlite::Result<Option<i64>> {
    let next: Option<i64> = conn
        .prepare_cached(
            "SELECT next_attempt_ms FROM outbox WHERE destination = ?1 AND status = 'pending'
             ORDER BY id LIMIT 1",
        )?
        .query_row([destination], |r| r.get(0))
        .optional()?;
    Ok(next.map(|t| (t - now_ms()).max(0)))
}

/// The head of a `[[destinations]]` lane, if its retry time has come. One row at a time and
/// first-in first-out, like the DHIS2 lane ([`due`]): a row waiting for its retry holds back
/// the rows behind it in this lane only; other lanes go on.
pub fn due_dest(conn: &Connection, destination: &str) -> rusqlite::Result<Option<DestRow>> {
    let row = conn
        .prepare_cached(
            "SELECT id, message_id, tempr, step, request, attempts, next_attempt_ms FROM outbox
             WHERE destination = ?1 AND status = 'pending' ORDER BY id LIMIT 1",
        )?
        .query_row([destination], |r| {
            let body: String = r.get(4)?;
            Ok((
                r.get::<_, i64>(6)?,
                DestRow {
                    id: r.get(0)?,
                    message_id: RecordId(r.get(1)?),
                    tempr: r.get(2)?,
                    step: r.get(3)?,
                    request: from_json(4, &body)?,
                    attempts: r.get(5)?,
                },
            ))
        })
        .optional()?;
    Ok(row
        .filter(|(next, _)| *next <= now_ms())
        .map(|(_, row)| row))
}

/// A stored request's JSON, or the column's conversion error.
fn from_json<T: serde::de::DeserializeOwned>(column: usize, text: &str) -> rusqlite::Result<T> {
    serde_json::from_str(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
    })
}

pub fn mark_delivered(conn: &Connection, row: i64, response: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE outbox SET status = 'delivered', response = ?2, last_error = NULL,
                delivered_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
    )?
    .execute(params![row, response])?;
    Ok(())
}

pub fn mark_rejected(
    conn: &Connection,
    row: i64,
    error: &str,
    response: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE outbox SET status = 'rejected', last_error = ?2, response = ?3 WHERE id = ?1",
    )?
    .execute(params![row, error, response])?;
    Ok(())
}

pub fn mark_retry(conn: &Connection, row: i64, error: &str, delay_ms: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_ms = ?3 WHERE id = ?1")?
        .execute(params![row, error, now_ms() + delay_ms])?;
    Ok(())
}

/// A chain's next step could not be rendered after the step before it was delivered: the
/// message is `render_failed` with the Tempr's error (its delivered rows stay; a re-render
/// after the Tempr is fixed continues the chain).
pub fn mark_chain_failed(conn: &Connection, id: RecordId, error: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE messages SET status = 'render_failed', error = ?2 WHERE id = ?1")?
        .execute(params![id.0, error])?;
    Ok(())
}

/// Recompute a message's status from its outbox rows: all delivered → delivered; any rejected →
/// rejected (with the first error); otherwise it stays rendered.
pub fn settle_message(conn: &Connection, id: RecordId) -> rusqlite::Result<()> {
    let (pending, rejected, delivered): (i64, i64, i64) = conn
        .prepare_cached(
            "SELECT coalesce(sum(status = 'pending'), 0), coalesce(sum(status = 'rejected'), 0),
                coalesce(sum(status = 'delivered'), 0)
         FROM outbox WHERE message_id = ?1",
        )?
        .query_row([id.0], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    if rejected > 0 {
        conn.prepare_cached("UPDATE messages SET status = 'rejected',
                error = (SELECT last_error FROM outbox WHERE message_id = ?1 AND status = 'rejected' ORDER BY id LIMIT 1)
             WHERE id = ?1")?
        .execute([id.0])?;
    } else if pending == 0 && delivered > 0 {
        conn.prepare_cached(
            "UPDATE messages SET status = 'delivered', error = NULL WHERE id = ?1",
        )?
        .execute([id.0])?;
    }
    Ok(())
}

/// Put messages back to `received` so the current Tempr versions render them again; their
/// unsent or rejected outbox rows are superseded (delivered rows stay: DHIS2 has them, and the
/// deterministic UIDs make the new request an update of the same objects).
pub fn rerender(conn: &Connection, status: Option<RecordStatus>) -> rusqlite::Result<usize> {
    let ids: Vec<i64> = {
        let mut stmt = conn.prepare(
            "SELECT id FROM messages WHERE (?1 IS NULL AND status IN ('rejected', 'render_failed', 'unmatched'))
                OR status = ?1",
        )?;
        stmt.query_map([status.map(|s| s.as_str())], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?
    };
    rerender_ids(conn, &ids)
}

/// Put these messages back to `received` (see [`rerender`]); the web page's "re-render" button.
pub fn rerender_ids(conn: &Connection, ids: &[i64]) -> rusqlite::Result<usize> {
    for id in ids {
        conn.prepare_cached("UPDATE outbox SET status = 'superseded' WHERE message_id = ?1 AND status IN ('pending', 'rejected')")?
        .execute([id])?;
        conn.prepare_cached("UPDATE messages SET status = 'received', error = NULL WHERE id = ?1")?
            .execute([id])?;
    }
    Ok(ids.len())
}

pub fn get_state(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT value FROM sync_state WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()
}

pub fn set_state(conn: &Connection, key: &str, value: Option<&str>) -> rusqlite::Result<()> {
    match value {
        Some(v) => conn
            .prepare_cached(
                "INSERT INTO sync_state (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![key, v])?,
        None => conn
            .prepare_cached("DELETE FROM sync_state WHERE key = ?1")?
            .execute([key])?,
    };
    Ok(())
}

/// One exchange with a destination, as `exchanges` keeps it (migration 0008).
pub struct Exchange<'a> {
    pub destination: &'a str,
    pub outbox_id: i64,
    pub request: &'a DestRequest,
    pub outcome: &'a str,
    pub status: Option<u16>,
    pub response: &'a str,
    pub took_ms: i64,
}

pub fn insert_exchange(conn: &Connection, e: &Exchange) -> rusqlite::Result<()> {
    let request = serde_json::to_string(e.request).map_err(json_err)?;
    conn.prepare_cached(
        "INSERT INTO exchanges (destination, outbox_id, at, request, outcome, status, response, took_ms)
         VALUES (?1, ?2, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        e.destination,
        e.outbox_id,
        request,
        e.outcome,
        e.status,
        e.response,
        e.took_ms
    ])?;
    Ok(())
}

/// Delete `destination`'s exchanges older than `cutoff` (RFC 3339 UTC), at most `limit`.
pub fn prune_exchanges(
    conn: &Connection,
    destination: &str,
    cutoff: &str,
    limit: usize,
) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM exchanges WHERE id IN (SELECT id FROM exchanges
             WHERE destination = ?1 AND at < ?2 ORDER BY id LIMIT ?3)",
        params![destination, cutoff, limit as i64],
    )
}

/// Pending and rejected rows of one destination's lane (`pocketgate status`, the web page).
pub fn lane_counts(conn: &Connection, destination: &str) -> rusqlite::Result<(i64, i64)> {
    conn.prepare_cached(
        "SELECT (SELECT count(*) FROM outbox WHERE destination = ?1 AND status = 'pending'),
                (SELECT count(*) FROM outbox WHERE destination = ?1 AND status = 'rejected')",
    )?
    .query_row([destination], |r| Ok((r.get(0)?, r.get(1)?)))
}

/// Counts of outbox rows by status (`pocketgate sync` progress, tests).
pub fn outbox_counts(conn: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    // Trigger-kept counts (migration 0005): the same cost at a million rows as at ten.
    let mut stmt =
        conn.prepare("SELECT status, n FROM outbox_status_counts WHERE n > 0 ORDER BY status")?;
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}
