//! `discover:` patterns: the folders that hold a file matching `*/Dockerfile`-style patterns.
//!
//! Deliberately small: `*` (any run of characters) and `?` (one character) within one path
//! segment, literal segments. No `..` (it leaves the repository) and no `**`: a recursive pattern would turn a vendored
//! dependency's Dockerfile into a service by surprise. Hidden entries (`.git`, `.cache`) are
//! never matched by a wildcard. Results are sorted, so the service order is stable.
//!
//! The walk never leaves the repository: an entry that is a link resolving outside it is
//! neither looked into nor tested for the file; it is handed back as *escaped*, for validation
//! to report, instead of being silently dropped.

use std::path::{Path, PathBuf};

/// Why a pattern is refused (before looking at the file system).
pub(crate) fn pattern_problem(pattern: &str) -> Option<&'static str> {
    let segments: Vec<&str> = pattern.split('/').collect();
    if pattern.trim().is_empty() {
        Some("it is empty")
    } else if pattern.starts_with('/') {
        Some("it is absolute; write it relative to the directory of berth.yaml")
    } else if segments.iter().any(|s| *s == ".." || *s == ".") {
        Some(
            "`..` and `.` segments are not allowed: `..` leaves the repository; write the pattern from the directory of berth.yaml down",
        )
    } else if pattern.contains("**") {
        Some("`**` is not supported; write one `*` per folder level, e.g. `services/*/Dockerfile`")
    } else if segments.iter().any(|s| s.is_empty()) {
        Some("it has an empty path segment (`//` or a trailing `/`)")
    } else if segments.len() < 2 {
        Some("it must name a file inside the service folders, e.g. `*/Dockerfile`")
    } else if !segments[..segments.len() - 1].iter().any(|s| is_wild(s)) {
        Some(
            "no folder segment has a wildcard, so it can find one folder at most; write `*` where the folder names differ",
        )
    } else {
        None
    }
}

fn is_wild(segment: &str) -> bool {
    segment.contains(['*', '?'])
}

/// Whether `name` matches one pattern segment (`*`, `?`, literal characters), as `discover`
/// patterns do; `berth init` matches Skaffold's manifest globs with it.
pub fn segment_matches(pattern: &str, name: &str) -> bool {
    berth_types::glob::segment_matches(berth_types::glob::Syntax::Wildcards, pattern, name)
}

/// The folders (relative to `dir`, sorted, without duplicates) that hold a file matching
/// `pattern`, and the entries (relative, sorted) the walk did not follow because they are links
/// leading outside `dir`. The pattern must have passed [`pattern_problem`].
pub(crate) fn folders(dir: &Path, pattern: &str) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let segments: Vec<&str> = pattern.split('/').collect();
    let mut found = Walk::default();
    // An unresolvable root finds nothing (validation reports the missing directory elsewhere).
    if let Ok(root) = dir.canonicalize() {
        found.walk(&root, PathBuf::new(), &segments);
    }
    let mut folders: Vec<PathBuf> = found
        .files
        .into_iter()
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .filter(|f| !f.as_os_str().is_empty())
        .collect();
    folders.sort();
    folders.dedup();
    found.escaped.sort();
    found.escaped.dedup();
    (folders, found.escaped)
}

#[derive(Default)]
struct Walk {
    files: Vec<PathBuf>,
    escaped: Vec<PathBuf>,
}

impl Walk {
    fn walk(&mut self, root: &Path, at: PathBuf, segments: &[&str]) {
        let Some((first, rest)) = segments.split_first() else {
            return;
        };
        let last = rest.is_empty();
        let visit = |me: &mut Walk, rel: PathBuf| {
            let full = root.join(&rel);
            // Every step is resolved: a link (here or in a parent already walked) must stay
            // inside the repository before anything behind it is looked at.
            if full.symlink_metadata().is_err() {
                return;
            }
            match full.canonicalize() {
                Ok(real) if real.starts_with(root) => {}
                Ok(_) => {
                    me.escaped.push(rel);
                    return;
                }
                Err(_) => return,
            }
            if last {
                if full.is_file() {
                    me.files.push(rel);
                }
            } else if full.is_dir() {
                me.walk(root, rel, rest);
            }
        };
        if !is_wild(first) {
            visit(self, at.join(first));
            return;
        }
        let Ok(entries) = std::fs::read_dir(root.join(&at)) else {
            return;
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.') && segment_matches(first, n))
            .collect();
        names.sort();
        for n in names {
            visit(self, at.join(n));
        }
    }
}

/// Whether a `template` entry is a glob pattern rather than a path.
pub(crate) fn is_glob(entry: &str) -> bool {
    entry.contains(['*', '?'])
}

/// Why a `template` glob pattern is refused (before looking at the file system). Unlike
/// `discover`, `**` is allowed as a whole segment: templates are the repository's own files,
/// and `k8s/**/*.yml` is how teams name a tree of them.
pub(crate) fn glob_problem(pattern: &str) -> Option<&'static str> {
    let segments: Vec<&str> = pattern.split('/').collect();
    if pattern.trim().is_empty() {
        Some("it is empty")
    } else if pattern.starts_with('/') {
        Some("it is absolute; write it relative to the directory of berth.yaml")
    } else if segments.iter().any(|s| *s == ".." || *s == ".") {
        Some("`..` and `.` segments are not allowed: `..` leaves the repository")
    } else if segments.iter().any(|s| s.is_empty()) {
        Some("it has an empty path segment (`//` or a trailing `/`)")
    } else if segments.iter().any(|s| s.contains("**") && *s != "**") {
        Some("`**` must be a whole path segment, e.g. `k8s/**/*.yml`")
    } else if segments.last() == Some(&"**") {
        Some("it must end with a file name pattern, e.g. `k8s/**/*.yml`")
    } else {
        None
    }
}

