//! Keeping manifest sources inside the repository at render time.
//!
//! berth-config refuses `..`, absolute paths and symlinks leading out of the repository when it
//! loads berth.yaml, but only for the paths berth.yaml names. What lies *inside* a manifests
//! directory, a kustomization or a chart is read later, by berth or by kustomize and helm, and
//! a pusher controls it: `manifests/x.yaml -> /root/.kube/config`, a chart template linked to
//! the server's database, `resources: [../../../other-repo]` in a kustomization. So when
//! [`crate::RenderContext::root`] is set, every source is checked again right before it is
//! read:
//!
//! - a manifests directory is walked without following links; a link (to a file or a
//!   directory) must resolve inside the root, and a linked directory is walked where it leads;
//! - a kustomize directory gets the same walk, and so does every directory its `resources`,
//!   `bases`, `components`, `generators`, `transformers` and `validators` name (recursively:
//!   kustomize's load restrictor confines *files* to each kustomization's root, but lets a
//!   kustomization pull in another directory anywhere). kustomize runs with
//!   `--load-restrictor=LoadRestrictionsRootOnly` (its default, passed explicitly) and with
//!   `GIT_ALLOW_PROTOCOL=https:ssh` for remote bases;
//! - a local Helm chart (directory or archive) and every values file must resolve inside the
//!   root, and a chart directory gets the same walk.
//!
//! Dangling links are refused too: whatever they will point at when the tool runs is unknown.
//! The checks walk paths; a repository changed *while* it renders is out of scope (berth
//! renders from its own checkout).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::RenderError;

/// The root, canonical; an error naming `root` when it cannot be resolved.
pub(crate) fn canonical_root(root: &Path) -> Result<PathBuf, RenderError> {
    root.canonicalize().map_err(|source| RenderError::Read {
        path: root.to_path_buf(),
        source,
    })
}

