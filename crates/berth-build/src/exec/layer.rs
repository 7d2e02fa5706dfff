//! Layers: writing deterministic tars from files of a root filesystem, and applying layers
//! (with whiteouts) to build one.
//!
//! A written layer is reproducible by construction: entries sorted by path, every mtime set to
//! one value (SOURCE_DATE_EPOCH or 0), no atime/ctime, empty user/group names, owners as they
//! are on disk (root unless chowned or created by a RUN as another user), and gzip with a fixed
//! header (mtime 0, no file name) — or, on request, zstd at a fixed level, single-threaded, no
//! checksum (same bytes for the same tar with the same zstd version). Parent directories of
//! every entry are included so the layer stands on its own.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use berth_registry::media;
use berth_types::Digest;
use sha2::{Digest as _, Sha256};

use super::error::{BuildError, io_err};
use super::image::{Descriptor, OCI_LAYER_ZSTD};
use super::store::{CachedLayer, Store};

/// Whiteout prefix of a deleted file.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Marker of an opaque directory.
pub const OPAQUE: &str = ".wh..wh..opq";

/// What a layer is made of: paths of a root filesystem (relative, `/`-separated, no leading
/// slash) plus deletions.
#[derive(Debug, Default, Clone)]
pub struct LayerPlan {
    /// Files, directories, links to take from disk as they are now.
    pub paths: Vec<String>,
    /// Deleted paths (each becomes `dir/.wh.name`).
    pub whiteouts: Vec<String>,
    /// Directories whose lower content is hidden (`dir/.wh..wh..opq`).
    pub opaque: Vec<String>,
}

impl LayerPlan {
    /// Whether the layer would be empty.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty() && self.whiteouts.is_empty() && self.opaque.is_empty()
    }
}

struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Item {
    Disk,
    Whiteout,
}

/// How written layers are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// `application/vnd.oci.image.layer.v1.tar+gzip` (the default; every runtime reads it).
    #[default]
    Gzip,
    /// `application/vnd.oci.image.layer.v1.tar+zstd` (smaller and faster to unpack; needs
    /// containerd >= 1.5 or CRI-O on the nodes).
    Zstd,
}

impl Compression {
    /// The layer media type it produces.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Gzip => media::OCI_LAYER_GZIP,
            Self::Zstd => OCI_LAYER_ZSTD,
        }
    }

    /// Its name, as `--compression` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "gzip" => Ok(Self::Gzip),
            "zstd" => Ok(Self::Zstd),
            other => Err(format!(
                "unknown layer compression {other:?}; use gzip or zstd"
            )),
        }
    }
}

/// zstd's default level: a fixed level keeps layers reproducible.
const ZSTD_LEVEL: i32 = 3;

type Sink = HashWriter<BufWriter<File>>;

enum Encoder {
    Gzip(flate2::write::GzEncoder<Sink>),
    Zstd(zstd::stream::write::Encoder<'static, Sink>),
}

impl Encoder {
    fn new(compression: Compression, out: Sink) -> io::Result<Self> {
        Ok(match compression {
            Compression::Gzip => Self::Gzip(
                flate2::GzBuilder::new()
                    .mtime(0)
                    .operating_system(255)
                    .write(out, flate2::Compression::default()),
            ),
            Compression::Zstd => {
                let mut z = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?;
                z.include_checksum(false)?;
                z.include_contentsize(false)?;
                Self::Zstd(z)
            }
        })
    }

    fn finish(self) -> io::Result<Sink> {
        match self {
            Self::Gzip(g) => g.finish(),
            Self::Zstd(z) => z.finish(),
        }
    }
}

impl Write for Encoder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Gzip(g) => g.write(buf),
            Self::Zstd(z) => z.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Gzip(g) => g.flush(),
            Self::Zstd(z) => z.flush(),
        }
    }
}

