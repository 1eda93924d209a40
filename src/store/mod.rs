//! The durable buffer: one SQLite writer thread, numbered migrations, and read queries.
//!
//! Every ingest path calls [`Store::commit`] and replies to the device only after it returns
//! `Ok`: the message's wire bytes, text and observations are then in one committed transaction
//! with `synchronous=FULL` (the WAL is fsynced at commit). Commits from all connections are
//! grouped: the writer takes every request waiting in its queue (up to `max_batch`) into one
//! transaction and one fsync, so eight analyzers cost one disk flush, not eight.
//!
//! Writes of derived state — renders, delivery outcomes ([`Store::write_derived`]) — commit with
//! `synchronous=NORMAL`: WAL order keeps them atomic and consistent, they survive the process
//! being killed, and the next durable commit (or checkpoint) carries them to the disk. A power
//! cut can undo the last of them; what that means is the same as a crash just before them: a
//! message goes back to `stored` and renders again into the same request, a delivered request
//! goes out again with the same deterministic UIDs and DHIS2 updates the object instead of
//! adding one. Before this, each render and each delivery mark cost an fsync of its own, and
//! a device's commit waited behind them (benches/results: ingest under sync).
//! See docs/decisions.md for why one writer, why FULL, and why dedupe by content hash.

use crate::record::{Observation, RecordId, SourceId};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::thread;
use tokio::sync::{mpsc, oneshot};

pub mod files;
pub mod flood;
pub mod history;
pub mod outbox;
pub mod retention;
pub mod web;

/// The numbered migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_outbox.sql"),
    include_str!("migrations/0003_file_progress.sql"),
    include_str!("migrations/0004_web.sql"),
    include_str!("migrations/0005_counts.sql"),
    include_str!("migrations/0006_web_history.sql"),
    include_str!("migrations/0007_destinations.sql"),
    include_str!("migrations/0008_exchanges.sql"),
];

/// Lifecycle of a stored message. Mirrors the CHECK constraint on `messages.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordStatus {
    /// Stored and parsed; waiting for a Tempr.
    Received,
    /// Stored raw, but the parser reported errors (see `parse_errors`).
    Invalid,
    /// No Tempr matches it (kept; a new Tempr or `pocketgate rerender` picks it up).
    Unmatched,
    /// A Tempr failed on it (the error is on the message); fix the Tempr and re-render.
    RenderFailed,
    /// A Tempr produced its request(s); waiting in the outbox.
    Rendered,
    /// DHIS2 accepted it.
    Delivered,
    /// DHIS2 refused it for a reason retrying will not fix.
    Rejected,
}

impl RecordStatus {
    pub const ALL: [RecordStatus; 7] = [
        Self::Received,
        Self::Invalid,
        Self::Unmatched,
        Self::RenderFailed,
        Self::Rendered,
        Self::Delivered,
        Self::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Invalid => "invalid",
            Self::Unmatched => "unmatched",
            Self::RenderFailed => "render_failed",
            Self::Rendered => "rendered",
            Self::Delivered => "delivered",
            Self::Rejected => "rejected",
        }
    }
}

impl FromStr for RecordStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown status {s:?} (one of {})", names.join(", "))
            })
    }
}

/// Protocols whose messages the store holds. Mirrors the CHECK constraint on `messages.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolKind {
    Astm,
    Hl7,
    Poct1,
    Http,
    Mqtt,
    Modbus,
    File,
}

impl ProtocolKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Astm => "astm",
            Self::Hl7 => "hl7",
            Self::Poct1 => "poct1",
            Self::Http => "http",
            Self::Mqtt => "mqtt",
            Self::Modbus => "modbus",
            Self::File => "file",
        }
    }
}

/// A complete message, ready to be made durable.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub source: SourceId,
    pub protocol: ProtocolKind,
    /// Bytes as they were framed on the wire.
    pub wire: Vec<u8>,
    /// The reassembled message text the parser read.
    pub text: Vec<u8>,
    pub observations: Vec<Observation>,
    /// Parser errors, each naming its record/field; non-empty makes the status `invalid`.
    pub parse_errors: Vec<String>,
}

impl NewMessage {
    /// SHA-256 of the reassembled text. A device that resends a message it was not sure we got
    /// (the ACK was lost, the gateway crashed after the commit) sends the same text again, so the
    /// resend maps to the stored row instead of a second record. Wire bytes are not hashed: frame
    /// numbers may differ between the two attempts.
    pub fn content_hash(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        Sha256::digest(&self.text).into()
    }
}

