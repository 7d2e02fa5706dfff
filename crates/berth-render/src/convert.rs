//! `berth render --convert`: rewrite objects of removed APIs into their replacements, where the
//! change is mechanical ([`crate::apis::Migration`]).
//!
//! What is converted: Deployment, DaemonSet, ReplicaSet and StatefulSet from
//! `extensions/v1beta1`, `apps/v1beta1`, `apps/v1beta2` to `apps/v1` (with `spec.selector`
//! from the pod template's labels when missing); Ingress from `extensions/v1beta1` and
//! `networking.k8s.io/v1beta1` to `networking.k8s.io/v1` (backend fields, `pathType:
//! ImplementationSpecific` when absent, the `kubernetes.io/ingress.class` annotation to
//! `spec.ingressClassName`); HorizontalPodAutoscaler `v2beta1`/`v2beta2` to `autoscaling/v2`;
//! CronJob `batch/v1beta1` to `batch/v1`; PodDisruptionBudget `policy/v1beta1` to `policy/v1`;
//! and every table entry whose fields did not change (RBAC, NetworkPolicy, PriorityClass, ...).
//! The rest (PodSecurityPolicy, CRDs, webhooks, ...) is reported with what to do instead.
//!
//! Two outputs: [`convert_set`] converts a rendered set (printed by `berth render --convert`),
//! [`rewrite_file`] rewrites the text of one plain manifest file (`--write`): documents that
//! need no conversion are kept byte for byte, converted ones are written in berth's YAML form
//! (sorted keys; comments inside a converted document are lost, comment lines before it kept).

use serde_json::{Map, Value, json};

use crate::apis::{self, ApiChange, Migration};
use crate::{Object, ObjectSet, RenderError, Source};

/// What happened to one object.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// `Kind/name`.
    pub object: String,
    /// Where it was defined.
    pub source: Source,
    /// The table entry of its old API.
    pub change: &'static ApiChange,
    /// Whether berth rewrote it.
    pub converted: bool,
    /// What berth did or noticed (`spec.selector set from the pod template's labels`).
    pub notes: Vec<String>,
    /// What is left for the user to do; empty when nothing is.
    pub left: Vec<String>,
}

impl Report {
    /// Whether the user still has to change something.
    pub fn needs_attention(&self) -> bool {
        !self.left.is_empty()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.converted {
            write!(
                f,
                "{} ({}): {} -> {}",
                self.object, self.source, self.change.api_version, self.change.replacement
            )?;
            for n in &self.notes {
                write!(f, "; {n}")?;
            }
            for l in &self.left {
                write!(f, "; TO DO: {l}")?;
            }
            Ok(())
        } else {
            write!(
                f,
                "{} ({}): not converted, change it by hand: {}",
                self.object, self.source, self.left[0]
            )
        }
    }
}

/// The outcome of converting one object value.
struct Converted {
    value: Value,
    notes: Vec<String>,
    left: Vec<String>,
}

/// Converts one object. `None`: its API is neither removed nor deprecated. `Some(Err(change))`:
/// it is, but not mechanically convertible.
fn convert_value(v: &Value) -> Option<Result<Converted, &'static ApiChange>> {
    let change = apis::lookup(v["apiVersion"].as_str()?, v["kind"].as_str()?)?;
    let mut out = Converted {
        value: v.clone(),
        notes: Vec::new(),
        left: Vec::new(),
    };
    match change.migration {
        Migration::Manual => return Some(Err(change)),
        Migration::Rename => {}
        Migration::Workload => workload(change, &mut out),
        Migration::Ingress => ingress(&mut out),
        Migration::HpaV2beta1 => hpa(&mut out),
        Migration::Pdb => {
            if out.value["spec"]["selector"]
                .as_object()
                .is_some_and(Map::is_empty)
            {
                out.left.push(
                    "spec.selector is empty: in policy/v1beta1 it selected no pods, in policy/v1 \
                     it selects every pod of the namespace; give it matchLabels"
                        .into(),
                );
            }
        }
    }
    if change.kind == "HorizontalPodAutoscaler"
        && let Some(target) = out.value["spec"]["scaleTargetRef"].as_object_mut()
        && let (Some(av), Some(kind)) = (
            target
                .get("apiVersion")
                .and_then(Value::as_str)
                .map(String::from),
            target.get("kind").and_then(Value::as_str).map(String::from),
        )
        && let Some(t) = apis::lookup(&av, &kind).filter(|t| t.migration != Migration::Manual)
    {
        out.notes.push(format!(
            "spec.scaleTargetRef.apiVersion {av} -> {}",
            t.replacement
        ));
        target.insert("apiVersion".into(), t.replacement.into());
    }
    out.value["apiVersion"] = Value::String(change.replacement.into());
    Some(Ok(out))
}

