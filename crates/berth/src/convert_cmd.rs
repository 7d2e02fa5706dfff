//! `berth render --convert [--write]` and the deprecated-API warnings of `berth render`: the
//! table and the conversions live in `berth_render::{apis, convert}`; this is their output.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use berth_render::ObjectSet;
use berth_render::convert::Report;

use crate::cli::{ClusterArgs, ConvertFlags};

/// The Kubernetes version to warn against: `--kube-version`, else the cluster's (asked only
/// when some object uses a listed API, with a 3 s deadline), else unknown.
pub async fn kube_version(
    set: &ObjectSet,
    cluster: &ClusterArgs,
    flags: &ConvertFlags,
) -> Option<String> {
    if let Some(v) = &flags.kube_version {
        return Some(v.clone());
    }
    let listed = set
        .iter()
        .any(|o| berth_render::apis::lookup(o.api_version(), &o.key().kind).is_some());
    if !listed {
        return None;
    }
    let ask = async {
        let c = berth_cluster::Cluster::connect(&berth_cluster::ConnectOptions {
            kubeconfig: cluster.kubeconfig.clone(),
            context: cluster.context.clone(),
        })
        .await
        .ok()?;
        c.server_version().await.ok()
    };
    tokio::time::timeout(Duration::from_secs(3), ask)
        .await
        .ok()
        .flatten()
}

/// One `warning:` line on stderr per object of a deprecated or removed API.
pub fn warn(set: &ObjectSet, version: Option<&str>) {
    for o in set.sorted() {
        if let Some(w) = berth_render::apis::warning(o.api_version(), &o.key().kind, version) {
            eprintln!(
                "warning: {}/{} ({}): {w}",
                o.key().kind,
                o.key().name,
                o.source()
            );
        }
    }
}

fn print_reports(reports: &[Report]) -> bool {
    for r in reports {
        if r.converted {
            eprintln!("converted: {r}");
        } else {
            eprintln!("warning: {r}");
        }
    }
    reports.iter().all(|r| !r.needs_attention())
}

/// `--convert`: the converted set, and whether nothing is left to do by hand.
pub fn convert(set: &ObjectSet) -> Result<(ObjectSet, bool), String> {
    let (converted, reports) =
        berth_render::convert::convert_set(set).map_err(|e| e.to_string())?;
    let ok = print_reports(&reports);
    if reports.is_empty() {
        eprintln!("--convert: no object uses a removed or deprecated API");
    }
    Ok((converted, ok))
}

/// `--convert --write`: rewrites the plain manifest files the objects came from.
pub fn write(set: &ObjectSet, version: Option<&str>) -> Result<ExitCode, String> {
    let mut files: Vec<&str> = Vec::new();
    let mut ok = true;
    for o in set.sorted() {
        let listed = berth_render::apis::lookup(o.api_version(), &o.key().kind);
        let origin = o.source().origin.as_str();
        // Templates read `<file> (rendered)`, kustomize and helm output their command line:
        // only an origin that is a file was read as written. A symbolic link is not followed:
        // writing through it would change a file that may not be the user's to change.
        let plain = std::fs::symlink_metadata(Path::new(origin)).is_ok_and(|m| m.is_file());
        if plain {
            if !files.contains(&origin) {
                files.push(origin);
            }
        } else if let Some(change) = listed {
            ok = false;
            eprintln!(
                "warning: {}/{} ({}): not rewritten — it comes from a template, Kustomize or \
                 Helm output, or through a symbolic link; change its source: {}",
                o.key().kind,
                o.key().name,
                o.source(),
                berth_render::apis::warning(o.api_version(), &o.key().kind, version)
                    .unwrap_or_else(|| change.advice())
            );
        }
    }
    let mut rewritten = 0;
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
        let (new, reports) =
            berth_render::convert::rewrite_file(&text, file, file.ends_with(".json"))
                .map_err(|e| e.to_string())?;
        ok &= print_reports(&reports);
        if let Some(new) = new {
            crate::atomic_write::replace(std::path::Path::new(file), new.as_bytes())
                .map_err(|e| format!("cannot write {file} (it is unchanged): {e}"))?;
            eprintln!("rewrote {file}");
            rewritten += 1;
        }
    }
    eprintln!("--convert --write: {rewritten} file(s) rewritten");
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
