//! berth's typed model of a Dockerfile.
//!
//! String fields of [`Instruction`]s hold the text as written (quotes and `$var`s included)
//! until [`Instruction::expand`](crate::Instruction::expand) is applied with a
//! [`Scope`](crate::Scope); `FROM` lines and stage references (`COPY --from`,
//! `RUN --mount=from=`) are already resolved when [`Dockerfile::parse`](crate::Dockerfile::parse)
//! returns, because the stage graph depends on them.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::scope::BuildArgs;
use crate::span::Span;

/// A parsed Dockerfile: parser directives, global `ARG`s and stages.
#[derive(Debug, Clone, PartialEq)]
pub struct Dockerfile {
    /// The file name used in error messages.
    pub file_name: String,
    /// `# syntax=`, `# escape=`, `# check=`.
    pub directives: Directives,
    /// `ARG`s before the first `FROM`, as written.
    pub global_args: Vec<ArgDecl>,
    /// The stages, in file order.
    pub stages: Vec<Stage>,
    /// Values of the global scope (predefined platform ARGs + global ARGs), used by `FROM`.
    pub(crate) global_scope: BTreeMap<String, String>,
    /// The build arguments the file was parsed with.
    pub(crate) args: BuildArgs,
}

/// Parser directives from the top of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// `# syntax=` (recorded; berth has one built-in frontend and ignores it otherwise).
    pub syntax: Option<String>,
    /// The escape character: `\` by default or `` ` ``.
    pub escape: char,
    /// `# check=` (recorded, not interpreted).
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Self {
            syntax: None,
            escape: '\\',
            check: None,
        }
    }
}

/// One `FROM` and the instructions up to the next.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// `AS name`, lower-cased as BuildKit does.
    pub name: Option<String>,
    /// What the stage starts from (expanded with the global scope).
    pub base: BaseRef,
    /// `--platform=`, expanded.
    pub platform: Option<String>,
    /// The instructions after `FROM`.
    pub instructions: Vec<Instruction>,
    /// Where the `FROM` is.
    pub span: Span,
}

/// The base of a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseRef {
    /// An image reference, e.g. `debian:bookworm-slim`.
    Image(String),
    /// An earlier stage of the same file (index into [`Dockerfile::stages`]).
    Stage(usize),
    /// `FROM scratch`: an empty filesystem.
    Scratch,
}

/// One `ARG` name with its optional default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    /// The name.
    pub name: String,
    /// `=default`, as written (expanded by [`Instruction::expand`](crate::Instruction::expand)).
    pub default: Option<String>,
}

/// Shell form or exec form of `RUN`, `CMD`, `ENTRYPOINT`, `HEALTHCHECK CMD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Shell form: run with the stage's `SHELL` (default `/bin/sh -c`). Line continuations are
    /// removed; variables are left to the shell.
    Shell(String),
    /// Exec form (JSON array): run directly, no variable expansion.
    Exec(Vec<String>),
}

/// A here-document (`<<EOF … EOF`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The body, without the terminating delimiter line.
    pub content: String,
    /// `false` when the delimiter was quoted (`<<'EOF'`): no variable expansion.
    pub expand: bool,
}

/// The body of `RUN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The command. With a heredoc, the shell form holds the first line (e.g. `<<EOF` or
    /// `<<EOF bash`) and [`Run::heredocs`] the bodies.
    pub command: Command,
    /// Here-documents following the command line.
    pub heredocs: Vec<Heredoc>,
    /// `--mount=` flags.
    pub mounts: Vec<Mount>,
    /// `--network=`.
    pub network: Network,
}

impl Run {
    /// The script to hand to the shell, following BuildKit: a RUN that is exactly one heredoc
    /// runs the heredoc body; otherwise heredocs are appended to the command line so the shell
    /// reads them itself. `None` for exec form.
    pub fn shell_script(&self) -> Option<String> {
        let Command::Shell(line) = &self.command else {
            return None;
        };
        let Some(first) = self.heredocs.first() else {
            return Some(line.clone());
        };
        let trimmed = line.trim();
        let simple = self.heredocs.len() == 1
            && trimmed.starts_with("<<")
            && !trimmed.contains(char::is_whitespace);
        if simple {
            return Some(first.content.clone());
        }
        let delim = heredoc_delimiter(trimmed).unwrap_or_default();
        let mut full = line.clone();
        for doc in &self.heredocs {
            full.push('\n');
            full.push_str(&doc.content);
            full.push_str(&delim);
        }
        Some(full)
    }
}

