//! The local content store: an OCI image layout on disk (`oci-layout`, `index.json`,
//! `blobs/sha256/<hex>`) plus berth's build cache (`berth/cache/<key>.json`) and scratch space
//! (`berth/tmp`, on the same file system so finished blobs are renamed into place, never
//! copied). Everything written is written to a temporary name first and renamed, so a crash
//! never leaves a half blob under a digest.

use std::io::Write;
use std::os::unix::ffi::OsStringExt as _;
use std::path::{Path, PathBuf};

use berth_registry::{PlatformSpec, Registry, media, sha256, sha256_file};
use berth_types::{Digest, Event, EventSink, ImageRef, Level, Step};
use serde::{Deserialize, Serialize};

use super::error::{BuildError, io_err};
use super::image::{Descriptor, ImageConfig, Index, Manifest};

/// An OCI image layout used as berth's content store.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A base image in the store: its manifest digest, config and layers.
#[derive(Debug, Clone)]
pub struct StoredImage {
    /// Digest of the (platform) manifest.
    pub manifest_digest: Digest,
    /// The parsed config.
    pub config: ImageConfig,
    /// The layer descriptors, base first.
    pub layers: Vec<Descriptor>,
    /// Where it was pulled from (the mirror, if one answered); `None` when read from the store.
    pub source: Option<ImageRef>,
}

/// One build-cache record: what a step produced.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CacheRecord {
    /// The layer, or `None` when the step changed no file.
    pub layer: Option<CachedLayer>,
}

/// A layer recorded in the build cache.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CachedLayer {
    /// The compressed blob.
    pub descriptor: Descriptor,
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
}