/// Where `path` resolves, refused unless inside `root` (canonical). `what` names the path in
/// the error (a file, or a reference in a kustomization).
pub(crate) fn resolve_inside(root: &Path, path: &Path, what: &str) -> Result<PathBuf, RenderError> {
    match path.canonicalize() {
        Ok(target) if target.starts_with(root) => Ok(target),
        Ok(target) => Err(RenderError::OutsideRepository {
            what: what.to_string(),
            target,
            root: root.to_path_buf(),
        }),
        Err(source) => {
            if path.symlink_metadata().is_ok() {
                // It exists as a link, but what it names does not: refuse, not guess.
                Err(RenderError::DanglingLink {
                    path: path.to_path_buf(),
                    target: std::fs::read_link(path).unwrap_or_default(),
                })
            } else {
                Err(RenderError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// Checks a directory tree: every link in it resolves inside `root`; linked directories are
/// walked where they lead (each directory once). `skip_hidden` leaves out names starting with
/// `.`, as the plain-manifest walk never reads them.
pub(crate) fn check_tree(root: &Path, dir: &Path, skip_hidden: bool) -> Result<(), RenderError> {
    let start = resolve_inside(root, dir, &dir.display().to_string())?;
    let mut seen = HashSet::new();
    walk(root, dir, &start, skip_hidden, &mut seen)
}

fn walk(
    root: &Path,
    shown: &Path,
    real: &Path,
    skip_hidden: bool,
    seen: &mut HashSet<PathBuf>,
) -> Result<(), RenderError> {
    if !seen.insert(real.to_path_buf()) {
        return Ok(());
    }
    let read_err = |source| RenderError::Read {
        path: shown.to_path_buf(),
        source,
    };
    let mut entries: Vec<_> = std::fs::read_dir(real)
        .map_err(read_err)?
        .collect::<Result<_, _>>()
        .map_err(read_err)?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        if skip_hidden && name.to_string_lossy().starts_with('.') {
            continue;
        }
        let shown = shown.join(&name);
        let ty = e.file_type().map_err(|source| RenderError::Read {
            path: shown.clone(),
            source,
        })?;
        if ty.is_symlink() {
            let target = resolve_inside(root, &e.path(), &shown.display().to_string())?;
            if target.is_dir() {
                walk(root, &shown, &target, skip_hidden, seen)?;
            }
        } else if ty.is_dir() {
            walk(root, &shown, &e.path(), skip_hidden, seen)?;
        }
    }
    Ok(())
}

/// The kustomization file of a directory, if it has one.
fn kustomization_file(dir: &Path) -> Option<PathBuf> {
    ["kustomization.yaml", "kustomization.yml", "Kustomization"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

/// The fields of a kustomization that name other files or kustomization directories.
const REFERENCE_FIELDS: &[&str] = &[
    "resources",
    "bases",
    "components",
    "generators",
    "transformers",
    "validators",
];

/// Whether a kustomization entry is a remote target (kustomize fetches it; nothing local).
fn is_remote(entry: &str) -> bool {
    entry.contains("://") || entry.starts_with("git@") || entry.starts_with("github.com/")
}

/// Checks a kustomization directory and, recursively, every local directory it references.
pub(crate) fn check_kustomization(root: &Path, dir: &Path) -> Result<(), RenderError> {
    let mut seen = HashSet::new();
    kustomization(root, dir, &mut seen)
}

fn kustomization(root: &Path, dir: &Path, seen: &mut HashSet<PathBuf>) -> Result<(), RenderError> {
    let real = resolve_inside(root, dir, &dir.display().to_string())?;
    if !seen.insert(real.clone()) {
        return Ok(());
    }
    check_tree(root, dir, false)?;
    let Some(file) = kustomization_file(&real) else {
        // Not a kustomization (a plain resource directory is an error of kustomize's own).
        return Ok(());
    };
    let text = std::fs::read_to_string(&file).map_err(|source| RenderError::Read {
        path: file.clone(),
        source,
    })?;
    // A file that does not parse is kustomize's to report; its references cannot be read here,
    // and kustomize reads none of them either.
    let Ok(doc) = serde_saphyr::from_str::<serde_json::Value>(&text) else {
        return Ok(());
    };
    let shown_file = dir.join(file.file_name().unwrap_or_default());
    for field in REFERENCE_FIELDS {
        let Some(list) = doc.get(field).and_then(|v| v.as_array()) else {
            continue;
        };
        for entry in list.iter().filter_map(|v| v.as_str()) {
            if is_remote(entry) {
                continue;
            }
            let path = real.join(entry);
            if path.symlink_metadata().is_err() {
                // Missing: kustomize fails on it (or fetches it, when it is a remote).
                continue;
            }
            let what = format!("{}: {field} entry `{entry}`", shown_file.display());
            let target = resolve_inside(root, &path, &what)?;
            if target.is_dir() {
                kustomization(root, &dir.join(entry), seen)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> (tempfile::TempDir, tempfile::TempDir, PathBuf) {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.yaml"), "x: 1\n").unwrap();
        let repo = tempfile::tempdir().unwrap();
        let root = canonical_root(repo.path()).unwrap();
        std::fs::create_dir_all(root.join("m/sub")).unwrap();
        std::fs::write(root.join("m/a.yaml"), "a: 1\n").unwrap();
        (outside, repo, root)
    }

    #[test]
    fn a_link_inside_a_manifests_dir_to_a_file_outside_is_refused_naming_it() {
        let (outside, _repo, root) = tree();
        symlink(
            outside.path().join("secret.yaml"),
            root.join("m/sub/s.yaml"),
        )
        .unwrap();
        let e = check_tree(&root, &root.join("m"), true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("m/sub/s.yaml"), "{e}");
        assert!(e.contains("outside the repository"), "{e}");
    }

    #[test]
    fn links_that_stay_inside_are_fine_and_loops_end() {
        let (_outside, _repo, root) = tree();
        std::fs::create_dir(root.join("other")).unwrap();
        symlink("../other", root.join("m/o")).unwrap();
        symlink("..", root.join("m/sub/up")).unwrap();
        check_tree(&root, &root.join("m"), true).unwrap();
    }

    #[test]
    fn a_linked_directory_inside_whose_content_links_outside_is_refused() {
        let (outside, _repo, root) = tree();
        std::fs::create_dir(root.join("other")).unwrap();
        symlink(outside.path(), root.join("other/out")).unwrap();
        symlink("../other", root.join("m/o")).unwrap();
        let e = check_tree(&root, &root.join("m"), true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("m/o/out"), "{e}");
    }

    #[test]
    fn a_dangling_link_is_refused() {
        let (_outside, _repo, root) = tree();
        symlink("/nonexistent/berth/x", root.join("m/d.yaml")).unwrap();
        let e = check_tree(&root, &root.join("m"), true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("m/d.yaml") && e.contains("/nonexistent/berth/x"),
            "{e}"
        );
    }
}
