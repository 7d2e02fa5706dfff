//! `berth doctor`: checks what berth needs and says, per line, what to do about what is missing.

use std::process::ExitCode;
use std::time::Duration;

use berth_cluster::{Cluster, ConnectOptions};
use berth_registry::{Registry, RegistryOptions};
use serde::Serialize;

use crate::cli::{DoctorArgs, OutputFormat};

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Works.
    Ok,
    /// Missing or odd, but not required.
    Warn,
    /// Required and not working.
    Fail,
}

#[derive(Debug, Clone, Serialize)]
struct Check {
    name: String,
    status: Status,
    required: bool,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<String>,
}

impl Check {
    fn ok(name: &str, required: bool, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            status: Status::Ok,
            required,
            detail: detail.into(),
            hint: None,
        }
    }

    fn bad(name: &str, required: bool, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            status: if required { Status::Fail } else { Status::Warn },
            required,
            detail: detail.into(),
            hint: Some(hint.into()),
        }
    }
}

const DEADLINE: Duration = Duration::from_secs(15);

pub async fn run(args: DoctorArgs) -> Result<ExitCode, String> {
    let (cluster_checks, registry, runtime, slirp, git, kustomize, helm) = tokio::join!(
        cluster_checks(&args),
        registry_check(&args),
        runtime_check(),
        tool_check(
            "slirp4netns",
            &["--version"],
            "needed by RUN steps and tests on their default `isolated` network; install it \
             (apt-get install slirp4netns), or build with --network none|host"
        ),
        tool_check(
            "git",
            &["--version"],
            "needed to build only what changed since the last deploy, to record the commit, and \
             by `berth serve`; install git (apt-get install git)"
        ),
        tool_check(
            "kustomize",
            &["version"],
            "needed only for kustomize manifest sources; put `kustomize` on PATH"
        ),
        tool_check(
            "helm",
            &["version", "--short"],
            "needed only for helm manifest sources; put `helm` on PATH"
        ),
    );
    let mut checks = cluster_checks;
    checks.extend([registry, runtime, slirp, qemu_check(), git, kustomize, helm]);
    let ok = checks.iter().all(|c| c.status != Status::Fail);
    match args.output {
        OutputFormat::Json => {
            let doc = serde_json::json!({ "ok": ok, "checks": checks });
            println!(
                "{}",
                serde_json::to_string_pretty(&doc).expect("checks serialize")
            );
        }
        OutputFormat::Table => print_table(&checks, ok),
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_table(checks: &[Check], ok: bool) {
    let w = checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    println!("{:<w$}  {:<6}  DETAIL", "CHECK", "STATUS");
    for c in checks {
        let status = match c.status {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        println!("{:<w$}  {:<6}  {}", c.name, status, c.detail);
        if let Some(h) = &c.hint {
            println!("{:<w$}  {:<6}  -> {}", "", "", h);
        }
    }
    println!();
    if ok {
        println!("verdict: ready — every required check passed");
    } else {
        let failed: Vec<&str> = checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.name.as_str())
            .collect();
        println!("verdict: NOT ready — failed: {}", failed.join(", "));
    }
}

async fn cluster_checks(args: &DoctorArgs) -> Vec<Check> {
    let opts = ConnectOptions {
        kubeconfig: args.cluster.kubeconfig.clone(),
        context: args.cluster.context.clone(),
    };
    let cluster = match tokio::time::timeout(DEADLINE, Cluster::connect(&opts)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return vec![
                Check::bad(
                    "kube",
                    true,
                    e.to_string(),
                    "point KUBECONFIG at a cluster or pass --context",
                ),
                Check::bad(
                    "rbac",
                    true,
                    "not checked: no cluster",
                    "fix the kube check first",
                ),
            ];
        }
        Err(_) => {
            return vec![Check::bad(
                "kube",
                true,
                "connecting timed out",
                "check the kubeconfig",
            )];
        }
    };
    let version = match tokio::time::timeout(DEADLINE, cluster.server_version()).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            return vec![
                Check::bad(
                    "kube",
                    true,
                    format!("context `{}`: {e}", cluster.context()),
                    "start the cluster or select another context with --context",
                ),
                Check::bad(
                    "rbac",
                    true,
                    "not checked: cluster unreachable",
                    "fix the kube check first",
                ),
            ];
        }
        Err(_) => {
            return vec![Check::bad(
                "kube",
                true,
                format!(
                    "context `{}`: {} did not answer within {}s",
                    cluster.context(),
                    cluster.server(),
                    DEADLINE.as_secs()
                ),
                "start the cluster or select another context with --context",
            )];
        }
    };
    let kube = Check::ok(
        "kube",
        true,
        format!(
            "context `{}` at {}: Kubernetes {version}",
            cluster.context(),
            cluster.server()
        ),
    );
    let namespace = args
        .cluster
        .namespace
        .clone()
        .unwrap_or_else(|| cluster.default_namespace().to_string());
    vec![kube, rbac_check(&cluster, &namespace).await]
}

