//! Webhook verification and parsing for GitHub, Gitea, Gogs and GitLab.
//!
//! The server hands over the request's headers and raw body; this module answers with a
//! [`Hook`] or a [`HookError`] that carries the HTTP status to reply with. The steps, in the
//! order the server should take them:
//!
//! 1. [`check_size`] on `Content-Length` before reading the body, and again on the body;
//! 2. [`detect`] the provider from its event header (Gitea also sends Gogs' and GitHub's
//!    headers for compatibility, and Forgejo sends Gitea's, so Gitea is recognised first);
//! 3. [`verify`] the signature with the repository's secret — HMAC-SHA256 of the body
//!    (GitHub: `X-Hub-Signature-256: sha256=<hex>`; Gitea/Gogs: `X-Gitea-Signature` /
//!    `X-Gogs-Signature: <hex>`, computed over the JSON even when the body is form-encoded) or
//!    GitLab's shared `X-Gitlab-Token`, always compared in constant time;
//! 4. [`parse`] into a provider-neutral [`Push`], a GitHub `ping`, or [`Hook::Ignored`] for the
//!    events berth does not act on.
//!
//! [`Request::receive`] does all four. A server that keeps one secret per repository may call
//! [`parse`] first to learn the repository's name, but must not act on the result before
//! [`verify`] succeeded.
//!
//! Bodies may be `application/json` or, as GitHub, Gitea and Gogs can be configured to send,
//! `application/x-www-form-urlencoded` with the JSON in a `payload` field. A missing
//! `Content-Type` is read as JSON.
//!
//! Deliveries carry an id the server uses to ignore redeliveries ([`delivery_id`]): GitHub's
//! `X-GitHub-Delivery`, Gitea's `X-Gitea-Delivery`, Gogs' `X-Gogs-Delivery`, and for GitLab
//! the retry-stable `Idempotency-Key`, else `X-Gitlab-Event-UUID`, else
//! `X-Gitlab-Webhook-UUID`.

mod error;
mod payload;
mod sign;

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use berth_types::Secret;
use http::HeaderMap;
use serde::{Deserialize, Serialize};

pub use error::HookError;
pub use sign::{github_signature, hmac_sha256_hex};

/// The largest body berth accepts by default: 25 MiB, GitHub's own cap on webhook payloads, so
/// no legitimate push is ever refused.
pub const DEFAULT_MAX_BODY: usize = 25 * 1024 * 1024;

/// A git host that sends webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// github.com and GitHub Enterprise.
    GitHub,
    /// Gitea and Forgejo.
    Gitea,
    /// Gogs.
    Gogs,
    /// gitlab.com and self-managed GitLab.
    GitLab,
}

impl Provider {
    /// Every provider, in detection order.
    pub const ALL: [Provider; 4] = [
        Provider::Gitea,
        Provider::Gogs,
        Provider::GitLab,
        Provider::GitHub,
    ];

    /// Stable lowercase name, as in configuration: `github`, `gitea`, `gogs`, `gitlab`.
    pub fn id(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::Gitea => "gitea",
            Provider::Gogs => "gogs",
            Provider::GitLab => "gitlab",
        }
    }

    /// The header that names the event.
    pub fn event_header(self) -> &'static str {
        match self {
            Provider::GitHub => "X-GitHub-Event",
            Provider::Gitea => "X-Gitea-Event",
            Provider::Gogs => "X-Gogs-Event",
            Provider::GitLab => "X-Gitlab-Event",
        }
    }

    /// The headers that carry the delivery id, in order of preference.
    pub fn delivery_headers(self) -> &'static [&'static str] {
        match self {
            Provider::GitHub => &["X-GitHub-Delivery"],
            Provider::Gitea => &["X-Gitea-Delivery"],
            Provider::Gogs => &["X-Gogs-Delivery"],
            Provider::GitLab => &[
                "Idempotency-Key",
                "X-Gitlab-Event-UUID",
                "X-Gitlab-Webhook-UUID",
            ],
        }
    }

    /// The header that carries the signature (or GitLab's token).
    pub fn signature_header(self) -> &'static str {
        match self {
            Provider::GitHub => "X-Hub-Signature-256",
            Provider::Gitea => "X-Gitea-Signature",
            Provider::Gogs => "X-Gogs-Signature",
            Provider::GitLab => "X-Gitlab-Token",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Provider::GitHub => "GitHub",
            Provider::Gitea => "Gitea",
            Provider::Gogs => "Gogs",
            Provider::GitLab => "GitLab",
        })
    }
}

