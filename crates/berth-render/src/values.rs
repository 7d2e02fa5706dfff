//! Per-environment values: files merged deep (later wins) and `--set a.b=c` overrides.

use std::path::Path;

use serde_json::{Map, Value};

use crate::RenderError;

/// Merges `overlay` into `base`: mappings merge key by key, recursively; anything else
/// (scalars, sequences, null) in `overlay` replaces what `base` has.
pub fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Renders every string of `values` that holds a template marker (`{{`, `{%`, `{#`) with
/// `variables` (berth's variables and their aliases; not the other values, so no value
/// depends on the order of the others). The result of each is a string. An undefined name is
/// an error naming `origin` and the value's key path.
pub fn render_values(
    values: &Value,
    variables: &Map<String, Value>,
    origin: &str,
) -> Result<Value, RenderError> {
    fn go(
        env: &minijinja::Environment<'_>,
        ctx: &minijinja::Value,
        v: &Value,
        path: &str,
        origin: &str,
    ) -> Result<Value, RenderError> {
        Ok(match v {
            Value::String(s) if ["{{", "{%", "{#"].iter().any(|m| s.contains(m)) => {
                let rendered = env.render_str(s, ctx.clone()).map_err(|e| {
                    let mut message = e.kind().to_string();
                    if let Some(d) = e.detail() {
                        message.push_str(": ");
                        message.push_str(d);
                    }
                    RenderError::Values {
                        origin: format!("{origin}: value `{path}`"),
                        message: format!("{message} (in `{s}`)"),
                    }
                })?;
                Value::String(rendered)
            }
            Value::Object(m) => {
                let mut out = Map::new();
                for (k, v) in m {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    out.insert(k.clone(), go(env, ctx, v, &p, origin)?);
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(
                a.iter()
                    .enumerate()
                    .map(|(i, v)| go(env, ctx, v, &format!("{path}[{i}]"), origin))
                    .collect::<Result<_, _>>()?,
            ),
            other => other.clone(),
        })
    }
    let env = crate::template::engine();
    let ctx = minijinja::Value::from(minijinja::value::Serde(variables));
    go(&env, &ctx, values, "", origin)
}

/// Reads a YAML values file; it must hold one mapping (an empty file is an empty mapping).
pub fn load_values_file(path: &Path) -> Result<Value, RenderError> {
    let text = std::fs::read_to_string(path).map_err(|source| RenderError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let origin = path.display().to_string();
    let mut docs = crate::yaml::parse_yaml_values(&text, &origin)?;
    match docs.len() {
        0 => Ok(Value::Object(Map::new())),
        1 => match docs.remove(0) {
            (v @ Value::Object(_), _) => Ok(v),
            (other, line) => Err(RenderError::Values {
                origin: format!("{origin}:{line}"),
                message: format!(
                    "a values file holds a mapping, not a {}",
                    crate::object::type_name(&other)
                ),
            }),
        },
        _ => Err(RenderError::Values {
            origin,
            message: "a values file holds one document, not several".into(),
        }),
    }
}

/// Applies one `--set` override: `a.b.c=value`. The value is read as a YAML scalar (`3`, `true`,
/// `null` are typed; quote it, `'3'`, to keep a string); intermediate mappings are created.
/// A `.` inside a key is written `\.` (`podAnnotations.prometheus\.io/scrape=true`).
/// Sequence indexes are not supported: set the whole sequence in a values file.
pub fn apply_set(values: &mut Value, expr: &str) -> Result<(), RenderError> {
    let bad = |message: &str| RenderError::Values {
        origin: format!("--set {expr}"),
        message: message.into(),
    };
    let (path, raw) = expr
        .split_once('=')
        .ok_or_else(|| bad("expected `key.path=value`"))?;
    let keys = split_path(path);
    if keys.iter().any(String::is_empty) {
        return Err(bad("empty key in the path"));
    }
    let value = scalar(raw).map_err(|m| bad(&m))?;
    if !values.is_object() {
        *values = Value::Object(Map::new());
    }
    let mut slot = values;
    for key in &keys[..keys.len() - 1] {
        let map = slot.as_object_mut().expect("made a mapping above");
        let next = map
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        slot = next;
    }
    slot.as_object_mut()
        .expect("made a mapping above")
        .insert(keys[keys.len() - 1].clone(), value);
    Ok(())
}

fn split_path(path: &str) -> Vec<String> {
    let mut keys = vec![String::new()];
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'.') => {
                keys.last_mut().expect("never empty").push('.');
                chars.next();
            }
            '.' => keys.push(String::new()),
            c => keys.last_mut().expect("never empty").push(c),
        }
    }
    keys
}

fn scalar(raw: &str) -> Result<Value, String> {
    if raw.is_empty() {
        return Ok(Value::String(String::new()));
    }
    match crate::yaml::parse_yaml_values(raw, "--set") {
        Ok(docs) if docs.is_empty() => Ok(Value::Null),
        Ok(mut docs) if docs.len() == 1 => match docs.remove(0).0 {
            Value::Array(_) | Value::Object(_) => Ok(Value::String(raw.to_string())),
            v => Ok(v),
        },
        _ => Ok(Value::String(raw.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_is_deep_and_later_wins() {
        let mut base = json!({"replicas": 1, "resources": {"cpu": "100m", "memory": "64Mi"}, "hosts": ["a", "b"]});
        merge(
            &mut base,
            json!({"replicas": 3, "resources": {"cpu": "1"}, "hosts": ["c"], "extra": null}),
        );
        assert_eq!(
            base,
            json!({"replicas": 3, "resources": {"cpu": "1", "memory": "64Mi"}, "hosts": ["c"], "extra": null})
        );
    }

    #[test]
    fn set_overrides_are_typed_and_nest() {
        let mut v = json!({"image": {"tag": "old"}, "flat": 1});
        for e in [
            "image.tag=v2",
            "replicas=3",
            "debug=true",
            "version='3'",
            "flat.now.deep=x",
            r"podAnnotations.prometheus\.io/scrape=true",
            "empty=",
            "url=http://x/?a=b",
        ] {
            apply_set(&mut v, e).unwrap();
        }
        assert_eq!(
            v,
            json!({"image": {"tag": "v2"}, "replicas": 3, "debug": true, "version": "3",
                "flat": {"now": {"deep": "x"}}, "podAnnotations": {"prometheus.io/scrape": true},
                "empty": "", "url": "http://x/?a=b"})
        );
    }

    #[test]
    fn set_errors_name_the_expression() {
        let mut v = json!({});
        let e = apply_set(&mut v, "novalue").unwrap_err().to_string();
        assert!(e.starts_with("--set novalue: invalid values"), "{e}");
        assert!(apply_set(&mut v, "a..b=1").is_err());
    }
}
