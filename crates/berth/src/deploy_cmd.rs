//! `berth render`, `berth deploy`, `berth history`, `berth rollback`, `berth diff`.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use berth_cluster::{Cluster, ConnectOptions};
use berth_deploy::{DeployOutcome, DeployRequest, Deployer, History, LockOptions};
use berth_render::{HelmChart, ImageMap, ImagesExt, ManifestSource, ObjectSet, RenderContext};
use berth_types::{Event, EventSink, Level, Step};

use crate::cli::{
    ClusterArgs, ConvertFlags, DeployArgs, HistoryArgs, OutputFormat, RenderArgs, RollbackArgs,
};
use crate::output::{Printer, failed, user};

fn sources(
    args: &RenderArgs,
    namespace: &str,
    release: &str,
) -> Result<Vec<ManifestSource>, String> {
    let mut out: Vec<ManifestSource> = args
        .file
        .iter()
        .cloned()
        .map(ManifestSource::Path)
        .collect();
    out.extend(
        args.kustomize
            .iter()
            .cloned()
            .map(ManifestSource::Kustomize),
    );
    for chart in &args.helm {
        out.push(ManifestSource::Helm(HelmChart {
            release: release.into(),
            chart: chart.clone(),
            namespace: namespace.into(),
            version: None,
            values_files: args.values.clone(),
            set: args.set.clone(),
        }));
    }
    if out.is_empty() {
        return Err("no manifests given: pass -f FILE|DIR, --kustomize DIR or --helm CHART".into());
    }
    Ok(out)
}

fn image_map(pins: &[String]) -> Result<(ImageMap, BTreeMap<String, String>), String> {
    let mut map = ImageMap::new();
    let mut record = BTreeMap::new();
    for p in pins {
        let (name, pinned) = p
            .split_once('=')
            .ok_or_else(|| format!("--image `{p}`: expected NAME=REPO@sha256:DIGEST"))?;
        map.insert(name, pinned).map_err(|e| e.to_string())?;
        record.insert(name.to_string(), pinned.to_string());
    }
    Ok((map, record))
}

/// Renders the sources: the objects a deploy would apply, before berth's ownership labels.
fn render_objects(
    args: &RenderArgs,
    namespace: &str,
    release: &str,
) -> Result<(ObjectSet, BTreeMap<String, String>), String> {
    let sources = sources(args, namespace, release)?;
    let (images, record) = image_map(&args.image)?;
    let ctx = RenderContext::from_values(&args.values, &args.set)
        .map_err(|e| e.to_string())?
        .with_images(images.clone())
        .with_env(release, namespace);
    let tools = args.tools.tools();
    let mut set = berth_render::load(&sources, &ctx, &tools).map_err(|e| e.to_string())?;
    set.substitute_images(&images);
    Ok((set, record))
}

async fn connect(c: &ClusterArgs) -> Result<Cluster, String> {
    Cluster::connect(&ConnectOptions {
        kubeconfig: c.kubeconfig.clone(),
        context: c.context.clone(),
    })
    .await
    .map_err(|e| e.to_string())
}

fn namespace_of(c: &ClusterArgs, cluster: Option<&Cluster>) -> String {
    c.namespace
        .clone()
        .or_else(|| cluster.map(|k| k.default_namespace().to_string()))
        .unwrap_or_else(|| "default".into())
}

/// `berth render`: from berth.yaml (`-c`, or ./berth.yaml when no manifests are named), or
/// from the manifests named on the command line.
pub async fn render_command(a: crate::cli::RenderCmd) -> Result<ExitCode, String> {
    let named =
        !a.render.file.is_empty() || !a.render.kustomize.is_empty() || !a.render.helm.is_empty();
    let config = match (&a.config, named) {
        (Some(_), true) => {
            return Err(
                "give either -c berth.yaml or manifests (-f, --kustomize, --helm), not both".into(),
            );
        }
        (Some(c), false) => Some(c.clone()),
        (None, false) if std::path::Path::new(berth_config::FILE_NAME).is_file() => {
            Some(berth_config::FILE_NAME.into())
        }
        (None, _) => None,
    };
    match config {
        Some(_) if a.convert.convert => Err(
            "--convert rewrites manifests named with -f, --kustomize or --helm; with berth.yaml, \
             name its manifest files: berth render -f k8s/ --convert"
                .into(),
        ),
        Some(file) => render_config(&file, &a).await,
        None => {
            if a.env.is_some() || a.default_repo.is_some() {
                return Err("--env and --default-repo need berth.yaml (-c FILE)".into());
            }
            render(a.render, a.cluster, a.release, a.convert).await
        }
    }
}

