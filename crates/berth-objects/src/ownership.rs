//! Ownership: labels that mark what berth deployed, and the environment's namespace.
//!
//! Every object gets the labels `app.kubernetes.io/managed-by: berth` and
//! `berth.dev/release: <release>` (prune and history select on them) and the annotations
//! `berth.dev/revision` and `berth.dev/commit`. Cluster-scoped objects also get
//! `berth.dev/namespace: <namespace>`, since one release name may exist in many namespaces.
//!
//! Pod templates (`spec.template` of workloads, `spec.jobTemplate.spec.template` of CronJobs)
//! get only the `berth.dev/release` label, so pods can be found by release. Selectors are never
//! touched: a Deployment's `spec.selector` is immutable, and adding labels to it would orphan the
//! running pods. Revision and commit are not written into pod templates either, because a change
//! there restarts every pod on every deploy even when nothing else changed.
//!
//! Namespaces: berth deploys an environment into exactly one namespace. Namespaced objects get
//! `metadata.namespace` set to it; an object that names another namespace is an error, and so
//! is a `Namespace` object with another name. Cluster-scoped kinds (a built-in table, plus the
//! kinds of cluster-scoped CRDs found in the same set, plus [`Ownership::cluster_scoped`]) lose a
//! `metadata.namespace` they carry, as the API server would ignore it anyway.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::{ObjectError, ObjectSet};

/// Label naming the tool that manages an object.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Label naming the berth release an object belongs to.
pub const RELEASE_LABEL: &str = "berth.dev/release";
/// Label naming the environment's namespace on cluster-scoped objects: a cluster-scoped
/// object is owned by a release *and* a namespace (release `prod` of namespace A must never
/// prune the ClusterRole of release `prod` of namespace B).
pub const NAMESPACE_LABEL: &str = "berth.dev/namespace";
/// Annotation with the release revision that last applied an object.
pub const REVISION_ANNOTATION: &str = "berth.dev/revision";
/// Annotation with the commit the release was built from.
pub const COMMIT_ANNOTATION: &str = "berth.dev/commit";

/// Built-in cluster-scoped kinds, as (group, kind).
pub const CLUSTER_SCOPED: &[(&str, &str)] = &[
    ("", "Namespace"),
    ("", "Node"),
    ("", "PersistentVolume"),
    ("", "ComponentStatus"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("storage.k8s.io", "StorageClass"),
    ("storage.k8s.io", "CSIDriver"),
    ("storage.k8s.io", "CSINode"),
    ("storage.k8s.io", "VolumeAttachment"),
    ("storage.k8s.io", "VolumeAttributesClass"),
    ("scheduling.k8s.io", "PriorityClass"),
    ("networking.k8s.io", "IngressClass"),
    ("networking.k8s.io", "IPAddress"),
    ("networking.k8s.io", "ServiceCIDR"),
    (
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
    ),
    (
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
    ),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
    (
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicyBinding",
    ),
    ("apiregistration.k8s.io", "APIService"),
    ("node.k8s.io", "RuntimeClass"),
    ("snapshot.storage.k8s.io", "VolumeSnapshotClass"),
    ("snapshot.storage.k8s.io", "VolumeSnapshotContent"),
    ("certificates.k8s.io", "CertificateSigningRequest"),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
    ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
    ("gateway.networking.k8s.io", "GatewayClass"),
    ("resource.k8s.io", "DeviceClass"),
];

/// Who owns the objects of a render: the release and the environment's namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ownership {
    /// Release name (a label value: at most 63 of `[A-Za-z0-9._-]`, alphanumeric at both ends).
    pub release: String,
    /// Release revision, written as an annotation.
    pub revision: u64,
    /// Commit the images were built from, if known.
    pub commit: Option<String>,
    /// The environment's namespace.
    pub namespace: String,
    /// Extra cluster-scoped kinds as (group, kind), for custom resources whose CRD is not part
    /// of this render.
    pub cluster_scoped: BTreeSet<(String, String)>,
}

impl Ownership {
    /// Ownership for `release` at `revision` in `namespace`.
    pub fn new(release: &str, revision: u64, namespace: &str) -> Ownership {
        Ownership {
            release: release.into(),
            revision,
            commit: None,
            namespace: namespace.into(),
            cluster_scoped: BTreeSet::new(),
        }
    }

    /// The same with a commit.
    pub fn with_commit(mut self, commit: &str) -> Ownership {
        self.commit = Some(commit.into());
        self
    }

