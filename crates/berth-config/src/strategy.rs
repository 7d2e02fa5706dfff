//! `environments[].strategy`: how a new revision reaches its users.
//!
//! ```yaml
//! environments:
//!   - name: production
//!     namespace: shop
//!     strategy:
//!       canary:
//!         pause-timeout: 1h
//!         steps:
//!           - weight: 20
//!           - check:
//!               - logs: { pattern: "ERROR|panic", max: 0 }
//!                 interval: 30s
//!                 count: 2
//!           - weight: 50
//!           - pause: manual
//!           - weight: 100
//! ```

use std::time::Duration;

use berth_types::canary::{Canary, CanaryStep, Check, CheckKind, NoData};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::suggest::suggest;
use crate::validate::Checker;
use crate::{Location, Problem};

/// How long a manual pause waits by default.
pub const DEFAULT_PAUSE_TIMEOUT: Duration = Duration::from_secs(3600);
/// A check's interval by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

/// How a new revision reaches its users.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "Strategy")]
pub(crate) struct RawStrategy {
    /// Move a share of the pods at a time to the new revision, with pauses and checks between.
    /// Without it, every pod moves at once (the Deployment's rolling update).
    #[schemars(with = "Option<RawCanary>")]
    #[schemars(example = serde_json::json!({"steps": [{"weight": 20}, {"check": [{"logs": {"pattern": "ERROR"}}]}, {"weight": 100}], "pause-timeout": "1h"}))]
    pub canary: Option<Spanned<RawCanary>>,
}

/// A canary release.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "Canary")]
pub(crate) struct RawCanary {
    /// The steps, in order; after the last one every pod runs the new revision.
    #[schemars(with = "Vec<RawStep>")]
    #[schemars(example = serde_json::json!([{"weight": 20}, {"pause": "2m"}, {"check": [{"logs": {"pattern": "ERROR", "max": 0}}]}, {"weight": 50}, {"pause": "manual"}, {"weight": 100}]))]
    pub steps: Spanned<Vec<Spanned<RawStep>>>,
    /// How long a manual pause (or an inconclusive check) waits for `berth promote --resume`
    /// before the release is aborted. Default: 1h.
    #[schemars(with = "Option<String>")]
    #[schemars(example = serde_json::json!("30m"))]
    #[schemars(extend("x-wrong" = "forever"))]
    pub pause_timeout: Option<Spanned<String>>,
}

/// One step: exactly one of `weight`, `pause` and `check`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "CanaryStep")]
pub(crate) struct RawStep {
    /// The percentage of pods running the new revision (1-100), each step above the last.
    #[schemars(with = "Option<u64>")]
    #[schemars(example = serde_json::json!(20))]
    #[schemars(extend("x-wrong" = "150"))]
    pub weight: Option<Spanned<u64>>,
    /// A duration to wait, or `manual` to wait for `berth promote --resume`.
    #[schemars(with = "Option<String>")]
    #[schemars(example = serde_json::json!("manual"))]
    #[schemars(extend("x-wrong" = "until monday"))]
    pub pause: Option<Spanned<String>>,
    /// Checks of the canary pods; any failure aborts the release.
    #[schemars(with = "Option<Vec<RawCheck>>")]
    #[schemars(example = serde_json::json!([{"logs": {"pattern": "ERROR", "max": 0}, "interval": "30s", "count": 2}]))]
    pub check: Option<Vec<Spanned<RawCheck>>>,
}

