//! `berth build`: build an image from a Dockerfile without a Docker daemon.
//!
//! Flags in two stages: [`BuildCmdArgs`] is what clap parses; [`run`] validates them into a
//! [`BuildRequest`] and [`BuildOptions`] and drives `berth_build::exec`. `-o/--output` is the
//! output *format*, as everywhere in berth; the OCI layout destination is `--dest oci:DIR`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use berth_build::exec::{BuildRequest, build};
use berth_types::{Event, EventSink, ImageRef, Level};
use clap::Args;

use crate::cli::OutputFormat;

/// Raw flags of `berth build`.
#[derive(Args, Debug)]
pub struct BuildCmdArgs {
    /// The build context directory.
    #[arg(default_value = ".")]
    pub context: PathBuf,

    /// The Dockerfile (default: <context>/Dockerfile).
    #[arg(long, short = 'f')]
    pub file: Option<PathBuf>,

    /// Name of the result, e.g. registry.example.com/app:1.2 (repeatable).
    #[arg(long, short = 't')]
    pub tag: Vec<String>,

    /// Build this stage instead of the last one.
    #[arg(long)]
    pub target: Option<String>,

    /// Build argument NAME=value (repeatable).
    #[arg(long = "build-arg", value_name = "NAME=VALUE")]
    pub build_arg: Vec<String>,

    /// Push the image to every --tag.
    #[arg(long)]
    pub push: bool,

    /// With several --platform: build at most this many at once (default: the number of
    /// cores). One platform's failure stops the others; nothing is pushed.
    #[arg(long, short = 'j', env = "BERTH_JOBS")]
    pub jobs: Option<std::num::NonZeroUsize>,

    /// Also write the image as an OCI image layout: `oci:DIR`.
    #[arg(long, value_name = "oci:DIR")]
    pub dest: Option<String>,

    /// Ignore the build cache.
    #[arg(long)]
    pub no_cache: bool,

    /// Store, runtime and registry access.
    #[command(flatten)]
    pub builder: crate::builder_flags::BuilderFlags,

    /// Timestamp of every file and of the image (reproducible builds).
    #[arg(long, env = "SOURCE_DATE_EPOCH")]
    pub source_date_epoch: Option<i64>,

    /// Output format of the result.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// Progress on stderr: one line per step, RUN output indented.
struct Terminal;

impl EventSink for Terminal {
    fn emit(&self, event: Event) {
        let mut err = std::io::stderr().lock();
        let _ = match event {
            Event::Message {
                step,
                level,
                message,
            } if step == berth_types::Step::Run => {
                let _ = level;
                writeln!(err, "    {message}")
            }
            Event::Message {
                level: Level::Error,
                message,
                ..
            } => {
                writeln!(err, "error: {message}")
            }
            Event::Message { message, .. } => writeln!(err, "{message}"),
            Event::StepFinished {
                ok: true,
                millis,
                message,
                ..
            } => {
                writeln!(err, "{message} in {:.1}s", millis as f64 / 1000.0)
            }
            _ => Ok(()),
        };
    }
}

/// Runs `berth build`.
pub async fn run(args: BuildCmdArgs) -> Result<ExitCode, String> {
    run_inner(args).await.map_err(|e| e.to_string())
}

async fn run_inner(args: BuildCmdArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let tags = args
        .tag
        .iter()
        .map(|t| t.parse::<ImageRef>().map_err(|e| format!("--tag {t}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    if args.push && tags.is_empty() {
        return Err("--push needs at least one --tag to push to".into());
    }
    let oci_dest = match &args.dest {
        None => None,
        Some(d) => Some(PathBuf::from(d.strip_prefix("oci:").ok_or_else(|| {
            format!("--dest {d}: write oci:DIR (the only destination berth writes)")
        })?)),
    };
    let mut build_args = BTreeMap::new();
    for a in &args.build_arg {
        match a.split_once('=') {
            Some((k, v)) => build_args.insert(k.to_string(), v.to_string()),
            // Docker takes a bare NAME from the environment.
            None => build_args.insert(a.clone(), std::env::var(a).unwrap_or_default()),
        };
    }
    let mut builder = args.builder.clone();
    builder.platform_jobs = args.jobs;
    let opts = builder
        .options(
            Vec::new(),
            Vec::new(),
            args.source_date_epoch,
            args.no_cache,
            None,
        )
        .await?;
    let request = BuildRequest {
        context: args.context.clone(),
        dockerfile: args.file.clone(),
        target: args.target.clone(),
        build_args,
        // One --platform or several: BuildOptions::platforms decides.
        platform: None,
        tags,
        push: args.push,
        oci_dest,
    };
    let built = build(&opts, &request, &Terminal).await?;
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&built)?),
        OutputFormat::Table => {
            if built.platforms.len() > 1 {
                println!("index     {}", built.manifest_digest);
                for p in &built.platforms {
                    println!(
                        "  {:<14}{} ({} layers, RUN {})",
                        p.platform, p.manifest_digest, p.layers, p.emulation
                    );
                }
            } else {
                println!("manifest  {}", built.manifest_digest);
                println!("config    {}", built.config_digest);
                println!("layers    {}", built.layers.len());
            }
            println!("size      {} bytes", built.size);
            println!("steps     {} ({} cached)", built.steps, built.cache_hits);
            for p in &built.pushed {
                println!("pushed    {p}");
            }
            if !built.pushed.is_empty() {
                println!(
                    "uploaded  {} layers ({} mounted from the base repository)",
                    built.layers_uploaded, built.layers_mounted
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
