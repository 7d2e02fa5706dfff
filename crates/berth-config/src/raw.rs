//! The file as written: serde types that mirror berth.yaml key by key, with source locations.
//!
//! Every struct denies unknown keys (serde-saphyr then reports the key, the allowed keys and the
//! location, which [`crate::parse`] turns into a suggestion). Values that are checked after
//! parsing are `Spanned` so that the check can point at them. The JSON Schema is derived from
//! these types, so their doc comments are the descriptions editors show.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::model::{BuildNetwork, Promotion};

/// berth.yaml: how to build, test and deploy the services of a repository.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(title = "berth.yaml")]
pub(crate) struct RawConfig {
    /// Registry settings: default repository prefix, insecure hosts, mirrors.
    #[serde(default)]
    #[schemars(example = serde_json::json!({"prefix": "ghcr.io/acme"}))]
    pub registry: Option<RawRegistry>,
    /// Deploy defaults for every environment.
    #[serde(default)]
    #[schemars(example = serde_json::json!({"timeout": "10m"}))]
    pub deploy: Option<RawDeploy>,
    /// Paths (relative to this file) whose change affects every service, e.g. a shared library.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    #[schemars(example = serde_json::json!(["lib/common", "proto"]))]
    pub shared: Vec<Spanned<String>>,
    /// The services: what to build and how to deploy each one.
    #[schemars(with = "Vec<RawService>")]
    #[schemars(example = serde_json::json!([{"name": "web", "build": {"context": "web"}, "image": "ghcr.io/acme/web", "manifests": {"path": "k8s/web"}}]))]
    pub services: Vec<Spanned<RawService>>,
    /// The environments deployed to.
    #[serde(default)]
    #[schemars(with = "Vec<RawEnvironment>")]
    #[schemars(example = serde_json::json!([{"name": "staging", "namespace": "shop-staging", "branch": "main"}]))]
    pub environments: Vec<Spanned<RawEnvironment>>,
}

/// Registry settings.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "Registry")]
pub(crate) struct RawRegistry {
    /// Default repository prefix (`--default-repo` overrides it): a built service without
    /// `image` is pushed to `<prefix>/<service name>`; a built service whose `image` has no
    /// registry host (`team/web`, the name its manifests use) is pushed to
    /// `<prefix>/team/web`, and every rendered reference to `team/web` is pinned to it.
    #[schemars(with = "Option<String>")]
    #[schemars(example = serde_json::json!("ghcr.io/acme"))]
    #[schemars(extend("x-wrong" = "ghcr.io/Acme Corp"))]
    pub prefix: Option<Spanned<String>>,
    /// Push `image: team/web` as `<prefix>/team_web` instead of `<prefix>/team/web` (`.` and
    /// `/` become `_`, Skaffold's form), for registries without nested repositories.
    /// Default `false`.
    #[schemars(example = serde_json::json!(true))]
    pub flatten: Option<bool>,
    /// Registry hosts (`host[:port]`) reached over plain HTTP.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    #[schemars(example = serde_json::json!(["registry.local:5000"]))]
    pub insecure: Vec<Spanned<String>>,
    /// Pull-through mirrors: registry host -> mirror host, e.g. `docker.io: 127.0.0.1:15000`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    #[schemars(example = serde_json::json!({"docker.io": "mirror.local:5000"}))]
    pub mirrors: BTreeMap<String, Spanned<String>>,
}

