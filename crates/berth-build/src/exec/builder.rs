//! The executor: runs the stages a target needs, instruction by instruction, against the
//! content store and the build cache, and assembles, stores, writes and pushes the image.
//!
//! Root filesystems are materialised lazily: a stage whose steps all hit the cache never
//! unpacks anything; the first miss unpacks the layers so far into a scratch directory of the
//! store and the stage goes on from there.
//!
//! This file runs the stages and their instructions; `copy_step` (COPY and ADD), `run_step`
//! (what a RUN's mounts show and bind), `step_cache` (cache hits) and `publish` (assembling,
//! storing, exporting and pushing the image) are its parts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use berth_registry::{BlobPush, PlatformSpec, Registry, media};
use berth_types::{Digest, Event, EventSink, ImageRef, Level, Step};
use sha2::{Digest as _, Sha256};

use super::context::{self, CopyAttrs, Selected};
use super::emulation::{self, EXPLICIT_QEMU_PATH, Emulation};
use super::error::{BuildError, io_err};
use super::image::{
    Descriptor, Empty, HealthConfig, History, ImageConfig, Index, IndexPlatform, Manifest, rfc3339,
};
use super::kept::{self, TrailStep};
use super::layer::{Compression, LayerPlan, apply_layer, resolve_in_root, write_layer};
use super::run_mounts;
use super::runtime::{self, ProcessSpec, RunError};
use super::snapshot::Snapshot;
use super::store::{CacheRecord, CachedLayer, Store, StoredImage};
use crate::span::Location;
mod copy_step;
mod publish;
mod run_step;
mod step_cache;

use crate::{
    BaseRef, BuildArgs, Command, Copy, CopySource, DockerIgnore, Dockerfile, FromRef, Healthcheck,
    Instruction, Network, Platform, Scope,
};
use copy_step::*;
use publish::*;
use run_step::*;
use step_cache::*;

/// The default `PATH` of a RUN when the image sets none (Docker's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How the builder works (shared by many builds).
#[derive(Clone)]
pub struct BuildOptions {
    /// The content store.
    pub store: Store,
    /// Where base images come from and results go.
    pub registry: Arc<Registry>,
    /// The OCI runtime binary for RUN (`runc`).
    pub runtime: String,
    /// Timestamp for every file and the config (`SOURCE_DATE_EPOCH`); `None` is 0.
    pub source_date_epoch: Option<i64>,
    /// Ignore the build cache (results are still recorded).
    pub no_cache: bool,
    /// How new layers are compressed (base layers are kept as pulled).
    pub compression: Compression,
    /// Target platforms when a request names none: empty is the host's; two or more build
    /// one image per platform and an image index over them.
    pub platforms: Vec<Platform>,
    /// Secrets `RUN --mount=type=secret` can mount, by id.
    pub secrets: super::run_mounts::Secrets,
    /// How RUN steps (and the pipeline's tests) are contained: network, limits, deadlines,
    /// extra CA certificates.
    pub sandbox: runtime::Sandbox,
    /// How many platforms of a multi-platform build are built at once (`--jobs`). One
    /// platform's failure stops the others, and nothing is pushed.
    pub platform_jobs: std::num::NonZeroUsize,
    /// Whose `RUN --mount=type=cache` directories a build uses: the delivery server passes
    /// the repository's name, so repositories built on one server never share (or poison)
    /// each other's caches. `None` (CLI builds) shares them by id across the store's builds,
    /// as BuildKit does.
    pub cache_scope: Option<String>,
}

impl BuildOptions {
    /// Options with the defaults: gzip, the host's platform, no secrets, cache on.
    pub fn new(store: Store, registry: Arc<Registry>, runtime: impl Into<String>) -> Self {
        Self {
            store,
            registry,
            runtime: runtime.into(),
            source_date_epoch: None,
            no_cache: false,
            compression: Compression::Gzip,
            platforms: Vec::new(),
            secrets: Default::default(),
            sandbox: Default::default(),
            platform_jobs: std::thread::available_parallelism()
                .unwrap_or(std::num::NonZeroUsize::MIN),
            cache_scope: None,
        }
    }
}

