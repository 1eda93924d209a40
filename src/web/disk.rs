//! Free space of the data directory's file system (statvfs, through rustix's safe wrapper), so
//! the dashboard shows why commits fail ("database or disk is full") before someone opens a shell.

use std::path::Path;

/// Below this much free space the dashboard marks the figure red.
pub const LOW_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Space {
    pub path: String,
    /// Bytes an unprivileged writer may still use (`f_bavail`).
    pub free_bytes: u64,
    pub total_bytes: u64,
    /// Human-readable, e.g. "1.4 GiB".
    pub free: String,
    pub total: String,
    pub low: bool,
}

/// statvfs of `dir`; `None` when it cannot be read (the directory is missing).
pub fn space(dir: &Path) -> Option<Space> {
    let s = rustix::fs::statvfs(dir).ok()?;
    let free_bytes = s.f_bavail.saturating_mul(s.f_frsize);
    let total_bytes = s.f_blocks.saturating_mul(s.f_frsize);
    Some(Space {
        path: dir.display().to_string(),
        free_bytes,
        total_bytes,
        free: human(free_bytes),
        total: human(total_bytes),
        low: free_bytes < LOW_BYTES,
    })
}

/// `1536` → "1.5 KiB".
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_df_h() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
    }

    #[test]
    fn space_of_a_real_directory_is_within_its_total() {
        let dir = tempfile::tempdir().unwrap();
        let s = space(dir.path()).expect("statvfs of a temp dir");
        assert!(s.total_bytes > 0 && s.free_bytes <= s.total_bytes, "{s:?}");
        assert!(space(&dir.path().join("missing")).is_none());
    }
}
