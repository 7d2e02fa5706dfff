//! Unit tests on payloads shaped exactly as each provider sends them (fixtures under
//! `tests/fixtures/`), with the headers each provider sets.

use super::*;
use http::{HeaderName, HeaderValue};
use proptest::prelude::*;

const GITHUB_PUSH: &str = include_str!("../../tests/fixtures/github-push.json");
const GITHUB_DELETE: &str = include_str!("../../tests/fixtures/github-push-delete-branch.json");
const GITHUB_PING: &str = include_str!("../../tests/fixtures/github-ping.json");
const GITEA_PUSH: &str = include_str!("../../tests/fixtures/gitea-push.json");
const GITEA_DELETE: &str = include_str!("../../tests/fixtures/gitea-delete-branch.json");
const GOGS_PUSH: &str = include_str!("../../tests/fixtures/gogs-push.json");
const GITLAB_PUSH: &str = include_str!("../../tests/fixtures/gitlab-push.json");
const GITLAB_TAG: &str = include_str!("../../tests/fixtures/gitlab-tag-push.json");

const SECRET: &str = "s3cr3t-hook-key";

fn secret() -> Secret {
    Secret::new(SECRET)
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

/// The headers GitHub sends with a delivery.
fn github(event: &str, body: &[u8]) -> HeaderMap {
    headers(&[
        ("Content-Type", "application/json"),
        ("User-Agent", "GitHub-Hookshot/f1a2b3c"),
        ("X-GitHub-Event", event),
        ("X-GitHub-Delivery", "8c6e2d40-cf5b-11f0-8e1a-2b7f5d1c9a30"),
        ("X-GitHub-Hook-ID", "518203344"),
        ("X-GitHub-Hook-Installation-Target-Type", "repository"),
        ("X-GitHub-Hook-Installation-Target-ID", "812734501"),
        (
            "X-Hub-Signature",
            "sha1=0000000000000000000000000000000000000000",
        ),
        ("X-Hub-Signature-256", &github_signature(&secret(), body)),
    ])
}

/// The headers Gitea sends (it adds Gogs' and GitHub's for compatibility).
fn gitea(event: &str, body: &[u8]) -> HeaderMap {
    let sig = hmac_sha256_hex(&secret(), body);
    headers(&[
        ("Content-Type", "application/json"),
        ("User-Agent", "Go-http-client/1.1"),
        ("X-Gitea-Delivery", "b1e9f1a8-6f0c-4d1e-9f55-2c1f0b6f7a10"),
        ("X-Gitea-Event", event),
        ("X-Gitea-Event-Type", event),
        ("X-Gitea-Signature", &sig),
        ("X-Gogs-Delivery", "b1e9f1a8-6f0c-4d1e-9f55-2c1f0b6f7a10"),
        ("X-Gogs-Event", event),
        ("X-Gogs-Event-Type", event),
        ("X-Gogs-Signature", &sig),
        (
            "X-Hub-Signature",
            "sha1=0000000000000000000000000000000000000000",
        ),
        ("X-Hub-Signature-256", &format!("sha256={sig}")),
        ("X-GitHub-Delivery", "b1e9f1a8-6f0c-4d1e-9f55-2c1f0b6f7a10"),
        ("X-GitHub-Event", event),
        ("X-GitHub-Event-Type", event),
    ])
}

fn gogs(event: &str, body: &[u8]) -> HeaderMap {
    headers(&[
        ("Content-Type", "application/json"),
        ("X-Gogs-Delivery", "f6f2b9a0-3c4d-4e5f-8a9b-0c1d2e3f4a5b"),
        ("X-Gogs-Event", event),
        ("X-Gogs-Signature", &hmac_sha256_hex(&secret(), body)),
    ])
}

fn gitlab(event: &str) -> HeaderMap {
    headers(&[
        ("Content-Type", "application/json"),
        ("User-Agent", "GitLab/18.5.1"),
        ("X-Gitlab-Event", event),
        ("X-Gitlab-Token", SECRET),
        ("X-Gitlab-Instance", "https://gitlab.acme.example"),
        (
            "X-Gitlab-Webhook-UUID",
            "2f1c6b9e-7a3d-4c8e-9b1a-5d6e7f8a9b0c",
        ),
        (
            "X-Gitlab-Event-UUID",
            "0f9e8d7c-6b5a-4938-8271-605f4e3d2c1b",
        ),
        ("Idempotency-Key", "6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d"),
    ])
}

fn receive(h: &HeaderMap, body: &[u8]) -> Result<Hook, HookError> {
    Request::new(h, body).receive(&secret(), DEFAULT_MAX_BODY)
}

fn push(hook: Hook) -> Push {
    match hook {
        Hook::Push(p) => *p,
        other => panic!("expected a push, got {other:?}"),
    }
}

#[test]
fn github_push_reads_every_field() {
    let body = GITHUB_PUSH.as_bytes();
    let p = push(receive(&github("push", body), body).unwrap());
    assert_eq!(p.provider, Provider::GitHub);
    assert_eq!(p.delivery_id, "8c6e2d40-cf5b-11f0-8e1a-2b7f5d1c9a30");
    assert_eq!(p.repository.full_name, "acme/board");
    assert_eq!(p.repository.name, "board");
    assert_eq!(
        p.repository.clone_url.as_deref(),
        Some("https://github.com/acme/board.git")
    );
    assert_eq!(
        p.repository.ssh_url.as_deref(),
        Some("git@github.com:acme/board.git")
    );
    assert_eq!(
        p.repository.html_url.as_deref(),
        Some("https://github.com/acme/board")
    );
    assert_eq!(p.repository.default_branch.as_deref(), Some("main"));
    assert_eq!(p.git_ref, "refs/heads/main");
    assert_eq!(p.branch.as_deref(), Some("main"));
    assert_eq!(p.tag, None);
    assert_eq!(p.before, "17c497ccc7cca9c2f735aa07e9e3813060ce9a6a");
    assert_eq!(p.after, "a1f3e5c7b9d1f3e5a7c9b1d3f5e7a9c1b3d5f7e9");
    assert!(!p.created && !p.deleted && !p.forced);
    assert_eq!(p.pusher, "dortiz");
    assert_eq!(p.commits.len(), 2);
    let first = &p.commits[0];
    assert_eq!(first.id, "4b8f2c9e1d3a5f6071829a0b1c2d3e4f50617283");
    assert!(first.message.starts_with("Add the posts API\n\n"));
    assert_eq!(first.author.name, "Dana Ortiz");
    assert_eq!(first.author.email, "dana@acme.example");
    assert_eq!(first.author.username.as_deref(), Some("dortiz"));
    assert_eq!(first.added, ["src/api/posts.js"]);
    assert_eq!(first.modified, ["src/server.js", "package.json"]);
    assert_eq!(p.commits[1].removed, ["public/old-board.html"]);
    assert_eq!(p.head_commit.as_ref(), p.commits.last());
    assert_eq!(p.commit(), Some(p.after.as_str()));
    assert_eq!(
        p.changed_paths(),
        [
            "k8s/deployment.yaml",
            "package.json",
            "public/old-board.html",
            "src/api/posts.js",
            "src/server.js"
        ]
    );
}

#[test]
fn github_branch_deletion_has_no_commit_to_build() {
    let body = GITHUB_DELETE.as_bytes();
    let p = push(receive(&github("push", body), body).unwrap());
    assert!(p.deleted);
    assert!(!p.created);
    assert_eq!(p.branch.as_deref(), Some("feature/old-ui"));
    assert!(is_zero_sha(&p.after));
    assert_eq!(p.head_commit, None);
    assert!(p.commits.is_empty());
    assert_eq!(p.commit(), None);
}

#[test]
fn github_ping_is_answered_not_queued() {
    let body = GITHUB_PING.as_bytes();
    match receive(&github("ping", body), body).unwrap() {
        Hook::Ping {
            provider,
            hook_id,
            zen,
            repository,
            delivery_id,
        } => {
            assert_eq!(provider, Provider::GitHub);
            assert_eq!(hook_id, Some(518203344));
            assert_eq!(zen.as_deref(), Some("Keep it logically awesome."));
            assert_eq!(repository.unwrap().full_name, "acme/board");
            assert_eq!(delivery_id, "8c6e2d40-cf5b-11f0-8e1a-2b7f5d1c9a30");
        }
        other => panic!("expected a ping, got {other:?}"),
    }
}

#[test]
fn github_tag_push_names_the_tag() {
    let mut v: serde_json::Value = serde_json::from_str(GITHUB_PUSH).unwrap();
    v["ref"] = "refs/tags/v1.4.0".into();
    let body = v.to_string();
    let p = push(receive(&github("push", body.as_bytes()), body.as_bytes()).unwrap());
    assert_eq!(p.tag.as_deref(), Some("v1.4.0"));
    assert_eq!(p.branch, None);
}

#[test]
fn github_other_events_are_ignored() {
    let body = br#"{"action":"opened","issue":{"number":3}}"#;
    match receive(&github("issues", body), body).unwrap() {
        Hook::Ignored { event, .. } => assert_eq!(event, "issues"),
        other => panic!("expected ignored, got {other:?}"),
    }
}

#[test]
fn github_form_encoded_body_is_read_and_signed_raw() {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", GITHUB_PUSH)
        .finish();
    let mut h = github("push", body.as_bytes());
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    let p = push(receive(&h, body.as_bytes()).unwrap());
    assert_eq!(p.commits.len(), 2);
    assert_eq!(p.repository.full_name, "acme/board");
}

#[test]
fn form_body_without_payload_field_is_refused() {
    let body = b"data=%7B%7D";
    let mut h = github("push", body);
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    let e = receive(&h, body).unwrap_err();
    assert!(matches!(e, HookError::MissingFormPayload), "{e:?}");
    assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
}

#[test]
fn gitea_is_detected_before_the_compatibility_headers() {
    let body = GITEA_PUSH.as_bytes();
    let h = gitea("push", body);
    assert_eq!(detect(&h), Some(Provider::Gitea));
    let p = push(receive(&h, body).unwrap());
    assert_eq!(p.provider, Provider::Gitea);
    assert_eq!(p.delivery_id, "b1e9f1a8-6f0c-4d1e-9f55-2c1f0b6f7a10");
    assert_eq!(p.repository.full_name, "acme/board");
    assert_eq!(
        p.repository.clone_url.as_deref(),
        Some("https://git.acme.example/acme/board.git")
    );
    assert_eq!(p.branch.as_deref(), Some("main"));
    assert!(!p.created && !p.deleted && !p.forced);
    assert_eq!(p.pusher, "dortiz");
    assert_eq!(p.commits.len(), 2);
    assert_eq!(p.commits[0].added, ["src/api/posts.js"]);
    assert_eq!(p.head_commit.as_ref().unwrap().id, p.after);
    assert!(p.compare_url.unwrap().contains("/compare/"));
}

#[test]
fn gitea_null_lists_read_as_empty() {
    // Go marshals a nil slice as `null`.
    let mut v: serde_json::Value = serde_json::from_str(GITEA_PUSH).unwrap();
    v["commits"][0]["added"] = serde_json::Value::Null;
    v["commits"][1]["removed"] = serde_json::Value::Null;
    let body = v.to_string();
    let p = push(receive(&gitea("push", body.as_bytes()), body.as_bytes()).unwrap());
    assert!(p.commits[0].added.is_empty());
    v["commits"] = serde_json::Value::Null;
    v["head_commit"] = serde_json::Value::Null;
    let body = v.to_string();
    let p = push(receive(&gitea("push", body.as_bytes()), body.as_bytes()).unwrap());
    assert!(p.commits.is_empty());
    assert_eq!(p.head_commit, None);
}

#[test]
fn gitea_branch_deletion_becomes_a_deleted_push() {
    let body = GITEA_DELETE.as_bytes();
    let p = push(receive(&gitea("delete", body), body).unwrap());
    assert!(p.deleted);
    assert_eq!(p.git_ref, "refs/heads/feature/old-ui");
    assert_eq!(p.branch.as_deref(), Some("feature/old-ui"));
    assert_eq!(p.commit(), None);
    assert_eq!(p.pusher, "dortiz");
}

#[test]
fn gitea_form_body_is_signed_over_the_json() {
    // Gitea signs the JSON payload, then sends it in a form field.
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", GITEA_PUSH)
        .finish();
    let mut h = gitea("push", GITEA_PUSH.as_bytes());
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    let p = push(receive(&h, body.as_bytes()).unwrap());
    assert_eq!(p.commits.len(), 2);
}

#[test]
fn gogs_push_of_a_new_branch_is_created() {
    let body = GOGS_PUSH.as_bytes();
    let h = gogs("push", body);
    assert_eq!(detect(&h), Some(Provider::Gogs));
    let p = push(receive(&h, body).unwrap());
    assert_eq!(p.provider, Provider::Gogs);
    assert!(p.created);
    assert!(!p.deleted);
    assert_eq!(p.branch.as_deref(), Some("master"));
    assert_eq!(p.repository.default_branch.as_deref(), Some("master"));
    assert_eq!(
        p.compare_url, None,
        "Gogs sends an empty compare_url for new branches"
    );
    assert_eq!(p.commits[0].added, ["package.json", "src/server.js"]);
    assert_eq!(p.head_commit.as_ref().unwrap().id, p.after);
}

#[test]
fn gitlab_push_with_nested_namespace() {
    let p = push(receive(&gitlab("Push Hook"), GITLAB_PUSH.as_bytes()).unwrap());
    assert_eq!(p.provider, Provider::GitLab);
    assert_eq!(p.delivery_id, "6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d");
    assert_eq!(p.repository.full_name, "acme/web/board");
    assert_eq!(p.repository.name, "board");
    assert_eq!(
        p.repository.clone_url.as_deref(),
        Some("https://gitlab.acme.example/acme/web/board.git")
    );
    assert_eq!(
        p.repository.ssh_url.as_deref(),
        Some("git@gitlab.acme.example:acme/web/board.git")
    );
    assert_eq!(p.branch.as_deref(), Some("main"));
    assert_eq!(p.pusher, "dortiz");
    assert_eq!(p.commits.len(), 2);
    assert_eq!(p.commits[1].modified, ["k8s/deployment.yaml"]);
    assert_eq!(p.head_commit.as_ref().unwrap().id, p.after);
}

#[test]
fn gitlab_tag_push() {
    let p = push(receive(&gitlab("Tag Push Hook"), GITLAB_TAG.as_bytes()).unwrap());
    assert_eq!(p.tag.as_deref(), Some("v1.4.0"));
    assert!(p.created);
    assert_eq!(p.commit(), Some("f5a7b9c1d3e5f7a9b1c3d5e7f9a1b3c5d7e9f1a3"));
}

#[test]
fn gitlab_delivery_id_falls_back_to_event_uuid() {
    let mut h = gitlab("Push Hook");
    h.remove("Idempotency-Key");
    assert_eq!(
        delivery_id(Provider::GitLab, &h).unwrap(),
        "0f9e8d7c-6b5a-4938-8271-605f4e3d2c1b"
    );
    h.remove("X-Gitlab-Event-UUID");
    assert_eq!(
        delivery_id(Provider::GitLab, &h).unwrap(),
        "2f1c6b9e-7a3d-4c8e-9b1a-5d6e7f8a9b0c"
    );
    h.remove("X-Gitlab-Webhook-UUID");
    let e = receive(&h, GITLAB_PUSH.as_bytes()).unwrap_err();
    assert!(matches!(e, HookError::MissingDelivery { .. }), "{e:?}");
    assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
}

#[test]
fn gitlab_header_and_object_kind_must_agree() {
    let e = receive(&gitlab("Tag Push Hook"), GITLAB_PUSH.as_bytes()).unwrap_err();
    assert!(matches!(e, HookError::EventMismatch { .. }), "{e:?}");
    assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
}

#[test]
fn gitlab_wrong_token_is_refused_without_echoing_it() {
    let mut h = gitlab("Push Hook");
    h.insert("X-Gitlab-Token", HeaderValue::from_static("guessed-token"));
    let e = receive(&h, GITLAB_PUSH.as_bytes()).unwrap_err();
    assert!(matches!(e, HookError::BadToken { .. }), "{e:?}");
    assert_eq!(e.status(), http::StatusCode::UNAUTHORIZED);
    let shown = format!("{e} {e:?}");
    assert!(
        !shown.contains("guessed-token") && !shown.contains(SECRET),
        "{shown}"
    );
}

#[test]
fn unsigned_github_push_is_refused() {
    let body = GITHUB_PUSH.as_bytes();
    let mut h = github("push", body);
    h.remove("X-Hub-Signature-256");
    let e = receive(&h, body).unwrap_err();
    assert!(matches!(e, HookError::Unsigned { .. }), "{e:?}");
    assert_eq!(e.status(), http::StatusCode::UNAUTHORIZED);
    assert!(e.to_string().contains("X-Hub-Signature-256"));
}

#[test]
fn gitea_without_secret_sends_an_empty_signature_and_is_refused() {
    let body = GITEA_PUSH.as_bytes();
    let mut h = gitea("push", body);
    h.insert("X-Gitea-Signature", HeaderValue::from_static(""));
    let e = receive(&h, body).unwrap_err();
    assert!(matches!(e, HookError::Unsigned { .. }), "{e:?}");
}

#[test]
fn wrong_secret_is_a_bad_signature_that_reveals_nothing() {
    let body = GITHUB_PUSH.as_bytes();
    let h = github("push", body);
    let other = Secret::new("another-secret");
    let e = Request::new(&h, body)
        .receive(&other, DEFAULT_MAX_BODY)
        .unwrap_err();
    assert!(matches!(e, HookError::BadSignature { .. }), "{e:?}");
    assert_eq!(e.status(), http::StatusCode::UNAUTHORIZED);
    let shown = format!("{e} {e:?}");
    let sent = github_signature(&secret(), body);
    let expected = github_signature(&other, body);
    for leak in [SECRET, "another-secret", &sent[7..], &expected[7..]] {
        assert!(!shown.contains(leak), "{shown} leaks {leak}");
    }
}

#[test]
fn altered_body_is_a_bad_signature() {
    let body = GITHUB_PUSH.as_bytes();
    let h = github("push", body);
    let altered = GITHUB_PUSH.replace("refs/heads/main", "refs/heads/prod");
    let e = receive(&h, altered.as_bytes()).unwrap_err();
    assert!(matches!(e, HookError::BadSignature { .. }), "{e:?}");
}

#[test]
fn malformed_signature_headers() {
    let body = GITHUB_PUSH.as_bytes();
    for bad in ["sha1=abc", "sha256=zz", "sha256=abcd", "deadbeef"] {
        let mut h = github("push", body);
        h.insert("X-Hub-Signature-256", HeaderValue::from_str(bad).unwrap());
        let e = receive(&h, body).unwrap_err();
        assert!(
            matches!(e, HookError::MalformedSignature { .. }),
            "{bad}: {e:?}"
        );
        assert_eq!(e.status(), http::StatusCode::UNAUTHORIZED);
    }
}

#[test]
fn an_empty_configured_secret_accepts_nothing() {
    let body = GITHUB_PUSH.as_bytes();
    let h = github("push", body);
    let e = verify(Provider::GitHub, &h, body, &Secret::new("")).unwrap_err();
    assert!(matches!(e, HookError::NoSecret), "{e:?}");
}

#[test]
fn unknown_sender_is_refused() {
    let h = headers(&[
        ("Content-Type", "application/json"),
        ("X-Event-Key", "repo:push"),
    ]);
    let e = receive(&h, b"{}").unwrap_err();
    assert!(matches!(e, HookError::UnknownProvider), "{e:?}");
    assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
}

#[test]
fn empty_event_header_is_missing() {
    let body = GITHUB_PUSH.as_bytes();
    let mut h = github("push", body);
    h.insert("X-GitHub-Event", HeaderValue::from_static(""));
    let e = receive(&h, body).unwrap_err();
    assert!(matches!(e, HookError::MissingEvent { .. }), "{e:?}");
}

#[test]
fn missing_delivery_id_is_refused() {
    let body = GITHUB_PUSH.as_bytes();
    let mut h = github("push", body);
    h.remove("X-GitHub-Delivery");
    let e = receive(&h, body).unwrap_err();
    assert!(matches!(e, HookError::MissingDelivery { .. }), "{e:?}");
    let long = "x".repeat(129);
    h.insert("X-GitHub-Delivery", HeaderValue::from_str(&long).unwrap());
    assert!(matches!(
        receive(&h, body).unwrap_err(),
        HookError::MissingDelivery { .. }
    ));
}

#[test]
fn malformed_json_names_line_and_column() {
    let body = b"{\n  \"ref\": \"refs/heads/main\",\n  \"before\": ,\n}";
    let e = receive(&github("push", body), body).unwrap_err();
    match &e {
        HookError::InvalidJson { line, column, .. } => {
            assert_eq!((*line, *column), (3, 13));
        }
        other => panic!("expected invalid JSON, got {other:?}"),
    }
    assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
    assert!(e.to_string().contains("line 3, column 13"), "{e}");
}

#[test]
fn json_of_the_wrong_shape_is_unexpected() {
    let body = br#"{"ref": "refs/heads/main", "before": "a", "after": "b"}"#;
    let e = receive(&github("push", body), body).unwrap_err();
    assert!(matches!(e, HookError::UnexpectedPayload { .. }), "{e:?}");
    assert!(
        std::error::Error::source(&e)
            .unwrap()
            .to_string()
            .contains("repository")
    );
}

#[test]
fn oversized_body_is_413() {
    let e = check_size(DEFAULT_MAX_BODY + 1, DEFAULT_MAX_BODY).unwrap_err();
    assert_eq!(e.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
    let body = GITHUB_PUSH.as_bytes();
    let e = Request::new(&github("push", body), body)
        .receive(&secret(), 100)
        .unwrap_err();
    assert!(matches!(e, HookError::TooLarge { max: 100, .. }), "{e:?}");
}

#[test]
fn unsupported_content_type_is_415() {
    let body = GITHUB_PUSH.as_bytes();
    let mut h = github("push", body);
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    let e = receive(&h, body).unwrap_err();
    assert!(
        matches!(e, HookError::UnsupportedContentType { .. }),
        "{e:?}"
    );
    assert_eq!(e.status(), http::StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Parameters and case do not matter.
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("Application/JSON; charset=utf-8"),
    );
    assert!(receive(&h, body).is_ok());
}

#[test]
fn endpoint_for_one_provider() {
    let body = GITLAB_PUSH.as_bytes();
    let h = gitlab("Push Hook");
    let e = Request::new(&h, body)
        .receive_from(Provider::GitHub, &secret(), DEFAULT_MAX_BODY)
        .unwrap_err();
    assert!(
        matches!(
            e,
            HookError::WrongProvider {
                expected: Provider::GitHub,
                found: Provider::GitLab
            }
        ),
        "{e:?}"
    );
    // Gitea speaks GitHub's headers too, so a GitHub endpoint accepts it.
    let body = GITEA_PUSH.as_bytes();
    let h = gitea("push", body);
    let p = push(
        Request::new(&h, body)
            .receive_from(Provider::GitHub, &secret(), DEFAULT_MAX_BODY)
            .unwrap(),
    );
    assert_eq!(p.provider, Provider::GitHub);
}

#[test]
fn every_error_has_a_status_and_code() {
    let body = GITHUB_PUSH.as_bytes();
    let e = receive(&github("push", body), b"nope").unwrap_err();
    assert_eq!(e.code(), "bad_signature");
    assert_eq!(HookError::NoSecret.status(), 500);
}

#[test]
fn providers_round_trip_through_config_names() {
    for p in [
        Provider::GitHub,
        Provider::Gitea,
        Provider::Gogs,
        Provider::GitLab,
    ] {
        assert_eq!(p.id().parse::<Provider>().unwrap(), p);
        assert_eq!(
            serde_json::to_value(p).unwrap(),
            serde_json::Value::from(p.id())
        );
    }
    assert_eq!("Forgejo".parse::<Provider>().unwrap(), Provider::Gitea);
    assert!("bitbucket".parse::<Provider>().is_err());
}

#[test]
fn hooks_serialize_for_the_run_store() {
    let body = GITHUB_PUSH.as_bytes();
    let hook = receive(&github("push", body), body).unwrap();
    let json = serde_json::to_string(&hook).unwrap();
    assert!(
        json.starts_with(r#"{"kind":"push","provider":"github""#),
        "{json}"
    );
    let back: Hook = serde_json::from_str(&json).unwrap();
    assert_eq!(back, hook);
}

fn arb_headers() -> impl Strategy<Value = HeaderMap> {
    let names = prop::sample::select(vec![
        "X-GitHub-Event",
        "X-GitHub-Delivery",
        "X-Hub-Signature-256",
        "X-Gitea-Event",
        "X-Gitea-Delivery",
        "X-Gitea-Signature",
        "X-Gogs-Event",
        "X-Gogs-Delivery",
        "X-Gogs-Signature",
        "X-Gitlab-Event",
        "X-Gitlab-Token",
        "Idempotency-Key",
        "Content-Type",
    ]);
    let values = prop_oneof![
        Just("push".to_string()),
        Just("ping".to_string()),
        Just("delete".to_string()),
        Just("Push Hook".to_string()),
        Just("System Hook".to_string()),
        Just("application/x-www-form-urlencoded".to_string()),
        Just("sha256=".to_string()),
        "[ -~]{0,70}",
    ];
    prop::collection::vec((names, values), 0..10).prop_map(|pairs| {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.append(k, v);
            }
        }
        h
    })
}

fn arb_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..400),
        Just(GITHUB_PUSH.as_bytes().to_vec()),
        Just(GITLAB_PUSH.as_bytes().to_vec()),
        Just(GITEA_DELETE.as_bytes().to_vec()),
        // Valid JSON with fields of the wrong types.
        Just(br#"{"ref":1,"before":[],"after":{},"repository":null,"commits":[1]}"#.to_vec()),
        Just(br#"{"object_kind":"push","ref":"x","before":"","after":"","project":{"path_with_namespace":""}}"#.to_vec()),
        Just(b"payload=%7B%22ref%22%3A".to_vec()),
    ]
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_requests(h in arb_headers(), body in arb_body()) {
        for p in [Provider::GitHub, Provider::Gitea, Provider::Gogs, Provider::GitLab] {
            let _ = verify(p, &h, &body, &secret());
            let _ = parse(p, &h, &body);
            let _ = delivery_id(p, &h);
        }
        let _ = detect(&h);
        if let Err(e) = Request::new(&h, &body).receive(&secret(), 300) {
            let shown = format!("{e} {e:?}");
            prop_assert!(!shown.contains(SECRET));
            prop_assert!(e.status().as_u16() >= 400);
        }
    }
}
