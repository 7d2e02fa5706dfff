//! Frontend tests on inline Dockerfiles.

use super::*;

fn args() -> BuildArgs {
    BuildArgs::new(Platform::new("linux", "arm64", None))
}

fn parse(text: &str) -> Dockerfile {
    Dockerfile::parse("Dockerfile", text, &args()).unwrap()
}

fn parse_err(text: &str) -> String {
    Dockerfile::parse("Dockerfile", text, &args())
        .unwrap_err()
        .to_string()
}

/// Expands every instruction of `stage` in order, starting from an empty base env.
fn expand_stage(df: &Dockerfile, stage: usize) -> (Vec<Instruction>, Scope) {
    let mut scope = df.stage_scope(&[]);
    let out = df.stages[stage]
        .instructions
        .iter()
        .map(|i| i.expand(&mut scope, &df.file_name).unwrap())
        .collect();
    (out, scope)
}

#[test]
fn multi_stage_with_everything() {
    let df = parse(
        r#"# syntax=docker/dockerfile:1
ARG GO=1.22
FROM --platform=$BUILDPLATFORM golang:${GO} AS Build
WORKDIR /src
RUN --mount=type=cache,target=/root/.cache/go-build \
    --network=none \
    go build -o /out/app ./cmd/app
FROM scratch
COPY --from=build --chown=1000:1000 --chmod=0755 /out/app /app
EXPOSE 8080/tcp
USER 1000
HEALTHCHECK --interval=30s --retries=3 CMD ["/app", "health"]
ENTRYPOINT ["/app"]
"#,
    );
    assert_eq!(df.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
    assert_eq!(
        df.global_args,
        vec![ArgDecl {
            name: "GO".into(),
            default: Some("1.22".into())
        }]
    );
    assert_eq!(df.stages.len(), 2);
    let build = &df.stages[0];
    assert_eq!(build.name.as_deref(), Some("build"));
    assert_eq!(build.base, BaseRef::Image("golang:1.22".into()));
    assert_eq!(build.platform.as_deref(), Some("linux/arm64"));
    assert_eq!(build.span, Span::new(3, 1));
    let Instruction::Run { span, run } = &build.instructions[1] else {
        panic!()
    };
    assert_eq!(*span, Span::new(5, 1));
    assert_eq!(run.network, Network::None);
    assert_eq!(
        run.command,
        Command::Shell("go build -o /out/app ./cmd/app".into())
    );
    assert!(matches!(run.mounts[0].kind, MountKind::Cache { .. }));
    let fin = &df.stages[1];
    assert_eq!(fin.base, BaseRef::Scratch);
    let Instruction::Copy { copy, .. } = &fin.instructions[0] else {
        panic!()
    };
    assert_eq!(copy.from, Some(FromRef::Stage(0)));
    assert_eq!(copy.chown.as_deref(), Some("1000:1000"));
    assert_eq!(copy.sources, vec![CopySource::Path("/out/app".into())]);
    let Instruction::Healthcheck {
        check: Healthcheck::Check {
            interval, retries, ..
        },
        ..
    } = &fin.instructions[3]
    else {
        panic!()
    };
    assert_eq!(*interval, Some(std::time::Duration::from_secs(30)));
    assert_eq!(*retries, Some(3));
    assert_eq!(df.build_order(None).unwrap(), vec![0, 1]);
}

#[test]
fn unsupported_flags_are_errors_with_location_and_advice() {
    let e = parse_err("FROM alpine\nRUN --security=insecure make\n");
    assert_eq!(
        e,
        "unsupported flag --security=insecure on RUN at Dockerfile:2:5; remove it — berth runs RUN without extra privileges"
    );
    assert!(parse_err("FROM a\nCOPY --bogus a b\n").contains("Dockerfile:2:6"));
    assert!(parse_err("FROM a\nADD --parents a b\n").contains("use COPY --parents"));
    assert!(parse_err("FROM a\nCOPY --bogus a b\n").contains("unsupported flag --bogus on COPY"));
    assert!(parse_err("FROM --foo=x a\n").contains("--foo=x on FROM"));
    assert!(parse_err("FROM a\nRUN --network=bridge x\n").contains("unknown network mode"));
    assert!(parse_err("FROM a\nRUN --mount=type=ssh x\n").contains("SSH"));
    assert!(parse_err("FROM a\nHEALTHCHECK --interval=10 CMD x\n").contains("invalid duration"));
    assert!(parse_err("FROM a\nADD --checksum=sha256:00 f /\n").contains("--checksum"));
}

#[test]
fn add_rejects_remote_sources() {
    let e = parse_err("FROM a\nADD https://example.com/x.tgz /x\n");
    assert!(e.contains("Dockerfile:2:1") && e.contains("curl"), "{e}");
    assert!(parse_err("FROM a\nADD git@github.com:o/r.git /r\n").contains("git source"));
    assert!(parse_err("FROM a\nADD https://github.com/o/r.git /r\n").contains("git source"));
    let df = parse("FROM a\nADD --unpack=false app.tar.gz /opt/\n");
    let Instruction::Add { add, .. } = &df.stages[0].instructions[0] else {
        panic!()
    };
    assert!(!add.extract_archives);
    // A URL hidden behind a variable is caught at expansion.
    let df = parse("FROM a\nARG U=https://x/y\nADD $U /y\n");
    let mut scope = df.stage_scope(&[]);
    let ins = &df.stages[0].instructions;
    ins[0].expand(&mut scope, "Dockerfile").unwrap();
    assert!(
        ins[1]
            .expand(&mut scope, "Dockerfile")
            .unwrap_err()
            .to_string()
            .contains("URL source")
    );
}

#[test]
fn syntax_errors_carry_location() {
    let e = parse_err("FROM a\nFROBNICATE x\n");
    assert!(e.starts_with("Dockerfile:2:1: unknown instruction"), "{e}");
    assert!(parse_err("RUN x\n").contains("expected FROM"));
    assert!(parse_err("# just a comment\n").contains("FROM"));
    assert!(parse_err("FROM a AS x\nFROM b AS X\n").contains("duplicate stage name"));
    assert!(parse_err("FROM a AS 1x\n").contains("invalid stage name"));
}

#[test]
fn global_args_only_in_from_unless_redeclared() {
    let df = Dockerfile::parse(
        "Dockerfile",
        "ARG V=1\nARG IMG=alpine:$V\nFROM $IMG\nRUN echo\nENV A=$V\nARG V\nENV B=$V\n",
        &args().with("V", "2"),
    )
    .unwrap();
    assert_eq!(df.stages[0].base, BaseRef::Image("alpine:2".into()));
    let (ins, scope) = expand_stage(&df, 0);
    assert_eq!(
        ins[1],
        Instruction::Env {
            span: Span::new(5, 1),
            vars: vec![("A".into(), String::new())]
        }
    );
    assert_eq!(scope.lookup("B").as_deref(), Some("2"));
    assert_eq!(scope.lookup("V").as_deref(), Some("2"));
}

#[test]
fn arg_defaults_env_precedence_and_run_env() {
    let df = parse("FROM a\nARG X=def\nARG TARGETARCH\nENV X=env Y=$X\nARG X=again\nRUN echo\n");
    let (ins, scope) = expand_stage(&df, 0);
    // ENV expands with the scope before the instruction: Y sees the ARG value.
    assert_eq!(
        ins[2],
        Instruction::Env {
            span: Span::new(4, 1),
            vars: vec![("X".into(), "env".into()), ("Y".into(), "def".into())],
        }
    );
    // ENV wins over a later ARG of the same name.
    assert_eq!(scope.lookup("X").as_deref(), Some("env"));
    let run_env = scope.run_env();
    assert!(run_env.contains(&("TARGETARCH".into(), "arm64".into())));
    assert!(!run_env.iter().any(|(k, v)| k == "X" && v == "again"));
    assert_eq!(scope.env().len(), 2);
}

#[test]
fn base_env_participates_in_expansion() {
    let df = parse("FROM golang\nWORKDIR $GOPATH/src\nLABEL \"a b\"=\"c $GOPATH\"\n");
    let mut scope = df.stage_scope(&[("GOPATH".into(), "/go".into())]);
    let ins = &df.stages[0].instructions;
    assert_eq!(
        ins[0].expand(&mut scope, "Dockerfile").unwrap(),
        Instruction::Workdir {
            span: Span::new(2, 1),
            path: "/go/src".into()
        }
    );
    assert_eq!(
        ins[1].expand(&mut scope, "Dockerfile").unwrap(),
        Instruction::Label {
            span: Span::new(3, 1),
            labels: vec![("a b".into(), "c /go".into())]
        }
    );
}

#[test]
fn expansion_errors_point_at_the_instruction() {
    let df = parse("FROM a\n\nCOPY ${SRC:?required} /x\n");
    let mut scope = df.stage_scope(&[]);
    let e = df.stages[0].instructions[0]
        .expand(&mut scope, "Dockerfile")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("variable expansion failed in COPY at Dockerfile:3:1"),
        "{e}"
    );
    assert!(e.contains("SRC: required"), "{e}");
    assert!(parse_err("ARG B\nFROM $B\n").contains("should not be blank"));
}