fn workload(change: &ApiChange, out: &mut Converted) {
    let v = &mut out.value;
    if let Some(spec) = v["spec"].as_object_mut() {
        for gone in ["rollbackTo", "templateGeneration"] {
            if spec.remove(gone).is_some() {
                out.notes
                    .push(format!("removed spec.{gone} (apps/v1 has no such field)"));
            }
        }
    }
    if v["spec"]["selector"].is_null() {
        match v["spec"]["template"]["metadata"]["labels"].as_object() {
            Some(labels) if !labels.is_empty() => {
                let labels = Value::Object(labels.clone());
                v["spec"]["selector"] = json!({ "matchLabels": labels });
                out.notes.push(
                    "spec.selector set from the pod template's labels (apps/v1 requires it, and \
                     it cannot change later)"
                        .into(),
                );
            }
            _ => out.left.push(
                "apps/v1 requires spec.selector and pod template labels it matches; add both"
                    .into(),
            ),
        }
    }
    let kind = v["kind"].as_str().unwrap_or_default();
    let on_delete_before = (kind == "DaemonSet" && change.api_version == "extensions/v1beta1")
        || (kind == "StatefulSet" && change.api_version == "apps/v1beta1");
    if on_delete_before && v["spec"]["updateStrategy"].is_null() {
        out.notes.push(
            "spec.updateStrategy now defaults to RollingUpdate (it was OnDelete); set \
             updateStrategy.type: OnDelete to keep the old behaviour"
                .into(),
        );
    }
}

fn backend(b: &mut Value) -> bool {
    let Some(m) = b.as_object_mut() else {
        return false;
    };
    let Some(name) = m.remove("serviceName") else {
        return false;
    };
    let port = match m.remove("servicePort") {
        Some(Value::Number(n)) => json!({ "number": n }),
        Some(Value::String(s)) => match s.parse::<u64>() {
            Ok(n) => json!({ "number": n }),
            Err(_) => json!({ "name": s }),
        },
        _ => Value::Null,
    };
    let mut service = Map::new();
    service.insert("name".into(), name);
    if !port.is_null() {
        service.insert("port".into(), port);
    }
    m.insert("service".into(), Value::Object(service));
    true
}

