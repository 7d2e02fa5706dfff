//! `environments[].notify`: who hears about this environment's runs.
//!
//! ```yaml
//! environments:
//!   - name: production
//!     namespace: shop
//!     notify:
//!       - webhook: { url-env: DEPLOY_HOOK_URL, secret-env: DEPLOY_HOOK_SECRET }
//!       - slack: { url-env: SLACK_WEBHOOK_URL }
//!         on: [failed, rolled-back]
//! ```
//!
//! Secrets are never written in berth.yaml: a Slack URL holds its token, so it is always read
//! from an environment variable; a webhook's URL may be written only when it holds no password.

use berth_types::NotifyEvent;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::data::is_env_var;
use crate::suggest::suggest;
use crate::validate::Checker;
use crate::{Location, Problem};

/// One receiver of this environment's run events.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "Notify")]
pub(crate) struct RawNotify {
    /// A generic webhook: a JSON POST per event, HMAC-SHA256-signed when `secret-env` is set.
    #[schemars(with = "Option<RawWebhook>")]
    #[schemars(example = serde_json::json!({"url-env": "DEPLOY_HOOK_URL", "secret-env": "DEPLOY_HOOK_SECRET"}))]
    pub webhook: Option<Spanned<RawWebhook>>,
    /// A Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat): one line of text.
    #[schemars(with = "Option<RawSlack>")]
    #[schemars(example = serde_json::json!({"url-env": "SLACK_WEBHOOK_URL"}))]
    pub slack: Option<Spanned<RawSlack>>,
    /// The events sent: started, paused, promoted, succeeded, failed, rolled-back, aborted.
    /// Default: all of them.
    #[schemars(with = "Option<Vec<String>>")]
    #[schemars(example = serde_json::json!(["failed", "rolled-back"]))]
    #[schemars(extend("x-wrong" = "[deployed]"))]
    pub on: Option<Vec<Spanned<String>>>,
}

/// A generic webhook.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "NotifyWebhook")]
pub(crate) struct RawWebhook {
    /// The URL (http or https, no password in it). Or `url-env`.
    #[schemars(with = "Option<String>")]
    #[schemars(example = serde_json::json!("https://hooks.example.com/berth"))]
    #[schemars(extend("x-wrong" = "https://me:pass@hooks.example.com/berth"))]
    pub url: Option<Spanned<String>>,
    /// The environment variable holding the URL, for a URL that holds a token.
    #[schemars(with = "Option<String>")]
    #[schemars(example = serde_json::json!("DEPLOY_HOOK_URL"))]
    #[schemars(extend("x-wrong" = "https://hooks.example.com/berth"))]
    pub url_env: Option<Spanned<String>>,
    /// The environment variable holding the HMAC key; each request then carries
    /// `X-Berth-Signature-256: sha256=HEX` of its body, as GitHub's webhooks do.
    #[schemars(with = "Option<String>")]
    #[schemars(example = serde_json::json!("DEPLOY_HOOK_SECRET"))]
    #[schemars(extend("x-wrong" = "s3cr3t-value!"))]
    pub secret_env: Option<Spanned<String>>,
}

/// A Slack-compatible incoming webhook.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "NotifySlack")]
pub(crate) struct RawSlack {
    /// The environment variable holding the incoming webhook's URL (the URL is its token).
    #[schemars(with = "String")]
    #[schemars(example = serde_json::json!("SLACK_WEBHOOK_URL"))]
    #[schemars(extend("x-wrong" = "https://hooks.slack.com/services/T0/B0/x"))]
    pub url_env: Spanned<String>,
}

/// Where a URL comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlFrom {
    /// Written in berth.yaml (holds no password).
    Literal(String),
    /// Read from this environment variable when the run starts.
    Env(String),
}

/// A checked receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyTarget {
    /// A generic JSON webhook.
    Webhook {
        /// Its URL.
        url: UrlFrom,
        /// The variable holding its HMAC key, if signed.
        secret_env: Option<String>,
    },
    /// A Slack-compatible incoming webhook.
    Slack {
        /// The variable holding its URL.
        url_env: String,
    },
}

/// A checked `notify` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The receiver.
    pub target: NotifyTarget,
    /// The events it gets, in [`NotifyEvent::ALL`] order.
    pub on: Vec<NotifyEvent>,
    /// Where the entry is in berth.yaml.
    pub location: Location,
}

impl Notification {
    /// The receiver for messages: its kind and where its URL comes from, never the URL itself
    /// when that is a secret.
    pub fn describe(&self) -> String {
        match &self.target {
            NotifyTarget::Webhook {
                url: UrlFrom::Literal(u),
                ..
            } => format!("webhook {u}"),
            NotifyTarget::Webhook {
                url: UrlFrom::Env(v),
                ..
            } => format!("webhook ${v}"),
            NotifyTarget::Slack { url_env } => format!("slack ${url_env}"),
        }
    }
}