/// The name is not one of `github`, `gitea` (or `forgejo`), `gogs`, `gitlab`.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "unknown git host `{0}`: berth takes webhooks from github, gitea (or forgejo), gogs and gitlab"
)]
pub struct UnknownProvider(pub String);

impl FromStr for Provider {
    type Err = UnknownProvider;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "github" => Ok(Provider::GitHub),
            "gitea" | "forgejo" => Ok(Provider::Gitea),
            "gogs" => Ok(Provider::Gogs),
            "gitlab" => Ok(Provider::GitLab),
            _ => Err(UnknownProvider(s.to_string())),
        }
    }
}

/// One webhook request as the server received it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The raw body, exactly as received (signatures are over these bytes).
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    /// Wraps a request.
    pub fn new(headers: &'a HeaderMap, body: &'a [u8]) -> Self {
        Request { headers, body }
    }

    /// Size check, provider detection, verification and parsing in one: what a server with one
    /// secret per endpoint needs.
    pub fn receive(&self, secret: &Secret, max_body: usize) -> Result<Hook, HookError> {
        check_size(self.body.len(), max_body)?;
        let provider = detect(self.headers).ok_or(HookError::UnknownProvider)?;
        verify(provider, self.headers, self.body, secret)?;
        parse(provider, self.headers, self.body)
    }

    /// Like [`Request::receive`], for an endpoint that takes one provider only.
    pub fn receive_from(
        &self,
        expected: Provider,
        secret: &Secret,
        max_body: usize,
    ) -> Result<Hook, HookError> {
        check_size(self.body.len(), max_body)?;
        let found = detect(self.headers).ok_or(HookError::UnknownProvider)?;
        if found != expected && !compatible(expected, self.headers) {
            return Err(HookError::WrongProvider { expected, found });
        }
        verify(expected, self.headers, self.body, secret)?;
        parse(expected, self.headers, self.body)
    }
}

/// Gitea sends Gogs' and GitHub's headers as well: an endpoint configured for either accepts it.
fn compatible(expected: Provider, headers: &HeaderMap) -> bool {
    header(headers, expected.event_header()).is_some()
}

/// Refuses a body (or an announced `Content-Length`) larger than `max` bytes.
pub fn check_size(len: usize, max: usize) -> Result<(), HookError> {
    if len > max {
        Err(HookError::TooLarge { size: len, max })
    } else {
        Ok(())
    }
}

/// The provider that sent the request, by its event header; `None` if none is present.
pub fn detect(headers: &HeaderMap) -> Option<Provider> {
    Provider::ALL
        .into_iter()
        .find(|p| headers.contains_key(p.event_header()))
}

/// The delivery id the server deduplicates on (see the module docs for which header).
pub fn delivery_id(provider: Provider, headers: &HeaderMap) -> Result<String, HookError> {
    provider
        .delivery_headers()
        .iter()
        .find_map(|h| header(headers, h))
        .filter(|id| id.len() <= 128 && !id.chars().any(char::is_control))
        .map(str::to_string)
        .ok_or(HookError::MissingDelivery {
            provider,
            header: provider.delivery_headers()[0],
        })
}

