//! A canary release, as berth.yaml's `environments[].strategy.canary` describes it once
//! checked: steps that move traffic to the new revision a share at a time, pauses, and checks
//! that can stop it. berth-config builds it, berth-deploy runs it.

use std::time::Duration;

/// The annotation on a paused canary Deployment naming the step it waits at (`3`).
pub const PAUSED_ANNOTATION: &str = "berth.dev/paused-at";
/// The annotation `berth promote --resume` writes on a paused canary Deployment: the step it
/// lets go on (the same number as [`PAUSED_ANNOTATION`]'s), or `abort`.
pub const RESUME_ANNOTATION: &str = "berth.dev/resume";
/// The label on a canary Deployment and its pods (`canary`), beside the release's labels.
pub const TRACK_LABEL: &str = "berth.dev/track";

/// Where a canary release stands, as [`crate::Event::Canary`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CanaryState {
    /// A weight step is reached: its pods are ready.
    Weight,
    /// A timed pause began.
    Waiting,
    /// Waiting for `berth promote --resume` (a manual pause or an inconclusive check).
    Paused,
    /// A pause was answered: the canary goes on.
    Resumed,
    /// A check's measurement passed.
    Checked,
    /// A check's measurement failed (the check fails once beyond its failure limit).
    CheckFailed,
    /// A check's measurement had no data and counts as neither.
    Inconclusive,
    /// Every step passed: the whole revision moves.
    Promoted,
    /// Stopped by a check, a pause's timeout or a person; the previous revision restored.
    Aborted,
    /// A canary pod failed (restarted, not ready): rolled back as any failed rollout.
    Failed,
}

impl CanaryState {
    /// How it is shown: a warning when it stops or holds the release, else info.
    pub fn level(self) -> crate::Level {
        match self {
            CanaryState::CheckFailed
            | CanaryState::Inconclusive
            | CanaryState::Paused
            | CanaryState::Aborted
            | CanaryState::Failed => crate::Level::Warning,
            _ => crate::Level::Info,
        }
    }

    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            CanaryState::Weight => "weight",
            CanaryState::Waiting => "waiting",
            CanaryState::Paused => "paused",
            CanaryState::Resumed => "resumed",
            CanaryState::Checked => "checked",
            CanaryState::CheckFailed => "check-failed",
            CanaryState::Inconclusive => "inconclusive",
            CanaryState::Promoted => "promoted",
            CanaryState::Aborted => "aborted",
            CanaryState::Failed => "failed",
        }
    }
}

impl std::fmt::Display for CanaryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// The checked strategy.
#[derive(Clone, Debug, PartialEq)]
pub struct Canary {
    /// The steps, in order. The release is promoted (every pod of the new revision) after the
    /// last one, whatever its weight.
    pub steps: Vec<CanaryStep>,
    /// How long a manual pause (or an inconclusive check) waits for `berth promote --resume`
    /// before the release is aborted.
    pub pause_timeout: Duration,
}

/// One step.
#[derive(Clone, Debug, PartialEq)]
pub enum CanaryStep {
    /// Run this percentage (1-100) of the pods from the new revision.
    Weight(u8),
    /// Wait this long, or (`None`) until `berth promote --resume`.
    Pause(Option<Duration>),
    /// Run these checks; any failure aborts the release.
    Check(Vec<Check>),
}

/// One check of the canary pods.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// What is measured.
    pub kind: CheckKind,
    /// The length of one measurement.
    pub interval: Duration,
    /// How many measurements the check takes.
    pub count: u32,
    /// How many failed measurements are tolerated before the release is aborted.
    pub failure_limit: u32,
    /// What a measurement with nothing to measure means.
    pub no_data: NoData,
}

