//! Durations as written in berth.yaml: berth's one grammar (`500ms`, `30s`, `5m`, `1h30m`),
//! shared with the CLI's flags and the `berth.dev/timeout` annotation.

pub use berth_types::duration::parse as parse_duration;