/// Checks that the request was signed with `secret` (GitLab: carries it as its token).
pub fn verify(
    provider: Provider,
    headers: &HeaderMap,
    body: &[u8],
    secret: &Secret,
) -> Result<(), HookError> {
    if secret.expose().is_empty() {
        return Err(HookError::NoSecret);
    }
    let name = provider.signature_header();
    let value = header(headers, name).ok_or(HookError::Unsigned {
        provider,
        header: name,
    })?;
    match provider {
        Provider::GitLab => {
            if sign::token_matches(secret, value) {
                Ok(())
            } else {
                Err(HookError::BadToken { header: name })
            }
        }
        Provider::GitHub => {
            let form = "sha256=<64 hex digits>";
            let hex_sig = value
                .strip_prefix("sha256=")
                .ok_or(HookError::MalformedSignature {
                    provider,
                    header: name,
                    form,
                })?;
            let sig = decode_sha256_hex(hex_sig).ok_or(HookError::MalformedSignature {
                provider,
                header: name,
                form,
            })?;
            // GitHub signs the raw body, form-encoded or not.
            if sign::hmac_matches(secret, body, &sig) {
                Ok(())
            } else {
                Err(HookError::BadSignature {
                    provider,
                    header: name,
                })
            }
        }
        Provider::Gitea | Provider::Gogs => {
            let hex_sig = value.strip_prefix("sha256=").unwrap_or(value);
            let sig = decode_sha256_hex(hex_sig).ok_or(HookError::MalformedSignature {
                provider,
                header: name,
                form: "<64 hex digits>",
            })?;
            // They sign the JSON payload; for a form-encoded body that is the `payload` field.
            let ok = sign::hmac_matches(secret, body, &sig)
                || matches!(content_kind(headers), Ok(ContentKind::Form))
                    && form_payload(body)
                        .is_some_and(|json| sign::hmac_matches(secret, json.as_bytes(), &sig));
            if ok {
                Ok(())
            } else {
                Err(HookError::BadSignature {
                    provider,
                    header: name,
                })
            }
        }
    }
}

fn decode_sha256_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 {
        return None;
    }
    hex::decode(s).ok()
}

/// Parses the request into a [`Hook`]. Call [`verify`] first: nothing here is authenticated.
pub fn parse(provider: Provider, headers: &HeaderMap, body: &[u8]) -> Result<Hook, HookError> {
    let event_header = provider.event_header();
    let event = header(headers, event_header).ok_or(HookError::MissingEvent {
        provider,
        header: event_header,
    })?;
    let delivery_id = delivery_id(provider, headers)?;
    let json = json_body(headers, body)?;
    payload::parse(provider, event, delivery_id, &json)
}

/// What the server does with a verified webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Hook {
    /// A ref was pushed (a branch or a tag created, moved or deleted).
    Push(Box<Push>),
    /// GitHub's `ping`, sent when a webhook is created: answer 200, queue nothing.
    Ping {
        /// Who sent it.
        provider: Provider,
        /// The delivery id.
        delivery_id: String,
        /// The webhook's id at the host.
        hook_id: Option<u64>,
        /// GitHub's zen line.
        zen: Option<String>,
        /// The repository the webhook belongs to (absent for organisation webhooks).
        repository: Option<RepositoryIds>,
    },
    /// An event berth does not act on (issues, pull requests, releases, ...): answer 200 (or
    /// 202), queue nothing.
    Ignored {
        /// Who sent it.
        provider: Provider,
        /// The delivery id.
        delivery_id: String,
        /// The event header's value.
        event: String,
    },
}

impl Hook {
    /// The delivery id, whatever the event.
    pub fn delivery_id(&self) -> &str {
        match self {
            Hook::Push(p) => &p.delivery_id,
            Hook::Ping { delivery_id, .. } | Hook::Ignored { delivery_id, .. } => delivery_id,
        }
    }

    /// Who sent it.
    pub fn provider(&self) -> Provider {
        match self {
            Hook::Push(p) => p.provider,
            Hook::Ping { provider, .. } | Hook::Ignored { provider, .. } => *provider,
        }
    }
}

