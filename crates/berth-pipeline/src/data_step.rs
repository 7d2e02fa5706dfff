//! The `data` step of an environment in berth.yaml, run by the engine ([`crate::run`]) for
//! every run and promotion — from `berth run`, `berth dev`, `berth promote` and `berth serve`
//! alike — after the builds, under the release's lock held on into the deploy (no other deploy
//! of the environment runs while its data is replaced), so the release starts on fresh data: first the volume clone (CSI snapshots, replacing the claims an earlier
//! run restored, with snapshot retention by `keep`), then the masked logical copy. Database
//! URLs and the masking key come from the process environment (`source-url-env`,
//! `target-url-env`, `BERTH_MASK_KEY`).

use std::path::Path;
use std::sync::Arc;

use berth_cluster::Cluster;
use berth_config::{CopyStep, Environment};
use berth_data::copy::{CopyRequest, DbUrl};
use berth_data::{CloneRequest, PvcSelector};
use berth_types::{Event, EventSink, Level, Step};

/// The `data.copy` of environment `env` in the berth.yaml at `file` (for `--mask-config`).
pub fn copy_settings(file: &Path, env: &str) -> Result<CopyStep, String> {
    let config = berth_config::load(file).map_err(|e| e.to_string())?;
    let e = config
        .environments
        .iter()
        .find(|e| e.name == env)
        .ok_or_else(|| format!("{} has no environment `{env}`", file.display()))?;
    e.data.as_ref().and_then(|d| d.copy.clone()).ok_or_else(|| {
        format!(
            "environment `{env}` in {} has no `data.copy`",
            file.display()
        )
    })
}

fn env_url(var: &str, env: &str) -> Result<DbUrl, String> {
    let text = std::env::var(var).map_err(|_| {
        format!("the data step of environment `{env}` reads its database URL from ${var}, which is not set")
    })?;
    DbUrl::parse(&text).map_err(|e| e.to_string())
}

/// Runs the environment's data step into `namespace`; nothing when it has none. The error
/// names the environment and what failed.
pub async fn run(
    cluster: &Cluster,
    env: &Environment,
    namespace: &str,
    sink: Arc<dyn EventSink>,
) -> Result<(), String> {
    let Some(data) = &env.data else {
        return Ok(());
    };
    if let Some(c) = &data.clone {
        let pvcs = match &c.selector {
            Some(s) => PvcSelector::Labels(s.clone()),
            None => PvcSelector::Names(c.pvcs.clone()),
        };
        let out = berth_data::clone(
            cluster,
            CloneRequest {
                from_namespace: c.from_namespace.clone(),
                to_namespace: namespace.into(),
                pvcs,
                snapshot_class: c.snapshot_class.clone(),
                keep: c.keep.map(|k| k as usize),
                timeout: c.timeout,
                pre_snapshot_hook: None,
                run_id: None,
                replace: true,
                sink: sink.clone(),
            },
        )
        .await
        .map_err(|e| format!("data step of `{}`: {e}", env.name))?;
        let names: Vec<String> = out
            .volumes
            .iter()
            .map(|v| format!("{} ({})", v.pvc, v.snapshot))
            .collect();
        sink.emit(Event::Message {
            step: Step::DataClone.into(),
            level: Level::Info,
            message: format!(
                "data: cloned {} from {} ({}) into {namespace}: {}{}",
                names.len(),
                c.from,
                c.from_namespace,
                names.join(", "),
                if out.deleted.is_empty() {
                    String::new()
                } else {
                    format!("; retention deleted {}", out.deleted.join(", "))
                }
            ),
        });
    }
    if let Some(c) = &data.copy {
        let source = env_url(&c.source_url_env, &env.name)?;
        let target = env_url(&c.target_url_env, &env.name)?;
        let key = berth_data::copy::key_from_env().map_err(|e| e.to_string())?;
        let out = berth_data::copy::copy(CopyRequest {
            source: source.clone(),
            target: target.clone(),
            rules: c
                .mask
                .iter()
                .map(|m| (m.column.clone(), m.rule.clone()))
                .collect(),
            strict: c.strict,
            key,
            sink: sink.clone(),
        })
        .await
        .map_err(|e| format!("data step of `{}`: {e}", env.name))?;
        sink.emit(Event::Message {
            step: Step::DataCopy.into(),
            level: Level::Info,
            message: format!(
                "data: copied {} rows of {} tables from {} ({}) into {} ({} masked cells)",
                out.stats.rows,
                out.stats.tables.len(),
                c.from,
                source.original,
                target.original,
                out.stats.masked_cells
            ),
        });
    }
    Ok(())
}
