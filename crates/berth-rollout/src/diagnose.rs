//! What is wrong with a pod, from its status alone.
//!
//! Each finding is a [`Diagnosis`]: a kind for machines, a one-line message for people (what
//! happened, then what to check) and whether it is [fatal](Diagnosis::fatal) for a rollout. Pod
//! Events carry more (probe failure output, pull attempts) but are out of scope: they need another
//! API call, and the status already names the problem in nearly every case.

use crate::obj::{array, at, condition, count, flag, one_line, reason_message, str_at};
use serde::Serialize;
use serde_json::Value;

/// Restarts after which a crash loop counts as fatal.
///
/// Containers that exit once or twice at start, e.g. while their database comes up, and then
/// settle are common and healthy. Three restarts take over a minute of kubelet back-off (10 s,
/// 20 s, 40 s), long enough to tell a loop from a hiccup.
pub const FATAL_RESTARTS: i64 = 3;

/// What kind of problem a [`Diagnosis`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiagnosisKind {
    /// The image cannot be pulled: `ErrImagePull`, `ImagePullBackOff`, `InvalidImageName`,
    /// `ErrImageNeverPull` and the like. Always fatal: the new pods cannot start.
    ImagePullError,
    /// The container keeps exiting and the kubelet backs off (`CrashLoopBackOff`). Fatal after
    /// [`FATAL_RESTARTS`] restarts.
    CrashLoop,
    /// The container was killed for exceeding its memory limit (`OOMKilled`), now or on its last
    /// run. Fatal when it is crash-looping or will not be restarted.
    OomKilled,
    /// The scheduler finds no node for the pod (`PodScheduled=False`, reason `Unschedulable`).
    /// Not fatal: a cluster autoscaler may add a node.
    Unschedulable,
    /// The container runs but is not ready: its readiness (or startup) probe has not passed.
    /// Not fatal; the deploy deadline decides.
    ReadinessProbeFailed,
    /// The container exited with a non-zero code. Fatal when it will not be restarted
    /// (`restartPolicy: Never`, or the pod has failed).
    ContainerExitedNonZero,
    /// The container cannot be created from its configuration (`CreateContainerConfigError`),
    /// usually a missing ConfigMap, Secret or key. Not fatal: the object may still be on its way
    /// (e.g. from an external-secrets controller).
    CreateContainerConfigError,
    /// The runtime cannot create or start the container (`CreateContainerError`,
    /// `RunContainerError`). Not fatal.
    CreateContainerError,
    /// The node evicted or rejected the pod (`Evicted`, `OutOfcpu`, `NodeShutdown`...). Not
    /// fatal: its controller replaces it.
    Evicted,
}

/// One problem found in a pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnosis {
    /// The kind of problem.
    pub kind: DiagnosisKind,
    /// The container it concerns, or `None` for the pod as a whole.
    pub container: Option<String>,
    /// Whether waiting is pointless: the deploy engine rolls back at once instead of waiting for
    /// the deadline. This looks at the pod alone; for the pods of a Job, the Job's
    /// `backoffLimit` decides (see the Job's readiness).
    pub fatal: bool,
    /// One line for people: what happened, then what to check.
    pub message: String,
}

/// The problems visible in a pod's status, pod-level first, then init containers, then
/// containers, in spec order. Empty for a healthy pod and for a pod being deleted (its containers
/// exiting is expected then).
pub fn diagnose_pod(pod: &Value) -> Vec<Diagnosis> {
    if at(pod, &["metadata", "deletionTimestamp"]).is_some() {
        return Vec::new();
    }
    let pod_reason = str_at(pod, &["status", "reason"]).unwrap_or("");
    let phase = str_at(pod, &["status", "phase"]).unwrap_or("Pending");
    if phase == "Failed" && stopped_by_node(pod_reason) {
        let what = reason_message(
            pod_reason,
            str_at(pod, &["status", "message"]).unwrap_or(""),
        );
        return vec![Diagnosis {
            kind: DiagnosisKind::Evicted,
            container: None,
            fatal: false,
            message: format!(
                "pod stopped by its node ({what}); its controller replaces it; check the node's \
                 memory and disk pressure and the pod's resource requests"
            ),
        }];
    }

    let mut found = Vec::new();
    if let Some(c) = condition(pod, "PodScheduled")
        && c.is_false()
        && c.reason == "Unschedulable"
    {
        found.push(Diagnosis {
            kind: DiagnosisKind::Unschedulable,
            container: None,
            fatal: false,
            message: format!(
                "pod cannot be scheduled ({}); check its resource requests, nodeSelector and \
                 affinity, taints and tolerations, and the cluster's free capacity",
                one_line(c.message)
            ),
        });
    }

    let pod = PodContext {
        name: str_at(pod, &["metadata", "name"]).unwrap_or("POD"),
        failed: phase == "Failed",
        restart_policy: str_at(pod, &["spec", "restartPolicy"]).unwrap_or("Always"),
        obj: pod,
    };
    for status in array(pod.obj, &["status", "initContainerStatuses"]) {
        let spec = pod.spec_of("initContainers", status);
        let role = if str_at(spec, &["restartPolicy"]) == Some("Always") {
            Role::Sidecar
        } else {
            Role::Init
        };
        found.extend(diagnose_container(&pod, status, spec, role));
    }
    for status in array(pod.obj, &["status", "containerStatuses"]) {
        let spec = pod.spec_of("containers", status);
        found.extend(diagnose_container(&pod, status, spec, Role::Main));
    }
    found
}

