//! Files berth writes into a user's repository (`berth render --convert --write`, `berth
//! init`) are replaced whole or not at all: the new text goes to `.NAME.berth-new` beside the
//! file, is synced, takes the old file's permissions, and is renamed over it. A kill -9 or a
//! full disk in the middle leaves the old file as it was (and at worst the `.berth-new` file,
//! which the next write replaces).

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Replaces `path` with `bytes` atomically; see the module docs.
pub fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = staging(path);
    // A leftover from a killed write, or a link a repository planted there: gone first, and
    // `create_new` never follows a link.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    let written =
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .and_then(|_| match std::fs::metadata(path) {
                Ok(old) => f.set_permissions(old.permissions()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    pause_point("rewrite-before-rename");
    std::fs::rename(&tmp, path)
}

/// `.NAME.berth-new` in the file's folder.
fn staging(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.berth-new"))
}

/// Test-only: with `BERTH_TEST_PAUSE_AT=rewrite-before-rename` the process stops for good
/// here, so that a test can kill it between writing the new text and replacing the file.
fn pause_point(point: &str) {
    if std::env::var_os("BERTH_TEST_PAUSE_AT").is_some_and(|p| p == point) {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn replaces_keeping_the_mode_and_leaves_no_staging_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("app.yaml");
        std::fs::write(&p, "old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        replace(&p, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert!(!staging(&p).exists());
    }

    #[test]
    fn a_link_planted_at_the_staging_name_is_not_written_through() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("app.yaml");
        let victim = d.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, staging(&p)).unwrap();
        replace(&p, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
    }
}