fn ingress(out: &mut Converted) {
    let v = &mut out.value;
    let mut backends = 0;
    let mut path_types = 0;
    if let Some(spec) = v["spec"].as_object_mut()
        && let Some(b) = spec.remove("backend")
    {
        spec.insert("defaultBackend".into(), b);
        out.notes.push("spec.backend -> spec.defaultBackend".into());
    }
    if v["spec"]["defaultBackend"].is_object() && backend(&mut v["spec"]["defaultBackend"]) {
        backends += 1;
    }
    if let Some(rules) = v["spec"]["rules"].as_array_mut() {
        for rule in rules {
            let Some(paths) = rule["http"]["paths"].as_array_mut() else {
                continue;
            };
            for p in paths {
                if backend(&mut p["backend"]) {
                    backends += 1;
                }
                if p["pathType"].is_null() {
                    p["pathType"] = "ImplementationSpecific".into();
                    path_types += 1;
                }
            }
        }
    }
    if backends > 0 {
        out.notes.push(format!(
            "{backends} backend(s): serviceName/servicePort -> service.name/service.port"
        ));
    }
    if path_types > 0 {
        out.notes.push(format!(
            "pathType: ImplementationSpecific on {path_types} path(s) that had none (the old \
             behaviour)"
        ));
    }
    let class = v["metadata"]["annotations"]
        .as_object_mut()
        .and_then(|a| a.remove("kubernetes.io/ingress.class"));
    if let Some(class) = class {
        if v["metadata"]["annotations"]
            .as_object()
            .is_some_and(Map::is_empty)
            && let Some(m) = v["metadata"].as_object_mut()
        {
            m.remove("annotations");
        }
        if v["spec"]["ingressClassName"].is_null() {
            out.notes.push(format!(
                "annotation kubernetes.io/ingress.class: {} -> spec.ingressClassName",
                class.as_str().unwrap_or_default()
            ));
            v["spec"]["ingressClassName"] = class;
        } else {
            out.notes.push(
                "removed annotation kubernetes.io/ingress.class (spec.ingressClassName is set)"
                    .into(),
            );
        }
    }
}

fn hpa(out: &mut Converted) {
    let Some(metrics) = out.value["spec"]["metrics"].as_array_mut() else {
        return;
    };
    for m in metrics {
        let kind = match m["type"].as_str() {
            Some("Resource") => "resource",
            Some("Pods") => "pods",
            Some("Object") => "object",
            Some("External") => "external",
            _ => continue,
        };
        let Some(old) = m[kind].as_object_mut() else {
            continue;
        };
        let take = |o: &mut Map<String, Value>, k: &str| o.remove(k).filter(|v| !v.is_null());
        let mut new = Map::new();
        let target = if let Some(u) = take(old, "targetAverageUtilization") {
            json!({"type": "Utilization", "averageUtilization": u})
        } else if let Some(a) =
            take(old, "targetAverageValue").or_else(|| take(old, "averageValue"))
        {
            json!({"type": "AverageValue", "averageValue": a})
        } else if let Some(t) = take(old, "targetValue") {
            json!({"type": "Value", "value": t})
        } else {
            Value::Null
        };
        if kind == "resource" {
            if let Some(n) = take(old, "name") {
                new.insert("name".into(), n);
            }
        } else {
            let mut metric = Map::new();
            if let Some(n) = take(old, "metricName") {
                metric.insert("name".into(), n);
            }
            if let Some(s) = take(old, "metricSelector").or_else(|| take(old, "selector")) {
                metric.insert("selector".into(), s);
            }
            new.insert("metric".into(), Value::Object(metric));
            if kind == "object"
                && let Some(d) = take(old, "target")
            {
                new.insert("describedObject".into(), d);
            }
        }
        if !target.is_null() {
            new.insert("target".into(), target);
        }
        // Anything else is kept as it was, for the API server to judge.
        for (k, v) in std::mem::take(old) {
            new.entry(k).or_insert(v);
        }
        m[kind] = Value::Object(new);
    }
    out.notes
        .push("metric targets rewritten to the autoscaling/v2 form".into());
}

fn object_name(v: &Value) -> String {
    format!(
        "{}/{}",
        v["kind"].as_str().unwrap_or("?"),
        v["metadata"]["name"].as_str().unwrap_or("?")
    )
}

fn report(v: &Value, source: &Source) -> Option<(Option<Value>, Report)> {
    let (value, change, converted, notes, left) = match convert_value(v)? {
        Ok(c) => {
            let change = apis::lookup(
                v["apiVersion"].as_str().unwrap_or_default(),
                v["kind"].as_str().unwrap_or_default(),
            )?;
            (Some(c.value), change, true, c.notes, c.left)
        }
        Err(change) => (None, change, false, Vec::new(), vec![change.advice()]),
    };
    Some((
        value,
        Report {
            object: object_name(v),
            source: source.clone(),
            change,
            converted,
            notes,
            left,
        },
    ))
}

