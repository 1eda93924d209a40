//! Retention: delivered messages older than `store.keep_delivered` are deleted so a small card
//! keeps room for new results. Only `delivered` rows go (their copy is in DHIS2); anything not yet
//! delivered, rejected, invalid or unmatched stays until someone deals with it. Outbox and
//! observation rows go with their message (`ON DELETE CASCADE`). SQLite reuses the freed pages for
//! new rows; the file does not shrink, it stops growing.
//!
//! A result deleted here and then sent again by an analyzer is stored again and re-sent with the
//! same deterministic UIDs: DHIS2 updates the object, it does not duplicate it.

use super::{Store, StoreError};
use std::time::Duration;
use time::OffsetDateTime;
use tracing::{info, warn};

/// Rows deleted per transaction, so the writer never holds one long transaction.
const BATCH: usize = 1_000;

/// Delete up to [`BATCH`] delivered messages received before `cutoff` (RFC 3339 UTC, the same
/// form as `messages.received_at`, so the text comparison is a time comparison).
pub fn prune_delivered(tx: &rusqlite::Transaction<'_>, cutoff: &str) -> rusqlite::Result<usize> {
    tx.execute(
        "DELETE FROM messages WHERE id IN (
             SELECT id FROM messages WHERE status = 'delivered' AND received_at < ?1
             ORDER BY id LIMIT ?2)",
        rusqlite::params![cutoff, BATCH as i64],
    )
}

/// The cutoff for `keep` before `now`.
pub fn cutoff(now: OffsetDateTime, keep: Duration) -> String {
    let then = now - keep;
    then.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Run once an hour (and once at start): delete what is older than `keep`.
pub async fn run(store: Store, keep: Duration) {
    loop {
        match prune_all(&store, keep).await {
            Ok(0) => {}
            Ok(n) => {
                info!(deleted = n, keep = %crate::config::format_duration(keep), "retention: old delivered results deleted")
            }
            Err(e) => warn!(error = %e, "retention pass failed; retrying in an hour"),
        }
        tokio::time::sleep(Duration::from_secs(3_600)).await;
    }
}

async fn prune_all(store: &Store, keep: Duration) -> Result<usize, StoreError> {
    let cut = cutoff(OffsetDateTime::now_utc(), keep);
    let mut total = 0;
    loop {
        let c = cut.clone();
        let n = store.write(move |tx| prune_delivered(tx, &c)).await?;
        total += n;
        if n < BATCH {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::SourceId;
    use crate::store::{NewMessage, ProtocolKind, Reader, WriterSettings};

    fn msg(i: usize) -> NewMessage {
        NewMessage {
            source: SourceId("astm-1".into()),
            protocol: ProtocolKind::Astm,
            wire: format!("H|{i}").into_bytes(),
            text: format!("H|{i}").into_bytes(),
            observations: vec![],
            parse_errors: vec![],
        }
    }

    #[tokio::test]
    async fn only_old_delivered_messages_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("p.db");
        let store = Store::open(&db, WriterSettings::default()).unwrap();
        for i in 0..6 {
            store.commit(msg(i)).await.unwrap();
        }
        // Rows 1–3 delivered, 4 rejected, 5 and 6 still waiting; 1, 2, 4, 5 are a year old.
        store
            .write(|tx| {
                tx.execute_batch(
                    "UPDATE messages SET status = 'delivered' WHERE id IN (1, 2, 3);
                     UPDATE messages SET status = 'rejected' WHERE id = 4;
                     UPDATE messages SET received_at = '2025-01-01T00:00:00Z' WHERE id IN (1, 2, 4, 5);",
                )
            })
            .await
            .unwrap();
        let deleted = prune_all(&store, Duration::from_secs(90 * 86_400))
            .await
            .unwrap();
        assert_eq!(deleted, 2);
        let left: Vec<i64> = Reader::open(&db)
            .unwrap()
            .messages(None, 100)
            .unwrap()
            .iter()
            .map(|m| m.id.0)
            .collect();
        assert_eq!(left, [6, 5, 4, 3]);
    }

    #[test]
    fn cutoff_is_rfc3339_utc_like_received_at() {
        let now = time::macros::datetime!(2026-11-22 10:00:00 UTC);
        assert_eq!(
            cutoff(now, Duration::from_secs(86_400)),
            "2026-11-21T10:00:00Z"
        );
    }
}
