//! From `parse-dockerfile`'s syntax tree to berth's [`Dockerfile`] model.
//!
//! `parse-dockerfile` does the lexing (continuations, heredocs, JSON arrays, flags). This
//! module checks every flag and instruction against what berth implements — anything unknown
//! is an error, never ignored — resolves `FROM` with the global ARG scope and resolves stage
//! references (`COPY --from`, `RUN --mount=from=`).

use std::collections::BTreeMap;

use parse_dockerfile as pd;

use crate::error::{Error, Result};
use crate::lex::Lexer;
use crate::model::*;
use crate::scope::{BuildArgs, resolve_arg};
use crate::span::{Location, SourceMap, Span};
use crate::words::*;

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
    map: SourceMap<'a>,
    escape: char,
    lexer: Lexer,
    /// Lower-cased stage names, by index.
    stage_names: Vec<Option<String>>,
}

impl Ctx<'_> {
    fn loc(&self, offset: usize) -> Location {
        Location::new(self.file, self.map.span(offset))
    }
    fn span(&self, offset: usize) -> Span {
        self.map.span(offset)
    }
}

pub(crate) fn parse(file_name: &str, text: &str, args: &BuildArgs) -> Result<Dockerfile> {
    // parse-dockerfile strips a BOM and reports offsets into the rest; do the same.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let parsed = pd::parse(text).map_err(|e| {
        let span = Span::new(
            u32::try_from(e.line().max(1)).unwrap_or(u32::MAX),
            u32::try_from(e.column().max(1)).unwrap_or(u32::MAX),
        );
        let mut message = format!("{e:#}");
        if message.starts_with("unknown instruction") {
            message.push_str(
                "; check the spelling, or that the previous line's continuation is intended",
            );
        } else if message.contains("at least one FROM") {
            message.push_str("; a Dockerfile needs a FROM line to start a stage");
        }
        Error::Syntax {
            location: Location::new(file_name, span),
            message,
        }
    })?;
    let pdirs = &parsed.parser_directives;
    let directives = Directives {
        syntax: pdirs.syntax.as_ref().map(|d| d.value.value.to_owned()),
        escape: pdirs.escape.as_ref().map_or('\\', |d| d.value.value),
        check: pdirs.check.as_ref().map(|d| d.value.value.to_owned()),
    };
    let mut cx = Ctx {
        file: file_name,
        text,
        map: SourceMap::new(text),
        escape: directives.escape,
        lexer: Lexer::new(directives.escape),
        stage_names: Vec::new(),
    };

    // Global scope: predefined platform ARGs, then the global ARGs in order.
    let mut global_args = Vec::new();
    let mut global_scope = args.predefined();
    for arg in parsed.global_args() {
        let decls = parse_arg_decls(&arg.arguments.value, cx.escape)
            .map_err(|reason| invalid(&cx, "ARG", arg.arg.span.start, reason))?;
        let mut values = Vec::new();
        for d in &decls {
            let default = match &d.default {
                Some(raw) => Some(expand_in(
                    &cx,
                    "ARG",
                    arg.arg.span.start,
                    raw,
                    &global_scope,
                )?),
                None => None,
            };
            values.push((
                d.name.clone(),
                resolve_arg(&d.name, default, args, &global_scope),
            ));
        }
        for (name, value) in values {
            match value {
                Some(v) => global_scope.insert(name, v),
                None => global_scope.remove(&name),
            };
        }
        global_args.extend(decls);
    }

    // Stage names first: `COPY --from` may name a later stage.
    for stage in parsed.stages() {
        let name = match &stage.from.as_ {
            Some((_, name)) => {
                let lower = name.value.to_lowercase();
                if !valid_stage_name(&lower) {
                    return Err(invalid(
                        &cx,
                        "FROM",
                        name.span.start,
                        format!(
                            "invalid stage name {:?}; start with a letter, then use letters, digits, -, _ or .",
                            name.value
                        ),
                    ));
                }
                if cx.stage_names.iter().flatten().any(|n| *n == lower) {
                    return Err(invalid(
                        &cx,
                        "FROM",
                        name.span.start,
                        format!("duplicate stage name {lower:?}"),
                    ));
                }
                Some(lower)
            }
            None => None,
        };
        cx.stage_names.push(name);
    }

    let mut stages = Vec::new();
    for (index, stage) in parsed.stages().enumerate() {
        stages.push(convert_stage(&cx, index, &stage, args, &global_scope)?);
    }
    Ok(Dockerfile {
        file_name: file_name.to_owned(),
        directives,
        global_args,
        stages,
        global_scope,
        args: args.clone(),
    })
}

fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

fn invalid(
    cx: &Ctx<'_>,
    instruction: &'static str,
    offset: usize,
    reason: impl Into<String>,
) -> Error {
    Error::InvalidInstruction {
        instruction,
        location: cx.loc(offset),
        reason: reason.into(),
    }
}

fn expand_in(
    cx: &Ctx<'_>,
    instruction: &'static str,
    offset: usize,
    word: &str,
    vars: &BTreeMap<String, String>,
) -> Result<String> {
    cx.lexer
        .expand(word, &|k| vars.get(k).cloned())
        .map_err(|source| Error::Expansion {
            instruction,
            location: cx.loc(offset),
            source,
        })
}

fn convert_stage(
    cx: &Ctx<'_>,
    index: usize,
    stage: &pd::Stage<'_, '_>,
    args: &BuildArgs,
    global_scope: &BTreeMap<String, String>,
) -> Result<Stage> {
    let from = stage.from;
    let at = from.from.span.start;
    let mut platform = None;
    for flag in &from.options {
        match flag.name.value.as_ref() {
            "platform" => {
                let raw = flag_value(cx, "FROM", flag)?;
                platform = Some(expand_in(cx, "FROM", at, raw, global_scope)?);
            }
            _ => return Err(unknown_flag(cx, "FROM", flag)),
        }
    }
    let image = expand_in(cx, "FROM", at, &from.image.value, global_scope)?;
    if image.is_empty() {
        return Err(invalid(
            cx,
            "FROM",
            from.image.span.start,
            format!(
                "base name ({}) should not be blank; pass it with --build-arg or give the ARG a default",
                from.image.value
            ),
        ));
    }
    let lower = image.to_lowercase();
    let base = if image == "scratch" {
        BaseRef::Scratch
    } else if let Some(i) = cx.stage_names[..index]
        .iter()
        .position(|n| n.as_deref() == Some(lower.as_str()))
    {
        BaseRef::Stage(i)
    } else {
        BaseRef::Image(image)
    };

    // ARGs visible so far in this stage, for expanding stage references.
    let mut stage_args: BTreeMap<String, String> = BTreeMap::new();
    let mut instructions = Vec::new();
    for ins in stage.instructions {
        let converted = convert_instruction(cx, index, ins, &stage_args)?;
        if let Instruction::Arg { args: decls, span } = &converted {
            let mut values = Vec::new();
            for d in decls {
                let default = match &d.default {
                    Some(raw) => Some(
                        cx.lexer
                            .expand(raw, &|k| stage_args.get(k).cloned())
                            .map_err(|source| Error::Expansion {
                                instruction: "ARG",
                                location: Location::new(cx.file, *span),
                                source,
                            })?,
                    ),
                    None => None,
                };
                values.push((
                    d.name.clone(),
                    resolve_arg(&d.name, default, args, global_scope),
                ));
            }
            for (name, value) in values {
                match value {
                    Some(v) => stage_args.insert(name, v),
                    None => stage_args.remove(&name),
                };
            }
        }
        instructions.push(converted);
    }
    Ok(Stage {
        name: cx.stage_names[index].clone(),
        base,
        platform,
        instructions,
        span: cx.span(at),
    })
}

fn flag_value<'a>(
    cx: &Ctx<'_>,
    instruction: &'static str,
    flag: &'a pd::Flag<'_>,
) -> Result<&'a str> {
    match &flag.value {
        Some(v) => Ok(v.value.as_ref()),
        None => Err(Error::InvalidFlag {
            flag: flag.name.value.to_string(),
            instruction,
            location: cx.loc(flag.flag_span().start),
            reason: format!(
                "--{} needs a value: --{}=…",
                flag.name.value, flag.name.value
            ),
        }),
    }
}

