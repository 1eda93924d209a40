//! `transport = "folder"`: result files an analyzer exports to a USB stick or a shared folder
//! (protocols.md §1.5), read by polling. Polling is deliberate: inotify says nothing about a vfat
//! stick that is pulled and plugged back, or about an SMB/CIFS share written by another machine.
//!
//! Rules, each for a reason:
//! - **Read-only.** A file is opened for reading only and never modified, moved or deleted:
//!   the stick is the instrument's archive, and the lab may need it again.
//! - **Settled files only.** A file is read once its size and mtime were the same at two scans
//!   in a row; a file still being written waits.
//! - **Only complete rows.** Bytes up to the last line end are read; a last line without its
//!   end waits until the file has been unchanged for three scans (a one-shot export without a
//!   final newline is then read whole).
//! - **Each row once, durably.** The store keeps, per file, how many bytes were stored and the
//!   SHA-256 of those bytes (table `file_progress`, migration 0003), written in the SAME
//!   transaction as the message that holds them. A crash before the commit leaves neither (the
//!   rows are read again); after it, both (they are not). When the file grows (an instrument
//!   appending to a daily CSV) and its first `consumed` bytes still hash the same, only the new
//!   complete rows are read, stored with the file's header lines in front so the stored text
//!   decodes on its own (`wire` holds exactly the new bytes). When the prefix no longer matches,
//!   the file was replaced and is read from the start. The store's (source, content hash)
//!   dedupe makes the same file copied twice, or seen again after a re-plug, one record.
//! - **A bad file does not block the others.** It is stored as an `invalid` record with its
//!   error (line and column), and its progress moves on; editing it makes it new again.
//! - **The folder may vanish** (stick pulled): the scan logs it once and keeps polling.

use super::SourceCtx;
use crate::config::Protocol;
use crate::config::export::FolderSettings;
use crate::protocol::export::{self, ExportMapping};
use crate::store::files::FileProgress;
use crate::store::{NewMessage, ProtocolKind, Reader};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::UNIX_EPOCH;
use tracing::{debug, info, warn};

/// Size and mtime of a file at one scan, and for how many scans in a row they stayed the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    size: u64,
    mtime_ns: i64,
    unchanged_scans: u32,
}

/// Scans a file must look the same before a last line without its line end is read.
const TAIL_SCANS: u32 = 2;

/// The watcher of one folder source.
pub struct Folder {
    settings: FolderSettings,
    mapping: Arc<ExportMapping>,
    ctx: SourceCtx,
    seen: HashMap<String, Seen>,
    progress: Option<HashMap<String, FileProgress>>,
    missing: bool,
}

/// Run the source until the task is dropped.
pub async fn run(settings: FolderSettings, ctx: SourceCtx) {
    let Protocol::File(mapping) = &ctx.protocol else {
        warn!(source = %ctx.id, "a folder source needs protocol = \"file\"");
        return;
    };
    let mut folder = Folder {
        mapping: Arc::new((**mapping).clone()),
        settings,
        ctx,
        seen: HashMap::new(),
        progress: None,
        missing: false,
    };
    info!(source = %folder.ctx.id, path = %folder.settings.path.display(), pattern = %folder.settings.pattern, "watching folder");
    loop {
        folder.scan().await;
        tokio::time::sleep(folder.settings.scan_interval).await;
    }
}

impl Folder {
    /// One pass over the folder.
    pub async fn scan(&mut self) {
        if self.progress.is_none() {
            match Reader::open(self.ctx.store.path()).and_then(|r| r.file_progress(&self.ctx.id.0))
            {
                Ok(p) => self.progress = Some(p),
                Err(e) => {
                    warn!(source = %self.ctx.id, error = %e, "cannot read file progress; retrying");
                    return;
                }
            }
        }
        // Listing runs on a blocking thread: a hung network share must not stall the runtime
        // that other sources' connections run on.
        let (dir, pattern) = (self.settings.path.clone(), self.settings.pattern.clone());
        let listed = tokio::task::spawn_blocking(move || list(&dir, &pattern)).await;
        let files = match listed {
            Ok(Ok(files)) => files,
            Ok(Err(e)) => {
                if !self.missing {
                    warn!(source = %self.ctx.id, path = %self.settings.path.display(), error = %e,
                        "folder not readable (USB stick pulled?); waiting for it");
                    self.missing = true;
                }
                return;
            }
            Err(e) => {
                warn!(source = %self.ctx.id, error = %e, "folder listing failed");
                return;
            }
        };
        if self.missing {
            info!(source = %self.ctx.id, path = %self.settings.path.display(), "folder is back");
            self.missing = false;
        }
        let mut present = Vec::new();
        for (name, now) in files {
            let seen = match self.seen.get(&name) {
                Some(before) if before.size == now.size && before.mtime_ns == now.mtime_ns => {
                    Seen {
                        unchanged_scans: before.unchanged_scans.saturating_add(1),
                        ..now
                    }
                }
                _ => now,
            };
            self.seen.insert(name.clone(), seen);
            present.push(name);
        }
        self.seen.retain(|name, _| present.contains(name));
        present.sort();
        for name in present {
            let seen = self.seen[&name];
            if seen.unchanged_scans == 0 {
                continue; // new or still changing: look again next scan
            }
            let done = self.progress.as_ref().and_then(|p| p.get(&name));
            if done.is_some_and(|p| p.size == seen.size && p.mtime_ns == seen.mtime_ns) {
                continue;
            }
            self.read(&name, seen).await;
        }
    }

