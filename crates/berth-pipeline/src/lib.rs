//! berth's run engine, starting with its two pure inputs:
//!
//! - [`changes`]: which services a run must build and deploy, from `git diff` between the
//!   commit an environment last deployed and the one to deploy (monorepo aware);
//! - [`detect`](mod@detect): buildpack-style detection of a directory without a Dockerfile (Node, Python,
//!   Ruby, static site, prebuilt binary) and the Dockerfile to build it with.
//!
//! Why here and not in `berth-config`: the architecture gives change detection to the pipeline
//! (it is the first step of a run), and keeping `berth-config` free of processes (git) and of
//! image-building knowledge lets the server, editors and `berth schema` use it cheaply.
//! Detection sits with it because both the run engine (to build a service without a
//! Dockerfile) and `berth init` (to explain which detector matched) need it, and neither the
//! builder nor the config should know about stacks.
//!
//! ```text
//!  berth-config::Config ──► changes::changed_services(repo, from, to) ──► [ServiceChange]
//!  build.context w/o Dockerfile ──► detect::detect(dir, base) ──► Detection { Dockerfile }
//! ```
//!
//! Tests run real `git` in temporary repositories; nothing here talks to a cluster.

pub mod changes;
pub mod data_step;
pub mod detect;
pub mod engine;
pub mod executor;
pub mod init;
pub mod notify;
pub mod pod_logs;
pub mod pull_secret;
pub mod run;

pub use changes::{ChangeError, ChangeReason, ServiceChange, changed_files, changed_services};
pub use detect::{Base, DetectError, Detection, Detector, detect};

#[cfg(test)]
mod tests;
