//! Pure planning: which objects are hooks, what a release's content hash is, what to prune,
//! what a failed deploy leaves behind ([`recovery`]) and what `berth rollback` restores
//! ([`rollback_target`]).

use std::collections::BTreeSet;

use berth_cluster::ObjectKey;
use berth_objects::ObjectSet;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::release::{History, Release, Status};

/// berth's hook annotation: `pre-deploy` or `post-deploy`.
pub const HOOK_ANNOTATION: &str = "berth.dev/hook";

/// When a hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookWhen {
    /// Before any other object changes; a failure stops the deploy.
    PreDeploy,
    /// After every object is ready; a failure fails (and rolls back) the deploy.
    PostDeploy,
}

/// Whether an object is a hook, from berth's annotation or Helm's (`pre-install`/`pre-upgrade`
/// and `post-install`/`post-upgrade` map to berth's two moments; Helm test and delete hooks
/// are not deploy hooks and are rejected by [`hook_of`]'s caller as plain objects never reach
/// here: `helm template --skip-tests` drops tests).
pub fn hook_of(object: &Value) -> Option<HookWhen> {
    let ann = &object["metadata"]["annotations"];
    if let Some(h) = ann[HOOK_ANNOTATION].as_str() {
        return match h.trim() {
            "pre-deploy" => Some(HookWhen::PreDeploy),
            "post-deploy" => Some(HookWhen::PostDeploy),
            _ => None,
        };
    }
    let helm = ann["helm.sh/hook"].as_str()?;
    let kinds: Vec<&str> = helm.split(',').map(str::trim).collect();
    if kinds
        .iter()
        .any(|k| *k == "pre-install" || *k == "pre-upgrade")
    {
        Some(HookWhen::PreDeploy)
    } else if kinds
        .iter()
        .any(|k| *k == "post-install" || *k == "post-upgrade")
    {
        Some(HookWhen::PostDeploy)
    } else {
        None
    }
}

/// The ConfigMaps and Secrets of the release (not hooks themselves) that the pods of the
/// `hooks` read — `env[].valueFrom`, `envFrom`, `volumes` (also projected) of containers and
/// init containers — in the release's order. berth applies them before the pre-deploy hooks:
/// a migration Job reading the release's database Secret would otherwise wait for an object
/// berth creates only after the hook.
pub fn hook_inputs(hooks: &[&Value], release: &[Value]) -> Vec<Value> {
    let mut wanted: BTreeSet<(&'static str, String)> = BTreeSet::new();
    for hook in hooks {
        let spec = if hook["kind"] == "Pod" {
            &hook["spec"]
        } else {
            &hook["spec"]["template"]["spec"]
        };
        let mut add = |kind: &'static str, name: &Value| {
            if let Some(n) = name.as_str() {
                wanted.insert((kind, n.to_string()));
            }
        };
        for list in ["containers", "initContainers"] {
            for c in spec[list].as_array().into_iter().flatten() {
                for e in c["envFrom"].as_array().into_iter().flatten() {
                    add("ConfigMap", &e["configMapRef"]["name"]);
                    add("Secret", &e["secretRef"]["name"]);
                }
                for e in c["env"].as_array().into_iter().flatten() {
                    add("ConfigMap", &e["valueFrom"]["configMapKeyRef"]["name"]);
                    add("Secret", &e["valueFrom"]["secretKeyRef"]["name"]);
                }
            }
        }
        for v in spec["volumes"].as_array().into_iter().flatten() {
            add("ConfigMap", &v["configMap"]["name"]);
            add("Secret", &v["secret"]["secretName"]);
            for s in v["projected"]["sources"].as_array().into_iter().flatten() {
                add("ConfigMap", &s["configMap"]["name"]);
                add("Secret", &s["secret"]["name"]);
            }
        }
    }
    release
        .iter()
        .filter(|o| hook_of(o).is_none() && o["apiVersion"] == "v1")
        .filter(|o| {
            let kind = match o["kind"].as_str() {
                Some("ConfigMap") => "ConfigMap",
                Some("Secret") => "Secret",
                _ => return false,
            };
            o["metadata"]["name"]
                .as_str()
                .is_some_and(|n| wanted.contains(&(kind, n.to_string())))
        })
        .cloned()
        .collect()
}