    async fn read(&mut self, name: &str, seen: Seen) {
        let path = self.settings.path.join(name);
        let max = self.mapping.limits.max_file_bytes;
        let done = self.progress.as_ref().and_then(|p| p.get(name)).cloned();
        let mapping = self.mapping.clone();
        let take_tail = seen.unchanged_scans >= TAIL_SCANS;
        let work = tokio::task::spawn_blocking(move || {
            plan(&path, seen, max, done.as_ref(), &mapping, take_tail)
        });
        let plan = match work.await {
            Ok(Ok(plan)) => plan,
            Ok(Err(e)) => {
                // Gone or unreadable between the listing and the read: try again next scan.
                debug!(source = %self.ctx.id, file = name, error = %e, "file not read");
                self.seen.remove(name);
                return;
            }
            Err(e) => {
                warn!(source = %self.ctx.id, file = name, error = %e, "file reader failed");
                return;
            }
        };
        let Some(plan) = plan else { return };
        if plan.replaced {
            warn!(source = %self.ctx.id, file = name,
                "file changed other than by appending; reading it from the start");
        }
        let msg = plan.chunk.map(|chunk| NewMessage {
            source: self.ctx.id.clone(),
            protocol: ProtocolKind::File,
            wire: chunk.wire,
            observations: chunk.decoded.observations.clone(),
            parse_errors: chunk.decoded.error_texts(),
            text: chunk.text,
        });
        let invalid = msg.as_ref().is_some_and(|m| !m.parse_errors.is_empty());
        match self
            .ctx
            .store
            .commit_file(&self.ctx.id, name.to_owned(), msg, plan.progress.clone())
            .await
        {
            Ok(committed) => {
                if invalid {
                    warn!(source = %self.ctx.id, file = name, "file stored as invalid");
                }
                if let Some(c) = committed {
                    debug!(source = %self.ctx.id, file = name, id = %c.id, duplicate = c.duplicate, "file stored");
                }
                if let Some(p) = self.progress.as_mut() {
                    p.insert(name.to_owned(), plan.progress);
                }
            }
            Err(e) => {
                // Nothing of it was stored; the next scan reads the same rows again.
                warn!(source = %self.ctx.id, file = name, error = %e, "cannot store file; retrying");
            }
        }
    }
}

/// The matching regular files of `dir` with their size and mtime.
fn list(dir: &Path, pattern: &str) -> std::io::Result<Vec<(String, Seen)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)?.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        // Hidden and temporary files (`.Trashes`, `~$…` of an open spreadsheet) are not exports.
        if name.starts_with('.') || name.starts_with('~') || !glob_match(pattern, &name) {
            continue;
        }
        // Follows a symbolic link to its file.
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i64);
        let seen = Seen {
            size: meta.len(),
            mtime_ns,
            unchanged_scans: 0,
        };
        files.push((name, seen));
    }
    Ok(files)
}

/// What to store for a file at this scan.
struct Plan {
    /// `None`: nothing new to store, only the progress (size/mtime) to record.
    chunk: Option<Chunk>,
    progress: FileProgress,
    replaced: bool,
}

struct Chunk {
    /// The new bytes as they are in the file.
    wire: Vec<u8>,
    /// What the decoder read: the file's header lines + the new bytes.
    text: Vec<u8>,
    decoded: export::Decoded,
}