/// Deploy settings.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "Deploy")]
pub(crate) struct RawDeploy {
    /// Deadline for a whole rollout (hooks and readiness), e.g. `5m`. Default `5m`.
    #[schemars(with = "Option<String>")]
    #[schemars(example = serde_json::json!("10m"))]
    #[schemars(extend("x-wrong" = "soon"))]
    pub timeout: Option<Spanned<String>>,
    /// Roll back to the last good release when a rollout fails. Default `true`.
    #[schemars(example = serde_json::json!(false))]
    pub rollback: Option<bool>,
    /// A Secret (type kubernetes.io/dockerconfigjson) berth creates or updates in the
    /// namespace from the credentials it pushed with, and names in the `imagePullSecrets` of
    /// every pod template whose images are on a registry that needs a login and that no pull
    /// secret of the pod covers yet. `--pull-secret` wins.
    #[schemars(with = "Option<String>")]
    #[schemars(example = serde_json::json!("regcred"))]
    #[schemars(extend("x-wrong" = "Reg_Cred"))]
    pub pull_secret: Option<Spanned<String>>,
    /// The cluster's nodes pull with credentials of their own (a kubelet credential provider:
    /// ECR on EKS, Artifact Registry on GKE, an attached ACR on AKS): a pod on a registry that
    /// refuses anonymous pulls needs no pull secret. Named pull secrets are still checked.
    /// Default `false`.
    #[schemars(example = serde_json::json!(true))]
    pub node_credentials: Option<bool>,
}

/// One service, or (with `discover`) one service per folder that matches a pattern.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "Service")]
pub(crate) struct RawService {
    /// The service's name: lowercase letters, digits and `-`. Required unless `discover` is
    /// given (checked after parsing, so that the error points at the entry).
    #[schemars(with = "Option<String>")]
    #[schemars(example = serde_json::json!("web"))]
    #[schemars(extend("x-wrong" = "Web_1"))]
    pub name: Option<Spanned<String>>,
    /// Discovery: one service per folder holding a file that matches this pattern, e.g.
    /// `*/Dockerfile` or `services/*/Dockerfile` (relative to this file; `*` and `?` match
    /// within one path segment, hidden folders are skipped, `..` is refused and a folder linked
    /// outside the repository is an error, never followed). Each service is named after its
    /// folder, built with the folder as context and deployed with this entry's `manifests`,
    /// `build` settings and `test`: adding a microservice is adding a folder. An entry with a
    /// `name` equal to a discovered folder's replaces that folder's service (a per-folder
    /// override).
    #[schemars(with = "Option<String>")]
    #[schemars(example = serde_json::json!("services/*/Dockerfile"))]
    pub discover: Option<Spanned<String>>,
    /// With `discover`: folder names that are not services.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    #[schemars(example = serde_json::json!(["shared"]))]
    #[schemars(extend("x-beside" = {"discover": "services/*/Dockerfile"}))]
    pub exclude: Vec<Spanned<String>>,
    /// How to build the image. Without it, `image` is deployed as it is.
    #[schemars(with = "Option<RawBuild>")]
    #[schemars(example = serde_json::json!({"context": "web", "dockerfile": "Dockerfile"}))]
    pub build: Option<Spanned<RawBuild>>,
    /// Image repository for a built service (no tag: berth tags with the commit), or the image
    /// to deploy for a service without `build`. Default for built services:
    /// `<registry.prefix>/<name>`. A built service's name without a registry host
    /// (`team/web`) is the name its manifests use: with `registry.prefix` it is pushed to
    /// `<prefix>/team/web` (or `<prefix>/team_web` with `registry.flatten`), and every
    /// rendered reference to `team/web` (any tag, with or without `docker.io/`) is rewritten
    /// to the pushed `repo@sha256:...`. A name with a host is pushed as written. A service with neither `build` nor `image` deploys only its
    /// `manifests`: objects shared by the other services, such as one Ingress in front of them.
    #[schemars(with = "Option<String>")]
    #[schemars(example = serde_json::json!("ghcr.io/acme/web"))]
    #[schemars(extend("x-wrong" = "ghcr.io/acme/Web App"))]
    pub image: Option<Spanned<String>>,
    /// Test command, run with `sh -c` inside the freshly built image; a failure stops the run.
    /// Either the command, or `{command, timeout}` with its own deadline (default `15m`, or
    /// `--test-timeout`).
    #[schemars(with = "Option<RawTest>")]
    #[schemars(example = serde_json::json!("npm test"))]
    #[schemars(extend("x-default" = "no test"))]
    pub test: Option<Spanned<RawTest>>,
    /// Paths (relative to this file) that belong to the service, for change detection.
    /// Default: the build context.
    #[schemars(with = "Option<Vec<String>>")]
    #[schemars(example = serde_json::json!(["web", "lib/common"]))]
    pub paths: Option<Vec<Spanned<String>>>,
    /// Where the service's Kubernetes manifests come from.
    #[schemars(with = "Option<RawManifests>")]
    #[schemars(example = serde_json::json!({"path": "k8s/web"}))]
    pub manifests: Option<Spanned<RawManifests>>,
    /// Jobs run around the rollout.
    #[serde(default)]
    #[schemars(example = serde_json::json!({"pre-deploy": [{"name": "migrate", "command": "rails db:migrate"}]}))]
    pub hooks: RawHooks,
}

