//! Queries of the web UI (src/web): the admin password hash, the audit log, the dashboard's
//! figures and the records search. Reads take any connection; writes run inside
//! [`Store::write`](super::Store::write) on the writer thread.

use super::now_rfc3339;
use crate::record::Observation;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// The admin's argon2 PHC string, if a password was ever set.
pub fn admin_hash(conn: &Connection) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT password_hash FROM web_admin WHERE id = 1",
        [],
        |r| r.get(0),
    )
    .optional()
}

/// Set (or replace) the admin password hash; `by` is `setup`, `file` or `change`.
pub fn set_admin_hash(conn: &Connection, hash: &str, by: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO web_admin (id, password_hash, set_at, set_by) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET password_hash = excluded.password_hash,
             set_at = excluded.set_at, set_by = excluded.set_by",
        params![hash, now_rfc3339(), by],
    )?;
    Ok(())
}

/// One audit log line.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub detail: String,
}

/// Append to the audit log. `detail` must never hold a secret (callers name the key, not the value).
pub fn audit(conn: &Connection, actor: &str, action: &str, detail: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO audit_log (at, actor, action, detail) VALUES (?1, ?2, ?3, ?4)",
        params![now_rfc3339(), actor, action, detail],
    )?;
    Ok(())
}

/// Newest first.
pub fn audit_recent(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<AuditEntry>> {
    let mut stmt = conn
        .prepare("SELECT id, at, actor, action, detail FROM audit_log ORDER BY id DESC LIMIT ?1")?;
    stmt.query_map([limit as i64], |r| {
        Ok(AuditEntry {
            id: r.get(0)?,
            at: r.get(1)?,
            actor: r.get(2)?,
            action: r.get(3)?,
            detail: r.get(4)?,
        })
    })?
    .collect()
}

/// Per-source figures for the dashboard.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceStats {
    pub source: String,
    pub last_received: Option<String>,
    pub today: i64,
    /// Messages received today that failed to parse, render or deliver.
    pub errors_today: i64,
    pub total: i64,
}

/// Figures for every source that has stored messages; `today` is `YYYY-MM-DD` (UTC).
pub fn source_stats(conn: &Connection, today: &str) -> rusqlite::Result<Vec<SourceStats>> {
    let mut stmt = conn.prepare(
        "SELECT source, max(received_at), count(*),
                sum(received_at >= ?1),
                sum(received_at >= ?1 AND status IN ('invalid', 'render_failed', 'rejected'))
         FROM messages GROUP BY source ORDER BY source",
    )?;
    stmt.query_map([today], |r| {
        Ok(SourceStats {
            source: r.get(0)?,
            last_received: r.get(1)?,
            total: r.get(2)?,
            today: r.get::<_, Option<i64>>(3)?.unwrap_or(0),
            errors_today: r.get::<_, Option<i64>>(4)?.unwrap_or(0),
        })
    })?
    .collect()
}

/// Messages by status.
pub fn message_counts(conn: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    let mut stmt =
        conn.prepare("SELECT status, count(*) FROM messages GROUP BY status ORDER BY status")?;
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

/// When DHIS2 last accepted something.
pub fn last_delivery(conn: &Connection) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT max(delivered_at) FROM outbox WHERE status = 'delivered'",
        [],
        |r| r.get(0),
    )
}

/// One day of the dashboard chart.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Day {
    pub date: String,
    pub received: i64,
    pub delivered: i64,
    /// Messages received by the end of the day and not yet delivered then.
    pub backlog: i64,
}

