//! YAML and JSON in (YAML out is [`berth_objects::yaml::to_yaml`]).
//!
//! Parsing uses serde-saphyr with `legacy_octal_numbers` so that `mode: 0644` reads as 420, as
//! kubectl (YAML 1.1) reads it; duplicate mapping keys are errors, as in kubectl.

use berth_objects::ObjectError;
use serde_json::Value;

use crate::{Object, RenderError, Source};

fn options() -> serde_saphyr::Options {
    let mut o = serde_saphyr::Options::default();
    o.legacy_octal_numbers = true;
    o.with_snippet = false;
    o
}

/// Parses a multi-document YAML text into raw JSON values with the line where each document's
/// content starts. Empty and comment-only documents are skipped.
pub fn parse_yaml_values(text: &str, origin: &str) -> Result<Vec<(Value, u64)>, RenderError> {
    let docs: Vec<serde_saphyr::Spanned<Value>> =
        serde_saphyr::from_multiple_with_options(text, options())
            .map_err(|e| syntax_error(&e, origin))?;
    Ok(docs
        .into_iter()
        .filter(|d| !d.value.is_null())
        .map(|d| (d.value, d.referenced.line().max(1)))
        .collect())
}

fn syntax_error(e: &serde_saphyr::Error, origin: &str) -> RenderError {
    let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
    let mut message = e.without_snippet().to_string();
    // saphyr prefixes "error: line L column C: ", which we already print as file:L:C.
    if let Some(rest) = message.strip_prefix("error: ") {
        message = rest.to_string();
    }
    let prefix = format!("line {line} column {column}: ");
    if let Some(rest) = message.strip_prefix(&prefix) {
        message = rest.to_string();
    }
    RenderError::Syntax {
        origin: origin.to_string(),
        line,
        column,
        format: "YAML",
        message: message.trim().to_string(),
    }
}

/// Parses a multi-document YAML text into objects; `kind: List` documents are flattened into
/// their items (each item keeps the List's source line).
pub fn parse_yaml(text: &str, origin: &str) -> Result<Vec<Object>, RenderError> {
    let mut out = Vec::new();
    for (value, line) in parse_yaml_values(text, origin)? {
        let source = Source {
            origin: origin.to_string(),
            line,
        };
        flatten(value, &source, &mut out)?;
    }
    Ok(out)
}

/// Parses one JSON document (an object or a `kind: List`).
pub fn parse_json(text: &str, origin: &str) -> Result<Vec<Object>, RenderError> {
    let value = parse_json_value(text, origin)?;
    let mut out = Vec::new();
    let source = Source {
        origin: origin.to_string(),
        line: 1,
    };
    flatten(value, &source, &mut out)?;
    Ok(out)
}

/// The JSON value of `text`; a syntax error names `origin`, line and column.
pub(crate) fn parse_json_value(text: &str, origin: &str) -> Result<Value, RenderError> {
    serde_json::from_str(text).map_err(|e| RenderError::Syntax {
        origin: origin.to_string(),
        line: e.line() as u64,
        column: e.column() as u64,
        format: "JSON",
        message: e.to_string(),
    })
}

fn flatten(value: Value, source: &Source, out: &mut Vec<Object>) -> Result<(), RenderError> {
    let is_list = value.get("kind").and_then(Value::as_str) == Some("List")
        && value.get("apiVersion").and_then(Value::as_str) == Some("v1");
    if !is_list {
        out.push(Object::new(value, source.clone())?);
        return Ok(());
    }
    match value.get("items") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(items)) => items
            .iter()
            .try_for_each(|item| flatten(item.clone(), source, out)),
        Some(other) => Err(ObjectError::NotAnObject {
            at: source.clone(),
            problem: format!(
                "`items` of a List is a {}, not a sequence",
                berth_objects::object::type_name(other)
            ),
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_objects::yaml::to_yaml;
    use serde_json::json;

    #[test]
    fn reads_octal_like_kubectl_and_skips_empty_documents() {
        let text = "---\n# nothing\n---\n\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  mode: 0644\n  quoted: '0644'\n";
        let objects = parse_yaml(text, "c.yaml").unwrap();
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].source().to_string(), "c.yaml:6");
        assert_eq!(objects[0].value()["data"]["mode"], json!(420));
        assert_eq!(objects[0].value()["data"]["quoted"], json!("0644"));
    }

    #[test]
    fn malformed_yaml_points_at_line_and_column() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata: [1, 2\n";
        let e = parse_yaml(text, "bad.yaml").unwrap_err();
        let RenderError::Syntax { line, column, .. } = &e else {
            panic!("{e}")
        };
        assert_eq!((*line, *column), (5, 7), "{e}");
        assert!(
            e.to_string().starts_with("bad.yaml:5:7: malformed YAML: "),
            "{e}"
        );
    }

    #[test]
    fn duplicate_mapping_keys_are_errors() {
        let e = parse_yaml("a: 1\na: 2\n", "d.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("d.yaml:2:"), "{e}");
    }

    #[test]
    fn lists_are_flattened() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\n- apiVersion: v1\n  kind: List\n  items:\n  - {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n";
        let names: Vec<_> = parse_yaml(text, "l.yaml")
            .unwrap()
            .iter()
            .map(|o| o.key().name.clone())
            .collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn json_errors_have_positions() {
        let e = parse_json("{\n \"a\": }", "x.json")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("x.json:2:7: malformed JSON"), "{e}");
    }

    #[test]
    fn output_quotes_ambiguous_strings_and_sorts_keys() {
        let long = "registry.example.com/some/long/repository@sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";
        let v = json!({"b": {"z": "yes", "a": "0644"}, "a": ["on", "1e3", "null", 420, "x\ny\n"], "c": long});
        let y = to_yaml(&v);
        insta::assert_snapshot!(y, @r#"
        a:
        - "on"
        - "1e3"
        - "null"
        - 420
        - |
          x
          y
        b:
          a: "0644"
          z: "yes"
        c: registry.example.com/some/long/repository@sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae
        "#);
        let back = parse_yaml_values(&y, "roundtrip").unwrap();
        assert_eq!(back[0].0, v);
    }
}