/// What is measured.
#[derive(Clone, Debug, PartialEq)]
pub enum CheckKind {
    /// Log lines of the canary pods matching `pattern` (a regular expression) in one interval;
    /// more than `max` fails the measurement.
    Logs {
        /// The regular expression, as written.
        pattern: String,
        /// The most matching lines one interval may hold.
        max: u64,
    },
    /// One GET of `url` from where berth runs: the answer must have `status`, a body matching
    /// `body` (a regular expression) and come within `latency`.
    Http {
        /// The URL.
        url: String,
        /// The status wanted.
        status: u16,
        /// A regular expression the body must match.
        body: Option<String>,
        /// The slowest answer allowed.
        latency: Option<Duration>,
    },
    /// A Job in the cluster running `command` (with `sh -c`) in the new revision's image, with
    /// its environment: exit 0 passes.
    Job {
        /// The command.
        command: String,
    },
}

/// What a measurement with no data (the canary pods wrote no log line in the interval) means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NoData {
    /// Neither pass nor fail: the release pauses as at a manual pause (the default, since a
    /// canary nobody sent traffic to has proven nothing).
    #[default]
    Inconclusive,
    /// The measurement passes.
    Pass,
    /// The measurement fails.
    Fail,
}

impl NoData {
    /// The names berth.yaml uses.
    pub const NAMES: [&'static str; 3] = ["inconclusive", "pass", "fail"];

    /// Parses one of [`NoData::NAMES`].
    pub fn parse(s: &str) -> Option<NoData> {
        match s {
            "inconclusive" => Some(NoData::Inconclusive),
            "pass" => Some(NoData::Pass),
            "fail" => Some(NoData::Fail),
            _ => None,
        }
    }
}

impl CheckKind {
    /// How the check is named in messages: `logs /ERROR/ (at most 0 per 30s)`.
    pub fn describe(&self, interval: Duration) -> String {
        match self {
            CheckKind::Logs { pattern, max } => format!(
                "logs /{pattern}/ (at most {max} per {})",
                crate::duration::human(interval)
            ),
            CheckKind::Http { url, status, .. } => {
                format!(
                    "http {} (status {status})",
                    crate::SafeUrl::new(url.clone())
                )
            }
            CheckKind::Job { command } => {
                let short: String = command.chars().take(60).collect();
                format!("job `{short}`")
            }
        }
    }
}

/// The canary's share of `total` pods at `weight` percent: rounded up, at least one, at most
/// all of them.
pub fn canary_pods(total: u32, weight: u8) -> u32 {
    let w = u32::from(weight.min(100));
    if total == 0 || w == 0 {
        return 0;
    }
    (total * w).div_ceil(100).clamp(1, total)
}

/// The canary pods beside `stable` pods that keep their number (an autoscaler owns it) for a
/// canary share of `weight` percent: `ceil(stable * w / (100 - w))`, at least one, at most
/// `stable` (so a weight above 50 runs as 50 %).
pub fn canary_pods_beside(stable: u32, weight: u8) -> u32 {
    let w = u32::from(weight.min(100));
    if stable == 0 || w == 0 {
        return 0;
    }
    if w >= 50 {
        return stable;
    }
    (stable * w).div_ceil(100 - w).clamp(1, stable)
}

#[cfg(test)]
mod tests {
    use super::{canary_pods, canary_pods_beside};

    #[test]
    fn beside_autoscaled_pods_the_canary_adds_its_share_up_to_half() {
        assert_eq!(canary_pods_beside(4, 20), 1, "1 of 5 pods is 20 %");
        assert_eq!(canary_pods_beside(4, 25), 2, "rounded up: 2 of 6");
        assert_eq!(canary_pods_beside(2, 10), 1, "one pod at least");
        assert_eq!(canary_pods_beside(3, 50), 3);
        assert_eq!(
            canary_pods_beside(3, 80),
            3,
            "at most as many as the stable pods"
        );
        assert_eq!(canary_pods_beside(0, 20), 0);
    }

    #[test]
    fn the_canary_share_rounds_up_and_keeps_one_pod_of_each() {
        assert_eq!(canary_pods(5, 20), 1);
        assert_eq!(canary_pods(5, 50), 3);
        assert_eq!(canary_pods(5, 100), 5);
        assert_eq!(
            canary_pods(10, 1),
            1,
            "a weight above zero runs one pod at least"
        );
        assert_eq!(canary_pods(1, 20), 1);
        assert_eq!(canary_pods(0, 50), 0);
    }
}