/// A push, the same for every provider.
///
/// Where a provider leaves something out, it is derived: Gitea, Gogs and GitLab send no
/// `created`/`deleted`, which come from a zero `before`/`after`; only GitHub says whether a push
/// was `forced` (false elsewhere — compare `before` with the new history to know). Gitea and
/// Gogs report a deleted ref as a separate `delete` event; it becomes a `Push` with
/// `deleted: true`, an empty `before` and a zero `after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Push {
    /// Who sent it.
    pub provider: Provider,
    /// The delivery id.
    pub delivery_id: String,
    /// The repository pushed to.
    pub repository: RepositoryIds,
    /// The full ref: `refs/heads/main`, `refs/tags/v1.2`.
    pub git_ref: String,
    /// The branch, when `git_ref` is under `refs/heads/`.
    pub branch: Option<String>,
    /// The tag, when `git_ref` is under `refs/tags/`.
    pub tag: Option<String>,
    /// The ref's object before the push (all zeros when created).
    pub before: String,
    /// The ref's object after the push (all zeros when deleted).
    pub after: String,
    /// The ref did not exist before.
    pub created: bool,
    /// The ref no longer exists.
    pub deleted: bool,
    /// The push was a force-push (GitHub only says so).
    pub forced: bool,
    /// Who pushed: login or name.
    pub pusher: String,
    /// The commit the ref now points at, when the provider sent it.
    pub head_commit: Option<CommitInfo>,
    /// The commits the push brought, as the provider listed them (GitHub, Gitea and Gogs:
    /// oldest first). Providers cap this list (GitHub at 2048, GitLab at 20).
    pub commits: Vec<CommitInfo>,
    /// The provider's compare URL, when sent.
    pub compare_url: Option<String>,
}

impl Push {
    /// The commit to build: `after`, unless the ref was deleted.
    pub fn commit(&self) -> Option<&str> {
        (!self.deleted && !is_zero_sha(&self.after)).then_some(self.after.as_str())
    }

    /// Every path the listed commits added, modified or removed, sorted, without duplicates.
    pub fn changed_paths(&self) -> Vec<&str> {
        let mut paths: Vec<&str> = self
            .commits
            .iter()
            .flat_map(|c| c.added.iter().chain(&c.modified).chain(&c.removed))
            .map(String::as_str)
            .collect();
        paths.sort_unstable();
        paths.dedup();
        paths
    }
}

/// How to name and reach the repository a webhook is about.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RepositoryIds {
    /// `owner/name` (GitLab: `path_with_namespace`, which may have several levels).
    pub full_name: String,
    /// The repository's own name.
    pub name: String,
    /// The https clone URL.
    pub clone_url: Option<String>,
    /// The ssh clone URL.
    pub ssh_url: Option<String>,
    /// The web page.
    pub html_url: Option<String>,
    /// The default branch, when sent.
    pub default_branch: Option<String>,
}

/// One commit as a webhook describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CommitInfo {
    /// The commit id (hex).
    pub id: String,
    /// The full message.
    pub message: String,
    /// The author.
    pub author: Person,
    /// The commit's timestamp as sent (ISO 8601).
    pub timestamp: Option<String>,
    /// The commit's web page.
    pub url: Option<String>,
    /// Paths the commit added.
    pub added: Vec<String>,
    /// Paths the commit modified.
    pub modified: Vec<String>,
    /// Paths the commit removed.
    pub removed: Vec<String>,
}

/// A commit author.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Person {
    /// Display name.
    pub name: String,
    /// E-mail address.
    pub email: String,
    /// The account at the host, when known.
    pub username: Option<String>,
}

/// An object id of zeros: the "no object" of a created or deleted ref.
pub fn is_zero_sha(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b == b'0')
}

pub(crate) fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ContentKind {
    Json,
    Form,
}

fn content_kind(headers: &HeaderMap) -> Result<ContentKind, HookError> {
    let Some(raw) = headers.get(http::header::CONTENT_TYPE) else {
        return Ok(ContentKind::Json);
    };
    let text = String::from_utf8_lossy(raw.as_bytes());
    let media = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "" | "application/json" => Ok(ContentKind::Json),
        "application/x-www-form-urlencoded" => Ok(ContentKind::Form),
        m if m.ends_with("+json") => Ok(ContentKind::Json),
        _ => Err(HookError::UnsupportedContentType {
            content_type: text.chars().take(100).collect(),
        }),
    }
}

fn form_payload(body: &[u8]) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned())
}

fn json_body<'b>(headers: &HeaderMap, body: &'b [u8]) -> Result<Cow<'b, [u8]>, HookError> {
    match content_kind(headers)? {
        ContentKind::Json => Ok(Cow::Borrowed(body)),
        ContentKind::Form => form_payload(body)
            .map(|s| Cow::Owned(s.into_bytes()))
            .ok_or(HookError::MissingFormPayload),
    }
}

#[cfg(test)]
mod tests;
