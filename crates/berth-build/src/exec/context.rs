//! Sources of `COPY`/`ADD`: selecting files (paths, globs, `.dockerignore`) from the build
//! context or another root filesystem, hashing them for the build cache, and copying them into
//! a stage's root filesystem while recording exactly what was written (the layer).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::error::{BuildError, io_err};
use super::layer::{remove_any, resolve_in_root};
use crate::DockerIgnore;

/// One selected source: a file, link or directory tree.
#[derive(Debug, Clone)]
pub struct Selected {
    /// Its base name (for copying a single file into a directory).
    pub name: String,
    /// Whether the top (after following a symlink) is a directory.
    pub is_dir: bool,
    /// `(absolute path, path below the source)`, top first (`""`), parents before children.
    pub entries: Vec<(PathBuf, String)>,
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// `filepath.Match` for one path component: `*`, `?`, `[a-z]`, `[!x]`, `\` escapes (see
/// [`berth_types::glob`]).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    berth_types::glob::segment_matches(berth_types::glob::Syntax::Go, pattern, name)
}

/// `a/./b/../c` -> `a/c`, no leading or trailing slash.
pub(crate) fn clean_rel(s: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

/// Selects `sources` (as written, after expansion) below `root`. `ignore` applies to the
/// build context only. A missing or ignored source is an error naming it.
pub fn select(
    root: &Path,
    sources: &[String],
    ignore: Option<&DockerIgnore>,
) -> Result<Vec<Selected>, String> {
    let excluded = |rel: &str| ignore.is_some_and(|i| !rel.is_empty() && i.excluded(rel));
    let mut out = Vec::new();
    for src in sources {
        let rel = clean_rel(src);
        let matches: Vec<String> = if has_glob(&rel) {
            let mut found = vec![String::new()];
            for comp in rel.split('/') {
                let mut next = Vec::new();
                for base in &found {
                    let dir = root.join(base);
                    let Ok(rd) = std::fs::read_dir(&dir) else {
                        continue;
                    };
                    let mut names: Vec<String> = rd
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().to_string())
                        .collect();
                    names.sort();
                    for n in names {
                        if glob_match(comp, &n) {
                            let p = if base.is_empty() {
                                n
                            } else {
                                format!("{base}/{n}")
                            };
                            if !excluded(&p) {
                                next.push(p);
                            }
                        }
                    }
                }
                found = next;
            }
            if found.is_empty() {
                return Err(format!(
                    "no file in the source matches {src:?} (after .dockerignore)"
                ));
            }
            found
        } else {
            if excluded(&rel) {
                return Err(format!(
                    "{src:?} is excluded by .dockerignore; remove it from there or from the COPY"
                ));
            }
            vec![rel]
        };
        for rel in matches {
            let resolved = resolve_in_root(root, &rel).map_err(|e| e.to_string())?;
            // .dockerignore applies to what a link points at too: a link must not let an
            // ignored file in.
            if resolved != rel && excluded(&resolved) {
                return Err(format!(
                    "{src:?} is a symbolic link to {resolved:?}, which .dockerignore excludes"
                ));
            }
            let abs = root.join(&resolved);
            let md = std::fs::metadata(&abs).map_err(|_| {
                format!(
                    "{src:?} not found in the source ({} does not exist)",
                    abs.display()
                )
            })?;
            let name = rel.rsplit('/').next().unwrap_or("").to_string();
            let mut entries = vec![(abs.clone(), String::new())];
            if md.is_dir() {
                walk(&abs, &rel, "", &excluded, &mut entries).map_err(|e| e.to_string())?;
            }
            out.push(Selected {
                name,
                is_dir: md.is_dir(),
                entries,
            });
        }
    }
    Ok(out)
}

fn walk(
    dir: &Path,
    ctx_rel: &str,
    sub: &str,
    excluded: &dyn Fn(&str) -> bool,
    out: &mut Vec<(PathBuf, String)>,
) -> std::io::Result<()> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    for n in names {
        let child_sub = if sub.is_empty() {
            n.clone()
        } else {
            format!("{sub}/{n}")
        };
        let child_ctx = if ctx_rel.is_empty() {
            child_sub.clone()
        } else {
            format!("{ctx_rel}/{child_sub}")
        };
        if excluded(&child_ctx) {
            // A re-included path below an excluded directory still has to be looked at.
            let p = dir.join(&n);
            if !std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
                continue;
            }
        }
        let p = dir.join(&n);
        let md = std::fs::symlink_metadata(&p)?;
        if !excluded(&child_ctx) {
            out.push((p.clone(), child_sub.clone()));
        }
        if md.is_dir() {
            walk(&p, ctx_rel, &child_sub, excluded, out)?;
        }
    }
    Ok(())
}