/// What a commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub id: RecordId,
    /// The same message (same source and content hash) was already stored; nothing was added.
    pub duplicate: bool,
}

#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    #[error("opening the store at {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("store migration {number} failed: {source}")]
    Migration {
        number: usize,
        source: rusqlite::Error,
    },
    #[error(
        "the store was written by a newer pocketgate (schema {found}, this build knows {known})"
    )]
    TooNew { found: usize, known: usize },
    #[error("committing a message from {source_id}: {error}")]
    Commit {
        source_id: SourceId,
        error: rusqlite::Error,
    },
    #[error("store query failed: {0}")]
    Query(#[from] rusqlite::Error),
    #[error("the store writer has stopped")]
    WriterGone,
    #[error(
        "{source_id} sent more unparseable messages than are kept ({} at once, then one a \
         minute); this one was not stored",
        flood::INVALID_BURST
    )]
    InvalidFlood { source_id: SourceId },
}

impl StoreError {
    /// Whether the caller may try the same commit again later (the device is NAKed meanwhile).
    /// Disk full, I/O errors and a busy database clear up; a schema mismatch does not.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Commit { .. } | Self::Query(_) | Self::InvalidFlood { .. }
        )
    }
}

/// Tuning for the writer; from `[store]` in the config.
#[derive(Debug, Clone, Copy)]
pub struct WriterSettings {
    pub max_batch: usize,
    pub queue: usize,
}

impl Default for WriterSettings {
    fn default() -> Self {
        Self {
            max_batch: 256,
            queue: 1024,
        }
    }
}

type Reply = oneshot::Sender<Result<Committed, StoreError>>;
/// Delivers a write's result once its transaction's fate is known (`Some` = COMMIT failed).
type Finish = Box<dyn FnOnce(Option<rusqlite::Error>) + Send>;
/// A write closure: does its work, says whether to commit, and how to report the outcome.
type Exec = Box<dyn FnOnce(&rusqlite::Transaction<'_>) -> (bool, Finish) + Send>;

/// How a `write` transaction reaches the disk (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// fsynced before the caller hears of the commit (`synchronous=FULL`).
    Durable,
    /// Recomputable or safe to repeat: committed without waiting for the disk (`NORMAL`).
    Derived,
}

/// Work for the writer thread.
enum Job {
    /// A received message; commits are grouped.
    Commit(NewMessage, Reply),
    /// Any other write (rendering, sync outcomes), in its own transaction.
    Exec(Exec, Durability),
}

/// Handle to the single writer thread. Cheap to clone; the thread stops when every handle is dropped.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Job>,
    path: PathBuf,
    /// Bumped after every committed write; later stages wait on it instead of polling.
    changes: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    /// Per-source budget of stored invalid messages ([`flood`]).
    invalid: std::sync::Arc<std::sync::Mutex<flood::InvalidBudget>>,
    /// The last commit that failed (disk full, I/O error), for the dashboard.
    last_failure: std::sync::Arc<std::sync::Mutex<Option<CommitFailure>>>,
}

/// A commit that failed: when (RFC 3339, UTC) and SQLite's words ("database or disk is full").
#[derive(Debug, Clone, serde::Serialize)]
pub struct CommitFailure {
    pub at: String,
    pub error: String,
}

