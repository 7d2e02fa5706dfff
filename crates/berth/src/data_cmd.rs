//! `berth data`: copy an environment's data into another.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use berth_cluster::{Cluster, ConnectOptions};
use berth_data::copy::job::{CopyJob, SecretKeyRef, run_copy_job};
use berth_data::copy::{CopyOutcome, CopyRequest, DbUrl};
use berth_data::{CloneRequest, PvcSelector};
use berth_types::{ColumnRef, MaskRule};
use clap::{Args, Subcommand};

use crate::cli::OutputFormat;
use crate::cli::parse_duration;
use crate::output::Printer;

/// `berth data`.
#[derive(Args, Debug)]
pub struct DataArgs {
    #[command(subcommand)]
    pub command: DataCommand,
}

/// The `berth data` subcommands.
#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Copy PersistentVolumeClaims from one namespace into another through CSI snapshots:
    /// snapshot, wait until ready, restore PVCs of the same name in the target namespace.
    Clone(CloneArgs),
    /// Copy one database into another with masking: dump (pg_dump, mariadb-dump), rewrite
    /// the masked columns with deterministic fakes, restore (psql in one transaction, mariadb),
    /// streamed. The target's tables of the same names are replaced; a rule naming no column
    /// fails the copy before anything is committed. The masking key is read from
    /// $BERTH_MASK_KEY.
    Copy(Box<CopyArgs>),
}

/// `berth data copy`.
#[derive(Args, Debug)]
pub struct CopyArgs {
    /// Source database URL (postgres://user:password@host:port/db or mysql://...). Prefer
    /// --from-url-env:
    /// a URL here is visible to other users of this machine.
    #[arg(long, value_name = "URL", required_unless_present_any = ["from_url_env", "job_image", "env"])]
    pub from_url: Option<String>,

    /// Read the source URL from this environment variable.
    #[arg(long, value_name = "VAR", conflicts_with = "from_url")]
    pub from_url_env: Option<String>,

    /// Target database URL.
    #[arg(long, value_name = "URL", required_unless_present_any = ["to_url_env", "job_image", "env"])]
    pub to_url: Option<String>,

    /// Read the target URL from this environment variable.
    #[arg(long, value_name = "VAR", conflicts_with = "to_url")]
    pub to_url_env: Option<String>,

    /// A masking rule TABLE.COLUMN=RULE (or SCHEMA.TABLE.COLUMN=RULE); RULE is email, name,
    /// phone, digits, text, fixed:VALUE, null or keep. Repeatable.
    #[arg(long, value_name = "COLUMN=RULE")]
    pub mask: Vec<String>,

    /// Take the rules (and URL variables) from this berth.yaml's environment given by --env.
    #[arg(long, value_name = "FILE", requires = "env")]
    pub mask_config: Option<std::path::PathBuf>,

    /// The environment of --mask-config whose `data.copy` to use.
    #[arg(long, value_name = "NAME")]
    pub env: Option<String>,

    /// Refuse columns that look personal (email, phone, name, address...) without a rule.
    #[arg(long)]
    pub strict: bool,

    /// Run the copy as a Kubernetes Job in this image (it needs berth and the client tools)
    /// instead of here; the URLs and key come from Secrets (--from-secret, --to-secret,
    /// --key-secret).
    #[arg(long, value_name = "IMAGE")]
    pub job_image: Option<String>,

    /// Namespace of the Job and its Secrets (default: the kubeconfig context's).
    #[arg(long, short = 'n', requires = "job_image")]
    pub namespace: Option<String>,

    /// Secret key holding the source URL, as SECRET/KEY.
    #[arg(long, value_name = "SECRET/KEY", requires = "job_image")]
    pub from_secret: Option<berth_data::copy::job::SecretKeyRef>,

    /// Secret key holding the target URL, as SECRET/KEY.
    #[arg(long, value_name = "SECRET/KEY", requires = "job_image")]
    pub to_secret: Option<berth_data::copy::job::SecretKeyRef>,

    /// Secret key holding the masking key, as SECRET/KEY.
    #[arg(long, value_name = "SECRET/KEY", requires = "job_image")]
    pub key_secret: Option<berth_data::copy::job::SecretKeyRef>,

    /// Print the Job (JSON) instead of creating it.
    #[arg(long, requires = "job_image")]
    pub render: bool,

    /// Deadline for the Job.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub timeout: Duration,

    /// kubeconfig file (Job form).
    #[arg(long)]
    pub kubeconfig: Option<std::path::PathBuf>,

    /// kubeconfig context (Job form).
    #[arg(long, env = "BERTH_CONTEXT")]
    pub context: Option<String>,

