//! Objects, their identity and where they came from; the [`ObjectSet`] that holds them.

use std::collections::HashMap;
use std::fmt;

use serde_json::Value;

use crate::ObjectError;
use crate::order::Phase;

/// Where a document came from: a file path (or a tool's command line) and the line on which the
/// document's content starts (1-based; for tool output, the line in the tool's output).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Source {
    /// A file path, `<file> (rendered)` for templates, or the command whose output was parsed.
    pub origin: String,
    /// 1-based line of the document start.
    pub line: u64,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.origin, self.line)
    }
}

/// The identity of an object in a cluster: API group (empty for the core group), kind,
/// namespace (`None` when not set or cluster-scoped) and name.
///
/// The version is not part of the identity: `apps/v1` and `apps/v1beta2` Deployments named
/// alike are the same object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// API group, `""` for the core group.
    pub group: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Namespace, `None` if the object has none (yet).
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
}

impl ObjectKey {
    /// `kind.group` (or just `kind` for the core group), the way kubectl names resources.
    pub fn group_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.group_kind(), ns, self.name),
            None => write!(f, "{} {}", self.group_kind(), self.name),
        }
    }
}

/// The API group of an `apiVersion` (`apps/v1` -> `apps`, `v1` -> ``).
pub fn api_group(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// One Kubernetes object: its JSON value, identity and source.
///
/// An `Object` always has a string `apiVersion`, `kind` and `metadata.name`; its key is derived
/// from the value and kept in sync by every method that changes the value.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    value: Value,
    key: ObjectKey,
    source: Source,
}

impl Object {
    /// Checks that `value` is a Kubernetes object and wraps it.
    pub fn new(value: Value, source: Source) -> Result<Object, ObjectError> {
        let key = key_of(&value).map_err(|problem| ObjectError::NotAnObject {
            at: source.clone(),
            problem,
        })?;
        Ok(Object { value, key, source })
    }

    /// The object's identity.
    pub fn key(&self) -> &ObjectKey {
        &self.key
    }

    /// Where the object was defined.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The object as JSON.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The object's `apiVersion`.
    pub fn api_version(&self) -> &str {
        self.value["apiVersion"].as_str().unwrap_or_default()
    }

    /// The apply phase of this object's kind.
    pub fn phase(&self) -> Phase {
        Phase::of(&self.key.group, &self.key.kind)
    }

    /// Where the object was defined, to refine it (e.g. with Helm's `# Source:` comment).
    pub fn source_mut(&mut self) -> &mut Source {
        &mut self.source
    }

    /// Takes the JSON value out.
    pub fn into_value(self) -> Value {
        self.value
    }

    /// Changes the value through `f` and recomputes the key.
    ///
    /// # Panics
    ///
    /// If `f` leaves no Kubernetes object (removes `apiVersion`, `kind` or `metadata.name`):
    /// berth's own transformations (image pins, ownership labels) never remove those fields.
    pub fn modify<T>(&mut self, f: impl FnOnce(&mut Value) -> T) -> T {
        let out = f(&mut self.value);
        self.key = key_of(&self.value).expect("a modified object is still an object");
        out
    }
}

fn key_of(value: &Value) -> Result<ObjectKey, String> {
    let Value::Object(map) = value else {
        return Err(format!(
            "the document is a {}, not a mapping",
            type_name(value)
        ));
    };
    let field = |name: &str| match map.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) | None => Err(format!("`{name}` is missing")),
        Some(other) => Err(format!("`{name}` is a {}, not a string", type_name(other))),
    };
    let api_version = field("apiVersion")?;
    let kind = field("kind")?;
    let metadata = map
        .get("metadata")
        .and_then(Value::as_object)
        .ok_or_else(|| "`metadata` is missing".to_string())?;
    let name = match metadata.get("name") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ if metadata.contains_key("generateName") => {
            return Err("`metadata.generateName` cannot be applied; set `metadata.name`".into());
        }
        _ => return Err("`metadata.name` is missing".into()),
    };
    let namespace = match metadata.get("namespace") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(format!(
                "`metadata.namespace` is a {}, not a string",
                type_name(other)
            ));
        }
    };
    Ok(ObjectKey {
        group: api_group(&api_version).to_string(),
        kind,
        namespace,
        name,
    })
}

/// How a JSON value's type is called in YAML terms (`mapping`, `sequence`, ...), for messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "sequence",
        Value::Object(_) => "mapping",
    }
}

/// An ordered set of Kubernetes objects, at most one per [`ObjectKey`].
///
/// Iteration follows insertion (source) order; [`ObjectSet::sorted`] and [`ObjectSet::to_yaml`]
/// use the stable deploy order (phase, kind, group, namespace, name).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObjectSet {
    objects: Vec<Object>,
    index: HashMap<ObjectKey, usize>,
}

impl ObjectSet {
    /// An empty set.
    pub fn new() -> ObjectSet {
        ObjectSet::default()
    }

    /// Adds an object; an object with the same key already in the set is an error naming both
    /// sources.
    pub fn insert(&mut self, object: Object) -> Result<(), ObjectError> {
        if let Some(&i) = self.index.get(object.key()) {
            return Err(ObjectError::Duplicate {
                key: Box::new(object.key.clone()),
                first: self.objects[i].source.clone(),
                second: object.source,
            });
        }
        self.index.insert(object.key.clone(), self.objects.len());
        self.objects.push(object);
        Ok(())
    }