/// `berth render -c berth.yaml`: every service, as a run would deploy it (see
/// [`berth_pipeline::run::Renderer::preview`]).
async fn render_config(
    file: &std::path::Path,
    a: &crate::cli::RenderCmd,
) -> Result<ExitCode, String> {
    let mut config = berth_config::load(file).map_err(|e| e.to_string())?;
    if let Some(repo) = &a.default_repo {
        config.set_default_repo(repo)?;
    }
    let env = berth_pipeline::run::choose_environment(&config, a.env.as_deref(), None)
        .map_err(|e| e.to_string())?
        .clone();
    let namespace = a
        .cluster
        .namespace
        .clone()
        .unwrap_or_else(|| env.namespace.clone());
    let release = a.release.clone().unwrap_or_else(|| env.name.clone());
    let renderer = berth_pipeline::run::Renderer { config: &config };
    let mut set = renderer
        .preview(&env, &namespace, &a.render.tools.tools())
        .map_err(|e| e.to_string())?;
    let owner = berth_render::Ownership::new(&release, 0, &namespace);
    set.apply_ownership(&owner).map_err(|e| e.to_string())?;
    print!("{}", set.to_yaml());
    Ok(ExitCode::SUCCESS)
}

/// `berth render`: the final YAML, stable order.
pub async fn render(
    args: RenderArgs,
    cluster: ClusterArgs,
    release: Option<String>,
    convert: ConvertFlags,
) -> Result<ExitCode, String> {
    let namespace = namespace_of(&cluster, None);
    let release = release.unwrap_or_else(|| "render".into());
    let (mut set, _) = render_objects(&args, &namespace, &release)?;
    let version = crate::convert_cmd::kube_version(&set, &cluster, &convert).await;
    if convert.write {
        return crate::convert_cmd::write(&set, version.as_deref());
    }
    let mut code = ExitCode::SUCCESS;
    if convert.convert {
        // Every object of a listed API gets a report line instead of a warning.
        let (converted, ok) = crate::convert_cmd::convert(&set)?;
        set = converted;
        if !ok {
            code = ExitCode::from(1);
        }
    } else {
        crate::convert_cmd::warn(&set, version.as_deref());
    }
    let owner = berth_render::Ownership::new(&release, 0, &namespace);
    set.apply_ownership(&owner).map_err(|e| e.to_string())?;
    print!("{}", set.to_yaml());
    Ok(code)
}

fn request(
    args: &DeployArgs,
    namespace: String,
    objects: ObjectSet,
    images: BTreeMap<String, String>,
) -> DeployRequest {
    DeployRequest {
        release: args.release.clone(),
        namespace,
        objects,
        images,
        commit: args.commit.clone(),
        user: user(),
        timeout: args.timeout,
        rollback: !args.no_rollback,
        force_conflicts: args.force_conflicts,
        history_max: args.history_max,
        canary: None,
        lock: LockOptions {
            ttl: args.lock_ttl,
            wait: args.lock_timeout,
            holder: format!("{} (pid {})", user(), std::process::id()),
        },
    }
}

