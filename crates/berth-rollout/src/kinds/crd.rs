//! `apiextensions.k8s.io/v1` CustomResourceDefinition: `Established`, unless its names clash.

use crate::obj::condition;
use crate::{FailureReason, Readiness};
use serde_json::Value;

pub(crate) fn readiness(c: &Value) -> Readiness {
    if let Some(names) = condition(c, "NamesAccepted")
        && names.is_false()
    {
        return Readiness::failed(
            FailureReason::CrdNamesNotAccepted,
            format!(
                "names not accepted ({}); another CRD already uses its plural, kind or short names",
                names.describe()
            ),
        );
    }
    if condition(c, "Established").is_some_and(|e| e.is_true()) {
        Readiness::ready("established")
    } else {
        Readiness::progressing("waiting for the API server to establish it")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd(conditions: Value) -> Value {
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": {"name": "widgets.example.com"},
               "status": {"conditions": conditions,
                          "acceptedNames": {"kind": "Widget", "plural": "widgets"}}})
    }

    #[test]
    fn established_is_ready() {
        let c = crd(json!([
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found"},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted"}]));
        assert!(readiness(&c).is_ready());
    }

    #[test]
    fn just_created_progresses() {
        assert!(matches!(
            readiness(&crd(json!([]))),
            Readiness::Progressing { .. }
        ));
    }

    #[test]
    fn name_conflict_fails() {
        let c = crd(json!([
            {"type": "NamesAccepted", "status": "False", "reason": "KindConflict",
             "message": "\"Widget\" is already in use"},
            {"type": "Established", "status": "False", "reason": "NotAccepted",
             "message": "not all names are accepted"}]));
        assert!(matches!(
            readiness(&c),
            Readiness::Failed {
                reason: FailureReason::CrdNamesNotAccepted,
                ..
            }
        ));
    }
}
