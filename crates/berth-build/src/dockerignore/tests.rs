//! Cases from moby/patternmatcher's `patternmatcher_test.go` and `ignorefile` behaviour.

use super::*;

fn ig(patterns: &[&str]) -> DockerIgnore {
    DockerIgnore::parse(&patterns.join("\n")).unwrap()
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum M {
    Fail,
    Exact,
    Inexact,
}

#[test]
fn moby_matches_table() {
    use M::*;
    // (pattern, text, expected). `excluded` implements MatchesOrParentMatches, so both Exact
    // and Inexact mean "excluded". The two cases with text "/" are left out: berth never asks
    // about the context root.
    let cases: &[(&str, &str, M)] = &[
        ("**", "file", Exact),
        ("**", "file/", Exact),
        ("**/", "file", Exact),
        ("**/", "file/", Exact),
        ("**", "dir/file", Exact),
        ("**/", "dir/file", Exact),
        ("**", "dir/file/", Exact),
        ("**/", "dir/file/", Exact),
        ("**/**", "dir/file", Exact),
        ("**/**", "dir/file/", Exact),
        ("dir/**", "dir/file", Exact),
        ("dir/**", "dir/file/", Exact),
        ("dir/**", "dir/dir2/file", Exact),
        ("dir/**", "dir/dir2/file/", Exact),
        ("**/dir", "dir", Exact),
        ("**/dir", "dir/file", Inexact),
        ("**/dir2/*", "dir/dir2/file", Exact),
        ("**/dir2/*", "dir/dir2/file/", Inexact),
        ("**/dir2/**", "dir/dir2/dir3/file", Exact),
        ("**/dir2/**", "dir/dir2/dir3/file/", Exact),
        ("**file", "file", Exact),
        ("**file", "dir/file", Exact),
        ("**/file", "dir/file", Exact),
        ("**file", "dir/dir/file", Exact),
        ("**/file", "dir/dir/file", Exact),
        ("**/file*", "dir/dir/file", Exact),
        ("**/file*", "dir/dir/file.txt", Exact),
        ("**/file*txt", "dir/dir/file.txt", Exact),
        ("**/file*.txt", "dir/dir/file.txt", Exact),
        ("**/file*.txt*", "dir/dir/file.txt", Exact),
        ("**/**/*.txt", "dir/dir/file.txt", Exact),
        ("**/**/*.txt2", "dir/dir/file.txt", Fail),
        ("**/*.txt", "file.txt", Exact),
        ("**/**/*.txt", "file.txt", Exact),
        ("a**/*.txt", "a/file.txt", Exact),
        ("a**/*.txt", "a/dir/file.txt", Exact),
        ("a**/*.txt", "a/dir/dir/file.txt", Exact),
        ("a/*.txt", "a/dir/file.txt", Fail),
        ("a/*.txt", "a/file.txt", Exact),
        ("a/*.txt**", "a/file.txt", Exact),
        ("a[b-d]e", "ae", Fail),
        ("a[b-d]e", "ace", Exact),
        ("a[b-d]e", "aae", Fail),
        ("a[^b-d]e", "aze", Exact),
        (".*", ".foo", Exact),
        (".*", "foo", Fail),
        ("abc.def", "abcdef", Fail),
        ("abc.def", "abc.def", Exact),
        ("abc.def", "abcZdef", Fail),
        ("abc?def", "abcZdef", Exact),
        ("abc?def", "abcdef", Fail),
        ("**/foo/bar", "foo/bar", Exact),
        ("**/foo/bar", "dir/foo/bar", Exact),
        ("**/foo/bar", "dir/dir2/foo/bar", Exact),
        ("abc/**", "abc", Fail),
        ("abc/**", "abc/def", Exact),
        ("abc/**", "abc/def/ghi", Exact),
        ("**/.foo", ".foo", Exact),
        ("**/.foo", "bar.foo", Fail),
        ("a(b)c/def", "a(b)c/def", Exact),
        ("a(b)c/def", "a(b)c/xyz", Fail),
        ("a.|)$(}+{bc", "a.|)$(}+{bc", Exact),
        (
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            Exact,
        ),
        (
            "dist/*.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            Exact,
        ),
        ("a\\\\", "a\\", Exact),
        ("a\\*b", "a*b", Exact),
    ];
    for (pattern, text, expected) in cases {
        let got = ig(&[pattern]).excluded(text);
        assert_eq!(got, *expected != Fail, "pattern={pattern:?} text={text:?}");
    }
}

#[test]
fn moby_multi_pattern_table() {
    assert!(!ig(&["**", "!util/docker/web"]).excluded("util/docker/web/foo"));
    assert!(ig(&["**", "!util/docker/web", "util/docker/web/foo"]).excluded("util/docker/web/foo"));
    assert!(
        !ig(&[
            "**",
            "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"
        ])
        .excluded("dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl")
    );
    assert!(
        !ig(&["**", "!dist/*.whl"])
            .excluded("dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl")
    );
}

#[test]
fn moby_simple_cases() {
    assert!(ig(&["*"]).excluded("fileutils.go"));
    assert!(ig(&["*.go"]).excluded("fileutils.go"));
    assert!(ig(&["!fileutils.go", "*.go"]).excluded("fileutils.go"));
    assert!(!ig(&["docs", "!docs/README.md"]).excluded("docs/README.md"));
    assert!(!ig(&["docs/", "!docs/README.md"]).excluded("docs/README.md"));
    assert!(!ig(&["docs/*", "!docs/README.md"]).excluded("docs/README.md"));
    assert!(!ig(&["*.go", "!fileutils.go"]).excluded("fileutils.go"));
    assert!(!ig(&["*.go"]).excluded("."));
    assert!(!ig(&[]).excluded("any/path/there"));
    assert!(DockerIgnore::parse("!").is_err());
    assert!(DockerIgnore::parse("[").is_err());
}

#[test]
fn go_filepath_match_table() {
    // (pattern, name, matches, bad pattern)
    let cases: &[(&str, &str, bool, bool)] = &[
        ("abc", "abc", true, false),
        ("*", "abc", true, false),
        ("*c", "abc", true, false),
        ("a*", "a", true, false),
        ("a*", "abc", true, false),
        ("a*", "ab/c", true, false),
        ("a*/b", "abc/b", true, false),
        ("a*/b", "a/c/b", false, false),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", true, false),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true, false),
        ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false, false),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", false, false),
        ("a*b?c*x", "abxbbxdbxebxczzx", true, false),
        ("a*b?c*x", "abxbbxdbxebxczzy", false, false),
        ("ab[c]", "abc", true, false),
        ("ab[b-d]", "abc", true, false),
        ("ab[e-g]", "abc", false, false),
        ("ab[^c]", "abc", false, false),
        ("ab[^b-d]", "abc", false, false),
        ("ab[^e-g]", "abc", true, false),
        ("a\\*b", "a*b", true, false),
        ("a\\*b", "ab", false, false),
        ("a?b", "a☺b", true, false),
        ("a[^a]b", "a☺b", true, false),
        ("a???b", "a☺b", false, false),
        ("a[^a][^a][^a]b", "a☺b", false, false),
        ("[a-ζ]*", "α", true, false),
        ("*[a-ζ]", "A", false, false),
        ("a?b", "a/b", false, false),
        ("a*b", "a/b", false, false),
        ("[\\]a]", "]", true, false),
        ("[\\-]", "-", true, false),
        ("[x\\-]", "x", true, false),
        ("[x\\-]", "-", true, false),
        ("[x\\-]", "z", false, false),
        ("[\\-x]", "x", true, false),
        ("[\\-x]", "-", true, false),
        ("[\\-x]", "a", false, false),
        ("[]a]", "]", false, true),
        ("[-]", "-", false, true),
        ("[x-]", "x", false, true),
        ("[x-]", "-", false, true),
        ("[x-]", "z", false, true),
        ("[-x]", "x", false, true),
        ("[-x]", "-", false, true),
        ("[-x]", "a", false, true),
        ("\\", "a", false, true),
        ("[a-b-c]", "a", false, true),
        ("[", "a", false, true),
        ("[^", "a", false, true),
        ("[^bc", "a", false, true),
        ("a[", "a", false, true),
        ("a[", "ab", false, true),
        ("*x", "xxx", true, false),
    ];
    for (pattern, name, matches, bad) in cases {
        match DockerIgnore::parse(pattern) {
            Err(_) => assert!(bad, "{pattern:?} should parse"),
            Ok(ig) => {
                assert!(!bad, "{pattern:?} should be rejected");
                assert_eq!(
                    ig.excluded(name),
                    *matches,
                    "pattern={pattern:?} name={name:?}"
                );
            }
        }
    }
}