static TMP_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Store {
    /// `$XDG_CACHE_HOME/berth/store`, or `~/.cache/berth/store`.
    pub fn default_root() -> PathBuf {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(|| PathBuf::from("/var/cache"))
            .join("berth/store")
    }

    /// Opens (creating if needed) the layout at `root`; a relative `root` is taken from the
    /// current directory now (the OCI runtime runs a RUN step's bundle elsewhere, where a
    /// relative rootfs path named nothing).
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, BuildError> {
        let root = root.into();
        let root = std::path::absolute(&root).map_err(io_err(&root))?;
        // Images hold setuid files and RUN steps secrets: the store is root's alone.
        std::fs::create_dir_all(&root).map_err(io_err(&root))?;
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))
                .map_err(io_err(&root))?;
        }
        for d in ["blobs/sha256", "berth/cache", "berth/tmp"] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        let layout = root.join("oci-layout");
        if !layout.exists() {
            write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = root.join("index.json");
        if !index.exists() {
            write_atomic(
                &index,
                &serde_json::to_vec(&Index::default()).expect("index"),
            )?;
        }
        Ok(Self { root })
    }

    /// The layout directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with `digest` lives (whether or not it is there).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm())
            .join(digest.hex())
    }

    /// Whether the blob is in the store.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Reads a (small) blob and checks its digest.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, BuildError> {
        let p = self.blob_path(digest);
        let bytes = std::fs::read(&p).map_err(io_err(&p))?;
        let actual = sha256(&bytes);
        if &actual != digest {
            return Err(BuildError::Store(format!(
                "blob {} is corrupt (its content hashes to {actual}); delete it and build again",
                p.display()
            )));
        }
        Ok(bytes)
    }

    /// Writes a small blob; returns its digest.
    pub fn write_blob(&self, bytes: &[u8]) -> Result<Digest, BuildError> {
        let digest = sha256(bytes);
        let p = self.blob_path(&digest);
        if !p.exists() {
            write_atomic(&p, bytes)?;
        }
        Ok(digest)
    }

    /// Moves a finished file whose digest is `digest` into the store.
    pub fn ingest(&self, file: &Path, digest: &Digest) -> Result<(), BuildError> {
        let p = self.blob_path(digest);
        if p.exists() {
            let _ = std::fs::remove_file(file);
            return Ok(());
        }
        std::fs::rename(file, &p).map_err(io_err(&p))
    }

    /// A fresh path under the store's scratch directory (not created).
    pub fn temp_path(&self, hint: &str) -> PathBuf {
        let n = TMP_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        self.root
            .join("berth/tmp")
            .join(format!("{hint}-{}-{nanos:x}-{n}", std::process::id()))
    }

    /// Removes what killed builds left in the scratch directory: runc bundles (whose
    /// `config.json` holds the step's environment, `env=` secrets included), secret files,
    /// half-pulled blobs, root filesystems. Every scratch name carries its maker's pid
    /// ([`Store::temp_path`]); an entry is stale when that process is gone, or when the pid
    /// now belongs to a process started after the entry was last written (the pid was
    /// reused). Entries of live processes — concurrent builds sharing the store — are left
    /// alone, and so is anything with a mount point below it. Processes sharing a store must
    /// share a pid namespace (a build in a container with the host's store would look dead).
    /// Returns what was removed.
    pub fn clean_stale_tmp(&self) -> Vec<PathBuf> {
        let dir = self.root.join("berth/tmp");
        // Mount points are canonical paths.
        let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mounts = mount_points();
        let mut removed = Vec::new();
        for e in rd.flatten() {
            let path = e.path();
            let Some(pid) = e
                .file_name()
                .to_str()
                .and_then(|n| n.rsplit('-').nth(2).map(str::to_owned))
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == std::process::id() {
                continue;
            }
            let Ok(md) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let modified = md.modified().unwrap_or(std::time::UNIX_EPOCH);
            if !owner_is_gone(pid, modified) || mounts.iter().any(|m| m.starts_with(&path)) {
                continue;
            }
            let gone = if md.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            if gone.is_ok() {
                removed.push(path);
            }
        }
        removed
    }

    /// The build-cache record under `key`, if any (and if its blob is still there).
    pub fn cache_get(&self, key: &Digest) -> Option<CacheRecord> {
        let p = self.root.join("berth/cache").join(key.hex());
        let bytes = std::fs::read(p).ok()?;
        let rec: CacheRecord = serde_json::from_slice(&bytes).ok()?;
        match &rec.layer {
            Some(l) if !self.has_blob(&l.descriptor.digest) => None,
            _ => Some(rec),
        }
    }

    /// Records what the step with `key` produced.
    pub fn cache_put(&self, key: &Digest, record: &CacheRecord) -> Result<(), BuildError> {
        let p = self.root.join("berth/cache").join(key.hex());
        write_atomic(&p, &serde_json::to_vec(record).expect("cache record"))
    }

    /// Adds (or moves) `name` in `index.json` to point at `manifest`.
    pub fn tag(&self, name: &str, manifest: &Descriptor) -> Result<(), BuildError> {
        let p = self.root.join("index.json");
        let mut index: Index = std::fs::read(&p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        index.manifests.retain(|d| {
            d.annotations.get("org.opencontainers.image.ref.name") != Some(&name.to_string())
        });
        let mut d = manifest.clone();
        d.annotations
            .insert("org.opencontainers.image.ref.name".into(), name.into());
        index.manifests.push(d);
        write_atomic(&p, &serde_json::to_vec_pretty(&index).expect("index"))
    }

    /// Reads an image manifest and its config from the store. Given an image index (a
    /// multi-platform build), reads the entry for this machine's platform, else the first.
    pub fn image(&self, manifest_digest: &Digest) -> Result<StoredImage, BuildError> {
        let bytes = self.read_blob(manifest_digest)?;
        if let Ok(index) = serde_json::from_slice::<Index>(&bytes)
            && index.media_type == media::OCI_INDEX
        {
            let host = crate::Platform::host_linux();
            let entry = index
                .manifests
                .iter()
                .find(|m| {
                    m.platform
                        .as_ref()
                        .is_some_and(|p| p.architecture == host.architecture && p.os == host.os)
                })
                .or(index.manifests.first())
                .ok_or_else(|| BuildError::Store(format!("index {manifest_digest} is empty")))?;
            return self.image(&entry.digest.clone());
        }
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| BuildError::Store(format!("manifest {manifest_digest}: {e}")))?;
        let config: ImageConfig = serde_json::from_slice(&self.read_blob(&manifest.config.digest)?)
            .map_err(|e| BuildError::Store(format!("config {}: {e}", manifest.config.digest)))?;
        Ok(StoredImage {
            manifest_digest: manifest_digest.clone(),
            config,
            layers: manifest.layers,
            source: None,
        })
    }

    /// Resolves `image` for `platform` through `registry` (mirrors included) and brings its
    /// manifest, config and every missing layer into the store, streaming layers to disk.
    pub async fn pull(
        &self,
        registry: &Registry,
        image: &ImageRef,
        platform: &PlatformSpec,
        sink: &dyn EventSink,
    ) -> Result<StoredImage, BuildError> {
        let resolved = registry.resolve_manifest(image, platform).await?;
        let manifest: Manifest = serde_json::from_slice(&resolved.bytes).map_err(|e| {
            BuildError::Store(format!("manifest of {image} is not an image manifest: {e}"))
        })?;
        if !self.has_blob(&resolved.digest) {
            self.write_blob(&resolved.bytes)?;
        }
        let cfg = &manifest.config.digest;
        if !self.has_blob(cfg) {
            let bytes = registry
                .pull_config(&resolved.source, cfg, manifest.config.size)
                .await?;
            self.write_blob(&bytes)?;
        }
        for layer in &manifest.layers {
            if !is_supported_layer(&layer.media_type) {
                return Err(BuildError::Store(format!(
                    "layer {} of {image} has media type {}; berth reads gzip, zstd or plain tar layers",
                    layer.digest, layer.media_type
                )));
            }
            if self.has_blob(&layer.digest) {
                continue;
            }
            sink.emit(Event::Message {
                step: Step::Pull.into(),
                level: Level::Info,
                message: format!("pulling {} ({} bytes) of {image}", layer.digest, layer.size),
            });
            let tmp = self.temp_path("pull");
            registry
                .pull_blob_to_file(&resolved.source, &layer.digest, layer.size, &tmp)
                .await?;
            self.ingest(&tmp, &layer.digest)?;
        }
        let mut img = self.image(&resolved.digest)?;
        img.source = Some(resolved.source);
        Ok(img)
    }
}

