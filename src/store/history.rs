//! Queries behind the web UI's history views (migration 0006): saved Tempr versions, and one
//! register's observations by device time for the fridge charts. Reads take any connection;
//! writes run inside [`Store::write`](super::Store::write) on the writer thread.

use super::now_rfc3339;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// How a Tempr version came to be; mirrors the CHECK constraint on `tempr_versions.action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SavedBy {
    /// The text that was on disk before the first save through the web UI.
    Found,
    /// The Tempr page's editor.
    Edit,
    /// The builder page (a new Tempr).
    Builder,
    /// `PUT /api/v1/temprs/{name}`.
    Api,
    /// "Restore this version".
    Restore,
}

impl SavedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            SavedBy::Found => "found",
            SavedBy::Edit => "edit",
            SavedBy::Builder => "builder",
            SavedBy::Api => "api",
            SavedBy::Restore => "restore",
        }
    }
}

/// One saved text of a Tempr.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TemprVersion {
    pub name: String,
    pub version: i64,
    /// The `version` key inside the text (what outbox rows remember), if it has one.
    pub file_version: Option<i64>,
    pub saved_at: String,
    pub saved_by: String,
    pub action: String,
    pub content: String,
}

/// Keep `content` as the next version of `name`. When the Tempr has no history yet and
/// `previous` (the text on disk before this save) is given, that text is kept first as version 1,
/// so the first web edit can already be undone. Returns the new version number.
pub fn add_tempr_version(
    conn: &Connection,
    name: &str,
    previous: Option<&str>,
    content: &str,
    file_version: Option<i64>,
    by: &str,
    action: SavedBy,
) -> rusqlite::Result<i64> {
    let last: i64 = conn.query_row(
        "SELECT coalesce(max(version), 0) FROM tempr_versions WHERE name = ?1",
        [name],
        |r| r.get(0),
    )?;
    let mut next = last + 1;
    if let (0, Some(prev)) = (last, previous) {
        conn.execute(
            "INSERT INTO tempr_versions (name, version, file_version, content, saved_at, saved_by, action)
             VALUES (?1, 1, ?2, ?3, ?4, 'file', 'found')",
            params![name, file_version_of(prev), prev, now_rfc3339()],
        )?;
        next = 2;
    }
    conn.execute(
        "INSERT INTO tempr_versions (name, version, file_version, content, saved_at, saved_by, action)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![name, next, file_version, content, now_rfc3339(), by, action.as_str()],
    )?;
    Ok(next)
}

/// The `version = N` key of a Tempr text, read leniently (an old text need not parse today).
pub fn file_version_of(text: &str) -> Option<i64> {
    let table: toml::Table = text.parse().ok()?;
    table.get("version")?.as_integer()
}

fn version_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TemprVersion> {
    Ok(TemprVersion {
        name: r.get(0)?,
        version: r.get(1)?,
        file_version: r.get(2)?,
        saved_at: r.get(3)?,
        saved_by: r.get(4)?,
        action: r.get(5)?,
        content: r.get(6)?,
    })
}

/// Every kept version of `name`, newest first (with their texts: Tempr files are small).
pub fn tempr_versions(conn: &Connection, name: &str) -> rusqlite::Result<Vec<TemprVersion>> {
    let mut stmt = conn.prepare(
        "SELECT name, version, file_version, saved_at, saved_by, action, content
         FROM tempr_versions WHERE name = ?1 ORDER BY version DESC",
    )?;
    stmt.query_map([name], version_row)?.collect()
}

/// One kept version.
pub fn tempr_version(
    conn: &Connection,
    name: &str,
    version: i64,
) -> rusqlite::Result<Option<TemprVersion>> {
    conn.query_row(
        "SELECT name, version, file_version, saved_at, saved_by, action, content
         FROM tempr_versions WHERE name = ?1 AND version = ?2",
        params![name, version],
        version_row,
    )
    .optional()
}

/// The newest kept version of `name` whose text carries `file_version`: the text that rendered
/// an outbox row remembering `name@file_version` (if the author bumped `version` on each change).
pub fn version_with_file_version(
    conn: &Connection,
    name: &str,
    file_version: i64,
) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT max(version) FROM tempr_versions WHERE name = ?1 AND file_version = ?2",
        params![name, file_version],
        |r| r.get(0),
    )
}

/// One stored observation of a register: the device's time and the canonical JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterRow {
    pub observed_at: String,
    pub body: String,
}

/// The SQL of [`register_rows`] (a unit test checks its plan uses `observations_code_time`).
pub const REGISTER_ROWS_SQL: &str = "SELECT json_extract(o.body, '$.observed_at'), o.body
     FROM observations o JOIN messages m ON m.id = o.message_id
     WHERE o.test_code = ?1 AND json_extract(o.body, '$.observed_at') >= ?2
       AND m.source = ?3
     ORDER BY json_extract(o.body, '$.observed_at')";

/// Observations with `test_code` from `source` stated at or after `from` (RFC 3339 UTC, the form
/// Modbus documents use), oldest first.
pub fn register_rows(
    conn: &Connection,
    source: &str,
    test_code: &str,
    from: &str,
) -> rusqlite::Result<Vec<RegisterRow>> {
    let mut stmt = conn.prepare_cached(REGISTER_ROWS_SQL)?;
    stmt.query_map(params![test_code, from, source], |r| {
        Ok(RegisterRow {
            observed_at: r.get(0)?,
            body: r.get(1)?,
        })
    })?
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, WriterSettings};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db.sqlite"), WriterSettings::default()).unwrap();
        (dir, s)
    }

    #[test]
    fn register_rows_are_read_through_the_code_time_index() {
        let (dir, _s) = store();
        let r = crate::store::Reader::open(&dir.path().join("db.sqlite")).unwrap();
        let plan = crate::store::query_plan(
            r.conn(),
            REGISTER_ROWS_SQL,
            params!["fridge-temperature", "2026-01-01T00:00:00Z", "f1"],
        );
        assert!(
            plan.iter()
                .any(|l| l.contains("USING INDEX observations_code_time")),
            "{plan:?}"
        );
        assert!(!plan.iter().any(|l| l.starts_with("SCAN o")), "{plan:?}");
    }

    #[tokio::test]
    async fn first_save_keeps_the_text_found_on_disk_then_counts_up() {
        let (dir, s) = store();
        let v = s
            .write(|tx| {
                add_tempr_version(
                    tx,
                    "a",
                    Some("version = 1\n"),
                    "version = 2\n",
                    Some(2),
                    "127.0.0.1",
                    SavedBy::Edit,
                )
            })
            .await
            .unwrap();
        assert_eq!(v, 2);
        let v = s
            .write(|tx| {
                add_tempr_version(tx, "a", Some("ignored"), "x", None, "::1", SavedBy::Restore)
            })
            .await
            .unwrap();
        assert_eq!(v, 3);
        let r = crate::store::Reader::open(&dir.path().join("db.sqlite")).unwrap();
        let all = tempr_versions(r.conn(), "a").unwrap();
        let seen: Vec<(i64, Option<i64>, &str)> = all
            .iter()
            .map(|v| (v.version, v.file_version, v.action.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                (3, None, "restore"),
                (2, Some(2), "edit"),
                (1, Some(1), "found")
            ]
        );
        assert_eq!(
            version_with_file_version(r.conn(), "a", 1).unwrap(),
            Some(1)
        );
        assert_eq!(tempr_version(r.conn(), "a", 9).unwrap(), None);
    }
}