/// How to build an image.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "Build")]
pub(crate) struct RawBuild {
    /// Build context directory, relative to this file. Default `.`.
    #[schemars(with = "Option<String>")]
    #[schemars(example = serde_json::json!("web"))]
    #[schemars(extend("x-wrong" = "/srv/web"))]
    pub context: Option<Spanned<String>>,
    /// Dockerfile, relative to the context. Default: `Dockerfile` in the context if there is
    /// one, otherwise buildpack-style detection (Node, Python, Ruby, static site, binary).
    #[schemars(with = "Option<String>")]
    #[schemars(example = serde_json::json!("docker/web.Dockerfile"))]
    pub dockerfile: Option<Spanned<String>>,
    /// Stage to build in a multi-stage Dockerfile.
    #[schemars(example = serde_json::json!("runtime"))]
    pub target: Option<String>,
    /// Build arguments (`ARG`).
    #[serde(default)]
    #[schemars(example = serde_json::json!({"NODE_VERSION": "22"}))]
    pub args: BTreeMap<String, String>,
    /// Base image for buildpack-style detection (ignored with a Dockerfile).
    #[schemars(with = "Option<String>")]
    #[schemars(example = serde_json::json!("debian:bookworm-slim"))]
    pub base: Option<Spanned<String>>,
    /// Extra CA certificate files (PEM), relative to this file and inside the repository,
    /// trusted by RUN steps and tests (added to `--ca-cert`); mounted read-only, never stored
    /// in a layer.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    #[schemars(example = serde_json::json!(["certs/corporate-ca.pem"]))]
    pub ca: Vec<Spanned<String>>,
    /// Memory limit of each RUN step and of the tests, e.g. `2g`. Default: half of the build
    /// host's memory. `--memory` wins; on `berth serve` it can only be lowered.
    #[schemars(with = "Option<String>")]
    #[schemars(example = serde_json::json!("2g"))]
    #[schemars(extend("x-wrong" = "two gigs"))]
    pub memory: Option<Spanned<String>>,
    /// Most processes alive at once in a RUN step or test (1 to 4194304). Default 4096.
    /// `--pids-limit` wins; on `berth serve` it can only be lowered.
    #[schemars(with = "Option<i64>")]
    #[schemars(example = serde_json::json!(1024))]
    #[schemars(extend("x-wrong" = "0"))]
    pub pids: Option<Spanned<i64>>,
    /// Network of RUN steps and tests: `isolated` (default: a namespace of their own with
    /// outbound access; the host's addresses and 169.254.0.0/16 unreachable), `none`, or
    /// `host`. `--network` wins; `berth serve` refuses `host` unless its configuration allows it
    /// for the repository.
    #[schemars(example = serde_json::json!("none"))]
    pub network: Option<BuildNetwork>,
    /// Deadline of each RUN step, e.g. `2h`. Default `1h`. `--step-timeout` wins; on
    /// `berth serve` it can only be shortened.
    #[schemars(with = "Option<String>")]
    #[schemars(example = serde_json::json!("2h"))]
    #[schemars(extend("x-wrong" = "forever"))]
    pub step_timeout: Option<Spanned<String>>,
}

/// A test: the command, or the command with its own deadline.
#[derive(Clone, Debug, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "Test")]
pub(crate) enum RawTest {
    Command(String),
    Full(RawTestFull),
}