/// Pod-level reasons the kubelet sets when it evicts or refuses a pod, rather than when the
/// pod's own containers fail. `DeadlineExceeded` (activeDeadlineSeconds) is the pod's own doing.
fn stopped_by_node(reason: &str) -> bool {
    matches!(
        reason,
        "Evicted" | "NodeShutdown" | "Terminated" | "NodeAffinity" | "UnexpectedAdmissionError"
    ) || reason.starts_with("OutOf")
}

struct PodContext<'a> {
    name: &'a str,
    failed: bool,
    restart_policy: &'a str,
    obj: &'a Value,
}

impl<'a> PodContext<'a> {
    /// The spec of the container a status entry describes (`Value::Null` if absent).
    fn spec_of(&self, list: &str, status: &Value) -> &'a Value {
        let name = str_at(status, &["name"]);
        array(self.obj, &["spec", list])
            .iter()
            .find(|c| str_at(c, &["name"]) == name)
            .unwrap_or(&Value::Null)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Main,
    Init,
    /// An init container with `restartPolicy: Always`: runs beside the main containers and has
    /// readiness like them.
    Sidecar,
}

impl Role {
    /// Whether the kubelet will run the container again after it exits with `exit_code`.
    fn restarts(self, pod: &PodContext<'_>, exit_code: i64) -> bool {
        if pod.failed {
            return false;
        }
        self == Role::Sidecar
            || match pod.restart_policy {
                "Never" => false,
                "OnFailure" => exit_code != 0,
                _ => true,
            }
    }
}

const IMAGE_PULL_REASONS: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "ImageInspectError",
    "RegistryUnavailable",
    "SignatureValidationFailed",
];

