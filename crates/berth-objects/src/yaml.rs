//! Stable YAML output: mapping keys sorted (as `kubectl get -o yaml` does), so that it does
//! not depend on whether some other crate in the build turned on serde_json's
//! `preserve_order`, and two writes of the same object are byte-identical.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

/// One YAML document (without `---`), mapping keys sorted, ending with a newline.
pub fn to_yaml(value: &Value) -> String {
    let mut options = serde_saphyr::SerializerOptions::default();
    // Multi-line strings stay `|` blocks (readable diffs of config files), but long single-line
    // strings such as pinned image references are never folded over several lines.
    options.folded_wrap_chars = 1 << 30;
    let mut s = serde_saphyr::to_string_with_options(&Sorted(value), options)
        .expect("a JSON value always serializes to YAML");
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

struct Sorted<'a>(&'a Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                let mut m = s.serialize_map(Some(keys.len()))?;
                for k in keys {
                    m.serialize_entry(k, &Sorted(&map[k]))?;
                }
                m.end()
            }
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    seq.serialize_element(&Sorted(i))?;
                }
                seq.end()
            }
            other => other.serialize(s),
        }
    }
}