/// By hand rather than `untagged`: a buffered scalar keeps its YAML type, and `test: true`
/// (a command) must stay a string as it always was.
impl<'de> Deserialize<'de> for RawTest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawTest;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a command, or a mapping with `command` and `timeout`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawTest, E> {
                Ok(RawTest::Command(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<RawTest, E> {
                Ok(RawTest::Command(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawTest, E> {
                Ok(RawTest::Command(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawTest, E> {
                Ok(RawTest::Command(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<RawTest, E> {
                Ok(RawTest::Command(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawTest, A::Error> {
                RawTestFull::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawTest::Full)
            }
        }
        d.deserialize_any(V)
    }
}

/// A test with settings.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "TestWithTimeout")]
pub(crate) struct RawTestFull {
    /// The command, run with `sh -c` in the freshly built image.
    #[schemars(example = serde_json::json!("pytest -q"))]
    pub command: String,
    /// Its deadline, e.g. `5m`; past it the test is killed and the run fails. Default `15m`.
    /// `--test-timeout` wins; on `berth serve` it can only be shortened.
    #[schemars(example = serde_json::json!("5m"))]
    pub timeout: Option<String>,
}

/// A string or a list of strings.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "OneOrMany")]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// Manifest source: exactly one of `path`, `template`, `kustomize`, `helm`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "Manifests")]
pub(crate) struct RawManifests {
    /// Plain manifest files or directories (`*.yaml`, `*.yml`, `*.json`; `*.j2` are templates).
    #[schemars(with = "Option<OneOrMany>")]
    #[schemars(example = serde_json::json!("k8s/web"))]
    pub path: Option<Spanned<OneOrMany>>,
    /// minijinja (Jinja) templates, whatever their extension: files, directories (every
    /// `*.yaml`, `*.yml`, `*.json` and `*.j2` manifest in them is a template), or glob patterns
    /// such as `k8s/**/*.yml` (`*` and `?` match within one folder level, `**` any number of
    /// levels; hidden entries are skipped; a pattern that matches no file is an error; no
    /// pattern or link may lead out of the repository). `{service}` is replaced by the
    /// service's name, also in `discover` entries: `roles/{service}/templates/*.yml`.
    /// Each file is rendered with berth's variables (`service`, `image`, `env`, `images`, and
    /// the names given in `vars`) and `values`, then parsed as YAML.
    #[schemars(with = "Option<OneOrMany>")]
    #[schemars(example = serde_json::json!("k8s/**/*.yml"))]
    pub template: Option<Spanned<OneOrMany>>,
    /// Other names for berth's template variables, as the templates use them:
    /// `{service_name: service, image_id: image}` (key: the name in the templates; value: one
    /// of berth's variables `service`, `image`, `env`, `env.name`, `env.namespace`, `images`).
    #[serde(default)]
    #[schemars(schema_with = "vars_schema")]
    #[schemars(example = serde_json::json!({"service_name": "service", "image_id": "image"}))]
    pub vars: BTreeMap<String, Spanned<String>>,
    /// Values for templates; an environment's `values` are merged over them. A string value
    /// may use berth's variables and the `vars` names (`image_ref: "{{ image_id }}"`,
    /// `name: "{{ service }}-web"`): values are rendered with them (to strings) before the
    /// templates see them; an undefined name is an error.
    #[schemars(with = "Option<BTreeMap<String, serde_json::Value>>")]
    #[schemars(example = serde_json::json!({"replicas": 2, "host": "web.example.com"}))]
    #[schemars(extend("x-beside" = {"template": "k8s"}))]
    pub values: Option<Spanned<serde_json::Value>>,
    /// A kustomization directory, rendered with `kustomize build`.
    #[schemars(with = "Option<String>")]
    #[schemars(example = serde_json::json!("deploy/overlays/prod"))]
    pub kustomize: Option<Spanned<String>>,
    /// A Helm chart, rendered with `helm template`.
    #[schemars(with = "Option<RawHelm>")]
    #[schemars(example = serde_json::json!({"chart": "charts/web", "values": ["charts/web/values-prod.yaml"]}))]
    pub helm: Option<Spanned<RawHelm>>,
}

/// `vars`: any name -> one of berth's variables, so that editors offer them.
fn vars_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": {"enum": crate::model::TEMPLATE_VARIABLES},
    })
}

/// A Helm chart.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "Helm")]
pub(crate) struct RawHelm {
    /// Chart directory (relative to this file), packaged chart, or `repo/chart`.
    #[schemars(with = "String")]
    #[schemars(example = serde_json::json!("charts/web"))]
    pub chart: Spanned<String>,
    /// Release name. Default: the service's name.
    #[schemars(example = serde_json::json!("web"))]
    pub release: Option<String>,
    /// Chart version, for a chart from a repository.
    #[schemars(example = serde_json::json!("1.4.2"))]
    pub version: Option<String>,
    /// Values files (`-f`), relative to this file, in order.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    #[schemars(example = serde_json::json!(["charts/web/values-prod.yaml"]))]
    pub values: Vec<Spanned<String>>,
    /// `--set` overrides (`key=value`), in order.
    #[serde(default)]
    #[schemars(example = serde_json::json!(["replicaCount=2"]))]
    pub set: Vec<String>,
    /// Which chart values compose the service's built image, e.g.
    /// `{repository: image.repository, tag: image.tag}`: berth sets them so that the chart
    /// renders the pushed digest. Keys: `image` (the whole reference), `registry`,
    /// `repository`, `tag` (set to `pinned@sha256:...`), `digest` (`sha256:...`). Default:
    /// detected from the chart's values.yaml (`image.repository`/`image.tag`,
    /// `image.registry`/`image.repository`/`image.tag`, top-level
    /// `registry`/`repository`/`tag`).
    #[schemars(with = "Option<RawImageValues>")]
    #[schemars(example = serde_json::json!({"repository": "image.repository", "tag": "image.tag"}))]
    pub image_values: Option<Spanned<RawImageValues>>,
}

/// Which chart values compose an image: each a dotted path into the chart's values.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "ImageValues")]
pub(crate) struct RawImageValues {
    /// The whole reference (`repo@sha256:...`).
    #[schemars(example = serde_json::json!("image.ref"))]
    pub image: Option<String>,
    /// The registry host.
    #[schemars(example = serde_json::json!("image.registry"))]
    pub registry: Option<String>,
    /// The repository: with `registry`, the path on the host; without, host and path.
    #[schemars(example = serde_json::json!("image.repository"))]
    pub repository: Option<String>,
    /// The tag; berth sets `pinned@sha256:...` unless `digest` is mapped.
    #[schemars(example = serde_json::json!("image.tag"))]
    pub tag: Option<String>,
    /// The digest (`sha256:...`).
    #[schemars(example = serde_json::json!("image.digest"))]
    pub digest: Option<String>,
}

/// Hooks of a service.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "Hooks")]
pub(crate) struct RawHooks {
    /// Jobs that must succeed before the rollout (migrations); a failure changes nothing else.
    #[serde(default)]
    #[schemars(with = "Vec<RawHook>")]
    #[schemars(example = serde_json::json!([{"name": "migrate", "command": "rails db:migrate"}]))]
    pub pre_deploy: Vec<Spanned<RawHook>>,
    /// Jobs run after the rollout is ready.
    #[serde(default)]
    #[schemars(with = "Vec<RawHook>")]
    #[schemars(example = serde_json::json!([{"name": "smoke", "command": "curl -fsS http://web/healthz"}]))]
    pub post_deploy: Vec<Spanned<RawHook>>,
}

/// One hook: a command run in the service's image as a Job, or a Job manifest.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "Hook")]
pub(crate) struct RawHook {
    /// The hook's name (names the Job).
    #[schemars(with = "String")]
    #[schemars(example = serde_json::json!("migrate"))]
    #[schemars(extend("x-wrong" = "Migrate DB"))]
    pub name: Spanned<String>,
    /// A command run with `sh -c` in the service's freshly built image.
    #[schemars(example = serde_json::json!("rails db:migrate"))]
    pub command: Option<String>,
    /// A Job manifest, relative to this file.
    #[schemars(with = "Option<String>")]
    #[schemars(example = serde_json::json!("k8s/jobs/migrate.yaml"))]
    pub manifest: Option<Spanned<String>>,
    /// Deadline for this hook. Default: the deploy timeout.
    #[schemars(with = "Option<String>")]
    #[schemars(example = serde_json::json!("10m"))]
    #[schemars(extend("x-wrong" = "ten minutes"))]
    pub timeout: Option<Spanned<String>>,
}

/// One environment.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "Environment")]
pub(crate) struct RawEnvironment {
    /// The environment's name.
    #[schemars(with = "String")]
    #[schemars(example = serde_json::json!("staging"))]
    #[schemars(extend("x-wrong" = "Staging!"))]
    pub name: Spanned<String>,
    /// The Kubernetes namespace deployed into. Required (checked after parsing, so that the
    /// error points at the environment).
    #[schemars(with = "String", required)]
    #[schemars(example = serde_json::json!("shop-staging"))]
    #[schemars(extend("x-wrong" = "Shop Staging"))]
    pub namespace: Option<Spanned<String>>,
    /// kubeconfig context. Default: the current context.
    #[schemars(example = serde_json::json!("prod-cluster"))]
    pub context: Option<String>,
    /// A push to this branch deploys here automatically.
    #[schemars(example = serde_json::json!("main"))]
    pub branch: Option<String>,
    /// Values merged over every service's template values; strings may use berth's template
    /// variables (`{{ service }}`), like a service's `manifests.values`.
    #[schemars(with = "Option<BTreeMap<String, serde_json::Value>>")]
    #[schemars(example = serde_json::json!({"replicas": 3}))]
    pub values: Option<Spanned<serde_json::Value>>,
    /// `auto` (default): deploy on a push to `branch`, or after `from` deployed;
    /// `manual`: only `berth promote` deploys here.
    #[schemars(example = serde_json::json!("manual"))]
    pub promotion: Option<Promotion>,
    /// The environment whose digests are promoted here (build once, deploy many).
    #[schemars(with = "Option<String>")]
    #[schemars(example = serde_json::json!("dev"))]
    pub from: Option<Spanned<String>>,
    /// Overrides of the top-level deploy settings.
    #[schemars(example = serde_json::json!({"timeout": "15m", "rollback": true}))]
    pub deploy: Option<RawDeploy>,
    /// Where this environment's data comes from before each deploy (clone or masked copy).
    #[schemars(with = "Option<crate::data::RawData>")]
    #[schemars(example = serde_json::json!({"copy": {"from": "production", "source-url-env": "PROD_DATABASE_URL", "target-url-env": "STAGING_DATABASE_URL", "mask": {"users.email": "email"}}}))]
    pub data: Option<Spanned<crate::data::RawData>>,
    /// Who is told of this environment's runs: generic webhooks (signed JSON) and Slack-
    /// compatible incoming webhooks, each for all events or those in `on`.
    #[serde(default)]
    #[schemars(with = "Vec<crate::notify::RawNotify>")]
    #[schemars(example = serde_json::json!([{"slack": {"url-env": "SLACK_WEBHOOK_URL"}, "on": ["failed", "rolled-back"]}]))]
    pub notify: Vec<Spanned<crate::notify::RawNotify>>,
    /// How a new revision reaches its users: `canary` steps (a share of the pods at a time,
    /// pauses, log checks). Without it, every pod moves at once.
    #[schemars(with = "Option<crate::strategy::RawStrategy>")]
    #[schemars(example = serde_json::json!({"canary": {"steps": [{"weight": 20}, {"check": [{"logs": {"pattern": "ERROR", "max": 0}}]}, {"weight": 100}]}}))]
    pub strategy: Option<crate::strategy::RawStrategy>,
}