/// Writes the layer described by `plan`, taking files from `root`, into `store`, compressed
/// with `compression`. Returns `None` when the plan is empty.
pub fn write_layer(
    store: &Store,
    root: &Path,
    plan: &LayerPlan,
    mtime: u64,
    compression: Compression,
) -> Result<Option<CachedLayer>, BuildError> {
    if plan.is_empty() {
        return Ok(None);
    }
    let mut items: BTreeMap<String, Item> = BTreeMap::new();
    let mut add_with_parents = |p: &str, item: Item| {
        let mut acc = String::new();
        let parts: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
        for (i, part) in parts.iter().enumerate() {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(part);
            if i + 1 < parts.len() {
                items.entry(acc.clone()).or_insert(Item::Disk);
            }
        }
        if !acc.is_empty() {
            items.insert(acc, item);
        }
    };
    for p in &plan.paths {
        add_with_parents(p, Item::Disk);
    }
    for p in &plan.whiteouts {
        let (dir, name) = match p.rsplit_once('/') {
            Some((d, n)) => (format!("{d}/"), n),
            None => (String::new(), p.as_str()),
        };
        add_with_parents(&format!("{dir}{WHITEOUT_PREFIX}{name}"), Item::Whiteout);
    }
    for d in &plan.opaque {
        add_with_parents(&format!("{d}/{OPAQUE}"), Item::Whiteout);
    }

    let tmp = store.temp_path("layer");
    let file = File::create(&tmp).map_err(io_err(&tmp))?;
    let gz_out = HashWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
        written: 0,
    };
    let gz = Encoder::new(compression, gz_out).map_err(io_err(&tmp))?;
    let tar_out = HashWriter {
        inner: gz,
        hasher: Sha256::new(),
        written: 0,
    };
    let mut tar = tar::Builder::new(tar_out);
    let mut hardlinks: HashMap<(u64, u64), String> = HashMap::new();
    let result = (|| -> Result<(), BuildError> {
        for (path, item) in &items {
            let mut h = tar::Header::new_gnu();
            h.set_mtime(mtime);
            h.set_uid(0);
            h.set_gid(0);
            match item {
                Item::Whiteout => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(0o644);
                    h.set_size(0);
                    tar.append_data(&mut h, path, io::empty())
                        .map_err(io_err(&tmp))?;
                }
                Item::Disk => append_disk(&mut tar, &mut h, root, path, &mut hardlinks)?,
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let tar_out = tar.into_inner().map_err(io_err(&tmp))?;
    let diff_id = Digest::sha256_from_bytes(&tar_out.hasher.finalize().into());
    let mut gz_out = tar_out.inner.finish().map_err(io_err(&tmp))?;
    gz_out.flush().map_err(io_err(&tmp))?;
    let digest = Digest::sha256_from_bytes(&gz_out.hasher.finalize().into());
    let size = gz_out.written;
    drop(gz_out.inner);
    store.ingest(&tmp, &digest)?;
    Ok(Some(CachedLayer {
        descriptor: Descriptor {
            media_type: compression.media_type().into(),
            digest,
            size,
            platform: None,
            annotations: Default::default(),
        },
        diff_id,
    }))
}

fn append_disk<W: Write>(
    tar: &mut tar::Builder<W>,
    h: &mut tar::Header,
    root: &Path,
    path: &str,
    hardlinks: &mut HashMap<(u64, u64), String>,
) -> Result<(), BuildError> {
    let abs = root.join(path);
    let md = std::fs::symlink_metadata(&abs).map_err(io_err(&abs))?;
    let ft = md.file_type();
    h.set_mode(md.mode() & 0o7777);
    h.set_uid(u64::from(md.uid()));
    h.set_gid(u64::from(md.gid()));
    let err = io_err(&abs);
    if ft.is_file() {
        if md.nlink() > 1 {
            let key = (md.dev(), md.ino());
            if let Some(first) = hardlinks.get(&key) {
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                return tar.append_link(h, path, first).map_err(err);
            }
            hardlinks.insert(key, path.to_string());
        }
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(md.len());
        let f = File::open(&abs).map_err(io_err(&abs))?;
        tar.append_data(h, path, f.take(md.len())).map_err(err)
    } else if ft.is_dir() {
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        tar.append_data(h, path, io::empty()).map_err(err)
    } else if ft.is_symlink() {
        let target = std::fs::read_link(&abs).map_err(io_err(&abs))?;
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        tar.append_link(h, path, target).map_err(err)
    } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
        h.set_entry_type(if ft.is_char_device() {
            tar::EntryType::Char
        } else if ft.is_block_device() {
            tar::EntryType::Block
        } else {
            tar::EntryType::Fifo
        });
        let rdev = md.rdev();
        let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
        let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
        h.set_device_major(major as u32).map_err(io_err(&abs))?;
        h.set_device_minor(minor as u32).map_err(io_err(&abs))?;
        h.set_size(0);
        tar.append_data(h, path, io::empty()).map_err(err)
    } else {
        // Sockets cannot be archived; BuildKit drops them too.
        Ok(())
    }
}

fn open_layer(blob: &Path, media_type: &str) -> Result<Box<dyn Read>, BuildError> {
    let f = File::open(blob).map_err(io_err(blob))?;
    let r = BufReader::with_capacity(1 << 20, f);
    Ok(if media_type.ends_with("gzip") {
        Box::new(flate2::read::MultiGzDecoder::new(r))
    } else if media_type.ends_with("zstd") {
        Box::new(zstd::stream::read::Decoder::with_buffer(r).map_err(io_err(blob))?)
    } else {
        Box::new(r)
    })
}

/// Applies a layer blob to the directory `root`: whiteouts first (`.wh.name` removes `name`,
/// `.wh..wh..opq` empties its directory of lower content), then every other entry, replacing
/// what is in the way. Owners, modes and mtimes are kept.
pub fn apply_layer(blob: &Path, media_type: &str, root: &Path) -> Result<(), BuildError> {
    let bad = |e: io::Error| BuildError::Io {
        path: blob.to_path_buf(),
        source: e,
    };
    // Every entry's parent is resolved inside `root` (symlinks followed as a chroot would),
    // so that no whiteout, file, hardlink or directory of a hostile layer lands outside it:
    // a link `x -> /` makes `x/etc/passwd` mean `<root>/etc/passwd`.
    // Pass 1: whiteouts.
    let mut archive = tar::Archive::new(open_layer(blob, media_type)?);
    for entry in archive.entries().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.starts_with(WHITEOUT_PREFIX) {
            continue;
        }
        let Some(parent) = safe_rel(path.parent().unwrap_or(Path::new(""))) else {
            continue;
        };
        let dir = root.join(resolve_in_root(root, &parent.to_string_lossy())?);
        if name == OPAQUE {
            if let Ok(rd) = std::fs::read_dir(&dir) {
                for child in rd.flatten() {
                    remove_any(&child.path())?;
                }
            }
        } else {
            let victim = &name[WHITEOUT_PREFIX.len()..];
            if victim.is_empty() || victim == "." || victim == ".." {
                continue;
            }
            remove_any(&dir.join(victim))?;
        }
    }
    // Pass 2: content.
    let mut archive = tar::Archive::new(open_layer(blob, media_type)?);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    archive.set_unpack_xattrs(true);
    let mut dirs = Vec::new();
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        let Some(rel) = safe_rel(&path) else { continue };
        let Some(name) = rel.file_name().map(|n| n.to_os_string()) else {
            continue;
        };
        if name
            .to_str()
            .is_some_and(|n| n.starts_with(WHITEOUT_PREFIX))
        {
            continue;
        }
        let parent = rel.parent().unwrap_or(Path::new("")).to_string_lossy();
        let parent = root.join(resolve_in_root(root, &parent)?);
        let target = parent.join(&name);
        let kind = entry.header().entry_type();
        let is_dir = kind.is_dir();
        if let Ok(md) = std::fs::symlink_metadata(&target)
            && (!is_dir || !md.is_dir())
        {
            remove_any(&target)?;
        }
        std::fs::create_dir_all(&parent).map_err(io_err(&parent))?;
        if kind.is_hard_link() {
            // The link's source is a path inside the image too: resolve it in the root and
            // link to what it names; a source outside the root is refused.
            let hostile = |reason: &str| BuildError::HostileLayer {
                blob: blob.to_path_buf(),
                entry: path.display().to_string(),
                reason: reason.to_string(),
            };
            let Some(src) = entry.link_name().map_err(bad)? else {
                return Err(hostile("is a hardlink without a target"));
            };
            let Some(src_rel) = safe_rel(&src) else {
                return Err(hostile("is a hardlink to a path outside the image (`..`)"));
            };
            let src_parent = src_rel.parent().unwrap_or(Path::new("")).to_string_lossy();
            let Some(src_name) = src_rel.file_name() else {
                return Err(hostile("is a hardlink to the root directory"));
            };
            let src = root
                .join(resolve_in_root(root, &src_parent)?)
                .join(src_name);
            std::fs::hard_link(&src, &target).map_err(io_err(&target))?;
            continue;
        }
        if is_dir {
            // Directory mtimes are set after their content, or unpacking children resets them.
            dirs.push((target.clone(), entry.header().mtime().unwrap_or(0)));
        }
        entry.unpack(&target).map_err(|e| BuildError::Io {
            path: target.clone(),
            source: e,
        })?;
    }
    for (dir, mtime) in dirs.iter().rev() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(*mtime);
        // A later entry may have replaced the directory with a symlink: never follow it.
        if std::fs::symlink_metadata(dir).is_ok_and(|md| md.is_dir())
            && let Ok(f) = File::open(dir)
        {
            let _ = f.set_modified(t);
        }
    }
    Ok(())
}