impl Checker<'_> {
    /// Checks one `notify` entry.
    pub(crate) fn notify(&mut self, raw: Spanned<RawNotify>) -> Option<Notification> {
        let at = Location::of(&raw);
        let raw = raw.value;
        let var = |this: &mut Self, v: &Spanned<String>| {
            if !is_env_var(&v.value) {
                this.report(
                    Location::of(v),
                    Problem::InvalidEnvVar {
                        value: v.value.clone(),
                    },
                );
            }
            v.value.clone()
        };
        let target = match (raw.webhook, raw.slack) {
            (Some(w), None) => {
                let w_at = Location::of(&w);
                let w = w.value;
                let url = match (&w.url, &w.url_env) {
                    (Some(u), None) => {
                        if !plain_http_url(&u.value) {
                            self.report(Location::of(u), Problem::InvalidUrl);
                        }
                        Some(UrlFrom::Literal(u.value.clone()))
                    }
                    (None, Some(v)) => Some(UrlFrom::Env(var(self, v))),
                    _ => {
                        self.report(w_at, Problem::WebhookUrl);
                        None
                    }
                };
                let secret_env = w.secret_env.as_ref().map(|v| var(self, v));
                url.map(|url| NotifyTarget::Webhook { url, secret_env })
            }
            (None, Some(s)) => Some(NotifyTarget::Slack {
                url_env: var(self, &s.value.url_env),
            }),
            _ => {
                self.report(at, Problem::NotifyTarget);
                None
            }
        };
        let mut on = Vec::new();
        match raw.on {
            None => on.extend(NotifyEvent::ALL),
            Some(list) => {
                for e in &list {
                    match e.value.parse::<NotifyEvent>() {
                        Ok(ev) if !on.contains(&ev) => on.push(ev),
                        Ok(_) => {}
                        Err(_) => {
                            let names = NotifyEvent::ALL.iter().map(|e| e.as_str());
                            self.report(
                                Location::of(e),
                                Problem::UnknownValue {
                                    value: e.value.clone(),
                                    expected: NotifyEvent::ALL
                                        .iter()
                                        .map(|e| e.as_str().to_string())
                                        .collect(),
                                    suggestion: suggest(&e.value, names),
                                },
                            );
                        }
                    }
                }
                on.sort_by_key(|e| NotifyEvent::ALL.iter().position(|a| a == e));
            }
        }
        target.map(|target| Notification {
            target,
            on,
            location: at,
        })
    }
}

/// An http(s) URL with a host and no user or password in it.
fn plain_http_url(u: &str) -> bool {
    let Some(rest) = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
    else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    !authority.is_empty() && !authority.contains('@') && !u.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use berth_types::NotifyEvent;

    use super::{NotifyTarget, UrlFrom};
    use crate::{Location, Problem, parse};

    const HEAD: &str = "services:\n  - name: web\n    image: registry.example.com/web:1\nenvironments:\n  - name: production\n    namespace: prod\n";

    fn errors(tail: &str) -> Vec<(Location, Problem, String)> {
        crate::tests::errors(&format!("{HEAD}{tail}"))
    }

    #[test]
    fn webhook_and_slack_parse_with_their_events() {
        let yaml = format!(
            "{HEAD}    notify:\n      - webhook: {{ url: \"https://hooks.example.com/b?x=1\", secret-env: HOOK_KEY }}\n      - slack: {{ url-env: SLACK_URL }}\n        on: [rolled-back, failed, failed]\n"
        );
        let config = parse(&yaml, "berth.yaml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
        let n = &config.environments[0].notify;
        assert_eq!(n.len(), 2);
        assert_eq!(
            n[0].target,
            NotifyTarget::Webhook {
                url: UrlFrom::Literal("https://hooks.example.com/b?x=1".into()),
                secret_env: Some("HOOK_KEY".into()),
            }
        );
        assert_eq!(n[0].on, NotifyEvent::ALL.to_vec(), "all events by default");
        assert_eq!(
            n[1].target,
            NotifyTarget::Slack {
                url_env: "SLACK_URL".into()
            }
        );
        assert_eq!(n[1].on, [NotifyEvent::Failed, NotifyEvent::RolledBack]);
        assert_eq!(n[1].describe(), "slack $SLACK_URL");
        assert_eq!(n[1].location, Location::new(9, 9));
    }

    #[test]
    fn each_wrong_entry_says_what_to_write_at_its_line() {
        let all = errors(
            "    notify:\n      - on: [failed]\n      - webhook: { url: \"https://me:pw@hooks.example.com/\" }\n      - webhook: { url-env: \"https://x\" }\n      - slack: { url-env: SLACK }\n        on: [faild]\n      - webhook: {}\n",
        );
        let got: Vec<(u32, &Problem)> = all.iter().map(|(l, p, _)| (l.line, p)).collect();
        assert!(got.contains(&(8, &Problem::NotifyTarget)), "{all:#?}");
        assert!(got.contains(&(9, &Problem::InvalidUrl)), "{all:#?}");
        assert!(
            matches!(
                got.iter().find(|(l, _)| *l == 10),
                Some((_, Problem::InvalidEnvVar { .. }))
            ),
            "{all:#?}"
        );
        assert!(
            all.iter()
                .any(|(l, _, m)| l.line == 12 && m.contains("did you mean `failed`?")),
            "{all:#?}"
        );
        assert!(got.contains(&(13, &Problem::WebhookUrl)), "{all:#?}");
        let text: String = all.iter().map(|(_, _, m)| m.as_str()).collect();
        assert!(
            !text.contains("me:pw"),
            "a password in a URL is never repeated: {text}"
        );
    }
}
