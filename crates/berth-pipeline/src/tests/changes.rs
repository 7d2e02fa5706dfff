//! Change detection against real git repositories in temporary directories.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{ChangeError, ChangeReason, ServiceChange, changed_files, changed_services};

struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    fn new() -> Repo {
        let r = Repo {
            dir: tempfile::tempdir().unwrap(),
        };
        r.git(&["init", "-q", "-b", "main"]);
        r
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(self.path())
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(["-c", "commit.gpgsign=false"])
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", self.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn write(&self, path: &str, text: &str) -> &Repo {
        let p = self.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    fn config(&self, sub: &str) -> berth_config::Config {
        berth_config::load(&self.path().join(sub).join("berth.yaml")).unwrap()
    }
}

/// The microservices layout of scenario 4, plus a shared library and an image-only database.
const SHOP: &str = "\
registry: {prefix: registry.example.com/shop}
shared: [lib]
services:
  - name: home
    build: {context: home}
    manifests: {template: k8s/app.yaml.j2}
  - name: kids
    build: {context: kids}
    manifests: {template: k8s/app.yaml.j2}
  - name: mens
    build: {context: mens}
    paths: [mens, proto/mens.proto]
    manifests: {path: k8s/mens}
  - name: db
    image: docker.io/library/mongo:7
    manifests: {path: k8s/db.yaml}
";

fn shop(repo: &Repo, prefix: &str) -> String {
    let p = |s: &str| format!("{prefix}{s}");
    repo.write(&p("berth.yaml"), SHOP)
        .write(&p("home/app.js"), "home")
        .write(&p("kids/app.js"), "kids")
        .write(&p("mens/app.js"), "mens")
        .write(&p("proto/mens.proto"), "p")
        .write(&p("proto/other.proto"), "o")
        .write(&p("lib/util.js"), "u")
        .write(&p("k8s/app.yaml.j2"), "t")
        .write(&p("k8s/mens/deploy.yaml"), "d")
        .write(&p("k8s/db.yaml"), "db")
        .write(&p("README.md"), "r");
    repo.commit("shop")
}

fn summary(changes: &[ServiceChange]) -> Vec<(&str, ChangeReason, bool)> {
    changes
        .iter()
        .map(|c| (c.service.as_str(), c.reason, c.rebuild))
        .collect()
}

#[test]
fn first_deploy_is_everything() {
    let repo = Repo::new();
    let head = shop(&repo, "");
    let c = changed_services(repo.path(), None, &head, &repo.config("")).unwrap();
    assert_eq!(
        summary(&c),
        [
            ("home", ChangeReason::FirstDeploy, true),
            ("kids", ChangeReason::FirstDeploy, true),
            ("mens", ChangeReason::FirstDeploy, true),
            ("db", ChangeReason::FirstDeploy, false),
        ]
    );
}

#[test]
fn a_change_in_one_service_folder_selects_only_that_service() {
    let repo = Repo::new();
    let base = shop(&repo, "");
    repo.write("kids/app.js", "kids v2");
    let head = repo.commit("kids");
    let c = changed_services(repo.path(), Some(&base), &head, &repo.config("")).unwrap();
    assert_eq!(summary(&c), [("kids", ChangeReason::Source, true)]);
    assert_eq!(c[0].files, [PathBuf::from("kids/app.js")]);
}

#[test]
fn nothing_changed_outside_services_selects_nothing() {
    let repo = Repo::new();
    let base = shop(&repo, "");
    repo.write("README.md", "new docs")
        .write("proto/other.proto", "x");
    let head = repo.commit("docs");
    let c = changed_services(repo.path(), Some(&base), &head, &repo.config("")).unwrap();
    assert!(c.is_empty(), "{c:?}");
    // Same commit on both sides.
    let c = changed_services(repo.path(), Some(&head), &head, &repo.config("")).unwrap();
    assert!(c.is_empty());
}

#[test]
fn explicit_paths_replace_the_build_context() {
    let repo = Repo::new();
    let base = shop(&repo, "");
    repo.write("proto/mens.proto", "p2");
    let head = repo.commit("proto");
    let c = changed_services(repo.path(), Some(&base), &head, &repo.config("")).unwrap();
    assert_eq!(summary(&c), [("mens", ChangeReason::Source, true)]);
}

