//! berth-build's integration tests: real registry (base images through the docker.io mirror),
//! real runc, real skopeo/umoci. One binary; each test has its own store, context and registry
//! repository (`berth_testkit::TestContext`). They fail, never skip, without the environment.

#![allow(clippy::print_stderr)] // timings of the real runs are worth seeing with --nocapture

mod add;
mod build;
mod mounts;
mod platforms;
mod registry;
mod sandbox;
mod support;
