//! Filesystem snapshots of a root filesystem before and after a `RUN`, and their difference as
//! a [`LayerPlan`].
//!
//! A file counts as changed when any of type, mode, owner, size, mtime, ctime, inode or link
//! target differ. ctime cannot be set from user space, so even a write that restores the
//! mtime is seen; this is cheaper than hashing content and as exact.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::error::{BuildError, io_err};
use super::layer::LayerPlan;

/// What identifies a version of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
    link: Option<std::path::PathBuf>,
}

impl Meta {
    fn is_dir(&self) -> bool {
        self.mode & 0o170000 == 0o040000
    }
}

/// The state of a root filesystem: relative path -> metadata.
#[derive(Debug, Default)]
pub struct Snapshot {
    entries: BTreeMap<String, Meta>,
}

/// Directories whose content is never part of a layer: kernel filesystems and the tmpfs the
/// runtime mounts over `/dev`.
const SKIP_CONTENT: &[&str] = &["proc", "sys", "dev"];

impl Snapshot {
    /// Walks `root` (without following symlinks).
    pub fn take(root: &Path) -> Result<Self, BuildError> {
        let mut entries = BTreeMap::new();
        let mut stack = vec![String::new()];
        while let Some(rel) = stack.pop() {
            let dir = if rel.is_empty() {
                root.to_path_buf()
            } else {
                root.join(&rel)
            };
            let rd = std::fs::read_dir(&dir).map_err(io_err(&dir))?;
            for e in rd {
                let e = e.map_err(io_err(&dir))?;
                let name = e.file_name().to_string_lossy().to_string();
                let child = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let p = e.path();
                let md = std::fs::symlink_metadata(&p).map_err(io_err(&p))?;
                let link = if md.file_type().is_symlink() {
                    std::fs::read_link(&p).ok()
                } else {
                    None
                };
                let meta = Meta {
                    mode: md.mode(),
                    uid: md.uid(),
                    gid: md.gid(),
                    size: md.len(),
                    mtime: (md.mtime(), md.mtime_nsec()),
                    ctime: (md.ctime(), md.ctime_nsec()),
                    ino: md.ino(),
                    link,
                };
                if meta.is_dir() && !SKIP_CONTENT.contains(&child.as_str()) {
                    stack.push(child.clone());
                }
                entries.insert(child, meta);
            }
        }
        Ok(Self { entries })
    }

    /// Whether `rel` exists in this snapshot.
    pub fn contains(&self, rel: &str) -> bool {
        self.entries.contains_key(rel)
    }

    /// The paths a RUN added, when adding is all it did: no deletions, and every path that
    /// existed before is a directory with the same mode and owner (only its times changed
    /// because entries were added). `None` otherwise. Used to rewind kept root filesystems.
    pub fn added_only(&self, after: &Snapshot, plan: &LayerPlan) -> Option<Vec<String>> {
        if !plan.whiteouts.is_empty() || !plan.opaque.is_empty() {
            return None;
        }
        let mut added = Vec::new();
        for p in &plan.paths {
            match (self.entries.get(p), after.entries.get(p)) {
                (None, _) => added.push(p.clone()),
                (Some(b), Some(a))
                    if b.is_dir()
                        && a.is_dir()
                        && (b.mode, b.uid, b.gid, b.ino) == (a.mode, a.uid, a.gid, a.ino) => {}
                _ => return None,
            }
        }
        Some(added)
    }

    /// What changed from `self` (before) to `after`: changed and added paths, deleted paths
    /// (only the top-most of a deleted tree), and directories that were deleted and made
    /// again (opaque: nothing of the old content survives).
    pub fn diff(&self, after: &Snapshot) -> LayerPlan {
        let mut plan = LayerPlan::default();
        // A directory that is a different inode now was replaced: opaque.
        let replaced = |p: &str| -> bool {
            match (self.entries.get(p), after.entries.get(p)) {
                (Some(b), Some(a)) => b.is_dir() && a.is_dir() && b.ino != a.ino,
                _ => false,
            }
        };
        for (path, meta) in &after.entries {
            if self.entries.get(path) != Some(meta) {
                plan.paths.push(path.clone());
            }
            if replaced(path) {
                plan.opaque.push(path.clone());
            }
        }
        for path in self.entries.keys() {
            if after.entries.contains_key(path) {
                continue;
            }
            // Covered when an ancestor is gone, replaced by a non-directory, or opaque.
            let mut covered = false;
            let mut anc = path.as_str();
            while let Some((parent, _)) = anc.rsplit_once('/') {
                match after.entries.get(parent) {
                    None => covered = true,
                    Some(m) if !m.is_dir() => covered = true,
                    Some(_) if replaced(parent) => covered = true,
                    Some(_) => {}
                }
                if covered {
                    break;
                }
                anc = parent;
            }
            if !covered {
                plan.whiteouts.push(path.clone());
            }
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_finds_adds_changes_deletes_and_replaced_dirs() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("keep")).unwrap();
        std::fs::write(r.join("keep/same"), "1").unwrap();
        std::fs::write(r.join("keep/edit"), "1").unwrap();
        std::fs::create_dir_all(r.join("gone/deep")).unwrap();
        std::fs::write(r.join("gone/deep/f"), "1").unwrap();
        std::fs::create_dir_all(r.join("again/sub")).unwrap();
        std::fs::create_dir_all(r.join("proc/ignored")).unwrap();
        let before = Snapshot::take(r).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(r.join("keep/edit"), "2").unwrap();
        std::fs::write(r.join("new"), "n").unwrap();
        std::fs::remove_dir_all(r.join("gone")).unwrap();
        // The old `again` moves aside rather than being deleted, so the new one cannot get
        // its inode back (ext4 reuses a freed inode at once): a replaced directory is a new
        // inode. (When a RUN's `rm -rf again && mkdir again` does get the inode back, the diff
        // whites out the old children one by one instead: the same layer in effect.)
        std::fs::rename(r.join("again"), r.join("held")).unwrap();
        std::fs::create_dir_all(r.join("again")).unwrap();
        std::fs::write(r.join("proc/x"), "n").unwrap();
        let plan = before.diff(&Snapshot::take(r).unwrap());
        assert!(plan.paths.contains(&"keep/edit".to_string()));
        assert!(plan.paths.contains(&"new".to_string()));
        assert!(!plan.paths.contains(&"keep/same".to_string()));
        assert!(!plan.paths.iter().any(|p| p.starts_with("proc/")));
        assert_eq!(plan.whiteouts, vec!["gone".to_string()]);
        assert_eq!(plan.opaque, vec!["again".to_string()]);
        assert!(plan.paths.contains(&"held/sub".to_string()));
    }
}
