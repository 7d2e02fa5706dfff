//! The preflight: every object checked against the live API before the first apply.
//!
//! Two passes, both read-only, and nothing is applied unless both pass:
//!
//! 1. **Discovery** of every `apiVersion`/`kind` of the set. A kind the cluster does not serve
//!    is a failure, explained from [`berth_objects::apis`] when its API version was removed
//!    (`extensions/v1beta1 Ingress was removed in Kubernetes 1.22; use networking.k8s.io/v1 —
//!    ...`) — unless a CustomResourceDefinition **of the same set** defines that kind and
//!    serves that version: it will exist once the CRD phase has run. A deprecated API that is
//!    still served is a warning.
//! 2. One **server-side dry-run apply** of every object as it would be applied (ownership
//!    labels included), so the API server's own validation, admission and immutable-field
//!    checks answer before anything changes.
//!
//! Every failure of both passes is reported together, each with its object, source file:line
//! and the API server's message.
//!
//! What cannot be dry-run up front, and why:
//! - **Custom resources whose CRD is in the set** are checked against the CRD this release
//!   applies, not against whatever version of it is live (a new CRD version may accept what
//!   the live one refuses). They are dry-run right after the CRD phase, before any other
//!   phase is applied; a refusal there fails the deploy, which removes
//!   or restores the CRD (and Namespace) phase like any failed deploy.
//! - **Hook Jobs that exist from an earlier run** are deleted and re-created when they run;
//!   a dry-run apply over the old, completed Job would be refused for its immutable pod
//!   template. They are skipped with that reason; a hook not yet in the cluster is dry-run.
//! - The environment's **namespace** is created before the preflight (the release lock and
//!   records live in it), so namespaced objects are dry-run in it; a `Namespace` object of
//!   the set can only name that namespace (see `berth_objects::ownership`).

use std::collections::{BTreeMap, BTreeSet};

use berth_cluster::{Cluster, ClusterError, KindScope};
use berth_objects::{Object, ObjectSet, Source};
use futures::FutureExt;
use futures::StreamExt;
use serde_json::Value;

use crate::{FIELD_MANAGER, PARALLEL_APPLIES};

/// One object the API server would refuse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// `Kind/name`.
    pub object: String,
    /// Where it was defined.
    pub source: Source,
    /// Why: the table's advice for a removed API, or the API server's message.
    pub message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.object, self.source, self.message)
    }
}

/// An `(apiVersion, kind)` pair.
pub(crate) type Kind = (String, String);

/// How discovery answered for one `apiVersion`/`kind`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The cluster serves it.
    Served,
    /// The cluster does not serve it yet; a CRD of the set does.
    DefinedInSet,
    /// Served, but a CRD of the set redefines it: dry-run after the CRD phase.
    RedefinedInSet,
    /// Not served: why, and what to write instead.
    Missing(String),
}

/// What discovery found for a set.
pub(crate) struct Discovery {
    pub verdicts: BTreeMap<(String, String), Verdict>,
    /// Deprecated-but-served APIs, one line per object.
    pub warnings: Vec<String>,
    /// The API server's version, when it answered.
    pub version: Option<String>,
}

impl Discovery {
    pub fn verdict(&self, v: &Value) -> &Verdict {
        &self.verdicts[&kind_of(v)]
    }

