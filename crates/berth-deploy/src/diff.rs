//! What a deploy would change: each rendered object dry-run against the live one (server-side
//! apply, `dryRun=All`), both sides without server bookkeeping and with Secret values
//! redacted, for `berth diff` and anything else that shows a pending change.

use berth_cluster::{Cluster, ObjectKey};
use berth_objects::ObjectSet;

use crate::{DeployError, FIELD_MANAGER};

/// One object whose live form differs from what the deploy would make of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectDiff {
    /// `Kind/name`.
    pub object: String,
    /// The live object as YAML (empty when it does not exist yet).
    pub live: String,
    /// What the deploy would make of it, as YAML.
    pub new: String,
}

/// The objects of `objects` (with berth's ownership already applied) that a deploy would
/// change, in the set's stable order. `force_conflicts` as for the deploy.
pub async fn diff(
    cluster: &Cluster,
    objects: &ObjectSet,
    force_conflicts: bool,
) -> Result<Vec<ObjectDiff>, DeployError> {
    let mut out = Vec::new();
    for o in objects.sorted() {
        let v = o.value();
        let key = ObjectKey::of(v)?;
        let live = cluster.get(&key).await?;
        let dry = match cluster
            .dry_run_apply(v, FIELD_MANAGER, force_conflicts)
            .await
        {
            Ok(d) => Some(d),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        };
        let before = live
            .as_ref()
            .map(|l| comparable(l, None))
            .unwrap_or_default();
        let after = match &dry {
            Some(d) => comparable(d, Some(live.as_ref())),
            None => comparable(v, Some(live.as_ref())),
        };
        if before != after {
            out.push(ObjectDiff {
                object: format!("{}/{}", key.kind, key.name),
                live: before,
                new: after,
            });
        }
    }
    Ok(out)
}

/// YAML of an object without server bookkeeping, Secret values redacted. On the new side
/// (`against` = the live object, if any) a Secret value that differs from the live one reads
/// `<redacted, changed>`, so a value-only change still shows as a diff line.
fn comparable(v: &serde_json::Value, against: Option<Option<&serde_json::Value>>) -> String {
    let mut v = v.clone();
    if let Some(m) = v["metadata"].as_object_mut() {
        for k in [
            "managedFields",
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
        ] {
            m.remove(k);
        }
        if let Some(a) = m.get_mut("annotations").and_then(|a| a.as_object_mut()) {
            a.remove(berth_objects::ownership::REVISION_ANNOTATION);
            a.remove("deployment.kubernetes.io/revision");
        }
    }
    if let Some(m) = v.as_object_mut() {
        m.remove("status");
    }
    if v["kind"] == "Secret" {
        berth_objects::object::redact_last_applied(&mut v);
        for field in ["data", "stringData"] {
            if let Some(d) = v[field].as_object_mut() {
                for (key, val) in d.iter_mut() {
                    let changed = match against {
                        None => false,
                        Some(live) => live.map(|l| &l[field][key]) != Some(&*val),
                    };
                    let shown = if changed {
                        "<redacted, changed>"
                    } else {
                        "<redacted>"
                    };
                    *val = serde_json::Value::String(shown.into());
                }
            }
        }
    }
    berth_objects::yaml::to_yaml(&v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bookkeeping_is_dropped_and_secret_values_never_shown() {
        let live = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "uid": "u", "resourceVersion": "7", "managedFields": [],
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{\"password\":\"aHVudGVyMg==\"}}"}},
            "data": {"password": "aHVudGVyMg==", "user": "YWRtaW4="}});
        let mut new = live.clone();
        new["data"]["password"] = json!("c2VjcmV0Mg==");
        let before = comparable(&live, None);
        let after = comparable(&new, Some(Some(&live)));
        for text in [&before, &after] {
            assert!(
                !text.contains("aHVudGVyMg") && !text.contains("c2VjcmV0Mg"),
                "{text}"
            );
            assert!(
                !text.contains("resourceVersion") && !text.contains("uid"),
                "{text}"
            );
        }
        assert!(after.contains("password: <redacted, changed>"), "{after}");
        assert!(after.contains("user: <redacted>"), "{after}");
        assert_ne!(before, after, "a value-only change still differs");
    }
}
