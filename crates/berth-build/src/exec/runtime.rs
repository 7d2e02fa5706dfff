//! Running a process in a root filesystem through an OCI runtime (runc).
//!
//! The bundle's `config.json` is generated here, following `runc spec` with the changes
//! MACHINE-NOTES describe: no user namespace, and Docker's default capability set without
//! `CAP_NET_RAW` (without SETUID/SETGID `apt-get` cannot drop privileges). Output is read line
//! by line and handed to a callback, so the caller can stream it as events; the last lines are
//! kept for the error message.
//!
//! Containment ([`Sandbox`]): the seccomp profile of [`super::seccomp`]; a pids and a memory
//! limit (cgroup v1 or v2, applied by runc); a deadline after which the container is killed
//! (`runc kill` + `runc delete --force`, which ends the whole process tree: it is one pid
//! namespace); and a network namespace of its own ([`Network::Isolated`]) whose outbound
//! traffic goes through `slirp4netns` — user-space NAT, so that nothing of the host's loopback
//! (`--disable-host-loopback`), none of the host's own other addresses and no link-local address
//! (`169.254.0.0/16`, cloud metadata) is reachable. The last two are `unreachable` routes in the
//! namespace, which the process cannot remove without `CAP_NET_ADMIN`: slirp4netns connects
//! from the host's namespace, so without them the host's eth0 address reaches every service
//! listening on `0.0.0.0` there (checked: it did). The host's addresses are read when the step
//! starts; other machines of the host's network stay reachable, as under Docker's bridge.
//! slirp4netns answers DNS at 10.0.2.3 from the host's resolver. Each isolated run costs an
//! `ip netns add`, one slirp4netns process and one `ip -batch`; `--network host` skips them.
//!
//! Limits that end a step are told apart from its own failure: an exit by SIGKILL while the
//! kernel's `oom_kill` counter (`/proc/vmstat`) went up is the memory limit; forks failing with
//! EAGAIN (`can't fork`, `Resource temporarily unavailable`) under a pids limit is that limit
//! ([`RunError::Limit`]). runc removes the container's cgroup when it exits, so its own event
//! counters cannot be read afterwards; the signals above are what is left.
//!
//! Extra CA certificates ([`ProcessSpec::extra_ca`]) are merged with the image's own bundle
//! into a file of the bundle directory and bind-mounted read-only: at
//! [`CA_BUNDLE_PATH`] (inside the runtime's `/dev` tmpfs, so nothing is created in the root
//! filesystem) and over the image's `/etc/ssl/certs/ca-certificates.crt` when it has one; the
//! usual variables (`SSL_CERT_FILE`, `NODE_EXTRA_CA_CERTS`, ...) point at it. Nothing of it can
//! end up in a layer.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Docker's default capability set without `CAP_NET_RAW` (raw sockets: ARP/ICMP spoofing on
/// the build network; `ping` is the one common tool that needs it).
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
    /// Which network the process sees.
    pub network: Network,
    /// Extra bind mounts `(host path, container path, read_only)`.
    pub binds: Vec<(PathBuf, String, bool)>,
    /// Extra tmpfs mounts `(container path, size limit in bytes)`.
    pub tmpfs: Vec<(String, Option<u64>)>,
    /// Most processes (and threads) alive at once; 0: no limit.
    pub pids_limit: u32,
    /// Most memory in bytes; `None`: no limit.
    pub memory: Option<u64>,
    /// Killed after this long.
    pub timeout: Option<Duration>,
    /// Extra CA certificate files (PEM) to trust, merged with the image's bundle.
    pub extra_ca: Vec<PathBuf>,
}

/// The network of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// A namespace of its own with outbound access through slirp4netns; the host's loopback
    /// and link-local addresses are unreachable.
    #[default]
    Isolated,
    /// The host's network namespace (`--network host`, `RUN --network=host`).
    Host,
    /// A namespace of its own with only a loopback interface (`RUN --network=none`).
    None,
}

/// Where the merged CA bundle is mounted (inside the runtime's `/dev` tmpfs).
pub const CA_BUNDLE_PATH: &str = "/dev/berth-ca-certificates.crt";