/// Read the file and decide what is new. `Ok(None)`: nothing to do yet (a partial row, or the
/// file changed while being read).
fn plan(
    path: &Path,
    seen: Seen,
    max: usize,
    done: Option<&FileProgress>,
    mapping: &ExportMapping,
    take_tail: bool,
) -> std::io::Result<Option<Plan>> {
    use std::io::Read;
    // Opened read-only; at most one byte more than the limit is read.
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(max as u64 + 1).read_to_end(&mut bytes)?;
    // A file read only up to a row that is still unterminated is remembered with an impossible
    // size, so the next scans look at it again and take the last line once it has settled.
    let progress = |consumed: usize, bytes: &[u8]| FileProgress {
        consumed: consumed as u64,
        prefix_hash: Sha256::digest(&bytes[..consumed]).into(),
        size: if consumed == bytes.len() {
            seen.size
        } else {
            u64::MAX
        },
        mtime_ns: seen.mtime_ns,
    };
    if bytes.len() > max {
        // Too large to read: one invalid record naming the size (the text names the file, so
        // the record is distinct), and its size/mtime are remembered so it is not retried.
        let note = format!(
            "{}: {} bytes\n",
            path.file_name().unwrap_or_default().to_string_lossy(),
            seen.size
        );
        return Ok(Some(Plan {
            chunk: Some(Chunk {
                wire: Vec::new(),
                text: note.into_bytes(),
                decoded: export::Decoded {
                    observations: Vec::new(),
                    errors: vec![export::ExportError::TooLarge {
                        size: seen.size as usize,
                        max,
                    }],
                },
            }),
            progress: FileProgress {
                consumed: 0,
                prefix_hash: Sha256::digest([]).into(),
                size: seen.size,
                mtime_ns: seen.mtime_ns,
            },
            replaced: false,
        }));
    }
    if bytes.len() as u64 != seen.size {
        return Ok(None);
    }
    let kept = done.and_then(|p| {
        let n = usize::try_from(p.consumed).ok()?;
        let same =
            bytes.len() >= n && <[u8; 32]>::from(Sha256::digest(&bytes[..n])) == p.prefix_hash;
        same.then_some(n)
    });
    let replaced = done.is_some_and(|p| p.consumed > 0) && kept.is_none();
    let appendable = mapping.format.appendable() && !export::is_utf16(&bytes, mapping.encoding);
    let start = match kept {
        Some(n) if appendable || n == bytes.len() => n,
        _ => 0,
    };
    if start == bytes.len() {
        // Only the mtime changed (a touch, a re-plug): remember it, read nothing.
        return Ok(Some(Plan {
            chunk: None,
            progress: progress(start, &bytes),
            replaced: false,
        }));
    }
    let end = if !appendable || take_tail {
        bytes.len()
    } else {
        match export::complete_end(&bytes, start) {
            Some(end) => end,
            None => return Ok(None),
        }
    };
    let header = export::header_end(&bytes, mapping);
    let new = &bytes[start..end];
    if new.iter().all(u8::is_ascii_whitespace) || (start == 0 && end <= header) {
        // Nothing but line ends (or only the header so far): remember, store nothing.
        if start == 0 && end <= header && !take_tail {
            return Ok(None);
        }
        return Ok(Some(Plan {
            chunk: None,
            progress: progress(end, &bytes),
            replaced: false,
        }));
    }
    let text = if start == 0 || header == 0 || start < header {
        bytes[..end].to_vec()
    } else {
        let mut t = bytes[..header].to_vec();
        t.extend_from_slice(new);
        t
    };
    let decoded = export::decode(&text, mapping);
    Ok(Some(Plan {
        chunk: Some(Chunk {
            wire: new.to_vec(),
            text,
            decoded,
        }),
        progress: progress(end, &bytes),
        replaced,
    }))
}