fn diagnose_container(
    pod: &PodContext<'_>,
    status: &Value,
    spec: &Value,
    role: Role,
) -> Vec<Diagnosis> {
    let name = str_at(status, &["name"]).unwrap_or("?");
    let label = match role {
        Role::Main => format!("container {name}"),
        Role::Init | Role::Sidecar => format!("init container {name}"),
    };
    let finding = |kind, fatal, message: String| Diagnosis {
        kind,
        container: Some(name.to_owned()),
        fatal,
        message: format!("{label}: {message}"),
    };
    let restarts = count(status, &["restartCount"]);
    let last_run = at(status, &["lastState", "terminated"]);
    let logs = format!("kubectl logs {} -c {name}", pod.name);

    if let Some(waiting) = at(status, &["state", "waiting"]) {
        let reason = str_at(waiting, &["reason"]).unwrap_or("");
        let what = reason_message(reason, str_at(waiting, &["message"]).unwrap_or(""));
        let found = if IMAGE_PULL_REASONS.contains(&reason) {
            let image = str_at(spec, &["image"])
                .or_else(|| str_at(status, &["image"]))
                .unwrap_or("?");
            // The whole message: the status code is at its end, past what one_line keeps of a
            // digest reference's message.
            let raw = str_at(waiting, &["message"]).unwrap_or("");
            if matches!(reason, "ErrImagePull" | "ImagePullBackOff")
                && let Some(said) = refused_login(raw)
            {
                return vec![finding(
                    DiagnosisKind::ImagePullError,
                    true,
                    refused_message(pod, image, &format!("{reason}: {said}")),
                )];
            }
            // The kubelet's own pull rate limit (registryPullQPS, 5/s with a burst of 10 by
            // default): many pods starting on one node at once meet it, and the kubelet
            // retries. Seen on the real node with 50 pods; not a reason to roll back.
            if matches!(reason, "ErrImagePull" | "ImagePullBackOff")
                && raw.contains("pull QPS exceeded")
            {
                return vec![finding(
                    DiagnosisKind::ImagePullError,
                    false,
                    format!(
                        "image {image} waits for the node's pull rate limit (pull QPS exceeded); \
                         the kubelet retries (registryPullQPS in its configuration)"
                    ),
                )];
            }
            // A registry the node cannot reach at that address: the trap of `localhost:5000`
            // registries, which the build host reaches and a node resolves to itself.
            let unreachable = [
                "connection refused",
                "no such host",
                "i/o timeout",
                "no route to host",
            ]
            .iter()
            .any(|s| raw.contains(s));
            let check = match reason {
                "InvalidImageName" => "check the image reference",
                "ErrImageNeverPull" => "imagePullPolicy is Never and the node does not have it",
                _ if unreachable => {
                    "the node cannot reach the registry at that address: push to an address \
                     the nodes reach too (not localhost), or map it in the nodes' container \
                     runtime configuration (a registry mirror)"
                }
                _ => "check the image name and the registry credentials (imagePullSecrets)",
            };
            finding(
                DiagnosisKind::ImagePullError,
                true,
                format!("image {image} cannot be pulled ({what}); {check}"),
            )
        } else if reason == "CrashLoopBackOff" {
            let fatal = restarts >= FATAL_RESTARTS;
            match last_run {
                Some(t) if str_at(t, &["reason"]) == Some("OOMKilled") => finding(
                    DiagnosisKind::OomKilled,
                    fatal,
                    format!(
                        "crash-looping, killed for exceeding its memory limit{} (OOMKilled), \
                         restarted {restarts} times; raise resources.limits.memory or lower the \
                         app's memory use",
                        memory_limit(spec)
                    ),
                ),
                Some(t) => finding(
                    DiagnosisKind::CrashLoop,
                    fatal,
                    format!(
                        "crash-looping, restarted {restarts} times, last run exited with {}; \
                         check its logs ({logs} --previous)",
                        termination(t)
                    ),
                ),
                None => finding(
                    DiagnosisKind::CrashLoop,
                    fatal,
                    format!(
                        "crash-looping, restarted {restarts} times; check its logs ({logs} \
                         --previous)"
                    ),
                ),
            }
        } else if reason == "CreateContainerConfigError" {
            finding(
                DiagnosisKind::CreateContainerConfigError,
                false,
                format!(
                    "cannot be created ({what}); check that the ConfigMaps and Secrets it \
                     references exist and have the keys it uses"
                ),
            )
        } else if matches!(reason, "CreateContainerError" | "RunContainerError") {
            finding(
                DiagnosisKind::CreateContainerError,
                false,
                format!(
                    "cannot be started ({what}); check its command, working directory, volume \
                     mounts and security context"
                ),
            )
        } else {
            // ContainerCreating, PodInitializing: on its way.
            return Vec::new();
        };
        return vec![found];
    }

    if let Some(t) = at(status, &["state", "terminated"]) {
        let exit_code = count(t, &["exitCode"]);
        let fatal = !role.restarts(pod, exit_code);
        let found = if str_at(t, &["reason"]) == Some("OOMKilled") {
            finding(
                DiagnosisKind::OomKilled,
                fatal,
                format!(
                    "killed for exceeding its memory limit{} (OOMKilled); raise \
                     resources.limits.memory or lower the app's memory use",
                    memory_limit(spec)
                ),
            )
        } else if exit_code != 0 {
            finding(
                DiagnosisKind::ContainerExitedNonZero,
                fatal,
                format!("exited with {}; check its logs ({logs})", termination(t)),
            )
        } else {
            return Vec::new();
        };
        return vec![found];
    }

    let mut found = Vec::new();
    if let Some(running) = at(status, &["state", "running"]) {
        if let Some(t) = last_run
            && str_at(t, &["reason"]) == Some("OOMKilled")
        {
            found.push(finding(
                DiagnosisKind::OomKilled,
                false,
                format!(
                    "running again after being killed for exceeding its memory limit{} \
                     (OOMKilled, {restarts} restarts); consider raising resources.limits.memory",
                    memory_limit(spec)
                ),
            ));
        }
        // Plain init containers have no readiness: they run to completion.
        if role != Role::Init && !flag(status, &["ready"]) {
            let since = str_at(running, &["startedAt"])
                .map(|t| format!(" since {t}"))
                .unwrap_or_default();
            let message = if at(status, &["started"]).and_then(Value::as_bool) == Some(false) {
                format!(
                    "running{since} but its startup probe{} has not passed yet; check the probe \
                     and its logs ({logs})",
                    probe(spec, "startupProbe")
                )
            } else {
                format!(
                    "running{since} but not ready{}; check the readiness probe, the port the app \
                     listens on and its logs ({logs})",
                    match probe(spec, "readinessProbe") {
                        p if p.is_empty() => String::new(),
                        p => format!(": readiness probe{p} not passing"),
                    }
                )
            };
            found.push(finding(DiagnosisKind::ReadinessProbeFailed, false, message));
        }
    }
    found
}

