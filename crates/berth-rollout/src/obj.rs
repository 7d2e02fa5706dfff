//! Accessors over `serde_json::Value` objects as the Kubernetes API returns them.
//!
//! The API omits zero counters and false booleans (`omitempty`), so absence means zero/false
//! here rather than "unknown".

use serde_json::Value;

/// The value at a path of object keys.
pub(crate) fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

pub(crate) fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

pub(crate) fn int_at(v: &Value, path: &[&str]) -> Option<i64> {
    at(v, path).and_then(Value::as_i64)
}

/// A status counter: absent means 0.
pub(crate) fn count(v: &Value, path: &[&str]) -> i64 {
    int_at(v, path).unwrap_or(0)
}

pub(crate) fn flag(v: &Value, path: &[&str]) -> bool {
    at(v, path).and_then(Value::as_bool).unwrap_or(false)
}

pub(crate) fn array<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// One entry of `status.conditions`.
pub(crate) struct Condition<'a> {
    pub(crate) status: &'a str,
    pub(crate) reason: &'a str,
    pub(crate) message: &'a str,
    pub(crate) observed_generation: Option<i64>,
}

impl Condition<'_> {
    pub(crate) fn is_true(&self) -> bool {
        self.status == "True"
    }

    pub(crate) fn is_false(&self) -> bool {
        self.status == "False"
    }

    /// `reason: message`, leaving out whichever is empty.
    pub(crate) fn describe(&self) -> String {
        reason_message(self.reason, self.message)
    }
}

/// The condition of this type in `status.conditions`, if any.
pub(crate) fn condition<'a>(obj: &'a Value, type_: &str) -> Option<Condition<'a>> {
    array(obj, &["status", "conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == Some(type_))
        .map(|c| Condition {
            status: str_at(c, &["status"]).unwrap_or("Unknown"),
            reason: str_at(c, &["reason"]).unwrap_or(""),
            message: str_at(c, &["message"]).unwrap_or(""),
            observed_generation: int_at(c, &["observedGeneration"]),
        })
}

/// `reason: message`, leaving out whichever is empty, on one line.
pub(crate) fn reason_message(reason: &str, message: &str) -> String {
    let message = one_line(message);
    match (reason.is_empty(), message.is_empty()) {
        (false, false) => format!("{reason}: {message}"),
        (false, true) => reason.to_owned(),
        (true, false) => message,
        (true, true) => String::new(),
    }
}

/// Messages from the cluster (termination messages above all) can span lines and pages; an
/// event line needs one short line. A long line keeps its start and its end: Go errors wrap
/// their cause last (`failed to pull ...: failed to do request: ...: connection refused`).
pub(crate) fn one_line(s: &str) -> String {
    const HEAD: usize = 200;
    const TAIL: usize = 100;
    let line = s.trim().lines().next().unwrap_or("").trim();
    let chars = line.chars().count();
    if chars <= HEAD + TAIL {
        return line.to_owned();
    }
    let head: String = line.chars().take(HEAD).collect();
    let tail: String = line.chars().skip(chars - TAIL).collect();
    format!("{head}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_line_keeps_the_first_line_and_caps_its_length() {
        assert_eq!(one_line("  panic: boom\nstack trace\n"), "panic: boom");
        let long = "é".repeat(400);
        let cut = one_line(&long);
        assert_eq!(cut.chars().count(), 301);
        assert_eq!(cut.chars().nth(200), Some('…'));
        // The cause, last in a wrapped Go error, survives the cut.
        let pull = format!(
            "failed to pull image \"localhost:5000/hello@sha256:{}\": failed to do request: Head \"http://localhost:5000/v2/\": dial tcp [::1]:5000: connect: connection refused",
            "0".repeat(300)
        );
        assert!(
            one_line(&pull).ends_with("connect: connection refused"),
            "{}",
            one_line(&pull)
        );
        assert!(one_line(&pull).starts_with("failed to pull image"));
    }

    #[test]
    fn condition_lookup_defaults_missing_fields() {
        let obj = json!({"status": {"conditions": [{"type": "Ready"}]}});
        let c = condition(&obj, "Ready").unwrap();
        assert_eq!(c.status, "Unknown");
        assert_eq!(c.describe(), "");
        assert!(condition(&obj, "Available").is_none());
    }
}