/// May this identity deploy into `namespace`: it exists or may be made, and the objects a
/// release needs may be created there.
async fn rbac_check(cluster: &Cluster, namespace: &str) -> Check {
    let fail = |detail: String, hint: String| Check::bad("rbac", true, detail, hint);
    // `deploy` makes a missing namespace; an identity that owns its namespace and may not
    // create namespaces (a CI ServiceAccount) is fine as long as it is there.
    let unseen = match cluster.namespace_exists(namespace).await {
        Ok(Some(true)) => None,
        Ok(exists) => match cluster.can_i("create", "", "namespaces", "").await {
            Ok(a) if a.allowed => None,
            Ok(_) if exists == Some(false) => {
                return fail(
                    format!(
                        "namespace `{namespace}` does not exist and this identity may not create namespaces"
                    ),
                    format!(
                        "ask a cluster admin to create it (kubectl create namespace {namespace}) and bind you to a Role there, or pick a namespace you own with --namespace"
                    ),
                );
            }
            Ok(_) => Some(format!(
                "may not read namespace `{namespace}` (so cannot tell whether it exists) and may not create namespaces"
            )),
            Err(e) => {
                return fail(
                    e.to_string(),
                    "the API server refused an access review".into(),
                );
            }
        },
        Err(e) => {
            return fail(
                e.to_string(),
                "the API server did not say whether the namespace exists".into(),
            );
        }
    };
    let wanted = [
        ("apps", "deployments"),
        ("batch", "jobs"),
        ("coordination.k8s.io", "leases"),
        // The release history is kept in Secrets of the namespace.
        ("", "secrets"),
    ];
    let mut denied = Vec::new();
    for (group, resource) in wanted {
        match cluster.can_i("create", group, resource, namespace).await {
            Ok(a) if a.allowed => {}
            Ok(a) => denied.push(if a.reason.is_empty() {
                resource.to_string()
            } else {
                format!("{resource} ({})", a.reason)
            }),
            Err(e) => {
                return fail(
                    e.to_string(),
                    "the API server refused an access review".into(),
                );
            }
        }
    }
    if denied.is_empty() {
        return Check::ok(
            "rbac",
            true,
            format!("may create deployments, jobs, leases, secrets in namespace `{namespace}`"),
        );
    }
    let denied = format!(
        "may not create {} in namespace `{namespace}`",
        denied.join(", ")
    );
    match unseen {
        Some(unseen) => fail(
            format!("{unseen}; {denied}"),
            format!(
                "if the namespace does not exist, ask a cluster admin to create it (kubectl create namespace {namespace}) and bind you to a Role there; if it does, grant the deploying identity a Role with create on these resources"
            ),
        ),
        None => fail(
            denied,
            "grant the deploying identity a Role with create on these resources".into(),
        ),
    }
}

async fn registry_check(args: &DoctorArgs) -> Check {
    let Some(host) = &args.registry else {
        return Check::bad(
            "registry",
            true,
            "no registry configured",
            "pass --registry HOST[:PORT] or set BERTH_REGISTRY",
        );
    };
    let registry = match Registry::new(RegistryOptions {
        insecure: args.insecure_registry.clone(),
        docker_config: args.docker_config.clone(),
        mirrors: Vec::new(),
    }) {
        Ok(r) => r,
        Err(e) => {
            return Check::bad(
                "registry",
                true,
                e.to_string(),
                "fix the docker config file",
            );
        }
    };
    match tokio::time::timeout(DEADLINE, registry.ping(host)).await {
        Ok(Ok(p)) => Check::ok(
            "registry",
            true,
            format!("{} answers; access as {}", p.url, p.identity),
        ),
        Ok(Err(e)) => {
            let hint = match &e {
                berth_registry::RegistryError::Unauthorized { .. } => format!(
                    "log in to {host}: put its credentials in the docker config berth reads \
                     (--docker-config, $DOCKER_CONFIG/config.json or ~/.docker/config.json), \
                     e.g. with `docker login {host}` on any machine, or check the user and \
                     token there"
                ),
                berth_registry::RegistryError::Unreachable { .. } => format!(
                    "check that a registry runs at {host} and that this machine reaches it, \
                     or pass another --registry (host[:port], no path)"
                ),
                _ => format!(
                    "{host} does not answer as an OCI registry; pass its host[:port] (no \
                     path) with --registry"
                ),
            };
            Check::bad("registry", true, e.to_string(), hint)
        }
        Err(_) => Check::bad(
            "registry",
            true,
            format!("{host} did not answer within {}s", DEADLINE.as_secs()),
            "check the address and network",
        ),
    }
}

