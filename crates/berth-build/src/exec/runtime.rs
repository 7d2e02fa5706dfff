//! Running a process in a root filesystem through an OCI runtime (runc).
//!
//! The bundle's `config.json` is generated here, following `runc spec` with the changes
//! MACHINE-NOTES describe: no user namespace, the host network unless the RUN asks for
//! `--network=none`, and Docker's default capability set (without SETUID/SETGID `apt-get`
//! cannot drop privileges). Output is read line by line and handed to a callback, so the
//! caller can stream it as events; the last lines are kept for the error message.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Docker's default capability set.
pub const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SYS_CHROOT",
    "CAP_MKNOD",
    "CAP_AUDIT_WRITE",
    "CAP_SETFCAP",
];

/// One process to run.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// The root filesystem (absolute path), used read-write.
    pub rootfs: PathBuf,
    /// argv.
    pub args: Vec<String>,
    /// `K=V` environment.
    pub env: Vec<String>,
    /// Working directory inside the root.
    pub cwd: String,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    /// Give the process its own, empty network namespace.
    pub network_none: bool,
    /// Extra bind mounts `(host path, container path, read_only)`.
    pub binds: Vec<(PathBuf, String, bool)>,
    /// Extra tmpfs mounts `(container path, size limit in bytes)`.
    pub tmpfs: Vec<(String, Option<u64>)>,
}

impl ProcessSpec {
    /// Root, host network, no extra mounts: running an image's command.
    pub fn simple(rootfs: &Path, args: Vec<String>, env: Vec<String>, cwd: &str) -> Self {
        Self {
            rootfs: rootfs.to_path_buf(),
            args,
            env,
            cwd: if cwd.is_empty() {
                "/".into()
            } else {
                cwd.into()
            },
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            network_none: false,
            binds: Vec::new(),
            tmpfs: Vec::new(),
        }
    }
}

/// How a run ended when it did not succeed.
#[derive(Debug)]
pub enum RunError {
    /// The process exited non-zero (or was killed: 128 + signal).
    Exit {
        /// The exit code.
        code: i32,
        /// Its last output lines.
        tail: Vec<String>,
    },
    /// The runtime could not be started or failed to create the container.
    Runtime(String),
}

/// Paths the runtime mounts over; [`run`] removes the ones it had to create in the rootfs.
pub const MOUNT_POINTS: &[&str] = &[
    "proc",
    "dev",
    "dev/pts",
    "dev/shm",
    "sys",
    "etc/resolv.conf",
];

/// The OCI runtime config for `spec`.
pub fn config_json(spec: &ProcessSpec, hostname: &str) -> serde_json::Value {
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    if spec.network_none {
        namespaces.push(json!({"type": "network"}));
    }
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
    ];
    if !spec.network_none && Path::new("/etc/resolv.conf").exists() {
        mounts.push(json!({"destination": "/etc/resolv.conf", "type": "bind",
            "source": "/etc/resolv.conf", "options": ["rbind", "ro"]}));
    }
    for (src, dst, ro) in &spec.binds {
        let mut options = vec!["rbind"];
        if *ro {
            options.push("ro");
        }
        mounts.push(json!({"destination": dst, "type": "bind",
            "source": src, "options": options}));
    }
    for (dst, size) in &spec.tmpfs {
        let mut options = vec![
            "nosuid".to_string(),
            "nodev".to_string(),
            "mode=1777".to_string(),
        ];
        if let Some(n) = size {
            options.push(format!("size={n}"));
        }
        mounts.push(json!({"destination": dst, "type": "tmpfs",
            "source": "tmpfs", "options": options}));
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": spec.uid, "gid": spec.gid, "additionalGids": spec.additional_gids},
            "args": spec.args,
            "env": spec.env,
            "cwd": spec.cwd,
            "capabilities": {
                "bounding": CAPABILITIES,
                "effective": CAPABILITIES,
                "permitted": CAPABILITIES,
            },
            "noNewPrivileges": false
        },
        "root": {"path": spec.rootfs, "readonly": false},
        "hostname": hostname,
        "mounts": mounts,
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": namespaces,
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                "/proc/sysrq-trigger"]
        }
    })
}