impl Store {
    /// Open (creating if needed) the database, run migrations and start the writer thread.
    pub fn open(path: &Path, settings: WriterSettings) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // A missing directory surfaces as the open error below, which names the path.
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = open_connection(path)?;
        migrate(&conn)?;
        let (tx, rx) = mpsc::channel(settings.queue.max(1));
        let max_batch = settings.max_batch.max(1);
        let changes = std::sync::Arc::new(tokio::sync::watch::Sender::new(0u64));
        let notify = changes.clone();
        let spawn_err = |e: std::io::Error| StoreError::Open {
            path: path.to_owned(),
            source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
        };
        // The checkpointer ends once the writer has (it holds only a weak count of `writer`).
        let writer = std::sync::Arc::new(());
        let writer_gone = std::sync::Arc::downgrade(&writer);
        let checkpoint_path = path.to_owned();
        let checkpointer = thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || checkpoint_loop(&checkpoint_path, &writer_gone))
            .map_err(spawn_err)?
            .thread()
            .clone();
        thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                writer_loop(conn, rx, max_batch, &notify, &checkpointer);
                drop(writer);
                checkpointer.unpark();
            })
            .map_err(spawn_err)?;
        Ok(Store {
            tx,
            path: path.to_owned(),
            changes,
            invalid: Default::default(),
            last_failure: Default::default(),
        })
    }

    /// Give back the writer connection's page cache (`sqlite3_db_release_memory`). The pipeline
    /// calls this, with [`return_freed_heap`], when a burst of work ends, so a drained backlog does
    /// not leave the process at its peak size (issue 7: RSS returns near idle).
    pub async fn release_memory(&self) -> Result<(), StoreError> {
        self.write(|tx| tx.release_memory()).await
    }

    /// A receiver that wakes whenever the writer committed something.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Run `f` on the writer thread inside one transaction, committed when `f` returns `Ok` and
    /// rolled back when it returns `Err`; on the disk (fsynced) when this returns.
    pub async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<R> + Send + 'static,
    {
        self.write_with(Durability::Durable, f).await
    }

    /// [`Store::write`] for derived state only (renders, delivery outcomes): committed without
    /// waiting for the disk. Never for anything a device or a person was told is stored.
    pub async fn write_derived<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<R> + Send + 'static,
    {
        self.write_with(Durability::Derived, f).await
    }

    async fn write_with<R, F>(&self, durability: Durability, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<R> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job: Exec = Box::new(move |tx| {
            let result = f(tx);
            let ok = result.is_ok();
            let finish: Finish = Box::new(move |commit_error| {
                let _ = reply.send(match commit_error {
                    Some(e) => Err(e),
                    None => result,
                });
            });
            (ok, finish)
        });
        self.tx
            .send(Job::Exec(job, durability))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        rx.await
            .map_err(|_| StoreError::WriterGone)?
            .map_err(StoreError::Query)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Make `msg` durable. Returns after the transaction holding it has committed (and fsynced),
    /// or with the error that stopped it; in that case nothing of `msg` is stored.
    /// A message with parse errors counts against its source's [`flood`] budget first.
    pub async fn commit(&self, msg: NewMessage) -> Result<Committed, StoreError> {
        // MQTT is exempt: a refused message would be redelivered by the broker in a loop, and
        // its publishers are authenticated by the broker, whose own queue limits bound a flood.
        if !msg.parse_errors.is_empty() && msg.protocol != ProtocolKind::Mqtt {
            let mut budget = self
                .invalid
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !budget.take(&msg.source, std::time::Instant::now()) {
                return Err(StoreError::InvalidFlood {
                    source_id: msg.source,
                });
            }
        }
        let (reply, rx) = oneshot::channel();
        // The queue is bounded: when the disk is slower than the analyzers, ingest waits here
        // (the device waits for its ACK) instead of memory growing.
        self.tx
            .send(Job::Commit(msg, reply))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        let result = rx.await.map_err(|_| StoreError::WriterGone)?;
        if let Err(e) = &result {
            let at = time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            *self
                .last_failure
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(CommitFailure {
                at,
                error: e.to_string(),
            });
        }
        result
    }

    /// The last commit that failed since the gateway started (the device was NAKed).
    pub fn last_failure(&self) -> Option<CommitFailure> {
        self.last_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Return the heap pages freed after a burst of work to the kernel. glibc keeps freed memory
/// in its per-thread arenas; after a 100k backlog that was ~10 MiB of RSS the box never used again
/// (benches/results: "RSS after drain"). `malloc_trim` releases free chunks of every arena.
pub fn return_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own free lists; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let err = |source| StoreError::Open {
        path: path.to_owned(),
        source,
    };
    let conn = Connection::open(path).map_err(err)?;
    // WAL: readers (CLI, web UI) never block the writer. FULL: the WAL is fsynced at every
    // commit, so a power cut after the ACK cannot lose the message (docs/decisions.md).
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(err)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(err)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(err)?;
    // After a checkpoint the WAL file is cut back to 1 MiB instead of keeping its high-water
    // size (4 MiB and more after a burst): room a small SD card's commits need.
    conn.pragma_update(None, "journal_size_limit", 1_048_576)
        .map_err(err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(err)?;
    // The writer checkpoints only as a backstop: [`checkpoint_loop`] does it on its own
    // connection, so that a device's commit does not wait while ~1000 pages are copied into the
    // database file and that file is fsynced (peer bench: several times a second under load).
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)
        .map_err(err)?;
    // The writer's hot statements (commit, render, delivery marks) are prepared once and kept
    // (`prepare_cached`); before, parsing SQL was a third of the writer's time under load.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// WAL pages after which the writer itself checkpoints (when [`checkpoint_loop`] is behind or
/// gone); SQLite's default is 1000.
const WRITER_CHECKPOINT_PAGES: i64 = 4000;
/// How long the checkpointer lets commits gather after one woke it.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Copy committed WAL pages into the database file off the writer thread: woken by the writer
/// after its commits, at most every [`CHECKPOINT_EVERY`], a PASSIVE checkpoint (never waits for
/// readers or the writer; what it cannot copy yet is copied next time). The WAL then restarts
/// from its beginning at the writer's next transaction and stays small, so the writer's own
/// backstop checkpoint (`WRITER_CHECKPOINT_PAGES`) does not fire under a steady flow. Ends when
/// the writer does.
fn checkpoint_loop(path: &Path, writer: &std::sync::Weak<()>) {
    let mut conn: Option<Connection> = None;
    loop {
        // Woken (unparked) by the writer after its commits, and once when it ends.
        thread::park();
        if writer.strong_count() == 0 {
            return;
        }
        thread::sleep(CHECKPOINT_EVERY);
        let c = match conn.take() {
            Some(c) => Ok(c),
            None => Connection::open(path)
                .and_then(|c| c.busy_timeout(std::time::Duration::ZERO).map(|()| c)),
        };
        // A checkpoint that cannot run (database busy, I/O error) is tried again at the next
        // wake-up on a fresh connection; the writer's backstop bounds the WAL meanwhile.
        // (A connection that cannot open — out of file descriptors — is tried again likewise.)
        conn = c
            .ok()
            .filter(|c| checkpoint(c, "PRAGMA wal_checkpoint(PASSIVE)").is_ok());
    }
}

/// Prepared statements kept per connection (rusqlite's default is 16; the writer uses ~30).
const STATEMENT_CACHE: usize = 48;

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let done: usize = conn
        .pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
        .map_err(StoreError::Query)? as usize;
    if done > MIGRATIONS.len() {
        return Err(StoreError::TooNew {
            found: done,
            known: MIGRATIONS.len(),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        let number = i + 1;
        let run = || -> rusqlite::Result<()> {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", number as i64)?;
            tx.commit()
        };
        run().map_err(|source| StoreError::Migration { number, source })?;
    }
    Ok(())
}

fn writer_loop(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    max_batch: usize,
    changes: &tokio::sync::watch::Sender<u64>,
    checkpoint: &thread::Thread,
) {
    let mut batch = Vec::with_capacity(max_batch);
    let mut held: Option<(Exec, Durability)> = None;
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Exec(f, durability) => {
                    held = Some((f, durability));
                    break;
                }
                Job::Commit(msg, reply) => batch.push((msg, reply)),
            }
            if batch.len() < max_batch {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            let results = commit_batch(&mut conn, &batch);
            if results.iter().any(Result::is_err) {
                reclaim_wal(&conn);
            }
            let mut stored = false;
            for ((msg, reply), result) in batch.drain(..).zip(results) {
                stored |= matches!(
                    result,
                    Ok(Committed {
                        duplicate: false,
                        ..
                    })
                );
                let result = result.map_err(|error| StoreError::Commit {
                    source_id: msg.source.clone(),
                    error,
                });
                // The ingest side may have gone (connection dropped): the row is stored regardless,
                // and the device's resend will be recognised as a duplicate.
                let _ = reply.send(result);
            }
            if stored {
                changes.send_modify(|n| *n += 1);
                checkpoint.unpark();
            }
        }
        // Only a committed write wakes the stages: a failed one (disk full) changed nothing, and
        // waking them made them retry their own writes at once, hundreds of times a second.
        if let Some((f, durability)) = held.take() {
            match run_exec(&mut conn, f, durability) {
                Some(true) => {
                    changes.send_modify(|n| *n += 1);
                    checkpoint.unpark();
                }
                Some(false) => {}
                None => return,
            }
        }
    }
}

/// After a failed commit (typically "database or disk is full"): checkpoint the WAL into the
/// database file and truncate it. On a small data partition the WAL can take the space a commit
/// needs, and SQLite only checkpoints after a commit succeeds — without this the writer stayed
/// "full" after space came back (torture: disk full, seen in CI). A checkpoint that cannot run
/// yet (no space for the database to grow, a reader in the way) is simply tried again next time.
fn reclaim_wal(conn: &Connection) {
    let _ = checkpoint(conn, "PRAGMA wal_checkpoint(TRUNCATE)");
}

/// Run one checkpoint pragma; a checkpoint that did not run is logged (at debug: the next one
/// catches up) and returned.
fn checkpoint(conn: &Connection, pragma: &'static str) -> rusqlite::Result<()> {
    let r = conn.query_row(pragma, [], |_| Ok(()));
    if let Err(e) = &r {
        tracing::debug!(error = %e, pragma, "WAL checkpoint did not run");
    }
    r
}

/// Run one `Store::write` closure in its own transaction; its caller hears the result only after
/// the COMMIT (or rollback). A failed BEGIN drops the closure, so the caller sees `WriterGone`-like
/// failure through its closed reply channel and does the work again later.
/// Returns whether a transaction was committed; `None` when the writer must stop.
fn run_exec(conn: &mut Connection, f: Exec, durability: Durability) -> Option<bool> {
    let mut failed = false;
    let mut committed = false;
    let relaxed = durability == Durability::Derived
        && conn.pragma_update(None, "synchronous", "NORMAL").is_ok();
    match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(tx) => {
            let (ok, finish) = f(&tx);
            if ok {
                match tx.commit() {
                    Ok(()) => {
                        committed = true;
                        finish(None)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "store write could not commit");
                        finish(Some(e));
                        failed = true;
                    }
                }
            } else {
                // Dropping the uncommitted transaction rolls it back.
                drop(tx);
                finish(None);
            }
        }
        Err(e) => tracing::error!(error = %e, "store write could not begin"),
    }
    if relaxed && let Err(e) = conn.pragma_update(None, "synchronous", "FULL") {
        // Every later commit would skip its fsync: no device may be ACKed on this connection.
        // The writer stops; commits fail with WriterGone (devices get no ACK and resend).
        tracing::error!(error = %e, "store writer cannot restore synchronous=FULL; stopping");
        return None;
    }
    if failed {
        reclaim_wal(conn);
    }
    Some(committed)
}