/// One check.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "CanaryCheck")]
pub(crate) struct RawCheck {
    /// Count log lines of the canary pods matching `pattern` (a regular expression) in each
    /// interval; more than `max` (default 0) fails that interval.
    #[schemars(with = "Option<RawLogs>")]
    #[schemars(example = serde_json::json!({"pattern": "ERROR|panic", "max": 0}))]
    pub logs: Option<Spanned<RawLogs>>,
    /// GET a URL from where berth runs, each interval: the status (default 200), optionally
    /// a body matching `body` and an answer within `latency`. Not on `berth serve`.
    #[schemars(with = "Option<RawHttp>")]
    #[schemars(example = serde_json::json!({"url": "https://canary.shop.example.com/healthz", "status": 200, "latency": "500ms"}))]
    pub http: Option<Spanned<RawHttp>>,
    /// Run a command (`sh -c`) as a Job in the new revision's image, with its environment,
    /// each interval: exit 0 passes.
    #[schemars(with = "Option<RawJob>")]
    #[schemars(example = serde_json::json!({"command": "wget -qO- http://web/healthz | grep -q ok"}))]
    pub job: Option<Spanned<RawJob>>,
    /// The length of one measurement. Default: 30s.
    #[schemars(with = "Option<String>")]
    #[schemars(example = serde_json::json!("1m"))]
    pub interval: Option<Spanned<String>>,
    /// How many measurements. Default: 1.
    #[schemars(example = serde_json::json!(3))]
    pub count: Option<u32>,
    /// How many failed measurements are tolerated. Default: 0.
    #[schemars(example = serde_json::json!(1))]
    pub failure_limit: Option<u32>,
    /// What an interval in which the canary pods wrote no log line means: `inconclusive`
    /// (default: the release pauses as at `pause: manual`), `pass` or `fail`.
    #[schemars(with = "Option<String>")]
    #[schemars(example = serde_json::json!("pass"))]
    #[schemars(extend("x-wrong" = "ignore"))]
    pub no_data: Option<Spanned<String>>,
}

/// An HTTP check.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "HttpCheck")]
pub(crate) struct RawHttp {
    /// The URL (http or https).
    #[schemars(with = "String")]
    #[schemars(example = serde_json::json!("https://canary.shop.example.com/healthz"))]
    #[schemars(extend("x-wrong" = "canary.shop.example.com"))]
    pub url: Spanned<String>,
    /// The status wanted. Default: 200.
    #[schemars(with = "Option<u16>")]
    #[schemars(example = serde_json::json!(204))]
    #[schemars(extend("x-wrong" = "99"))]
    pub status: Option<Spanned<u16>>,
    /// A regular expression the body must match.
    #[schemars(with = "Option<String>")]
    #[schemars(example = serde_json::json!("\"status\": *\"ok\""))]
    #[schemars(extend("x-wrong" = "ok("))]
    pub body: Option<Spanned<String>>,
    /// The slowest answer allowed.
    #[schemars(with = "Option<String>")]
    #[schemars(example = serde_json::json!("500ms"))]
    #[schemars(extend("x-wrong" = "fast"))]
    pub latency: Option<Spanned<String>>,
}

/// A Job check.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "JobCheck")]
pub(crate) struct RawJob {
    /// The command, run with `sh -c` in the new revision's image.
    #[schemars(example = serde_json::json!("bin/smoke-test"))]
    pub command: String,
}

/// A log check.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "LogsCheck")]
pub(crate) struct RawLogs {
    /// A regular expression matched against each log line.
    #[schemars(with = "String")]
    #[schemars(example = serde_json::json!("ERROR|panic"))]
    #[schemars(extend("x-wrong" = "ERROR("))]
    pub pattern: Spanned<String>,
    /// The most matching lines one interval may hold. Default: 0.
    #[schemars(example = serde_json::json!(0))]
    pub max: Option<u64>,
}