/// Checks the hook annotation's value, so a typo is an error rather than a silently ordinary
/// object.
pub fn invalid_hook(object: &Value) -> Option<String> {
    let h = object["metadata"]["annotations"][HOOK_ANNOTATION].as_str()?;
    match h.trim() {
        "pre-deploy" | "post-deploy" => None,
        other => Some(other.to_string()),
    }
}

/// How often a hook runs: `always` (default: every deploy) or `once` (a Job that succeeded
/// in this namespace is never run again — seed and data-load Jobs).
pub const HOOK_RUN_ANNOTATION: &str = "berth.dev/hook-run";

/// Whether a hook runs only until it has succeeded once.
pub fn runs_once(object: &Value) -> bool {
    object["metadata"]["annotations"][HOOK_RUN_ANNOTATION].as_str() == Some("once")
}

/// An unreadable `berth.dev/hook-run` value, if any.
pub fn invalid_hook_run(object: &Value) -> Option<String> {
    let v = object["metadata"]["annotations"][HOOK_RUN_ANNOTATION].as_str()?;
    (v != "once" && v != "always").then(|| v.to_string())
}

/// Hash of the rendered objects before berth's per-revision annotations: two deploys with the
/// same hash would apply the same thing.
pub fn content_hash(objects: &ObjectSet) -> String {
    let digest = Sha256::digest(objects.to_yaml().as_bytes());
    format!("sha256:{digest:x}")
}

/// The cluster key of a manifest object.
pub fn key_of(object: &Value) -> ObjectKey {
    ObjectKey::of(object).expect("rendered objects have apiVersion, kind and name")
}

/// Objects of `previous` that `next` no longer has: to delete after `next` succeeds (or, on a
/// rollback, objects of the failed revision that the restored one does not have).
pub fn to_prune(previous: &[Value], next: &[Value]) -> Vec<ObjectKey> {
    let keep: BTreeSet<(String, String, Option<String>, String)> =
        next.iter().map(|o| identity(&key_of(o))).collect();
    previous
        .iter()
        .filter(|o| hook_of(o).is_none())
        .map(key_of)
        .filter(|k| !keep.contains(&identity(k)))
        .collect()
}

/// Identity ignoring the version part of apiVersion (apps/v1beta2 and apps/v1 Deployments are
/// the same object).
fn identity(k: &ObjectKey) -> (String, String, Option<String>, String) {
    let group = match k.api_version.rsplit_once('/') {
        Some((g, _)) => g.to_string(),
        None => String::new(),
    };
    (group, k.kind.clone(), k.namespace.clone(), k.name.clone())
}

/// Whether the live object `live` belongs to `release` of `namespace`: labelled as managed by
/// berth and as the release's, and — for a cluster-scoped object (no `metadata.namespace`),
/// which any namespace's release of that name could have applied — labelled with `namespace`.
/// A cluster-scoped object without the namespace label (applied by an older berth, which did not label it) is
/// never owned: pruning it could delete another namespace's.
pub fn owned_by(live: &Value, release: &str, namespace: &str) -> bool {
    use berth_objects::ownership::{MANAGED_BY_LABEL, NAMESPACE_LABEL, RELEASE_LABEL};
    let labels = &live["metadata"]["labels"];
    if labels[RELEASE_LABEL] != release || labels[MANAGED_BY_LABEL] != "berth" {
        return false;
    }
    match live["metadata"]["namespace"].as_str() {
        Some(ns) => ns == namespace,
        None => labels[NAMESPACE_LABEL] == namespace,
    }
}

/// What a failed deploy does about what it applied (crate docs, step 9).
#[derive(Clone, Debug, PartialEq)]
pub enum Recovery {
    /// `rollback: false` (`--no-rollback`): leave the failed revision in place.
    Keep,
    /// Re-apply the live revision, and delete what the failed one added.
    RollBack(Box<Release>),
    /// A first install (no record at all before it, readable or not): remove everything it
    /// applied.
    RemoveAll,
    /// Records exist but none was ever deployed: remove only what none of them had (`keep`:
    /// their objects), or nothing when a record is unreadable (`keep: None`), since it may own
    /// anything.
    RemoveNew {
        /// The objects of every earlier record.
        keep: Option<Vec<Value>>,
    },
}