/// The files (relative to `dir`, sorted, without duplicates) that a `template` glob matches,
/// and the entries (relative, sorted) the walk did not follow because they are links leading
/// outside `dir`. `*` and `?` match within one segment and never a hidden entry; `**` matches
/// any number of folders (none included). The pattern must have passed [`glob_problem`].
pub(crate) fn glob_files(dir: &Path, pattern: &str) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let segments: Vec<&str> = pattern.split('/').collect();
    let mut found = Walk::default();
    let mut seen = std::collections::HashSet::new();
    if let Ok(root) = dir.canonicalize() {
        found.glob(&root, PathBuf::new(), &segments, &mut seen);
    }
    found.files.sort();
    found.files.dedup();
    found.escaped.sort();
    found.escaped.dedup();
    (found.files, found.escaped)
}

impl Walk {
    /// Where `rel` resolves, if it exists inside `root`; a link leading outside is recorded
    /// as escaped and not followed.
    fn inside(&mut self, root: &Path, rel: &Path) -> Option<PathBuf> {
        let full = root.join(rel);
        full.symlink_metadata().ok()?;
        match full.canonicalize() {
            Ok(real) if real.starts_with(root) => Some(real),
            Ok(_) => {
                self.escaped.push(rel.to_path_buf());
                None
            }
            Err(_) => None,
        }
    }

    /// The non-hidden entries of `at` whose name matches `segment`, sorted.
    fn matching(root: &Path, at: &Path, segment: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(root.join(at)) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.') && segment_matches(segment, n))
            .collect();
        names.sort();
        names
    }