#[test]
fn stage_graph_and_target() {
    let df = parse(
        "FROM alpine AS base\nFROM base AS deps\nRUN x\nFROM alpine AS tools\nFROM base AS app\nCOPY --from=deps /a /a\nRUN --mount=from=tools,target=/t x\nFROM app AS test\n",
    );
    assert_eq!(df.stages[1].base, BaseRef::Stage(0));
    assert_eq!(df.build_order(Some("app")).unwrap(), vec![0, 1, 2, 3]);
    assert_eq!(df.build_order(Some("deps")).unwrap(), vec![0, 1]);
    assert_eq!(df.build_order(Some("TOOLS")).unwrap(), vec![2]);
    assert_eq!(df.build_order(Some("0")).unwrap(), vec![0]);
    assert_eq!(df.build_order(None).unwrap(), vec![0, 1, 2, 3, 4]);
    let e = df.build_order(Some("nope")).unwrap_err().to_string();
    assert!(
        e.contains("\"nope\" not found in Dockerfile")
            && e.contains("base, deps, tools, app, test"),
        "{e}"
    );
}

#[test]
fn copy_from_image_index_and_cycles() {
    let df = parse("FROM a\nCOPY --from=nginx:latest /etc/nginx /n\nFROM b\nCOPY --from=0 /x /y\n");
    let Instruction::Copy { copy, .. } = &df.stages[0].instructions[0] else {
        panic!()
    };
    assert_eq!(copy.from, Some(FromRef::Image("nginx:latest".into())));
    assert_eq!(df.dependencies(1), vec![(0, Span::new(4, 1))]);
    assert!(parse_err("FROM a\nCOPY --from=0 /x /y\n").contains("0 -> 0"));
    assert!(parse_err("FROM a\nCOPY --from=5 /x /y\n").contains("refers to stage 5"));
    let df = parse("FROM a AS one\nCOPY --from=two /x /y\nFROM b AS two\nCOPY --from=one /x /y\n");
    let e = df.build_order(None).unwrap_err().to_string();
    assert!(
        e.contains("two -> one -> two") && e.contains("Dockerfile:2:1"),
        "{e}"
    );
    // A later stage name in FROM is an image, as in BuildKit.
    let df = parse("FROM later\nFROM x AS later\n");
    assert_eq!(df.stages[0].base, BaseRef::Image("later".into()));
    // --from expands with the stage's ARGs.
    let df = parse("FROM a AS src\nFROM b\nARG FROM=src\nCOPY --from=$FROM /x /y\n");
    let Instruction::Copy { copy, .. } = &df.stages[1].instructions[1] else {
        panic!()
    };
    assert_eq!(copy.from, Some(FromRef::Stage(0)));
}