#[test]
fn ignorefile_reading() {
    let ig = DockerIgnore::parse(
        "\u{feff}# comment\n  \n/abs\n./rel/\n  !  /abs/keep  \nsub/../x\n #notacomment\n",
    )
    .unwrap();
    assert_eq!(
        ig.patterns().collect::<Vec<_>>(),
        vec!["abs", "rel", "!abs/keep", "x", "#notacomment"]
    );
    assert!(ig.excluded("abs/other"));
    assert!(!ig.excluded("abs/keep"));
    assert!(ig.excluded("rel/deep/file"));
    assert!(ig.excluded("./rel"));
    assert!(ig.excluded("x"));
    assert!(!ig.excluded("relx"));
}

#[test]
fn not_gitignore_semantics() {
    // `*.log` is anchored at the root in Docker (it would match everywhere in git).
    let ig = ig(&["*.log"]);
    assert!(ig.excluded("a.log"));
    assert!(!ig.excluded("sub/a.log"));
    assert!(self::ig(&["**/*.log"]).excluded("sub/deep/a.log"));
}

#[test]
fn skipping_directories() {
    let plain = ig(&["node_modules", "target/**"]);
    assert!(plain.can_skip_dir("node_modules"));
    assert!(plain.can_skip_dir("target/debug"));
    assert!(!plain.can_skip_dir("src"));

    let reinclude = ig(&["docs", "!docs/README.md", "build"]);
    assert!(!reinclude.can_skip_dir("docs"));
    assert!(reinclude.can_skip_dir("build"));

    // A `!` pattern starting with a wildcard could match under any directory.
    let anywhere = ig(&["vendor", "!**/*.go"]);
    assert!(!anywhere.can_skip_dir("vendor"));
    let elsewhere = ig(&["vendor", "!docs/*.md"]);
    assert!(elsewhere.can_skip_dir("vendor"));
}

#[test]
fn clean_like_go() {
    for (input, want) in [
        ("", "."),
        ("a/b/../c", "a/c"),
        ("./a//b/", "a/b"),
        ("/../a", "/a"),
        ("../../a", "../../a"),
        ("/", "/"),
        ("a/..", "."),
    ] {
        assert_eq!(clean(input), want, "{input:?}");
    }
}
