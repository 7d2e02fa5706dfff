//! Following the logs of a release's new pods, for `berth dev` (which prints each line prefixed
//! by `[pod/container]`).
//!
//! One watch on the release's pods (label `berth.dev/release`) keeps a cache of them. Which
//! containers to follow is decided from that cache and the images the last run built: a
//! running container whose image is one of them (so pods of the previous digest, still
//! terminating during a rollout, are not followed). A follow ends when its pod is deleted;
//! when the stream ends otherwise (the container restarted, the connection dropped) it
//! reconnects with a short backoff, asking for the lines since the last one seen and skipping
//! those it already printed (by the API server's timestamps). Following only reads, so a
//! Ctrl-C that drops it leaves the namespace as the last run left it.
//!
//! The decisions ([`containers_to_follow`], [`split_timestamp`], [`reconnect_after`]) are
//! pure and unit-tested; the rest is wiring. Nothing here prints: lines and notices go to the
//! caller as [`LogItem`]s through a channel.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use berth_cluster::{Cluster, Watched};
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Image (`repo@sha256:...`) -> the service it was built for.
pub type Targets = BTreeMap<String, String>;

/// The containers of `pod` to follow: running, not being deleted, image among `targets`.
/// Returns `(container, service)` in the pod's order.
pub fn containers_to_follow(pod: &Value, targets: &Targets) -> Vec<(String, String)> {
    if !pod["metadata"]["deletionTimestamp"].is_null() {
        return Vec::new();
    }
    let running = |name: &str| {
        pod["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["name"] == name && !s["state"]["running"].is_null())
    };
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let name = c["name"].as_str()?;
            let service = targets.get(c["image"].as_str()?)?;
            running(name).then(|| (name.to_string(), service.clone()))
        })
        .collect()
}

/// `2026-12-02T03:40:00.123456789Z text` -> (`Some(timestamp)`, `text`); a line without a
/// timestamp is all text.
pub fn split_timestamp(line: &str) -> (Option<&str>, &str) {
    match line.split_once(' ') {
        Some((ts, text)) if ts.len() >= 20 && ts.ends_with('Z') && ts.as_bytes()[4] == b'-' => {
            (Some(ts), text)
        }
        _ => (None, line),
    }
}

/// Whether a line was already printed before a reconnect: its timestamp is not after the last
/// one seen. RFC 3339 timestamps in UTC with the API server's fixed precision order as strings.
pub fn already_seen(ts: Option<&str>, last: Option<&str>) -> bool {
    matches!((ts, last), (Some(ts), Some(last)) if ts <= last)
}

/// How long to wait before reconnecting after `failures` attempts in a row that got no line;
/// `None`: give up (the pod is gone or its logs cannot be read).
pub fn reconnect_after(failures: u32) -> Option<Duration> {
    match failures {
        0 => Some(Duration::from_millis(250)),
        1..=4 => Some(Duration::from_millis(500 << failures)),
        _ => None,
    }
}

/// What the follower reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogItem {
    /// One line of a container's log (its API-server timestamp removed).
    Line {
        /// The pod's name.
        pod: String,
        /// The container's name.
        container: String,
        /// The line.
        text: String,
    },
    /// The log of a container cannot be read yet (first failure only); the follower retries.
    NotYet {
        /// The pod's name.
        pod: String,
        /// The container's name.
        container: String,
        /// What reading it answered.
        error: String,
    },
    /// The follower gave up on a container: its log kept failing to be read.
    GaveUp {
        /// The pod's name.
        pod: String,
        /// The container's name.
        container: String,
    },
    /// The watch on the release's pods failed: no logs are followed any more.
    Stopped {
        /// What the watch answered.
        error: String,
    },
}

/// Starts following for `release` in `namespace`; `targets` says which images' pods to follow
/// (updated after every run). What is read goes to `out`. Dropping the handle does not stop
/// it: abort it.
pub fn spawn(
    cluster: Cluster,
    namespace: String,
    release: String,
    targets: watch::Receiver<Targets>,
    out: mpsc::UnboundedSender<LogItem>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = follow_release(cluster, namespace, release, targets, out.clone()).await {
            let _ = out.send(LogItem::Stopped {
                error: e.to_string(),
            });
        }
    })
}

async fn follow_release(
    cluster: Cluster,
    namespace: String,
    release: String,
    mut targets: watch::Receiver<Targets>,
    out: mpsc::UnboundedSender<LogItem>,
) -> Result<(), berth_cluster::ClusterError> {
    let selector = format!("{}={release}", berth_render::ownership::RELEASE_LABEL);
    let mut pods = cluster
        .watch("v1", "Pod", Some(&namespace), None, Some(&selector))
        .await?;
    // uid -> pod; (uid, container) -> its follower.
    let mut known: HashMap<String, Value> = HashMap::new();
    let mut following: HashMap<(String, String), JoinHandle<()>> = HashMap::new();
    loop {
        tokio::select! {
            ev = pods.next() => match ev {
                None => return Ok(()),
                Some(Err(_)) => continue, // the watch restarts itself
                Some(Ok(Watched::Applied(pod))) => {
                    let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
                    known.insert(uid, pod);
                }
                Some(Ok(Watched::Deleted(pod))) => {
                    let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
                    known.remove(&uid);
                    following.retain(|(u, _), task| {
                        if *u == uid {
                            task.abort();
                        }
                        *u != uid
                    });
                }
            },
            changed = targets.changed() => if changed.is_err() { return Ok(()) },
        }
        // A follower ends with its pod (above) or by giving up; it is never started twice.
        let current = targets.borrow().clone();
        for (uid, pod) in &known {
            for (container, _) in containers_to_follow(pod, &current) {
                let key = (uid.clone(), container.clone());
                if following.contains_key(&key) {
                    continue;
                }
                let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
                let task = tokio::spawn(follow_container(
                    cluster.clone(),
                    namespace.clone(),
                    name,
                    container,
                    out.clone(),
                ));
                following.insert(key, task);
            }
        }
    }
}

