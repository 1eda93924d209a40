//! Per-file read progress of folder sources (migration 0003), committed atomically with the
//! message that holds the bytes read (see src/ingest/folder.rs for how it is used).

use super::{Committed, NewMessage, Reader, Store, StoreError, insert_message, now_rfc3339};
use crate::record::SourceId;
use rusqlite::params;
use std::collections::HashMap;

/// How far one file was read, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProgress {
    /// Bytes from the start of the file already stored (ends at a row boundary).
    pub consumed: u64,
    /// SHA-256 of those bytes: a file whose first `consumed` bytes still hash to this has only
    /// grown; otherwise it was replaced and is read from the start.
    pub prefix_hash: [u8; 32],
    /// Size and modification time when it was last read.
    pub size: u64,
    pub mtime_ns: i64,
}

impl Store {
    /// Store `msg` (if any) and the file's new progress in one transaction. `msg = None` records
    /// progress alone (nothing new to store, e.g. a file seen again unchanged after a re-plug).
    /// A message with the same content as a stored one is a duplicate: nothing is added, and
    /// the progress still moves on.
    pub async fn commit_file(
        &self,
        source: &SourceId,
        name: String,
        msg: Option<NewMessage>,
        progress: FileProgress,
    ) -> Result<Option<Committed>, StoreError> {
        let source = source.0.clone();
        self.write(move |tx| {
            let now = now_rfc3339();
            let committed = match &msg {
                Some(m) => Some(insert_message(tx, m, &now)?),
                None => None,
            };
            tx.execute(
                "INSERT INTO file_progress (source, name, consumed, prefix_hash, size, mtime_ns, message_id, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (source, name) DO UPDATE SET consumed = ?3, prefix_hash = ?4, size = ?5,
                   mtime_ns = ?6, message_id = coalesce(?7, message_id), updated_at = ?8",
                params![
                    source,
                    name,
                    progress.consumed as i64,
                    &progress.prefix_hash[..],
                    progress.size as i64,
                    progress.mtime_ns,
                    committed.map(|c| c.id.0),
                    now
                ],
            )?;
            Ok(committed)
        })
        .await
    }
}

impl Reader {
    /// Every file's progress for one source, by file name.
    pub fn file_progress(&self, source: &str) -> Result<HashMap<String, FileProgress>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT name, consumed, prefix_hash, size, mtime_ns FROM file_progress WHERE source = ?1",
        )?;
        let rows = stmt.query_map([source], |r| {
            let hash: Vec<u8> = r.get(2)?;
            let mut prefix_hash = [0u8; 32];
            if hash.len() == 32 {
                prefix_hash.copy_from_slice(&hash);
            }
            Ok((
                r.get::<_, String>(0)?,
                FileProgress {
                    consumed: r.get::<_, i64>(1)? as u64,
                    prefix_hash,
                    size: r.get::<_, i64>(3)? as u64,
                    mtime_ns: r.get(4)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