/// Variables that point common tools at [`CA_BUNDLE_PATH`] (set only when the step's
/// environment does not set them).
pub const CA_VARIABLES: &[&str] = &[
    "SSL_CERT_FILE",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
];

/// How RUN steps and tests are contained: the settings `berth build|run|dev` take from
/// `--network`, `--pids-limit`, `--memory`, `--step-timeout`, `--test-timeout`, `--ca-cert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    /// The network of a RUN without `--network=` and of tests: [`Network::Isolated`] or
    /// [`Network::Host`].
    pub network: Network,
    /// See [`ProcessSpec::pids_limit`]; default [`DEFAULT_PIDS_LIMIT`].
    pub pids_limit: u32,
    /// See [`ProcessSpec::memory`]; default half of the host's memory.
    pub memory: Option<u64>,
    /// Deadline of one RUN step; default [`DEFAULT_STEP_TIMEOUT`].
    pub step_timeout: Option<Duration>,
    /// Deadline of one service's `test`; default [`DEFAULT_TEST_TIMEOUT`].
    pub test_timeout: Option<Duration>,
    /// Extra CA certificates for RUN steps and tests.
    pub ca_certs: Vec<PathBuf>,
    /// How a repository's own settings (berth.yaml `build:`, `test.timeout`) combine with
    /// these: [`Sandbox::for_repo`].
    pub repo: RepoPolicy,
}

/// The settings of [`Sandbox`] the operator gave explicitly (flags or their variables): they
/// win over berth.yaml under [`RepoPolicy::Trusted`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pinned {
    /// `--network`.
    pub network: bool,
    /// `--pids-limit`.
    pub pids_limit: bool,
    /// `--memory`.
    pub memory: bool,
    /// `--step-timeout`.
    pub step_timeout: bool,
    /// `--test-timeout`.
    pub test_timeout: bool,
}

/// Whose word counts when a repository's berth.yaml asks for other containment settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoPolicy {
    /// `berth run`, `dev`, `promote`: the person running berth trusts the repository.
    /// berth.yaml replaces the defaults; the settings in `pinned` (given as flags) win.
    Trusted {
        /// The settings given as flags.
        pinned: Pinned,
    },
    /// `berth serve`: repositories are whoever can push. berth.yaml may only tighten: lower
    /// limits, shorter deadlines, `network: none`; `network: host` (and a Dockerfile's
    /// `RUN --network=host`) only when the server's configuration allows it for the
    /// repository (`allow_host_network: true`).
    Untrusted {
        /// Whether `build.network: host` is allowed.
        allow_host_network: bool,
    },
}

impl Default for RepoPolicy {
    fn default() -> Self {
        RepoPolicy::Trusted {
            pinned: Pinned::default(),
        }
    }
}

/// What one service's berth.yaml asks for (`build.network`, `build.pids`, `build.memory`,
/// `build.step-timeout`, `build.ca`, `test.timeout`); `None`: not set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxRequest {
    /// `build.network`.
    pub network: Option<Network>,
    /// `build.pids`.
    pub pids_limit: Option<u32>,
    /// `build.memory`.
    pub memory: Option<u64>,
    /// `build.step-timeout`.
    pub step_timeout: Option<Duration>,
    /// `test.timeout`.
    pub test_timeout: Option<Duration>,
    /// `build.ca`, absolute paths (inside the repository).
    pub ca_certs: Vec<PathBuf>,
}

/// Default [`Sandbox::pids_limit`].
pub const DEFAULT_PIDS_LIMIT: u32 = 4096;
/// Default [`Sandbox::step_timeout`].
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// Default [`Sandbox::test_timeout`].
pub const DEFAULT_TEST_TIMEOUT: Duration = Duration::from_secs(15 * 60);

impl Default for Sandbox {
    fn default() -> Self {
        Self {
            network: Network::Isolated,
            pids_limit: DEFAULT_PIDS_LIMIT,
            memory: host_memory().map(|m| m / 2),
            step_timeout: Some(DEFAULT_STEP_TIMEOUT),
            test_timeout: Some(DEFAULT_TEST_TIMEOUT),
            ca_certs: Vec::new(),
            repo: RepoPolicy::default(),
        }
    }
}

