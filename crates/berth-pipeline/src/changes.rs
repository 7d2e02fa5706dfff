//! Which services changed between the commit an environment last deployed and the one to
//! deploy: `git diff` mapped to services by their paths.
//!
//! Rules, in order of strength (a service gets the strongest reason that applies):
//! 1. no previous commit (`from = None`): every service, [`ChangeReason::FirstDeploy`];
//! 2. berth.yaml itself changed: [`ChangeReason::Config`] for every service whose entry
//!    changed outside `manifests` and `hooks` (or is new), and for every service when anything
//!    outside `services` and `environments` changed (registry, shared paths, deploy defaults)
//!    or the earlier berth.yaml cannot be read; an entry whose `manifests` or `hooks` alone
//!    changed counts as [`ChangeReason::Manifests`]. So adding a service to berth.yaml builds
//!    that service alone (scenario 4: a new microservice must not rebuild the others). The
//!    services a `discover` entry finds share that entry's change;
//! 3. a file under a top-level `shared` path changed: every service, [`ChangeReason::Shared`];
//! 4. a file under one of the service's `paths` (default: its build context) changed:
//!    [`ChangeReason::Source`]. A folder new to a `discover` entry is all new files, so its
//!    service, and it alone, is built;
//! 5. only its manifests, Helm chart or values files, or hook manifests changed:
//!    [`ChangeReason::Manifests`] — redeploy with the digest already deployed, no rebuild.
//!
//! A path covers itself and everything below it (`web` covers `web/app.js`, not `webapp/x`);
//! `.` covers the whole directory of berth.yaml. Paths are relative to berth.yaml, which may sit
//! in a subdirectory of the repository (monorepo): files outside that directory only matter
//! when a service path reaches them with `..`. Renames count on both sides: moving a file from
//! `api/` to `web/` changes both services. The diff is tree to tree (`git diff from to`), so the
//! result does not depend on the history between the two commits.

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_config::{Config, HookAction, Manifests, Service};

/// Why a service is part of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeReason {
    /// Only manifests (or chart, values files, hook manifests) changed: redeploy, no rebuild.
    Manifests,
    /// A file under the service's own paths changed.
    Source,
    /// A file under a shared path changed.
    Shared,
    /// berth.yaml changed.
    Config,
    /// Nothing was deployed before.
    FirstDeploy,
}

/// One service that the run must handle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceChange {
    /// The service's name.
    pub service: String,
    /// The strongest reason that applies.
    pub reason: ChangeReason,
    /// Whether its image must be built: it has a `build` and the reason is not only manifests.
    pub rebuild: bool,
    /// The changed files (relative to the repository root) that matched it, sorted; empty for
    /// [`ChangeReason::FirstDeploy`].
    pub files: Vec<PathBuf>,
}

/// Why change detection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChangeError {
    /// `git` could not be started, or did not finish in time.
    #[error("cannot run git: {source}{}", if source.is_not_found() { "; install git and make sure it is on PATH" } else { "" })]
    Spawn {
        /// What went wrong.
        #[source]
        source: berth_process::ProcessError,
    },
    /// A commit is not in the repository (a force-push dropped it, or a shallow clone lacks
    /// it). The caller decides: usually treat the run as a first deploy.
    #[error(
        "commit `{commit}` is not in the repository at {}; fetch it (or unshallow the clone), or deploy everything",
        repo.display()
    )]
    UnknownCommit {
        /// The commit as given.
        commit: String,
        /// The repository.
        repo: PathBuf,
    },
    /// The directory of berth.yaml is not inside the repository.
    #[error("{} (the directory of berth.yaml) is not inside the git repository {}", dir.display(), repo.display())]
    OutsideRepository {
        /// The configuration's directory.
        dir: PathBuf,
        /// The repository.
        repo: PathBuf,
    },
    /// git failed.
    #[error("`git {args}` failed: {stderr}")]
    Git {
        /// The arguments.
        args: String,
        /// What git said.
        stderr: String,
    },
}

/// How long one local git call of change detection may take (a stale `index.lock` or a
/// huge repository must not hold a run forever).
const GIT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