#[test]
fn manifests_only_redeploy_without_rebuild() {
    let repo = Repo::new();
    let base = shop(&repo, "");
    repo.write("k8s/mens/deploy.yaml", "d2")
        .write("k8s/db.yaml", "db2");
    let head = repo.commit("manifests");
    let c = changed_services(repo.path(), Some(&base), &head, &repo.config("")).unwrap();
    assert_eq!(
        summary(&c),
        [
            ("mens", ChangeReason::Manifests, false),
            ("db", ChangeReason::Manifests, false),
        ]
    );
    // The shared template belongs to the two services that use it.
    repo.write("k8s/app.yaml.j2", "t2");
    let next = repo.commit("template");
    let c = changed_services(repo.path(), Some(&head), &next, &repo.config("")).unwrap();
    assert_eq!(
        summary(&c),
        [
            ("home", ChangeReason::Manifests, false),
            ("kids", ChangeReason::Manifests, false),
        ]
    );
}

#[test]
fn removing_a_file_a_template_glob_matched_redeploys_its_service() {
    let repo = Repo::new();
    repo.write(
        "berth.yaml",
        "registry: {prefix: r.example.com/shop}\nservices:\n  - discover: \"apps/*/Dockerfile\"\n    manifests: {template: \"roles/{service}/templates/*.yml\"}\n",
    )
    .write("apps/web/Dockerfile", "FROM x")
    .write("apps/api/Dockerfile", "FROM x")
    .write("roles/web/templates/deployment.yml", "d")
    .write("roles/web/templates/service.yml", "s")
    .write("roles/api/templates/deployment.yml", "d");
    let base = repo.commit("roles");
    std::fs::remove_file(repo.path().join("roles/web/templates/service.yml")).unwrap();
    let head = repo.commit("no service for web");
    let c = changed_services(repo.path(), Some(&base), &head, &repo.config("")).unwrap();
    assert_eq!(summary(&c), [("web", ChangeReason::Manifests, false)]);
    // A new file the glob matches is that service's too.
    repo.write("roles/api/templates/hpa.yml", "h");
    let next = repo.commit("hpa for api");
    let c = changed_services(repo.path(), Some(&head), &next, &repo.config("")).unwrap();
    assert_eq!(summary(&c), [("api", ChangeReason::Manifests, false)]);
}

#[test]
fn berth_yaml_and_shared_paths_affect_every_service() {
    let repo = Repo::new();
    let base = shop(&repo, "");
    repo.write("lib/util.js", "u2");
    let head = repo.commit("lib");
    let c = changed_services(repo.path(), Some(&base), &head, &repo.config("")).unwrap();
    assert_eq!(c.len(), 4);
    assert!(c.iter().all(|c| c.reason == ChangeReason::Shared), "{c:?}");
    assert_eq!(summary(&c)[3], ("db", ChangeReason::Shared, false));

    // A top-level setting (here the registry prefix) may change every image.
    repo.write(
        "berth.yaml",
        &SHOP.replace("registry.example.com/shop", "registry.example.com/shop2"),
    );
    let next = repo.commit("config");
    let c = changed_services(repo.path(), Some(&head), &next, &repo.config("")).unwrap();
    assert_eq!(c.len(), 4);
    assert!(c.iter().all(|c| c.reason == ChangeReason::Config));
    assert_eq!(c[0].files, [PathBuf::from("berth.yaml")]);
}

#[test]
fn berth_yaml_comments_and_environments_select_nothing() {
    let repo = Repo::new();
    let base = shop(&repo, "");
    repo.write(
        "berth.yaml",
        &format!("# a comment\n{SHOP}environments:\n  - {{name: dev, namespace: dev}}\n"),
    );
    let head = repo.commit("comment and an environment");
    let c = changed_services(repo.path(), Some(&base), &head, &repo.config("")).unwrap();
    assert!(c.is_empty(), "{c:?}");
}

#[test]
fn adding_a_service_to_berth_yaml_selects_only_that_service() {
    let repo = Repo::new();
    let base = shop(&repo, "");
    repo.write(
        "berth.yaml",
        &format!("{SHOP}  - name: ladies\n    build: {{context: ladies}}\n    manifests: {{template: k8s/app.yaml.j2}}\n"),
    )
    .write("ladies/app.js", "ladies");
    let head = repo.commit("ladies");
    let c = changed_services(repo.path(), Some(&base), &head, &repo.config("")).unwrap();
    assert_eq!(summary(&c), [("ladies", ChangeReason::Config, true)]);
}