/// One transaction for the whole batch: a message that cannot be inserted fails alone; a failed
/// COMMIT fails them all (none was acknowledged).
///
/// The batch is first inserted as it is; only when one of its messages fails is the transaction
/// rolled back and the batch inserted again with a savepoint per message. A savepoint per message
/// always copied every page each message touched into the statement journal (peer bench: ~4 % of
/// the writer), for an error that almost never happens.
fn commit_batch(
    conn: &mut Connection,
    batch: &[(NewMessage, Reply)],
) -> Vec<rusqlite::Result<Committed>> {
    let received_at = now_rfc3339();
    let mut isolate = false;
    loop {
        let mut tx = match begin(conn) {
            Ok(tx) => tx,
            Err(e) => return batch.iter().map(|_| Err(clone_err(&e))).collect(),
        };
        let mut results = Vec::with_capacity(batch.len());
        for (msg, _) in batch {
            let one = if isolate {
                tx.savepoint().and_then(|sp| {
                    let r = insert_message(&sp, msg, &received_at)?;
                    sp.commit()?;
                    Ok(r)
                })
            } else {
                insert_message(&tx, msg, &received_at)
            };
            let failed = one.is_err();
            results.push(one);
            if failed && !isolate {
                break;
            }
        }
        if !isolate && results.iter().any(Result::is_err) && !tx.is_autocommit() {
            // Roll back (drop) what this batch inserted; insert it again, each message on its own.
            isolate = true;
            continue;
        }
        return finish_batch(tx, batch, results);
    }
}

