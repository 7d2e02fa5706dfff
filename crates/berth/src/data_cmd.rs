//! `berth data`: copy an environment's data into another.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use berth_cluster::{Cluster, ConnectOptions};
use berth_data::{CloneRequest, PvcSelector};
use clap::{Args, Subcommand};

use crate::cli::OutputFormat;
use crate::deploy_cmd::{Printer, parse_duration};

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
