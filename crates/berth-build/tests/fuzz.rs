//! Property tests: the frontend never panics, whatever text it is handed.

use berth_build::lex::Lexer;
use berth_build::{BuildArgs, DockerIgnore, Dockerfile, Platform};
use proptest::prelude::*;

const SEED: &str = r#"# syntax=docker/dockerfile:1
ARG BASE=alpine:3.20
FROM --platform=$BUILDPLATFORM ${BASE} AS build
ARG BASE
ENV A=1 B="two $A" C='$A'
WORKDIR /src/${A:-x}
RUN --mount=type=cache,target=/root/.cache,id=c,sharing=locked \
    --network=none echo "$A" && \
    # comment inside
    true
RUN <<EOF
echo hi
EOF
COPY --chown=1:1 --chmod=0644 --link a b /dst/
COPY <<'X' /f
$NOT_EXPANDED
X
ADD --unpack=false x.tar /opt/
LABEL k="v w" k2=v2
EXPOSE 80/tcp ${PORT:-8080}
HEALTHCHECK --interval=5s --retries=2 CMD ["true"]
ONBUILD RUN make
FROM build
COPY --from=0 /x /y
SHELL ["/bin/sh", "-c"]
STOPSIGNAL SIGTERM
VOLUME ["/data"]
USER 1000:1000
CMD echo done
ENTRYPOINT ["/bin/app"]
"#;

const FRAGMENTS: &[&str] = &[
    "FROM ",
    "RUN ",
    "COPY ",
    "ADD ",
    "ENV ",
    "ARG ",
    "LABEL ",
    "ONBUILD ",
    "HEALTHCHECK ",
    "SHELL ",
    "CMD ",
    "ENTRYPOINT ",
    "VOLUME ",
    "EXPOSE ",
    "WORKDIR ",
    "USER ",
    "STOPSIGNAL ",
    "MAINTAINER ",
    "AS ",
    " x",
    " /y",
    "--from=",
    "--mount=",
    "type=cache,",
    "target=/",
    "--platform=",
    "--network=",
    "--link",
    "--chmod=",
    "$",
    "${",
    "}",
    ":-",
    ":?",
    "#",
    "%%",
    "//",
    "'",
    "\"",
    "\\",
    "`",
    "\n",
    "\r\n",
    " \\\n",
    "<<EOF\n",
    "\nEOF\n",
    "<<-'E'\n",
    "[",
    "]",
    "\"a\",",
    "=",
    "# escape=`\n",
    "scratch",
    "0",
    "1",
    "\t",
    "é",
    "\u{feff}",
];

fn exercise(text: &str) {
    let args = BuildArgs::new(Platform::new("linux", "amd64", None)).with("A", "arg");
    if let Ok(df) = Dockerfile::parse("Dockerfile", text, &args) {
        let _ = df.build_order(None);
        for (i, stage) in df.stages.iter().enumerate() {
            let _ = df.build_order(Some(&i.to_string()));
            let mut scope = df.stage_scope(&[("PATH".into(), "/bin".into())]);
            for ins in &stage.instructions {
                let _ = ins.expand(&mut scope, &df.file_name);
                if let berth_build::Instruction::Run { run, .. } = ins {
                    let _ = run.shell_script();
                }
            }
            let _ = scope.run_env();
        }
    }
}

fn fragments() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..40).prop_map(|v| v.concat())
}

fn mutated_seed() -> impl Strategy<Value = String> {
    let edits = prop::collection::vec(
        (
            any::<prop::sample::Index>(),
            0usize..4,
            prop::sample::select(FRAGMENTS),
        ),
        1..8,
    );
    edits.prop_map(|edits| {
        let mut text: Vec<char> = SEED.chars().collect();
        for (at, op, frag) in edits {
            let i = at.index(text.len() + 1);
            match op {
                0 => {
                    let end = (i + 5).min(text.len());
                    text.drain(i.min(end)..end);
                }
                1 => {
                    let end = (i + 1).min(text.len());
                    text.drain(i.min(end)..end);
                }
                _ => {
                    for (k, c) in frag.chars().enumerate() {
                        text.insert(i + k, c);
                    }
                }
            }
        }
        text.into_iter().collect()
    })
}

proptest! {
    // 256 cases keep `cargo test` fast; set PROPTEST_CASES for a longer soak.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
    ))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        exercise(&text);
    }

    #[test]
    fn dockerfile_fragments_never_panic(text in fragments()) {
        exercise(&format!("FROM a\n{text}"));
        exercise(&text);
    }

    #[test]
    fn mutated_dockerfiles_never_panic(text in mutated_seed()) {
        exercise(&text);
    }

    #[test]
    fn lexer_never_panics(word in "[a-z$'\"{}:+?#%/\\\\*` -]{0,24}") {
        let env = |k: &str| (k == "a").then(|| "x*y/z".to_owned());
        let _ = Lexer::default().expand(&word, &env);
        let _ = Lexer::default().expand_words(&word, &env);
        let _ = Lexer::new('`').without_quotes().expand(&word, &env);
    }

    #[test]
    fn dockerignore_never_panics(
        patterns in prop::collection::vec("[a-z!*?\\[\\]^\\\\/. -]{0,10}", 0..6),
        path in "[a-z*/.]{0,12}",
    ) {
        if let Ok(ig) = DockerIgnore::parse(&patterns.join("\n")) {
            let _ = ig.excluded(&path);
            let _ = ig.can_skip_dir(&path);
        }
    }
}

#[test]
fn seed_parses() {
    let args = BuildArgs::new(Platform::new("linux", "amd64", None));
    let df = Dockerfile::parse("Dockerfile", SEED, &args).unwrap();
    assert_eq!(df.build_order(None).unwrap(), vec![0, 1]);
    exercise(SEED);
}
