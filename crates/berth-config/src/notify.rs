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
    /// GitHub: a commit status `berth/ENV` on the run's commit, and a deployment of it to the
    /// environment with its statuses.
    #[schemars(with = "Option<RawGitHub>")]
    #[schemars(example = serde_json::json!({"repository": "team/shop", "token-env": "GITHUB_TOKEN"}))]
    pub github: Option<Spanned<RawGitHub>>,
    /// E-mail over SMTP: one plain-text message per event.
    #[schemars(with = "Option<RawEmail>")]
    #[schemars(example = serde_json::json!({"to": ["ops@example.com"], "from": "berth@example.com", "smtp-url-env": "SMTP_URL"}))]
    pub email: Option<Spanned<RawEmail>>,
    /// GitLab: a commit status `berth/ENV` on the run's commit.
    #[schemars(with = "Option<RawGitLab>")]
    #[schemars(example = serde_json::json!({"project": "group/shop", "token-env": "GITLAB_TOKEN"}))]
    pub gitlab: Option<Spanned<RawGitLab>>,
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

/// GitHub's commit and deployment statuses.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "NotifyGitHub")]
pub(crate) struct RawGitHub {
    /// `owner/name`.
    #[schemars(with = "String")]
    #[schemars(example = serde_json::json!("team/shop"))]
    #[schemars(extend("x-wrong" = "https://github.com/team/shop"))]
    pub repository: Spanned<String>,
    /// The environment variable holding a token that may write statuses and deployments
    /// (`repo:status` and `repo_deployment`, or a fine-grained token with commit statuses and
    /// deployments: write).
    #[schemars(with = "String")]
    #[schemars(example = serde_json::json!("GITHUB_TOKEN"))]
    #[schemars(extend("x-wrong" = "ghp-xxxxxxxxxxxx"))]
    pub token_env: Spanned<String>,
    /// The API's base URL, for GitHub Enterprise Server (`https://HOST/api/v3`). Default:
    /// `https://api.github.com`. Or `api-url-env`.
    #[schemars(with = "Option<String>")]
    #[schemars(example = serde_json::json!("https://github.example.com/api/v3"))]
    #[schemars(extend("x-wrong" = "github.example.com"))]
    pub api_url: Option<Spanned<String>>,
    /// The environment variable holding the API's base URL.
    #[schemars(with = "Option<String>")]
    #[schemars(example = serde_json::json!("GITHUB_API_URL"))]
    pub api_url_env: Option<Spanned<String>>,
    /// Also record a GitHub deployment of the commit to the environment, with its statuses.
    /// Default: true.
    #[schemars(example = serde_json::json!(false))]
    pub deployments: Option<bool>,
}

/// E-mail over SMTP.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "NotifyEmail")]
pub(crate) struct RawEmail {
    /// The addresses it goes to.
    #[schemars(with = "Vec<String>")]
    #[schemars(example = serde_json::json!(["ops@example.com"]))]
    #[schemars(extend("x-wrong" = "[ops]"))]
    pub to: Vec<Spanned<String>>,
    /// The sender's address.
    #[schemars(with = "String")]
    #[schemars(example = serde_json::json!("berth@example.com"))]
    #[schemars(extend("x-wrong" = "berth"))]
    pub from: Spanned<String>,
    /// The environment variable holding the server's URL: `smtps://USER:PASSWORD@HOST:465`,
    /// `smtp://USER:PASSWORD@HOST:587?tls=required` (STARTTLS), or `smtp://HOST:25` (plain,
    /// for a relay on the same network).
    #[schemars(with = "String")]
    #[schemars(example = serde_json::json!("SMTP_URL"))]
    #[schemars(extend("x-wrong" = "smtps://me:pw@mail.example.com"))]
    pub smtp_url_env: Spanned<String>,
}