    fn glob(
        &mut self,
        root: &Path,
        at: PathBuf,
        segments: &[&str],
        seen: &mut std::collections::HashSet<(PathBuf, usize)>,
    ) {
        let Some((first, rest)) = segments.split_first() else {
            return;
        };
        if *first == "**" {
            // Each real folder once per remaining pattern: links inside the repository may
            // form loops.
            let Some(real) = self.inside(root, &at) else {
                return;
            };
            if !seen.insert((real, segments.len())) {
                return;
            }
            self.glob(root, at.clone(), rest, seen);
            for n in Self::matching(root, &at, "*") {
                let rel = at.join(n);
                if self.inside(root, &rel).is_some_and(|r| r.is_dir()) {
                    self.glob(root, rel, segments, seen);
                }
            }
            return;
        }
        let names = if is_wild(first) {
            Self::matching(root, &at, first)
        } else {
            vec![first.to_string()]
        };
        for n in names {
            let rel = at.join(n);
            let Some(real) = self.inside(root, &rel) else {
                continue;
            };
            if rest.is_empty() {
                if real.is_file() {
                    self.files.push(rel);
                }
            } else if real.is_dir() {
                self.glob(root, rel, rest, seen);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_match_like_a_shell() {
        assert!(segment_matches("*", "home"));
        assert!(segment_matches("Dockerfile", "Dockerfile"));
        assert!(!segment_matches("Dockerfile", "Dockerfile.dev"));
        assert!(segment_matches("Dockerfile*", "Dockerfile.dev"));
        assert!(segment_matches("svc-?", "svc-a"));
        assert!(!segment_matches("svc-?", "svc-ab"));
        assert!(segment_matches("*-api", "orders-api"));
        assert!(!segment_matches("*-api", "orders-web"));
    }

    #[test]
    fn patterns_are_checked_before_the_walk() {
        assert!(pattern_problem("*/Dockerfile").is_none());
        assert!(pattern_problem("services/*/Dockerfile").is_none());
        for bad in [
            "",
            "../apps/*/Dockerfile",
            "*/../*/Dockerfile",
            "./*/Dockerfile",
            "/srv/*/Dockerfile",
            "**/Dockerfile",
            "Dockerfile",
            "*//Dockerfile",
            "web/Dockerfile",
        ] {
            assert!(pattern_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn folders_holding_a_match_are_found_sorted_and_hidden_ones_skipped() {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "mens/Dockerfile",
            "home/Dockerfile",
            "kids/Dockerfile",
            "k8s/service.yaml.j2",
            ".cache/Dockerfile",
            "docs/README.md",
            "services/a/Dockerfile",
        ] {
            let p = d.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        }
        std::fs::create_dir_all(d.path().join("empty/Dockerfile")).unwrap();
        assert_eq!(
            folders(d.path(), "*/Dockerfile").0,
            ["home", "kids", "mens"].map(PathBuf::from)
        );
        assert_eq!(
            folders(d.path(), "services/*/Dockerfile").0,
            [PathBuf::from("services/a")]
        );
        assert!(folders(d.path(), "*/Dockerfil").0.is_empty());
    }

    #[test]
    fn discover_does_not_follow_a_link_out_of_the_repository() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(outside.path().join("svc")).unwrap();
        std::fs::write(outside.path().join("svc/Dockerfile"), "").unwrap();
        std::fs::write(outside.path().join("Dockerfile"), "").unwrap();
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("home")).unwrap();
        std::fs::write(d.path().join("home/Dockerfile"), "").unwrap();
        std::fs::create_dir_all(d.path().join("apps")).unwrap();
        // A folder linked outside, a link inside (fine), and a Dockerfile linked outside.
        std::os::unix::fs::symlink(outside.path(), d.path().join("host")).unwrap();
        std::os::unix::fs::symlink("home", d.path().join("alias")).unwrap();
        std::fs::create_dir_all(d.path().join("web")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("Dockerfile"),
            d.path().join("web/Dockerfile"),
        )
        .unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("apps/x")).unwrap();
        let (found, escaped) = folders(d.path(), "*/Dockerfile");
        assert_eq!(found, ["alias", "home"].map(PathBuf::from));
        assert_eq!(escaped, ["host", "web/Dockerfile"].map(PathBuf::from));
        let (found, escaped) = folders(d.path(), "apps/*/Dockerfile");
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(escaped, [PathBuf::from("apps/x")]);
    }

    /// The shop layout: three service folders, one template, one Ingress.
    fn shop() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "home/Dockerfile",
            "kids/Dockerfile",
            "mens/Dockerfile",
            "Bad_Name/Dockerfile",
            "k8s/service.yaml.j2",
            "k8s/ingress.yaml",
        ] {
            let p = d.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        }
        d
    }

    const HEAD: &str = "registry: {prefix: r.example.com/shop}\nservices:\n";

    fn parse(services: &str) -> Result<crate::Config, Vec<String>> {
        let d = shop();
        crate::parse(&format!("{HEAD}{services}"), "berth.yaml", d.path()).map_err(|e| {
            e.diagnostics()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        })
    }

