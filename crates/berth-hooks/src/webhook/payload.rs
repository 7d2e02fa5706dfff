//! The providers' payloads, read leniently: only the fields berth uses, every optional one
//! `null`-tolerant (Gitea and Gogs are written in Go and send `null` for empty lists).

use serde::{Deserialize, Deserializer};

use super::{CommitInfo, Hook, HookError, Person, Provider, Push, RepositoryIds, is_zero_sha};

pub(super) fn parse(
    provider: Provider,
    event: &str,
    delivery_id: String,
    json: &[u8],
) -> Result<Hook, HookError> {
    let read = |e| HookError::from_json(provider, event, e);
    match provider {
        Provider::GitHub => match event {
            "push" => {
                let p: HubPush = serde_json::from_slice(json).map_err(read)?;
                Ok(Hook::Push(Box::new(p.into_push(
                    provider,
                    delivery_id,
                    true,
                ))))
            }
            "ping" => {
                let p: HubPing = serde_json::from_slice(json).map_err(read)?;
                Ok(Hook::Ping {
                    provider,
                    delivery_id,
                    hook_id: p.hook_id,
                    zen: p.zen,
                    repository: p.repository.map(HubRepo::into_ids),
                })
            }
            _ => Ok(ignored(provider, delivery_id, event)),
        },
        Provider::Gitea | Provider::Gogs => match event {
            "push" => {
                let p: HubPush = serde_json::from_slice(json).map_err(read)?;
                Ok(Hook::Push(Box::new(p.into_push(
                    provider,
                    delivery_id,
                    false,
                ))))
            }
            "delete" => {
                let d: TeaDelete = serde_json::from_slice(json).map_err(read)?;
                let git_ref = match d.ref_type.as_str() {
                    "branch" if !d.git_ref.starts_with("refs/") => {
                        format!("refs/heads/{}", d.git_ref)
                    }
                    "tag" if !d.git_ref.starts_with("refs/") => format!("refs/tags/{}", d.git_ref),
                    "branch" | "tag" => d.git_ref,
                    _ => return Ok(ignored(provider, delivery_id, event)),
                };
                let (branch, tag) = split_ref(&git_ref);
                Ok(Hook::Push(Box::new(Push {
                    provider,
                    delivery_id,
                    repository: d.repository.into_ids(),
                    branch,
                    tag,
                    git_ref,
                    before: String::new(),
                    after: "0".repeat(40),
                    created: false,
                    deleted: true,
                    forced: false,
                    pusher: d.sender.and_then(HubUser::into_name).unwrap_or_default(),
                    head_commit: None,
                    commits: Vec::new(),
                    compare_url: None,
                })))
            }
            _ => Ok(ignored(provider, delivery_id, event)),
        },
        Provider::GitLab => match event {
            "Push Hook" | "Tag Push Hook" | "System Hook" => {
                let p: LabPush = serde_json::from_slice(json).map_err(read)?;
                let expected = match event {
                    "Push Hook" => Some("push"),
                    "Tag Push Hook" => Some("tag_push"),
                    _ => None,
                };
                match (expected, p.object_kind.as_str()) {
                    (Some(want), got) if want != got => Err(HookError::EventMismatch {
                        provider,
                        header: provider.event_header(),
                        event: event.to_string(),
                        object_kind: got.to_string(),
                    }),
                    (None, got) if got != "push" && got != "tag_push" => {
                        Ok(ignored(provider, delivery_id, event))
                    }
                    _ => Ok(Hook::Push(Box::new(p.into_push(delivery_id)))),
                }
            }
            _ => Ok(ignored(provider, delivery_id, event)),
        },
    }
}

fn ignored(provider: Provider, delivery_id: String, event: &str) -> Hook {
    Hook::Ignored {
        provider,
        delivery_id,
        event: event.to_string(),
    }
}

fn split_ref(git_ref: &str) -> (Option<String>, Option<String>) {
    (
        git_ref.strip_prefix("refs/heads/").map(str::to_string),
        git_ref.strip_prefix("refs/tags/").map(str::to_string),
    )
}

/// `null` reads as the default, like a missing field.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// GitHub's push, which Gitea and Gogs copied (without `created`/`deleted`/`forced`).
#[derive(Deserialize)]
struct HubPush {
    #[serde(rename = "ref")]
    git_ref: String,
    before: String,
    after: String,
    #[serde(default, deserialize_with = "nullable")]
    created: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    deleted: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    forced: bool,
    // GitHub: `compare`; Gitea and Gogs: `compare_url`.
    #[serde(default, deserialize_with = "nullable")]
    compare: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    compare_url: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    commits: Vec<HubCommit>,
    #[serde(default, deserialize_with = "nullable")]
    head_commit: Option<HubCommit>,
    repository: HubRepo,
    #[serde(default, deserialize_with = "nullable")]
    pusher: Option<HubUser>,
    #[serde(default, deserialize_with = "nullable")]
    sender: Option<HubUser>,
}

impl HubPush {
    fn into_push(self, provider: Provider, delivery_id: String, says_forced: bool) -> Push {
        let (branch, tag) = split_ref(&self.git_ref);
        let created = self.created.unwrap_or_else(|| is_zero_sha(&self.before));
        let deleted = self.deleted.unwrap_or_else(|| is_zero_sha(&self.after));
        let pusher = self
            .pusher
            .and_then(HubUser::into_name)
            .or_else(|| self.sender.and_then(HubUser::into_name))
            .unwrap_or_default();
        let commits: Vec<CommitInfo> = self.commits.into_iter().map(HubCommit::into_info).collect();
        // Gitea leaves `head_commit` out of some pushes; the last listed commit is the head.
        let head_commit = self.head_commit.map(HubCommit::into_info).or_else(|| {
            commits
                .iter()
                .find(|c| c.id == self.after && !deleted)
                .cloned()
        });
        Push {
            provider,
            delivery_id,
            repository: self.repository.into_ids(),
            branch,
            tag,
            git_ref: self.git_ref,
            before: self.before,
            after: self.after,
            created,
            deleted,
            forced: says_forced && self.forced,
            pusher,
            head_commit,
            commits,
            compare_url: self.compare.or(self.compare_url).filter(|s| !s.is_empty()),
        }
    }
}