    /// `(apiVersion, kind)` pairs checked only after the CRD phase.
    pub fn deferred(&self) -> BTreeSet<(String, String)> {
        self.verdicts
            .iter()
            .filter(|(_, v)| matches!(v, Verdict::DefinedInSet | Verdict::RedefinedInSet))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The objects whose kind is not served, in the set's order.
    pub fn missing(&self, set: &ObjectSet) -> Vec<Refusal> {
        set.sorted()
            .into_iter()
            .filter_map(|o| match self.verdict(o.value()) {
                Verdict::Missing(why) => Some(refusal(o, why.clone())),
                _ => None,
            })
            .collect()
    }
}

pub(crate) fn kind_of(v: &Value) -> (String, String) {
    (
        v["apiVersion"].as_str().unwrap_or_default().to_string(),
        v["kind"].as_str().unwrap_or_default().to_string(),
    )
}

fn refusal(o: &Object, message: String) -> Refusal {
    Refusal {
        object: format!("{}/{}", o.key().kind, o.key().name),
        source: o.source().clone(),
        message,
    }
}

/// `(group, kind) -> served versions` of the CRDs in the set.
fn crds_in(set: &ObjectSet) -> BTreeMap<(String, String), Vec<String>> {
    let mut out = BTreeMap::new();
    for o in set {
        let v = o.value();
        if o.key().group != "apiextensions.k8s.io" || o.key().kind != "CustomResourceDefinition" {
            continue;
        }
        let (Some(group), Some(kind)) = (
            v["spec"]["group"].as_str(),
            v["spec"]["names"]["kind"].as_str(),
        ) else {
            continue;
        };
        let mut versions: Vec<String> = v["spec"]["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|ver| ver["served"].as_bool() != Some(false))
            .filter_map(|ver| ver["name"].as_str().map(String::from))
            .collect();
        if let Some(old) = v["spec"]["version"].as_str() {
            versions.push(old.to_string());
        }
        out.insert((group.to_string(), kind.to_string()), versions);
    }
    out
}

/// Pass 1: discovery of every kind of `set` (one request per distinct `apiVersion`/`kind`).
pub(crate) async fn discover(
    cluster: &Cluster,
    set: &ObjectSet,
) -> Result<Discovery, ClusterError> {
    let version = cluster.server_version().await.ok();
    let crds = crds_in(set);
    let kinds: BTreeSet<(String, String)> = set.iter().map(|o| kind_of(o.value())).collect();
    let answers: Vec<(Kind, Result<Option<KindScope>, ClusterError>)> =
        futures::stream::iter(kinds)
            .map(|(av, kind)| async move {
                let served = cluster.serves(&av, &kind).await;
                ((av, kind), served)
            })
            .buffer_unordered(PARALLEL_APPLIES)
            .collect()
            .await;
    let mut verdicts = BTreeMap::new();
    for ((av, kind), served) in answers {
        let group = berth_objects::object::api_group(&av).to_string();
        let version_of = av.rsplit('/').next().unwrap_or_default().to_string();
        let in_set = crds.get(&(group.clone(), kind.clone()));
        let verdict = match (served?, in_set) {
            (Some(_), Some(_)) => Verdict::RedefinedInSet,
            (Some(_), None) => Verdict::Served,
            (None, Some(versions)) if versions.contains(&version_of) => Verdict::DefinedInSet,
            (None, Some(versions)) => Verdict::Missing(format!(
                "the CustomResourceDefinition of {kind}.{group} in this release serves {}, not \
                 `{version_of}`; use one of those in apiVersion",
                if versions.is_empty() {
                    "no version".to_string()
                } else {
                    versions.join(", ")
                }
            )),
            (None, None) => {
                let mut why = missing_message(&av, &kind, version.as_deref());
                let serving = cluster.versions_serving(&group, &kind).await?;
                if !serving.is_empty() {
                    why.push_str(&format!(
                        "; the cluster serves {kind} in {}",
                        serving.join(", ")
                    ));
                }
                Verdict::Missing(why)
            }
        };
        verdicts.insert((av, kind), verdict);
    }
    let mut warnings = Vec::new();
    for o in set.sorted() {
        let (av, kind) = kind_of(o.value());
        if verdicts[&(av.clone(), kind.clone())] == Verdict::Served
            && let Some(w) = berth_objects::apis::warning(&av, &kind, version.as_deref())
        {
            warnings.push(format!(
                "{}/{} ({}): {w}",
                o.key().kind,
                o.key().name,
                o.source()
            ));
        }
    }
    Ok(Discovery {
        verdicts,
        warnings,
        version,
    })
}

/// Waits until the cluster serves every kind of `kinds` (an Established CRD shows in
/// discovery a moment later); returns those still not served after `timeout`.
pub(crate) async fn wait_served(
    cluster: &Cluster,
    kinds: &BTreeSet<Kind>,
    timeout: std::time::Duration,
) -> Result<BTreeSet<Kind>, ClusterError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut waiting = kinds.clone();
    loop {
        let mut still = BTreeSet::new();
        for (av, kind) in &waiting {
            if cluster.serves(av, kind).await?.is_none() {
                still.insert((av.clone(), kind.clone()));
            }
        }
        if still.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(still);
        }
        waiting = still;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn missing_message(api_version: &str, kind: &str, version: Option<&str>) -> String {
    let runs = version
        .map(|v| format!(" (the cluster runs {v})"))
        .unwrap_or_default();
    match berth_objects::apis::lookup(api_version, kind) {
        Some(change) => format!("{}{runs}{}", change.advice(), change.convert_hint()),
        None => format!(
            "the cluster does not serve kind `{kind}` in `{api_version}`{runs}; check the \
             apiVersion, or install the CustomResourceDefinition that defines it (or add it to \
             this release)"
        ),
    }
}

/// The message of a refused dry run: the API server's own words.
fn dry_run_message(e: &ClusterError) -> String {
    match e {
        ClusterError::Api {
            message,
            reason,
            code,
            ..
        } => format!("the API server refused it (dry run): {message} ({reason}, HTTP {code})"),
        other => format!("the API server refused it (dry run): {other}"),
    }
}

/// Dry-runs `objects` (values as they will be applied, with their [`Object`] for the source),
/// in parallel; returns the refusals in the given order. Transport and credential errors are
/// errors, not refusals.
pub(crate) async fn dry_run(
    cluster: &Cluster,
    objects: &[(&Object, &Value)],
    force: bool,
) -> Result<Vec<Refusal>, ClusterError> {
    let runs = objects
        .iter()
        .enumerate()
        .map(|(i, (_, v))| {
            async move { (i, cluster.dry_run_apply(v, FIELD_MANAGER, force).await) }.boxed()
        })
        .collect();
    let results: Vec<(usize, Result<Value, ClusterError>)> =
        crate::at_most(PARALLEL_APPLIES, runs).await;
    let mut refusals: Vec<(usize, Refusal)> = Vec::new();
    for (i, r) in results {
        match r {
            Ok(_) => {}
            Err(e @ (ClusterError::Unreachable { .. } | ClusterError::Unauthorized { .. })) => {
                return Err(e);
            }
            Err(e) => refusals.push((i, refusal(objects[i].0, dry_run_message(&e)))),
        }
    }
    refusals.sort_by_key(|(i, _)| *i);
    Ok(refusals.into_iter().map(|(_, r)| r).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn crds_of_the_set_name_their_served_versions() {
        let mut set = ObjectSet::new();
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "names": {"kind": "Widget", "plural": "widgets"},
                "scope": "Namespaced", "versions": [
                    {"name": "v1", "served": true, "storage": true},
                    {"name": "v0", "served": false, "storage": false}]}});
        let src = Source {
            origin: "crd.yaml".into(),
            line: 1,
        };
        set.insert(Object::new(crd, src).unwrap()).unwrap();
        let crds = crds_in(&set);
        assert_eq!(
            crds[&("example.com".to_string(), "Widget".to_string())],
            vec!["v1".to_string()]
        );
    }

    #[test]
    fn a_removed_api_is_explained_from_the_table() {
        let m = missing_message("extensions/v1beta1", "Ingress", Some("v1.33.1"));
        assert!(
            m.starts_with("extensions/v1beta1 Ingress was removed in Kubernetes 1.22; use networking.k8s.io/v1 — "),
            "{m}"
        );
        assert!(
            m.ends_with("(the cluster runs v1.33.1); `berth render --convert` rewrites it"),
            "{m}"
        );
        let m = missing_message("example.com/v1", "Widget", None);
        assert!(m.contains("install the CustomResourceDefinition"), "{m}");
    }
}
