//! `RUN --mount=`: what a RUN sees besides its root filesystem.
//!
//! A bind mount shows files of the build context (after `.dockerignore`), of another stage or
//! of an image at the target, read-only unless `rw`; with `rw` (or a context filtered by
//! `.dockerignore`) berth mounts a scratch copy, so writes are discarded and never reach the
//! source. Its content is part of the RUN's cache key, as in BuildKit.
//!
//! A secret mount is a file in the store's scratch area holding the value given with
//! `--secret id=X,src=FILE|env=VAR`, bind-mounted read-only (default `/run/secrets/X`, mode
//! 0400) or handed to the process as an environment variable (`env=`), and removed when the
//! RUN ends. Neither its value nor a digest of it enters a layer or the cache key (BuildKit
//! does the same: changing a secret does not re-run the step).
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
//! Cache directories belong to a scope ([`super::builder::BuildOptions::cache_scope`]): the
//! delivery server passes the repository's name, so one repository's builds never read or
//! poison another's cache (`sha256(scope NUL id)`); builds without a scope (the CLI) keep
//! `sha256(id)` and share by id, as BuildKit does on one machine.
//!
//! The build-cache key of a RUN covers its mount specifications, not the cache directories'
//! contents (BuildKit does the same: a cache mount is a speed-up, never an input).

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};

use berth_types::Secret;
use sha2::{Digest as _, Sha256};

use super::context;
use super::error::{BuildError, io_err};
use super::layer::resolve_in_root;
use super::store::Store;
use crate::span::Location;
use crate::{CacheSharing, DockerIgnore, FromRef, Mount, MountKind};

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file on the build host (`src=`).
    File(PathBuf),
    /// An environment variable of the build host (`env=`).
    Env(String),
}

/// The secrets a build may mount, by id (`--secret id=X,src=FILE|env=VAR`). Holds where the
/// values are, never the values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Secrets(BTreeMap<String, SecretSource>);

impl Secrets {
    /// Parses one `--secret` value: `id=X,src=FILE` (also `source=`), `id=X,env=VAR`, or
    /// `id=X` alone (the environment variable `X`, as Docker does), with an optional
    /// `type=file|env`.
    pub fn parse_flag(spec: &str) -> Result<(String, SecretSource), String> {
        let (mut id, mut src, mut env, mut kind) = (None, None, None, None);
        for part in spec.split(',') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("--secret {spec}: expected key=value, got {part:?}"))?;
            match k.trim() {
                "id" => id = Some(v.to_string()),
                "src" | "source" => src = Some(v.to_string()),
                "env" => env = Some(v.to_string()),
                "type" => kind = Some(v.to_string()),
                other => {
                    return Err(format!(
                        "--secret {spec}: unknown key {other:?}; use id=, src= or env="
                    ));
                }
            }
        }
        let id = id
            .filter(|i| !i.is_empty())
            .ok_or_else(|| format!("--secret {spec}: id= is required"))?;
        let source = match (src, env, kind.as_deref()) {
            (Some(_), Some(_), _) => {
                return Err(format!("--secret {spec}: give src= or env=, not both"));
            }
            (Some(f), None, None | Some("file")) => SecretSource::File(PathBuf::from(f)),
            (None, Some(e), None | Some("env")) => SecretSource::Env(e),
            (None, None, None | Some("env")) => SecretSource::Env(id.clone()),
            (None, None, Some("file")) => SecretSource::File(PathBuf::from(&id)),
            (_, _, Some(other)) => {
                return Err(format!(
                    "--secret {spec}: type={other} does not fit; use type=file or type=env"
                ));
            }
        };
        Ok((id, source))
    }

    /// Adds (or replaces) a secret.
    pub fn insert(&mut self, id: impl Into<String>, source: SecretSource) {
        self.0.insert(id.into(), source);
    }

    /// Where secret `id` comes from.
    pub fn get(&self, id: &str) -> Option<&SecretSource> {
        self.0.get(id)
    }

    /// The ids, sorted.
    pub fn ids(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }

    /// Reads the value of secret `id` now.
    fn read(&self, id: &str) -> Result<Option<Secret>, String> {
        match self.0.get(id) {
            None => Ok(None),
            Some(SecretSource::File(p)) => std::fs::read_to_string(p)
                .map(|v| Some(Secret::new(v)))
                .map_err(|e| format!("secret {id:?}: cannot read {}: {e}", p.display())),
            Some(SecretSource::Env(var)) => std::env::var(var)
                .map(|v| Some(Secret::new(v)))
                .map_err(|_| format!("secret {id:?}: the environment variable {var} is not set")),
        }
    }
}

