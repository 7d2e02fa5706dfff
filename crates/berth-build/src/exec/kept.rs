//! Unpacked root filesystems kept between builds, so a cache miss late in a Dockerfile does not
//! unpack (and afterwards delete) every layer below it again.
//!
//! When a build ends, each root filesystem it materialised is moved (renamed, never copied)
//! to `berth/rootfs/<n>/root` with its *trail*: the chain keys it passed through, each with the
//! paths the step that led there added. A later build that needs the root filesystem for chain
//! `X` takes a kept one whose trail contains `X` and rewinds it: it removes, newest step first,
//! what each later step added. That is only possible for steps that purely added paths (a
//! COPY into new paths, a RUN that only created files); a step that changed or deleted
//! anything lower, or a cache hit applied on top, ends the rewindable part of the trail.
//!
//! Why this matters beyond unpack time: ext4 allocates inodes slowly right after many were
//! freed, so deleting a 20,000-file root filesystem at the end of one build and unpacking it
//! again in the next made a one-file rebuild take seconds.
//!
//! Moving a directory out of the keep is atomic, so two builds never share one; at most
//! [`KEEP`] are kept, the oldest removed first.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{BuildError, io_err};
use super::layer::{remove_any, resolve_in_root};
use super::store::{Store, write_atomic};

/// How many root filesystems are kept.
pub const KEEP: usize = 4;

/// One step of a root filesystem's history.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TrailStep {
    /// The chain key after the step.
    pub chain: String,
    /// The paths the step added (parents first), or `None` when it cannot be undone.
    pub added: Option<Vec<String>>,
}

fn keep_dir(store: &Store) -> PathBuf {
    store.root().join("berth/rootfs")
}

/// When `slot` was kept (its trail's time); `None` for a slot half made or half removed.
fn kept_at(slot: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(slot.join("trail.json"))
        .and_then(|m| m.modified())
        .ok()
}

/// Moves `rootfs` (with its `trail`) into the keep, evicting the oldest beyond [`KEEP`].
pub fn keep(store: &Store, rootfs: &Path, trail: &[TrailStep]) -> Result<(), BuildError> {
    if trail.is_empty() {
        return Ok(());
    }
    let base = keep_dir(store);
    std::fs::create_dir_all(&base).map_err(io_err(&base))?;
    let slot = store.temp_path("kept");
    let slot = base.join(slot.file_name().expect("temp paths have a name"));
    std::fs::create_dir(&slot).map_err(io_err(&slot))?;
    std::fs::rename(rootfs, slot.join("root")).map_err(io_err(rootfs))?;
    write_atomic(
        &slot.join("trail.json"),
        &serde_json::to_vec(trail).expect("trail serialises"),
    )?;
    let mut slots: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&base)
        .map_err(io_err(&base))?
        .flatten()
        .filter_map(|e| Some((kept_at(&e.path())?, e.path())))
        .collect();
    slots.sort();
    while slots.len() > KEEP {
        let (_, old) = slots.remove(0);
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(())
}

/// A kept root filesystem that rewinds to the chain asked for.
struct Fit {
    /// Paths to remove to get there.
    undo: usize,
    newest: std::cmp::Reverse<std::time::SystemTime>,
    slot: PathBuf,
    trail: Vec<TrailStep>,
    /// The trail's step at the chain.
    k: usize,
}

