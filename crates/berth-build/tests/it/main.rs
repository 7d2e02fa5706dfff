//! berth-build's integration tests: real registry (base images through the docker.io mirror),
//! real runc, real skopeo/umoci. One binary; each test has its own store, context and registry
//! repository (`berth_testkit::TestContext`). They fail, never skip, without the environment.

mod build;
mod support;
