//! Cases from BuildKit's `envVarTest`, `wordsTest` and `TestProcessWithMatches`
//! (Unix rows only: berth builds Linux images).

use super::*;
use std::collections::BTreeMap;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn expand_with(word: &str, env: &BTreeMap<String, String>) -> Result<String, LexError> {
    Lexer::default().expand(word, &|k| env.get(k).cloned())
}

/// `input | expected` per line; `error` means the expansion must fail.
const ENV_VAR_TEST: &str = r#"
hello                    |     hello
he'll'o                  |     hello
he'llo                   |     error
he\'llo                  |     he'llo
he\\'llo                 |     error
abc\tdef                 |     abctdef
"abc\tdef"               |     abc\tdef
"abc\\tdef"              |     abc\tdef
'abc\tdef'               |     abc\tdef
hello\                   |     hello
hello\\                  |     hello\
"hello                   |     error
"hello\"                 |     error
"hel'lo"                 |     hel'lo
'hello                   |     error
'hello\'                 |     hello\
'hello\there'            |     hello\there
'hello\\there'           |     hello\\there
"''"                     |     ''
$.                       |     $.
he$1x                    |     hex
he$.x                    |     he$.x
he$pwd.                  |     he.
he$PWD                   |     he/home
he\$PWD                  |     he$PWD
he\\$PWD                 |     he\/home
"he\$PWD"                |     he$PWD
"he\\$PWD"               |     he\/home
\${}                     |     ${}
\${}aaa                  |     ${}aaa
he\${}                   |     he${}
he\${}xx                 |     he${}xx
${}                      |     error
${}aaa                   |     error
he${}                    |     error
he${}xx                  |     error
he${hi}                  |     he
he${hi}xx                |     hexx
he${PWD}                 |     he/home
he${.}                   |     error
he${XXX:-000}xx          |     he000xx
he${PWD:-000}xx          |     he/homexx
he${XXX:-$PWD}xx         |     he/homexx
he${XXX:-${PWD:-yyy}}xx  |     he/homexx
he${XXX:-${YYY:-yyy}}xx  |     heyyyxx
he${XXX:YYY}             |     error
he${XXX?}                |     error
he${XXX:?}               |     error
he${PWD?}                |     he/home
he${PWD:?}               |     he/home
he${NULL?}               |     he
he${NULL:?}              |     error
he${XXX:+${PWD}}xx       |     hexx
he${PWD:+${XXX}}xx       |     hexx
he${PWD:+${SHELL}}xx     |     hebashxx
he${XXX:+000}xx          |     hexx
he${PWD:+000}xx          |     he000xx
'he${XX}'                |     he${XX}
"he${PWD}"               |     he/home
"he'$PWD'"               |     he'/home'
"$PWD"                   |     /home
'$PWD'                   |     $PWD
'\$PWD'                  |     \$PWD
'"hello"'                |     "hello"
he\$PWD                  |     he$PWD
"he\$PWD"                |     he$PWD
'he\$PWD'                |     he\$PWD
he${PWD                  |     error
he${PWD:=000}xx          |     error
he${PWD:+${PWD}:}xx      |     he/home:xx
he${XXX:-\$PWD:}xx       |     he$PWD:xx
he${XXX:-\${PWD}z}xx     |     he${PWDz}xx
안녕하세요                 |     안녕하세요
안'녕'하세요               |     안녕하세요
안'녕하세요                |     error
안녕\'하세요               |     안녕'하세요
안\\'녕하세요              |     error
"안녕하세요                |     error
"안녕하세요\"              |     error
"안'녕'하세요"             |     안'녕'하세요
'안녕하세요'               |     안녕하세요
'안녕\'하세요'             |     error
'안녕\\'하세요'            |     error
안녕$1x                    |     안녕x
안녕$.x                    |     안녕$.x
안녕$KOREAN                |     안녕한국어
안녕${KOREAN}              |     안녕한국어
안녕${KOREAN:-abc}         |     안녕한국어
안녕${XXX:-abc}            |     안녕abc
"안녕$KOREAN"              |     안녕한국어
$KOREAN$KOREAN             |     한국어한국어
${KOREAN}${KOREAN}         |     한국어한국어
$@                         |
$$                         |
$#                         |
$!                         |
$0                         |
${XXX:-a b c}              |     a b c
${PWD#/}                   |     home
${PWD%e}                   |     /hom
${PWD/o/0}                 |     /h0me
"""#;

#[test]
fn buildkit_env_var_test() {
    let env = env(&[
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]);
    for (n, line) in ENV_VAR_TEST.lines().enumerate() {
        let line = line.trim();
        let Some((input, expected)) = line.split_once('|') else {
            continue;
        };
        let (input, expected) = (input.trim(), expected.trim());
        let got = expand_with(input, &env);
        if expected == "error" {
            assert!(got.is_err(), "line {n}: {input:?} should fail, got {got:?}");
        } else {
            assert_eq!(got.as_deref(), Ok(expected), "line {n}: {input:?}");
        }
    }
}

#[test]
fn buildkit_words_test() {
    let env = env(&[("ENV", "hello there"), ("EMPTY", "")]);
    let cases: &[(&str, &[&str])] = &[
        ("hello", &["hello"]),
        ("hello world", &["hello", "world"]),
        ("hello  world", &["hello", "world"]),
        ("'hello world'", &["hello world"]),
        ("\"hello world\"", &["hello world"]),
        ("hello\\ world", &["hello world"]),
        ("$ENV", &["hello", "there"]),
        ("\"$ENV\"", &["hello there"]),
        ("'$ENV'", &["$ENV"]),
        ("x$ENV", &["xhello", "there"]),
        ("$EMPTY", &[]),
        // An empty word, even a quoted one, is dropped (as in BuildKit).
        ("\"$EMPTY\"", &[]),
        ("a ''", &["a"]),
    ];
    for (input, expected) in cases {
        let got = Lexer::default()
            .expand_words(input, &|k| env.get(k).cloned())
            .unwrap();
        assert_eq!(&got, expected, "{input:?}");
    }
}

#[test]
fn mandatory_vars() {
    let set = env(&[("VAR", "plain"), ("ARG", "x")]);
    let empty = env(&[("VAR", ""), ("ARG", "x")]);
    let unset = env(&[("ARG", "x")]);
    let no_empty = "${VAR:?message here$ARG}";
    let no_unset = "${VAR?message here$ARG}";
    assert_eq!(expand_with(no_empty, &set).unwrap(), "plain");
    assert!(
        expand_with(no_empty, &empty)
            .unwrap_err()
            .message
            .contains("message herex")
    );
    assert!(
        expand_with(no_empty, &unset)
            .unwrap_err()
            .message
            .contains("message herex")
    );
    assert_eq!(expand_with(no_unset, &set).unwrap(), "plain");
    assert_eq!(expand_with(no_unset, &empty).unwrap(), "");
    assert!(
        expand_with(no_unset, &unset)
            .unwrap_err()
            .message
            .contains("message herex")
    );
}

#[test]
fn buildkit_process_with_matches() {
    let foo_bar = env(&[("FOO", "xxx"), ("BAR", "")]);
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static str,
    );
    let ok: &[Case] = &[
        ("x", &[], "x"),
        ("x ${UNUSED}", &[], "x "),
        (
            "${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}",
            &[("FOO", "xxx"), ("BAR", "")],
            "xxx  ccc",
        ),
        (
            "${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}",
            &[("FOO", "xxx"), ("BAR", "")],
            "xxx bbb ccc",
        ),
        ("${FOO:-}", &[("FOO", "xxx")], "xxx"),
        ("${FOO:-}", &[], ""),
        (
            "${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}",
            &[("FOO", "xxx"), ("BAR", "")],
            "aaa bbb ",
        ),
        (
            "${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}",
            &[("FOO", "xxx"), ("BAR", "")],
            "aaa  ",
        ),
        ("${FOO?aaa}", &[("FOO", "xxx")], "xxx"),
        ("${BAR?bbb}", &[("BAR", "")], ""),
        ("${FOO:?aaa}", &[("FOO", "xxx")], "xxx"),
        (
            r"${FOO#()[]{\}^$.\*\?|\\}",
            &[("FOO", r"()[]{}^$.*?|\x")],
            "x",
        ),
        (r"${FOO%%\**}", &[("FOO", "xx**")], "xx"),
        ("${FOO#*x*y}", &[("FOO", "xxyy")], "y"),
        ("${FOO#*}", &[("FOO", "xxyy")], "xxyy"),
        ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "x")], "xyy"),
        ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "")], "xxyy"),
        ("${FOO#}", &[("FOO", "xxyy")], "xxyy"),
        ("${FOO##*x}", &[("FOO", "xxyy")], "yy"),
        ("${FOO##}", &[("FOO", "xxyy")], "xxyy"),
        (r"${FOO#?\?}", &[("FOO", "???y")], "?y"),
        ("${ABC:-.}${FOO%x}${ABC:-.}", &[("FOO", "xxyy")], ".xxyy."),
        (r"${FOO%%\**\*}", &[("FOO", "a***yy*")], "a"),
        ("${FOO%}", &[("FOO", "xxyy")], "xxyy"),
        ("${FOO%%$BAR}", &[("FOO", "xxyy"), ("BAR", "")], "xxyy"),
        (
            "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
            &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", r"\*/")],
            "/foo.*/*.txt - /foo..*.txt",
        ),
        (
            "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
            &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
            "/tmp/bar.txt - /bar.txt",
        ),
        (
            "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
            &[
                ("FOO", "/a/foo/b/c.txt"),
                ("NEEDLE", "/?/"),
                ("REPLACEMENT", "/"),
            ],
            "/foo/b/c.txt - /foo/c.txt",
        ),
        (
            "${FOO/$NEEDLE/$REPLACEMENT}",
            &[
                ("FOO", "http://google.de"),
                ("NEEDLE", "http://"),
                ("REPLACEMENT", "https://"),
            ],
            "https://google.de",
        ),
        (
            r"${FOO//\//\/}",
            &[("FOO", "/tmp/foo.txt")],
            r"\/tmp\/foo.txt",
        ),
        ("${FOO/$BAR/ww}", &[("FOO", "xxyy"), ("BAR", "")], "wwxxyy"),
        ("${FOO///}", &[("FOO", "xxyy")], "xxyy"),
        ("${FOO///}", &[], ""),
        (
            "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz",
            &[
                ("VERSION", "v1.2.3"),
                ("TARGETOS", "linux"),
                ("TARGETARCH", "arm"),
                ("TARGETVARIANT", "v7"),
            ],
            "something-v1.2.3.linux-arm-v7.tar.gz",
        ),
    ];
    for (input, vars, expected) in ok {
        assert_eq!(
            expand_with(input, &env(vars)).as_deref(),
            Ok(*expected),
            "{input:?}"
        );
    }
    for input in [
        "${BAZ?ccc}",
        "${BAR:?bbb}",
        "${BAZ:?ccc}",
        "${BAZ:?}",
        "${FOO=aaa}",
        "${FOO=:aaa}",
        "${FOO=}",
        "${FOO//ww}",
        "${FOO//}",
    ] {
        assert!(
            expand_with(input, &foo_bar).is_err(),
            "{input:?} should fail"
        );
    }
}

#[test]
fn backtick_escape() {
    let env = env(&[("A", "1")]);
    let lex = Lexer::new('`');
    let get = |k: &str| env.get(k).cloned();
    assert_eq!(lex.expand(r"c:\dir\$A", &get).unwrap(), r"c:\dir\1");
    assert_eq!(lex.expand("`$A", &get).unwrap(), "$A");
    assert_eq!(lex.expand("\"a`\"b\"", &get).unwrap(), "a\"b");
}

#[test]
fn heredoc_mode_keeps_quotes() {
    let env = env(&[("A", "1")]);
    let lex = Lexer::default().without_quotes();
    assert_eq!(
        lex.expand("echo \"$A\" '$A'", &|k| env.get(k).cloned())
            .unwrap(),
        "echo \"1\" '1'"
    );
}

#[test]
fn reverse_pattern_keeps_escapes() {
    assert_eq!(reverse_pattern(r"a\*c"), r"c\*a");
    assert_eq!(reverse_pattern(r"ab\"), r"\ba");
    assert_eq!(reverse_pattern(r"\\b"), r"b\\");
    assert_eq!(reverse_pattern(""), "");
}