    /// Adds every object of `objects`, in order.
    pub fn extend(&mut self, objects: impl IntoIterator<Item = Object>) -> Result<(), ObjectError> {
        objects.into_iter().try_for_each(|o| self.insert(o))
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// The object with this key.
    pub fn get(&self, key: &ObjectKey) -> Option<&Object> {
        self.index.get(key).map(|&i| &self.objects[i])
    }

    /// Objects in insertion order.
    pub fn iter(&self) -> std::slice::Iter<'_, Object> {
        self.objects.iter()
    }

    /// Objects in the stable output order: phase, kind, group, namespace, name.
    pub fn sorted(&self) -> Vec<&Object> {
        let mut v: Vec<&Object> = self.objects.iter().collect();
        v.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
        v
    }

    /// Takes the objects out, in insertion order.
    pub fn into_objects(self) -> Vec<Object> {
        self.objects
    }

    /// Changes every object through `f`, then re-indexes (a changed namespace may now collide).
    /// On error the set is left as it was.
    pub fn modify_all<E: From<ObjectError>>(
        &mut self,
        mut f: impl FnMut(&mut Object) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut objects = self.objects.clone();
        objects.iter_mut().try_for_each(&mut f)?;
        let mut set = ObjectSet::new();
        set.extend(objects)?;
        *self = set;
        Ok(())
    }

    /// The final YAML: one document per object in the stable order (see [`ObjectSet::sorted`]),
    /// mapping keys sorted, each document preceded by a `# Source:` comment. Two renders of the
    /// same input print the same bytes, so `berth render` output diffs well.
    ///
    /// Secrets are printed as they are: this is the user's own input. Use
    /// [`ObjectSet::redacted`] before showing a set anywhere else (diffs, logs).
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        for o in self.sorted() {
            out.push_str("---\n");
            out.push_str(&format!("# Source: {}\n", o.source));
            out.push_str(&crate::yaml::to_yaml(&o.value));
        }
        out
    }
}

impl<'a> IntoIterator for &'a ObjectSet {
    type Item = &'a Object;
    type IntoIter = std::slice::Iter<'a, Object>;
    fn into_iter(self) -> Self::IntoIter {
        self.objects.iter()
    }
}

fn sort_key(o: &Object) -> (Phase, &str, &str, Option<&str>, &str) {
    (
        o.phase(),
        &o.key.kind,
        &o.key.group,
        o.key.namespace.as_deref(),
        &o.key.name,
    )
}

/// The annotation `kubectl apply` (client-side) writes: the whole object as last applied,
/// which for a Secret holds every value.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Replaces a Secret's [`LAST_APPLIED_ANNOTATION`] with `<redacted>` (it copies the values).
pub fn redact_last_applied(secret: &mut Value) {
    if let Some(Value::Object(a)) = secret
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        && let Some(v) = a.get_mut(LAST_APPLIED_ANNOTATION)
    {
        *v = Value::String("<redacted>".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn last_applied_annotation_of_a_secret_is_redacted() {
        let mut s = json!({"kind": "Secret", "metadata": {"name": "db", "annotations": {
            LAST_APPLIED_ANNOTATION: "{\"stringData\":{\"password\":\"hunter2\"}}",
            "other": "kept"}}, "stringData": {"password": "hunter2"}});
        redact_last_applied(&mut s);
        let annotations = s["metadata"]["annotations"].to_string();
        assert!(!annotations.contains("hunter2"), "{annotations}");
        assert_eq!(s["metadata"]["annotations"]["other"], "kept");
    }

    fn src(line: u64) -> Source {
        Source {
            origin: "a.yaml".into(),
            line,
        }
    }

    #[test]
    fn key_ignores_version_and_names_group() {
        let o = Object::new(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "dev"}}),
            src(1),
        )
        .unwrap();
        assert_eq!(o.key().to_string(), "Deployment.apps dev/web");
        let o = Object::new(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
            src(1),
        )
        .unwrap();
        assert_eq!(o.key().to_string(), "ConfigMap c");
    }

    #[test]
    fn incomplete_documents_are_rejected_with_their_line() {
        for (doc, problem) in [
            (
                json!({"kind": "ConfigMap", "metadata": {"name": "c"}}),
                "`apiVersion` is missing",
            ),
            (
                json!({"apiVersion": "v1", "metadata": {"name": "c"}}),
                "`kind` is missing",
            ),
            (
                json!({"apiVersion": "v1", "kind": "ConfigMap"}),
                "`metadata` is missing",
            ),
            (
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}),
                "`metadata.name` is missing",
            ),
            (
                json!({"apiVersion": 1, "kind": "ConfigMap", "metadata": {}}),
                "`apiVersion` is a number",
            ),
            (json!(["a"]), "sequence, not a mapping"),
        ] {
            let e = Object::new(doc, src(7)).unwrap_err().to_string();
            assert!(e.starts_with("a.yaml:7: not a Kubernetes object"), "{e}");
            assert!(e.contains(problem), "{e}");
        }
    }

    #[test]
    fn duplicate_names_both_sources() {
        let mut set = ObjectSet::new();
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        set.insert(Object::new(cm.clone(), src(1)).unwrap())
            .unwrap();
        let e = set
            .insert(
                Object::new(
                    cm,
                    Source {
                        origin: "b.yaml".into(),
                        line: 9,
                    },
                )
                .unwrap(),
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("ConfigMap c is defined twice: at a.yaml:1 and at b.yaml:9"),
            "{e}"
        );
    }
}