/// One build.
#[derive(Debug, Clone, Default)]
pub struct BuildRequest {
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile; default `<context>/Dockerfile`.
    pub dockerfile: Option<PathBuf>,
    /// `--target` stage.
    pub target: Option<String>,
    /// `--build-arg`s.
    pub build_args: BTreeMap<String, String>,
    /// Target platform; default [`BuildOptions::platforms`], else the host's.
    pub platform: Option<Platform>,
    /// Names for the result (in the store's index, and where pushed).
    pub tags: Vec<ImageRef>,
    /// Push to every tag.
    pub push: bool,
    /// Also write an OCI image layout here.
    pub oci_dest: Option<PathBuf>,
}

/// What a build produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuiltImage {
    /// The digest of what the tags point at: the image manifest, or for a multi-platform
    /// build the image index.
    pub manifest_digest: Digest,
    /// Its media type (OCI manifest or OCI index).
    pub media_type: String,
    /// The config's digest (of the first platform for an index).
    pub config_digest: Digest,
    /// The layers, base first (of the first platform for an index).
    pub layers: Vec<Descriptor>,
    /// Index (if any) + manifests + configs + layers, in bytes.
    pub size: u64,
    /// One entry per platform built.
    pub platforms: Vec<PlatformImage>,
    /// Filesystem steps (RUN/COPY/ADD) executed or reused.
    pub steps: usize,
    /// Of those, how many came from the build cache.
    pub cache_hits: usize,
    /// References pushed (`repo@digest`).
    pub pushed: Vec<ImageRef>,
    /// Layers pushed by uploading their bytes (over all tags).
    pub layers_uploaded: usize,
    /// Layers the registry mounted from the base image's repository instead.
    pub layers_mounted: usize,
}

/// One platform's image of a build.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlatformImage {
    /// `os/arch[/variant]`.
    pub platform: String,
    /// Its image manifest.
    pub manifest_digest: Digest,
    /// Its config.
    pub config_digest: Digest,
    /// Its layer count.
    pub layers: usize,
    /// How its RUN steps ran: `native`, `binfmt:<handler>`, `qemu:<binary>`, or `none`
    /// (no RUN executed).
    pub emulation: String,
}

struct StageState {
    /// The platform the stage's RUN steps execute for.
    platform: Platform,
    config: ImageConfig,
    layers: Vec<Descriptor>,
    chain: String,
    scope: Scope,
    rootfs: Option<PathBuf>,
    /// How `rootfs` got to `chain` (see `kept`).
    trail: Vec<TrailStep>,
    cmd_from_base: bool,
}

/// Removes scratch root filesystems when the build ends, however it ends.
struct Scratch(Vec<PathBuf>);

impl Drop for Scratch {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn hash_parts(parts: &[&str]) -> Digest {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    Digest::sha256_from_bytes(&h.finalize().into())
}

fn platform_spec(p: &Platform) -> PlatformSpec {
    PlatformSpec {
        os: p.os.clone(),
        architecture: p.architecture.clone(),
        variant: p.variant.clone(),
    }
}

fn env_pairs(env: &[String]) -> Vec<(String, String)> {
    env.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.clone(), String::new()),
        })
        .collect()
}

fn command_args(cmd: &Command, shell: &[String]) -> Vec<String> {
    match cmd {
        Command::Exec(v) => v.clone(),
        Command::Shell(s) => {
            let mut v = if shell.is_empty() {
                vec!["/bin/sh".to_string(), "-c".to_string()]
            } else {
                shell.to_vec()
            };
            v.push(s.clone());
            v
        }
    }
}

/// Unpacks the layers of an image into `dest` (created).
pub fn unpack_layers(store: &Store, layers: &[Descriptor], dest: &Path) -> Result<(), BuildError> {
    std::fs::create_dir_all(dest).map_err(io_err(dest))?;
    for l in layers {
        apply_layer(&store.blob_path(&l.digest), &l.media_type, dest)?;
    }
    Ok(())
}

/// Unpacks the image with manifest `manifest_digest` from the store into `dest`; returns its
/// config (to run it).
pub fn unpack_image(
    store: &Store,
    manifest_digest: &Digest,
    dest: &Path,
) -> Result<ImageConfig, BuildError> {
    let img = store.image(manifest_digest)?;
    unpack_layers(store, &img.layers, dest)?;
    Ok(img.config)
}

