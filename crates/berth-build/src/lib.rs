//! berth's image builder: a Dockerfile frontend (pure functions from text to a typed build
//! plan) and an executor ([`exec`]) that pulls base images into a local OCI content store,
//! assembles root filesystems, runs `RUN` through runc, writes deterministic layers, keeps a
//! build cache and stores, exports and pushes the image — with no Docker daemon.
//!
//! # Design
//!
//! ```text
//! Dockerfile text ──parse──▶ Dockerfile { directives, global_args, stages }
//!   (parse-dockerfile → berth model; FROM expanded with the global ARG scope;
//!    stage references resolved; every unsupported flag/instruction is an error)
//!
//! Dockerfile::build_order(target) ──▶ [stage indexes, dependencies first]
//!
//! for each stage, the builder (later) keeps a Scope seeded with the base image's ENV and calls
//! Instruction::expand(&mut scope) before executing each instruction: BuildKit's expansion
//! rules, applied when the base image's environment is known.
//!
//! .dockerignore text ──DockerIgnore::parse──▶ excluded(path) / can_skip_dir(dir)
//! ```
//!
//! Parsing and expansion are separate because BuildKit expands instruction words with the
//! base image's `ENV`, which only the builder (after pulling the image config) knows.
//!
//! # Modules
//!
//! | module | owns |
//! |---|---|
//! | `model` | [`Dockerfile`], [`Stage`], [`Instruction`] and their parts |
//! | `parse` | conversion from `parse-dockerfile`, flag checking, stage references |
//! | `mount` | `RUN --mount=` values |
//! | `words` | BuildKit's word splitting, `KEY=value` lists, continuations, durations |
//! | [`lex`] | `$var` / `${var:-x}` expansion (port of BuildKit's `shell/lex.go`) |
//! | `scope` | [`BuildArgs`], [`Platform`], [`Scope`], [`Instruction::expand`] |
//! | `graph` | stage dependencies and [`Dockerfile::build_order`] |
//! | `dockerignore` | [`DockerIgnore`] with moby `patternmatcher` semantics |
//! | `error` | [`Error`]: every variant carries `file:line:column` |
//! | [`exec`] | the executor: store, layers, snapshots, runtime, cache, output ([`exec::build`]) |
//!
//! # Not supported (each is a clear error)
//!
//! `ADD` of URLs and git repositories, `ADD --checksum`/`--keep-git-dir`,
//! `RUN --security`/`--device`, `RUN --mount=type=ssh`, heredocs that are not the first word
//! of a `RUN`, and any flag or instruction berth does not know.

mod dockerignore;
mod error;
pub mod exec;
mod graph;
pub mod lex;
mod model;
mod mount;
mod parse;
mod scope;
mod span;
mod words;

pub use dockerignore::DockerIgnore;
pub use error::{Error, Result};
pub use model::{
    Add, ArgDecl, BaseRef, CacheSharing, Command, Copy, CopySource, Directives, Dockerfile,
    FromRef, Healthcheck, Heredoc, Instruction, Mount, MountKind, Network, Run, Stage,
};
pub use scope::{BuildArgs, Platform, Scope};
pub use span::{Location, Span};

impl Dockerfile {
    /// Parses `text` (the contents of `file_name`) with the given build arguments.
    ///
    /// `FROM` lines are expanded with the global ARG scope and stage references are resolved
    /// here; all other words stay as written until [`Instruction::expand`].
    pub fn parse(file_name: &str, text: &str, args: &BuildArgs) -> Result<Self> {
        parse::parse(file_name, text, args)
    }
}

#[cfg(test)]
mod tests;