fn flag_bool(cx: &Ctx<'_>, instruction: &'static str, flag: &pd::Flag<'_>) -> Result<bool> {
    match flag.value.as_ref().map(|v| v.value.as_ref()) {
        None | Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(Error::InvalidFlag {
            flag: flag.name.value.to_string(),
            instruction,
            location: cx.loc(flag.flag_span().start),
            reason: format!("expected true or false, got {other:?}"),
        }),
    }
}

fn unsupported_flag(
    cx: &Ctx<'_>,
    instruction: &'static str,
    flag: &pd::Flag<'_>,
    hint: &str,
) -> Error {
    let mut name = flag.name.value.to_string();
    if let Some(v) = &flag.value {
        name.push('=');
        name.push_str(&v.value);
    }
    Error::UnsupportedFlag {
        flag: name,
        instruction,
        location: cx.loc(flag.flag_span().start),
        hint: hint.to_owned(),
    }
}

fn unknown_flag(cx: &Ctx<'_>, instruction: &'static str, flag: &pd::Flag<'_>) -> Error {
    let hint = match (instruction, flag.name.value.as_ref()) {
        ("RUN", "security") => "remove it — berth runs RUN without extra privileges",
        ("RUN", "device") => "remove it — berth does not pass host devices into RUN",
        ("ADD", "parents") => "ADD has no --parents; use COPY --parents",
        ("ADD", "checksum") => {
            "--checksum only applies to URL sources, which berth does not fetch; vendor the file into the build context"
        }
        ("ADD", "keep-git-dir") => {
            "berth does not add git sources; clone in a RUN step or vendor the code"
        }
        ("ADD", "from") => "ADD has no --from; use COPY --from",
        _ => "berth does not know this flag; remove it",
    };
    unsupported_flag(cx, instruction, flag, hint)
}

fn convert_command(cx: &Ctx<'_>, cmd: &pd::Command<'_>) -> Command {
    match cmd {
        pd::Command::Exec(args) => {
            Command::Exec(args.value.iter().map(|s| s.value.to_string()).collect())
        }
        pd::Command::Shell(s) => Command::Shell(join_continuations(s.value, cx.escape)),
        // `Command` is non-exhaustive; a future form would be caught by the fuzz tests.
        #[allow(unreachable_patterns)]
        _ => Command::Shell(String::new()),
    }
}