static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Runs `spec` with `runtime` (e.g. `runc`), its bundle in `bundle_dir` (created, then
/// removed). Every output line goes to `on_line(is_stderr, line)`. Mount points the runtime had
/// to create inside the rootfs are removed again, so they never show up in a layer.
pub async fn run(
    runtime: &str,
    bundle_dir: &Path,
    spec: &ProcessSpec,
    on_line: &(dyn Fn(bool, &str) + Send + Sync),
) -> Result<(), RunError> {
    let rt = |m: String| RunError::Runtime(m);
    std::fs::create_dir_all(bundle_dir).map_err(|e| rt(format!("bundle dir: {e}")))?;
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let id = format!("berth-{}-{n}-{nanos:x}", std::process::id());
    let config = config_json(spec, "berth-build");
    // The spec holds the step's environment, secrets given as env= included: owner-only.
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(bundle_dir.join("config.json"))
            .and_then(|mut f| f.write_all(&serde_json::to_vec_pretty(&config).expect("config")))
            .map_err(|e| rt(format!("writing config.json: {e}")))?;
    }
    let missing: Vec<&str> = MOUNT_POINTS
        .iter()
        .copied()
        .filter(|m| std::fs::symlink_metadata(spec.rootfs.join(m)).is_err())
        .collect();

    let mut abandoned = Abandoned {
        runtime,
        id: &id,
        bundle_dir,
        armed: true,
    };
    let result = run_container(runtime, bundle_dir, &id, on_line).await;
    abandoned.armed = false;

    // `runc run` removes the container when it exits; make sure of it after errors too.
    let _ = tokio::process::Command::new(runtime)
        .args(["delete", "--force", &id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    for m in missing.iter().rev() {
        let p = spec.rootfs.join(m);
        let _ = std::fs::remove_dir(&p).or_else(|_| std::fs::remove_file(&p));
    }
    let _ = std::fs::remove_dir_all(bundle_dir);
    result
}

/// Kills and deletes the container when its run is abandoned half-way (the future dropped, as
/// when a parallel build is stopped because another failed): `kill_on_drop` ends only the
/// runtime's own process, not the container's.
struct Abandoned<'a> {
    runtime: &'a str,
    id: &'a str,
    bundle_dir: &'a Path,
    armed: bool,
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::process::Command::new(self.runtime)
                .args(["delete", "--force", self.id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = std::fs::remove_dir_all(self.bundle_dir);
        }
    }
}

async fn run_container(
    runtime: &str,
    bundle_dir: &Path,
    id: &str,
    on_line: &(dyn Fn(bool, &str) + Send + Sync),
) -> Result<(), RunError> {
    let mut child = tokio::process::Command::new(runtime)
        .arg("run")
        .arg("--bundle")
        .arg(bundle_dir)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| RunError::Runtime(format!("cannot start `{runtime}`: {e}")))?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let tail = std::sync::Mutex::new(VecDeque::<String>::new());
    let keep = |is_err: bool, line: String| {
        on_line(is_err, &line);
        let mut t = tail.lock().expect("tail lock");
        if t.len() == 20 {
            t.pop_front();
        }
        t.push_back(line);
    };
    let out = async {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            keep(false, l);
        }
    };
    let err = async {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            keep(true, l);
        }
    };
    tokio::join!(out, err);
    let status = child
        .wait()
        .await
        .map_err(|e| RunError::Runtime(format!("waiting for `{runtime}`: {e}")))?;
    let tail: Vec<String> = tail.into_inner().expect("tail lock").into();
    if status.success() {
        return Ok(());
    }
    let code = status.code().unwrap_or(-1);
    // runc itself reports container setup failures on stderr with a `level=error` prefix.
    if tail
        .iter()
        .any(|l| l.contains("level=error") && l.contains("runc run failed"))
    {
        return Err(RunError::Runtime(tail.join("\n")));
    }
    Err(RunError::Exit { code, tail })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_none_adds_a_namespace_and_drops_resolv_conf() {
        let spec = ProcessSpec {
            rootfs: "/r".into(),
            args: vec!["true".into()],
            env: vec![],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            network_none: true,
            binds: vec![],
            tmpfs: vec![],
        };
        let c = config_json(&spec, "h");
        let ns = c["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.iter().any(|n| n["type"] == "network"));
        assert!(!ns.iter().any(|n| n["type"] == "user"));
        assert!(
            !c["mounts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["destination"] == "/etc/resolv.conf")
        );
        let caps = c["process"]["capabilities"]["bounding"].as_array().unwrap();
        assert!(caps.iter().any(|c| c == "CAP_SETUID"));
    }
}
