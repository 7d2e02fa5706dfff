//! The executor: runs the stages a target needs, instruction by instruction, against the
//! content store and the build cache, and assembles, stores, writes and pushes the image.
//!
//! Root filesystems are materialised lazily: a stage whose steps all hit the cache never
//! unpacks anything; the first miss unpacks the layers so far into a scratch directory of the
//! store and the stage goes on from there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use berth_registry::{BlobPush, PlatformSpec, Registry, media};
use berth_types::{Digest, Event, EventSink, ImageRef, Level};
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
use crate::{
    BaseRef, BuildArgs, Command, Copy, CopySource, DockerIgnore, Dockerfile, FromRef, Healthcheck,
    Instruction, Network, Platform, Scope,
};

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
            step: "build".into(),
            level: Level::Info,
            message,
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
                step: "build".into(),
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
        step: "build".into(),
    });
    // A SIGKILLed build leaves its runc bundle (the step's environment, `env=` secrets
    // included) and secret files behind: remove those of processes that are gone.
    let stale = opts.store.clean_stale_tmp();
    if !stale.is_empty() {
        sink.emit(Event::Message {
            step: "build".into(),
            level: Level::Info,
            message: format!(
                "removed {} scratch entries left by builds that were killed",
                stale.len()
            ),
        });
    }
    let result = build_all(opts, request, sink).await;
    sink.emit(Event::StepFinished {
        step: "build".into(),
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
    let platforms = target_platforms(&opts.platforms, request.platform.as_ref());
    let mut images = Vec::new();
    for p in &platforms {
        if platforms.len() > 1 {
            sink.emit(Event::Message {
                step: "build".into(),
                level: Level::Info,
                message: format!("building for {p}"),
            });
        }
        images.push(build_inner(opts, request, p, sink).await?);
    }
    publish(opts, request, images, platforms.len() > 1, sink).await
}

async fn build_inner(
    opts: &BuildOptions,
    request: &BuildRequest,
    platform: &Platform,
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
                    step: "run".into(),
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
            let layer = write_layer(
                &cx.opts.store,
                &rootfs,
                &plan,
                cx.mtime,
                cx.opts.compression,
            )?;
            let rec = CacheRecord { layer };
            cx.opts.store.cache_put(&key, &rec)?;
            apply_record(&cx.opts.store, st, &key, rec, text, false, added)?;
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

/// What the bind mounts of a RUN show, for its cache key: the content of context sources,
/// the chain of stages, the manifest of images.
async fn bind_inputs(
    cx: &mut Ctx<'_>,
    states: &[Option<StageState>],
    mounts: &[crate::Mount],
    loc: &Location,
) -> Result<String, BuildError> {
    let mut parts = Vec::new();
    for m in mounts {
        if !matches!(m.kind, crate::MountKind::Bind { .. }) {
            continue;
        }
        let source = run_mounts::bind_source(m);
        parts.push(match &m.from {
            None => {
                let sel = context::select(&cx.context, &[source], cx.ignore.as_ref()).map_err(
                    |reason| BuildError::Step {
                        location: loc.clone(),
                        instruction: "RUN",
                        reason: format!("--mount=type=bind: {reason}"),
                    },
                )?;
                format!("context:{}", context::content_digest(&sel)?)
            }
            Some(FromRef::Stage(i)) => {
                let other = states[*i].as_ref().ok_or_else(|| BuildError::Step {
                    location: loc.clone(),
                    instruction: "RUN",
                    reason: format!("stage {i} is not built yet"),
                })?;
                format!("stage:{}", other.chain)
            }
            Some(FromRef::Image(r)) => {
                let img = cx.pull(r, loc).await?;
                format!("image:{}", img.manifest_digest)
            }
        });
    }
    Ok(parts.join("\n"))
}

/// Root filesystems of the stages and images the bind mounts of a RUN take files from.
async fn bind_roots(
    cx: &mut Ctx<'_>,
    states: &mut [Option<StageState>],
    mounts: &[crate::Mount],
    loc: &Location,
) -> Result<Vec<(FromRef, PathBuf)>, BuildError> {
    let mut roots: Vec<(FromRef, PathBuf)> = Vec::new();
    for m in mounts {
        let (crate::MountKind::Bind { .. }, Some(from)) = (&m.kind, &m.from) else {
            continue;
        };
        if roots.iter().any(|(f, _)| f == from) {
            continue;
        }
        let root = match from {
            FromRef::Stage(i) => {
                let mut other = states[*i].take().expect("checked by bind_inputs");
                let r = cx.materialize(&mut other);
                states[*i] = Some(other);
                r?
            }
            FromRef::Image(r) => {
                let img = cx.pull(r, loc).await?;
                let dir = cx.opts.store.temp_path("from");
                cx.scratch.0.push(dir.clone());
                unpack_layers(&cx.opts.store, &img.layers, &dir)?;
                dir
            }
        };
        roots.push((from.clone(), root));
    }
    Ok(roots)
}

/// The path of `program` in `rootfs` for explicit qemu (which does not search `PATH`).
fn find_program(rootfs: &Path, env: &[String], workdir: &str, program: &str) -> String {
    if program.contains('/') {
        return if program.starts_with('/') {
            program.to_string()
        } else {
            format!("{}/{program}", workdir.trim_end_matches('/'))
        };
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':').filter(|d| d.starts_with('/')) {
        let candidate = format!("{}/{program}", dir.trim_end_matches('/'));
        // A link loop in the image is no program; the next PATH entry may hold it.
        let Ok(rel) = resolve_in_root(rootfs, &candidate) else {
            continue;
        };
        if rootfs.join(&rel).is_file() {
            return candidate;
        }
    }
    program.to_string()
}

fn home_of(rootfs: &Path, uid: u32) -> Option<String> {
    let passwd =
        std::fs::read_to_string(rootfs.join(resolve_in_root(rootfs, "etc/passwd").ok()?)).ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 5 && f[2] == uid.to_string()).then(|| f[5].to_string())
    })
}