/// Received, delivered and backlog per day for `dates` (ascending `YYYY-MM-DD`).
pub fn daily(conn: &Connection, dates: &[String]) -> rusqlite::Result<Vec<Day>> {
    let Some(first) = dates.first() else {
        return Ok(Vec::new());
    };
    let per_day = |sql: &str| -> rusqlite::Result<std::collections::HashMap<String, i64>> {
        let mut stmt = conn.prepare(sql)?;
        stmt.query_map([first], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
    };
    let received = per_day(
        "SELECT substr(received_at, 1, 10) d, count(*) FROM messages WHERE received_at >= ?1 GROUP BY d",
    )?;
    let delivered = per_day(
        "SELECT substr(delivered_at, 1, 10) d, count(DISTINCT message_id) FROM outbox
         WHERE status = 'delivered' AND delivered_at >= ?1 GROUP BY d",
    )?;
    let before: i64 = conn.query_row(
        "SELECT (SELECT count(*) FROM messages WHERE received_at < ?1)
              - (SELECT count(DISTINCT message_id) FROM outbox WHERE status = 'delivered' AND delivered_at < ?1)",
        [first],
        |r| r.get(0),
    )?;
    let mut backlog = before;
    Ok(dates
        .iter()
        .map(|d| {
            let r = received.get(d).copied().unwrap_or(0);
            let s = delivered.get(d).copied().unwrap_or(0);
            backlog = (backlog + r - s).max(0);
            Day {
                date: d.clone(),
                received: r,
                delivered: s,
                backlog,
            }
        })
        .collect())
}

/// A records search; every field is optional. Dates are `YYYY-MM-DD`, both ends inclusive.
#[derive(Debug, Clone, Default, serde::Deserialize, Serialize)]
pub struct Search {
    pub sample_id: Option<String>,
    pub patient_id: Option<String>,
    pub source: Option<String>,
    pub status: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// One line of the records list.
#[derive(Debug, Clone, Serialize)]
pub struct RecordRow {
    pub id: i64,
    pub source: String,
    pub received_at: String,
    pub status: String,
    pub sample_ids: Option<String>,
    pub patient_ids: Option<String>,
    pub error: Option<String>,
}

/// Newest first, at most `limit`.
pub fn search(conn: &Connection, q: &Search, limit: usize) -> rusqlite::Result<Vec<RecordRow>> {
    fn blank(v: &Option<String>) -> Option<&str> {
        v.as_deref().map(str::trim).filter(|s| !s.is_empty())
    }
    let to = blank(&q.to).map(|d| format!("{d}U")); // 'T…' < 'U': the whole day
    let mut stmt = conn.prepare_cached(
        "SELECT m.id, m.source, m.received_at, m.status, m.error,
            (SELECT group_concat(DISTINCT sample_id) FROM observations o WHERE o.message_id = m.id),
            (SELECT group_concat(DISTINCT patient_id) FROM observations o WHERE o.message_id = m.id)
         FROM messages m
         WHERE (?1 IS NULL OR m.id IN (SELECT message_id FROM observations WHERE sample_id = ?1))
           AND (?2 IS NULL OR m.id IN (SELECT message_id FROM observations WHERE patient_id = ?2))
           AND (?3 IS NULL OR m.source = ?3)
           AND (?4 IS NULL OR m.status = ?4)
           AND (?5 IS NULL OR m.received_at >= ?5)
           AND (?6 IS NULL OR m.received_at < ?6)
         ORDER BY m.id DESC LIMIT ?7",
    )?;
    stmt.query_map(
        params![
            blank(&q.sample_id),
            blank(&q.patient_id),
            blank(&q.source),
            blank(&q.status),
            blank(&q.from),
            to,
            limit as i64
        ],
        |r| {
            Ok(RecordRow {
                id: r.get(0)?,
                source: r.get(1)?,
                received_at: r.get(2)?,
                status: r.get(3)?,
                error: r.get(4)?,
                sample_ids: r.get(5)?,
                patient_ids: r.get(6)?,
            })
        },
    )?
    .collect()
}

/// One outbox row of a record, as the record page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RequestView {
    pub id: i64,
    pub tempr: String,
    pub tempr_version: i64,
    pub step: i64,
    pub endpoint: String,
    pub status: String,
    pub attempts: i64,
    pub request: serde_json::Value,
    pub response: Option<serde_json::Value>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
}

/// Everything stored about one message.
#[derive(Debug, Clone, Serialize)]
pub struct RecordDetail {
    pub id: i64,
    pub source: String,
    pub protocol: String,
    pub received_at: String,
    pub status: String,
    pub wire: Vec<u8>,
    pub text: Vec<u8>,
    pub parse_errors: Option<String>,
    pub error: Option<String>,
    pub observations: Vec<Observation>,
    pub requests: Vec<RequestView>,
}

pub fn record(conn: &Connection, id: i64) -> rusqlite::Result<Option<RecordDetail>> {
    let head = conn
        .query_row(
            "SELECT id, source, protocol, received_at, status, wire, text, parse_errors, error
             FROM messages WHERE id = ?1",
            [id],
            |r| {
                Ok(RecordDetail {
                    id: r.get(0)?,
                    source: r.get(1)?,
                    protocol: r.get(2)?,
                    received_at: r.get(3)?,
                    status: r.get(4)?,
                    wire: r.get(5)?,
                    text: r.get(6)?,
                    parse_errors: r.get(7)?,
                    error: r.get(8)?,
                    observations: Vec::new(),
                    requests: Vec::new(),
                })
            },
        )
        .optional()?;
    let Some(mut d) = head else { return Ok(None) };
    d.observations = super::outbox::message(conn, crate::record::RecordId(id))?
        .map(|m| m.observations)
        .unwrap_or_default();
    let json = |s: Option<String>| {
        s.map(|s| serde_json::from_str(&s).unwrap_or(serde_json::Value::String(s)))
    };
    let mut stmt = conn.prepare(
        "SELECT id, tempr, tempr_version, step, endpoint, status, attempts, request, response,
                last_error, created_at, delivered_at
         FROM outbox WHERE message_id = ?1 ORDER BY id",
    )?;
    d.requests = stmt
        .query_map([id], |r| {
            Ok(RequestView {
                id: r.get(0)?,
                tempr: r.get(1)?,
                tempr_version: r.get(2)?,
                step: r.get(3)?,
                endpoint: r.get(4)?,
                status: r.get(5)?,
                attempts: r.get(6)?,
                request: json(r.get(7)?).unwrap_or_default(),
                response: json(r.get(8)?),
                last_error: r.get(9)?,
                created_at: r.get(10)?,
                delivered_at: r.get(11)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(d))
}

/// Send a rejected message's rejected requests again as they are (after the cause was fixed
/// in DHIS2, e.g. an org unit assigned to the program). Returns how many requests were queued.
pub fn retry_rejected(conn: &Connection, id: i64) -> rusqlite::Result<usize> {
    let n = conn.execute(
        "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_ms = 0, last_error = NULL
         WHERE message_id = ?1 AND status = 'rejected'",
        [id],
    )?;
    if n > 0 {
        conn.execute(
            "UPDATE messages SET status = 'rendered', error = NULL WHERE id = ?1",
            [id],
        )?;
    }
    Ok(n)
}

/// Everything pending is due now ("sync now").
pub fn all_due_now(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE outbox SET next_attempt_ms = 0 WHERE status = 'pending'",
        [],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewMessage, ProtocolKind, Reader, Store, WriterSettings};

    #[tokio::test]
    async fn search_finds_by_sample_and_daily_counts_backlog() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let store = Store::open(&db, WriterSettings::default()).unwrap();
        for (i, sample) in ["S1", "S2"].iter().enumerate() {
            let obs = Observation {
                source: "gx".into(),
                sample_id: Some((*sample).into()),
                test_code: "MTB".into(),
                ..Default::default()
            };
            store
                .commit(NewMessage {
                    source: crate::record::SourceId("gx".into()),
                    protocol: ProtocolKind::Astm,
                    wire: vec![i as u8],
                    text: format!("msg {i}").into_bytes(),
                    observations: vec![obs],
                    parse_errors: vec![],
                })
                .await
                .unwrap();
        }
        store
            .write(|tx| audit(tx, "127.0.0.1", "source.add", "sources[1] gx"))
            .await
            .unwrap();
        let r = Reader::open(&db).unwrap();
        let q = Search {
            sample_id: Some("S2".into()),
            ..Default::default()
        };
        let rows = search(r.conn(), &q, 10).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].sample_ids.as_deref(), Some("S2"));
        let all = search(r.conn(), &Search::default(), 10).unwrap();
        assert_eq!(all.len(), 2);
        let today = now_rfc3339()[..10].to_owned();
        let days = daily(r.conn(), std::slice::from_ref(&today)).unwrap();
        assert_eq!(days[0].received, 2);
        assert_eq!(days[0].backlog, 2);
        let stats = source_stats(r.conn(), &today).unwrap();
        assert_eq!((stats[0].today, stats[0].total), (2, 2));
        assert_eq!(audit_recent(r.conn(), 5).unwrap()[0].action, "source.add");
        let d = record(r.conn(), rows[0].id).unwrap().unwrap();
        assert_eq!(d.observations[0].sample_id.as_deref(), Some("S2"));
    }
}