fn git(repo: &Path, args: &[&str]) -> Result<Vec<u8>, ChangeError> {
    let out = berth_process::output(
        Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("LC_ALL", "C"),
        None,
        GIT_DEADLINE,
    )
    .map_err(|source| ChangeError::Spawn { source })?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(ChangeError::Git {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Where a checkout on disk stands: its commit, only when nothing under `dir` differs from it
/// (a dirty tree is not the commit, so a run records none and rebuilds everything), and its
/// branch. Either is `None` outside a git repository.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkingTree {
    /// `HEAD`'s id, when the tree under `dir` is clean.
    pub commit: Option<String>,
    /// The checked-out branch (`HEAD` when detached).
    pub branch: Option<String>,
}

/// Reads where the checkout holding `dir` stands; see [`WorkingTree`].
pub fn working_tree(dir: &Path) -> WorkingTree {
    let text = |args: &[&str]| {
        git(dir, args)
            .ok()
            .map(|out| String::from_utf8_lossy(&out).trim().to_string())
    };
    let clean = text(&["status", "--porcelain", "--", "."]).is_some_and(|s| s.is_empty());
    WorkingTree {
        commit: text(&["rev-parse", "HEAD"]).filter(|_| clean),
        branch: text(&["rev-parse", "--abbrev-ref", "HEAD"]),
    }
}

fn resolve(repo: &Path, commit: &str) -> Result<String, ChangeError> {
    let spec = format!("{commit}^{{commit}}");
    // `--end-of-options`: a commit named `--output=FILE` (from a release record or a webhook)
    // is a revision that does not exist, never an option.
    match git(
        repo,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &spec,
        ],
    ) {
        Ok(out) => Ok(String::from_utf8_lossy(&out).trim().to_string()),
        Err(ChangeError::Git { .. }) => Err(ChangeError::UnknownCommit {
            commit: commit.to_string(),
            repo: repo.to_path_buf(),
        }),
        Err(e) => Err(e),
    }
}

/// The files that differ between two commits, renames on both sides, relative to the
/// repository root.
pub fn changed_files(repo: &Path, from: &str, to: &str) -> Result<Vec<PathBuf>, ChangeError> {
    let from = resolve(repo, from)?;
    let to = resolve(repo, to)?;
    let out = git(
        repo,
        &[
            "diff",
            "--name-status",
            "-z",
            "-M",
            "--no-ext-diff",
            &from,
            &to,
        ],
    )?;
    let mut fields = out
        .split(|b| *b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| String::from_utf8_lossy(f).into_owned());
    let mut files = Vec::new();
    while let Some(status) = fields.next() {
        // Renames and copies carry two paths (old, new); every other status one.
        let paths = if status.starts_with('R') || status.starts_with('C') {
            2
        } else {
            1
        };
        for _ in 0..paths {
            if let Some(p) = fields.next() {
                files.push(PathBuf::from(p));
            }
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

/// The services affected between `from` (the commit last deployed; `None` for a first deploy)
/// and `to`, in the order of berth.yaml. See the module docs for the rules.
pub fn changed_services(
    repo: &Path,
    from: Option<&str>,
    to: &str,
    config: &Config,
) -> Result<Vec<ServiceChange>, ChangeError> {
    let Some(from) = from else {
        resolve(repo, to)?;
        return Ok(config
            .services
            .iter()
            .map(|s| ServiceChange {
                service: s.name.clone(),
                reason: ChangeReason::FirstDeploy,
                rebuild: s.build.is_some(),
                files: Vec::new(),
            })
            .collect());
    };
    let files = changed_files(repo, from, to)?;
    let prefix = config_prefix(repo, &config.dir)?;
    let in_repo = |p: &Path| normalize(&prefix.join(p));
    let config_file = in_repo(Path::new(&config.file));
    let shared: Vec<PathBuf> = config.shared.iter().map(|p| in_repo(p)).collect();

    let matching = |bases: &[PathBuf]| -> Vec<PathBuf> {
        files
            .iter()
            .filter(|f| bases.iter().any(|b| covers(b, f)))
            .cloned()
            .collect()
    };
    let config_changed: Vec<PathBuf> = files
        .iter()
        .filter(|f| **f == config_file)
        .cloned()
        .collect();
    let entries = if config_changed.is_empty() {
        None
    } else {
        config_entry_changes(repo, from, to, &config_file)
    };
    let shared_changed = matching(&shared);

    let mut out = Vec::new();
    for s in &config.services {
        let own: Vec<PathBuf> = s.paths.iter().map(|p| in_repo(p)).collect();
        let manifests: Vec<PathBuf> = manifest_paths(s).iter().map(|p| in_repo(p)).collect();
        let (config_reason, config_files) = match &entries {
            // Only this entry's manifests or hooks changed; or nothing in it changed.
            Some(entries) => match entries.get(&entry_key(s)) {
                Some(EntryChange::Unchanged) => (ChangeReason::Config, Vec::new()),
                Some(EntryChange::Manifests) => (ChangeReason::Manifests, config_changed.clone()),
                _ => (ChangeReason::Config, config_changed.clone()),
            },
            None => (ChangeReason::Config, config_changed.clone()),
        };
        let candidates = [
            (config_reason, config_files),
            (ChangeReason::Shared, shared_changed.clone()),
            (ChangeReason::Source, matching(&own)),
            (ChangeReason::Manifests, matching(&manifests)),
        ];
        let Some(reason) = candidates
            .iter()
            .filter(|(_, f)| !f.is_empty())
            .map(|(r, _)| *r)
            .max()
        else {
            continue;
        };
        let mut matched: Vec<PathBuf> = candidates.into_iter().flat_map(|(_, f)| f).collect();
        matched.sort();
        matched.dedup();
        out.push(ServiceChange {
            service: s.name.clone(),
            reason,
            rebuild: s.build.is_some() && reason != ChangeReason::Manifests,
            files: matched,
        });
    }
    Ok(out)
}

/// How one service's entry in berth.yaml differs between two commits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EntryChange {
    /// Identical.
    Unchanged,
    /// Only `manifests` or `hooks` differ: redeploy, no rebuild.
    Manifests,
    /// Anything else differs (build, image, test, paths), or the entry is new.
    Build,
}

/// Per service (by name, as in `to`), how its berth.yaml entry changed from `from` to `to`;
/// `None` when every service must count as changed: a top-level key other than `services` and
/// `environments` differs, or either version cannot be read.
fn config_entry_changes(
    repo: &Path,
    from: &str,
    to: &str,
    config_file: &Path,
) -> Option<std::collections::BTreeMap<String, EntryChange>> {
    use serde_json::Value;
    // Only resolved ids reach `git show`, which takes `--output=FILE` and writes it.
    let (from, to) = (resolve(repo, from).ok()?, resolve(repo, to).ok()?);
    let (from, to) = (from.as_str(), to.as_str());
    let read = |commit: &str| -> Option<Value> {
        let spec = format!("{commit}:{}", config_file.to_string_lossy());
        let text = git(repo, &["show", "--end-of-options", &spec]).ok()?;
        serde_saphyr::from_str::<Value>(&String::from_utf8_lossy(&text)).ok()
    };
    let (Value::Object(mut old), Value::Object(mut new)) = (read(from)?, read(to)?) else {
        return None;
    };
    let services = |doc: &mut serde_json::Map<String, Value>| -> Option<Vec<Value>> {
        match doc.remove("services") {
            Some(Value::Array(list)) => Some(list),
            _ => None,
        }
    };
    let (old_services, new_services) = (services(&mut old)?, services(&mut new)?);
    old.remove("environments");
    new.remove("environments");
    if old != new {
        return None;
    }
    // A `discover` entry is keyed by its pattern: every service it finds shares its change.
    let name = |v: &Value| match (v["name"].as_str(), v["discover"].as_str()) {
        (Some(n), None) => Some(n.to_string()),
        (None, Some(p)) => Some(discover_key(p)),
        _ => None,
    };
    let without_deploy_keys = |v: &Value| {
        let mut v = v.clone();
        if let Value::Object(m) = &mut v {
            m.remove("manifests");
            m.remove("hooks");
            // Which folders are skipped changes the set of services, not how each is built.
            m.remove("exclude");
        }
        v
    };
    let mut out = std::collections::BTreeMap::new();
    for entry in &new_services {
        let n = name(entry)?;
        let change = match old_services.iter().find(|o| name(o).as_deref() == Some(&n)) {
            Some(o) if o == entry => EntryChange::Unchanged,
            Some(o) if without_deploy_keys(o) == without_deploy_keys(entry) => {
                EntryChange::Manifests
            }
            _ => EntryChange::Build,
        };
        out.insert(n, change);
    }
    Some(out)
}

/// The key of a service's berth.yaml entry: its name, or its `discover` pattern.
fn entry_key(s: &Service) -> String {
    match &s.discovered_by {
        Some(pattern) => discover_key(pattern),
        None => s.name.clone(),
    }
}

fn discover_key(pattern: &str) -> String {
    // Not a valid service name, so it cannot collide with one.
    format!("discover: {pattern}")
}

/// Where berth.yaml's directory is, relative to the repository root.
fn config_prefix(repo: &Path, dir: &Path) -> Result<PathBuf, ChangeError> {
    let top = git(repo, &["rev-parse", "--show-toplevel"])?;
    let top = PathBuf::from(String::from_utf8_lossy(&top).trim());
    let outside = || ChangeError::OutsideRepository {
        dir: dir.to_path_buf(),
        repo: repo.to_path_buf(),
    };
    let top = top.canonicalize().map_err(|_| outside())?;
    let dir = dir.canonicalize().map_err(|_| outside())?;
    dir.strip_prefix(&top)
        .map(Path::to_path_buf)
        .map_err(|_| outside())
}

/// The files a service's rendered objects come from.
fn manifest_paths(s: &Service) -> Vec<PathBuf> {
    let mut out = Vec::new();
    match &s.manifests {
        Some(Manifests::Path { paths, .. }) => out.extend(paths.iter().cloned()),
        Some(Manifests::Template {
            paths, glob_bases, ..
        }) => {
            out.extend(paths.iter().cloned());
            out.extend(glob_bases.iter().cloned());
        }
        Some(Manifests::Kustomize { dir }) => out.push(dir.clone()),
        Some(Manifests::Helm(h)) => {
            out.push(PathBuf::from(&h.chart));
            out.extend(h.values.iter().cloned());
        }
        None => {}
    }
    for hook in s.hooks.pre_deploy.iter().chain(&s.hooks.post_deploy) {
        if let HookAction::Manifest(p) = &hook.action {
            out.push(p.clone());
        }
    }
    out
}

/// `base` covers `file` if it is `file` or a directory above it; `.` (empty) covers all.
fn covers(base: &Path, file: &Path) -> bool {
    base.as_os_str().is_empty() || base == Path::new(".") || file.starts_with(base)
}

/// Lexical normalisation (drops `.`, folds `a/..`).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}