/// What mounts can take files from, besides the store.
pub(crate) struct Sources<'a> {
    /// The build context.
    pub context: &'a Path,
    /// Its `.dockerignore`.
    pub ignore: Option<&'a DockerIgnore>,
    /// `--secret`s.
    pub secrets: &'a Secrets,
    /// Root filesystems of the stages and images bind mounts name with `from=`.
    pub roots: &'a [(FromRef, PathBuf)],
    /// Whose cache mounts these are ([`super::builder::BuildOptions::cache_scope`]).
    pub cache_scope: Option<&'a str>,
}

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
    /// Environment variables for the process (`type=secret,env=`).
    pub env: Vec<(String, String)>,
    /// Mount points created in the root filesystem (relative), in creation order.
    stubs: Vec<String>,
    /// Scratch files and directories (secret values, bind copies), removed after the RUN.
    scratch: Vec<PathBuf>,
    /// Held `flock`s, released on drop.
    _locks: Vec<File>,
}

impl RunMounts {
    /// Removes the mount points [`prepare`] created, deepest first, where still empty.
    pub fn cleanup(&mut self, rootfs: &Path) {
        for rel in self.stubs.drain(..).rev() {
            let p = rootfs.join(rel);
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_file() && m.len() == 0 => {
                    let _ = std::fs::remove_file(&p);
                }
                _ => {
                    let _ = std::fs::remove_dir(&p);
                }
            }
        }
        for p in self.scratch.drain(..) {
            let _ = std::fs::remove_dir_all(&p);
            let _ = std::fs::remove_file(&p);
        }
    }
}

impl Drop for RunMounts {
    fn drop(&mut self) {
        // Secret values never outlive the RUN, even when it fails before cleanup.
        for p in self.scratch.drain(..) {
            let _ = std::fs::remove_dir_all(&p);
            let _ = std::fs::remove_file(&p);
        }
    }
}

/// Creates an empty file as the mount point of a file bind (and its parents), recording them.
fn file_stub(root: &Path, rel: &str, stubs: &mut Vec<String>) -> Result<(), BuildError> {
    if let Some((parent, _)) = rel.rsplit_once('/') {
        context::mkdir_recorded(root, parent, stubs)?;
    }
    let p = root.join(rel);
    match std::fs::symlink_metadata(&p) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(BuildError::Io {
            path: p,
            source: std::io::Error::other("exists and is not a file"),
        }),
        Err(_) => {
            File::create(&p).map_err(io_err(&p))?;
            stubs.push(rel.to_string());
            Ok(())
        }
    }
}

/// The `source=` of a bind mount, relative and cleaned (`.` for the whole source).
pub(crate) fn bind_source(m: &Mount) -> String {
    m.source.clone().unwrap_or_else(|| ".".into())
}