async fn version_of(program: &str, args: &[&str]) -> Result<String, String> {
    let out = tokio::time::timeout(
        DEADLINE,
        tokio::process::Command::new(program)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| format!("`{program}` did not answer within {}s", DEADLINE.as_secs()))?
    .map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("`{program}` is not on PATH"),
        _ => format!("cannot run `{program}`: {e}"),
    })?;
    if !out.status.success() {
        return Err(format!(
            "`{program} {}` exited with {}",
            args.join(" "),
            out.status
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

/// crun 1.8 refuses to run on a hybrid cgroup v1/v2 layout; runc copes. Say which runtime
/// berth will use for RUN steps, and why.
async fn runtime_check() -> Check {
    let hybrid = std::path::Path::new("/sys/fs/cgroup/unified").is_dir();
    let (runc, crun) = tokio::join!(
        version_of("runc", &["--version"]),
        version_of("crun", &["--version"])
    );
    match (runc, crun) {
        (_, Ok(crun)) if !hybrid => Check::ok("oci-runtime", true, format!("crun: {crun}")),
        (Ok(runc), crun) => {
            let note = match crun {
                Ok(_) => {
                    " (crun present but this host has a hybrid cgroup layout, which crun refuses)"
                }
                Err(_) => "",
            };
            Check::ok("oci-runtime", true, format!("runc: {runc}{note}"))
        }
        (Err(_), Ok(crun)) => Check::bad(
            "oci-runtime",
            true,
            format!(
                "only crun ({crun}) is installed and it refuses this host's hybrid cgroup layout"
            ),
            "install runc (apt-get install runc)",
        ),
        (Err(e), Err(_)) => Check::bad(
            "oci-runtime",
            true,
            format!("no OCI runtime: {e}, and no crun"),
            "install runc or crun (apt-get install runc)",
        ),
    }
}

/// Which foreign architectures RUN steps can execute for (`--platform`), without changing
/// anything: a `binfmt_misc` handler with the F flag, or only the static qemu binary (berth
/// registers a handler at the first such RUN when it runs as root, else runs it explicitly).
fn qemu_check() -> Check {
    use berth_build::exec::emulation::{self, Emulation, QEMU_ARCHES};
    let host = emulation::host_arch();
    let (mut binfmt, mut explicit) = (Vec::new(), Vec::new());
    for a in QEMU_ARCHES.iter().filter(|a| a.oci != host) {
        match emulation::status(a.oci) {
            Ok(Emulation::Binfmt { handler, .. }) => binfmt.push(format!("{} ({handler})", a.oci)),
            Ok(Emulation::Explicit { .. }) => explicit.push(a.oci.to_string()),
            _ => {}
        }
    }
    if binfmt.is_empty() && explicit.is_empty() {
        return Check::bad(
            "qemu-user",
            false,
            "no qemu-*-static binary found",
            "install qemu-user-static (apt-get install qemu-user-static) to RUN steps for another architecture (--platform)",
        );
    }
    let mounted = std::path::Path::new(emulation::BINFMT_DIR)
        .join("register")
        .exists();
    let mut detail = Vec::new();
    if !binfmt.is_empty() {
        detail.push(format!("binfmt_misc: {}", binfmt.join(", ")));
    }
    if !explicit.is_empty() {
        detail.push(format!(
            "qemu installed, no F handler yet: {} (berth registers one at the first RUN as root{})",
            explicit.join(", "),
            if mounted {
                ""
            } else {
                "; binfmt_misc is not mounted"
            }
        ));
    }
    Check::ok("qemu-user", false, detail.join("; "))
}

/// An optional program (`name` is also the program): its version, or what it is needed for.
async fn tool_check(name: &str, args: &[&str], hint: &str) -> Check {
    match version_of(name, args).await {
        Ok(v) => Check::ok(name, false, v),
        Err(e) => Check::bad(name, false, e, hint),
    }
}