    #[test]
    fn a_discovered_folder_linked_out_of_the_repository_is_an_error_not_a_service() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("Dockerfile"), "").unwrap();
        let d = shop();
        std::os::unix::fs::symlink(outside.path(), d.path().join("host")).unwrap();
        let yaml = format!(
            "{HEAD}  - discover: \"*/Dockerfile\"\n    exclude: [Bad_Name]\n    manifests: {{ template: k8s/service.yaml.j2 }}\n"
        );
        let e: Vec<String> = crate::parse(&yaml, "berth.yaml", d.path())
            .unwrap_err()
            .diagnostics()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            e.iter()
                .any(|m| m.contains("host") && m.contains("outside the repository")),
            "{e:?}"
        );
        let e = parse("  - discover: \"../*/Dockerfile\"\n").unwrap_err();
        assert!(e.iter().any(|m| m.contains("`..`")), "{e:?}");
    }

    #[test]
    fn one_service_per_folder_named_after_it_with_the_entry_s_settings() {
        let c = parse(
            "  - discover: \"*/Dockerfile\"\n    exclude: [Bad_Name]\n    test: true\n    manifests: { template: k8s/service.yaml.j2 }\n  - name: ingress\n    manifests: { path: k8s/ingress.yaml }\n",
        )
        .unwrap();
        let names: Vec<&str> = c.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["home", "kids", "mens", "ingress"]);
        let kids = c.service("kids").unwrap();
        assert_eq!(kids.build.as_ref().unwrap().context, PathBuf::from("kids"));
        assert_eq!(kids.paths, [PathBuf::from("kids")]);
        assert_eq!(
            kids.image.as_ref().unwrap().name(),
            "r.example.com/shop/kids"
        );
        assert_eq!(kids.test.as_ref().map(|t| t.command.as_str()), Some("true"));
        assert_eq!(kids.discovered_by.as_deref(), Some("*/Dockerfile"));
        assert_eq!(kids.location, crate::Location::new(3, 5));
        assert!(matches!(
            kids.manifests,
            Some(crate::Manifests::Template { .. })
        ));
        assert_eq!(c.service("ingress").unwrap().discovered_by, None);
    }

    #[test]
    fn an_entry_named_like_a_folder_overrides_it() {
        let c = parse(
            "  - name: kids\n    build: { context: kids, args: {A: b} }\n    manifests: { template: k8s/service.yaml.j2, values: {replicas: 3} }\n  - discover: \"*/Dockerfile\"\n    exclude: [Bad_Name]\n    manifests: { template: k8s/service.yaml.j2 }\n",
        )
        .unwrap();
        let names: Vec<&str> = c.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["kids", "home", "mens"]);
        let kids = c.service("kids").unwrap();
        assert_eq!(kids.discovered_by, None);
        assert_eq!(kids.build.as_ref().unwrap().args["A"], "b");
    }

    #[test]
    fn discover_mistakes_point_at_the_entry_and_say_what_to_do() {
        let e = parse("  - discover: \"*/Dockerfil\"\n    manifests: { path: k8s/ingress.yaml }\n")
            .unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("`discover: */Dockerfil` matches no file"),
            "{e:?}"
        );
        assert!(e[0].contains("at berth.yaml:3:15;"), "{e:?}");

        let e = parse("  - discover: \"**/Dockerfile\"\n").unwrap_err();
        assert!(e[0].contains("`**` is not supported"), "{e:?}");

        // A folder that cannot be a Kubernetes name is named, with the way out.
        let e =
            parse("  - discover: \"*/Dockerfile\"\n    manifests: { path: k8s/ingress.yaml }\n")
                .unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("folder `Bad_Name` found by `discover` cannot name a service"),
            "{e:?}"
        );
        assert!(e[0].contains("list it under `exclude`"), "{e:?}");

        let e = parse("  - discover: \"*/Dockerfile\"\n    exclude: [Bad_Name, kid]\n    manifests: { path: k8s/ingress.yaml }\n")
            .unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("`exclude: kid` is not a folder"), "{e:?}");
        assert!(e[0].ends_with("did you mean `kids`?"), "{e:?}");

        let e = parse("  - discover: \"*/Dockerfile\"\n    exclude: [Bad_Name]\n    image: r.example.com/x\n    paths: [k8s]\n    build: { context: home }\n").unwrap_err();
        let keys: Vec<&str> = e
            .iter()
            .map(|m| m.split('`').nth(1).unwrap_or(""))
            .collect();
        assert_eq!(keys, ["image", "paths", "context"], "{e:?}");
        assert!(e[0].contains("at berth.yaml:5:12"), "{e:?}");

        let e = parse("  - name: web\n    discover: \"*/Dockerfile\"\n").unwrap_err();
        assert!(
            e[0].starts_with("a service entry has both `name` and `discover` at berth.yaml:3:11"),
            "{e:?}"
        );

        let e = parse("  - image: r.example.com/x\n").unwrap_err();
        assert!(
            e[0].starts_with("missing key `name` at berth.yaml:3:5"),
            "{e:?}"
        );

        let e = parse("  - discover: \"*/Dockerfile\"\n    exclude: [Bad_Name]\n    dicsover: x\n")
            .unwrap_err();
        assert!(e[0].contains("did you mean `discover`?"), "{e:?}");
    }

    #[test]
    fn the_schema_describes_discover_and_exclude() {
        let schema = crate::json_schema();
        let service = &schema["$defs"]["Service"]["properties"];
        assert!(
            service["discover"]["description"]
                .as_str()
                .is_some_and(|d| d.contains("one service per folder")),
            "{service}"
        );
        assert!(service["exclude"].is_object(), "{service}");
        let required = schema["$defs"]["Service"]["required"].as_array();
        assert!(
            !required.is_some_and(|r| r.iter().any(|k| k == "name")),
            "`name` is not required: a discover entry has none"
        );
    }

    #[test]
    fn two_discover_entries_finding_one_name_are_duplicates() {
        let e = parse("  - discover: \"*/Dockerfile\"\n    exclude: [Bad_Name]\n  - discover: \"k?ds/Dockerfile\"\n").unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("duplicate service name `kids`"), "{e:?}");
    }
}