#[test]
fn a_berth_yaml_entry_change_selects_that_service_only() {
    let repo = Repo::new();
    let base = shop(&repo, "");
    // kids: another manifest source only -> redeploy; mens: a build change -> rebuild.
    repo.write(
        "berth.yaml",
        &SHOP
            .replace(
                "build: {context: kids}\n    manifests: {template: k8s/app.yaml.j2}",
                "build: {context: kids}\n    manifests: {path: k8s/mens}",
            )
            .replace(
                "build: {context: mens}",
                "build: {context: mens, args: {V: '2'}}",
            ),
    );
    let head = repo.commit("entries");
    let c = changed_services(repo.path(), Some(&base), &head, &repo.config("")).unwrap();
    assert_eq!(
        summary(&c),
        [
            ("kids", ChangeReason::Manifests, false),
            ("mens", ChangeReason::Config, true),
        ]
    );
}

#[test]
fn a_rename_counts_on_both_sides() {
    let repo = Repo::new();
    let base = shop(&repo, "");
    let long = "a line that makes the rename detectable\n".repeat(20);
    repo.write("home/widget.js", &long);
    let mid = repo.commit("widget");
    repo.git(&["mv", "home/widget.js", "kids/widget.js"]);
    let head = repo.commit("move widget");
    let files = changed_files(repo.path(), &mid, &head).unwrap();
    assert_eq!(
        files,
        [
            PathBuf::from("home/widget.js"),
            PathBuf::from("kids/widget.js")
        ]
    );
    let c = changed_services(repo.path(), Some(&mid), &head, &repo.config("")).unwrap();
    assert_eq!(
        summary(&c),
        [
            ("home", ChangeReason::Source, true),
            ("kids", ChangeReason::Source, true)
        ]
    );
    // Across several commits: only the end points matter.
    let c = changed_services(repo.path(), Some(&base), &head, &repo.config("")).unwrap();
    assert_eq!(summary(&c), [("kids", ChangeReason::Source, true)]);
}

#[test]
fn berth_yaml_in_a_subdirectory_of_a_monorepo() {
    let repo = Repo::new();
    repo.write("other-team/x.txt", "x");
    let base = shop(&repo, "shop/");
    repo.write("shop/home/app.js", "h2")
        .write("other-team/x.txt", "y")
        .write("home/app.js", "not ours");
    let head = repo.commit("changes");
    let config = repo.config("shop");
    let c = changed_services(repo.path(), Some(&base), &head, &config).unwrap();
    assert_eq!(summary(&c), [("home", ChangeReason::Source, true)]);
    assert_eq!(c[0].files, [PathBuf::from("shop/home/app.js")]);
    // The repository may be given by any directory inside it.
    let c = changed_services(&repo.path().join("shop"), Some(&base), &head, &config).unwrap();
    assert_eq!(c.len(), 1);
}

#[test]
fn a_path_covers_directories_not_name_prefixes() {
    let repo = Repo::new();
    let base = shop(&repo, "");
    repo.write("homework/notes.txt", "n");
    let head = repo.commit("homework");
    let c = changed_services(repo.path(), Some(&base), &head, &repo.config("")).unwrap();
    assert!(c.is_empty(), "{c:?}");
}

