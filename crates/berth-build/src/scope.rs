//! Build arguments, platforms and the per-stage variable scope.
//!
//! BuildKit's rules, which this module follows:
//! - the *global scope* (used only by `FROM`) holds the predefined platform ARGs and the ARGs
//!   declared before the first `FROM`;
//! - a stage starts with no ARGs: a global ARG is visible only after `ARG NAME` redeclares it;
//! - an ARG's value is the `--build-arg` if given, else its own default, else the global value
//!   (for a redeclared global ARG), else the predefined value (`TARGETARCH`…), else unset;
//! - ENV always wins over an ARG of the same name;
//! - all words of one instruction are expanded with the scope *before* it (so
//!   `ENV a=1 b=$a` sees the old `a`).

use std::collections::BTreeMap;
use std::fmt;

use crate::error::{Error, Result};
use crate::lex::{LexError, Lexer};
use crate::model::*;
use crate::span::Location;

/// An OCI platform such as `linux/amd64` or `linux/arm/v7`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, `arm`…
    pub architecture: String,
    /// `v7`, `v8`…
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Self::new(os, arch, None)),
            [os, arch, v] if ok(os) && ok(arch) && ok(v) => Ok(Self::new(os, arch, Some(v))),
            _ => Err(format!(
                "invalid platform {s:?}; write os/arch[/variant], e.g. linux/amd64"
            )),
        }
    }

    /// A platform from its parts.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        Self {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        }
    }

    /// `linux/<arch of this machine>`, in OCI architecture names.
    pub fn host_linux() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Self::new("linux", arch, None)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// `--build-arg` values and the platforms that define the predefined ARGs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildArgs {
    /// `--build-arg NAME=value`.
    pub values: BTreeMap<String, String>,
    /// The platform being built for (`TARGETPLATFORM`…).
    pub target_platform: Platform,
    /// The platform doing the build (`BUILDPLATFORM`…).
    pub build_platform: Platform,
}

impl Default for BuildArgs {
    fn default() -> Self {
        Self::new(Platform::host_linux())
    }
}

impl BuildArgs {
    /// No build args; build and target platform both `platform`.
    pub fn new(platform: Platform) -> Self {
        Self {
            values: BTreeMap::new(),
            target_platform: platform.clone(),
            build_platform: platform,
        }
    }

    /// Adds `--build-arg name=value`.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.values.insert(name.into(), value.into());
        self
    }

    /// The predefined platform ARGs (`TARGETPLATFORM`, `TARGETOS`, `TARGETARCH`,
    /// `TARGETVARIANT`, and the same for `BUILD…`).
    pub fn predefined(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        for (prefix, p) in [
            ("TARGET", &self.target_platform),
            ("BUILD", &self.build_platform),
        ] {
            m.insert(format!("{prefix}PLATFORM"), p.to_string());
            m.insert(format!("{prefix}OS"), p.os.clone());
            m.insert(format!("{prefix}ARCH"), p.architecture.clone());
            m.insert(
                format!("{prefix}VARIANT"),
                p.variant.clone().unwrap_or_default(),
            );
        }
        m
    }
}

/// The value of an `ARG name[=default]` (default already expanded): build arg, own default,
/// global value, predefined value, or unset.
pub(crate) fn resolve_arg(
    name: &str,
    default: Option<String>,
    args: &BuildArgs,
    global_scope: &BTreeMap<String, String>,
) -> Option<String> {
    args.values
        .get(name)
        .cloned()
        .or(default)
        .or_else(|| global_scope.get(name).cloned())
        .or_else(|| args.predefined().remove(name))
}

/// The variables visible at one point of a stage. Drive it through the stage with
/// [`Instruction::expand`]; read [`Scope::env`] for the image config and [`Scope::run_env`]
/// for the environment of a RUN.
#[derive(Debug, Clone)]
pub struct Scope {
    lexer: Lexer,
    env: Vec<(String, String)>,
    args: Vec<(String, Option<String>)>,
    global: BTreeMap<String, String>,
    build_args: BuildArgs,
}

impl Scope {
    /// The variable's value: ENV first, then declared ARGs.
    pub fn lookup(&self, name: &str) -> Option<String> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| {
                self.args
                    .iter()
                    .find(|(k, _)| k == name)
                    .and_then(|(_, v)| v.clone())
            })
    }

    /// Expands one word with this scope.
    pub fn expand(&self, word: &str) -> Result<String, LexError> {
        self.lexer.expand(word, &|k| self.lookup(k))
    }

    fn expand_heredoc(&self, text: &str) -> Result<String, LexError> {
        self.lexer
            .without_quotes()
            .expand(text, &|k| self.lookup(k))
    }

    /// The image environment (base image ENV plus this stage's ENV), in order.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// The environment of a RUN: [`Scope::env`] plus declared ARGs that have a value and are not
    /// shadowed by ENV. ARGs are not persisted in the image.
    pub fn run_env(&self) -> Vec<(String, String)> {
        let mut out = self.env.clone();
        for (k, v) in &self.args {
            if let Some(v) = v
                && !out.iter().any(|(ek, _)| ek == k)
            {
                out.push((k.clone(), v.clone()));
            }
        }
        out
    }

    /// Sets an ENV variable (replacing an earlier value in place).
    pub fn set_env(&mut self, name: &str, value: String) {
        match self.env.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.env.push((name.to_owned(), value)),
        }
    }

    /// Declares an ARG; `default` must already be expanded.
    pub fn declare_arg(&mut self, name: &str, default: Option<String>) {
        let value = resolve_arg(name, default, &self.build_args, &self.global);
        match self.args.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.args.push((name.to_owned(), value)),
        }
    }
}