/// Reads one container's log until its pod is deleted (the task is aborted), reading keeps
/// failing, or nobody listens any more.
async fn follow_container(
    cluster: Cluster,
    namespace: String,
    pod: String,
    container: String,
    out: mpsc::UnboundedSender<LogItem>,
) {
    let mut last: Option<String> = None;
    let mut last_at: Option<Instant> = None;
    let mut failures = 0u32;
    loop {
        let since = last_at.map(|t| t.elapsed().as_secs() as i64 + 1);
        let mut got_line = false;
        match cluster
            .follow_pod_logs(&namespace, &pod, &container, since)
            .await
        {
            Ok(mut lines) => {
                while let Some(Ok(line)) = lines.next().await {
                    let (ts, text) = split_timestamp(&line);
                    if already_seen(ts, last.as_deref()) {
                        continue;
                    }
                    got_line = true;
                    let line = LogItem::Line {
                        pod: pod.clone(),
                        container: container.clone(),
                        text: text.to_string(),
                    };
                    if out.send(line).is_err() {
                        return;
                    }
                    if let Some(ts) = ts {
                        last = Some(ts.to_string());
                    }
                    last_at = Some(Instant::now());
                }
            }
            Err(e) if failures == 0 => {
                let _ = out.send(LogItem::NotYet {
                    pod: pod.clone(),
                    container: container.clone(),
                    error: e.to_string(),
                });
            }
            Err(_) => {}
        }
        failures = if got_line { 0 } else { failures + 1 };
        match reconnect_after(failures) {
            Some(wait) => tokio::time::sleep(wait).await,
            None => {
                let _ = out.send(LogItem::GaveUp { pod, container });
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(image: &str, running: bool, deleting: bool) -> Value {
        let mut p = json!({
            "metadata": {"name": "kids-1", "uid": "u1"},
            "spec": {"containers": [
                {"name": "kids", "image": image},
                {"name": "sidecar", "image": "docker.io/library/busybox:latest"}
            ]},
            "status": {"containerStatuses": [
                {"name": "kids", "state": if running { json!({"running": {}}) } else { json!({"waiting": {}}) }},
                {"name": "sidecar", "state": {"running": {}}}
            ]}
        });
        if deleting {
            p["metadata"]["deletionTimestamp"] = json!("2026-12-02T03:40:00Z");
        }
        p
    }

    #[test]
    fn only_running_containers_of_the_new_images_are_followed() {
        let targets = Targets::from([("r/kids@sha256:new".to_string(), "kids".to_string())]);
        assert_eq!(
            containers_to_follow(&pod("r/kids@sha256:new", true, false), &targets),
            [("kids".to_string(), "kids".to_string())]
        );
        // The previous digest's pod (still terminating during the rollout), a container not
        // started yet, a pod being deleted: none.
        assert!(containers_to_follow(&pod("r/kids@sha256:old", true, false), &targets).is_empty());
        assert!(containers_to_follow(&pod("r/kids@sha256:new", false, false), &targets).is_empty());
        assert!(containers_to_follow(&pod("r/kids@sha256:new", true, true), &targets).is_empty());
    }

    #[test]
    fn timestamps_are_split_off_and_seen_lines_skipped_after_a_reconnect() {
        let line = "2026-12-02T03:40:00.123456789Z GET /kids/ 200";
        assert_eq!(
            split_timestamp(line),
            (Some("2026-12-02T03:40:00.123456789Z"), "GET /kids/ 200")
        );
        assert_eq!(
            split_timestamp("no timestamp here"),
            (None, "no timestamp here")
        );
        let last = Some("2026-12-02T03:40:00.123456789Z");
        assert!(already_seen(Some("2026-12-02T03:40:00.123456789Z"), last));
        assert!(already_seen(Some("2026-12-02T03:39:59.999999999Z"), last));
        assert!(!already_seen(Some("2026-12-02T03:40:00.200000000Z"), last));
        assert!(!already_seen(None, last));
        assert!(!already_seen(Some("2026-12-02T03:40:00Z"), None));
    }

    #[test]
    fn reconnects_back_off_then_give_up() {
        assert_eq!(reconnect_after(0), Some(Duration::from_millis(250)));
        assert_eq!(reconnect_after(1), Some(Duration::from_secs(1)));
        assert_eq!(reconnect_after(4), Some(Duration::from_secs(8)));
        assert_eq!(reconnect_after(5), None);
    }
}
