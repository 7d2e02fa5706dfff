//! [`BuildError`]: what can go wrong executing a Dockerfile.

use std::path::{Path, PathBuf};

use crate::span::Location;

/// Everything that can go wrong building an image. Variants about one instruction name the
/// Dockerfile, line and column.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The Dockerfile (or `.dockerignore`) is invalid.
    #[error(transparent)]
    Frontend(#[from] crate::Error),
    /// A registry operation failed (pulling a base image, pushing the result).
    #[error(transparent)]
    Registry(#[from] berth_registry::RegistryError),
    /// A file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A path inside a root file system or build context goes through more than 40 symbolic
    /// links (a loop, or a chain built to outlast the resolver and escape the root).
    #[error(
        "`{path}` goes through more than 40 symbolic links (a loop?) inside {}; berth refuses to follow it",
        root.display()
    )]
    SymlinkLoop {
        /// The path as written.
        path: String,
        /// The root it was resolved in.
        root: PathBuf,
    },
    /// A layer entry of an image names a place outside the image's root file system (an
    /// absolute or `..` hardlink target); the image is hostile or broken.
    #[error("layer {}: entry `{entry}` {reason}; berth refuses to apply it", blob.display())]
    HostileLayer {
        /// The layer blob.
        blob: PathBuf,
        /// The entry's name.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `RUN` command exited with a non-zero status.
    #[error("{location}: `{command}` exited with code {exit_code}; last output:\n{tail}")]
    RunFailed {
        /// The RUN instruction.
        location: Location,
        /// The command, shortened.
        command: String,
        /// Its exit status.
        exit_code: i32,
        /// The last lines it printed.
        tail: String,
    },
    /// A `RUN` command did not finish within the step deadline and was killed.
    #[error(
        "{location}: RUN step {step} (`{command}`) did not finish within {after} and was killed; raise the limit with --step-timeout (e.g. --step-timeout 2h) or BERTH_STEP_TIMEOUT; last output:\n{tail}"
    )]
    RunTimeout {
        /// The RUN instruction.
        location: Location,
        /// Its position among the build's steps.
        step: usize,
        /// The command, shortened.
        command: String,
        /// The deadline, as written (`10m`).
        after: String,
        /// The last lines it printed.
        tail: String,
    },
    /// A `RUN` command ran into a limit of its sandbox (memory: OOM-killed; pids: forks
    /// failed).
    #[error("{location}: RUN step {step} (`{command}`) {reason}; last output:\n{tail}")]
    RunLimit {
        /// The RUN instruction.
        location: Location,
        /// Its position among the build's steps.
        step: usize,
        /// The command, shortened.
        command: String,
        /// Which limit, and how to raise it.
        reason: String,
        /// The last lines it printed.
        tail: String,
    },
    /// `RUN --network=host` where the repository may not have the host's network (a server's
    /// repository without `allow_host_network`).
    #[error(
        "{location}: `RUN --network=host` asks for the build host's network, which this server does not allow for the repository (its loopback services would answer anyone who can push); drop `--network=host`, or the server's operator allows it with `allow_host_network: true` for the repository in berth-serve.yaml"
    )]
    HostNetworkRefused {
        /// The RUN instruction.
        location: Location,
    },
    /// The OCI runtime could not be started or failed itself.
    #[error(
        "{location}: the OCI runtime `{runtime}` failed: {message}. Is runc installed and are we root? (`berth doctor` checks)"
    )]
    Runtime {
        /// The RUN instruction.
        location: Location,
        /// The runtime binary.
        runtime: String,
        /// What went wrong.
        message: String,
    },
    /// An instruction cannot be carried out (missing source, unknown user, …).
    #[error("{location}: {instruction}: {reason}")]
    Step {
        /// The instruction.
        location: Location,
        /// Its keyword.
        instruction: &'static str,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A feature the frontend accepts but the executor does not implement yet.
    #[error("{location}: {what} is not supported by berth's builder yet; {hint}")]
    Unsupported {
        /// Where.
        location: Location,
        /// What.
        what: String,
        /// What to do instead.
        hint: String,
    },
    /// RUN for a foreign architecture cannot be emulated.
    #[error("{location}: {source}")]
    Emulation {
        /// The RUN instruction.
        location: Location,
        /// Why.
        #[source]
        source: super::emulation::EmulationError,
    },
    /// The content store is inconsistent or holds something unreadable.
    #[error("content store: {0}")]
    Store(String),
}

/// Maps an IO error on `path` into [`BuildError::Io`].
pub(crate) fn io_err(path: &Path) -> impl Fn(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    }
}
