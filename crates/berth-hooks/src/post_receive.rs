//! A `post-receive` hook for a bare git repository that sends GitHub's push webhook, signed.
//!
//! End-to-end tests (and anyone without a git host) drive the delivery server from a real
//! `git push`: the hook reads git's `<old> <new> <ref>` lines, builds GitHub's `push` payload
//! from the repository (commits, authors, added/modified/removed paths) and POSTs it with
//! `X-Hub-Signature-256`. It is a Python 3 script using only the standard library
//! (`scripts/post-receive-github` in this crate), so the repository needs nothing but git and
//! python3. Its configuration lives in `hooks/berth-webhook.json` (mode 0600, it holds the
//! secret), each key overridable by an environment variable (see the script's header).

use std::fs;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_types::Secret;

/// The hook script itself.
pub const SCRIPT: &str = include_str!("../scripts/post-receive-github");

/// Where the hook sends its webhooks, and how it names the repository.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL to POST to, e.g. `http://127.0.0.1:8080/hooks/github`.
    pub url: String,
    /// The webhook secret the payload is signed with.
    pub secret: Secret,
    /// `owner/name` in the payload; the repository's last two path parts when `None`.
    pub full_name: Option<String>,
    /// The clone URL in the payload; `file://<repository>` when `None`.
    pub clone_url: Option<String>,
}

/// Installs the hook into `bare_repo` (its `hooks/post-receive`, executable, replacing any
/// existing one) with its configuration next to it. Returns the hook's path.
pub fn install(bare_repo: &Path, target: &Target) -> io::Result<PathBuf> {
    let hooks = bare_repo.join("hooks");
    fs::create_dir_all(&hooks)?;
    let mut conf = serde_json::json!({
        "url": target.url,
        "secret": target.secret.expose(),
    });
    if let Some(name) = &target.full_name {
        conf["full_name"] = name.clone().into();
    }
    if let Some(url) = &target.clone_url {
        conf["clone_url"] = url.clone().into();
    }
    let conf_path = hooks.join("berth-webhook.json");
    let _ = fs::remove_file(&conf_path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&conf_path)?;
    io::Write::write_all(&mut f, conf.to_string().as_bytes())?;

    let hook = hooks.join("post-receive");
    fs::write(&hook, SCRIPT)?;
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755))?;
    Ok(hook)
}