fn convert_instruction(
    cx: &Ctx<'_>,
    stage: usize,
    ins: &pd::Instruction<'_>,
    stage_args: &BTreeMap<String, String>,
) -> Result<Instruction> {
    use pd::Instruction as I;
    Ok(match ins {
        I::Run(r) => {
            let mut mounts = Vec::new();
            let mut network = Network::Default;
            for flag in &r.options {
                match flag.name.value.as_ref() {
                    "mount" => {
                        let raw = flag_value(cx, "RUN", flag)?;
                        let (mut mount, from) =
                            crate::mount::parse_mount(raw, &|w| Ok(w.to_owned()), true).map_err(
                                |reason| Error::InvalidFlag {
                                    flag: "mount".into(),
                                    instruction: "RUN",
                                    location: cx.loc(flag.flag_span().start),
                                    reason,
                                },
                            )?;
                        if let Some(from) = from {
                            mount.from = Some(resolve_from(
                                cx,
                                stage,
                                "RUN",
                                flag.flag_span().start,
                                &from,
                                stage_args,
                            )?);
                        }
                        mounts.push(mount);
                    }
                    "network" => {
                        network = match flag_value(cx, "RUN", flag)? {
                            "default" => Network::Default,
                            "none" => Network::None,
                            "host" => Network::Host,
                            other => {
                                return Err(Error::InvalidFlag {
                                    flag: "network".into(),
                                    instruction: "RUN",
                                    location: cx.loc(flag.flag_span().start),
                                    reason: format!(
                                        "unknown network mode {other:?}; use default, none or host"
                                    ),
                                });
                            }
                        }
                    }
                    _ => return Err(unknown_flag(cx, "RUN", flag)),
                }
            }
            let mut command = convert_command(cx, &r.arguments);
            if !r.here_docs.is_empty() {
                // parse-dockerfile reports only the text after the delimiter; keep the whole
                // first line from `<<` so the delimiter and any command stay visible.
                if let pd::Command::Shell(s) = &r.arguments {
                    let start = cx.text[..s.span.start].rfind("<<").unwrap_or(s.span.start);
                    command =
                        Command::Shell(join_continuations(&cx.text[start..s.span.end], cx.escape));
                }
            }
            let heredocs = r
                .here_docs
                .iter()
                .map(|h| Heredoc {
                    content: h.value.to_string(),
                    expand: h.expand,
                })
                .collect();
            Instruction::Run {
                span: cx.span(r.run.span.start),
                run: Run {
                    command,
                    heredocs,
                    mounts,
                    network,
                },
            }
        }
        I::Copy(c) => {
            let at = c.copy.span.start;
            let mut copy = Copy {
                sources: convert_sources(&c.src),
                dest: c.dest.value.to_string(),
                from: None,
                chown: None,
                chmod: None,
                link: false,
                excludes: Vec::new(),
                parents: false,
            };
            for flag in &c.options {
                match flag.name.value.as_ref() {
                    "from" => {
                        let raw = flag_value(cx, "COPY", flag)?;
                        copy.from = Some(resolve_from(
                            cx,
                            stage,
                            "COPY",
                            flag.flag_span().start,
                            raw,
                            stage_args,
                        )?);
                    }
                    "chown" => copy.chown = Some(flag_value(cx, "COPY", flag)?.to_owned()),
                    "chmod" => copy.chmod = Some(flag_value(cx, "COPY", flag)?.to_owned()),
                    "link" => copy.link = flag_bool(cx, "COPY", flag)?,
                    "exclude" => copy.excludes.push(flag_value(cx, "COPY", flag)?.to_owned()),
                    "parents" => copy.parents = flag_bool(cx, "COPY", flag)?,
                    _ => return Err(unknown_flag(cx, "COPY", flag)),
                }
            }
            Instruction::Copy {
                span: cx.span(at),
                copy,
            }
        }
        I::Add(a) => {
            let at = a.add.span.start;
            let mut add = Add {
                copy: Copy {
                    sources: convert_sources(&a.src),
                    dest: a.dest.value.to_string(),
                    from: None,
                    chown: None,
                    chmod: None,
                    link: false,
                    excludes: Vec::new(),
                    parents: false,
                },
                extract_archives: true,
            };
            for flag in &a.options {
                match flag.name.value.as_ref() {
                    "chown" => add.copy.chown = Some(flag_value(cx, "ADD", flag)?.to_owned()),
                    "chmod" => add.copy.chmod = Some(flag_value(cx, "ADD", flag)?.to_owned()),
                    "link" => add.copy.link = flag_bool(cx, "ADD", flag)?,
                    "exclude" => add
                        .copy
                        .excludes
                        .push(flag_value(cx, "ADD", flag)?.to_owned()),
                    "unpack" => add.extract_archives = flag_bool(cx, "ADD", flag)?,
                    _ => return Err(unknown_flag(cx, "ADD", flag)),
                }
            }
            for src in &add.copy.sources {
                if let CopySource::Path(p) = src {
                    check_add_source(p).map_err(|reason| invalid(cx, "ADD", at, reason))?;
                }
            }
            Instruction::Add {
                span: cx.span(at),
                add,
            }
        }
        I::Env(e) => {
            let vars = parse_name_val(&e.arguments.value, cx.escape)
                .map_err(|r| invalid(cx, "ENV", e.env.span.start, r))?;
            Instruction::Env {
                span: cx.span(e.env.span.start),
                vars,
            }
        }
        I::Label(l) => {
            let labels = parse_name_val(&l.arguments.value, cx.escape)
                .map_err(|r| invalid(cx, "LABEL", l.label.span.start, r))?;
            Instruction::Label {
                span: cx.span(l.label.span.start),
                labels,
            }
        }
        I::Arg(a) => {
            let args = parse_arg_decls(&a.arguments.value, cx.escape)
                .map_err(|r| invalid(cx, "ARG", a.arg.span.start, r))?;
            Instruction::Arg {
                span: cx.span(a.arg.span.start),
                args,
            }
        }
        I::Workdir(w) => Instruction::Workdir {
            span: cx.span(w.workdir.span.start),
            path: w.arguments.value.to_string(),
        },
        I::User(u) => Instruction::User {
            span: cx.span(u.user.span.start),
            user: u.arguments.value.to_string(),
        },
        I::Stopsignal(s) => Instruction::Stopsignal {
            span: cx.span(s.stopsignal.span.start),
            signal: s.arguments.value.to_string(),
        },
        I::Expose(e) => Instruction::Expose {
            span: cx.span(e.expose.span.start),
            ports: e.arguments.iter().map(|p| p.value.to_string()).collect(),
        },
        I::Volume(v) => {
            let paths = match &v.arguments {
                pd::JsonOrStringArray::Json(a) => {
                    a.value.iter().map(|p| p.value.to_string()).collect()
                }
                pd::JsonOrStringArray::String(a) => a.iter().map(|p| p.value.to_string()).collect(),
            };
            Instruction::Volume {
                span: cx.span(v.volume.span.start),
                paths,
            }
        }
        I::Shell(s) => Instruction::Shell {
            span: cx.span(s.shell.span.start),
            shell: s.arguments.iter().map(|p| p.value.to_string()).collect(),
        },
        I::Cmd(c) => Instruction::Cmd {
            span: cx.span(c.cmd.span.start),
            command: convert_command(cx, &c.arguments),
        },
        I::Entrypoint(e) => Instruction::Entrypoint {
            span: cx.span(e.entrypoint.span.start),
            command: convert_command(cx, &e.arguments),
        },
        I::Healthcheck(h) => convert_healthcheck(cx, h)?,
        I::Maintainer(m) => Instruction::Maintainer {
            span: cx.span(m.maintainer.span.start),
            name: m.name.value.to_string(),
        },
        I::Onbuild(o) => {
            let at = o.onbuild.span.start;
            match o.instruction.as_ref() {
                I::From(_) | I::Maintainer(_) | I::Onbuild(_) => {
                    return Err(invalid(
                        cx,
                        "ONBUILD",
                        at,
                        "ONBUILD cannot trigger FROM, MAINTAINER or ONBUILD",
                    ));
                }
                inner => {
                    // Validate the trigger now so a bad flag is reported against this file.
                    convert_instruction(cx, stage, inner, stage_args)?;
                }
            }
            let inner_start = o.onbuild.span.end + cx.text[o.onbuild.span.end..].len()
                - cx.text[o.onbuild.span.end..].trim_start().len();
            let end = logical_line_end(cx.text, inner_start, cx.escape);
            let trigger =
                join_continuations(&cx.text[inner_start..end.max(inner_start)], cx.escape);
            Instruction::Onbuild {
                span: cx.span(at),
                trigger,
            }
        }
        I::From(f) => {
            // The parser splits stages at FROM, so this only happens inside ONBUILD.
            return Err(invalid(cx, "FROM", f.from.span.start, "unexpected FROM"));
        }
        #[allow(unreachable_patterns)]
        _ => {
            return Err(Error::UnsupportedInstruction {
                instruction: "(unknown)".into(),
                location: Location::new(cx.file, Span::new(1, 1)),
                hint: "this instruction is newer than berth's parser; remove it".into(),
            });
        }
    })
}