/// Applies `COPY --exclude` patterns (`.dockerignore` syntax) to a selection, as BuildKit does:
/// a source directory's entries are matched by their path below it, a source file by its name.
pub fn exclude(selected: Vec<Selected>, patterns: &DockerIgnore) -> Vec<Selected> {
    selected
        .into_iter()
        .filter(|s| s.is_dir || !patterns.excluded(&s.name))
        .map(|mut s| {
            if s.is_dir {
                s.entries
                    .retain(|(_, sub)| sub.is_empty() || !patterns.excluded(sub));
            }
            s
        })
        .collect()
}

/// A digest of everything `selected` would copy: paths, types, modes and content.
pub fn content_digest(selected: &[Selected]) -> Result<String, BuildError> {
    let mut h = Sha256::new();
    for s in selected {
        h.update(format!("source {} dir={}\n", s.name, s.is_dir));
        for (abs, sub) in &s.entries {
            let md = if sub.is_empty() {
                std::fs::metadata(abs)
            } else {
                std::fs::symlink_metadata(abs)
            }
            .map_err(io_err(abs))?;
            h.update(format!("{sub}\0{:o}\0", md.mode()));
            if md.file_type().is_symlink() {
                h.update(
                    std::fs::read_link(abs)
                        .map_err(io_err(abs))?
                        .as_os_str()
                        .as_encoded_bytes(),
                );
            } else if md.is_file() {
                let mut f = std::fs::File::open(abs).map_err(io_err(abs))?;
                let mut fh = Sha256::new();
                std::io::copy(&mut f, &mut fh).map_err(io_err(abs))?;
                h.update(fh.finalize());
            }
            h.update(b"\n");
        }
    }
    Ok(format!("{:x}", h.finalize()))
}

/// How copied files are owned and permitted.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyAttrs {
    /// `--chown` resolved.
    pub owner: Option<(u32, u32)>,
    /// `--chmod` (octal).
    pub mode: Option<u32>,
}

/// What a COPY added to a root filesystem, for rewinding it later (see `kept`).
#[derive(Debug, Default)]
pub struct Added {
    /// Paths that did not exist before, parents first.
    pub paths: Vec<String>,
    /// False when the copy also replaced or re-permissioned something that existed.
    pub exact: bool,
}