#[test]
fn heredocs() {
    let df = parse(
        "FROM a\nRUN <<EOF\nset -e\necho $HOME\nEOF\nCOPY <<'CONF' /etc/app.conf\nname=$X\nCONF\n",
    );
    let Instruction::Run { run, .. } = &df.stages[0].instructions[0] else {
        panic!()
    };
    assert_eq!(run.shell_script().unwrap(), "set -e\necho $HOME\n");
    let Instruction::Copy { copy, .. } = &df.stages[0].instructions[1] else {
        panic!()
    };
    assert_eq!(
        copy.sources,
        vec![CopySource::Heredoc(Heredoc {
            content: "name=$X\n".into(),
            expand: false
        })]
    );

    let df = parse("FROM a\nENV X=1\nCOPY <<EOF /f\nx=\"$X\"\nEOF\nRUN <<EOF bash\necho hi\nEOF\n");
    let (ins, _) = expand_stage(&df, 0);
    let Instruction::Copy { copy, .. } = &ins[1] else {
        panic!()
    };
    assert_eq!(
        copy.sources,
        vec![CopySource::Heredoc(Heredoc {
            content: "x=\"1\"\n".into(),
            expand: true
        })]
    );
    let Instruction::Run { run, .. } = &ins[2] else {
        panic!()
    };
    assert_eq!(run.shell_script().unwrap(), "<<EOF bash\necho hi\nEOF");
}