/// "code 137 (Error, killed by SIGKILL: ...): message" for a `terminated` state.
/// Whether a pull error says the registry refused the login (or the lack of one): containerd
/// writes `401 Unauthorized` / `403 Forbidden`, Docker Hub's token service `authorization
/// failed` / `no basic auth credentials`. "pull access denied, repository does not exist or may
/// require authorization" alone is not enough: registries answer that for a missing repository.
/// Returns what it said, short.
fn refused_login(message: &str) -> Option<&'static str> {
    let m = message.to_ascii_lowercase();
    [
        ("401 unauthorized", "401 Unauthorized"),
        ("403 forbidden", "403 Forbidden"),
        ("no basic auth credentials", "no basic auth credentials"),
        ("authorization failed", "authorization failed"),
        ("unauthorized", "unauthorized"),
    ]
    .into_iter()
    .find(|(w, _)| m.contains(w))
    .map(|(_, said)| said)
}

/// "registry refused the credentials for IMAGE (pull secret NAME)", naming the pod's pull
/// secrets (a ServiceAccount's are copied into the pod by the API server) or their absence.
fn refused_message(pod: &PodContext<'_>, image: &str, what: &str) -> String {
    let names: Vec<&str> = array(pod.obj, &["spec", "imagePullSecrets"])
        .iter()
        .filter_map(|s| str_at(s, &["name"]))
        .collect();
    let host = registry_host(image);
    if names.is_empty() {
        format!(
            "registry refused the credentials for {image} (no pull secret: the pod has no imagePullSecrets) ({what}); give it a pull secret with a login for {host}, or let berth create one (berth.yaml `deploy: {{pull-secret: NAME}}`)"
        )
    } else {
        let which = if names.len() == 1 {
            "pull secret"
        } else {
            "pull secrets"
        };
        format!(
            "registry refused the credentials for {image} ({which} {}) ({what}); fix the login for {host} in that Secret, or let berth manage it (berth.yaml `deploy: {{pull-secret: NAME}}`)",
            names.join(", ")
        )
    }
}

/// The registry host of an image reference, as the kubelet resolves it.
fn registry_host(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "docker.io",
    }
}

fn termination(t: &Value) -> String {
    let code = count(t, &["exitCode"]);
    let reason = str_at(t, &["reason"]).unwrap_or("");
    let hint = match code {
        126 => "command not executable",
        127 => "command not found",
        137 => "killed by SIGKILL: memory limit or failing liveness probe",
        139 => "segmentation fault",
        143 => "terminated by SIGTERM",
        _ => "",
    };
    let why = [reason, hint]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = format!("code {code}");
    if !why.is_empty() {
        out.push_str(&format!(" ({why})"));
    }
    let message = one_line(str_at(t, &["message"]).unwrap_or(""));
    if !message.is_empty() {
        out.push_str(&format!(": {message}"));
    }
    out
}

/// " of 128Mi" if the container spec sets a memory limit.
fn memory_limit(spec: &Value) -> String {
    str_at(spec, &["resources", "limits", "memory"])
        .map(|m| format!(" of {m}"))
        .unwrap_or_default()
}

/// " (HTTP GET /healthz on port 8080)" for the probe of this name in a container spec, or "".
fn probe(spec: &Value, which: &str) -> String {
    let Some(p) = at(spec, &[which]) else {
        return String::new();
    };
    let port = |v: &Value| match at(v, &["port"]) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "?".to_owned(),
    };
    let what = if let Some(h) = at(p, &["httpGet"]) {
        format!(
            "HTTP GET {} on port {}",
            str_at(h, &["path"]).unwrap_or("/"),
            port(h)
        )
    } else if let Some(t) = at(p, &["tcpSocket"]) {
        format!("TCP connect to port {}", port(t))
    } else if let Some(g) = at(p, &["grpc"]) {
        format!("gRPC health check on port {}", port(g))
    } else if let Some(e) = at(p, &["exec"]) {
        let command: Vec<&str> = array(e, &["command"])
            .iter()
            .filter_map(Value::as_str)
            .collect();
        format!("exec `{}`", command.join(" "))
    } else {
        return String::new();
    };
    format!(" ({what})")
}

#[cfg(test)]
mod tests;