/// `*` (any run) and `?` (one character), ASCII case-insensitive, over the whole name.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().map(|c| c.to_ascii_lowercase()).collect();
    let n: Vec<char> = name.chars().map(|c| c.to_ascii_lowercase()).collect();
    // Iterative matcher with one backtrack point (the last `*`): linear in practice.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::export::{Column, ExportFormat, Field};

    fn mapping() -> ExportMapping {
        ExportMapping {
            fields: vec![
                (Field::TestCode, Column::parse("Test").unwrap()),
                (Field::Value, Column::parse("Result").unwrap()),
            ],
            ..ExportMapping::new(ExportFormat::Csv)
        }
    }

    /// `plan` on `bytes` written to a temp file, as a scan that saw it settled would call it.
    fn run_plan(bytes: &[u8], done: Option<&FileProgress>, take_tail: bool) -> Option<Plan> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daily.csv");
        std::fs::write(&path, bytes).unwrap();
        let seen = Seen {
            size: bytes.len() as u64,
            mtime_ns: 7,
            unchanged_scans: 1,
        };
        let before = std::fs::read(&path).unwrap();
        let plan = plan(&path, seen, 1 << 20, done, &mapping(), take_tail).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the file is never written"
        );
        plan
    }

    fn values(p: &Plan) -> Vec<String> {
        let chunk = p.chunk.as_ref().unwrap();
        assert!(
            chunk.decoded.errors.is_empty(),
            "{:?}",
            chunk.decoded.errors
        );
        chunk
            .decoded
            .observations
            .iter()
            .map(|o| format!("{}={}", o.test_code, o.value.as_deref().unwrap_or("")))
            .collect()
    }

    #[test]
    fn a_growing_file_is_read_row_by_row_exactly_once() {
        // First scan: two complete rows and a partial third.
        let v1 = b"Test,Result\r\nGLU,5.1\r\nLAC,1.2\r\nNH3,1";
        let p1 = run_plan(v1, None, false).unwrap();
        assert_eq!(values(&p1), ["GLU=5.1", "LAC=1.2"]);
        assert_eq!(p1.progress.consumed, 31);
        assert_eq!(
            p1.progress.size,
            u64::MAX,
            "looked at again for the partial row"
        );
        // The partial row was completed and one more appended: only those two are read, stored
        // with the header in front; the wire bytes are exactly the new ones.
        let v2 = b"Test,Result\r\nGLU,5.1\r\nLAC,1.2\r\nNH3,142\r\nGLU,6.0\r\n";
        let p2 = run_plan(v2, Some(&p1.progress), false).unwrap();
        assert_eq!(values(&p2), ["NH3=142", "GLU=6.0"]);
        let chunk = p2.chunk.as_ref().unwrap();
        assert_eq!(chunk.wire, b"NH3,142\r\nGLU,6.0\r\n");
        assert_eq!(chunk.text, b"Test,Result\r\nNH3,142\r\nGLU,6.0\r\n");
        assert_eq!(p2.progress.consumed, v2.len() as u64);
        assert_eq!(p2.progress.size, v2.len() as u64);
        assert!(!p2.replaced);
        // Seen again (a touch, a re-plug): nothing to store.
        let p3 = run_plan(v2, Some(&p2.progress), false).unwrap();
        assert!(p3.chunk.is_none());
    }

    #[test]
    fn an_unterminated_last_row_waits_until_the_file_settles() {
        let v = b"Test,Result\nGLU,5.1";
        assert!(
            run_plan(v, None, false).is_none(),
            "only the header is complete"
        );
        let p = run_plan(v, None, true).unwrap();
        assert_eq!(values(&p), ["GLU=5.1"]);
    }

    #[test]
    fn an_xml_file_is_only_read_whole() {
        let m = ExportMapping {
            record: Some("R".into()),
            fields: vec![
                (Field::TestCode, Column::parse("@t").unwrap()),
                (Field::Value, Column::parse("@v").unwrap()),
            ],
            ..ExportMapping::new(ExportFormat::Xml)
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.xml");
        let read = |bytes: &[u8], done: Option<&FileProgress>| {
            std::fs::write(&path, bytes).unwrap();
            let seen = Seen {
                size: bytes.len() as u64,
                mtime_ns: 1,
                unchanged_scans: 1,
            };
            plan(&path, seen, 1 << 20, done, &m, false)
                .unwrap()
                .unwrap()
        };
        let v1 = b"<X><R t='A' v='1'/></X>\n";
        let p1 = read(v1, None);
        assert_eq!(p1.chunk.as_ref().unwrap().decoded.observations.len(), 1);
        // Rewritten with one more result: the whole document again (it has no rows to append).
        let v2 = b"<X><R t='A' v='1'/><R t='B' v='2'/></X>\n";
        let p2 = read(v2, Some(&p1.progress));
        let chunk = p2.chunk.unwrap();
        assert_eq!(chunk.text, v2);
        assert_eq!(chunk.decoded.observations.len(), 2);
    }

    #[test]
    fn a_replaced_file_is_read_from_the_start() {
        let p1 = run_plan(b"Test,Result\nGLU,5.1\n", None, false).unwrap();
        let p2 = run_plan(
            b"Test,Result\nLAC,0.9\nGLU,5.2\n",
            Some(&p1.progress),
            false,
        )
        .unwrap();
        assert!(p2.replaced);
        assert_eq!(values(&p2), ["LAC=0.9", "GLU=5.2"]);
    }

    #[test]
    fn glob_matches_like_a_shell_but_ignores_case() {
        assert!(glob_match("*.csv", "res_20240312.CSV"));
        assert!(glob_match(
            "PIMA-*_(PIMA_CD4).csv",
            "PIMA-D-001234_2012-05-25_15-22-10_AssayID_2_(PIMA_CD4).csv"
        ));
        assert!(glob_match(
            "res_??????????????.csv",
            "res_20240312102200.csv"
        ));
        assert!(!glob_match("res_*.csv", "qcs_20240312102200.csv"));
        assert!(!glob_match("*.csv", "export.csv.tmp"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("a*b*c", "aXXbYYbZc"));
    }
}