/// GitLab's commit statuses.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "NotifyGitLab")]
pub(crate) struct RawGitLab {
    /// The project: `group/name` or its numeric id.
    #[schemars(with = "String")]
    #[schemars(example = serde_json::json!("group/shop"))]
    #[schemars(extend("x-wrong" = "https://gitlab.com/group/shop"))]
    pub project: Spanned<String>,
    /// The environment variable holding a token with the `api` scope.
    #[schemars(with = "String")]
    #[schemars(example = serde_json::json!("GITLAB_TOKEN"))]
    #[schemars(extend("x-wrong" = "glpat-xxxxxxxx"))]
    pub token_env: Spanned<String>,
    /// The instance's base URL. Default: `https://gitlab.com`. Or `api-url-env`.
    #[schemars(with = "Option<String>")]
    #[schemars(example = serde_json::json!("https://gitlab.example.com"))]
    #[schemars(extend("x-wrong" = "gitlab.example.com"))]
    pub api_url: Option<Spanned<String>>,
    /// The environment variable holding the instance's base URL.
    #[schemars(with = "Option<String>")]
    #[schemars(example = serde_json::json!("GITLAB_URL"))]
    pub api_url_env: Option<Spanned<String>>,
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
    /// GitHub's commit status and deployments.
    GitHub {
        /// `owner/name`.
        repository: String,
        /// The variable holding the token.
        token_env: String,
        /// The API's base URL (`None`: `https://api.github.com`).
        api_url: Option<UrlFrom>,
        /// Whether deployments are recorded too.
        deployments: bool,
    },
    /// E-mail over SMTP.
    Email {
        /// The addresses.
        to: Vec<String>,
        /// The sender.
        from: String,
        /// The variable holding the SMTP URL.
        smtp_url_env: String,
    },
    /// GitLab's commit status.
    GitLab {
        /// `group/name` or the numeric id.
        project: String,
        /// The variable holding the token.
        token_env: String,
        /// The instance's base URL (`None`: `https://gitlab.com`).
        api_url: Option<UrlFrom>,
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
            NotifyTarget::GitHub { repository, .. } => format!("github {repository}"),
            NotifyTarget::GitLab { project, .. } => format!("gitlab {project}"),
            NotifyTarget::Email { to, .. } => format!("email {}", to.join(", ")),
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
        let api = |this: &mut Self,
                   at: Location,
                   url: &Option<Spanned<String>>,
                   env: &Option<Spanned<String>>| match (url, env) {
            (None, None) => Some(None),
            (Some(u), None) => {
                if !plain_http_url(&u.value) {
                    this.report(Location::of(u), Problem::InvalidUrl);
                }
                Some(Some(UrlFrom::Literal(
                    u.value.trim_end_matches('/').to_string(),
                )))
            }
            (None, Some(v)) => Some(Some(UrlFrom::Env(var(this, v)))),
            (Some(_), Some(_)) => {
                this.report(at, Problem::WebhookUrl);
                None
            }
        };
        let kinds = [
            raw.webhook.is_some(),
            raw.slack.is_some(),
            raw.github.is_some(),
            raw.gitlab.is_some(),
            raw.email.is_some(),
        ];
        let one_kind = kinds.iter().filter(|k| **k).count() == 1;
        if !one_kind {
            self.report(at, Problem::NotifyTarget);
        }
        let target = match (raw.webhook, raw.slack) {
            _ if !one_kind => None,
            _ if raw.github.is_some() => {
                let g = raw.github.expect("checked");
                let g_at = Location::of(&g);
                let g = g.value;
                let repo = &g.repository.value;
                if repo.split('/').count() != 2
                    || repo.split('/').any(|p| p.is_empty() || p.contains(':'))
                {
                    self.report(
                        Location::of(&g.repository),
                        Problem::InvalidRepository {
                            value: repo.clone(),
                        },
                    );
                }
                let token_env = var(self, &g.token_env);
                api(self, g_at, &g.api_url, &g.api_url_env).map(|api_url| NotifyTarget::GitHub {
                    repository: repo.clone(),
                    token_env,
                    api_url,
                    deployments: g.deployments.unwrap_or(true),
                })
            }
            _ if raw.email.is_some() => {
                let e = raw.email.expect("checked");
                let e_at = Location::of(&e);
                let e = e.value;
                let mut ok = true;
                for a in e.to.iter().chain([&e.from]) {
                    if !plain_address(&a.value) {
                        self.report(
                            Location::of(a),
                            Problem::InvalidAddress {
                                value: a.value.clone(),
                            },
                        );
                        ok = false;
                    }
                }
                if e.to.is_empty() {
                    self.report(e_at, Problem::MissingKey { key: "to".into() });
                    ok = false;
                }
                let smtp_url_env = var(self, &e.smtp_url_env);
                ok.then(|| NotifyTarget::Email {
                    to: e.to.iter().map(|a| a.value.clone()).collect(),
                    from: e.from.value.clone(),
                    smtp_url_env,
                })
            }
            _ if raw.gitlab.is_some() => {
                let g = raw.gitlab.expect("checked");
                let g_at = Location::of(&g);
                let g = g.value;
                let project = g.project.value.trim_matches('/').to_string();
                if project.is_empty() || project.contains("://") {
                    self.report(
                        Location::of(&g.project),
                        Problem::InvalidRepository {
                            value: project.clone(),
                        },
                    );
                }
                let token_env = var(self, &g.token_env);
                api(self, g_at, &g.api_url, &g.api_url_env).map(|api_url| NotifyTarget::GitLab {
                    project,
                    token_env,
                    api_url,
                })
            }
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
            _ => unreachable!("exactly one kind, checked above"),
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

/// `local@domain`, one address, nothing that could end a mail header (no space, comma or
/// line break).
fn plain_address(a: &str) -> bool {
    let Some((local, domain)) = a.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && a.matches('@').count() == 1
        && !a
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"()[]".contains(c))
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
    fn github_and_gitlab_parse_with_their_defaults_and_refuse_urls_for_names() {
        let yaml = format!(
            "{HEAD}    notify:\n      - github: {{ repository: team/shop, token-env: GH_TOKEN }}\n      - gitlab: {{ project: group/sub/shop, token-env: GL_TOKEN, api-url: \"https://gitlab.example.com/\" }}\n"
        );
        let config = parse(&yaml, "berth.yaml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
        let n = &config.environments[0].notify;
        assert_eq!(
            n[0].target,
            NotifyTarget::GitHub {
                repository: "team/shop".into(),
                token_env: "GH_TOKEN".into(),
                api_url: None,
                deployments: true,
            }
        );
        assert_eq!(n[0].describe(), "github team/shop");
        assert_eq!(
            n[1].target,
            NotifyTarget::GitLab {
                project: "group/sub/shop".into(),
                token_env: "GL_TOKEN".into(),
                api_url: Some(UrlFrom::Literal("https://gitlab.example.com".into())),
            }
        );
        let all = errors(
            "    notify:\n      - github: { repository: \"https://github.com/team/shop\", token-env: GH }\n      - github: { repository: team/shop, token-env: GH }\n        slack: { url-env: S }\n",
        );
        let got: Vec<(u32, &Problem)> = all.iter().map(|(l, p, _)| (l.line, p)).collect();
        assert!(
            matches!(
                got.iter().find(|(l, _)| *l == 8),
                Some((_, Problem::InvalidRepository { .. }))
            ),
            "{all:#?}"
        );
        assert!(got.contains(&(9, &Problem::NotifyTarget)), "{all:#?}");
    }

    #[test]
    fn an_email_goes_to_plain_addresses_only() {
        let yaml = format!(
            "{HEAD}    notify:\n      - email: {{ to: [ops@example.com], from: berth@example.com, smtp-url-env: SMTP_URL }}\n"
        );
        let config = parse(&yaml, "berth.yaml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.environments[0].notify[0].target,
            NotifyTarget::Email {
                to: vec!["ops@example.com".into()],
                from: "berth@example.com".into(),
                smtp_url_env: "SMTP_URL".into(),
            }
        );
        // A header injection, a list in one entry, a name: each refused at its line.
        let all = errors(
            "    notify:\n      - email: { to: [\"ops@example.com\\r\\nBcc: all@example.com\", \"a@example.com, b@example.com\"], from: \"Berth <berth@example.com>\", smtp-url-env: SMTP_URL }\n      - email: { to: [], from: berth@example.com, smtp-url-env: SMTP_URL }\n",
        );
        let bad = all
            .iter()
            .filter(|(_, p, _)| matches!(p, Problem::InvalidAddress { .. }))
            .count();
        assert_eq!(bad, 3, "{all:#?}");
        assert!(
            all.iter()
                .any(|(l, p, _)| l.line == 9 && matches!(p, Problem::MissingKey { .. })),
            "{all:#?}"
        );
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