/// The store directory of cache mount `id` (copy `n`; 0 is the shared one) of the builds in
/// `scope` (see [`super::builder::BuildOptions::cache_scope`]): `sha256(id)` unscoped, as
/// before scopes existed, `sha256(scope NUL id)` in a scope, so no id written in a Dockerfile
/// reaches another scope's directory.
pub(crate) fn cache_dir(store: &Store, scope: Option<&str>, id: &str, n: usize) -> PathBuf {
    let key = match scope {
        None => id.to_string(),
        Some(scope) => format!("{scope}\0{id}"),
    };
    let hex = hex::encode(Sha256::digest(key.as_bytes()));
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
    scope: Option<&str>,
    id: &str,
    sharing: CacheSharing,
) -> Result<(PathBuf, Option<File>), BuildError> {
    let dir0 = cache_dir(store, scope, id, 0);
    std::fs::create_dir_all(dir0.parent().expect("under the store"))
        .map_err(io_err(store.root()))?;
    match sharing {
        CacheSharing::Shared => Ok((dir0, None)),
        CacheSharing::Private => {
            for n in 0..MAX_PRIVATE_COPIES {
                let dir = cache_dir(store, scope, id, n);
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
/// (created and locked as their sharing mode says), tmpfs mounts, binds and secrets, plus
/// their mount points in `rootfs`.
pub(crate) async fn prepare(
    store: &Store,
    rootfs: &Path,
    workdir: &str,
    mounts: &[Mount],
    sources: &Sources<'_>,
    loc: &Location,
) -> Result<RunMounts, BuildError> {
    let mut out = RunMounts::default();
    for m in mounts {
        if let Err(e) = prepare_one(store, rootfs, workdir, m, sources, loc, &mut out).await {
            out.cleanup(rootfs);
            return Err(e);
        }
    }
    Ok(out)
}

async fn prepare_one(
    store: &Store,
    rootfs: &Path,
    workdir: &str,
    m: &Mount,
    sources: &Sources<'_>,
    loc: &Location,
    out: &mut RunMounts,
) -> Result<(), BuildError> {
    let step = |reason: String| BuildError::Step {
        location: loc.clone(),
        instruction: "RUN",
        reason,
    };
    // A secret exposed only as an environment variable has no target.
    let rel = if m.target.is_empty() {
        String::new()
    } else {
        let rel = resolve_in_root(rootfs, &absolute(workdir, &m.target))?;
        if rel.is_empty() {
            return Err(step(format!(
                "--mount target {:?} is the root directory",
                m.target
            )));
        }
        rel
    };
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
                return Err(BuildError::Unsupported {
                    location: loc.clone(),
                    what: "RUN --mount=type=cache with from= or source=".into(),
                    hint: "seed the cache in a RUN instead".into(),
                });
            }
            let (dir, lock) = acquire(store, sources.cache_scope, id, *sharing).await?;
            ensure_dir(&dir, *mode, *uid, *gid)?;
            out._locks.extend(lock);
            out.binds.push((dir, format!("/{rel}"), *read_only));
            context::mkdir_recorded(rootfs, &rel, &mut out.stubs)
        }
        MountKind::Tmpfs { size } => {
            out.tmpfs.push((format!("/{rel}"), *size));
            context::mkdir_recorded(rootfs, &rel, &mut out.stubs)
        }
        MountKind::Bind { read_write } => {
            prepare_bind(store, rootfs, &rel, m, *read_write, sources, &step, out)
        }
        MountKind::Secret {
            id,
            required,
            env,
            mode,
            uid,
            gid,
        } => {
            let Some(value) = sources.secrets.read(id).map_err(&step)? else {
                return if *required {
                    Err(step(format!(
                        "--mount=type=secret,id={id} is required but no secret {id:?} was given; \
                         pass --secret id={id},src=FILE (or env=VAR)"
                    )))
                } else {
                    Ok(())
                };
            };
            if let Some(var) = env {
                out.env.push((var.clone(), value.expose().to_string()));
            }
            if rel.is_empty() {
                return Ok(());
            }
            let file = store.temp_path("secret");
            std::fs::create_dir_all(file.parent().expect("in the store")).map_err(io_err(&file))?;
            out.scratch.push(file.clone());
            write_private(&file, value.expose().as_bytes())?;
            chown(&file, Some(*uid), Some(*gid)).map_err(io_err(&file))?;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode))
                .map_err(io_err(&file))?;
            file_stub(rootfs, &rel, &mut out.stubs)?;
            out.binds.push((file, format!("/{rel}"), true));
            Ok(())
        }
    }
}