/// Takes the kept root filesystem that rewinds to `chain` with the least to undo (the newest
/// of equals), rewinds it and moves it to `dest`. Returns the trail up to `chain`, or `None`
/// when no kept one fits. (The first fit found was taken before: a build of one image would
/// take and rewind another image's tree, ready for that image's next rebuild, while its own
/// lay beside it.)
pub fn take(store: &Store, chain: &str, dest: &Path) -> Option<Vec<TrailStep>> {
    let base = keep_dir(store);
    let rd = std::fs::read_dir(&base).ok()?;
    let mut fits: Vec<Fit> = Vec::new();
    for e in rd.flatten() {
        let slot = e.path();
        let Some(trail) = std::fs::read(slot.join("trail.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Vec<TrailStep>>(&b).ok())
        else {
            continue;
        };
        let Some(k) = trail.iter().rposition(|s| s.chain == chain) else {
            continue;
        };
        if trail[k + 1..].iter().any(|s| s.added.is_none()) {
            continue;
        }
        let undo: usize = trail[k + 1..]
            .iter()
            .flat_map(|s| s.added.iter().flatten())
            .count();
        let at = kept_at(&slot).unwrap_or(std::time::UNIX_EPOCH);
        fits.push(Fit {
            undo,
            newest: std::cmp::Reverse(at),
            slot,
            trail,
            k,
        });
    }
    fits.sort_by_key(|f| (f.undo, f.newest));
    for Fit { slot, trail, k, .. } in fits {
        // Whoever renames first owns it.
        if std::fs::rename(slot.join("root"), dest).is_err() {
            continue;
        }
        let _ = std::fs::remove_dir_all(&slot);
        for step in trail[k + 1..].iter().rev() {
            for p in step.added.iter().flatten().rev() {
                if remove_in_root(dest, p).is_err() {
                    let _ = std::fs::remove_dir_all(dest);
                    return None;
                }
            }
        }
        let mut trail = trail;
        trail.truncate(k + 1);
        return Some(trail);
    }
    None
}

/// Removes the recorded path `rel` from `root` without following a link out of it: the
/// parent is resolved inside `root` as a chroot would, and only the last component (a file,
/// a link itself, or a directory tree) is removed. `dest.join(rel)` would let a link `x -> /`
/// in the tree turn a recorded `x/etc/passwd` into the host's file.
fn remove_in_root(root: &Path, rel: &str) -> Result<(), BuildError> {
    let rel = rel.trim_matches('/');
    let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    if name.is_empty() || name == "." || name == ".." {
        return Err(BuildError::Store(format!(
            "kept root filesystem: cannot remove `{rel}`"
        )));
    }
    let parent = resolve_in_root(root, parent)?;
    remove_any(&root.join(parent).join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(chain: &str, added: Option<&[&str]>) -> TrailStep {
        TrailStep {
            chain: chain.into(),
            added: added.map(|a| a.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn rewinds_added_paths_and_refuses_past_an_unknown_step() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let root = store.temp_path("rootfs");
        std::fs::create_dir_all(root.join("base/keep")).unwrap();
        std::fs::create_dir_all(root.join("app/src")).unwrap();
        std::fs::write(root.join("app/src/main"), "v1").unwrap();
        std::fs::write(root.join("late"), "x").unwrap();
        let trail = vec![
            step("c0", None),
            step("c1", None),
            step("c2", Some(&["app", "app/src", "app/src/main"])),
            step("c3", Some(&["late"])),
        ];
        keep(&store, &root, &trail).unwrap();
        assert!(!root.exists());

        let dest = store.temp_path("rootfs");
        assert!(take(&store, "c0", &dest).is_none(), "c1 cannot be undone");
        let got = take(&store, "c1", &dest).unwrap();
        assert_eq!(got, trail[..2].to_vec());
        assert!(dest.join("base/keep").is_dir());
        assert!(!dest.join("app").exists());
        assert!(!dest.join("late").exists());
        assert!(take(&store, "c1", &store.temp_path("x")).is_none(), "taken");
    }

    #[test]
    fn rewind_through_a_symlink_does_not_delete_host_files() {
        use crate::exec::layer::tests::{host_is_untouched, sandbox};
        let d = tempfile::tempdir().unwrap();
        let (_, host) = sandbox(d.path());
        let store = Store::open(d.path().join("store")).unwrap();
        let root = store.temp_path("rootfs");
        std::fs::create_dir_all(&root).unwrap();
        // The tree has links out of it (`x -> <host>`, `y -> /`, `z -> ../../..`), and the
        // trail names paths through them, as a tampered trail.json or a recorder that took a
        // path as written would.
        std::os::unix::fs::symlink(&host, root.join("x")).unwrap();
        std::os::unix::fs::symlink("/", root.join("y")).unwrap();
        std::os::unix::fs::symlink("../../../../../../..", root.join("z")).unwrap();
        let through_y = format!("y{}/etc/passwd", host.display());
        let through_z = format!("z{}/victim", host.display());
        let trail = vec![
            step("c0", None),
            step("c1", Some(&["x/victim", "x/etc", &through_y, &through_z])),
        ];
        keep(&store, &root, &trail).unwrap();
        let dest = store.temp_path("rootfs");
        let got = take(&store, "c0", &dest);
        host_is_untouched(&host);
        assert_eq!(got, Some(trail[..1].to_vec()));
        assert!(
            dest.join("x").is_symlink(),
            "the link itself stays: c1 did not add it"
        );
    }

    #[test]
    fn takes_the_tree_with_least_to_undo_and_leaves_another_images_tree() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        // Image A's tree: the shared base, then A's files. Image B's: the base, then B's. Each
        // rebuild needs its own tree at its last step; a build of the bare base takes either.
        let kept_tree = |files: &[&str], trail: &[TrailStep]| {
            let root = store.temp_path("rootfs");
            std::fs::create_dir_all(root.join("base")).unwrap();
            for f in files {
                std::fs::write(root.join(f), f).unwrap();
            }
            keep(&store, &root, trail).unwrap();
        };
        kept_tree(&["a"], &[step("base", None), step("a1", Some(&["a"]))]);
        kept_tree(
            &["b1", "b2"],
            &[step("base", None), step("b2", Some(&["b1", "b2"]))],
        );
        let dest = store.temp_path("rootfs");
        assert_eq!(take(&store, "b2", &dest).unwrap().len(), 2);
        assert!(dest.join("b2").is_file(), "B's own tree, nothing undone");
        // A's tree is still kept for A; B's second build, of the base only, takes it now that
        // it is the only fit, undoing A's file.
        let again = store.temp_path("rootfs");
        assert_eq!(take(&store, "a1", &again).unwrap().len(), 2);
        assert!(again.join("a").is_file());
        kept_tree(&["a"], &[step("base", None), step("a1", Some(&["a"]))]);
        kept_tree(&[], &[step("base", None)]);
        let base = store.temp_path("rootfs");
        assert_eq!(take(&store, "base", &base).unwrap().len(), 1);
        assert!(!base.join("a").exists());
        let left = store.temp_path("rootfs");
        assert_eq!(
            take(&store, "a1", &left).map(|t| t.len()),
            Some(2),
            "the bare base was taken for the base, not A's tree"
        );
    }

    #[test]
    fn keeps_at_most_keep() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        for i in 0..KEEP + 2 {
            let root = store.temp_path("rootfs");
            std::fs::create_dir_all(&root).unwrap();
            keep(&store, &root, &[step(&format!("c{i}"), None)]).unwrap();
        }
        assert_eq!(std::fs::read_dir(keep_dir(&store)).unwrap().count(), KEEP);
    }
}