/// COMMIT the batch, or fail every message of it when its transaction is gone.
fn finish_batch(
    tx: rusqlite::Transaction<'_>,
    batch: &[(NewMessage, Reply)],
    results: Vec<rusqlite::Result<Committed>>,
) -> Vec<rusqlite::Result<Committed>> {
    if tx.is_autocommit() {
        // SQLITE_FULL and I/O errors roll the whole transaction back by themselves (COMMIT
        // would only say "no transaction is active"): every message of the batch fails with the
        // insert's own error ("database or disk is full").
        let cause = results
            .iter()
            .find_map(|r| r.as_ref().err())
            .map_or_else(|| rusqlite::Error::InvalidQuery, clone_err);
        return batch
            .iter()
            .zip(
                results
                    .into_iter()
                    .map(Some)
                    .chain(std::iter::repeat_with(|| None)),
            )
            .map(|(_, r)| Err(r.and_then(Result::err).unwrap_or_else(|| clone_err(&cause))))
            .collect();
    }
    match tx.commit() {
        Ok(()) => results,
        Err(e) => batch.iter().map(|_| Err(clone_err(&e))).collect(),
    }
}

fn begin(conn: &mut Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
}

fn clone_err(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, msg) => {
            rusqlite::Error::SqliteFailure(*code, msg.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}

fn insert_message(
    conn: &Connection,
    msg: &NewMessage,
    received_at: &str,
) -> rusqlite::Result<Committed> {
    let hash = msg.content_hash();
    let existing: Option<i64> = conn
        .prepare_cached("SELECT id FROM messages WHERE source = ?1 AND content_hash = ?2")?
        .query_row(params![msg.source.0, &hash[..]], |r| r.get(0))
        .optional()?;
    if let Some(id) = existing {
        return Ok(Committed {
            id: RecordId(id),
            duplicate: true,
        });
    }
    let (status, errors) = if msg.parse_errors.is_empty() {
        (RecordStatus::Received, None)
    } else {
        (RecordStatus::Invalid, Some(msg.parse_errors.join("\n")))
    };
    conn.prepare_cached("INSERT INTO messages (source, protocol, received_at, content_hash, wire, text, parse_errors, status)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?
        .execute(params![
            msg.source.0,
            msg.protocol.as_str(),
            received_at,
            &hash[..],
            msg.wire,
            msg.text,
            errors,
            status.as_str()
        ])?;
    let id = conn.last_insert_rowid();
    let mut stmt = conn.prepare_cached(
        "INSERT INTO observations (message_id, seq, sample_id, patient_id, test_code, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (seq, obs) in msg.observations.iter().enumerate() {
        let mut obs = obs.clone();
        obs.source = msg.source.0.clone();
        obs.received_at = Some(received_at.to_owned());
        obs.raw_id = Some(RecordId(id));
        let body = serde_json::to_string(&obs)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        stmt.execute(params![
            id,
            seq as i64,
            obs.sample_id,
            obs.patient_id,
            obs.test_code,
            body
        ])?;
    }
    Ok(Committed {
        id: RecordId(id),
        duplicate: false,
    })
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A stored message as `pocketgate records` and (later) the web UI list it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredMessage {
    pub id: RecordId,
    pub source: String,
    pub protocol: String,
    pub received_at: String,
    pub status: String,
    pub parse_errors: Option<String>,
    /// Why rendering or delivery failed (Tempr error, DHIS2 error code and message).
    pub error: Option<String>,
    pub observations: Vec<Observation>,
}

/// Read-only queries, on their own connection (WAL lets them run beside the writer).
pub struct Reader {
    conn: Connection,
}

impl Reader {
    pub fn open(path: &Path) -> Result<Reader, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Reader { conn })
    }

    /// Give back this connection's page cache (see [`Store::release_memory`]).
    pub fn release_memory(&self) -> Result<(), StoreError> {
        Ok(self.conn.release_memory()?)
    }

    /// Newest first, at most `limit`, optionally only one status.
    pub fn messages(
        &self,
        status: Option<RecordStatus>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, source, protocol, received_at, status, parse_errors, error FROM messages
             WHERE (?1 IS NULL OR status = ?1) ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![status.map(|s| s.as_str()), limit as i64], |r| {
            Ok(StoredMessage {
                id: RecordId(r.get(0)?),
                source: r.get(1)?,
                protocol: r.get(2)?,
                received_at: r.get(3)?,
                status: r.get(4)?,
                parse_errors: r.get(5)?,
                error: r.get(6)?,
                observations: Vec::new(),
            })
        })?;
        let mut out = rows.collect::<Result<Vec<_>, _>>()?;
        let mut obs = self
            .conn
            .prepare("SELECT body FROM observations WHERE message_id = ?1 ORDER BY seq")?;
        for m in &mut out {
            let bodies = obs.query_map([m.id.0], |r| r.get::<_, String>(0))?;
            for body in bodies {
                let body = body?;
                let o: Observation = serde_json::from_str(&body).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        0,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })?;
                m.observations.push(o);
            }
        }
        Ok(out)
    }

    /// The read connection, for the stage queries in [`outbox`].
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Number of stored messages (all statuses), from the trigger-kept counts.
    pub fn count(&self) -> Result<usize, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT coalesce(sum(n), 0) FROM message_status_counts")?
            .query_row([], |r| r.get::<_, i64>(0))? as usize)
    }

    /// The stored text of every message from `source`, oldest first (tests and exports).
    pub fn texts(&self, source: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT text FROM messages WHERE source = ?1 ORDER BY id")?;
        let rows = stmt.query_map([source], |r| r.get::<_, Vec<u8>>(0))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// `PRAGMA integrity_check` → "ok" on a healthy file.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        Ok(self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }
}