/// Writes `bytes` to a new file only its owner can read.
fn write_private(file: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = File::options()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(file)
        .map_err(io_err(file))?;
    f.write_all(bytes).map_err(io_err(file))
}

/// A bind mount at `rel`: the source itself (read-only), or a scratch copy when writes must be
/// discarded (`rw`) or `.dockerignore` must hide part of a context directory.
#[allow(clippy::too_many_arguments)]
fn prepare_bind(
    store: &Store,
    rootfs: &Path,
    rel: &str,
    m: &Mount,
    read_write: bool,
    sources: &Sources<'_>,
    step: &dyn Fn(String) -> BuildError,
    out: &mut RunMounts,
) -> Result<(), BuildError> {
    let source = bind_source(m);
    let (root, ignore) = match &m.from {
        None => (sources.context.to_path_buf(), sources.ignore),
        Some(f) => (
            sources
                .roots
                .iter()
                .find(|(r, _)| r == f)
                .map(|(_, p)| p.clone())
                .expect("the builder materialises every from= root"),
            None,
        ),
    };
    let src = root.join(resolve_in_root(&root, &source).map_err(|e| step(e.to_string()))?);
    let md = std::fs::metadata(&src).map_err(|_| {
        step(format!(
            "--mount=type=bind source {source:?} does not exist in {}",
            match &m.from {
                None => "the build context".to_string(),
                Some(FromRef::Stage(i)) => format!("stage {i}"),
                Some(FromRef::Image(r)) => r.clone(),
            }
        ))
    })?;
    let host = if read_write || (ignore.is_some() && md.is_dir()) {
        let copy = store.temp_path("bind");
        out.scratch.push(copy.clone());
        std::fs::create_dir_all(&copy).map_err(io_err(&copy))?;
        let sel = context::select(&root, std::slice::from_ref(&source), ignore).map_err(step)?;
        let dest = if md.is_dir() { "/" } else { "/f" };
        let mut added = context::Added::default();
        context::copy_into(&copy, &sel, dest, Default::default(), &mut added)?;
        if md.is_dir() { copy } else { copy.join("f") }
    } else {
        src
    };
    if md.is_dir() {
        context::mkdir_recorded(rootfs, rel, &mut out.stubs)?;
    } else {
        file_stub(rootfs, rel, &mut out.stubs)?;
    }
    out.binds.push((host, format!("/{rel}"), !read_write));
    Ok(())
}

fn absolute(workdir: &str, target: &str) -> String {
    if target.starts_with('/') {
        target.to_string()
    } else {
        format!("{}/{}", workdir.trim_end_matches('/'), target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_flags_name_a_file_or_an_env_var() {
        assert_eq!(
            Secrets::parse_flag("id=npmrc,src=/home/u/.npmrc").unwrap(),
            ("npmrc".into(), SecretSource::File("/home/u/.npmrc".into()))
        );
        assert_eq!(
            Secrets::parse_flag("id=tok,env=GITHUB_TOKEN").unwrap(),
            ("tok".into(), SecretSource::Env("GITHUB_TOKEN".into()))
        );
        assert_eq!(
            Secrets::parse_flag("id=TOKEN").unwrap(),
            ("TOKEN".into(), SecretSource::Env("TOKEN".into()))
        );
        assert_eq!(
            Secrets::parse_flag("type=file,id=k,source=k.pem")
                .unwrap()
                .1,
            SecretSource::File("k.pem".into())
        );
        for bad in [
            "src=/x",
            "id=a,src=f,env=E",
            "id=a,path=x",
            "id",
            "id=a,type=ssh",
        ] {
            assert!(Secrets::parse_flag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cache_dirs_are_per_id_and_copy() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let a = cache_dir(&s, None, "pip", 0);
        assert_ne!(a, cache_dir(&s, None, "npm", 0));
        assert_ne!(a, cache_dir(&s, None, "pip", 1));
        assert!(a.starts_with(s.root().join("berth/mounts")));
    }
}