#[test]
fn escape_directive_backtick() {
    let df = parse("# escape=`\nFROM mcr/windows\nRUN dir `\n  c:\\\nWORKDIR c:\\app\\$X\n");
    assert_eq!(df.directives.escape, '`');
    let Instruction::Run { run, .. } = &df.stages[0].instructions[0] else {
        panic!()
    };
    assert_eq!(run.command, Command::Shell("dir   c:\\".into()));
    let mut scope = df.stage_scope(&[("X".into(), "v".into())]);
    assert_eq!(
        df.stages[0].instructions[1]
            .expand(&mut scope, "Dockerfile")
            .unwrap(),
        Instruction::Workdir {
            span: Span::new(5, 1),
            path: "c:\\app\\v".into()
        }
    );
}

#[test]
fn other_instructions() {
    let df = parse(
        "FROM a\nVOLUME [\"/data\", \"/logs\"]\nVOLUME /x /y\nSHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]\nSTOPSIGNAL SIGTERM\nONBUILD RUN make \\\n  install\nMAINTAINER me\nCMD echo hi\nENV legacy value with spaces\nHEALTHCHECK NONE\n",
    );
    let ins = &df.stages[0].instructions;
    assert_eq!(
        ins[0],
        Instruction::Volume {
            span: Span::new(2, 1),
            paths: vec!["/data".into(), "/logs".into()]
        }
    );
    assert_eq!(
        ins[1],
        Instruction::Volume {
            span: Span::new(3, 1),
            paths: vec!["/x".into(), "/y".into()]
        }
    );
    assert!(matches!(&ins[2], Instruction::Shell { shell, .. } if shell.len() == 4));
    assert_eq!(
        ins[4],
        Instruction::Onbuild {
            span: Span::new(6, 1),
            trigger: "RUN make   install".into()
        }
    );
    assert!(matches!(&ins[5], Instruction::Maintainer { name, .. } if name == "me"));
    assert_eq!(
        ins[6],
        Instruction::Cmd {
            span: Span::new(9, 1),
            command: Command::Shell("echo hi".into())
        }
    );
    assert_eq!(
        ins[7],
        Instruction::Env {
            span: Span::new(10, 1),
            vars: vec![("legacy".into(), "value with spaces".into())]
        }
    );
    assert_eq!(
        ins[8],
        Instruction::Healthcheck {
            span: Span::new(11, 1),
            check: Healthcheck::None
        }
    );
    assert!(parse_err("FROM a\nONBUILD FROM b\n").contains("ONBUILD"));
    assert!(parse_err("FROM a\nONBUILD COPY --bogus a b\n").contains("--bogus"));
}

#[test]
fn mounts_expand_at_expand_time() {
    let df =
        parse("FROM a\nARG ID=pip\nRUN --mount=type=cache,target=/c,id=$ID,uid=${UID:-1000} x\n");
    let (ins, _) = expand_stage(&df, 0);
    let Instruction::Run { run, .. } = &ins[1] else {
        panic!()
    };
    assert!(matches!(&run.mounts[0].kind, MountKind::Cache { id, uid: 1000, .. } if id == "pip"));
}

#[test]
fn bom_and_crlf() {
    let df = parse("\u{feff}FROM a\r\nRUN echo \\\r\n  hi\r\n");
    let Instruction::Run { span, run } = &df.stages[0].instructions[0] else {
        panic!()
    };
    assert_eq!(*span, Span::new(2, 1));
    assert_eq!(run.command, Command::Shell("echo   hi".into()));
}