    fn validate(&self) -> Result<(), ObjectError> {
        let bad = |value: &str, message: &str| ObjectError::Release {
            value: value.into(),
            message: message.into(),
        };
        let r = &self.release;
        let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        if r.is_empty()
            || r.len() > 63
            || !alnum(r.chars().next())
            || !alnum(r.chars().last())
            || !r
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(bad(
                r,
                "a release name is a label value: at most 63 letters, digits, `-`, `_` or `.`, \
                 starting and ending with a letter or digit",
            ));
        }
        let n = &self.namespace;
        if n.is_empty()
            || n.len() > 63
            || n.starts_with('-')
            || n.ends_with('-')
            || !n
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(bad(
                n,
                "a namespace is at most 63 lowercase letters, digits or `-`, not starting or \
                 ending with `-`",
            ));
        }
        Ok(())
    }
}

/// Whether a built-in kind is cluster-scoped.
pub fn is_cluster_scoped(group: &str, kind: &str) -> bool {
    CLUSTER_SCOPED.iter().any(|&(g, k)| g == group && k == kind)
}

impl ObjectSet {
    /// Labels and annotates every object for `owner` and puts namespaced objects into the
    /// environment's namespace (see the [module docs](crate::ownership)). Re-checks duplicates,
    /// since objects with and without an explicit namespace may now be the same object.
    pub fn apply_ownership(&mut self, owner: &Ownership) -> Result<(), ObjectError> {
        owner.validate()?;
        let mut cluster_scoped = owner.cluster_scoped.clone();
        for o in self.iter() {
            let v = o.value();
            if o.key().group == "apiextensions.k8s.io"
                && o.key().kind == "CustomResourceDefinition"
                && v["spec"]["scope"] == "Cluster"
                && let (Some(g), Some(k)) = (
                    v["spec"]["group"].as_str(),
                    v["spec"]["names"]["kind"].as_str(),
                )
            {
                cluster_scoped.insert((g.to_string(), k.to_string()));
            }
        }
        self.modify_all(|o| {
            let key = o.key().clone();
            let cluster = is_cluster_scoped(&key.group, &key.kind)
                || cluster_scoped.contains(&(key.group.clone(), key.kind.clone()));
            let foreign = if key.group.is_empty() && key.kind == "Namespace" {
                (key.name != owner.namespace).then(|| key.name.clone())
            } else if cluster {
                None
            } else {
                key.namespace.clone().filter(|ns| *ns != owner.namespace)
            };
            if let Some(found) = foreign {
                return Err(ObjectError::ForeignNamespace {
                    key: Box::new(key),
                    at: o.source().clone(),
                    found,
                    expected: owner.namespace.clone(),
                });
            }
            o.modify(|v| {
                let meta = object_at(v, "metadata");
                if cluster {
                    meta.remove("namespace");
                } else {
                    meta.insert("namespace".into(), owner.namespace.clone().into());
                }
                let labels = object_at_map(meta, "labels");
                labels.insert(MANAGED_BY_LABEL.into(), "berth".into());
                labels.insert(RELEASE_LABEL.into(), owner.release.clone().into());
                if cluster {
                    labels.insert(NAMESPACE_LABEL.into(), owner.namespace.clone().into());
                }
                let annotations = object_at_map(meta, "annotations");
                annotations.insert(
                    REVISION_ANNOTATION.into(),
                    owner.revision.to_string().into(),
                );
                match &owner.commit {
                    Some(c) => annotations.insert(COMMIT_ANNOTATION.into(), c.clone().into()),
                    None => annotations.remove(COMMIT_ANNOTATION),
                };
                for template in pod_templates(v, &key.group, &key.kind) {
                    let meta = object_at(template, "metadata");
                    object_at_map(meta, "labels")
                        .insert(RELEASE_LABEL.into(), owner.release.clone().into());
                }
            });
            Ok(())
        })
    }
}

/// The pod templates of an object: `spec.jobTemplate.spec.template` for CronJobs, and
/// `spec.template` for anything whose template holds `spec.containers` (workloads, Argo
/// Rollouts, Knative Services, ...).
fn pod_templates<'a>(v: &'a mut Value, group: &str, kind: &str) -> Vec<&'a mut Value> {
    let spec = if group == "batch" && kind == "CronJob" {
        v.pointer_mut("/spec/jobTemplate/spec")
    } else {
        v.get_mut("spec")
    };
    match spec.and_then(|s| s.get_mut("template")) {
        Some(t) if t.pointer("/spec/containers").is_some_and(Value::is_array) => vec![t],
        _ => Vec::new(),
    }
}