/// How restrictive a network is: `none` < `isolated` < `host`.
fn openness(n: Network) -> u8 {
    match n {
        Network::None => 0,
        Network::Isolated => 1,
        Network::Host => 2,
    }
}

/// `v` unless the operator pinned the setting.
fn unless<T>(pinned: bool, v: Option<T>) -> Option<T> {
    if pinned { None } else { v }
}

/// The tighter of two limits where 0 or `None` means no limit.
fn tighter<T: Ord + Copy>(ours: Option<T>, theirs: T) -> T {
    match ours {
        Some(o) => o.min(theirs),
        None => theirs,
    }
}

impl Sandbox {
    /// This sandbox with a repository's own settings laid over it, as [`Sandbox::repo`] says.
    /// Extra CA certificates add up (a server's proxy CA and the repository's internal one are
    /// both needed); they only ever widen what the repository's own steps trust. The error says
    /// which setting was refused and how the operator allows it.
    pub fn for_repo(&self, req: &SandboxRequest) -> Result<Sandbox, String> {
        let mut out = self.clone();
        out.ca_certs.extend(req.ca_certs.iter().cloned());
        match &self.repo {
            RepoPolicy::Trusted { pinned } => {
                if let Some(n) = unless(pinned.network, req.network) {
                    out.network = n;
                }
                if let Some(n) = unless(pinned.pids_limit, req.pids_limit) {
                    out.pids_limit = n;
                }
                if let Some(m) = unless(pinned.memory, req.memory) {
                    out.memory = Some(m);
                }
                if let Some(t) = unless(pinned.step_timeout, req.step_timeout) {
                    out.step_timeout = Some(t);
                }
                if let Some(t) = unless(pinned.test_timeout, req.test_timeout) {
                    out.test_timeout = Some(t);
                }
            }
            RepoPolicy::Untrusted { allow_host_network } => {
                if let Some(n) = req.network {
                    if n == Network::Host && !allow_host_network {
                        return Err("berth.yaml asks for `build.network: host`, which this server does not allow: RUN steps and tests of a repository get the host's network only when the server's configuration says `allow_host_network: true` for it (see docs/security.md)".into());
                    }
                    if openness(n) < openness(out.network) || n == Network::Host {
                        out.network = n;
                    }
                }
                if let Some(n) = req.pids_limit {
                    out.pids_limit = tighter(Some(out.pids_limit).filter(|p| *p > 0), n);
                }
                if let Some(m) = req.memory {
                    out.memory = Some(tighter(out.memory, m));
                }
                if let Some(t) = req.step_timeout {
                    out.step_timeout = Some(tighter(out.step_timeout, t));
                }
                if let Some(t) = req.test_timeout {
                    out.test_timeout = Some(tighter(out.test_timeout, t));
                }
            }
        }
        Ok(out)
    }

    /// Whether a step may ask for the host's network itself (`RUN --network=host`): always
    /// for a trusted repository, on a server only where it is allowed.
    pub fn allows_host_network(&self) -> bool {
        match self.repo {
            RepoPolicy::Trusted { .. } => true,
            RepoPolicy::Untrusted { allow_host_network } => allow_host_network,
        }
    }

    /// Gives `spec` these limits, CA certificates and `timeout`.
    pub fn apply(&self, spec: &mut ProcessSpec, timeout: Option<Duration>) {
        spec.pids_limit = self.pids_limit;
        spec.memory = self.memory;
        spec.timeout = timeout;
        spec.extra_ca = self.ca_certs.clone();
    }
}