fn finish(
    result: Result<DeployOutcome, berth_deploy::DeployError>,
    json: bool,
    release: &str,
) -> ExitCode {
    match result {
        Ok(outcome) => {
            let (text, doc) = match &outcome {
                DeployOutcome::Deployed {
                    revision,
                    applied,
                    pruned,
                } => (
                    format!(
                        "release `{release}` revision {revision} deployed: {applied} objects ready, {pruned} pruned"
                    ),
                    serde_json::json!({"result": "deployed", "revision": revision, "applied": applied, "pruned": pruned}),
                ),
                DeployOutcome::Unchanged { revision } => (
                    format!(
                        "release `{release}` is up to date at revision {revision}; nothing applied"
                    ),
                    serde_json::json!({"result": "unchanged", "revision": revision}),
                ),
            };
            if json {
                println!("{doc}");
            } else {
                println!("{text}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => failed(json, &e),
    }
}

/// `berth deploy`.
pub async fn deploy(args: DeployArgs) -> Result<ExitCode, String> {
    let cluster = connect(&args.cluster).await?;
    let namespace = namespace_of(&args.cluster, Some(&cluster));
    let (objects, images) = render_objects(&args.render, &namespace, &args.release)?;
    let json = args.output == OutputFormat::Json;
    let sink: Arc<dyn EventSink> = Arc::new(Printer { json });
    // Pre-rendered manifests are deployed as they are; what they leave to a tag is said.
    for unpinned in objects.unpinned_images() {
        sink.emit(Event::Message {
            step: Step::Render.into(),
            level: Level::Warning,
            message: unpinned.to_string(),
        });
    }
    let objects = check_pulls(&args, &cluster, &namespace, &images, objects, &sink).await?;
    let deployer = Deployer::new(cluster, sink);
    let req = request(&args, namespace, objects, images);
    Ok(finish(deployer.deploy(req).await, json, &args.release))
}

/// The pull-secret check of `berth run` for rendered manifests (see berth-pipeline's
/// `pull_secret`): the registries of `--image` pins are asked even without a login, as berth
/// run asks those it pushed to; nothing is applied when a pod could not pull.
async fn check_pulls(
    args: &DeployArgs,
    cluster: &Cluster,
    namespace: &str,
    pins: &BTreeMap<String, String>,
    objects: ObjectSet,
    sink: &Arc<dyn EventSink>,
) -> Result<ObjectSet, String> {
    let p = &args.pulls;
    let registry = berth_registry::Registry::new(berth_registry::RegistryOptions {
        insecure: p.insecure_registry.clone(),
        docker_config: p.docker_config.clone(),
        mirrors: Vec::new(),
    })
    .map_err(|e| e.to_string())?;
    let (objects, ensured) = berth_pipeline::pull_secret::PullSecrets {
        cluster,
        registry: &registry,
        namespace,
        pushed_hosts: berth_pipeline::pull_secret::hosts_of(pins.values()),
        pull_secret: p.pull_secret.as_deref(),
        node_credentials: p.node_credentials,
    }
    .ensure(objects)
    .await
    .map_err(|e| e.to_string())?;
    if let Some(message) = ensured.summary("the docker config's") {
        sink.emit(Event::Message {
            step: Step::Deploy.into(),
            level: Level::Info,
            message,
        });
    }
    Ok(objects)
}

/// `berth rollback`.
pub async fn rollback(args: RollbackArgs) -> Result<ExitCode, String> {
    let cluster = connect(&args.deploy.cluster).await?;
    let namespace = namespace_of(&args.deploy.cluster, Some(&cluster));
    let json = args.deploy.output == OutputFormat::Json;
    let sink: Arc<dyn EventSink> = Arc::new(Printer { json });
    let deployer = Deployer::new(cluster, sink);
    let base = request(
        &args.deploy,
        namespace.clone(),
        ObjectSet::new(),
        BTreeMap::new(),
    );
    let result = deployer
        .rollback(&namespace, &args.deploy.release, args.to, base)
        .await
        .map(|(outcome, from)| {
            if !json {
                eprintln!("restored the objects of revision {from}");
            }
            outcome
        });
    Ok(finish(result, json, &args.deploy.release))
}

/// `berth history`.
pub async fn history(args: HistoryArgs) -> Result<ExitCode, String> {
    let cluster = connect(&args.cluster).await?;
    let namespace = namespace_of(&args.cluster, Some(&cluster));
    let history = History::load(&cluster, &namespace, &args.release)
        .await
        .map_err(|e| e.to_string())?;
    if args.output == OutputFormat::Json {
        let rows: Vec<_> = history
            .releases
            .iter()
            .map(|r| {
                serde_json::json!({
                    "revision": r.revision, "status": r.status, "commit": r.commit, "user": r.user,
                    "started_at": r.started_at, "finished_at": r.finished_at,
                    "description": r.description, "images": r.images, "objects": r.objects.len(),
                    "seeds": r.seeds,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("rows serialize")
        );
        return Ok(ExitCode::SUCCESS);
    }
    if history.releases.is_empty() {
        eprintln!(
            "release `{}` has no history in namespace `{namespace}`",
            args.release
        );
        return Ok(ExitCode::from(1));
    }
    println!(
        "{:<9}{:<13}{:<22}{:<12}DESCRIPTION",
        "REVISION", "STATUS", "STARTED", "COMMIT"
    );
    for r in &history.releases {
        let started: String = r.started_at.chars().take(19).collect();
        let commit: String = r
            .commit
            .as_deref()
            .unwrap_or("-")
            .chars()
            .take(10)
            .collect();
        let desc: String = r
            .description
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(100)
            .collect();
        println!(
            "{:<9}{:<13}{:<22}{:<12}{desc}",
            r.revision,
            r.status.as_str(),
            started,
            commit
        );
        for seed in &r.seeds {
            if seed.ran {
                println!("{:<9}seed {} ran in this revision", "", seed.job);
            } else {
                println!(
                    "{:<9}seed {} skipped: succeeded in revision {}",
                    "", seed.job, seed.revision
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `berth diff`: server-side dry run of each object against the live one, unified diff,
/// Secret values redacted. Exit code 0 when nothing differs, 1 when something does.
pub async fn diff(args: DeployArgs) -> Result<ExitCode, String> {
    let cluster = connect(&args.cluster).await?;
    let namespace = namespace_of(&args.cluster, Some(&cluster));
    let (mut objects, _) = render_objects(&args.render, &namespace, &args.release)?;
    let history = History::load(&cluster, &namespace, &args.release)
        .await
        .map_err(|e| e.to_string())?;
    let owner =
        berth_render::Ownership::new(&args.release, history.last_revision() + 1, &namespace);
    objects.apply_ownership(&owner).map_err(|e| e.to_string())?;
    let changes = berth_deploy::diff::diff(&cluster, &objects, args.force_conflicts)
        .await
        .map_err(|e| e.to_string())?;
    let changed = changes.len();
    for c in &changes {
        let diff = similar::TextDiff::from_lines(&c.live, &c.new);
        print!(
            "{}",
            diff.unified_diff()
                .context_radius(3)
                .header(&format!("live {}", c.object), &format!("new {}", c.object))
        );
    }
    eprintln!("{changed} object(s) differ");
    Ok(if changed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