    /// Output: progress on stderr and a summary (table), or JSON events then a result (json).
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// `berth data clone`.
#[derive(Args, Debug)]
pub struct CloneArgs {
    /// Source namespace (e.g. prod).
    #[arg(long)]
    pub from: String,

    /// Target namespace (e.g. staging); created when missing. Its PVCs of the same names must
    /// not exist yet.
    #[arg(long)]
    pub to: String,

    /// A PVC to clone. Repeatable.
    #[arg(long, value_name = "NAME", required_unless_present = "selector")]
    pub pvc: Vec<String>,

    /// Clone the PVCs matching this label selector instead (e.g. app=db).
    #[arg(long, short = 'l', conflicts_with = "pvc")]
    pub selector: Option<String>,

    /// VolumeSnapshotClass to use (default: the one whose driver is the PVC's provisioner).
    #[arg(long)]
    pub snapshot_class: Option<String>,

    /// Keep only the newest N berth snapshots per source PVC; older ones are deleted.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep: Option<u32>,

    /// Deadline for the whole clone (e.g. 10m).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,

    /// kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<std::path::PathBuf>,

    /// kubeconfig context (default: the current context).
    #[arg(long, env = "BERTH_CONTEXT")]
    pub context: Option<String>,

    /// Output: progress on stderr and a summary (table), or JSON events then a result (json).
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// Runs `berth data ...`.
pub async fn run(args: DataArgs) -> Result<ExitCode, String> {
    match args.command {
        DataCommand::Clone(a) => clone(a).await,
        DataCommand::Copy(a) => copy(*a).await,
    }
}

async fn clone(a: CloneArgs) -> Result<ExitCode, String> {
    let cluster = Cluster::connect(&ConnectOptions {
        kubeconfig: a.kubeconfig.clone(),
        context: a.context.clone(),
    })
    .await
    .map_err(|e| e.to_string())?;
    let json = a.output == OutputFormat::Json;
    let pvcs = match a.selector {
        Some(s) => PvcSelector::Labels(s),
        None => PvcSelector::Names(a.pvc),
    };
    let outcome = berth_data::clone(
        &cluster,
        CloneRequest {
            from_namespace: a.from.clone(),
            to_namespace: a.to.clone(),
            pvcs,
            snapshot_class: a.snapshot_class,
            keep: a.keep.map(|k| k as usize),
            timeout: a.timeout,
            pre_snapshot_hook: None,
            run_id: None,
            replace: false,
            sink: Arc::new(Printer { json }),
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    if json {
        let volumes: Vec<_> = outcome
            .volumes
            .iter()
            .map(|v| {
                serde_json::json!({"pvc": v.pvc, "snapshot": v.snapshot,
                    "snapshot_class": v.snapshot_class, "content": v.content, "size": v.size})
            })
            .collect();
        let doc = serde_json::json!({"ok": true, "run_id": outcome.run_id, "from": a.from,
            "to": a.to, "volumes": volumes, "deleted": outcome.deleted});
        println!("{doc}");
    } else {
        for v in &outcome.volumes {
            println!(
                "{}/{} -> {}/{}  {}  (snapshot {}, class {})",
                a.from, v.pvc, a.to, v.pvc, v.size, v.snapshot, v.snapshot_class
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses `--mask` values.
fn mask_rules(masks: &[String]) -> Result<Vec<(ColumnRef, MaskRule)>, String> {
    masks
        .iter()
        .map(|m| {
            let (c, r) = m
                .split_once('=')
                .ok_or_else(|| format!("--mask `{m}`: expected TABLE.COLUMN=RULE"))?;
            let col = c
                .parse::<ColumnRef>()
                .map_err(|e| format!("--mask `{m}`: {e}"))?;
            let rule = r
                .parse::<MaskRule>()
                .map_err(|e| format!("--mask `{m}`: {e}"))?;
            Ok((col, rule))
        })
        .collect()
}

fn url_arg(url: Option<&str>, var: Option<&str>, which: &str) -> Result<DbUrl, String> {
    let text = match (url, var) {
        (Some(u), _) => u.to_string(),
        (None, Some(v)) => std::env::var(v)
            .map_err(|_| format!("the {which} URL variable {v} is not set (or not UTF-8)"))?,
        (None, None) => {
            return Err(format!(
                "give the {which} database: --{which}-url or --{which}-url-env"
            ));
        }
    };
    DbUrl::parse(&text).map_err(|e| e.to_string())
}

async fn copy(a: CopyArgs) -> Result<ExitCode, String> {
    let json = a.output == OutputFormat::Json;
    let mut rules = mask_rules(&a.mask)?;
    let mut strict = a.strict;
    let mut from_env = a.from_url_env.clone();
    let mut to_env = a.to_url_env.clone();
    if let Some(file) = &a.mask_config {
        let env = a.env.as_deref().expect("clap requires --env");
        let copy = berth_pipeline::data_step::copy_settings(file, env)?;
        rules.extend(copy.mask.iter().map(|m| (m.column.clone(), m.rule.clone())));
        strict |= copy.strict;
        from_env = from_env.or(Some(copy.source_url_env.clone()));
        to_env = to_env.or(Some(copy.target_url_env.clone()));
    }
    if let Some(image) = &a.job_image {
        return copy_job(&a, image, rules, strict).await;
    }
    let source = url_arg(a.from_url.as_deref(), from_env.as_deref(), "from")?;
    let target = url_arg(a.to_url.as_deref(), to_env.as_deref(), "to")?;
    let key = berth_data::copy::key_from_env().map_err(|e| e.to_string())?;
    let outcome = berth_data::copy::copy(CopyRequest {
        source: source.clone(),
        target: target.clone(),
        rules,
        strict,
        key,
        sink: Arc::new(Printer { json }),
    })
    .await
    .map_err(|e| e.to_string())?;
    print_copy(&outcome, &source, &target, json);
    Ok(ExitCode::SUCCESS)
}

/// Prints a copy's summary (shared with `berth run`'s data step).
pub fn print_copy(outcome: &CopyOutcome, source: &DbUrl, target: &DbUrl, json: bool) {
    let s = &outcome.stats;
    let secs = (outcome.millis as f64 / 1000.0).max(0.001);
    if json {
        let tables: serde_json::Map<String, serde_json::Value> = s
            .tables
            .iter()
            .map(|(t, v)| {
                (
                    t.clone(),
                    serde_json::json!({"rows": v.rows, "masked": v.masked}),
                )
            })
            .collect();
        let doc = serde_json::json!({"ok": true, "from": source.original.to_string(),
            "to": target.original.to_string(), "rows": s.rows, "masked_cells": s.masked_cells,
            "bytes": s.bytes_out, "millis": outcome.millis, "tables": tables});
        println!("{doc}");
    } else {
        for (t, v) in &s.tables {
            if v.masked.is_empty() {
                println!("{t:<40} {:>10} rows", v.rows);
            } else {
                println!(
                    "{t:<40} {:>10} rows  masked {}",
                    v.rows,
                    v.masked.join(", ")
                );
            }
        }
        println!(
            "copied {} rows ({} masked cells, {:.1} MB) in {secs:.1}s: {:.0} rows/s, {:.1} MB/s",
            s.rows,
            s.masked_cells,
            s.bytes_out as f64 / 1e6,
            s.rows as f64 / secs,
            s.bytes_out as f64 / 1e6 / secs
        );
    }
}

async fn copy_job(
    a: &CopyArgs,
    image: &str,
    rules: Vec<(ColumnRef, MaskRule)>,
    strict: bool,
) -> Result<ExitCode, String> {
    let need = |v: &Option<SecretKeyRef>, flag: &str| {
        v.clone().ok_or_else(|| {
            format!("the Job form needs {flag} SECRET/KEY (credentials only by reference)")
        })
    };
    let run_id = berth_data::new_run_id();
    let options = ConnectOptions {
        kubeconfig: a.kubeconfig.clone(),
        context: a.context.clone(),
    };
    let (cluster, namespace) = match &a.namespace {
        Some(ns) if a.render => (None, ns.clone()),
        _ => {
            let c = Cluster::connect(&options)
                .await
                .map_err(|e| e.to_string())?;
            let ns = a
                .namespace
                .clone()
                .unwrap_or_else(|| c.default_namespace().to_string());
            (Some(c), ns)
        }
    };
    let spec = CopyJob {
        namespace,
        name: format!("berth-copy-{run_id}"),
        image: image.into(),
        source_url: need(&a.from_secret, "--from-secret")?,
        target_url: need(&a.to_secret, "--to-secret")?,
        mask_key: need(&a.key_secret, "--key-secret")?,
        rules,
        strict,
        run_id,
        pod_annotations: Default::default(),
    };
    if a.render {
        let job = berth_data::copy::job::copy_job(&spec, a.timeout);
        println!("{}", serde_json::to_string_pretty(&job).expect("JSON"));
        return Ok(ExitCode::SUCCESS);
    }
    let cluster = cluster.expect("connected above");
    let json = a.output == OutputFormat::Json;
    let printer = Printer { json };
    let outcome = run_copy_job(&cluster, &spec, a.timeout, &printer)
        .await
        .map_err(|e| e.to_string())?;
    if json {
        println!(
            "{}",
            serde_json::json!({"ok": true, "job": outcome.job, "millis": outcome.millis})
        );
    } else {
        println!(
            "copy Job {} complete in {:.1}s",
            outcome.job,
            outcome.millis as f64 / 1000.0
        );
    }
    Ok(ExitCode::SUCCESS)
}