impl Checker<'_> {
    /// Checks `strategy`.
    pub(crate) fn strategy(&mut self, raw: RawStrategy) -> Option<Canary> {
        let raw = raw.canary?;
        let at = Location::of(&raw);
        let raw = raw.value;
        let pause_timeout = match &raw.pause_timeout {
            None => DEFAULT_PAUSE_TIMEOUT,
            Some(t) => self.duration(t).unwrap_or(DEFAULT_PAUSE_TIMEOUT),
        };
        if raw.steps.value.is_empty() {
            self.report(at, Problem::CanarySteps);
            return None;
        }
        let mut steps = Vec::new();
        let mut before = 0u64;
        for s in raw.steps.value {
            let s_at = Location::of(&s);
            let s = s.value;
            match (s.weight, s.pause, s.check) {
                (Some(w), None, None) => {
                    if w.value == 0 || w.value > 100 || w.value <= before {
                        self.report(
                            Location::of(&w),
                            Problem::CanaryWeight {
                                value: w.value,
                                before,
                            },
                        );
                    } else {
                        before = w.value;
                        steps.push(CanaryStep::Weight(w.value as u8));
                    }
                }
                (None, Some(p), None) => {
                    if p.value == "manual" {
                        steps.push(CanaryStep::Pause(None));
                    } else if let Some(d) = self.duration(&p) {
                        steps.push(CanaryStep::Pause(Some(d)));
                    }
                }
                (None, None, Some(checks)) => {
                    let checks: Vec<Check> =
                        checks.into_iter().filter_map(|c| self.check(c)).collect();
                    steps.push(CanaryStep::Check(checks));
                }
                _ => self.report(s_at, Problem::CanaryStep),
            }
        }
        Some(Canary {
            steps,
            pause_timeout,
        })
    }

    fn check(&mut self, raw: Spanned<RawCheck>) -> Option<Check> {
        let at = Location::of(&raw);
        let raw = raw.value;
        let interval = match &raw.interval {
            None => DEFAULT_INTERVAL,
            Some(t) => self.duration(t)?,
        };
        let no_data = match &raw.no_data {
            None => NoData::default(),
            Some(n) => match NoData::parse(&n.value) {
                Some(n) => n,
                None => {
                    self.report(
                        Location::of(n),
                        Problem::UnknownValue {
                            value: n.value.clone(),
                            expected: NoData::NAMES.iter().map(|s| s.to_string()).collect(),
                            suggestion: suggest(&n.value, NoData::NAMES.iter().copied()),
                        },
                    );
                    return None;
                }
            },
        };
        let regex = |this: &mut Self, p: &Spanned<String>| match regex_lite::Regex::new(&p.value) {
            Ok(_) => Some(p.value.clone()),
            Err(e) => {
                this.report(
                    Location::of(p),
                    Problem::InvalidRegex {
                        pattern: p.value.clone(),
                        reason: e.to_string(),
                    },
                );
                None
            }
        };
        let kind = match (raw.logs, raw.http, raw.job) {
            (Some(logs), None, None) => CheckKind::Logs {
                pattern: regex(self, &logs.value.pattern)?,
                max: logs.value.max.unwrap_or(0),
            },
            (None, Some(http), None) => {
                let h = http.value;
                let u = &h.url.value;
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    self.report(Location::of(&h.url), Problem::InvalidUrl);
                    return None;
                }
                let status = match &h.status {
                    Some(s) if !(100..=599).contains(&s.value) => {
                        self.report(
                            Location::of(s),
                            Problem::UnknownValue {
                                value: s.value.to_string(),
                                expected: vec!["an HTTP status, 100 to 599".into()],
                                suggestion: None,
                            },
                        );
                        return None;
                    }
                    Some(s) => s.value,
                    None => 200,
                };
                let body = match &h.body {
                    Some(b) => Some(regex(self, b)?),
                    None => None,
                };
                let latency = match &h.latency {
                    Some(l) => Some(self.duration(l)?),
                    None => None,
                };
                CheckKind::Http {
                    url: u.clone(),
                    status,
                    body,
                    latency,
                }
            }
            (None, None, Some(job)) => CheckKind::Job {
                command: job.value.command,
            },
            _ => {
                self.report(at, Problem::CheckKind);
                return None;
            }
        };
        Some(Check {
            kind,
            interval,
            count: raw.count.unwrap_or(1).max(1),
            failure_limit: raw.failure_limit.unwrap_or(0),
            no_data,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use berth_types::canary::{CanaryStep, CheckKind, NoData};

    use crate::{Problem, parse};

    const HEAD: &str = "services:\n  - name: web\n    image: registry.example.com/web:1\nenvironments:\n  - name: production\n    namespace: prod\n";

    #[test]
    fn steps_parse_in_order_with_their_defaults() {
        let yaml = format!(
            "{HEAD}    strategy:\n      canary:\n        steps:\n          - weight: 20\n          - check:\n              - logs: {{ pattern: \"ERROR|panic\" }}\n                no-data: pass\n          - pause: 90s\n          - weight: 50\n          - pause: manual\n"
        );
        let config = parse(&yaml, "berth.yaml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
        let c = config.environments[0].canary.as_ref().expect("a canary");
        assert_eq!(c.pause_timeout, Duration::from_secs(3600));
        assert_eq!(c.steps.len(), 5);
        assert_eq!(c.steps[0], CanaryStep::Weight(20));
        let CanaryStep::Check(checks) = &c.steps[1] else {
            panic!("{:?}", c.steps[1]);
        };
        assert_eq!(
            checks[0].kind,
            CheckKind::Logs {
                pattern: "ERROR|panic".into(),
                max: 0
            }
        );
        assert_eq!(checks[0].interval, Duration::from_secs(30));
        assert_eq!((checks[0].count, checks[0].failure_limit), (1, 0));
        assert_eq!(checks[0].no_data, NoData::Pass);
        assert_eq!(c.steps[2], CanaryStep::Pause(Some(Duration::from_secs(90))));
        assert_eq!(c.steps[4], CanaryStep::Pause(None));
    }

    #[test]
    fn http_and_job_checks_parse_and_a_check_has_one_kind() {
        let yaml = format!(
            "{HEAD}    strategy:\n      canary:\n        steps:\n          - check:\n              - http: {{ url: \"https://canary.example.com/healthz\", latency: 300ms }}\n              - job: {{ command: bin/smoke }}\n                interval: 1m\n"
        );
        let config = parse(&yaml, "berth.yaml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
        let c = config.environments[0].canary.as_ref().unwrap();
        let CanaryStep::Check(checks) = &c.steps[0] else {
            panic!("{c:?}");
        };
        assert_eq!(
            checks[0].kind,
            CheckKind::Http {
                url: "https://canary.example.com/healthz".into(),
                status: 200,
                body: None,
                latency: Some(Duration::from_millis(300)),
            }
        );
        assert_eq!(
            checks[1].kind,
            CheckKind::Job {
                command: "bin/smoke".into()
            }
        );
        let all = crate::tests::errors(&format!(
            "{HEAD}    strategy:\n      canary:\n        steps:\n          - check:\n              - http: {{ url: canary.example.com }}\n              - logs: {{ pattern: x }}\n                job: {{ command: y }}\n"
        ));
        let got: Vec<(u32, &Problem)> = all.iter().map(|(l, p, _)| (l.line, p)).collect();
        assert!(got.contains(&(11, &Problem::InvalidUrl)), "{all:#?}");
        assert!(got.contains(&(12, &Problem::CheckKind)), "{all:#?}");
    }

    #[test]
    fn each_wrong_step_is_reported_at_its_line() {
        let all = crate::tests::errors(&format!(
            "{HEAD}    strategy:\n      canary:\n        steps:\n          - weight: 50\n          - weight: 20\n          - {{ weight: 60, pause: 1m }}\n          - pause: someday\n          - check:\n              - interval: 10s\n              - logs: {{ pattern: \"ERROR(\" }}\n              - logs: {{ pattern: x }}\n                no-data: ignore\n"
        ));
        let got: Vec<(u32, &Problem)> = all.iter().map(|(l, p, _)| (l.line, p)).collect();
        assert!(
            got.contains(&(
                11,
                &Problem::CanaryWeight {
                    value: 20,
                    before: 50
                }
            )),
            "{all:#?}"
        );
        assert!(got.contains(&(12, &Problem::CanaryStep)), "{all:#?}");
        assert!(
            matches!(
                got.iter().find(|(l, _)| *l == 13),
                Some((_, Problem::InvalidDuration { .. }))
            ),
            "{all:#?}"
        );
        assert!(got.contains(&(15, &Problem::CheckKind)), "{all:#?}");
        assert!(
            matches!(
                got.iter().find(|(l, _)| *l == 16),
                Some((_, Problem::InvalidRegex { .. }))
            ),
            "{all:#?}"
        );
        assert!(
            all.iter()
                .any(|(l, _, m)| l.line == 18 && m.contains("inconclusive, pass, fail")),
            "{all:#?}"
        );
        let empty = crate::tests::errors(&format!(
            "{HEAD}    strategy:\n      canary:\n        steps: []\n"
        ));
        assert!(
            empty.iter().any(|(_, p, _)| *p == Problem::CanarySteps),
            "{empty:#?}"
        );
    }
}
