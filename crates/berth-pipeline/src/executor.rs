//! The executor seam: where a run's build and test steps run.
//!
//! The engine ([`crate::run`], [`crate::engine`]) decides what to build, in which order, what
//! to push and when to stop; a [`StepExecutor`] only carries out one service's build or test
//! and reports on the sink it is given. [`InProcess`], the default, runs them in this process
//! (the builder, the OCI runtime on this host). Kubernetes Jobs are the second implementation
//! planned (on the target cluster or a build cluster: the distributed engine is Kubernetes
//! itself, never a home-made worker pool).
//!
//! What a second implementation must provide, to stay interchangeable with [`InProcess`]:
//!
//! - `build`: the image of `request` built with `opts` (platforms, secrets, sandbox, cache
//!   scope), pushed under `request.tags` when `request.push` is set, and its manifest digest
//!   in [`BuiltImage`]; an image built without pushing must be reachable by a later `test`
//!   call and by the push pass (the same request again with `push`), which the engine expects
//!   to be quick (every step a cache hit). Its events go to `sink` as the builder's own do
//!   (`build` step, RUN output on `run`), so the CLI, the server and the UI show them alike.
//! - `test`: the service's test command run in a fresh container of that image, as the
//!   image's user, with its environment, under `opts.sandbox` (network, limits,
//!   `test_timeout`), output lines to `sink` on the `test` step; a failure is a
//!   [`RunError::Test`] saying the exit and the last output.
//! - Both futures stop their work when dropped (the engine drops them to cancel a run or when
//!   a sibling build failed): no process, Job or scratch space may outlive them.
//! - Neither prints, and neither reads berth.yaml: everything comes in the arguments.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use berth_build::exec::{BuildError, BuildOptions, BuildRequest, BuiltImage};
use berth_types::{Digest, Event, EventSink, Level, Step};

use crate::run::RunError;

/// A boxed future of a [`StepExecutor`].
pub type StepFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs one service's build or test for the engine. See the module docs for what an
/// implementation must provide.
pub trait StepExecutor: Send + Sync {
    /// Builds `request` with `opts` (and pushes it when `request.push` is set).
    fn build<'a>(
        &'a self,
        opts: &'a BuildOptions,
        request: &'a BuildRequest,
        sink: &'a dyn EventSink,
    ) -> StepFuture<'a, Result<BuiltImage, BuildError>>;

    /// Runs `command` (`sh -c`) of `service` in a fresh copy of the image `manifest` that
    /// [`StepExecutor::build`] made.
    fn test<'a>(
        &'a self,
        opts: &'a BuildOptions,
        service: &'a str,
        command: &'a str,
        manifest: &'a Digest,
        sink: Arc<dyn EventSink>,
    ) -> StepFuture<'a, Result<(), RunError>>;
}

/// Builds with berth's builder and tests through the OCI runtime, in this process.
#[derive(Clone, Copy, Debug, Default)]
pub struct InProcess;

impl StepExecutor for InProcess {
    fn build<'a>(
        &'a self,
        opts: &'a BuildOptions,
        request: &'a BuildRequest,
        sink: &'a dyn EventSink,
    ) -> StepFuture<'a, Result<BuiltImage, BuildError>> {
        Box::pin(berth_build::exec::build(opts, request, sink))
    }

    fn test<'a>(
        &'a self,
        opts: &'a BuildOptions,
        service: &'a str,
        command: &'a str,
        manifest: &'a Digest,
        sink: Arc<dyn EventSink>,
    ) -> StepFuture<'a, Result<(), RunError>> {
        Box::pin(test_image(opts, service, command, manifest, sink))
    }
}

/// Runs the service's `test` command (`sh -c`) in a fresh copy of its image, through the
/// OCI runtime, as the image's user, in its working directory, with its environment.
async fn test_image(
    opts: &BuildOptions,
    service: &str,
    test: &str,
    manifest: &Digest,
    sink: Arc<dyn EventSink>,
) -> Result<(), RunError> {
    use berth_build::exec::runtime::{ProcessSpec, run};
    let store = &opts.store;
    let rootfs = store.temp_path(&format!("test-{service}"));
    let bundle = store.temp_path(&format!("test-bundle-{service}"));
    let cleanup = || {
        let _ = std::fs::remove_dir_all(&rootfs);
        let _ = std::fs::remove_dir_all(&bundle);
    };
    let config = berth_build::exec::unpack_image(store, manifest, &rootfs).map_err(|e| {
        cleanup();
        RunError::Build {
            service: service.to_string(),
            source: Box::new(e),
        }
    })?;
    let rc = &config.config;
    let mut spec = ProcessSpec::simple(
        &rootfs,
        vec!["/bin/sh".into(), "-c".into(), test.into()],
        rc.env.clone(),
        &rc.working_dir,
    );
    if !rc.user.is_empty()
        && let Ok((uid, gid, groups)) = berth_build::exec::resolve_user(Some(&rootfs), &rc.user)
    {
        spec.uid = uid;
        spec.gid = gid;
        spec.additional_gids = groups;
    }
    let sandbox = &opts.sandbox;
    spec.network = sandbox.network;
    sandbox.apply(&mut spec, sandbox.test_timeout);
    sink.emit(Event::Message {
        step: Step::Test.into(),
        level: Level::Info,
        message: format!("testing {service}: {test}"),
    });
    let name = service.to_string();
    let on_line = move |_: bool, line: &str| {
        sink.emit(Event::Message {
            step: Step::Test.into(),
            level: Level::Info,
            message: format!("{name} | {line}"),
        })
    };
    let result = run(&opts.runtime, &bundle, &spec, &on_line).await;
    cleanup();
    result.map_err(|e| RunError::Test {
        service: service.to_string(),
        reason: match e {
            berth_build::exec::runtime::RunError::Exit { code, tail } => {
                format!(
                    "`{test}` exited with code {code}; last output:\n{}",
                    tail.join("\n")
                )
            }
            berth_build::exec::runtime::RunError::Runtime(m) => m,
            berth_build::exec::runtime::RunError::Timeout { after, tail } => format!(
                "`{test}` did not finish within {} and was killed with every process it started; raise the limit with `test: {{command, timeout}}` in berth.yaml or --test-timeout; last output:\n{}",
                berth_build::exec::runtime::display_duration(after),
                tail.join("\n")
            ),
            berth_build::exec::runtime::RunError::Limit { reason, tail } => {
                format!("`{test}` {reason}; last output:\n{}", tail.join("\n"))
            }
        },
    })
}
