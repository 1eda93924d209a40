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

// The dashboard's range queries. `INDEXED BY` pins the time index: without it SQLite may
// prefer walking the (source, content_hash) index for GROUP BY source, i.e. every row.
const TODAY_BY_SOURCE: &str =
    "SELECT source, count(*), sum(status IN ('invalid', 'render_failed', 'rejected'))
     FROM messages INDEXED BY messages_received WHERE received_at >= ?1 GROUP BY source";
const RECEIVED_PER_DAY: &str = "SELECT substr(received_at, 1, 10) d, count(*)
     FROM messages INDEXED BY messages_received WHERE received_at >= ?1 GROUP BY d";
const DELIVERED_PER_DAY: &str = "SELECT substr(delivered_at, 1, 10) d, count(DISTINCT message_id)
     FROM outbox INDEXED BY outbox_delivered WHERE status = 'delivered' AND delivered_at >= ?1 GROUP BY d";
const LAST_DELIVERY: &str = "SELECT max(delivered_at) FROM outbox WHERE status = 'delivered'";

/// Figures for every source that has stored messages; `today` is `YYYY-MM-DD` (UTC). Totals
/// and the last arrival come from `source_counts` (kept by triggers, migration 0005); today's
/// figures read only today's rows through the `received_at` index.
pub fn source_stats(conn: &Connection, today: &str) -> rusqlite::Result<Vec<SourceStats>> {
    let mut stmt = conn.prepare(
        "SELECT source, last_received, n FROM source_counts WHERE n > 0 ORDER BY source",
    )?;
    let mut stats: Vec<SourceStats> = stmt
        .query_map([], |r| {
            Ok(SourceStats {
                source: r.get(0)?,
                last_received: r.get(1)?,
                total: r.get(2)?,
                ..SourceStats::default()
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare(TODAY_BY_SOURCE)?;
    let mut rows = stmt.query([today])?;
    while let Some(r) = rows.next()? {
        let source: String = r.get(0)?;
        if let Some(s) = stats.iter_mut().find(|s| s.source == source) {
            s.today = r.get(1)?;
            s.errors_today = r.get::<_, Option<i64>>(2)?.unwrap_or(0);
        }
    }
    Ok(stats)
}

/// Messages by status (trigger-kept counts, migration 0005).
pub fn message_counts(conn: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    let mut stmt =
        conn.prepare("SELECT status, n FROM message_status_counts WHERE n > 0 ORDER BY status")?;
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

/// When DHIS2 last accepted something (the `outbox_delivered` index answers it directly).
pub fn last_delivery(conn: &Connection) -> rusqlite::Result<Option<String>> {
    conn.query_row(LAST_DELIVERY, [], |r| r.get(0))
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
    let received = per_day(RECEIVED_PER_DAY)?;
    let delivered = per_day(DELIVERED_PER_DAY)?;
    // The backlog when the first day began, without counting the years before it: what is
    // stored now, minus what arrived since, minus what was delivered before (delivered now,
    // less what was delivered since).
    let (total, delivered_now): (i64, i64) = conn.query_row(
        "SELECT coalesce(sum(n), 0), coalesce(sum(n) FILTER (WHERE status = 'delivered'), 0)
         FROM message_status_counts",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let since = |m: &std::collections::HashMap<String, i64>| m.values().sum::<i64>();
    let before = total - since(&received) - (delivered_now - since(&delivered));
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
    // Only the conditions asked for go into the SQL, so SQLite can pick the index each one has
    // (sample/patient → observations, status → (status, id), dates → received_at). One generic
    // statement with `?n IS NULL OR …` was planned as a walk over every message: 29 ms at
    // 100,000 records for a sample id, growing with the table (benches/scale.rs).
    let mut sql = String::from(
        "SELECT m.id, m.source, m.received_at, m.status, m.error,
            (SELECT group_concat(DISTINCT sample_id) FROM observations o WHERE o.message_id = m.id),
            (SELECT group_concat(DISTINCT patient_id) FROM observations o WHERE o.message_id = m.id)
         FROM messages m WHERE 1",
    );
    let mut args: Vec<String> = Vec::new();
    let conditions = [
        (
            blank(&q.sample_id).map(str::to_owned),
            "m.id IN (SELECT message_id FROM observations WHERE sample_id = ?)",
        ),
        (
            blank(&q.patient_id).map(str::to_owned),
            "m.id IN (SELECT message_id FROM observations WHERE patient_id = ?)",
        ),
        (blank(&q.source).map(str::to_owned), "m.source = ?"),
        (blank(&q.status).map(str::to_owned), "m.status = ?"),
        (blank(&q.from).map(str::to_owned), "m.received_at >= ?"),
        (to, "m.received_at < ?"),
    ];
    for (value, condition) in conditions {
        if let Some(v) = value {
            sql.push_str(" AND ");
            sql.push_str(condition);
            args.push(v);
        }
    }
    sql.push_str(&format!(" ORDER BY m.id DESC LIMIT {}", limit.min(10_000)));
    let mut stmt = conn.prepare_cached(&sql)?;
    stmt.query_map(rusqlite::params_from_iter(args), |r| {
        Ok(RecordRow {
            id: r.get(0)?,
            source: r.get(1)?,
            received_at: r.get(2)?,
            status: r.get(3)?,
            error: r.get(4)?,
            sample_ids: r.get(5)?,
            patient_ids: r.get(6)?,
        })
    })?
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

/// Make one destination's pending rows due now ("send now" on the dashboard).
pub fn lane_due_now(conn: &Connection, destination: &str) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE outbox SET next_attempt_ms = 0 WHERE status = 'pending' AND destination = ?1",
        [destination],
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

    /// The figures the dashboard and /metrics show come from trigger-kept counts; they must equal
    /// a real count after inserts, status changes, outbox rows and a retention delete (cascade).
    #[test]
    fn kept_counts_equal_real_counts_after_every_kind_of_write() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        drop(Store::open(&db, WriterSettings::default()).unwrap());
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        for i in 0..6 {
            conn.execute(
                "INSERT INTO messages (source, protocol, received_at, content_hash, wire, text)
                 VALUES (?1, 'astm', ?2, randomblob(32), x'00', x'00')",
                rusqlite::params![
                    if i % 2 == 0 { "gx" } else { "hba" },
                    format!("2026-11-2{i}T08:00:00Z")
                ],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO outbox (message_id, tempr, tempr_version, endpoint, request, created_at)
                 VALUES (last_insert_rowid(), 't', 1, 'tracker', '{}', '2026-11-22T08:00:00Z')",
                [],
            )
            .unwrap();
        }
        conn.execute_batch(
            "UPDATE messages SET status = 'rendered' WHERE id <= 4;
             UPDATE messages SET status = 'delivered' WHERE id <= 2;
             UPDATE outbox SET status = 'delivered', delivered_at = '2026-11-22T09:00:00Z' WHERE message_id <= 2;
             UPDATE messages SET status = 'delivered' WHERE id = 1;  -- no change: no count moves
             DELETE FROM messages WHERE id = 1;                      -- retention; outbox row cascades",
        )
        .unwrap();
        let real = |sql: &str| -> Vec<(String, i64)> {
            let mut st = conn.prepare(sql).unwrap();
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        let kept = message_counts(&conn).unwrap();
        assert_eq!(
            kept,
            real("SELECT status, count(*) FROM messages GROUP BY status ORDER BY status")
        );
        assert_eq!(
            kept,
            vec![
                ("delivered".into(), 1),
                ("received".into(), 2),
                ("rendered".into(), 2)
            ]
        );
        assert_eq!(
            crate::store::outbox::outbox_counts(&conn).unwrap(),
            real("SELECT status, count(*) FROM outbox GROUP BY status ORDER BY status")
        );
        let stats = source_stats(&conn, "2026-11-24").unwrap();
        let by = |src: &str| stats.iter().find(|s| s.source == src).unwrap().clone();
        assert_eq!((by("gx").total, by("gx").today), (2, 1), "{stats:?}");
        assert_eq!(
            by("hba").last_received.as_deref(),
            Some("2026-11-25T08:00:00Z")
        );
        assert_eq!(
            last_delivery(&conn).unwrap().as_deref(),
            Some("2026-11-22T09:00:00Z")
        );
        // Every dashboard query reads through an index or a count table, never a whole table.
        for sql in [
            TODAY_BY_SOURCE,
            RECEIVED_PER_DAY,
            DELIVERED_PER_DAY,
            LAST_DELIVERY,
        ] {
            let plan = crate::store::query_plan(
                &conn,
                sql,
                rusqlite::params_from_iter(sql.contains("?1").then_some("2026-11-24")),
            );
            assert!(
                plan.iter()
                    .all(|p| !p.starts_with("SCAN messages") && !p.starts_with("SCAN outbox")),
                "{sql}: {plan:?}"
            );
        }
    }
}