/// What a deploy that failed over `history` (read before it) does, with `rollback` as asked.
pub fn recovery(history: &History, rollback: bool) -> Recovery {
    if !rollback {
        return Recovery::Keep;
    }
    if let Some(current) = history.current() {
        return Recovery::RollBack(Box::new(current.clone()));
    }
    if history.is_first_install() {
        return Recovery::RemoveAll;
    }
    let keep = history.unreadable.is_empty().then(|| {
        history
            .releases
            .iter()
            .flat_map(|r| r.objects.iter().cloned())
            .collect()
    });
    Recovery::RemoveNew { keep }
}

/// The revision `berth rollback` restores: `to`, or else the newest deployed or superseded
/// revision before the live one; never one without objects.
pub fn rollback_target(history: &History, to: Option<u64>) -> Option<&Release> {
    match to {
        Some(n) => history.get(n),
        None => {
            let cur = history.current().map(|c| c.revision).unwrap_or(0);
            history.releases.iter().rev().find(|r| {
                r.revision < cur && matches!(r.status, Status::Superseded | Status::Deployed)
            })
        }
    }
    .filter(|r| !r.objects.is_empty())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    fn obj(api: &str, kind: &str, name: &str) -> Value {
        json!({"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": "ns"}})
    }

    #[test]
    fn hooks_from_berth_and_helm_annotations() {
        let mut j = obj("batch/v1", "Job", "migrate");
        assert_eq!(hook_of(&j), None);
        j["metadata"]["annotations"] = json!({"berth.dev/hook": "pre-deploy"});
        assert_eq!(hook_of(&j), Some(HookWhen::PreDeploy));
        j["metadata"]["annotations"] = json!({"helm.sh/hook": "post-install,post-upgrade"});
        assert_eq!(hook_of(&j), Some(HookWhen::PostDeploy));
        j["metadata"]["annotations"] = json!({"helm.sh/hook": "pre-upgrade"});
        assert_eq!(hook_of(&j), Some(HookWhen::PreDeploy));
        j["metadata"]["annotations"] = json!({"berth.dev/hook": "pre-deplyo"});
        assert_eq!(invalid_hook(&j).as_deref(), Some("pre-deplyo"));
    }

    #[test]
    fn prune_keeps_what_the_next_release_has_whatever_its_version() {
        let prev = vec![
            obj("apps/v1beta2", "Deployment", "web"),
            obj("v1", "ConfigMap", "old"),
            obj("v1", "Service", "web"),
        ];
        let next = vec![
            obj("apps/v1", "Deployment", "web"),
            obj("v1", "Service", "web"),
        ];
        let pruned = to_prune(&prev, &next);
        assert_eq!(pruned.len(), 1);
        assert_eq!(pruned[0].name, "old");
    }

    #[test]
    fn hook_run_policy() {
        let mut j = obj("batch/v1", "Job", "seed");
        assert!(!runs_once(&j));
        j["metadata"]["annotations"] = json!({"berth.dev/hook-run": "once"});
        assert!(runs_once(&j));
        assert_eq!(invalid_hook_run(&j), None);
        j["metadata"]["annotations"] = json!({"berth.dev/hook-run": "twice"});
        assert_eq!(invalid_hook_run(&j).as_deref(), Some("twice"));
    }

    #[test]
    fn hooks_are_never_pruned() {
        let mut hook = obj("batch/v1", "Job", "migrate");
        hook["metadata"]["annotations"] = json!({"berth.dev/hook": "pre-deploy"});
        assert!(to_prune(&[hook], &[]).is_empty());
    }

    #[test]
    fn a_cluster_scoped_object_of_a_same_named_release_elsewhere_is_not_owned() {
        let role = |labels: Value| {
            serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "r", "labels": labels}})
        };
        let mine = role(serde_json::json!({"app.kubernetes.io/managed-by": "berth",
            "berth.dev/release": "prod", "berth.dev/namespace": "a"}));
        assert!(owned_by(&mine, "prod", "a"));
        assert!(!owned_by(&mine, "prod", "b"));
        // From a berth that did not label the namespace: never pruned.
        let legacy = role(serde_json::json!({"app.kubernetes.io/managed-by": "berth",
            "berth.dev/release": "prod"}));
        assert!(!owned_by(&legacy, "prod", "a"));
        let cm = serde_json::json!({"kind": "ConfigMap", "metadata": {"name": "c",
            "namespace": "a", "labels": {"app.kubernetes.io/managed-by": "berth",
            "berth.dev/release": "prod"}}});
        assert!(owned_by(&cm, "prod", "a"));
        assert!(!owned_by(&cm, "other", "a"));
    }

    #[test]
    fn hook_inputs_are_the_release_configmaps_and_secrets_a_pre_deploy_job_reads() {
        let job = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "migrate", "annotations": {"berth.dev/hook": "pre-deploy"}},
            "spec": {"template": {"spec": {
                "containers": [{"name": "m", "envFrom": [{"secretRef": {"name": "db"}}],
                    "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "flags", "key": "x"}}}]}],
                "volumes": [{"name": "c", "projected": {"sources": [{"secret": {"name": "certs"}}]}}]}}}});
        let release = vec![
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "flags"}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "certs"}}),
            // Same name, other kind; and a Secret nobody reads: not inputs.
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "db"}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "unrelated"}}),
            job.clone(),
        ];
        let names: Vec<(String, String)> = hook_inputs(&[&job], &release)
            .iter()
            .map(|o| {
                (
                    o["kind"].as_str().unwrap().into(),
                    o["metadata"]["name"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("Secret".to_string(), "db".to_string()),
                ("ConfigMap".into(), "flags".into()),
                ("Secret".into(), "certs".into())
            ]
        );
    }

    /// A record of `web` in `ns` holding ConfigMaps named `objects` (for steps' tests too).
    pub(crate) fn release(revision: u64, status: Status, objects: &[&str]) -> Release {
        Release {
            name: "web".into(),
            namespace: "ns".into(),
            revision,
            status,
            content_hash: String::new(),
            commit: None,
            user: String::new(),
            started_at: String::new(),
            finished_at: None,
            description: String::new(),
            images: Default::default(),
            objects: objects.iter().map(|n| obj("v1", "ConfigMap", n)).collect(),
            seeds: Vec::new(),
        }
    }

    fn history(releases: Vec<Release>) -> History {
        History {
            releases,
            unreadable: Vec::new(),
            superseded_on_read: Vec::new(),
        }
    }

    #[test]
    fn a_failed_deploy_rolls_back_to_the_live_revision_not_the_newest_record() {
        let h = history(vec![
            release(1, Status::Superseded, &["a"]),
            release(2, Status::Deployed, &["a", "b"]),
            release(3, Status::Failed, &["c"]),
        ]);
        assert_eq!(
            recovery(&h, true),
            Recovery::RollBack(Box::new(release(2, Status::Deployed, &["a", "b"])))
        );
        assert_eq!(recovery(&h, false), Recovery::Keep);
    }

    #[test]
    fn a_failed_first_install_removes_everything_and_one_after_undeployed_records_only_what_is_new()
    {
        assert_eq!(recovery(&history(Vec::new()), true), Recovery::RemoveAll);
        let h = history(vec![
            release(1, Status::Interrupted, &["a"]),
            release(2, Status::Failed, &["b"]),
        ]);
        assert_eq!(
            recovery(&h, true),
            Recovery::RemoveNew {
                keep: Some(vec![
                    obj("v1", "ConfigMap", "a"),
                    obj("v1", "ConfigMap", "b")
                ])
            }
        );
        // An unreadable record is not "no history": it may own anything, so nothing is
        // removed, and it is not a first install either.
        let mut h = history(Vec::new());
        h.unreadable.push(crate::release::Unreadable {
            secret: "berth.release.web.v1".into(),
            revision: Some(1),
            error: "bad gzip".into(),
        });
        assert_eq!(recovery(&h, true), Recovery::RemoveNew { keep: None });
    }

    #[test]
    fn rollback_goes_to_the_deployed_revision_before_the_live_one() {
        let h = history(vec![
            release(1, Status::Superseded, &["a"]),
            release(2, Status::Failed, &["b"]),
            release(3, Status::Superseded, &[]),
            release(4, Status::Deployed, &["d"]),
        ]);
        // 3 has no objects (a record from before objects were kept), 2 never deployed.
        assert_eq!(rollback_target(&h, None).map(|r| r.revision), None);
        let h = history(vec![
            release(1, Status::Superseded, &["a"]),
            release(2, Status::Failed, &["b"]),
            release(3, Status::Deployed, &["c"]),
        ]);
        assert_eq!(rollback_target(&h, None).map(|r| r.revision), Some(1));
        assert_eq!(rollback_target(&h, Some(2)).map(|r| r.revision), Some(2));
        assert_eq!(rollback_target(&h, Some(9)).map(|r| r.revision), None);
        assert_eq!(rollback_target(&history(Vec::new()), None), None);
    }
}