fn convert_sources(src: &[pd::Source<'_>]) -> Vec<CopySource> {
    src.iter()
        .filter_map(|s| match s {
            pd::Source::Path(p) => Some(CopySource::Path(p.value.to_string())),
            pd::Source::HereDoc(h) => Some(CopySource::Heredoc(Heredoc {
                content: h.value.to_string(),
                expand: h.expand,
            })),
            #[allow(unreachable_patterns)]
            _ => None,
        })
        .collect()
}

/// ADD takes local files only: downloading and cloning belong in RUN steps or the context.
pub(crate) fn check_add_source(src: &str) -> std::result::Result<(), String> {
    let lower = src.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        if lower.ends_with(".git") || lower.contains(".git#") {
            return Err(format!(
                "git source {src:?} is not supported; clone it in a RUN step or vendor it into the build context"
            ));
        }
        return Err(format!(
            "URL source {src:?} is not supported; download it in a RUN step (curl/wget) or vendor it into the build context"
        ));
    }
    if lower.starts_with("git@") || lower.starts_with("git://") || lower.starts_with("ssh://") {
        return Err(format!(
            "git source {src:?} is not supported; clone it in a RUN step or vendor it into the build context"
        ));
    }
    Ok(())
}

fn resolve_from(
    cx: &Ctx<'_>,
    stage: usize,
    instruction: &'static str,
    offset: usize,
    raw: &str,
    stage_args: &BTreeMap<String, String>,
) -> Result<FromRef> {
    let value = expand_in(cx, instruction, offset, raw, stage_args)?;
    if value.is_empty() {
        return Err(invalid(
            cx,
            instruction,
            offset,
            format!("--from={raw} expands to nothing"),
        ));
    }
    let lower = value.to_lowercase();
    let target = if let Ok(i) = value.parse::<usize>() {
        if i >= cx.stage_names.len() {
            return Err(Error::UnknownStage {
                instruction,
                location: cx.loc(offset),
                reference: value,
                hint: format!(
                    "this file has {} stage(s), numbered from 0",
                    cx.stage_names.len()
                ),
            });
        }
        Some(i)
    } else {
        cx.stage_names
            .iter()
            .position(|n| n.as_deref() == Some(lower.as_str()))
    };
    match target {
        Some(i) if i == stage => Err(Error::StageCycle {
            cycle: format!("{} -> {}", stage_label(cx, i), stage_label(cx, i)),
            location: cx.loc(offset),
        }),
        Some(i) => Ok(FromRef::Stage(i)),
        None => Ok(FromRef::Image(value)),
    }
}

