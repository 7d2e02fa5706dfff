//! What the modules of this binary share: the berth binary and what it printed, temporary
//! directories and git repositories, manifest text, objects of the test's namespace, and the
//! registry's tags. A helper lives here once two modules need it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use berth_cluster::ObjectKey;
use berth_testkit::{TestContext, TestEnv};
use serde_json::Value;

/// The busybox image every test environment serves (through the mirror).
pub(crate) const BUSYBOX: &str = "docker.io/library/busybox:latest";

/// The built `berth` binary, pointed at the environment's cluster and registry.
pub(crate) fn berth(env: &TestEnv) -> Command {
    env.berth(env!("CARGO_BIN_EXE_berth").as_ref())
}

/// `berth ARGS` in the test's namespace (`BERTH_NAMESPACE`).
pub(crate) fn berth_cmd(ctx: &TestContext, args: &[&str]) -> Command {
    let mut cmd = berth(ctx.env);
    cmd.args(args).env("BERTH_NAMESPACE", &ctx.namespace);
    cmd
}

/// What a finished berth command printed, and its exit code (-1: killed by a signal).
pub(crate) struct Outcome {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Outcome {
    /// stdout, a newline, stderr: for assertion messages.
    pub(crate) fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs `berth ARGS` in the test's namespace to its end.
pub(crate) fn run(ctx: &TestContext, args: &[&str]) -> Outcome {
    let out = berth_cmd(ctx, args).output().expect("run berth");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

/// `berth history -r RELEASE -o json` in the test's namespace: the revisions, oldest first.
pub(crate) fn history(ctx: &TestContext, release: &str) -> Vec<Value> {
    let r = run(ctx, &["history", "-r", release, "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

/// stdout and stderr, one after the other.
pub(crate) fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The stdout of a command that must have succeeded (else: fails showing stdout and stderr).
pub(crate) fn success(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The result document of a `-o json` command that must have succeeded: its last line.
pub(crate) fn result(out: &Output) -> Value {
    let stdout = success(out);
    serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// A `berth run -o json`: whether it succeeded, its events and its result (the last line).
pub(crate) struct Run {
    pub(crate) ok: bool,
    pub(crate) events: Vec<Value>,
    pub(crate) result: Value,
    pub(crate) stderr: String,
}

/// The result and stderr first, then every event: CI keeps the head and tail of a long
/// failure message, and the cause must be in what it keeps.
impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "result: {}", self.result)?;
        writeln!(f, "stderr: {}", self.stderr)?;
        for e in &self.events {
            writeln!(f, "{e}")?;
        }
        write!(f, "result (again): {}", self.result)
    }
}

impl Run {
    /// Reads what `berth run -o json` printed; every stdout line must be a JSON document.
    pub(crate) fn of(out: &Output) -> Run {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let events: Vec<Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{stderr}")))
            .collect();
        let result = events
            .last()
            .cloned()
            .unwrap_or_else(|| panic!("no result from berth run: {stderr}"));
        Run {
            ok: out.status.success(),
            events,
            result,
            stderr,
        }
    }

    /// Position of the first `object_state` event of `object` in `state`.
    pub(crate) fn position(&self, object: &str, state: &str) -> Option<usize> {
        self.events.iter().position(|e| {
            e["event"] == "object_state" && e["object"] == object && e["state"] == state
        })
    }

    pub(crate) fn built(&self) -> Vec<String> {
        self.result["built"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn image(&self, service: &str) -> String {
        self.result["built"][service]
            .as_str()
            .unwrap_or_else(|| panic!("{service} was not built: {self}"))
            .to_string()
    }

    /// The `(event, step)` of every step event of a service, in order (`kids/build`...).
    pub(crate) fn steps(&self) -> Vec<(String, String)> {
        self.events
            .iter()
            .filter(|e| e["event"] == "step_started" || e["event"] == "step_finished")
            .map(|e| {
                (
                    e["event"].as_str().unwrap().to_string(),
                    e["step"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    pub(crate) fn error(&self) -> String {
        self.result["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// Writes `text` to `dir/rel`, creating the folders on the way.
pub(crate) fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

pub(crate) fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes `dir` a git repository whose branch `branch` has one commit of everything in it.
pub(crate) fn git_init(dir: &Path, branch: &str) {
    git(dir, &["init", "-q", "-b", branch]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "first"]);
}

/// A temp directory of manifests, removed on drop.
pub(crate) struct Dir(pub(crate) PathBuf);

impl Dir {
    pub(crate) fn new() -> Dir {
        let d = std::env::temp_dir().join(format!("berth-it-{}", berth_testkit::unique_suffix()));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
    pub(crate) fn write(&self, name: &str, text: &str) -> &Path {
        std::fs::write(self.0.join(name), text).unwrap();
        &self.0
    }
    /// The directory, as `-f` takes it.
    pub(crate) fn path(&self) -> String {
        self.0.display().to_string()
    }
    /// A file in the directory, as `-f` takes it.
    pub(crate) fn file(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A project in a temporary directory with its own build store (`BERTH_STORE`), both removed
/// on drop. Nothing is created until something is written or copied into `dir`.
pub(crate) struct Repo {
    pub(crate) dir: PathBuf,
    pub(crate) store: PathBuf,
}

impl Repo {
    /// `berth-<name>-<suffix>` and its store `berth-<name>-store-<suffix>` in the temp dir.
    pub(crate) fn new(name: &str) -> Repo {
        let suffix = berth_testkit::unique_suffix();
        let tmp = std::env::temp_dir();
        Repo {
            dir: tmp.join(format!("berth-{name}-{suffix}")),
            store: tmp.join(format!("berth-{name}-store-{suffix}")),
        }
    }

    /// The project's berth.yaml.
    pub(crate) fn config(&self) -> PathBuf {
        self.path("berth.yaml")
    }

    pub(crate) fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Replaces `from` with `to` in `file`; `from` must be there.
    pub(crate) fn edit(&self, file: &str, from: &str, to: &str) {
        let p = self.path(file);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(from), "{file} has no {from:?}");
        std::fs::write(p, text.replace(from, to)).unwrap();
    }

    pub(crate) fn write(&self, file: &str, text: &str) {
        write(&self.dir, file, text);
    }

    /// Commits everything in the project.
    pub(crate) fn commit(&self, message: &str) {
        git(&self.dir, &["add", "-A"]);
        git(&self.dir, &["commit", "-q", "-m", message]);
    }

    /// `berth ARGS -c berth.yaml` with the project's store.
    pub(crate) fn berth(&self, ctx: &TestContext, args: &[&str]) -> Output {
        self.command(ctx, args).output().unwrap()
    }

    /// The command [`Repo::berth`] runs, for a test that starts it and goes on.
    pub(crate) fn command(&self, ctx: &TestContext, args: &[&str]) -> Command {
        let mut cmd = berth(ctx.env);
        cmd.args(args)
            .arg("-c")
            .arg(self.config())
            .env("BERTH_STORE", &self.store);
        cmd
    }
}

/// examples/hello in a fresh git repository named `name`, its image in the test's own
/// registry repository; `edit` changes its berth.yaml's text before the first commit.
pub(crate) fn hello_project(
    ctx: &TestContext,
    name: &str,
    edit: impl FnOnce(String) -> String,
) -> Repo {
    let p = Repo::new(name);
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello");
    copy_dir(&example, &p.dir);
    let image = format!("{}/web", ctx.repository);
    for f in ["berth.yaml", "k8s/app.yaml"] {
        let f = p.dir.join(f);
        let text = std::fs::read_to_string(&f)
            .unwrap()
            .replace("127.0.0.1:15000/examples/hello-web", &image);
        std::fs::write(f, text).unwrap();
    }
    let cfg = p.config();
    let text = edit(std::fs::read_to_string(&cfg).unwrap());
    std::fs::write(&cfg, text).unwrap();
    git_init(&p.dir, "main");
    p
}

impl Drop for Repo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// A Deployment `name` of `replicas` pods (`app: name`) running `image`, with the
/// `berth.dev/simulate` annotation on its pods when `simulate` is given.
pub(crate) fn deployment_yaml(
    name: &str,
    image: &str,
    replicas: i64,
    simulate: Option<&str>,
) -> String {
    let annotations = simulate
        .map(|s| format!("      annotations: {{berth.dev/simulate: {s}}}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
{annotations}    spec:
      containers:
      - name: app
        image: {image}
"
    )
}

/// A ConfigMap `name` holding `value: <value>`.
pub(crate) fn config_map_yaml(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: \"{value}\"\n"
    )
}

/// The object of the test's namespace, if it exists.
pub(crate) async fn live(ctx: &TestContext, api: &str, kind: &str, name: &str) -> Option<Value> {
    ctx.cluster
        .get(&ObjectKey::new(api, kind, Some(&ctx.namespace), name))
        .await
        .expect("get")
}

/// The object of the test's namespace, which must exist.
pub(crate) async fn get(ctx: &TestContext, api: &str, kind: &str, name: &str) -> Value {
    live(ctx, api, kind, name)
        .await
        .unwrap_or_else(|| panic!("{kind}/{name} exists in {}", ctx.namespace))
}

pub(crate) async fn deployment(ctx: &TestContext, name: &str) -> Value {
    get(ctx, "apps/v1", "Deployment", name).await
}

/// The image of a workload's first container.
pub(crate) fn image_of(deployment: &Value) -> String {
    deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The tags the registry holds for `repository` (host/path); none when it does not exist.
pub(crate) async fn tags(repository: &str) -> Vec<String> {
    let (host, path) = repository.split_once('/').unwrap();
    let resp = reqwest::get(format!("http://{host}/v2/{path}/tags/list"))
        .await
        .unwrap();
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return Vec::new();
    }
    let body: Value = resp.json().await.unwrap();
    body["tags"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// A namespaced custom resource kind (version `v1`) of the test's own: its group
/// `<namespace>.berth.dev` keeps the cluster-wide definition apart from other tests'.
pub(crate) struct Crd {
    pub(crate) group: String,
    plural: String,
    kind: String,
}

/// A schema that takes any fields (for [`Crd::yaml`]).
pub(crate) const ANY_FIELDS: &str = "        x-kubernetes-preserve-unknown-fields: true\n";

impl Crd {
    pub(crate) fn new(ctx: &TestContext, plural: &str, kind: &str) -> Crd {
        Crd {
            group: format!("{}.berth.dev", ctx.namespace),
            plural: plural.into(),
            kind: kind.into(),
        }
    }

    /// The CustomResourceDefinition; `schema`: the lines of its `openAPIV3Schema` after
    /// `type: object`, indented by eight spaces.
    pub(crate) fn yaml(&self, schema: &str) -> String {
        let Crd {
            group,
            plural,
            kind,
        } = self;
        let singular = kind.to_lowercase();
        format!(
            "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {plural}.{group}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: {plural}, singular: {singular}, kind: {kind}}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
{schema}"
        )
    }

    /// `<group>/v1`.
    pub(crate) fn api_version(&self) -> String {
        format!("{}/v1", self.group)
    }

    /// Gets the custom resource `name` of the test's namespace.
    pub(crate) async fn get(
        &self,
        ctx: &TestContext,
        name: &str,
    ) -> Result<Option<Value>, berth_cluster::ClusterError> {
        ctx.cluster
            .get(&ObjectKey::new(
                &self.api_version(),
                &self.kind,
                Some(&ctx.namespace),
                name,
            ))
            .await
    }

    /// Deletes the definition (cluster-wide, so the namespace's deletion does not).
    pub(crate) async fn delete(&self, ctx: &TestContext) {
        let key = ObjectKey::new(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            None,
            &format!("{}.{}", self.plural, self.group),
        );
        let _ = ctx.cluster.delete(&key).await;
    }
}
