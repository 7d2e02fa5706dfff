//! `RUN --mount=type=cache` and `type=tmpfs`: what a RUN sees besides its root filesystem.
//!
//! A cache mount is a directory of the store (`berth/mounts/<sha256(id)>/`, `-1`, `-2`, … for
//! extra private copies) bind-mounted at the target. It outlives builds and never reaches a
//! layer: the runtime mounts it over the root filesystem, so writes land in the store, and the
//! mount point itself — created here when the image lacks it, the way BuildKit creates "mount
//! stubs" — is removed again after the RUN when it is still empty.
//!
//! `sharing=` follows BuildKit: `shared` lets concurrent builds use one directory; `locked`
//! waits for an exclusive lock (an `flock` on `<dir>.lock`, held until the RUN ends);
//! `private` takes the first copy nobody holds, creating a new one when all are busy.
//!
//! The build-cache key of a RUN covers its mount specifications, not the cache directories'
//! contents (BuildKit does the same: a cache mount is a speed-up, never an input).

use std::fs::File;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::context;
use super::error::{BuildError, io_err};
use super::layer::resolve_in_root;
use super::store::Store;
use crate::span::Location;
use crate::{CacheSharing, Mount, MountKind};

/// Most private copies of one cache id before `private` waits like `locked`.
const MAX_PRIVATE_COPIES: usize = 64;

/// Mounts prepared for one RUN. Dropping it releases the locks; call [`RunMounts::cleanup`]
/// after the RUN to remove the mount points created in the root filesystem.
#[derive(Debug, Default)]
pub(crate) struct RunMounts {
    /// `(host dir, container path, read_only)`.
    pub binds: Vec<(PathBuf, String, bool)>,
    /// `(container path, size limit)`.
    pub tmpfs: Vec<(String, Option<u64>)>,
    /// Mount points created in the root filesystem (relative), in creation order.
    stubs: Vec<String>,
    /// Held `flock`s, released on drop.
    _locks: Vec<File>,
}

impl RunMounts {
    /// Removes the mount points [`prepare`] created, deepest first, where still empty.
    pub fn cleanup(&mut self, rootfs: &Path) {
        for rel in self.stubs.drain(..).rev() {
            let _ = std::fs::remove_dir(rootfs.join(rel));
        }
    }
}

/// The store directory of cache mount `id` (copy `n`; 0 is the shared one).
pub(crate) fn cache_dir(store: &Store, id: &str, n: usize) -> PathBuf {
    let hex: String = Sha256::digest(id.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let name = if n == 0 { hex } else { format!("{hex}-{n}") };
    store.root().join("berth/mounts").join(name)
}

fn lock_file(dir: &Path) -> Result<File, BuildError> {
    let p = dir.with_extension("lock");
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(io_err(&p))
}

/// Creates the cache directory with the mount's owner and mode when it does not exist yet.
fn ensure_dir(dir: &Path, mode: u32, uid: u32, gid: u32) -> Result<(), BuildError> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().expect("under the store");
    std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    let tmp = dir.with_extension(format!("new-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).map_err(io_err(&tmp))?;
    chown(&tmp, Some(uid), Some(gid)).map_err(io_err(&tmp))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(io_err(&tmp))?;
    if std::fs::rename(&tmp, dir).is_err() {
        // Another build created it first.
        let _ = std::fs::remove_dir(&tmp);
    }
    Ok(())
}

/// Picks the directory for a cache mount and takes the lock its sharing mode needs.
async fn acquire(
    store: &Store,
    id: &str,
    sharing: CacheSharing,
) -> Result<(PathBuf, Option<File>), BuildError> {
    let dir0 = cache_dir(store, id, 0);
    std::fs::create_dir_all(dir0.parent().expect("under the store"))
        .map_err(io_err(store.root()))?;
    match sharing {
        CacheSharing::Shared => Ok((dir0, None)),
        CacheSharing::Private => {
            for n in 0..MAX_PRIVATE_COPIES {
                let dir = cache_dir(store, id, n);
                let f = lock_file(&dir)?;
                if f.try_lock().is_ok() {
                    return Ok((dir, Some(f)));
                }
            }
            lock_blocking(dir0).await
        }
        CacheSharing::Locked => lock_blocking(dir0).await,
    }
}

async fn lock_blocking(dir: PathBuf) -> Result<(PathBuf, Option<File>), BuildError> {
    let f = lock_file(&dir)?;
    let p = dir.with_extension("lock");
    let f = tokio::task::spawn_blocking(move || f.lock().map(|()| f))
        .await
        .map_err(|e| BuildError::Store(format!("waiting for a cache mount lock: {e}")))?
        .map_err(io_err(&p))?;
    Ok((dir, Some(f)))
}

/// Prepares the mounts of one RUN whose working directory is `workdir`: cache directories
/// (created and locked as their sharing mode says) and tmpfs mounts, plus their mount points
/// in `rootfs`. Bind and secret mounts are refused with a hint.
pub(crate) async fn prepare(
    store: &Store,
    rootfs: &Path,
    workdir: &str,
    mounts: &[Mount],
    loc: &Location,
) -> Result<RunMounts, BuildError> {
    let mut out = RunMounts::default();
    for m in mounts {
        let target = if m.target.starts_with('/') {
            m.target.clone()
        } else {
            format!("{}/{}", workdir.trim_end_matches('/'), m.target)
        };
        let unsupported = |what: &str, hint: &str| BuildError::Unsupported {
            location: loc.clone(),
            what: format!("RUN --mount={what}"),
            hint: hint.into(),
        };
        let rel = resolve_in_root(rootfs, &target);
        if rel.is_empty() {
            return Err(BuildError::Step {
                location: loc.clone(),
                instruction: "RUN",
                reason: format!("--mount target {:?} is the root directory", m.target),
            });
        }
        match &m.kind {
            MountKind::Cache {
                id,
                sharing,
                read_only,
                mode,
                uid,
                gid,
            } => {
                if m.from.is_some() || m.source.is_some() {
                    return Err(unsupported(
                        "type=cache with from= or source=",
                        "seed the cache in a RUN instead",
                    ));
                }
                let (dir, lock) = acquire(store, id, *sharing).await?;
                ensure_dir(&dir, *mode, *uid, *gid)?;
                out._locks.extend(lock);
                out.binds.push((dir, format!("/{rel}"), *read_only));
            }
            MountKind::Tmpfs { size } => out.tmpfs.push((format!("/{rel}"), *size)),
            MountKind::Bind { .. } => {
                return Err(unsupported(
                    "type=bind",
                    "COPY the files in, or use a type=cache mount",
                ));
            }
            MountKind::Secret { .. } => {
                return Err(unsupported(
                    "type=secret",
                    "pass the value as a build argument to a RUN that does not keep it",
                ));
            }
        }
        if let Err(e) = context::mkdir_recorded(rootfs, &rel, &mut out.stubs) {
            out.cleanup(rootfs);
            return Err(e);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_dirs_are_per_id_and_copy() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let a = cache_dir(&s, "pip", 0);
        assert_ne!(a, cache_dir(&s, "npm", 0));
        assert_ne!(a, cache_dir(&s, "pip", 1));
        assert!(a.starts_with(s.root().join("berth/mounts")));
    }
}
