//! Which berth-made snapshots are past retention: pure, on the listed objects.

use serde_json::Value;

use crate::objects::{RUN_LABEL, SOURCE_PVC_LABEL};

/// Of berth's snapshots (any mix of source PVCs), those beyond the newest `keep` per source
/// PVC. Newest means latest `creationTimestamp`, then latest run id (run ids sort by time, and
/// tell apart runs within one second). Objects of `current_run` are never returned, so a
/// `keep` of 0 behaves like 1.
pub fn expired<'a>(snapshots: &'a [Value], keep: usize, current_run: &str) -> Vec<&'a Value> {
    let label = |o: &Value, l: &str| {
        o["metadata"]["labels"][l]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let mut sorted: Vec<&Value> = snapshots.iter().collect();
    // Newest first within each PVC.
    sorted.sort_by_key(|o| {
        (
            label(o, SOURCE_PVC_LABEL),
            std::cmp::Reverse((
                o["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                label(o, RUN_LABEL),
            )),
        )
    });
    let mut out = Vec::new();
    let mut seen = 0;
    let mut pvc = None;
    for o in sorted {
        let this = label(o, SOURCE_PVC_LABEL);
        if pvc.as_ref() != Some(&this) {
            pvc = Some(this);
            seen = 0;
        }
        seen += 1;
        if seen > keep.max(1) && label(o, RUN_LABEL) != current_run {
            out.push(o);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn snap(pvc: &str, run: &str, created: &str) -> Value {
        json!({"metadata": {"name": format!("{pvc}-berth-{run}"), "creationTimestamp": created,
            "labels": {SOURCE_PVC_LABEL: pvc, RUN_LABEL: run}}})
    }

    fn names(v: Vec<&Value>) -> Vec<&str> {
        v.iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn keeps_the_newest_per_pvc() {
        let all = [
            snap("db", "03", "2026-11-25T12:00:03Z"),
            snap("db", "01", "2026-11-25T12:00:01Z"),
            snap("files", "01", "2026-11-25T12:00:01Z"),
            snap("db", "02", "2026-11-25T12:00:02Z"),
        ];
        assert_eq!(names(expired(&all, 2, "03")), ["db-berth-01"]);
        assert_eq!(
            names(expired(&all, 1, "03")),
            ["db-berth-02", "db-berth-01"]
        );
        assert!(expired(&all, 5, "03").is_empty());
    }

    #[test]
    fn runs_within_one_second_sort_by_run_id() {
        let all = [
            snap("db", "0a2", "2026-11-25T12:00:00Z"),
            snap("db", "0a1", "2026-11-25T12:00:00Z"),
            snap("db", "0a3", "2026-11-25T12:00:00Z"),
        ];
        assert_eq!(names(expired(&all, 2, "0a3")), ["db-berth-0a1"]);
    }

    #[test]
    fn the_current_run_is_never_expired() {
        let all = [
            snap("db", "02", "2026-11-25T12:00:02Z"),
            snap("db", "01", "2026-11-25T12:00:01Z"),
        ];
        assert_eq!(names(expired(&all, 0, "02")), ["db-berth-01"]);
    }
}