/// Copies `selected` to `dest` (absolute image path; a trailing `/` means a directory) in
/// `rootfs`. Returns the paths written, relative to the root, for the layer; records in
/// `added` which of them are new.
pub fn copy_into(
    rootfs: &Path,
    selected: &[Selected],
    dest: &str,
    attrs: CopyAttrs,
    added: &mut Added,
) -> Result<Vec<String>, BuildError> {
    let mut written = Vec::new();
    let dest_resolved = resolve_in_root(rootfs, dest)?;
    let dest_is_dir = dest.ends_with('/')
        || selected.len() > 1
        || selected.iter().any(|s| s.is_dir)
        || rootfs.join(&dest_resolved).is_dir();
    for s in selected {
        let target_top = if s.is_dir {
            dest_resolved.clone()
        } else if dest_is_dir {
            join_rel(&dest_resolved, &s.name)
        } else {
            dest_resolved.clone()
        };
        let top_parent = if s.is_dir {
            target_top.clone()
        } else {
            target_top
                .rsplit_once('/')
                .map(|(p, _)| p.to_string())
                .unwrap_or_default()
        };
        let made = written.len();
        mkdir_recorded(rootfs, &top_parent, &mut written)?;
        added.paths.extend(written[made..].iter().cloned());
        for (abs, sub) in &s.entries {
            if sub.is_empty() && s.is_dir {
                continue;
            }
            let target = if sub.is_empty() {
                target_top.clone()
            } else {
                join_rel(&target_top, sub)
            };
            let dst = rootfs.join(&target);
            let md = if sub.is_empty() {
                std::fs::metadata(abs)
            } else {
                std::fs::symlink_metadata(abs)
            }
            .map_err(io_err(abs))?;
            let ft = md.file_type();
            match std::fs::symlink_metadata(&dst) {
                Err(_) => added.paths.push(target.clone()),
                Ok(old) => {
                    let (uid, gid) = attrs.owner.unwrap_or((0, 0));
                    let mode = attrs.mode.unwrap_or(md.mode() & 0o7777);
                    let same_dir = ft.is_dir()
                        && old.is_dir()
                        && old.mode() & 0o7777 == mode
                        && (old.uid(), old.gid()) == (uid, gid);
                    if !same_dir {
                        added.exact = false;
                    }
                }
            }
            if ft.is_dir() {
                if !std::fs::symlink_metadata(&dst).is_ok_and(|m| m.is_dir()) {
                    remove_any(&dst)?;
                    std::fs::create_dir(&dst).map_err(io_err(&dst))?;
                }
                let mode = attrs.mode.unwrap_or(md.mode() & 0o7777);
                std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode))
                    .map_err(io_err(&dst))?;
            } else if ft.is_symlink() {
                remove_any(&dst)?;
                let t = std::fs::read_link(abs).map_err(io_err(abs))?;
                std::os::unix::fs::symlink(t, &dst).map_err(io_err(&dst))?;
            } else if ft.is_file() {
                remove_any(&dst)?;
                std::fs::copy(abs, &dst).map_err(io_err(&dst))?;
                let mode = attrs.mode.unwrap_or(md.mode() & 0o7777);
                std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode))
                    .map_err(io_err(&dst))?;
            } else {
                continue;
            }
            let (uid, gid) = attrs.owner.unwrap_or((0, 0));
            std::os::unix::fs::lchown(&dst, Some(uid), Some(gid)).map_err(io_err(&dst))?;
            written.push(target);
        }
    }
    Ok(written)
}

/// Writes one file with `content` at `dest` (a heredoc source).
pub fn write_file(
    rootfs: &Path,
    dest: &str,
    content: &str,
    attrs: CopyAttrs,
) -> Result<Vec<String>, BuildError> {
    let mut written = Vec::new();
    let target = resolve_in_root(rootfs, dest)?;
    let parent = target
        .rsplit_once('/')
        .map(|(p, _)| p.to_string())
        .unwrap_or_default();
    mkdir_recorded(rootfs, &parent, &mut written)?;
    let dst = rootfs.join(&target);
    remove_any(&dst)?;
    std::fs::write(&dst, content).map_err(io_err(&dst))?;
    std::fs::set_permissions(
        &dst,
        std::fs::Permissions::from_mode(attrs.mode.unwrap_or(0o644)),
    )
    .map_err(io_err(&dst))?;
    let (uid, gid) = attrs.owner.unwrap_or((0, 0));
    std::os::unix::fs::lchown(&dst, Some(uid), Some(gid)).map_err(io_err(&dst))?;
    written.push(target);
    Ok(written)
}

fn join_rel(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

/// `mkdir -p` of `rel` in `root`, recording each directory it had to create.
pub fn mkdir_recorded(root: &Path, rel: &str, written: &mut Vec<String>) -> Result<(), BuildError> {
    let mut acc = String::new();
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        acc = join_rel(&acc, part);
        let p = root.join(&acc);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(BuildError::Io {
                    path: p,
                    source: std::io::Error::other("exists and is not a directory"),
                });
            }
            Err(_) => {
                std::fs::create_dir(&p).map_err(io_err(&p))?;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
                    .map_err(io_err(&p))?;
                written.push(acc.clone());
            }
        }
    }
    Ok(())
}

