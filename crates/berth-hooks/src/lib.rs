//! Webhooks from git hosting services, for the delivery server (`berth serve`).
//!
//! [`webhook`] turns one HTTP request (headers and raw body) from GitHub, Gitea, Gogs or GitLab
//! into a [`webhook::Hook`]: it recognises the sender by its event header, checks the body size,
//! verifies the HMAC-SHA256 signature (or GitLab's shared token) in constant time and parses the
//! push payload into one provider-neutral [`webhook::Push`]. It is pure — no sockets, no axum —
//! so the server decides how to answer, using [`webhook::HookError::status`].
//!
//! The crate also ships `post-receive-github`, a hook script for a bare git repository that
//! sends GitHub's push payload, signed, to a URL: [`post_receive`] installs it. End-to-end tests
//! use it to drive the server from a real `git push`.

pub mod post_receive;
pub mod webhook;

pub use webhook::{
    CommitInfo, DEFAULT_MAX_BODY, Hook, HookError, Person, Provider, Push, RepositoryIds, Request,
    check_size, delivery_id, detect, parse, verify,
};