/// Whether process `pid` no longer owns a scratch entry last written at `modified`: there is
/// no such process, or it started after `modified` (a reused pid). Unknown is "not gone".
fn owner_is_gone(pid: u32, modified: std::time::SystemTime) -> bool {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s,
        Err(e) => return e.kind() == std::io::ErrorKind::NotFound,
    };
    // Field 22 is the start time in clock ticks after boot; fields count from 3 after the
    // command name's closing parenthesis. USER_HZ is 100 on every Linux ABI.
    let Some(ticks) = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(19))
        .and_then(|t| t.parse::<u64>().ok())
    else {
        return false;
    };
    let Some(boot) = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|b| b.trim().parse::<u64>().ok())
    }) else {
        return false;
    };
    let started = std::time::UNIX_EPOCH + std::time::Duration::from_secs(boot + ticks / 100);
    // Two seconds of slack for the coarse boot time.
    started > modified + std::time::Duration::from_secs(2)
}

/// Mount points of this mount namespace (`/proc/self/mountinfo`, field 5, octal escapes
/// undone).
fn mount_points() -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| {
            let mut out = Vec::new();
            let b = m.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'\\'
                    && i + 3 < b.len()
                    && let Ok(v) = u8::from_str_radix(&m[i + 1..i + 4], 8)
                {
                    out.push(v);
                    i += 4;
                } else {
                    out.push(b[i]);
                    i += 1;
                }
            }
            PathBuf::from(std::ffi::OsString::from_vec(out))
        })
        .collect()
}

/// Whether berth can unpack a layer of this media type.
pub fn is_supported_layer(media_type: &str) -> bool {
    matches!(
        media_type,
        media::OCI_LAYER_GZIP
            | super::image::DOCKER_LAYER_GZIP
            | super::image::OCI_LAYER_TAR
            | super::image::OCI_LAYER_ZSTD
    ) || media_type == "application/vnd.docker.image.rootfs.diff.tar"
}

/// Writes `bytes` to `path` through a temporary sibling and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    let n = TMP_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// sha256 and size of a file (re-exported for tests).
pub fn file_digest(path: &Path) -> Result<(Digest, u64), BuildError> {
    sha256_file(path).map_err(io_err(path))
}

#[cfg(test)]
mod permission_tests {
    use super::*;

    #[test]
    fn stale_scratch_cleanup_keeps_this_process_and_names_without_a_pid() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let mine = store.temp_path("bundle");
        std::fs::create_dir_all(&mine).unwrap();
        let stray = d.path().join("berth/tmp/stray");
        std::fs::write(&stray, "").unwrap();
        // pid 0 is never a process.
        let dead = d.path().join("berth/tmp/secret-0-1-2");
        std::fs::write(&dead, "s").unwrap();
        let removed = store.clean_stale_tmp();
        assert_eq!(removed.len(), 1, "{removed:?}");
        assert!(mine.exists() && stray.exists() && !dead.exists());
    }

    #[test]
    fn store_with_setuid_files_of_images_is_not_world_readable() {
        use std::os::unix::fs::PermissionsExt as _;
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("store");
        Store::open(&root).unwrap();
        let mode = std::fs::metadata(&root).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "store root mode {mode:o}");
    }
}