/// Converts every object of `set` that [`crate::apis`] lists with a mechanical migration; the
/// reports name each object touched or left (non-mechanical cases).
pub fn convert_set(set: &ObjectSet) -> Result<(ObjectSet, Vec<Report>), RenderError> {
    let mut out = ObjectSet::new();
    let mut reports = Vec::new();
    for o in set {
        match report(o.value(), o.source()) {
            Some((value, r)) => {
                let value = value.unwrap_or_else(|| o.value().clone());
                out.insert(Object::new(value, o.source().clone())?)?;
                reports.push(r);
            }
            None => out.insert(o.clone())?,
        }
    }
    Ok((out, reports))
}

/// Converts a `kind: List` document's items, or the document itself.
fn convert_document(v: &Value, source: &Source) -> (Option<Value>, Vec<Report>) {
    if v["kind"] == "List"
        && let Some(items) = v["items"].as_array()
    {
        let mut changed = false;
        let mut reports = Vec::new();
        let mut new_items = Vec::new();
        for item in items {
            match report(item, source) {
                Some((value, r)) => {
                    changed |= value.is_some();
                    new_items.push(value.unwrap_or_else(|| item.clone()));
                    reports.push(r);
                }
                None => new_items.push(item.clone()),
            }
        }
        let mut list = v.clone();
        list["items"] = Value::Array(new_items);
        return (changed.then_some(list), reports);
    }
    match report(v, source) {
        Some((value, r)) => (value, vec![r]),
        None => (None, Vec::new()),
    }
}

/// Whether a line separates YAML documents (`---`, optionally followed by a comment).
fn is_separator(line: &str) -> bool {
    let t = line.trim_end();
    t == "---" || t.starts_with("--- #")
}