/// Resolves a `USER`/`--chown` spec (`name|uid[:group|gid]`) with the root's `/etc/passwd`
/// and `/etc/group`. Returns uid, gid and the user's supplementary groups.
pub fn resolve_user(rootfs: Option<&Path>, spec: &str) -> Result<(u32, u32, Vec<u32>), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let read = |f: &str| {
        rootfs
            // The image's own /etc, even when it is a link: never the host's.
            .and_then(|r| std::fs::read_to_string(r.join(resolve_in_root(r, f).ok()?)).ok())
            .unwrap_or_default()
    };
    let passwd = read("etc/passwd");
    let groups = read("etc/group");
    let (uid, primary, name) = if let Ok(uid) = user.parse::<u32>() {
        let entry = passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[2] == user).then(|| (f[3].parse().ok(), f[0].to_string()))
        });
        match entry {
            Some((gid, name)) => (uid, gid.unwrap_or(uid), Some(name)),
            None => (uid, uid, None),
        }
    } else {
        let f = passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() > 3 && f[0] == user)
            .ok_or_else(|| format!("user {user:?} is not in the image's /etc/passwd"))?;
        (
            f[2].parse().map_err(|_| format!("bad uid for {user:?}"))?,
            f[3].parse().map_err(|_| format!("bad gid for {user:?}"))?,
            Some(user.to_string()),
        )
    };
    let gid = match group {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() > 2 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| format!("group {g:?} is not in the image's /etc/group"))?,
        },
    };
    let supplementary = match (&name, group) {
        (Some(n), None) => groups
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .filter(|f| f.len() > 3 && f[3].split(',').any(|m| m == n))
            .filter_map(|f| f[2].parse().ok())
            .collect(),
        _ => Vec::new(),
    };
    Ok((uid, gid, supplementary))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::exec::layer::tests::{E, host_is_untouched, hostile_tar, sandbox, with_hostile_tar};

    /// `ADD evil.tar /` of a hand-made archive into a root beside a "host" directory; the
    /// archive starts with `x -> <link>`.
    fn add_hostile(entries: &[E], link: &dyn Fn(&Path) -> String) {
        with_hostile_tar(entries, link, &|tar, root| {
            let attrs = CopyAttrs {
                owner: None,
                mode: None,
            };
            let _ = extract_into(root, tar, ArchiveKind::Tar, "/", attrs);
        });
    }

    #[test]
    fn add_of_an_archive_through_a_symlink_does_not_overwrite_host_files() {
        let abs = |h: &Path| h.display().to_string();
        let dotdot = |_: &Path| "../host".to_string();
        add_hostile(&[E::File("x/victim", "overwritten")], &abs);
        add_hostile(&[E::File("x/etc/passwd", "root::0:0::/:/bin/sh")], &dotdot);
        add_hostile(&[E::File("x/planted", "new")], &abs);
        add_hostile(&[E::Dir("x/newdir")], &abs);
        add_hostile(
            &[E::Dir("x/etc/newdir"), E::File("x/etc/newdir/f", "")],
            &dotdot,
        );
        add_hostile(&[E::Sym("x/victim", "/etc/hostname")], &abs);
        // `x -> /`, then `x/<the host directory>/etc/passwd`: written inside the root.
        let d = tempfile::tempdir().unwrap();
        let (root, host) = sandbox(d.path());
        let inner = format!("x{}/etc/passwd", host.display());
        let tar = hostile_tar(
            d.path(),
            &[E::Sym("x", "/"), E::File(&inner, "root::0:0::/:/bin/sh")],
        );
        let attrs = CopyAttrs {
            owner: None,
            mode: None,
        };
        let written = extract_into(&root, &tar, ArchiveKind::Tar, "/", attrs).unwrap();
        host_is_untouched(&host);
        let inside = root
            .join(host.strip_prefix("/").unwrap())
            .join("etc/passwd");
        assert_eq!(
            std::fs::read_to_string(&inside).unwrap(),
            "root::0:0::/:/bin/sh"
        );
        let rel = format!("{}/etc/passwd", host.strip_prefix("/").unwrap().display());
        assert!(written.contains(&rel), "{written:?}");
    }

    #[test]
    fn add_of_an_archive_into_a_merged_usr_image_follows_lib_inside_the_root() {
        // Debian's `/lib -> usr/lib`: Docker writes `lib/x.so` of an archive to `/usr/lib`; berth
        // used to refuse the archive ("exists and is not a directory").
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
        let tar = hostile_tar(d.path(), &[E::File("lib/x.so", "elf")]);
        let attrs = CopyAttrs {
            owner: None,
            mode: None,
        };
        let written = extract_into(&root, &tar, ArchiveKind::Tar, "/", attrs).unwrap();
        assert_eq!(written, ["usr/lib/x.so"]);
        assert_eq!(
            std::fs::read_to_string(root.join("usr/lib/x.so")).unwrap(),
            "elf"
        );
        assert!(root.join("lib").is_symlink());
    }

    #[test]
    fn add_of_an_archive_with_a_hardlink_to_a_host_file_is_refused_or_confined() {
        let d = tempfile::tempdir().unwrap();
        let (root, host) = sandbox(d.path());
        let abs = host.join("victim").display().to_string();
        for entries in [
            vec![E::Hard("h", &abs), E::File("h", "through the link")],
            vec![
                E::Hard("h", "../host/victim"),
                E::File("h", "through the link"),
            ],
            vec![
                E::Sym("up", &host.display().to_string()),
                E::Hard("h2", "up/etc/passwd"),
                E::File("h2", "through the link"),
            ],
        ] {
            let tar = hostile_tar(d.path(), &entries);
            let attrs = CopyAttrs {
                owner: None,
                mode: None,
            };
            let _ = extract_into(&root, &tar, ArchiveKind::Tar, "/", attrs);
            host_is_untouched(&host);
        }
    }

    #[test]
    fn glob_matches_like_filepath_match() {
        assert!(glob_match("*.txt", "a.txt"));
        assert!(!glob_match("*.txt", "a.txt.bak"));
        assert!(glob_match("f?o", "foo"));
        assert!(glob_match("[a-c]x", "bx"));
        assert!(!glob_match("[!a-c]x", "bx"));
    }

    #[test]
    fn copy_of_a_link_chain_past_40_hops_is_refused_not_read_on_the_host() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..41 {
            std::os::unix::fs::symlink(format!("l{}", i + 1), d.path().join(format!("l{i}")))
                .unwrap();
        }
        std::os::unix::fs::symlink("/etc/hostname", d.path().join("l41")).unwrap();
        let Err(err) = select(d.path(), &["l0".into()], None) else {
            panic!("a 41-hop link chain was followed");
        };
        assert!(err.contains("more than 40 symbolic links"), "{err}");
    }

    #[test]
    fn copy_of_a_link_to_a_dockerignored_file_is_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("secret.key"), "k").unwrap();
        std::os::unix::fs::symlink("secret.key", d.path().join("innocent")).unwrap();
        let ig = DockerIgnore::parse("*.key\n").unwrap();
        let Err(err) = select(d.path(), &["innocent".into()], Some(&ig)) else {
            panic!("a link to an ignored file was copied");
        };
        assert!(err.contains(".dockerignore excludes"), "{err}");
    }

    #[test]
    fn user_lookup_through_a_linked_etc_reads_the_image_not_the_host() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("real")).unwrap();
        std::fs::write(
            d.path().join("real/passwd"),
            "app:x:4242:4242::/app:/bin/sh\n",
        )
        .unwrap();
        // An image whose /etc is an absolute link: inside the image it means /real.
        std::os::unix::fs::symlink("/real", d.path().join("etc")).unwrap();
        assert_eq!(
            resolve_user(Some(d.path()), "app"),
            Ok((4242, 4242, vec![]))
        );
        // The host's /etc/passwd has root, which this image does not name.
        assert!(resolve_user(Some(d.path()), "root").is_err());
    }

    #[test]
    fn users_resolve_from_passwd_and_group() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\napp:x:1001:\nextra:x:7:app\n",
        )
        .unwrap();
        assert_eq!(
            resolve_user(Some(d.path()), "app"),
            Ok((1000, 1001, vec![7]))
        );
        assert_eq!(
            resolve_user(Some(d.path()), "app:root"),
            Ok((1000, 0, vec![]))
        );
        assert_eq!(resolve_user(None, "42"), Ok((42, 42, vec![])));
        assert!(resolve_user(Some(d.path()), "nobody").is_err());
    }

    #[test]
    fn archives_are_recognised_by_content_for_every_compression() {
        use std::io::Write;
        let d = tempfile::tempdir().unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, "f", &b"abc"[..]).unwrap();
        let tar = tar.into_inner().unwrap();
        let compress = |kind: ArchiveKind, data: &[u8]| -> Vec<u8> {
            match kind {
                ArchiveKind::Tar => data.to_vec(),
                ArchiveKind::TarGz => {
                    let mut e = flate2::write::GzEncoder::new(Vec::new(), Default::default());
                    e.write_all(data).unwrap();
                    e.finish().unwrap()
                }
                ArchiveKind::TarBz2 => {
                    let mut e = bzip2::write::BzEncoder::new(Vec::new(), Default::default());
                    e.write_all(data).unwrap();
                    e.finish().unwrap()
                }
                ArchiveKind::TarXz => {
                    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
                    e.write_all(data).unwrap();
                    e.finish().unwrap()
                }
                ArchiveKind::TarZst => zstd::encode_all(data, 3).unwrap(),
            }
        };
        for kind in [
            ArchiveKind::Tar,
            ArchiveKind::TarGz,
            ArchiveKind::TarBz2,
            ArchiveKind::TarXz,
            ArchiveKind::TarZst,
        ] {
            let archive = d.path().join(format!("{kind:?}.bin"));
            std::fs::write(&archive, compress(kind, &tar)).unwrap();
            assert_eq!(archive_kind(&archive).unwrap(), Some(kind));
            let not_tar = d.path().join(format!("{kind:?}.txt"));
            std::fs::write(&not_tar, compress(kind, b"just text\n")).unwrap();
            assert_eq!(archive_kind(&not_tar).unwrap(), None, "{kind:?}");
        }
    }

    #[test]
    fn select_honours_dockerignore_and_globs() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("src/sub")).unwrap();
        std::fs::write(d.path().join("src/a.txt"), "a").unwrap();
        std::fs::write(d.path().join("src/secret.key"), "k").unwrap();
        std::fs::write(d.path().join("src/sub/b.txt"), "b").unwrap();
        let ig = DockerIgnore::parse("**/*.key\n").unwrap();
        let s = select(d.path(), &["src".into()], Some(&ig)).unwrap();
        let subs: Vec<&str> = s[0].entries.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(subs, vec!["", "a.txt", "sub", "sub/b.txt"]);
        let g = select(d.path(), &["src/*.txt".into()], Some(&ig)).unwrap();
        assert_eq!(g.len(), 1);
        assert!(select(d.path(), &["src/secret.key".into()], Some(&ig)).is_err());
    }
}

