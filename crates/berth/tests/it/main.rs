//! berth's integration tests: one binary, run against the real test environment
//! (`testenv/berth-testenv up`). Each test gets its own namespace and registry repository from
//! `berth_testkit::TestContext`.

mod build;
mod canary;
mod common;
mod copy;
mod copy_mysql;
mod data;
mod deploy;
mod doctor;
mod examples;
mod guide;
mod init_layouts;
mod install;
mod notify;
mod pinning;
mod preflight;
mod pull_secret;
mod real_node;
mod rig;
mod run;
mod scoped_identity;
mod serve;
mod serve_cancel;
mod serve_events;
mod serve_policy;
mod serve_session;
mod serve_ui;
mod templates;