impl Dockerfile {
    /// A scope for the start of stage `stage`, seeded with the base's environment (the base
    /// image's config `Env`, or the final [`Scope::env`] of the parent stage).
    pub fn stage_scope(&self, base_env: &[(String, String)]) -> Scope {
        Scope {
            lexer: Lexer::new(self.directives.escape),
            env: base_env.to_vec(),
            args: Vec::new(),
            global: self.global_scope.clone(),
            build_args: self.args.clone(),
        }
    }

    /// The build arguments this file was parsed with.
    pub fn build_args(&self) -> &BuildArgs {
        &self.args
    }
}

impl Instruction {
    /// Expands the words BuildKit expands for this instruction with `scope` (the scope before
    /// the instruction), then applies `ARG`/`ENV` to `scope`. Commands of RUN, CMD, ENTRYPOINT,
    /// SHELL and HEALTHCHECK are left for the shell; ONBUILD triggers are kept as written.
    /// `file` names the Dockerfile in errors.
    pub fn expand(&self, scope: &mut Scope, file: &str) -> Result<Instruction> {
        let kw = self.keyword();
        let location = Location::new(file, self.span());
        let err = |source: LexError| Error::Expansion {
            instruction: kw,
            location: location.clone(),
            source,
        };
        let x = |w: &str| scope.expand(w).map_err(err);
        let xs = |ws: &[String]| ws.iter().map(|w| x(w)).collect::<Result<Vec<_>>>();
        let xkv = |kv: &[(String, String)]| {
            kv.iter()
                .map(|(k, v)| Ok((x(k)?, x(v)?)))
                .collect::<Result<Vec<_>>>()
        };
        let xcopy = |c: &Copy| -> Result<Copy> {
            let sources = c
                .sources
                .iter()
                .map(|s| match s {
                    CopySource::Path(p) => Ok(CopySource::Path(x(p)?)),
                    CopySource::Heredoc(h) if h.expand => Ok(CopySource::Heredoc(Heredoc {
                        content: scope.expand_heredoc(&h.content).map_err(err)?,
                        expand: true,
                    })),
                    CopySource::Heredoc(h) => Ok(CopySource::Heredoc(h.clone())),
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Copy {
                sources,
                dest: x(&c.dest)?,
                from: c.from.clone(),
                chown: c.chown.as_deref().map(x).transpose()?,
                chmod: c.chmod.as_deref().map(x).transpose()?,
                link: c.link,
                excludes: xs(&c.excludes)?,
                parents: c.parents,
            })
        };
        let span = self.span();
        let out = match self {
            Self::Env { vars, .. } => Self::Env {
                span,
                vars: xkv(vars)?,
            },
            Self::Label { labels, .. } => Self::Label {
                span,
                labels: xkv(labels)?,
            },
            Self::Arg { args, .. } => Self::Arg {
                span,
                args: args
                    .iter()
                    .map(|a| {
                        Ok(ArgDecl {
                            name: a.name.clone(),
                            default: a.default.as_deref().map(x).transpose()?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?,
            },
            Self::Workdir { path, .. } => Self::Workdir {
                span,
                path: x(path)?,
            },
            Self::User { user, .. } => Self::User {
                span,
                user: x(user)?,
            },
            Self::Stopsignal { signal, .. } => Self::Stopsignal {
                span,
                signal: x(signal)?,
            },
            Self::Expose { ports, .. } => Self::Expose {
                span,
                ports: xs(ports)?,
            },
            Self::Volume { paths, .. } => Self::Volume {
                span,
                paths: xs(paths)?,
            },
            Self::Copy { copy, .. } => Self::Copy {
                span,
                copy: xcopy(copy)?,
            },
            Self::Add { add, .. } => {
                let copy = xcopy(&add.copy)?;
                for s in &copy.sources {
                    if let CopySource::Path(p) = s {
                        crate::parse::check_add_source(p).map_err(|reason| {
                            Error::InvalidInstruction {
                                instruction: "ADD",
                                location: location.clone(),
                                reason,
                            }
                        })?;
                    }
                }
                Self::Add {
                    span,
                    add: Add {
                        copy,
                        extract_archives: add.extract_archives,
                    },
                }
            }
            Self::Run { run, .. } => {
                let mounts = run
                    .mounts
                    .iter()
                    .map(|m| {
                        let (mut fresh, _) =
                            crate::mount::parse_mount(&m.raw, &|w| scope.expand(w), false)
                                .map_err(|reason| Error::InvalidFlag {
                                    flag: "mount".into(),
                                    instruction: "RUN",
                                    location: location.clone(),
                                    reason,
                                })?;
                        fresh.from = m.from.clone();
                        Ok(fresh)
                    })
                    .collect::<Result<Vec<_>>>()?;
                Self::Run {
                    span,
                    run: Run {
                        mounts,
                        ..run.clone()
                    },
                }
            }
            other => other.clone(),
        };
        match &out {
            Self::Env { vars, .. } => {
                for (k, v) in vars {
                    scope.set_env(k, v.clone());
                }
            }
            Self::Arg { args, .. } => {
                for a in args {
                    scope.declare_arg(&a.name, a.default.clone());
                }
            }
            _ => {}
        }
        Ok(out)
    }
}