fn heredoc_delimiter(line: &str) -> Option<String> {
    let rest = &line[line.find("<<")? + 2..];
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let word: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
    Some(word.chars().filter(|c| !matches!(c, '\'' | '"')).collect())
}

/// `RUN --network=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// The builder's default network.
    #[default]
    Default,
    /// No network at all.
    None,
    /// The host's network namespace.
    Host,
}

/// Where a mount or `COPY --from` takes its files from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromRef {
    /// Another stage of this Dockerfile (index into [`Dockerfile::stages`]).
    Stage(usize),
    /// An image reference.
    Image(String),
}

/// `RUN --mount=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// What kind of mount, with its kind-specific settings.
    pub kind: MountKind,
    /// Where it is mounted in the RUN container.
    pub target: String,
    /// `from=` (bind and cache mounts).
    pub from: Option<FromRef>,
    /// `source=`: path inside `from` (or the build context).
    pub source: Option<String>,
    /// The `--mount` value as written, so it can be re-read after expansion.
    pub raw: String,
}

/// The kinds of `RUN --mount` berth supports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    /// `type=bind` (the default): read-only unless `rw`.
    Bind {
        /// `rw` / `readwrite`: writes are allowed but discarded after the RUN.
        read_write: bool,
    },
    /// `type=cache`: a persistent directory shared between builds.
    Cache {
        /// `id=`; defaults to the target.
        id: String,
        /// `sharing=`.
        sharing: CacheSharing,
        /// `ro` / `readonly`.
        read_only: bool,
        /// `mode=` (octal), default `0755`.
        mode: u32,
        /// `uid=`, default 0.
        uid: u32,
        /// `gid=`, default 0.
        gid: u32,
    },
    /// `type=tmpfs`.
    Tmpfs {
        /// `size=` in bytes, if limited.
        size: Option<u64>,
    },
    /// `type=secret`: a secret file (or env var) that never lands in a layer.
    Secret {
        /// `id=`; defaults to the target's file name.
        id: String,
        /// `required=`.
        required: bool,
        /// `env=`: expose as an environment variable instead of (or as well as) a file.
        env: Option<String>,
        /// `mode=` (octal), default `0400`.
        mode: u32,
        /// `uid=`, default 0.
        uid: u32,
        /// `gid=`, default 0.
        gid: u32,
    },
}

/// `sharing=` of a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheSharing {
    /// Concurrent writers share the directory.
    #[default]
    Shared,
    /// Each concurrent writer gets its own copy.
    Private,
    /// Writers wait for each other.
    Locked,
}

/// A source of `COPY` / `ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopySource {
    /// A path (or glob) in the build context or the `--from` stage/image.
    Path(String),
    /// A heredoc becomes a file.
    Heredoc(Heredoc),
}