struct Ctx<'a> {
    opts: &'a BuildOptions,
    sink: &'a dyn EventSink,
    file: String,
    platform: Platform,
    /// How RUN steps of each architecture run, decided at the first RUN that needs it.
    emulation: BTreeMap<String, Emulation>,
    /// `[linux/arm64] ` before each message when platforms build side by side.
    label: Option<String>,
    mtime: u64,
    created: String,
    scratch: Scratch,
    steps: usize,
    hits: usize,
    context: PathBuf,
    ignore: Option<DockerIgnore>,
    /// Base-image layers and the repository they were pulled from (for cross-repo mounts).
    layer_sources: BTreeMap<Digest, ImageRef>,
}

impl Ctx<'_> {
    fn say(&self, message: String) {
        self.sink.emit(Event::Message {
            step: Step::Build.into(),
            level: Level::Info,
            message: match &self.label {
                Some(label) => format!("{label}{message}"),
                None => message,
            },
        });
    }

    fn materialize(&mut self, st: &mut StageState) -> Result<PathBuf, BuildError> {
        if let Some(r) = &st.rootfs {
            return Ok(r.clone());
        }
        let dir = self.opts.store.temp_path("rootfs");
        self.scratch.0.push(dir.clone());
        st.trail = match kept::take(&self.opts.store, &st.chain, &dir) {
            Some(trail) => {
                self.say("reusing a kept root filesystem".into());
                trail
            }
            None => {
                unpack_layers(&self.opts.store, &st.layers, &dir)?;
                vec![TrailStep {
                    chain: st.chain.clone(),
                    added: None,
                }]
            }
        };
        st.rootfs = Some(dir.clone());
        Ok(dir)
    }

    /// How RUN steps for `platform` run, registering a binfmt_misc handler when needed.
    fn emulation_for(
        &mut self,
        platform: &Platform,
        loc: &Location,
    ) -> Result<Emulation, BuildError> {
        if let Some(e) = self.emulation.get(&platform.architecture) {
            return Ok(e.clone());
        }
        let e =
            emulation::ensure(&platform.architecture).map_err(|source| BuildError::Emulation {
                location: loc.clone(),
                source,
            })?;
        match &e {
            Emulation::Native => {}
            Emulation::Binfmt {
                handler,
                registered,
            } => self.say(format!(
                "RUN for {platform} through qemu-user (binfmt_misc handler {handler}{})",
                if *registered { ", registered now" } else { "" }
            )),
            Emulation::Explicit { qemu, why } => self.sink.emit(Event::Message {
                step: Step::Build.into(),
                level: Level::Warning,
                message: format!(
                    "RUN for {platform} runs its first process under {} because {why}; a \
                     foreign program that process starts needs a binfmt_misc handler, else it \
                     fails with \"Exec format error\" (run berth as root with binfmt_misc \
                     mountable so it can register one)",
                    qemu.display()
                ),
            }),
        }
        self.emulation
            .insert(platform.architecture.clone(), e.clone());
        Ok(e)
    }

    async fn pull(&mut self, reference: &str, loc: &Location) -> Result<StoredImage, BuildError> {
        let platform = self.platform.clone();
        self.pull_for(reference, &platform, loc).await
    }

    async fn pull_for(
        &mut self,
        reference: &str,
        platform: &Platform,
        loc: &Location,
    ) -> Result<StoredImage, BuildError> {
        let image: ImageRef = reference.parse().map_err(|e| BuildError::Step {
            location: loc.clone(),
            instruction: "FROM",
            reason: format!("invalid image reference {reference:?}: {e}"),
        })?;
        let img = self
            .opts
            .store
            .pull(
                &self.opts.registry,
                &image,
                &platform_spec(platform),
                self.sink,
            )
            .await?;
        let arch = &img.config.architecture;
        if !arch.is_empty() && *arch != platform.architecture {
            return Err(BuildError::Step {
                location: loc.clone(),
                instruction: "FROM",
                reason: format!(
                    "{reference} is an image for {}/{arch} only, not for {platform}; push an \
                     image index with a {platform} entry, or build for {}/{arch}",
                    img.config.os, img.config.os
                ),
            });
        }
        if let Some(src) = &img.source {
            for l in &img.layers {
                self.layer_sources
                    .entry(l.digest.clone())
                    .or_insert_with(|| src.clone());
            }
        }
        Ok(img)
    }
}