fn cached(cx: &mut Ctx<'_>, key: &Digest) -> Option<CacheRecord> {
    if cx.opts.no_cache {
        return None;
    }
    let rec = cx.opts.store.cache_get(key)?;
    cx.hits += 1;
    Some(rec)
}

/// Adds what a step produced to the stage. On a cache hit (`hit`) with a root filesystem
/// already materialised, the layer is applied to it too; on a miss the change is there already.
fn apply_record(
    store: &Store,
    st: &mut StageState,
    key: &Digest,
    rec: CacheRecord,
    text: String,
    hit: bool,
    added: Option<Vec<String>>,
) -> Result<(), BuildError> {
    let diff = rec
        .layer
        .as_ref()
        .map(|l| l.diff_id.to_string())
        .unwrap_or_else(|| "empty".into());
    st.chain = hash_parts(&[&st.chain, &key.to_string(), &diff]).to_string();
    if st.rootfs.is_some() {
        st.trail.push(TrailStep {
            chain: st.chain.clone(),
            added: if hit { None } else { added },
        });
    }
    let empty = rec.layer.is_none();
    if let Some(CachedLayer {
        descriptor,
        diff_id,
    }) = rec.layer
    {
        if hit && let Some(root) = &st.rootfs {
            apply_layer(
                &store.blob_path(&descriptor.digest),
                &descriptor.media_type,
                root,
            )?;
        }
        st.layers.push(descriptor);
        st.config.rootfs.diff_ids.push(diff_id);
    }
    st.config.history.push(History {
        created: st.config.created.clone(),
        created_by: Some(text),
        comment: Some("berth".into()),
        empty_layer: empty,
    });
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn copy_step(
    cx: &mut Ctx<'_>,
    st: &mut StageState,
    states: &mut [Option<StageState>],
    copy: &Copy,
    add_extracts: Option<bool>,
    loc: &Location,
    pos: usize,
    total: usize,
) -> Result<(), BuildError> {
    let kw: &'static str = if add_extracts.is_some() {
        "ADD"
    } else {
        "COPY"
    };
    let extract = add_extracts == Some(true);
    let step_err = |reason: String| BuildError::Step {
        location: loc.clone(),
        instruction: kw,
        reason,
    };
    let attrs_mode = match &copy.chmod {
        None => None,
        Some(m) => Some(
            u32::from_str_radix(m, 8).map_err(|_| BuildError::Unsupported {
                location: loc.clone(),
                what: format!("--chmod={m}"),
                hint: "write the mode in octal, e.g. --chmod=0755".into(),
            })?,
        ),
    };
    let excludes = if copy.excludes.is_empty() {
        None
    } else {
        Some(DockerIgnore::parse(&copy.excludes.join("\n"))?)
    };
    let exclude = |sel: Vec<Selected>| match &excludes {
        None => sel,
        Some(x) => context::exclude(sel, x),
    };
    let paths: Vec<String> = copy
        .sources
        .iter()
        .filter_map(|s| match s {
            CopySource::Path(p) => Some(p.clone()),
            CopySource::Heredoc(_) => None,
        })
        .collect();
    let heredocs: Vec<&str> = copy
        .sources
        .iter()
        .filter_map(|s| match s {
            CopySource::Heredoc(h) => Some(h.content.as_str()),
            CopySource::Path(_) => None,
        })
        .collect();
    // Where the files come from, and what identifies them for the cache.
    let (src_root, ignore, source_id): (Option<PathBuf>, Option<DockerIgnore>, Option<String>) =
        match &copy.from {
            None => (Some(cx.context.clone()), cx.ignore.clone(), None),
            Some(FromRef::Stage(i)) => {
                let other = states[*i]
                    .as_ref()
                    .ok_or_else(|| step_err(format!("stage {i} is not built yet")))?;
                (None, None, Some(format!("stage:{}", other.chain)))
            }
            Some(FromRef::Image(r)) => {
                let img = cx.pull(r, loc).await?;
                let dir = cx.opts.store.temp_path("from");
                cx.scratch.0.push(dir.clone());
                unpack_layers(&cx.opts.store, &img.layers, &dir)?;
                (
                    Some(dir),
                    None,
                    Some(format!("image:{}", img.manifest_digest)),
                )
            }
        };
    let mut selected: Option<Vec<Selected>> = None;
    let inputs = match (&source_id, &src_root) {
        (Some(id), _) => id.clone(),
        (None, Some(root)) => {
            let sel = exclude(context::select(root, &paths, ignore.as_ref()).map_err(&step_err)?);
            let d = context::content_digest(&sel)?;
            selected = Some(sel);
            d
        }
        (None, None) => unreachable!("a copy has a source"),
    };
    let workdir = if st.config.config.working_dir.is_empty() {
        "/".to_string()
    } else {
        st.config.config.working_dir.clone()
    };
    let dest = if copy.dest.starts_with('/') {
        copy.dest.clone()
    } else {
        let mut d = format!("{}/{}", workdir.trim_end_matches('/'), copy.dest);
        if copy.dest == "." || copy.dest == "./" {
            d = format!("{}/", workdir.trim_end_matches('/'));
        }
        d
    };
    let shown = {
        let mut s: Vec<String> = paths.clone();
        s.extend(heredocs.iter().map(|_| "<<heredoc".to_string()));
        format!(
            "{kw} {}{} {}",
            copy.from
                .as_ref()
                .map(|f| format!("--from={f:?} "))
                .unwrap_or_default(),
            s.join(" "),
            copy.dest
        )
    };
    let key = hash_parts(&[
        "copy",
        &st.chain,
        &format!("{copy:?}"),
        &inputs,
        &dest,
        &cx.mtime.to_string(),
        if extract { "extract" } else { "" },
        cx.opts.compression.name(),
    ]);
    cx.steps += 1;
    if let Some(rec) = cached(cx, &key) {
        cx.say(format!("[{pos}/{total}] CACHED {shown}"));
        apply_record(&cx.opts.store, st, &key, rec, shown, true, None)?;
        return Ok(());
    }
    cx.say(format!("[{pos}/{total}] {shown}"));
    // Sources from another stage: materialise it now.
    let (src_root, selected) = match (src_root, selected) {
        (Some(r), Some(s)) => (r, s),
        (Some(r), None) => {
            let s = exclude(context::select(&r, &paths, None).map_err(&step_err)?);
            (r, s)
        }
        (None, _) => {
            let Some(FromRef::Stage(i)) = &copy.from else {
                unreachable!("only stage sources have no root yet")
            };
            let mut other = states[*i].take().expect("checked above");
            let r = cx.materialize(&mut other);
            states[*i] = Some(other);
            let r = r?;
            let s = exclude(context::select(&r, &paths, None).map_err(&step_err)?);
            (r, s)
        }
    };
    let rootfs = cx.materialize(st)?;
    let owner = match &copy.chown {
        None => None,
        Some(spec) => {
            let (u, g, _) = context::resolve_user(Some(&rootfs), spec).map_err(&step_err)?;
            Some((u, g))
        }
    };
    let attrs = CopyAttrs {
        owner,
        mode: attrs_mode,
    };
    let mut written = Vec::new();
    let mut added = context::Added {
        paths: Vec::new(),
        exact: true,
    };
    let mut plain = Vec::new();
    for s in selected {
        let kind = if extract && !s.is_dir && s.entries.len() == 1 {
            context::archive_kind(&s.entries[0].0)
                .map_err(|e| step_err(format!("cannot read {}: {e}", s.name)))?
        } else {
            None
        };
        match kind {
            // Docker extracts into `dest` as a directory, whatever its trailing slash.
            Some(kind) => {
                added.exact = false;
                written.extend(context::extract_into(
                    &rootfs,
                    &s.entries[0].0,
                    kind,
                    &dest,
                    attrs,
                )?)
            }
            None => plain.push(s),
        }
    }
    if copy.parents {
        // Each source keeps its directories (below the root, or below a `/./` pivot).
        let pivots: Vec<String> = paths
            .iter()
            .filter_map(|p| p.split_once("/./").map(|(a, _)| context::clean_rel(a)))
            .collect();
        let base = format!("{}/", dest.trim_end_matches('/'));
        for s in plain {
            let rel = s.entries[0]
                .0
                .strip_prefix(&src_root)
                .map(|r| r.to_string_lossy().to_string())
                .unwrap_or_else(|_| s.name.clone());
            let rel = pivots
                .iter()
                .find_map(|p| rel.strip_prefix(&format!("{p}/")))
                .map(str::to_owned)
                .unwrap_or(rel);
            let keep = if s.is_dir {
                rel.as_str()
            } else {
                rel.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
            };
            let to = if keep.is_empty() {
                base.clone()
            } else {
                format!("{base}{keep}/")
            };
            written.extend(context::copy_into(
                &rootfs,
                std::slice::from_ref(&s),
                &to,
                attrs,
                &mut added,
            )?);
        }
    } else if !plain.is_empty() {
        written.extend(context::copy_into(
            &rootfs, &plain, &dest, attrs, &mut added,
        )?);
    }
    for h in &heredocs {
        if dest.ends_with('/') {
            return Err(BuildError::Unsupported {
                location: loc.clone(),
                what: format!("{kw} of a heredoc into a directory"),
                hint: "name the destination file".into(),
            });
        }
        added.exact = false;
        written.extend(context::write_file(&rootfs, &dest, h, attrs)?);
    }
    let plan = LayerPlan {
        paths: written,
        ..Default::default()
    };
    let layer = write_layer(
        &cx.opts.store,
        &rootfs,
        &plan,
        cx.mtime,
        cx.opts.compression,
    )?;
    let rec = CacheRecord { layer };
    cx.opts.store.cache_put(&key, &rec)?;
    let added = added.exact.then_some(added.paths);
    apply_record(&cx.opts.store, st, &key, rec, shown, false, added)?;
    Ok(())
}