fn object_at<'a>(v: &'a mut Value, field: &str) -> &'a mut Map<String, Value> {
    let map = v.as_object_mut().expect("objects are mappings");
    object_at_map(map, field)
}

fn object_at_map<'a>(map: &'a mut Map<String, Value>, field: &str) -> &'a mut Map<String, Value> {
    let slot = map
        .entry(field.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().expect("just made an object")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Object, Source};
    use serde_json::json;

    fn set(docs: Vec<Value>) -> ObjectSet {
        let mut s = ObjectSet::new();
        for (i, d) in docs.into_iter().enumerate() {
            let src = Source {
                origin: "m.yaml".into(),
                line: 1 + 10 * i as u64,
            };
            s.insert(Object::new(d, src).unwrap()).unwrap();
        }
        s
    }

    fn deployment(namespace: Option<&str>) -> Value {
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "web"}]}}}});
        if let Some(ns) = namespace {
            d["metadata"]["namespace"] = ns.into();
        }
        d
    }

    #[test]
    fn labels_objects_and_templates_but_never_selectors() {
        let mut s = set(vec![deployment(None)]);
        s.apply_ownership(&Ownership::new("shop", 7, "dev").with_commit("abc123"))
            .unwrap();
        insta::assert_snapshot!(s.to_yaml(), @r#"
        ---
        # Source: m.yaml:1
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          annotations:
            berth.dev/commit: abc123
            berth.dev/revision: "7"
          labels:
            app: web
            app.kubernetes.io/managed-by: berth
            berth.dev/release: shop
          name: web
          namespace: dev
        spec:
          selector:
            matchLabels:
              app: web
          template:
            metadata:
              labels:
                app: web
                berth.dev/release: shop
            spec:
              containers:
              - image: web
                name: web
        "#);
    }

    #[test]
    fn cronjob_pod_template_is_labelled() {
        let mut s = set(vec![
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
            "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}}}),
        ]);
        s.apply_ownership(&Ownership::new("shop", 1, "dev"))
            .unwrap();
        let v = s.iter().next().unwrap().value();
        assert_eq!(
            v.pointer("/spec/jobTemplate/spec/template/metadata/labels/berth.dev~1release"),
            Some(&json!("shop"))
        );
    }

    #[test]
    fn objects_in_another_namespace_are_refused() {
        let mut s = set(vec![deployment(Some("prod"))]);
        let before = s.clone();
        let e = s
            .apply_ownership(&Ownership::new("shop", 1, "dev"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("m.yaml:1: Deployment.apps prod/web is in namespace `prod`, but this environment deploys to `dev`"),
            "{e}"
        );
        assert_eq!(
            s, before,
            "a failed apply_ownership leaves the set as it was"
        );
        let mut s = set(vec![
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"}}),
        ]);
        assert!(
            s.apply_ownership(&Ownership::new("shop", 1, "dev"))
                .is_err()
        );
    }

    #[test]
    fn same_object_with_and_without_namespace_is_a_duplicate() {
        let mut s = set(vec![deployment(None), deployment(Some("dev"))]);
        let e = s
            .apply_ownership(&Ownership::new("shop", 1, "dev"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("at m.yaml:1 and at m.yaml:11"), "{e}");
    }

    #[test]
    fn cluster_scoped_objects_have_no_namespace() {
        let mut s = set(vec![
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r", "namespace": "dev"}}),
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "widgets.example.com"},
                "spec": {"group": "example.com", "scope": "Cluster", "names": {"kind": "Widget"}}}),
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}),
            json!({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dev"}}),
        ]);
        s.apply_ownership(&Ownership::new("shop", 1, "dev"))
            .unwrap();
        let ns: Vec<String> = s
            .iter()
            .map(|o| format!("{} {:?}", o.key().kind, o.key().namespace))
            .collect();
        assert_eq!(
            ns,
            [
                "ClusterRole None",
                "CustomResourceDefinition None",
                "Widget None",
                "Gadget Some(\"dev\")",
                "Namespace None"
            ]
        );
    }

    #[test]
    fn release_names_must_be_label_values() {
        let mut s = set(vec![]);
        for bad in ["", "-x", "a b", &"x".repeat(64)] {
            assert!(
                s.apply_ownership(&Ownership::new(bad, 1, "dev")).is_err(),
                "{bad}"
            );
        }
        assert!(s.apply_ownership(&Ownership::new("ok", 1, "Dev")).is_err());
    }
}