/// Builds the image `request` describes, reporting progress to `sink`.
pub async fn build(
    opts: &BuildOptions,
    request: &BuildRequest,
    sink: &dyn EventSink,
) -> Result<BuiltImage, BuildError> {
    let started = Instant::now();
    sink.emit(Event::StepStarted {
        step: Step::Build.into(),
    });
    // A SIGKILLed build leaves its runc bundle (the step's environment, `env=` secrets
    // included) and secret files behind: remove those of processes that are gone.
    let stale = opts.store.clean_stale_tmp();
    if !stale.is_empty() {
        sink.emit(Event::Message {
            step: Step::Build.into(),
            level: Level::Info,
            message: format!(
                "removed {} scratch entries left by builds that were killed",
                stale.len()
            ),
        });
    }
    let result = build_all(opts, request, sink).await;
    sink.emit(Event::StepFinished {
        step: Step::Build.into(),
        ok: result.is_ok(),
        millis: started.elapsed().as_millis() as u64,
        message: match &result {
            Ok(b) => format!(
                "built {} ({} steps, {} cached)",
                b.manifest_digest, b.steps, b.cache_hits
            ),
            Err(e) => e.to_string(),
        },
    });
    result
}

/// The platforms a build is for: the request's, else the options', else the host's; without
/// duplicates, in the order given.
fn target_platforms(configured: &[Platform], requested: Option<&Platform>) -> Vec<Platform> {
    let mut out: Vec<Platform> = Vec::new();
    let wanted = match requested {
        Some(p) => vec![p.clone()],
        None if !configured.is_empty() => configured.to_vec(),
        None => vec![Platform::host_linux()],
    };
    for p in wanted {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

async fn build_all(
    opts: &BuildOptions,
    request: &BuildRequest,
    sink: &dyn EventSink,
) -> Result<BuiltImage, BuildError> {
    use futures::{StreamExt as _, TryStreamExt as _};
    let platforms = target_platforms(&opts.platforms, request.platform.as_ref());
    let multi = platforms.len() > 1;
    if multi {
        sink.emit(Event::Message {
            step: Step::Build.into(),
            level: Level::Info,
            message: format!(
                "building for {}, at most {} at once",
                platforms
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                opts.platform_jobs.get().min(platforms.len())
            ),
        });
    }
    // In parallel, results in the order asked for. The first error ends the stream: the other
    // platforms' builds are dropped, which stops their RUN steps (the runtime kills a dropped
    // container), and nothing is published.
    // Boxed one by one (not mapped in the stream): a closure over the borrowed platform
    // would make the whole build's future lose `Send`'s general lifetime.
    type PlatformBuild<'a> = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Assembled, BuildError>> + Send + 'a>,
    >;
    let mut builds: Vec<PlatformBuild<'_>> = Vec::new();
    for p in &platforms {
        builds.push(Box::pin(build_inner(opts, request, p, multi, sink)));
    }
    let images: Vec<Assembled> = futures::stream::iter(builds)
        .buffered(opts.platform_jobs.get())
        .try_collect()
        .await?;
    publish(opts, request, images, multi, sink).await
}

async fn build_inner(
    opts: &BuildOptions,
    request: &BuildRequest,
    platform: &Platform,
    multi: bool,
    sink: &dyn EventSink,
) -> Result<Assembled, BuildError> {
    let dockerfile_path = request
        .dockerfile
        .clone()
        .unwrap_or_else(|| request.context.join("Dockerfile"));
    let text = std::fs::read_to_string(&dockerfile_path).map_err(io_err(&dockerfile_path))?;
    let file = dockerfile_path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "Dockerfile".into());
    let platform = platform.clone();
    let mut args = BuildArgs::new(platform.clone());
    args.build_platform = Platform::host_linux();
    for (k, v) in &request.build_args {
        args = args.with(k, v);
    }
    let df = Dockerfile::parse(&file, &text, &args)?;
    let order = df.build_order(request.target.as_deref())?;
    let ignore_path = request.context.join(".dockerignore");
    let ignore = match std::fs::read_to_string(&ignore_path) {
        Ok(t) => Some(DockerIgnore::parse(&t)?),
        Err(_) => None,
    };
    let epoch = opts.source_date_epoch.unwrap_or(0).max(0);
    let mut cx = Ctx {
        opts,
        sink,
        file: file.clone(),
        platform: platform.clone(),
        emulation: BTreeMap::new(),
        label: multi.then(|| format!("[{platform}] ")),
        mtime: epoch as u64,
        created: rfc3339(epoch),
        scratch: Scratch(Vec::new()),
        steps: 0,
        hits: 0,
        context: request.context.clone(),
        ignore,
        layer_sources: BTreeMap::new(),
    };
    let mut states: Vec<Option<StageState>> = (0..df.stages.len()).map(|_| None).collect();
    let total = order.len();
    for (pos, &si) in order.iter().enumerate() {
        let stage = &df.stages[si];
        let loc = Location::new(&file, stage.span);
        // `FROM --platform=` (e.g. $BUILDPLATFORM for a cross-compiling stage) picks the
        // stage's own platform; otherwise it is the target's.
        let stage_platform = match &stage.platform {
            Some(p) => Platform::parse(p).map_err(|e| BuildError::Step {
                location: loc.clone(),
                instruction: "FROM",
                reason: format!("--platform={p}: {e}"),
            })?,
            None => platform.clone(),
        };
        let (config, layers, chain) = match &stage.base {
            BaseRef::Scratch => (
                ImageConfig {
                    architecture: stage_platform.architecture.clone(),
                    os: stage_platform.os.clone(),
                    variant: stage_platform.variant.clone(),
                    ..Default::default()
                },
                Vec::new(),
                hash_parts(&["scratch", &stage_platform.to_string()]).to_string(),
            ),
            BaseRef::Image(r) => {
                cx.say(format!("[{}/{total}] FROM {r}", pos + 1));
                let img = cx.pull_for(r, &stage_platform, &loc).await?;
                if !img.config.config.on_build.is_empty() {
                    return Err(BuildError::Unsupported {
                        location: loc.clone(),
                        what: format!("base image {r} with ONBUILD triggers"),
                        hint: "copy the triggers into this Dockerfile and use a base without them"
                            .into(),
                    });
                }
                let chain = hash_parts(&["image", &img.manifest_digest.to_string()]).to_string();
                (img.config, img.layers, chain)
            }
            BaseRef::Stage(i) => {
                let parent = states[*i].as_ref().expect("build order puts parents first");
                (
                    parent.config.clone(),
                    parent.layers.clone(),
                    parent.chain.clone(),
                )
            }
        };
        let scope = df.stage_scope(&env_pairs(&config.config.env));
        let mut st = StageState {
            platform: stage_platform,
            cmd_from_base: config.config.cmd.is_some(),
            config,
            layers,
            chain,
            scope,
            rootfs: None,
            trail: Vec::new(),
        };
        st.config.created = Some(cx.created.clone());
        for ins in &stage.instructions {
            let ins = ins.expand(&mut st.scope, &file)?;
            run_instruction(&mut cx, &mut st, &mut states, &ins, pos + 1, total).await?;
        }
        states[si] = Some(st);
    }
    let last = *order.last().expect("build order is never empty");
    let st = states[last].take().expect("target stage built");
    let mut rootfses: Vec<(PathBuf, Vec<TrailStep>)> = states
        .iter()
        .flatten()
        .chain(std::iter::once(&st))
        .filter_map(|s| Some((s.rootfs.clone()?, s.trail.clone())))
        .collect();
    let built = assemble(&cx, st)?;
    for (rootfs, trail) in rootfses.drain(..) {
        // Best effort: a root filesystem that cannot be kept is removed with the scratch.
        let _ = kept::keep(&opts.store, &rootfs, &trail);
    }
    Ok(built)
}

async fn run_instruction(
    cx: &mut Ctx<'_>,
    st: &mut StageState,
    states: &mut [Option<StageState>],
    ins: &Instruction,
    pos: usize,
    total: usize,
) -> Result<(), BuildError> {
    let loc = Location::new(&cx.file, ins.span());
    let cfg = &mut st.config.config;
    let history = |st: &mut StageState, created_by: String, empty: bool| {
        st.config.history.push(History {
            created: Some(cx.created.clone()),
            created_by: Some(created_by),
            comment: Some("berth".into()),
            empty_layer: empty,
        });
    };
    match ins {
        Instruction::Env { vars, .. } => {
            cfg.env = st
                .scope
                .env()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let text = vars
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ");
            history(st, format!("ENV {text}"), true);
        }
        Instruction::Arg { args, .. } => {
            let names: Vec<&str> = args.iter().map(|a| a.name.as_str()).collect();
            history(st, format!("ARG {}", names.join(" ")), true);
        }
        Instruction::Workdir { path, .. } => {
            let new = if path.starts_with('/') {
                path.clone()
            } else {
                let base = if cfg.working_dir.is_empty() {
                    "/"
                } else {
                    cfg.working_dir.as_str()
                };
                format!("{}/{path}", base.trim_end_matches('/'))
            };
            cfg.working_dir = new.clone();
            history(st, format!("WORKDIR {new}"), true);
        }
        Instruction::User { user, .. } => {
            cfg.user = user.clone();
            history(st, format!("USER {user}"), true);
        }
        Instruction::Label { labels, .. } => {
            for (k, v) in labels {
                cfg.labels.insert(k.clone(), v.clone());
            }
            history(st, "LABEL".into(), true);
        }
        Instruction::Expose { ports, .. } => {
            for p in ports {
                let p = if p.contains('/') {
                    p.to_lowercase()
                } else {
                    format!("{p}/tcp")
                };
                cfg.exposed_ports.insert(p, Empty {});
            }
            history(st, format!("EXPOSE {}", ports.join(" ")), true);
        }
        Instruction::Entrypoint { command, .. } => {
            cfg.entrypoint = Some(command_args(command, &cfg.shell));
            if st.cmd_from_base {
                cfg.cmd = None;
            }
            history(st, format!("ENTRYPOINT {command:?}"), true);
        }
        Instruction::Cmd { command, .. } => {
            cfg.cmd = Some(command_args(command, &cfg.shell));
            st.cmd_from_base = false;
            history(st, format!("CMD {command:?}"), true);
        }
        Instruction::Stopsignal { signal, .. } => {
            cfg.stop_signal = signal.clone();
            history(st, format!("STOPSIGNAL {signal}"), true);
        }
        Instruction::Volume { paths, .. } => {
            for p in paths {
                cfg.volumes.insert(p.clone(), Empty {});
            }
            history(st, format!("VOLUME {paths:?}"), true);
        }
        Instruction::Shell { shell, .. } => {
            cfg.shell = shell.clone();
            history(st, format!("SHELL {shell:?}"), true);
        }
        Instruction::Healthcheck { check, .. } => {
            let ns = |d: &Option<std::time::Duration>| d.map(|d| d.as_nanos() as u64).unwrap_or(0);
            cfg.healthcheck = Some(match check {
                Healthcheck::None => HealthConfig {
                    test: vec!["NONE".into()],
                    ..Default::default()
                },
                Healthcheck::Check {
                    command,
                    interval,
                    timeout,
                    start_period,
                    start_interval,
                    retries,
                } => HealthConfig {
                    test: match command {
                        Command::Exec(v) => std::iter::once("CMD".to_string())
                            .chain(v.iter().cloned())
                            .collect(),
                        Command::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
                    },
                    interval: ns(interval),
                    timeout: ns(timeout),
                    start_period: ns(start_period),
                    start_interval: ns(start_interval),
                    retries: retries.map(u64::from).unwrap_or(0),
                },
            });
            history(st, "HEALTHCHECK".into(), true);
        }
        Instruction::Onbuild { trigger, .. } => {
            cfg.on_build.push(trigger.clone());
            history(st, format!("ONBUILD {trigger}"), true);
        }
        Instruction::Maintainer { name, .. } => {
            st.config.author = Some(name.clone());
            history(st, format!("MAINTAINER {name}"), true);
        }
        Instruction::Run { run, .. } => {
            let args = match &run.command {
                Command::Exec(v) => v.clone(),
                Command::Shell(_) => {
                    let script = run.shell_script().unwrap_or_default();
                    command_args(&Command::Shell(script), &st.config.config.shell)
                }
            };
            let mut env: Vec<String> = st
                .scope
                .run_env()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            if !env.iter().any(|e| e.starts_with("PATH=")) {
                env.insert(0, format!("PATH={DEFAULT_PATH}"));
            }
            let workdir = if st.config.config.working_dir.is_empty() {
                "/".to_string()
            } else {
                st.config.config.working_dir.clone()
            };
            let user = st.config.config.user.clone();
            let network_none = run.network == Network::None;
            // Not in the cache key: host and isolated networks give the same layer.
            let network = match run.network {
                Network::None => runtime::Network::None,
                Network::Host if !cx.opts.sandbox.allows_host_network() => {
                    return Err(BuildError::HostNetworkRefused { location: loc });
                }
                Network::Host => runtime::Network::Host,
                Network::Default => cx.opts.sandbox.network,
            };
            let text = format!("RUN {}", args.join(" "));
            let mounts_key = format!("{:?}", run.mounts);
            let bind_inputs = bind_inputs(cx, states, &run.mounts, &loc).await?;
            let key = hash_parts(&[
                "run",
                &st.chain,
                &mounts_key,
                &format!("{args:?}"),
                &env.join("\n"),
                &workdir,
                &user,
                &network_none.to_string(),
                &st.platform.to_string(),
                &cx.mtime.to_string(),
                cx.opts.compression.name(),
                &bind_inputs,
            ]);
            cx.steps += 1;
            if let Some(rec) = cached(cx, &key) {
                cx.say(format!("[{pos}/{total}] CACHED {text}"));
                apply_record(&cx.opts.store, st, &key, rec, text, true, None)?;
                return Ok(());
            }
            cx.say(format!("[{pos}/{total}] {text}"));
            let stage_platform = st.platform.clone();
            let emulation = cx.emulation_for(&stage_platform, &loc)?;
            let rootfs = cx.materialize(st)?;
            let mut pre = Vec::new();
            let wd_rel = resolve_in_root(&rootfs, &workdir)?;
            let before = Snapshot::take(&rootfs)?;
            context::mkdir_recorded(&rootfs, &wd_rel, &mut pre)?;
            let (uid, gid, groups) = if user.is_empty() {
                (0, 0, Vec::new())
            } else {
                context::resolve_user(Some(&rootfs), &user).map_err(|reason| BuildError::Step {
                    location: loc.clone(),
                    instruction: "RUN",
                    reason,
                })?
            };
            if !env.iter().any(|e| e.starts_with("HOME=")) {
                env.push(format!(
                    "HOME={}",
                    home_of(&rootfs, uid).unwrap_or_else(|| "/".into())
                ));
            }
            let roots = bind_roots(cx, states, &run.mounts, &loc).await?;
            let sources = run_mounts::Sources {
                context: &cx.context,
                ignore: cx.ignore.as_ref(),
                secrets: &cx.opts.secrets,
                roots: &roots,
                cache_scope: cx.opts.cache_scope.as_deref(),
            };
            let mut mounts = run_mounts::prepare(
                &cx.opts.store,
                &rootfs,
                &workdir,
                &run.mounts,
                &sources,
                &loc,
            )
            .await?;
            for (k, v) in std::mem::take(&mut mounts.env) {
                env.push(format!("{k}={v}"));
            }
            let mut run_args = args.clone();
            if let Emulation::Explicit { qemu, .. } = &emulation {
                let program = find_program(&rootfs, &env, &workdir, &run_args[0]);
                mounts
                    .binds
                    .push((qemu.clone(), EXPLICIT_QEMU_PATH.to_string(), true));
                run_args[0] = program;
                run_args.insert(0, EXPLICIT_QEMU_PATH.to_string());
            }
            let mut spec = ProcessSpec {
                rootfs: rootfs.clone(),
                args: run_args,
                env,
                cwd: workdir,
                uid,
                gid,
                additional_gids: groups,
                network,
                binds: std::mem::take(&mut mounts.binds),
                tmpfs: std::mem::take(&mut mounts.tmpfs),
                pids_limit: 0,
                memory: None,
                timeout: None,
                extra_ca: Vec::new(),
            };
            let sandbox = &cx.opts.sandbox;
            sandbox.apply(&mut spec, sandbox.step_timeout);
            let sink = cx.sink;
            let on_line = move |is_err: bool, line: &str| {
                sink.emit(Event::Message {
                    step: Step::Run.into(),
                    level: if is_err { Level::Warning } else { Level::Info },
                    message: line.to_string(),
                });
            };
            let bundle = cx.opts.store.temp_path("bundle");
            let outcome = runtime::run(&cx.opts.runtime, &bundle, &spec, &on_line).await;
            mounts.cleanup(&rootfs);
            drop(mounts);
            let short = || {
                let mut command: String = args.join(" ");
                if command.len() > 120 {
                    let mut end = 117;
                    while !command.is_char_boundary(end) {
                        end -= 1;
                    }
                    command.truncate(end);
                    command.push_str("...");
                }
                command
            };
            match outcome {
                Ok(()) => {}
                Err(RunError::Timeout { after, tail }) => {
                    return Err(BuildError::RunTimeout {
                        location: loc,
                        step: pos,
                        command: short(),
                        after: runtime::display_duration(after),
                        tail: tail.join("\n"),
                    });
                }
                Err(RunError::Limit { reason, tail }) => {
                    return Err(BuildError::RunLimit {
                        location: loc,
                        step: pos,
                        command: short(),
                        reason,
                        tail: tail.join("\n"),
                    });
                }
                Err(RunError::Exit { code, tail }) => {
                    let command = short();
                    return Err(BuildError::RunFailed {
                        location: loc,
                        command,
                        exit_code: code,
                        tail: tail.join("\n"),
                    });
                }
                Err(RunError::Runtime(message)) => {
                    return Err(BuildError::Runtime {
                        location: loc,
                        runtime: cx.opts.runtime.clone(),
                        message,
                    });
                }
            }
            let after = Snapshot::take(&rootfs)?;
            let plan = before.diff(&after);
            let added = before.added_only(&after, &plan);
            record_step(cx, st, &key, &rootfs, &plan, text, added)?;
        }
        Instruction::Copy { copy, .. } => {
            copy_step(cx, st, states, copy, None, &loc, pos, total).await?;
        }
        Instruction::Add { add, .. } => {
            copy_step(
                cx,
                st,
                states,
                &add.copy,
                Some(add.extract_archives),
                &loc,
                pos,
                total,
            )
            .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_qemu_gets_the_program_path_from_path_in_the_rootfs() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("usr/bin")).unwrap();
        std::fs::create_dir_all(root.path().join("bin")).unwrap();
        std::fs::write(root.path().join("usr/bin/tool"), "").unwrap();
        std::os::unix::fs::symlink("/usr/bin/tool", root.path().join("bin/linked")).unwrap();
        let env = vec!["PATH=/opt/none:/usr/bin:/bin".to_string()];
        assert_eq!(
            find_program(root.path(), &env, "/", "tool"),
            "/usr/bin/tool"
        );
        assert_eq!(
            find_program(root.path(), &env, "/", "linked"),
            "/bin/linked"
        );
        assert_eq!(
            find_program(root.path(), &env, "/src", "./run.sh"),
            "/src/./run.sh"
        );
        assert_eq!(find_program(root.path(), &env, "/", "/bin/sh"), "/bin/sh");
        assert_eq!(find_program(root.path(), &env, "/", "missing"), "missing");
    }

    #[test]
    fn platforms_come_from_the_request_then_the_options_without_duplicates() {
        assert_eq!(target_platforms(&[], None), vec![Platform::host_linux()]);
        let arm = Platform::parse("linux/arm64").unwrap();
        let amd = Platform::parse("linux/amd64").unwrap();
        let configured = vec![amd.clone(), arm.clone(), amd.clone()];
        assert_eq!(target_platforms(&configured, None), vec![amd, arm.clone()]);
        assert_eq!(target_platforms(&configured, Some(&arm)), vec![arm]);
    }
}