#[test]
fn unknown_commits_are_reported() {
    let repo = Repo::new();
    let head = shop(&repo, "");
    let config = repo.config("");
    let missing = "0123456789012345678901234567890123456789";
    let err = changed_services(repo.path(), Some(missing), &head, &config).unwrap_err();
    assert!(matches!(err, ChangeError::UnknownCommit { ref commit, .. } if commit == missing));
    let err = changed_services(repo.path(), None, "no-such-branch", &config).unwrap_err();
    assert!(matches!(err, ChangeError::UnknownCommit { .. }), "{err}");
    // Branch names resolve like commits.
    assert!(
        changed_services(repo.path(), Some("main"), "main", &config)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_commit_named_like_a_git_option_is_an_unknown_commit_and_writes_no_file() {
    let repo = Repo::new();
    let head = shop(&repo, "");
    let config = repo.config("");
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("written");
    for hostile in [
        format!("--output={}", file.display()),
        "--all".to_string(),
        "-h".to_string(),
    ] {
        let err = changed_services(repo.path(), Some(&hostile), &head, &config).unwrap_err();
        assert!(
            matches!(err, ChangeError::UnknownCommit { ref commit, .. } if *commit == hostile),
            "{hostile}: {err}"
        );
        let err = changed_services(repo.path(), Some(&head), &hostile, &config).unwrap_err();
        assert!(
            matches!(err, ChangeError::UnknownCommit { .. }),
            "{hostile}: {err}"
        );
        assert!(!file.exists(), "{hostile} made git write a file");
    }
}

#[test]
fn config_outside_the_repository_is_an_error() {
    let repo = Repo::new();
    let head = shop(&repo, "");
    let elsewhere = Repo::new();
    shop(&elsewhere, "");
    let err = changed_services(repo.path(), Some(&head), &head, &elsewhere.config("")).unwrap_err();
    assert!(
        matches!(err, ChangeError::OutsideRepository { .. }),
        "{err}"
    );
}

/// Scenario 4 with discovery: the services are the folders holding a Dockerfile.
const DISCOVERED: &str = "\
registry: {prefix: registry.example.com/shop}
services:
  - discover: \"*/Dockerfile\"
    manifests: {template: k8s/app.yaml.j2}
  - name: ingress
    manifests: {path: k8s/ingress.yaml}
";

fn discovered_shop(repo: &Repo) -> String {
    repo.write("berth.yaml", DISCOVERED)
        .write("k8s/app.yaml.j2", "t")
        .write("k8s/ingress.yaml", "i");
    for s in ["home", "kids", "mens"] {
        repo.write(&format!("{s}/Dockerfile"), "FROM busybox\n")
            .write(&format!("{s}/www/index.html"), s);
    }
    repo.commit("shop")
}

#[test]
fn a_new_folder_found_by_discover_selects_only_its_service() {
    let repo = Repo::new();
    let base = discovered_shop(&repo);
    repo.write("ladies/Dockerfile", "FROM busybox\n")
        .write("ladies/www/index.html", "ladies")
        .write("k8s/ingress.yaml", "i2");
    let head = repo.commit("ladies");
    let config = repo.config("");
    assert_eq!(config.services.len(), 5);
    let c = changed_services(repo.path(), Some(&base), &head, &config).unwrap();
    assert_eq!(
        summary(&c),
        [
            ("ladies", ChangeReason::Source, true),
            ("ingress", ChangeReason::Manifests, false),
        ]
    );
}

#[test]
fn a_discover_entry_change_is_shared_by_its_services_and_overrides_are_their_own() {
    let repo = Repo::new();
    let base = discovered_shop(&repo);
    // Only the entry's manifests changed: redeploy every discovered service, no rebuild.
    repo.write(
        "berth.yaml",
        &DISCOVERED.replace(
            "{template: k8s/app.yaml.j2}",
            "{template: k8s/app.yaml.j2, values: {replicas: 3}}",
        ),
    );
    let head = repo.commit("values");
    let c = changed_services(repo.path(), Some(&base), &head, &repo.config("")).unwrap();
    assert_eq!(
        summary(&c),
        [
            ("home", ChangeReason::Manifests, false),
            ("kids", ChangeReason::Manifests, false),
            ("mens", ChangeReason::Manifests, false),
        ]
    );
    // An override of one folder is that service's entry: only it is rebuilt.
    repo.write(
        "berth.yaml",
        &format!("{DISCOVERED}  - name: kids\n    build: {{context: kids, args: {{V: '2'}}}}\n    manifests: {{template: k8s/app.yaml.j2}}\n"),
    );
    let next = repo.commit("override kids");
    let c = changed_services(repo.path(), Some(&head), &next, &repo.config("")).unwrap();
    assert_eq!(
        summary(&c),
        [
            ("home", ChangeReason::Manifests, false),
            ("mens", ChangeReason::Manifests, false),
            ("kids", ChangeReason::Config, true),
        ]
    );
}

#[test]
fn a_clean_tree_is_its_commit_and_a_dirty_one_is_none() {
    let r = Repo::new();
    r.write("app/a.txt", "1");
    let head = r.commit("one");
    let at = crate::changes::working_tree(&r.path().join("app"));
    assert_eq!(at.commit.as_deref(), Some(head.as_str()));
    assert_eq!(at.branch.as_deref(), Some("main"));
    r.write("app/a.txt", "2");
    assert_eq!(
        crate::changes::working_tree(&r.path().join("app")).commit,
        None
    );
    // Outside a repository: neither.
    let elsewhere = tempfile::tempdir().unwrap();
    assert_eq!(
        crate::changes::working_tree(elsewhere.path()),
        crate::changes::WorkingTree::default()
    );
}