/// Rewrites the text of one plain manifest file (`origin` names it in errors and reports):
/// the new text when some document was converted, and the reports. JSON files (`json`) are
/// one document and are written back as JSON.
pub fn rewrite_file(
    text: &str,
    origin: &str,
    json: bool,
) -> Result<(Option<String>, Vec<Report>), RenderError> {
    if json {
        let v = crate::yaml::parse_json_value(text, origin)?;
        let source = Source {
            origin: origin.into(),
            line: 1,
        };
        let (new, reports) = convert_document(&v, &source);
        let text = new.map(|n| serde_json::to_string_pretty(&n).expect("JSON values print") + "\n");
        return Ok((text, reports));
    }
    let docs = crate::yaml::parse_yaml_values(text, origin)?;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    // Segment starts: line 0 and every separator line (0-based line indices).
    let mut starts: Vec<usize> = vec![0];
    starts.extend(
        lines
            .iter()
            .enumerate()
            .filter(|(i, l)| *i > 0 && is_separator(l))
            .map(|(i, _)| i),
    );
    let mut replaced: Vec<Option<String>> = vec![None; starts.len()];
    let mut reports = Vec::new();
    for (value, line) in docs {
        let source = Source {
            origin: origin.into(),
            line,
        };
        let (new, mut rs) = convert_document(&value, &source);
        reports.append(&mut rs);
        let Some(new) = new else { continue };
        let at = (line as usize).saturating_sub(1);
        let seg = starts.iter().rposition(|&s| s <= at).unwrap_or(0);
        let end = starts.get(seg + 1).copied().unwrap_or(lines.len());
        // Keep the separator and the comment lines before the document's content.
        let mut head = String::new();
        for l in &lines[starts[seg]..at.min(end)] {
            let t = l.trim();
            if is_separator(l) || t.is_empty() || t.starts_with('#') {
                head.push_str(l);
            }
        }
        if !head.is_empty() && !head.ends_with('\n') {
            head.push('\n');
        }
        replaced[seg] = Some(head + &berth_objects::yaml::to_yaml(&new));
    }
    if replaced.iter().all(Option::is_none) {
        return Ok((None, reports));
    }
    let mut out = String::new();
    for (seg, &start) in starts.iter().enumerate() {
        let end = starts.get(seg + 1).copied().unwrap_or(lines.len());
        match &replaced[seg] {
            Some(new) => out.push_str(new),
            None => lines[start..end].iter().for_each(|l| out.push_str(l)),
        }
    }
    Ok((Some(out), reports))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(yaml: &str) -> (Value, Report) {
        let v = crate::yaml::parse_yaml_values(yaml, "t.yaml")
            .unwrap()
            .remove(0)
            .0;
        let src = Source {
            origin: "t.yaml".into(),
            line: 1,
        };
        let (value, r) = report(&v, &src).expect("listed");
        (value.unwrap_or(v), r)
    }

    #[test]
    fn extensions_ingress_becomes_networking_v1() {
        let (v, r) = one(
            "apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata:\n  name: web\n  \
             annotations:\n    kubernetes.io/ingress.class: nginx\nspec:\n  backend:\n    \
             serviceName: default\n    servicePort: 8080\n  rules:\n  - host: shop.example\n    \
             http:\n      paths:\n      - path: /\n        backend:\n          serviceName: web\n          \
             servicePort: http\n      - path: /api\n        pathType: Prefix\n        backend:\n          \
             serviceName: api\n          servicePort: \"80\"\n",
        );
        assert!(r.converted && !r.needs_attention(), "{r}");
        assert_eq!(
            v,
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "web"},
            "spec": {
                "ingressClassName": "nginx",
                "defaultBackend": {"service": {"name": "default", "port": {"number": 8080}}},
                "rules": [{"host": "shop.example", "http": {"paths": [
                    {"path": "/", "pathType": "ImplementationSpecific",
                     "backend": {"service": {"name": "web", "port": {"name": "http"}}}},
                    {"path": "/api", "pathType": "Prefix",
                     "backend": {"service": {"name": "api", "port": {"number": 80}}}},
                ]}}]}})
        );
    }

    #[test]
    fn old_deployment_gets_a_selector_from_its_template_labels() {
        let (v, r) = one(
            "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  \
             rollbackTo: {revision: 1}\n  template:\n    metadata:\n      labels: {app: web}\n    \
             spec:\n      containers: [{name: web, image: nginx}]\n",
        );
        assert_eq!(v["apiVersion"], "apps/v1");
        assert_eq!(
            v["spec"]["selector"],
            json!({"matchLabels": {"app": "web"}})
        );
        assert!(v["spec"]["rollbackTo"].is_null());
        assert!(!r.needs_attention(), "{r}");
        let (_, r) = one(
            "apiVersion: apps/v1beta2\nkind: DaemonSet\nmetadata: {name: d}\nspec:\n  \
             template:\n    spec:\n      containers: [{name: a, image: b}]\n",
        );
        assert!(r.needs_attention(), "no labels, no selector: {r}");
        let (_, r) = one(
            "apiVersion: extensions/v1beta1\nkind: DaemonSet\nmetadata: {name: d}\nspec:\n  \
             template:\n    metadata: {labels: {a: b}}\n    spec:\n      containers: [{name: a, image: b}]\n",
        );
        assert!(
            r.to_string()
                .contains("defaults to RollingUpdate (it was OnDelete)"),
            "{r}"
        );
    }

    #[test]
    fn hpa_v2beta1_targets_become_v2_targets() {
        let (v, _) = one(
            "apiVersion: autoscaling/v2beta1\nkind: HorizontalPodAutoscaler\nmetadata: {name: web}\n\
             spec:\n  scaleTargetRef: {apiVersion: extensions/v1beta1, kind: Deployment, name: web}\n  \
             minReplicas: 1\n  maxReplicas: 5\n  metrics:\n  - type: Resource\n    resource: {name: cpu, \
             targetAverageUtilization: 70}\n  - type: Pods\n    pods: {metricName: rps, targetAverageValue: 10}\n  \
             - type: Object\n    object:\n      target: {apiVersion: networking.k8s.io/v1, kind: Ingress, name: web}\n      \
             metricName: hits\n      targetValue: 2k\n  - type: External\n    external:\n      metricName: queue\n      \
             metricSelector: {matchLabels: {q: jobs}}\n      targetAverageValue: 30\n",
        );
        assert_eq!(v["apiVersion"], "autoscaling/v2");
        assert_eq!(v["spec"]["scaleTargetRef"]["apiVersion"], "apps/v1");
        assert_eq!(
            v["spec"]["metrics"],
            json!([
                {"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 70}}},
                {"type": "Pods", "pods": {"metric": {"name": "rps"},
                    "target": {"type": "AverageValue", "averageValue": 10}}},
                {"type": "Object", "object": {"metric": {"name": "hits"},
                    "describedObject": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "web"},
                    "target": {"type": "Value", "value": "2k"}}},
                {"type": "External", "external": {"metric": {"name": "queue",
                    "selector": {"matchLabels": {"q": "jobs"}}},
                    "target": {"type": "AverageValue", "averageValue": 30}}},
            ])
        );
    }

    #[test]
    fn renames_and_the_empty_pdb_selector() {
        let (v, r) = one(
            "apiVersion: batch/v1beta1\nkind: CronJob\nmetadata: {name: c}\nspec: {schedule: '* * * * *'}\n",
        );
        assert_eq!(v["apiVersion"], "batch/v1");
        assert!(!r.needs_attention());
        let (v, _) = one(
            "apiVersion: autoscaling/v2beta2\nkind: HorizontalPodAutoscaler\nmetadata: {name: h}\n",
        );
        assert_eq!(v["apiVersion"], "autoscaling/v2");
        let (v, r) = one(
            "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata: {name: p}\nspec: {minAvailable: 1, selector: {}}\n",
        );
        assert_eq!(v["apiVersion"], "policy/v1");
        assert!(
            r.needs_attention() && r.to_string().contains("every pod of the namespace"),
            "{r}"
        );
    }

    #[test]
    fn pod_security_policy_is_named_not_converted() {
        let (v, r) =
            one("apiVersion: policy/v1beta1\nkind: PodSecurityPolicy\nmetadata: {name: p}\n");
        assert_eq!(v["apiVersion"], "policy/v1beta1");
        assert!(!r.converted);
        let text = r.to_string();
        assert!(
            text.contains("not converted") && text.contains("pod-security.kubernetes.io/enforce"),
            "{text}"
        );
    }

    #[test]
    fn rewrite_keeps_other_documents_byte_for_byte() {
        let text = "# my app\napiVersion: v1\nkind: Service   # keep me\nmetadata: {name: web}\n\
                    spec: {ports: [{port: 80}]}\n---\n# the old one\napiVersion: batch/v1beta1\n\
                    kind: CronJob\nmetadata: {name: c}\nspec: {schedule: '@daily'}\n---\n\
                    apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\n";
        let (new, reports) = rewrite_file(text, "k8s/all.yaml", false).unwrap();
        let new = new.unwrap();
        assert!(
            new.starts_with("# my app\napiVersion: v1\nkind: Service   # keep me\n"),
            "{new}"
        );
        assert!(
            new.contains("---\n# the old one\napiVersion: batch/v1\n"),
            "{new}"
        );
        assert!(
            new.ends_with("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\n"),
            "{new}"
        );
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].source.to_string(), "k8s/all.yaml:8");
        let again = crate::yaml::parse_yaml_values(&new, "x").unwrap();
        assert_eq!(again.len(), 3);
        assert_eq!(
            rewrite_file(&new, "k8s/all.yaml", false).unwrap().0,
            None,
            "idempotent"
        );
    }
}