fn stage_label(cx: &Ctx<'_>, i: usize) -> String {
    cx.stage_names[i].clone().unwrap_or_else(|| i.to_string())
}

fn convert_healthcheck(cx: &Ctx<'_>, h: &pd::HealthcheckInstruction<'_>) -> Result<Instruction> {
    let at = h.healthcheck.span.start;
    let span = cx.span(at);
    let command = match &h.arguments {
        pd::HealthcheckArguments::None { .. } => {
            if let Some(flag) = h.options.first() {
                return Err(unsupported_flag(
                    cx,
                    "HEALTHCHECK",
                    flag,
                    "HEALTHCHECK NONE takes no options; remove it",
                ));
            }
            return Ok(Instruction::Healthcheck {
                span,
                check: Healthcheck::None,
            });
        }
        pd::HealthcheckArguments::Cmd { arguments, .. } => convert_command(cx, arguments),
        #[allow(unreachable_patterns)]
        _ => return Err(invalid(cx, "HEALTHCHECK", at, "expected CMD or NONE")),
    };
    let (mut interval, mut timeout, mut start_period, mut start_interval, mut retries) =
        (None, None, None, None, None);
    for flag in &h.options {
        let name = flag.name.value.as_ref();
        let bad = |reason: String| Error::InvalidFlag {
            flag: name.to_owned(),
            instruction: "HEALTHCHECK",
            location: cx.loc(flag.flag_span().start),
            reason,
        };
        match name {
            "interval" | "timeout" | "start-period" | "start-interval" => {
                let d = parse_duration(flag_value(cx, "HEALTHCHECK", flag)?).map_err(bad)?;
                let slot = match name {
                    "interval" => &mut interval,
                    "timeout" => &mut timeout,
                    "start-period" => &mut start_period,
                    _ => &mut start_interval,
                };
                *slot = Some(d);
            }
            "retries" => {
                let v = flag_value(cx, "HEALTHCHECK", flag)?;
                retries = Some(
                    v.parse::<u32>()
                        .map_err(|_| bad(format!("expected a whole number, got {v:?}")))?,
                );
            }
            _ => return Err(unknown_flag(cx, "HEALTHCHECK", flag)),
        }
    }
    Ok(Instruction::Healthcheck {
        span,
        check: Healthcheck::Check {
            command,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        },
    })
}