/// The body of `COPY` (and, with [`Add`], of `ADD`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// What to copy.
    pub sources: Vec<CopySource>,
    /// Where to copy to.
    pub dest: String,
    /// `--from=` (stage or image); `None` means the build context.
    pub from: Option<FromRef>,
    /// `--chown=user:group`.
    pub chown: Option<String>,
    /// `--chmod=` (octal or symbolic, as written).
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--exclude=` patterns.
    pub excludes: Vec<String>,
    /// `--parents`: keep each source's parent directories (relative to the context or stage
    /// root, or to a `/./` pivot in the source) below the destination.
    pub parents: bool,
}

/// The body of `ADD`: local files only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Add {
    /// The `COPY`-like part (`from` is always `None`).
    pub copy: Copy,
    /// Local tar archives are extracted into `dest` (default true; `--unpack=false` turns it off).
    pub extract_archives: bool,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    /// `HEALTHCHECK [options] CMD …`.
    Check {
        /// The probe.
        command: Command,
        /// `--interval=`.
        interval: Option<Duration>,
        /// `--timeout=`.
        timeout: Option<Duration>,
        /// `--start-period=`.
        start_period: Option<Duration>,
        /// `--start-interval=`.
        start_interval: Option<Duration>,
        /// `--retries=`.
        retries: Option<u32>,
    },
}

/// One instruction inside a stage; each variant carries its source span.
#[derive(Debug, Clone, PartialEq)]
pub enum Instruction {
    /// `RUN`.
    Run {
        /// Where the instruction starts.
        span: Span,
        /// Its content.
        run: Run,
    },
    /// `COPY`.
    Copy {
        /// Where the instruction starts.
        span: Span,
        /// Its content.
        copy: Copy,
    },
    /// `ADD` (local files only).
    Add {
        /// Where the instruction starts.
        span: Span,
        /// Its content.
        add: Add,
    },
    /// `ENV k=v …`.
    Env {
        /// Where the instruction starts.
        span: Span,
        /// The pairs, in order.
        vars: Vec<(String, String)>,
    },
    /// `ARG name[=default] …` inside a stage.
    Arg {
        /// Where the instruction starts.
        span: Span,
        /// The declarations.
        args: Vec<ArgDecl>,
    },
    /// `WORKDIR`.
    Workdir {
        /// Where the instruction starts.
        span: Span,
        /// The directory.
        path: String,
    },
    /// `USER user[:group]`.
    User {
        /// Where the instruction starts.
        span: Span,
        /// The user spec.
        user: String,
    },
    /// `EXPOSE port[/proto] …`.
    Expose {
        /// Where the instruction starts.
        span: Span,
        /// The ports as written.
        ports: Vec<String>,
    },
    /// `LABEL k=v …`.
    Label {
        /// Where the instruction starts.
        span: Span,
        /// The pairs, in order.
        labels: Vec<(String, String)>,
    },
    /// `ENTRYPOINT`.
    Entrypoint {
        /// Where the instruction starts.
        span: Span,
        /// The entrypoint.
        command: Command,
    },
    /// `CMD`.
    Cmd {
        /// Where the instruction starts.
        span: Span,
        /// The command.
        command: Command,
    },
    /// `HEALTHCHECK`.
    Healthcheck {
        /// Where the instruction starts.
        span: Span,
        /// The check.
        check: Healthcheck,
    },
    /// `STOPSIGNAL`.
    Stopsignal {
        /// Where the instruction starts.
        span: Span,
        /// The signal as written (`SIGTERM`, `15`).
        signal: String,
    },
    /// `VOLUME`.
    Volume {
        /// Where the instruction starts.
        span: Span,
        /// The paths.
        paths: Vec<String>,
    },
    /// `SHELL ["executable", "params"…]`.
    Shell {
        /// Where the instruction starts.
        span: Span,
        /// The shell command line.
        shell: Vec<String>,
    },
    /// `ONBUILD <instruction>`: recorded in the image config, run by images built from it.
    Onbuild {
        /// Where the instruction starts.
        span: Span,
        /// The trigger instruction as written, e.g. `RUN make`.
        trigger: String,
    },
    /// `MAINTAINER` (deprecated; sets the image author).
    Maintainer {
        /// Where the instruction starts.
        span: Span,
        /// The author.
        name: String,
    },
}

impl Instruction {
    /// Where the instruction starts.
    pub fn span(&self) -> Span {
        match self {
            Self::Run { span, .. }
            | Self::Copy { span, .. }
            | Self::Add { span, .. }
            | Self::Env { span, .. }
            | Self::Arg { span, .. }
            | Self::Workdir { span, .. }
            | Self::User { span, .. }
            | Self::Expose { span, .. }
            | Self::Label { span, .. }
            | Self::Entrypoint { span, .. }
            | Self::Cmd { span, .. }
            | Self::Healthcheck { span, .. }
            | Self::Stopsignal { span, .. }
            | Self::Volume { span, .. }
            | Self::Shell { span, .. }
            | Self::Onbuild { span, .. }
            | Self::Maintainer { span, .. } => *span,
        }
    }

    /// The instruction keyword, upper case.
    pub fn keyword(&self) -> &'static str {
        match self {
            Self::Run { .. } => "RUN",
            Self::Copy { .. } => "COPY",
            Self::Add { .. } => "ADD",
            Self::Env { .. } => "ENV",
            Self::Arg { .. } => "ARG",
            Self::Workdir { .. } => "WORKDIR",
            Self::User { .. } => "USER",
            Self::Expose { .. } => "EXPOSE",
            Self::Label { .. } => "LABEL",
            Self::Entrypoint { .. } => "ENTRYPOINT",
            Self::Cmd { .. } => "CMD",
            Self::Healthcheck { .. } => "HEALTHCHECK",
            Self::Stopsignal { .. } => "STOPSIGNAL",
            Self::Volume { .. } => "VOLUME",
            Self::Shell { .. } => "SHELL",
            Self::Onbuild { .. } => "ONBUILD",
            Self::Maintainer { .. } => "MAINTAINER",
        }
    }
}