/// One platform's image, written to the store but not yet tagged, exported or pushed.
struct Assembled {
    platform: Platform,
    manifest_desc: Descriptor,
    manifest_bytes: Vec<u8>,
    config_bytes: Vec<u8>,
    config_digest: Digest,
    layers: Vec<Descriptor>,
    steps: usize,
    hits: usize,
    layer_sources: BTreeMap<Digest, ImageRef>,
    emulation: String,
}

fn assemble(cx: &Ctx<'_>, st: StageState) -> Result<Assembled, BuildError> {
    let store = &cx.opts.store;
    let mut config = st.config;
    config.created = Some(cx.created.clone());
    let config_bytes = serde_json::to_vec(&config).expect("config serialises");
    let config_digest = store.write_blob(&config_bytes)?;
    let layers: Vec<Descriptor> = st
        .layers
        .into_iter()
        .map(|mut l| {
            l.media_type = match l.media_type.as_str() {
                super::image::DOCKER_LAYER_GZIP => media::OCI_LAYER_GZIP.into(),
                "application/vnd.docker.image.rootfs.diff.tar" => {
                    super::image::OCI_LAYER_TAR.into()
                }
                other => other.into(),
            };
            l.annotations.clear();
            l
        })
        .collect();
    let manifest = Manifest {
        schema_version: 2,
        media_type: media::OCI_MANIFEST.into(),
        config: Descriptor {
            media_type: media::OCI_CONFIG.into(),
            digest: config_digest.clone(),
            size: config_bytes.len() as u64,
            platform: None,
            annotations: Default::default(),
        },
        layers: layers.clone(),
    };
    let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest serialises");
    let manifest_digest = store.write_blob(&manifest_bytes)?;
    let manifest_desc = Descriptor {
        media_type: media::OCI_MANIFEST.into(),
        digest: manifest_digest,
        size: manifest_bytes.len() as u64,
        platform: None,
        annotations: Default::default(),
    };
    let emulation = match cx.emulation.get(&cx.platform.architecture) {
        None => "none".to_string(),
        Some(Emulation::Native) => "native".into(),
        Some(Emulation::Binfmt { handler, .. }) => format!("binfmt:{handler}"),
        Some(Emulation::Explicit { qemu, .. }) => format!("qemu:{}", qemu.display()),
    };
    Ok(Assembled {
        platform: cx.platform.clone(),
        manifest_desc,
        manifest_bytes,
        config_bytes,
        config_digest,
        layers,
        steps: cx.steps,
        hits: cx.hits,
        layer_sources: cx.layer_sources.clone(),
        emulation,
    })
}