/// The compression of a local archive `ADD` extracts, recognised by content like Docker does
/// (never by the file name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    /// An uncompressed tar.
    Tar,
    /// A gzip-compressed tar.
    TarGz,
    /// A bzip2-compressed tar.
    TarBz2,
    /// An xz-compressed tar.
    TarXz,
    /// A zstd-compressed tar.
    TarZst,
}

/// A reader of the decompressed content of `file`.
fn decoder(kind: ArchiveKind, file: std::fs::File) -> std::io::Result<Box<dyn std::io::Read>> {
    let r = std::io::BufReader::new(file);
    Ok(match kind {
        ArchiveKind::Tar => Box::new(r),
        ArchiveKind::TarGz => Box::new(flate2::read::MultiGzDecoder::new(r)),
        ArchiveKind::TarBz2 => Box::new(bzip2::read::MultiBzDecoder::new(r)),
        ArchiveKind::TarXz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(r)),
        ArchiveKind::TarZst => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
    })
}

/// What `ADD` does with a local file: extract it (`Ok(Some)`) or copy it (`Ok(None)`). Like
/// Docker, by content: a tar, or a gzip, bzip2, xz or zstd stream with a tar inside; a
/// compressed file that is not a tar is copied as it is.
pub fn archive_kind(path: &Path) -> Result<Option<ArchiveKind>, String> {
    use std::io::Read;
    let read_head = |r: &mut dyn Read| {
        let mut head = [0u8; 512];
        let mut n = 0;
        while n < head.len() {
            match r.read(&mut head[n..]) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
        head[..n].to_vec()
    };
    let Ok(mut f) = std::fs::File::open(path) else {
        return Ok(None);
    };
    let head = read_head(&mut f);
    let kind = if head.starts_with(&[0x1f, 0x8b]) {
        ArchiveKind::TarGz
    } else if head.starts_with(b"BZh") {
        ArchiveKind::TarBz2
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        ArchiveKind::TarXz
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        ArchiveKind::TarZst
    } else {
        return Ok(is_tar_header(&head).then_some(ArchiveKind::Tar));
    };
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let Ok(mut d) = decoder(kind, file) else {
        return Ok(None);
    };
    let inner = read_head(&mut *d);
    Ok(is_tar_header(&inner).then_some(kind))
}

/// A 512-byte tar header with a valid checksum (ustar, gnu or v7), as Go's `archive/tar`
/// accepts it.
fn is_tar_header(h: &[u8]) -> bool {
    if h.len() < 512 || h[..100].iter().all(|b| *b == 0) {
        return false;
    }
    let field = String::from_utf8_lossy(&h[148..156]);
    let Ok(want) = u32::from_str_radix(field.trim_matches(|c: char| c == '\0' || c == ' '), 8)
    else {
        return false;
    };
    let sum: u32 = h[..512]
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    sum == want
}

/// Extracts the archive `src` into the directory `dest` (absolute image path) of `rootfs`.
/// Owners and modes come from the archive unless `attrs` says otherwise; existing files are
/// replaced, directories merged. Returns the paths written, relative to the root.
///
/// The archive is input berth did not make: every entry's parent is resolved inside `rootfs`
/// as a chroot would (the way [`super::layer::apply_layer`] does), so an entry `x -> /`
/// followed by `x/etc/passwd` writes the image's `/etc/passwd`, never the host's; nothing is
/// removed or created through a host-side resolution of a link. Hardlinks name a path inside
/// the archive's destination, resolved the same way; one with `..` is refused.
pub fn extract_into(
    rootfs: &Path,
    src: &Path,
    kind: ArchiveKind,
    dest: &str,
    attrs: CopyAttrs,
) -> Result<Vec<String>, BuildError> {
    let mut written = Vec::new();
    let dest_rel = resolve_in_root(rootfs, dest)?;
    mkdir_recorded(rootfs, &dest_rel, &mut written)?;
    let file = std::fs::File::open(src).map_err(io_err(src))?;
    let reader = decoder(kind, file).map_err(io_err(src))?;
    let bad = |e: std::io::Error| BuildError::Io {
        path: src.to_path_buf(),
        source: e,
    };
    // A path of the archive (relative to `dest`) without `.`, `/` and `..`; `None` with `..`.
    let archive_rel = |p: &Path| {
        let mut rel = String::new();
        for c in p.components() {
            match c {
                std::path::Component::Normal(n) => rel = join_rel(&rel, &n.to_string_lossy()),
                std::path::Component::ParentDir => return None,
                _ => {}
            }
        }
        Some(rel)
    };
    // Where a relative directory of the archive is, resolved inside the root.
    let resolved_dir = |parent: &str| resolve_in_root(rootfs, &format!("/{dest_rel}/{parent}"));
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(attrs.owner.is_none());
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        let Some(rel) = archive_rel(&path).filter(|r| !r.is_empty()) else {
            continue;
        };
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel.as_str()));
        let parent = resolved_dir(parent)?;
        mkdir_recorded(rootfs, &parent, &mut written)?;
        let rel_target = join_rel(&parent, name);
        let target = rootfs.join(&rel_target);
        let kind = entry.header().entry_type();
        let is_dir = kind.is_dir();
        if let Ok(md) = std::fs::symlink_metadata(&target)
            && (!is_dir || !md.is_dir())
        {
            remove_any(&target)?;
        }
        if kind.is_hard_link() {
            let hostile = |reason: &str| BuildError::HostileLayer {
                blob: src.to_path_buf(),
                entry: path.display().to_string(),
                reason: reason.to_string(),
            };
            let Some(link) = entry.link_name().map_err(bad)? else {
                return Err(hostile("is a hardlink without a target"));
            };
            let Some(link_rel) = archive_rel(&link).filter(|r| !r.is_empty()) else {
                return Err(hostile(
                    "is a hardlink to a path outside the archive's destination (`..`)",
                ));
            };
            let (link_parent, link_name) =
                link_rel.rsplit_once('/').unwrap_or(("", link_rel.as_str()));
            let source = rootfs.join(join_rel(&resolved_dir(link_parent)?, link_name));
            std::fs::hard_link(&source, &target).map_err(io_err(&target))?;
        } else {
            entry.unpack(&target).map_err(io_err(&target))?;
        }
        if let Some((uid, gid)) = attrs.owner {
            std::os::unix::fs::lchown(&target, Some(uid), Some(gid)).map_err(io_err(&target))?;
        }
        if let Some(mode) = attrs.mode
            && !kind.is_symlink()
        {
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
                .map_err(io_err(&target))?;
        }
        written.push(rel_target);
    }
    let mut seen = std::collections::HashSet::new();
    written.retain(|p| seen.insert(p.clone()));
    Ok(written)
}
