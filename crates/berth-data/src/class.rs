//! Which VolumeSnapshotClass snapshots a volume: pure, on the listed objects.

use serde_json::Value;

use crate::DataError;

/// The annotation that marks the default VolumeSnapshotClass of a driver.
pub const DEFAULT_CLASS_ANNOTATION: &str = "snapshot.storage.k8s.io/is-default-class";

/// The annotation that marks the cluster's default StorageClass.
pub const DEFAULT_STORAGE_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";

fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}

fn is_default(o: &Value, annotation: &str) -> bool {
    o["metadata"]["annotations"][annotation].as_str() == Some("true")
}

/// The StorageClass a PVC uses, among `classes`: the one it names, else the cluster's default.
pub fn storage_class_of<'a>(
    namespace: &str,
    pvc: &Value,
    classes: &'a [Value],
) -> Result<&'a Value, DataError> {
    match pvc["spec"]["storageClassName"].as_str() {
        Some(n) => {
            classes
                .iter()
                .find(|c| name(c) == n)
                .ok_or_else(|| DataError::StorageClassNotFound {
                    pvc: name(pvc).into(),
                    class: n.into(),
                })
        }
        None => classes
            .iter()
            .find(|c| is_default(c, DEFAULT_STORAGE_CLASS_ANNOTATION))
            .ok_or_else(|| DataError::InvalidPvc {
                namespace: namespace.into(),
                name: name(pvc).into(),
                reason: "it names no StorageClass and the cluster has no default one".into(),
            }),
    }
}

/// Picks the VolumeSnapshotClass for volumes of `storage_class` (provisioner `provisioner`)
/// among `classes`: the one `requested` (which must have that driver), else the only class
/// whose `driver` is the provisioner, else the one of those marked default.
pub fn pick_snapshot_class(
    pvc: &str,
    storage_class: &str,
    provisioner: &str,
    classes: &[Value],
    requested: Option<&str>,
) -> Result<String, DataError> {
    let driver = |c: &Value| c["driver"].as_str().unwrap_or_default().to_string();
    if let Some(want) = requested {
        let class = classes
            .iter()
            .find(|c| name(c) == want)
            .ok_or_else(|| DataError::SnapshotClassNotFound(want.into()))?;
        if driver(class) != provisioner {
            return Err(DataError::SnapshotClassMismatch {
                class: want.into(),
                driver: driver(class),
                pvc: pvc.into(),
                provisioner: provisioner.into(),
            });
        }
        return Ok(want.into());
    }
    let fitting: Vec<&Value> = classes
        .iter()
        .filter(|c| driver(c) == provisioner)
        .collect();
    match fitting.as_slice() {
        [] => {
            let mut known_drivers: Vec<String> = classes.iter().map(driver).collect();
            known_drivers.sort();
            known_drivers.dedup();
            Err(DataError::NoSnapshotSupport {
                class: storage_class.into(),
                provisioner: provisioner.into(),
                known_drivers,
            })
        }
        [one] => Ok(name(one).into()),
        several => {
            let defaults: Vec<&&Value> = several
                .iter()
                .filter(|c| is_default(c, DEFAULT_CLASS_ANNOTATION))
                .collect();
            match defaults.as_slice() {
                [one] => Ok(name(one).into()),
                _ => {
                    let mut candidates: Vec<String> =
                        several.iter().map(|c| name(c).to_string()).collect();
                    candidates.sort();
                    Err(DataError::AmbiguousSnapshotClass {
                        provisioner: provisioner.into(),
                        candidates,
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn class(name: &str, driver: &str, default: bool) -> Value {
        let mut c = json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
            "metadata": {"name": name}, "driver": driver, "deletionPolicy": "Delete"});
        if default {
            c["metadata"]["annotations"] = json!({DEFAULT_CLASS_ANNOTATION: "true"});
        }
        c
    }

    #[test]
    fn the_only_class_of_the_driver_is_picked() {
        let classes = [
            class("other", "b.csi", false),
            class("fast", "a.csi", false),
        ];
        assert_eq!(
            pick_snapshot_class("db", "ssd", "a.csi", &classes, None).unwrap(),
            "fast"
        );
    }

    #[test]
    fn the_default_class_wins_among_several() {
        let classes = [
            class("slow", "a.csi", false),
            class("fast", "a.csi", true),
            class("x", "b.csi", true),
        ];
        assert_eq!(
            pick_snapshot_class("db", "ssd", "a.csi", &classes, None).unwrap(),
            "fast"
        );
    }

    #[test]
    fn several_without_a_default_ask_for_a_choice() {
        let classes = [class("slow", "a.csi", false), class("fast", "a.csi", false)];
        let e = pick_snapshot_class("db", "ssd", "a.csi", &classes, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("fast, slow") && e.contains("--snapshot-class"),
            "{e}"
        );
    }

    #[test]
    fn no_class_for_the_driver_names_class_and_provisioner() {
        let classes = [class("x", "b.csi", false)];
        let e = pick_snapshot_class("db", "ssd", "a.csi", &classes, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("StorageClass `ssd` (provisioner `a.csi`) has no snapshot support"),
            "{e}"
        );
        assert!(e.contains("classes exist for: b.csi"), "{e}");
        assert!(e.contains("driver: a.csi"), "{e}");
    }

    #[test]
    fn a_requested_class_must_exist_and_fit() {
        let classes = [class("x", "b.csi", false), class("y", "a.csi", false)];
        assert_eq!(
            pick_snapshot_class("db", "ssd", "a.csi", &classes, Some("y")).unwrap(),
            "y"
        );
        assert!(matches!(
            pick_snapshot_class("db", "ssd", "a.csi", &classes, Some("x")),
            Err(DataError::SnapshotClassMismatch { .. })
        ));
        assert!(matches!(
            pick_snapshot_class("db", "ssd", "a.csi", &classes, Some("z")),
            Err(DataError::SnapshotClassNotFound(_))
        ));
    }

    #[test]
    fn a_pvc_without_a_class_uses_the_default_storage_class() {
        let classes = [
            json!({"metadata": {"name": "plain"}, "provisioner": "a"}),
            json!({"metadata": {"name": "std", "annotations": {DEFAULT_STORAGE_CLASS_ANNOTATION: "true"}}, "provisioner": "b"}),
        ];
        let pvc = json!({"metadata": {"name": "db"}, "spec": {}});
        assert_eq!(name(storage_class_of("p", &pvc, &classes).unwrap()), "std");
        let pvc = json!({"metadata": {"name": "db"}, "spec": {"storageClassName": "plain"}});
        assert_eq!(
            name(storage_class_of("p", &pvc, &classes).unwrap()),
            "plain"
        );
        let pvc = json!({"metadata": {"name": "db"}, "spec": {"storageClassName": "gone"}});
        assert!(matches!(
            storage_class_of("p", &pvc, &classes),
            Err(DataError::StorageClassNotFound { .. })
        ));
        let pvc = json!({"metadata": {"name": "db"}, "spec": {}});
        assert!(storage_class_of("p", &pvc, &classes[..1]).is_err());
    }
}