/// The host's memory in bytes (`MemTotal` of /proc/meminfo).
fn host_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Parses a memory size: bytes, or with a `k`/`m`/`g` suffix (powers of 1024, an optional
/// trailing `b`/`i`: `512m`, `2g`, `2GiB`).
pub fn parse_memory(s: &str) -> Result<u64, String> {
    berth_types::size::parse_size(s)
}

impl ProcessSpec {
    /// Root, an isolated network, no extra mounts, the default pids limit and no other:
    /// running an image's command.
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
            network: Network::Isolated,
            binds: Vec::new(),
            tmpfs: Vec::new(),
            pids_limit: DEFAULT_PIDS_LIMIT,
            memory: None,
            timeout: None,
            extra_ca: Vec::new(),
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
    /// The process did not finish within [`ProcessSpec::timeout`] and was killed.
    Timeout {
        /// The deadline.
        after: Duration,
        /// Its last output lines.
        tail: Vec<String>,
    },
    /// The process ran into a limit of its sandbox: the kernel killed it at its memory limit,
    /// or its forks failed at its pids limit.
    Limit {
        /// What happened, with the limit and the settings that raise it, e.g. "was killed by
        /// the kernel's OOM killer at its memory limit of 64m; raise it with ...".
        reason: String,
        /// Its last output lines.
        tail: Vec<String>,
    },
}

/// The kernel's count of OOM kills so far (`oom_kill` of /proc/vmstat, Linux 4.13+).
fn oom_kills() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/vmstat").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
}

/// Whether output lines say a fork failed for want of process slots (EAGAIN).
fn forks_failed(tail: &[String]) -> bool {
    tail.iter().any(|l| {
        l.contains("can't fork")
            || l.contains("fork: retry")
            || l.contains("Resource temporarily unavailable")
    })
}

/// Tells a step killed or stopped by a limit of `spec` apart from its own failure.
fn classify(spec: &ProcessSpec, result: RunError, oom_before: Option<u64>) -> RunError {
    let (code, tail, deadline) = match result {
        RunError::Exit { code, tail } => (Some(code), tail, None),
        RunError::Timeout { after, tail } => (None, tail, Some(after)),
        other => return other,
    };
    if let (Some(limit), Some(137), Some(before), Some(after)) =
        (spec.memory, code, oom_before, oom_kills())
        && after > before
    {
        return RunError::Limit {
            reason: format!(
                "was killed by the kernel's OOM killer at its memory limit of {}; raise it with --memory (e.g. --memory 4g), BERTH_MEMORY or `build.memory` in berth.yaml",
                berth_types::size::display_size(limit)
            ),
            tail,
        };
    }
    if spec.pids_limit > 0 && forks_failed(&tail) {
        let mut reason = format!(
            "could not start more processes: it reached its limit of {} processes at once (forks failed with \"Resource temporarily unavailable\"); raise it with --pids-limit, BERTH_PIDS_LIMIT or `build.pids` in berth.yaml",
            spec.pids_limit
        );
        if let Some(after) = deadline {
            reason.push_str(&format!(
                ", and it was killed at its deadline of {}",
                display_duration(after)
            ));
        }
        return RunError::Limit { reason, tail };
    }
    match deadline {
        Some(after) => RunError::Timeout { after, tail },
        None => RunError::Exit {
            code: code.unwrap_or(-1),
            tail,
        },
    }
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

/// What [`run`] prepared outside the root filesystem for one container.
#[derive(Debug, Default, Clone)]
pub struct Prepared {
    /// The network namespace to join (`/run/netns/NAME`), for [`Network::Isolated`].
    pub netns: Option<PathBuf>,
    /// The file mounted at `/etc/resolv.conf`; `None` mounts nothing there.
    pub resolv_conf: Option<PathBuf>,
    /// The merged CA bundle, and whether it also goes over the image's own bundle.
    pub ca_bundle: Option<(PathBuf, bool)>,
}

/// The image's CA bundle, which `--ca-cert` extends.
const IMAGE_CA_BUNDLE: &str = "etc/ssl/certs/ca-certificates.crt";

/// The OCI runtime config for `spec`.
pub fn config_json(spec: &ProcessSpec, hostname: &str, prepared: &Prepared) -> serde_json::Value {
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    match (&spec.network, &prepared.netns) {
        (Network::Host, _) => {}
        (_, Some(path)) => namespaces.push(json!({"type": "network", "path": path})),
        (_, None) => namespaces.push(json!({"type": "network"})),
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
    if let Some(resolv) = &prepared.resolv_conf {
        mounts.push(json!({"destination": "/etc/resolv.conf", "type": "bind",
            "source": resolv, "options": ["rbind", "ro"]}));
    }
    let mut env = spec.env.clone();
    if let Some((bundle, over_image)) = &prepared.ca_bundle {
        mounts.push(json!({"destination": CA_BUNDLE_PATH, "type": "bind",
            "source": bundle, "options": ["bind", "ro"]}));
        if *over_image {
            mounts.push(
                json!({"destination": format!("/{IMAGE_CA_BUNDLE}"), "type": "bind",
                "source": bundle, "options": ["bind", "ro"]}),
            );
        }
        for var in CA_VARIABLES {
            if !env
                .iter()
                .any(|e| e.split_once('=').is_some_and(|(k, _)| k == *var))
            {
                env.push(format!("{var}={CA_BUNDLE_PATH}"));
            }
        }
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
    let mut resources = json!({"devices": [{"allow": false, "access": "rwm"}]});
    if spec.pids_limit > 0 {
        resources["pids"] = json!({"limit": spec.pids_limit});
    }
    if let Some(m) = spec.memory {
        resources["memory"] = json!({"limit": m});
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": spec.uid, "gid": spec.gid, "additionalGids": spec.additional_gids},
            "args": spec.args,
            "env": env,
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
            "resources": resources,
            "namespaces": namespaces,
            "seccomp": super::seccomp::profile(),
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                "/proc/sysrq-trigger"]
        }
    })
}