/// Tags, exports and pushes what the platforms' builds assembled: the one manifest, or an
/// OCI image index over all of them (`multi`).
async fn publish(
    opts: &BuildOptions,
    request: &BuildRequest,
    images: Vec<Assembled>,
    multi: bool,
    sink: &dyn EventSink,
) -> Result<BuiltImage, BuildError> {
    let say = |message: String| {
        sink.emit(Event::Message {
            step: "build".into(),
            level: Level::Info,
            message,
        })
    };
    let store = &opts.store;
    let index = multi.then(|| Index {
        schema_version: 2,
        media_type: media::OCI_INDEX.into(),
        manifests: images
            .iter()
            .map(|i| Descriptor {
                platform: Some(IndexPlatform {
                    architecture: i.platform.architecture.clone(),
                    os: i.platform.os.clone(),
                    variant: i.platform.variant.clone(),
                }),
                ..i.manifest_desc.clone()
            })
            .collect(),
    });
    let (top, top_bytes) = match &index {
        None => (
            images[0].manifest_desc.clone(),
            images[0].manifest_bytes.clone(),
        ),
        Some(index) => {
            let bytes = serde_json::to_vec(index).expect("index serialises");
            let digest = store.write_blob(&bytes)?;
            (
                Descriptor {
                    media_type: media::OCI_INDEX.into(),
                    digest,
                    size: bytes.len() as u64,
                    platform: None,
                    annotations: Default::default(),
                },
                bytes,
            )
        }
    };
    for t in &request.tags {
        store.tag(&t.to_string(), &top)?;
    }
    let mut size = if multi { top.size } else { 0 };
    for i in &images {
        size += i.manifest_desc.size
            + i.config_bytes.len() as u64
            + i.layers.iter().map(|l| l.size).sum::<u64>();
    }
    if let Some(dir) = &request.oci_dest {
        let name = request
            .tags
            .first()
            .and_then(|t| t.tag().map(str::to_owned))
            .unwrap_or_else(|| "latest".into());
        let mut blobs = vec![top.digest.clone()];
        for i in &images {
            blobs.push(i.manifest_desc.digest.clone());
            blobs.push(i.config_digest.clone());
            blobs.extend(i.layers.iter().map(|l| l.digest.clone()));
        }
        write_oci_layout(store, dir, &top, &blobs, &name)?;
        say(format!("wrote OCI layout {} ({name})", dir.display()));
    }
    let mut pushed = Vec::new();
    let (mut layers_uploaded, mut layers_mounted) = (0, 0);
    if request.push {
        for t in &request.tags {
            let started = Instant::now();
            let (mut uploaded, mut mounted, mut total) = (0, 0, 0);
            for i in &images {
                for l in &i.layers {
                    total += 1;
                    match opts
                        .registry
                        .push_blob_file_from(
                            t,
                            &l.digest,
                            &store.blob_path(&l.digest),
                            i.layer_sources.get(&l.digest),
                        )
                        .await?
                    {
                        BlobPush::Uploaded => uploaded += 1,
                        BlobPush::Mounted => mounted += 1,
                        BlobPush::Present => {}
                    }
                }
                opts.registry.push_blob(t, i.config_bytes.clone()).await?;
                if multi {
                    // An index may only name manifests the repository has.
                    opts.registry
                        .push_manifest(
                            &t.pinned(i.manifest_desc.digest.clone()),
                            i.manifest_bytes.clone(),
                            media::OCI_MANIFEST,
                        )
                        .await?;
                }
            }
            opts.registry
                .push_manifest(t, top_bytes.clone(), &top.media_type)
                .await?;
            say(format!(
                "pushed {t} ({uploaded} of {total} layers uploaded, {mounted} mounted, {} ms)",
                started.elapsed().as_millis()
            ));
            pushed.push(t.pinned(top.digest.clone()));
            layers_uploaded += uploaded;
            layers_mounted += mounted;
        }
    }
    let platforms = images
        .iter()
        .map(|i| PlatformImage {
            platform: i.platform.to_string(),
            manifest_digest: i.manifest_desc.digest.clone(),
            config_digest: i.config_digest.clone(),
            layers: i.layers.len(),
            emulation: i.emulation.clone(),
        })
        .collect();
    let steps = images.iter().map(|i| i.steps).sum();
    let hits = images.iter().map(|i| i.hits).sum();
    let first = images.into_iter().next().expect("at least one platform");
    Ok(BuiltImage {
        manifest_digest: top.digest,
        media_type: top.media_type,
        config_digest: first.config_digest,
        layers: first.layers,
        size,
        platforms,
        steps,
        cache_hits: hits,
        pushed,
        layers_uploaded,
        layers_mounted,
    })
}

/// Writes an OCI image layout at `dir` holding `blobs` (hard-linked from the store when
/// possible), with `top` (a manifest or an index) named `name` in its `index.json`.
fn write_oci_layout(
    store: &Store,
    dir: &Path,
    top: &Descriptor,
    blobs: &[Digest],
    name: &str,
) -> Result<(), BuildError> {
    let out = Store::open(dir)?;
    for d in blobs {
        let dst = out.blob_path(d);
        if dst.exists() {
            continue;
        }
        let src = store.blob_path(d);
        if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst).map_err(io_err(&dst))?;
        }
    }
    let mut index: Index = std::fs::read(dir.join("index.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    index.manifests.retain(|d| {
        d.annotations.get("org.opencontainers.image.ref.name") != Some(&name.to_string())
    });
    let mut d = top.clone();
    d.annotations
        .insert("org.opencontainers.image.ref.name".into(), name.into());
    index.manifests.push(d);
    super::store::write_atomic(
        &dir.join("index.json"),
        &serde_json::to_vec_pretty(&index).expect("index"),
    )?;
    // berth's own scratch directories are not part of an exported layout.
    let _ = std::fs::remove_dir_all(dir.join("berth"));
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