#[derive(Deserialize)]
struct HubCommit {
    id: String,
    #[serde(default, deserialize_with = "nullable")]
    message: String,
    #[serde(default, deserialize_with = "nullable")]
    timestamp: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    url: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    author: Option<HubPerson>,
    #[serde(default, deserialize_with = "nullable")]
    added: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    modified: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    removed: Vec<String>,
}

impl HubCommit {
    fn into_info(self) -> CommitInfo {
        let author = self.author.unwrap_or_default();
        CommitInfo {
            id: self.id,
            message: self.message,
            author: Person {
                name: author.name,
                email: author.email,
                username: author.username.filter(|u| !u.is_empty()),
            },
            timestamp: self.timestamp,
            url: self.url,
            added: self.added,
            modified: self.modified,
            removed: self.removed,
        }
    }
}

#[derive(Deserialize, Default)]
struct HubPerson {
    #[serde(default, deserialize_with = "nullable")]
    name: String,
    #[serde(default, deserialize_with = "nullable")]
    email: String,
    #[serde(default, deserialize_with = "nullable")]
    username: Option<String>,
}

/// GitHub's pusher (`name`, `email`), sender (`login`), Gitea's and Gogs' users (`login`,
/// `username`, `full_name`).
#[derive(Deserialize)]
struct HubUser {
    #[serde(default, deserialize_with = "nullable")]
    login: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    username: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    name: Option<String>,
}

impl HubUser {
    fn into_name(self) -> Option<String> {
        [self.login, self.username, self.name]
            .into_iter()
            .flatten()
            .find(|s| !s.is_empty())
    }
}

#[derive(Deserialize)]
struct HubRepo {
    #[serde(default, deserialize_with = "nullable")]
    full_name: String,
    #[serde(default, deserialize_with = "nullable")]
    name: String,
    #[serde(default, deserialize_with = "nullable")]
    clone_url: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    ssh_url: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    html_url: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    default_branch: Option<String>,
}

impl HubRepo {
    fn into_ids(self) -> RepositoryIds {
        let name = if self.name.is_empty() {
            self.full_name
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string()
        } else {
            self.name
        };
        RepositoryIds {
            full_name: self.full_name,
            name,
            clone_url: self.clone_url.filter(|s| !s.is_empty()),
            ssh_url: self.ssh_url.filter(|s| !s.is_empty()),
            html_url: self.html_url.filter(|s| !s.is_empty()),
            default_branch: self.default_branch.filter(|s| !s.is_empty()),
        }
    }
}

#[derive(Deserialize)]
struct HubPing {
    #[serde(default, deserialize_with = "nullable")]
    zen: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    hook_id: Option<u64>,
    #[serde(default, deserialize_with = "nullable")]
    repository: Option<HubRepo>,
}

/// Gitea's and Gogs' `delete` event.
#[derive(Deserialize)]
struct TeaDelete {
    #[serde(rename = "ref")]
    git_ref: String,
    ref_type: String,
    repository: HubRepo,
    #[serde(default, deserialize_with = "nullable")]
    sender: Option<HubUser>,
}

/// GitLab's push and tag push.
#[derive(Deserialize)]
struct LabPush {
    object_kind: String,
    #[serde(rename = "ref")]
    git_ref: String,
    before: String,
    after: String,
    #[serde(default, deserialize_with = "nullable")]
    user_username: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    user_name: Option<String>,
    project: LabProject,
    #[serde(default, deserialize_with = "nullable")]
    commits: Vec<HubCommit>,
}

impl LabPush {
    fn into_push(self, delivery_id: String) -> Push {
        let (branch, tag) = split_ref(&self.git_ref);
        let deleted = is_zero_sha(&self.after);
        let commits: Vec<CommitInfo> = self.commits.into_iter().map(HubCommit::into_info).collect();
        let head_commit = commits
            .iter()
            .find(|c| c.id == self.after && !deleted)
            .cloned();
        let p = self.project;
        let full_name = p.path_with_namespace;
        let name = p
            .path
            .filter(|s| !s.is_empty())
            .or_else(|| full_name.rsplit('/').next().map(str::to_string))
            .unwrap_or_default();
        Push {
            provider: Provider::GitLab,
            delivery_id,
            repository: RepositoryIds {
                full_name,
                name,
                clone_url: p.git_http_url.or(p.http_url).filter(|s| !s.is_empty()),
                ssh_url: p.git_ssh_url.or(p.ssh_url).filter(|s| !s.is_empty()),
                html_url: p.web_url.filter(|s| !s.is_empty()),
                default_branch: p.default_branch.filter(|s| !s.is_empty()),
            },
            branch,
            tag,
            git_ref: self.git_ref,
            created: is_zero_sha(&self.before),
            deleted,
            before: self.before,
            after: self.after,
            forced: false,
            pusher: self.user_username.or(self.user_name).unwrap_or_default(),
            head_commit,
            commits,
            compare_url: None,
        }
    }
}

#[derive(Deserialize)]
struct LabProject {
    path_with_namespace: String,
    #[serde(default, deserialize_with = "nullable")]
    path: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    web_url: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    git_http_url: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    git_ssh_url: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    http_url: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    ssh_url: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    default_branch: Option<String>,
}