/// The DNS server slirp4netns answers on, forwarding to the host's resolver.
const SLIRP_DNS: &str = "10.0.2.3";

/// A network namespace with slirp4netns attached; removed when dropped.
struct IsolatedNetwork {
    name: String,
    slirp: Option<tokio::process::Child>,
}

impl IsolatedNetwork {
    fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Creates the namespace `name` and starts slirp4netns on it; returns once the tap device
    /// is configured (slirp4netns creates its API socket after that).
    async fn start(name: &str, bundle_dir: &Path) -> Result<Self, RunError> {
        let rt = RunError::Runtime;
        quiet(Command::new("ip").args(["netns", "add", name]))
            .await
            .map_err(|e| rt(format!("cannot create a network namespace for the step (`ip netns add`): {e}; build with --network host to skip it")))?;
        let mut net = IsolatedNetwork {
            name: name.to_string(),
            slirp: None,
        };
        let socket = bundle_dir.join("slirp.sock");
        let log = bundle_dir.join("slirp.log");
        let log_file =
            std::fs::File::create(&log).map_err(|e| rt(format!("{}: {e}", log.display())))?;
        let child = tokio::process::Command::new("slirp4netns")
            .args(["--configure", "--mtu=65520", "--disable-host-loopback"])
            .arg("--api-socket")
            .arg(&socket)
            .args(["--netns-type=path"])
            .arg(net.path())
            .arg("tap0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                rt(format!(
                    "RUN steps get a network namespace of their own through slirp4netns, which cannot be started ({e}): install it (apt-get install slirp4netns) or build with --network host"
                ))
            })?;
        let slirp = net.slirp.insert(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            if let Ok(Some(status)) = slirp.try_wait() {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(rt(format!(
                    "slirp4netns exited ({status}) before the step's network was ready: {}",
                    text.trim()
                )));
            }
            if std::time::Instant::now() > deadline {
                return Err(rt(
                    "slirp4netns did not configure the step's network within 10s".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let mut routes = String::from("route add unreachable 169.254.0.0/16\n");
        for a in host_addresses().await? {
            routes.push_str(&format!("route add unreachable {a}/32\n"));
        }
        let batch = bundle_dir.join("routes");
        std::fs::write(&batch, &routes).map_err(|e| rt(format!("{}: {e}", batch.display())))?;
        quiet(Command::new("ip").args(["-n", name, "-batch"]).arg(&batch))
            .await
            .map_err(|e| {
                rt(format!(
                    "cannot block the host's and link-local addresses in the step's network: {e}"
                ))
            })?;
        Ok(net)
    }
}

impl Drop for IsolatedNetwork {
    fn drop(&mut self) {
        if let Some(mut c) = self.slirp.take() {
            let _ = c.start_kill();
        }
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The host's own IPv4 addresses outside 127.0.0.0/8 (`ip -o -4 addr show`): slirp4netns
/// would connect to them from the host's namespace. (It offers no IPv6 without `-6`.)
async fn host_addresses() -> Result<Vec<std::net::Ipv4Addr>, RunError> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| {
            RunError::Runtime(format!(
                "cannot list the host's addresses (`ip -o -4 addr show`): {e}"
            ))
        })?;
    if !out.status.success() {
        return Err(RunError::Runtime(format!(
            "cannot list the host's addresses (`ip -o -4 addr show`): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(parse_addresses(&String::from_utf8_lossy(&out.stdout)))
}

/// The addresses of `ip -o -4 addr show` output (`2: eth0    inet 192.0.2.2/24 brd ...`),
/// loopback ones left out.
fn parse_addresses(text: &str) -> Vec<std::net::Ipv4Addr> {
    let mut out: Vec<std::net::Ipv4Addr> = text
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "inet")?;
            words.next()?.split('/').next()?.parse().ok()
        })
        .filter(|a: &std::net::Ipv4Addr| !a.is_loopback())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Runs `cmd`, its output captured; an error carries its stderr.
async fn quiet(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// The host's resolv.conf with slirp4netns's DNS server instead of the host's.
fn slirp_resolv_conf() -> String {
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut out = format!("nameserver {SLIRP_DNS}\n");
    for l in host.lines() {
        let l = l.trim();
        if l.starts_with("search ") || l.starts_with("domain ") || l.starts_with("options ") {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// The image's CA bundle (when it is a regular file: a symlink is not followed out of the
/// root) followed by every extra certificate file.
fn merged_ca_bundle(rootfs: &Path, extra: &[PathBuf]) -> Result<(Vec<u8>, bool), RunError> {
    let image = rootfs.join(IMAGE_CA_BUNDLE);
    let regular = std::fs::symlink_metadata(&image).is_ok_and(|m| m.is_file());
    let mut out = if regular {
        std::fs::read(&image).map_err(|e| RunError::Runtime(format!("{}: {e}", image.display())))?
    } else {
        Vec::new()
    };
    for f in extra {
        let bytes = std::fs::read(f).map_err(|e| {
            RunError::Runtime(format!("--ca-cert {}: cannot read it: {e}", f.display()))
        })?;
        if !String::from_utf8_lossy(&bytes).contains("-----BEGIN CERTIFICATE-----") {
            return Err(RunError::Runtime(format!(
                "--ca-cert {}: not a PEM certificate file (no BEGIN CERTIFICATE line)",
                f.display()
            )));
        }
        if !out.is_empty() && !out.ends_with(b"\n") {
            out.push(b'\n');
        }
        out.extend_from_slice(&bytes);
    }
    Ok((out, regular))
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
    let result = async {
        let mut prepared = Prepared::default();
        let mut network = None;
        match spec.network {
            Network::Host => {
                if Path::new("/etc/resolv.conf").exists() {
                    prepared.resolv_conf = Some("/etc/resolv.conf".into());
                }
            }
            Network::None => {}
            Network::Isolated => {
                let net = network.insert(IsolatedNetwork::start(&id, bundle_dir).await?);
                prepared.netns = Some(net.path());
                let resolv = bundle_dir.join("resolv.conf");
                std::fs::write(&resolv, slirp_resolv_conf())
                    .map_err(|e| rt(format!("{}: {e}", resolv.display())))?;
                prepared.resolv_conf = Some(resolv);
            }
        }
        if !spec.extra_ca.is_empty() {
            let (bundle, over_image) = merged_ca_bundle(&spec.rootfs, &spec.extra_ca)?;
            let path = bundle_dir.join("ca-certificates.crt");
            std::fs::write(&path, bundle).map_err(|e| rt(format!("{}: {e}", path.display())))?;
            prepared.ca_bundle = Some((path, over_image));
        }
        let config = config_json(spec, "berth-build", &prepared);
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
        let oom_before = oom_kills();
        let result = run_container(runtime, bundle_dir, &id, spec.timeout, on_line)
            .await
            .map_err(|e| classify(spec, e, oom_before));
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
        drop(network);
        result
    }
    .await;
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
    timeout: Option<Duration>,
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
    let waited = {
        let finished = async {
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
            child.wait().await
        };
        match timeout {
            Some(after) => tokio::time::timeout(after, finished).await.ok(),
            None => Some(finished.await),
        }
    };
    let Some(status) = waited else {
        // The deadline passed: SIGKILL the container's init, which ends its pid namespace
        // and so every process of the step; `run` deletes the container afterwards.
        let _ = tokio::process::Command::new(runtime)
            .args(["kill", id, "KILL"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_err()
        {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        let tail: Vec<String> = tail.into_inner().expect("tail lock").into();
        return Err(RunError::Timeout {
            after: timeout.unwrap_or_default(),
            tail,
        });
    };
    let status = status.map_err(|e| RunError::Runtime(format!("waiting for `{runtime}`: {e}")))?;
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

/// A duration as people write it: `90s`, `10m`, `1h30m`, `1h`.
pub fn display_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, 0) => format!("{h}h{m}m"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
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
            network: Network::None,
            binds: vec![],
            tmpfs: vec![],
            pids_limit: 64,
            memory: Some(1 << 30),
            timeout: None,
            extra_ca: vec![],
        };
        let c = config_json(&spec, "h", &Prepared::default());
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
        assert_eq!(c["linux"]["resources"]["pids"]["limit"], 64);
        assert_eq!(c["linux"]["resources"]["memory"]["limit"], 1u64 << 30);
        assert_eq!(c["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    }

    #[test]
    fn default_capabilities_leave_out_net_raw() {
        assert!(!CAPABILITIES.contains(&"CAP_NET_RAW"));
        assert!(CAPABILITIES.contains(&"CAP_SETGID"));
    }

    #[test]
    fn isolated_network_joins_the_prepared_namespace_and_ca_variables_are_set() {
        let mut spec = ProcessSpec::simple(
            Path::new("/r"),
            vec!["true".into()],
            vec!["PIP_CERT=/mine".into()],
            "/",
        );
        spec.extra_ca = vec!["/ca.pem".into()];
        let prepared = Prepared {
            netns: Some("/run/netns/x".into()),
            resolv_conf: Some("/b/resolv.conf".into()),
            ca_bundle: Some(("/b/ca.crt".into(), true)),
        };
        let c = config_json(&spec, "h", &prepared);
        let ns = c["linux"]["namespaces"].as_array().unwrap();
        assert!(
            ns.iter()
                .any(|n| n["type"] == "network" && n["path"] == "/run/netns/x")
        );
        let mounts = c["mounts"].as_array().unwrap();
        for dst in [
            CA_BUNDLE_PATH,
            "/etc/ssl/certs/ca-certificates.crt",
            "/etc/resolv.conf",
        ] {
            assert!(mounts.iter().any(|m| m["destination"] == dst), "{dst}");
        }
        let env: Vec<&str> = c["process"]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        assert!(env.contains(&"PIP_CERT=/mine"));
        assert!(env.contains(&"NODE_EXTRA_CA_CERTS=/dev/berth-ca-certificates.crt"));
        assert!(!env.contains(&"PIP_CERT=/dev/berth-ca-certificates.crt"));
    }

    #[test]
    fn host_network_has_no_network_namespace() {
        let mut spec = ProcessSpec::simple(Path::new("/r"), vec!["true".into()], vec![], "/");
        spec.network = Network::Host;
        let c = config_json(&spec, "h", &Prepared::default());
        let ns = c["linux"]["namespaces"].as_array().unwrap();
        assert!(!ns.iter().any(|n| n["type"] == "network"));
    }

    #[test]
    fn host_addresses_leave_out_loopback() {
        let text = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n\
                    2: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\ x\n\
                    3: cni0    inet 10.88.0.1/16 brd 10.88.255.255 scope global cni0\n";
        assert_eq!(
            parse_addresses(text),
            vec![
                "10.88.0.1".parse::<std::net::Ipv4Addr>().unwrap(),
                "192.0.2.2".parse().unwrap()
            ]
        );
    }

    fn ask(network: Option<Network>, pids: Option<u32>, memory: Option<u64>) -> SandboxRequest {
        SandboxRequest {
            network,
            pids_limit: pids,
            memory,
            step_timeout: Some(Duration::from_secs(7200)),
            test_timeout: Some(Duration::from_secs(60)),
            ca_certs: vec!["/repo/ca.pem".into()],
        }
    }

    #[test]
    fn berth_yaml_settings_replace_defaults_but_not_flags() {
        let mut base = Sandbox {
            memory: Some(8 << 30),
            ca_certs: vec!["/proxy.pem".into()],
            ..Sandbox::default()
        };
        let got = base
            .for_repo(&ask(Some(Network::Host), Some(100), Some(1 << 30)))
            .unwrap();
        assert_eq!(got.network, Network::Host);
        assert_eq!(got.pids_limit, 100);
        assert_eq!(got.memory, Some(1 << 30));
        assert_eq!(got.step_timeout, Some(Duration::from_secs(7200)));
        assert_eq!(got.test_timeout, Some(Duration::from_secs(60)));
        assert_eq!(
            got.ca_certs,
            vec![PathBuf::from("/proxy.pem"), "/repo/ca.pem".into()]
        );
        // Flags win.
        base.repo = RepoPolicy::Trusted {
            pinned: Pinned {
                network: true,
                pids_limit: true,
                memory: true,
                step_timeout: true,
                test_timeout: true,
            },
        };
        let got = base
            .for_repo(&ask(Some(Network::Host), Some(100), Some(1 << 30)))
            .unwrap();
        assert_eq!(got.network, Network::Isolated);
        assert_eq!(got.pids_limit, DEFAULT_PIDS_LIMIT);
        assert_eq!(got.memory, Some(8 << 30));
        assert_eq!(got.step_timeout, Some(DEFAULT_STEP_TIMEOUT));
        assert_eq!(got.ca_certs.len(), 2);
    }

    #[test]
    fn server_refuses_host_network_from_berth_yaml_and_lets_repos_only_tighten() {
        let base = Sandbox {
            memory: Some(8 << 30),
            repo: RepoPolicy::Untrusted {
                allow_host_network: false,
            },
            ..Sandbox::default()
        };
        let err = base
            .for_repo(&ask(Some(Network::Host), None, None))
            .unwrap_err();
        assert!(err.contains("allow_host_network: true"), "{err}");
        // Higher limits and longer deadlines are ignored, lower ones taken.
        let got = base
            .for_repo(&ask(Some(Network::None), Some(1 << 20), Some(64 << 30)))
            .unwrap();
        assert_eq!(got.network, Network::None);
        assert_eq!(got.pids_limit, DEFAULT_PIDS_LIMIT);
        assert_eq!(got.memory, Some(8 << 30));
        assert_eq!(got.step_timeout, Some(DEFAULT_STEP_TIMEOUT));
        assert_eq!(got.test_timeout, Some(Duration::from_secs(60)));
        let got = base.for_repo(&ask(None, Some(64), Some(64 << 20))).unwrap();
        assert_eq!((got.pids_limit, got.memory), (64, Some(64 << 20)));
        assert_eq!(got.network, Network::Isolated);
        // The server's configuration may allow it.
        let allowed = Sandbox {
            repo: RepoPolicy::Untrusted {
                allow_host_network: true,
            },
            ..base
        };
        let got = allowed
            .for_repo(&ask(Some(Network::Host), None, None))
            .unwrap();
        assert_eq!(got.network, Network::Host);
    }

    #[test]
    fn memory_sizes_parse_with_units() {
        assert_eq!(parse_memory("512m").unwrap(), 512 << 20);
        assert_eq!(parse_memory("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_memory("4096").unwrap(), 4096);
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("0").is_err());
    }

    #[test]
    fn durations_display_as_written() {
        assert_eq!(display_duration(Duration::from_secs(600)), "10m");
        assert_eq!(display_duration(Duration::from_secs(2)), "2s");
        assert_eq!(display_duration(Duration::from_secs(3660)), "1h1m");
    }
}