/// The detail lines of `EXPLAIN QUERY PLAN sql` ("SEARCH messages USING INDEX …"), for tests
/// that pin a query to its index.
#[cfg(test)]
pub(crate) fn query_plan(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Vec<String> {
    conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .unwrap()
        .query_map(params, |r| r.get::<_, String>(3))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(text: &str) -> NewMessage {
        NewMessage {
            source: SourceId("gx".into()),
            protocol: ProtocolKind::Astm,
            wire: text.as_bytes().to_vec(),
            text: text.as_bytes().to_vec(),
            observations: vec![Observation {
                test_code: "MTB".into(),
                value: Some("DETECTED".into()),
                sample_id: Some("S1".into()),
                ..Default::default()
            }],
            parse_errors: vec![],
        }
    }

    #[tokio::test]
    async fn commit_is_readable_from_a_fresh_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pg.db");
        let store = Store::open(&path, WriterSettings::default()).unwrap();
        let c = store.commit(msg("H|\\^&\rL|1|N\r")).await.unwrap();
        assert!(!c.duplicate);
        let r = Reader::open(&path).unwrap();
        let rows = r.messages(None, 10).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].observations[0].raw_id, Some(c.id));
        assert_eq!(rows[0].observations[0].source, "gx");
        assert!(rows[0].observations[0].received_at.is_some());
        assert_eq!(r.integrity_check().unwrap(), "ok");
    }

    /// SQLite's own "database or disk is full" (the writer's file capped at its current size
    /// with max_page_count): the commit fails, nothing is stored, and the dashboard's
    /// `last_failure` says why.
    #[tokio::test]
    async fn a_full_disk_fails_the_commit_and_is_kept_as_the_last_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pg.db");
        let store = Store::open(&path, WriterSettings::default()).unwrap();
        store.commit(msg("H|\\^&\rL|1|N\r")).await.unwrap();
        assert!(store.last_failure().is_none());
        store
            .write(|tx| {
                let pages: i64 = tx.query_row("PRAGMA page_count", [], |r| r.get(0))?;
                tx.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                    r.get::<_, i64>(0)
                })
            })
            .await
            .unwrap();
        let big = format!("H|\\^&\rR|1|^^^X|{}\rL|1|N\r", "7".repeat(200_000));
        let e = store.commit(msg(&big)).await.unwrap_err();
        assert!(e.is_transient(), "{e}");
        let f = store.last_failure().expect("the failure is kept");
        assert!(f.error.contains("database or disk is full"), "{f:?}");
        assert!(f.at.ends_with('Z') && f.at.len() >= 20, "{f:?}");
        assert_eq!(
            Reader::open(&path)
                .unwrap()
                .messages(None, 10)
                .unwrap()
                .len(),
            1
        );
    }

    #[tokio::test]
    async fn resend_of_the_same_text_is_a_duplicate_not_a_second_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pg.db");
        let store = Store::open(&path, WriterSettings::default()).unwrap();
        let a = store
            .commit(msg("H|\\^&\rR|1|^^^X|1\rL|1|N\r"))
            .await
            .unwrap();
        let b = store
            .commit(msg("H|\\^&\rR|1|^^^X|1\rL|1|N\r"))
            .await
            .unwrap();
        assert_eq!(a.id, b.id);
        assert!(b.duplicate);
        assert_eq!(Reader::open(&path).unwrap().count().unwrap(), 1);
    }

    /// Derived writes skip the fsync; every commit after them (a device's message, a person's
    /// change) is fsynced again, and what the derived write did is there.
    #[tokio::test]
    async fn derived_writes_relax_the_fsync_only_for_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pg.db");
        let store = Store::open(&path, WriterSettings::default()).unwrap();
        let sync = |tx: &rusqlite::Transaction<'_>| {
            tx.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0))
        };
        assert_eq!(store.write(sync).await.unwrap(), 2, "FULL");
        let during = store
            .write_derived(move |tx| {
                outbox::set_state(tx, "probe", Some("derived"))?;
                sync(tx)
            })
            .await
            .unwrap();
        assert_eq!(during, 1, "NORMAL inside the derived write");
        assert_eq!(store.write(sync).await.unwrap(), 2, "FULL again after it");
        let m = store
            .commit(msg("H|\\^&\rR|1|^^^X|1\rL|1|N\r"))
            .await
            .unwrap();
        assert!(!m.duplicate);
        let r = Reader::open(&path).unwrap();
        assert_eq!(
            outbox::get_state(r.conn(), "probe").unwrap().as_deref(),
            Some("derived")
        );
        assert_eq!(r.count().unwrap(), 1);
    }

    #[tokio::test]
    async fn parse_errors_make_the_message_invalid_but_keep_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pg.db");
        let store = Store::open(&path, WriterSettings::default()).unwrap();
        let mut m = msg("garbage\r");
        m.parse_errors = vec!["record 1: no H record".into()];
        store.commit(m).await.unwrap();
        let r = Reader::open(&path).unwrap();
        let rows = r.messages(Some(RecordStatus::Invalid), 10).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].parse_errors.as_deref(),
            Some("record 1: no H record")
        );
        assert!(
            r.messages(Some(RecordStatus::Received), 10)
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn concurrent_commits_are_grouped_and_all_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pg.db");
        let store = Store::open(
            &path,
            WriterSettings {
                max_batch: 64,
                queue: 256,
            },
        )
        .unwrap();
        let mut tasks = Vec::new();
        for i in 0..200 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                s.commit(msg(&format!("H|\\^&\rR|1|^^^X|{i}\rL|1|N\r")))
                    .await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(Reader::open(&path).unwrap().count().unwrap(), 200);
    }

    #[tokio::test]
    async fn committed_pages_reach_the_database_file_without_the_writer_checkpointing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pg.db");
        let store = Store::open(&path, WriterSettings::default()).unwrap();
        let size = || std::fs::metadata(&path).unwrap().len();
        let before = size();
        // ~400 KiB of text: ~100 pages, far below the writer's own threshold (and SQLite's
        // default of 1000): only the checkpointer can have copied them into the database file.
        for i in 0..100 {
            let filler = "x".repeat(4000);
            store
                .commit(msg(&format!("H|\\^&\rR|1|^^^X|{i}|{filler}\rL|1|N\r")))
                .await
                .unwrap();
        }
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while size() < before + 100 * 4000 {
            assert!(
                std::time::Instant::now() < until,
                "database file still {} bytes (was {before}): no background checkpoint",
                size()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn a_message_the_database_refuses_fails_alone_in_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pg.db");
        let store = Store::open(&path, WriterSettings::default()).unwrap();
        // A temp trigger lives on the writer's connection only: it refuses one text.
        store
            .write(|tx| {
                tx.execute_batch(
                    "CREATE TEMP TRIGGER refuse BEFORE INSERT ON messages
                     WHEN CAST(NEW.text AS TEXT) LIKE '%|13\r%' BEGIN SELECT RAISE(ABORT, 'refused here'); END",
                )
            })
            .await
            .unwrap();
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let s = store.clone();
                tokio::spawn(async move {
                    s.commit(msg(&format!("H|\\^&\rR|1|^^^X|{i}\rL|1|N\r")))
                        .await
                })
            })
            .collect();
        let mut refused = Vec::new();
        for (i, t) in tasks.into_iter().enumerate() {
            if let Err(e) = t.await.unwrap() {
                refused.push((i, e.to_string()));
            }
        }
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0].0, 13);
        assert!(refused[0].1.contains("refused here"), "{}", refused[0].1);
        let reader = Reader::open(&path).unwrap();
        assert_eq!(reader.count().unwrap(), 39);
        let stored: i64 = reader
            .conn()
            .query_row("SELECT count(*) FROM observations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, 39, "the refused message left no observation behind");
    }

    #[test]
    fn status_check_constraint_matches_the_enum() {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn).unwrap();
        for st in RecordStatus::ALL {
            conn.execute(
                "INSERT INTO messages (source, protocol, received_at, content_hash, wire, text, status)
                 VALUES ('s', 'astm', 't', randomblob(32), x'', ?1, ?2)",
                params![st.as_str().as_bytes(), st.as_str()],
            )
            .unwrap();
        }
        let bad = conn.execute(
            "INSERT INTO messages (source, protocol, received_at, content_hash, wire, text, status)
             VALUES ('s', 'astm', 't', randomblob(32), x'', x'01', 'lost')",
            [],
        );
        assert!(
            bad.is_err(),
            "CHECK must refuse a status the code does not know"
        );
    }

    #[test]
    fn newer_schema_is_refused() {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(
            migrate(&conn),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }
}
