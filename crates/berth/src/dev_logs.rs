//! `berth dev` prints the logs of the new pods of every rebuilt service (followed by
//! [`berth_pipeline::pod_logs`]) to stdout, each line prefixed by `[pod/container]`, or as JSON
//! lines with `-o json`.

use berth_pipeline::pod_logs::LogItem;
use tokio::sync::mpsc;

/// What to print for one line.
pub fn prefixed(pod: &str, container: &str, text: &str) -> String {
    format!("[{pod}/{container}] {text}")
}

/// One line as JSON, for `-o json`: `{"event":"pod_log","pod":..,"container":..,"line":..}`.
pub fn json_line(pod: &str, container: &str, text: &str) -> String {
    serde_json::json!({"event": "pod_log", "pod": pod, "container": container, "line": text})
        .to_string()
}

/// Prints what the follower reports until it stops sending.
pub async fn print(mut items: mpsc::UnboundedReceiver<LogItem>, json: bool) {
    while let Some(item) = items.recv().await {
        match item {
            LogItem::Line {
                pod,
                container,
                text,
            } => crate::progress::print_line(&if json {
                json_line(&pod, &container, &text)
            } else {
                prefixed(&pod, &container, &text)
            }),
            LogItem::NotYet {
                pod,
                container,
                error,
            } => eprintln!("berth dev: cannot read the log of {pod}/{container} yet: {error}"),
            LogItem::GaveUp { pod, container } => {
                eprintln!("berth dev: stopped following {pod}/{container}: its log cannot be read")
            }
            LogItem::Stopped { error } => eprintln!("berth dev: not streaming pod logs: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_prefixed_or_json() {
        assert_eq!(prefixed("kids-1", "kids", "hello"), "[kids-1/kids] hello");
        let doc: serde_json::Value =
            serde_json::from_str(&json_line("kids-1", "kids", "hello")).unwrap();
        assert_eq!(doc["event"], "pod_log");
        assert_eq!(doc["line"], "hello");
    }
}