/// A layer path made relative and free of `..`; `None` if it tries to escape.
fn safe_rel(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Removes a file, symlink or directory tree; missing is fine.
pub(crate) fn remove_any(p: &Path) -> Result<(), BuildError> {
    match std::fs::symlink_metadata(p) {
        Ok(md) if md.is_dir() => std::fs::remove_dir_all(p).map_err(io_err(p)),
        Ok(_) => std::fs::remove_file(p).map_err(io_err(p)),
        Err(_) => Ok(()),
    }
}

/// Resolves `path` (absolute inside the image) against `root` the way a chroot would: every
/// symlink is followed, absolute targets restart at `root`, `..` never leaves it. Returns the
/// resolved path relative to `root` (`/`-separated, no leading slash). Components that do not
/// exist are taken as they are. More than 40 links on the way is [`BuildError::SymlinkLoop`]:
/// stopping early would hand back a path that is still a link, which the caller's host would
/// then follow out of the root.
pub fn resolve_in_root(root: &Path, path: &str) -> Result<String, BuildError> {
    let mut todo: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .rev()
        .map(str::to_owned)
        .collect();
    let mut cur: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            cur.pop();
            continue;
        }
        cur.push(c);
        let abs = root.join(cur.join("/"));
        if let Ok(target) = std::fs::read_link(&abs) {
            hops += 1;
            if hops > 40 {
                return Err(BuildError::SymlinkLoop {
                    path: path.to_string(),
                    root: root.to_path_buf(),
                });
            }
            cur.pop();
            let t = target.to_string_lossy().to_string();
            if t.starts_with('/') {
                cur.clear();
            }
            for part in t.split('/').filter(|s| !s.is_empty() && *s != ".").rev() {
                todo.push(part.to_owned());
            }
        }
    }
    Ok(cur.join("/"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn resolve_follows_symlinks_inside_root() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("usr/bin")).unwrap();
        std::os::unix::fs::symlink("usr/bin", d.path().join("bin")).unwrap();
        std::os::unix::fs::symlink("/../../etc", d.path().join("usr/esc")).unwrap();
        let r = |p: &str| resolve_in_root(d.path(), p).unwrap();
        assert_eq!(r("/bin/x"), "usr/bin/x");
        assert_eq!(r("/usr/esc/passwd"), "etc/passwd");
        assert_eq!(r("/a/../../b"), "b");
    }

    #[test]
    fn symlink_chain_longer_than_40_hops_is_an_error_not_a_link_left_to_follow() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..41 {
            std::os::unix::fs::symlink(format!("l{}", i + 1), d.path().join(format!("l{i}")))
                .unwrap();
        }
        std::os::unix::fs::symlink("/etc/shadow", d.path().join("l41")).unwrap();
        let err = resolve_in_root(d.path(), "/l0").unwrap_err();
        assert!(matches!(err, BuildError::SymlinkLoop { .. }), "{err}");
        assert!(
            err.to_string().contains("more than 40 symbolic links"),
            "{err}"
        );
    }

    #[derive(Clone, Copy)]
    pub(crate) enum E<'a> {
        Sym(&'a str, &'a str),
        Hard(&'a str, &'a str),
        File(&'a str, &'a str),
        Dir(&'a str),
    }

    /// A hand-made (hostile) layer tar; names and link targets go in as written.
    pub(crate) fn hostile_tar(dir: &Path, entries: &[E]) -> PathBuf {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            let (name, data): (&str, &[u8]) = match e {
                E::Sym(n, t) | E::Hard(n, t) => {
                    h.set_entry_type(if matches!(e, E::Sym(..)) {
                        tar::EntryType::Symlink
                    } else {
                        tar::EntryType::Link
                    });
                    h.set_size(0);
                    // set_link_name refuses `..`; write the raw bytes as a hostile tar would.
                    let raw = t.as_bytes();
                    h.as_old_mut().linkname[..raw.len()].copy_from_slice(raw);
                    (n, &[])
                }
                E::File(n, body) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(body.len() as u64);
                    (n, body.as_bytes())
                }
                E::Dir(n) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_size(0);
                    (n, &[])
                }
            };
            let raw = name.as_bytes();
            h.as_old_mut().name[..raw.len()].copy_from_slice(raw);
            h.set_cksum();
            b.append(&h, data).unwrap();
        }
        let p = dir.join(format!("layer-{}.tar", entries.len()));
        std::fs::write(&p, b.into_inner().unwrap()).unwrap();
        p
    }

    /// A "host" directory with a victim file beside the root; returns (root, host).
    pub(crate) fn sandbox(d: &Path) -> (PathBuf, PathBuf) {
        let root = d.join("root");
        let host = d.join("host");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(host.join("etc")).unwrap();
        std::fs::write(host.join("victim"), "host bytes").unwrap();
        std::fs::write(host.join("etc/passwd"), "host passwd").unwrap();
        (root, host)
    }

    pub(crate) fn host_is_untouched(host: &Path) {
        let mut names: Vec<_> = walk_names(host);
        names.sort();
        assert_eq!(
            names,
            ["etc", "etc/passwd", "victim"],
            "something changed outside the root"
        );
        assert_eq!(
            std::fs::read_to_string(host.join("victim")).unwrap(),
            "host bytes"
        );
        assert_eq!(
            std::fs::read_to_string(host.join("etc/passwd")).unwrap(),
            "host passwd"
        );
    }

    fn walk_names(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if e.file_type().unwrap().is_dir() {
                out.extend(
                    walk_names(&e.path())
                        .into_iter()
                        .map(|n| format!("{name}/{n}")),
                );
            }
            out.push(name);
        }
        out
    }

    /// A hostile archive, `x -> link(host)` then `entries`, handed to `unpack` with a root
    /// beside a "host" directory; afterwards the host keeps every byte and nothing new.
    pub(crate) fn with_hostile_tar(
        entries: &[E],
        link: &dyn Fn(&Path) -> String,
        unpack: &dyn Fn(&Path, &Path),
    ) {
        let d = tempfile::tempdir().unwrap();
        let (root, host) = sandbox(d.path());
        let target = link(&host);
        let mut all = vec![E::Sym("x", &target)];
        all.extend_from_slice(entries);
        let tar = hostile_tar(d.path(), &all);
        unpack(&tar, &root);
        host_is_untouched(&host);
    }

    fn apply_hostile(entries: &[E], link: &dyn Fn(&Path) -> String) {
        with_hostile_tar(entries, link, &|tar, root| {
            let _ = apply_layer(tar, OCI_LAYER_TAR, root);
        });
    }

    const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

    fn absolute(host: &Path) -> String {
        host.display().to_string()
    }

    fn dotdot(_: &Path) -> String {
        "../host".to_string()
    }

    /// The reported attack: the link comes in a base layer, the whiteout (or file) through it
    /// in the next one — so the link is already on disk when the second layer is applied.
    fn apply_over_a_base_layer_link(entries: &[E], link: &dyn Fn(&Path) -> String) {
        let d = tempfile::tempdir().unwrap();
        let (root, host) = sandbox(d.path());
        let target = link(&host);
        let (one, two) = (d.path().join("one"), d.path().join("two"));
        std::fs::create_dir_all(&one).unwrap();
        std::fs::create_dir_all(&two).unwrap();
        let base = hostile_tar(&one, &[E::Sym("x", &target)]);
        apply_layer(&base, OCI_LAYER_TAR, &root).expect("a base layer with a link applies");
        let next = hostile_tar(&two, entries);
        let _ = apply_layer(&next, OCI_LAYER_TAR, &root);
        host_is_untouched(&host);
    }

    #[test]
    fn whiteout_in_the_next_layer_through_a_base_layer_symlink_does_not_delete_host_file() {
        apply_over_a_base_layer_link(&[E::File("x/.wh.victim", "")], &absolute);
        apply_over_a_base_layer_link(&[E::File("x/.wh.victim", "")], &dotdot);
        apply_over_a_base_layer_link(&[E::File("x/.wh..wh..opq", "")], &absolute);
        apply_over_a_base_layer_link(&[E::File("x/victim", "overwritten")], &absolute);
        apply_over_a_base_layer_link(&[E::File("x/planted", "new")], &dotdot);
    }

    #[test]
    fn whiteout_through_symlink_does_not_delete_host_file() {
        apply_hostile(&[E::File("x/.wh.victim", "")], &absolute);
        apply_hostile(&[E::File("x/.wh.victim", "")], &dotdot);
        apply_hostile(&[E::File("x/etc/.wh.passwd", "")], &absolute);
    }

    #[test]
    fn opaque_whiteout_through_symlink_does_not_empty_host_dir() {
        apply_hostile(&[E::File("x/.wh..wh..opq", "")], &absolute);
        apply_hostile(&[E::File("x/etc/.wh..wh..opq", "")], &dotdot);
    }

    #[test]
    fn file_through_symlink_does_not_overwrite_or_plant_host_files() {
        apply_hostile(&[E::File("x/victim", "overwritten")], &absolute);
        apply_hostile(&[E::File("x/etc/passwd", "root::0:0::/:/bin/sh")], &dotdot);
        apply_hostile(&[E::File("x/planted", "new")], &absolute);
        apply_hostile(&[E::Dir("x/newdir")], &absolute);
        apply_hostile(&[E::Sym("x/victim", "/etc/hostname")], &absolute);
    }

    #[test]
    fn hardlink_to_host_file_is_refused_or_confined() {
        let d = tempfile::tempdir().unwrap();
        let (root, host) = sandbox(d.path());
        let abs = host.join("victim").display().to_string();
        for entries in [
            vec![E::Hard("h", &abs), E::File("h", "through the link")],
            vec![
                E::Hard("h", "../host/victim"),
                E::File("h", "through the link"),
            ],
        ] {
            let blob = hostile_tar(d.path(), &entries);
            let _ = apply_layer(&blob, OCI_LAYER_TAR, &root);
            host_is_untouched(&host);
        }
        // A hardlink through a symlink out of the root links to the root's copy, if any.
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), "image passwd").unwrap();
        let blob = hostile_tar(
            d.path(),
            &[
                E::Sym("up", &absolute(&host)),
                E::Hard("h2", "up/../etc/passwd"),
            ],
        );
        let _ = apply_layer(&blob, OCI_LAYER_TAR, &root);
        host_is_untouched(&host);
    }

    #[test]
    fn symlink_chain_in_a_layer_does_not_reach_the_host() {
        let d = tempfile::tempdir().unwrap();
        let (root, host) = sandbox(d.path());
        let names: Vec<(String, String)> = (0..45)
            .map(|i| (format!("l{i}"), format!("l{}", i + 1)))
            .collect();
        let abs = absolute(&host);
        let mut entries: Vec<E> = names.iter().map(|(a, b)| E::Sym(a, b)).collect();
        entries.push(E::Sym("l45", &abs));
        entries.push(E::File("l0/.wh.victim", ""));
        entries.push(E::File("l0/victim", "overwritten"));
        let blob = hostile_tar(d.path(), &entries);
        let err = apply_layer(&blob, OCI_LAYER_TAR, &root).unwrap_err();
        assert!(matches!(err, BuildError::SymlinkLoop { .. }), "{err}");
        host_is_untouched(&host);
    }

    #[test]
    fn symlinks_inside_the_root_still_resolve_within_it() {
        let d = tempfile::tempdir().unwrap();
        let (root, host) = sandbox(d.path());
        let blob = hostile_tar(
            d.path(),
            &[
                E::Dir("usr"),
                E::Dir("usr/bin"),
                E::Sym("bin", "usr/bin"),
                E::Sym("abs", "/usr"),
                E::File("bin/tool", "tool"),
                E::File("abs/bin/other", "other"),
                E::Hard("bin/tool2", "usr/bin/tool"),
            ],
        );
        apply_layer(&blob, OCI_LAYER_TAR, &root).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("usr/bin/tool")).unwrap(),
            "tool"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("usr/bin/other")).unwrap(),
            "other"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("usr/bin/tool2")).unwrap(),
            "tool"
        );
        host_is_untouched(&host);
    }

    #[test]
    fn layers_are_deterministic_and_apply_whiteouts() {
        let src = tempfile::tempdir().unwrap();
        let store_dir = tempfile::tempdir().unwrap();
        let store = Store::open(store_dir.path()).unwrap();
        std::fs::create_dir_all(src.path().join("a/b")).unwrap();
        std::fs::write(src.path().join("a/b/f"), "hello").unwrap();
        std::fs::hard_link(src.path().join("a/b/f"), src.path().join("a/g")).unwrap();
        std::os::unix::fs::symlink("b/f", src.path().join("a/l")).unwrap();
        std::fs::create_dir(src.path().join("opq")).unwrap();
        let plan = LayerPlan {
            paths: vec!["a/b/f".into(), "a/g".into(), "a/l".into()],
            whiteouts: vec!["gone".into()],
            opaque: vec!["opq".into()],
        };
        let one = write_layer(&store, src.path(), &plan, 0, Compression::Gzip)
            .unwrap()
            .unwrap();
        let two = write_layer(&store, src.path(), &plan, 0, Compression::Gzip)
            .unwrap()
            .unwrap();
        assert_eq!(one, two);
        let z1 = write_layer(&store, src.path(), &plan, 0, Compression::Zstd)
            .unwrap()
            .unwrap();
        let z2 = write_layer(&store, src.path(), &plan, 0, Compression::Zstd)
            .unwrap()
            .unwrap();
        assert_eq!(z1, z2);
        assert_eq!(z1.descriptor.media_type, OCI_LAYER_ZSTD);
        assert_eq!(z1.diff_id, one.diff_id, "same tar, other compression");
        assert_ne!(z1.descriptor.digest, one.descriptor.digest);
        let zdst = tempfile::tempdir().unwrap();
        apply_layer(
            &store.blob_path(&z1.descriptor.digest),
            OCI_LAYER_ZSTD,
            zdst.path(),
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(zdst.path().join("a/b/f")).unwrap(),
            "hello"
        );

        let dst = tempfile::tempdir().unwrap();
        std::fs::write(dst.path().join("gone"), "x").unwrap();
        std::fs::create_dir_all(dst.path().join("opq/old")).unwrap();
        std::fs::create_dir_all(dst.path().join("a/g")).unwrap();
        apply_layer(
            &store.blob_path(&one.descriptor.digest),
            media::OCI_LAYER_GZIP,
            dst.path(),
        )
        .unwrap();
        assert!(!dst.path().join("gone").exists());
        assert!(dst.path().join("opq").is_dir());
        assert!(!dst.path().join("opq/old").exists());
        assert_eq!(
            std::fs::read_to_string(dst.path().join("a/g")).unwrap(),
            "hello"
        );
        assert_eq!(
            std::fs::read_to_string(dst.path().join("a/l")).unwrap(),
            "hello"
        );
    }
}
