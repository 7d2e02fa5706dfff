//! `berth dev`: the inner loop. Run once, then on every saved change (debounced) run again
//! into the developer's namespace: only changed services' build steps are redone (the build
//! cache keeps the rest), the deploy applies only what differs.
//!
//! After each run the logs of the rebuilt services' new pods stream to stdout, prefixed by
//! `[pod/container]` ([`crate::dev_logs`]; `--no-logs` turns it off).
//!
//! Ctrl-C never interrupts a deploy half-way: the loop finishes the run in progress (which
//! either lands or rolls back), then stops, so the namespace is left consistent.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use notify::{RecursiveMode, Watcher};

use crate::run_cmd::RunArgs;

/// `berth dev`.
#[derive(Args, Debug)]
pub struct DevArgs {
    /// Quiet time after the last change before a run starts.
    #[arg(long, default_value = "150ms", value_parser = parse_millis)]
    pub debounce: Duration,

    /// Do not stream the logs of the rebuilt services' new pods.
    #[arg(long)]
    pub no_logs: bool,

    /// The project, environment and namespace (default namespace: `dev-$USER`).
    #[command(flatten)]
    pub run: RunArgs,
}

fn parse_millis(s: &str) -> Result<Duration, String> {
    if let Some(ms) = s.strip_suffix("ms") {
        return ms
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|e| format!("`{s}`: {e}"));
    }
    crate::cli::parse_duration(s)
}

/// Whether a changed path should trigger a run: not git's or build output's own files, nor
/// the files berth dev's own output goes to (`berth dev > dev.log` inside the project would
/// otherwise start a run for every line it writes, for good).
fn relevant(path: &Path, own_output: &[PathBuf]) -> bool {
    !own_output.iter().any(|o| o == path)
        && !path.components().any(|c| {
            matches!(
                c.as_os_str().to_str(),
                Some(".git" | "target" | "node_modules" | ".berth")
            )
        })
        && !path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with('~') || n.ends_with(".swp") || n.starts_with(".#"))
}

/// The regular files stdout and stderr are redirected to, if any.
fn own_output_files() -> Vec<PathBuf> {
    ["/proc/self/fd/1", "/proc/self/fd/2"]
        .iter()
        .filter_map(|fd| std::fs::canonicalize(fd).ok())
        .filter(|p| p.is_file())
        .collect()
}

/// Runs the loop until Ctrl-C.
pub async fn dev(mut args: DevArgs) -> Result<ExitCode, String> {
    if args.run.namespace.is_none() {
        let user = std::env::var("USER").unwrap_or_else(|_| "me".into());
        args.run.namespace = Some(format!("dev-{user}"));
    }
    let config = std::fs::canonicalize(&args.run.config)
        .map_err(|e| format!("{}: {e}", args.run.config.display()))?;
    let root = config
        .parent()
        .expect("a file has a parent directory")
        .to_path_buf();

    let own_output = own_output_files();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev
            && !matches!(ev.kind, notify::EventKind::Access(_))
            && ev.paths.iter().any(|p| relevant(p, &own_output))
        {
            let _ = tx.send(());
        }
    })
    .map_err(|e| format!("cannot watch files: {e}"))?;
    watcher
        .watch(&root, RecursiveMode::Recursive)
        .map_err(|e| format!("cannot watch {}: {e}", root.display()))?;
    eprintln!(
        "watching {} — every saved change is built and deployed to namespace `{}`; Ctrl-C stops",
        root.display(),
        args.run.namespace.as_deref().unwrap_or_default()
    );

    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    // Pod logs: one follower for the session, told after every run which images are new.
    let (targets, targets_rx) =
        tokio::sync::watch::channel(berth_pipeline::pod_logs::Targets::new());
    let mut targets_rx = Some(targets_rx);
    let mut logs: Option<tokio::task::JoinHandle<()>> = None;
    let mut followed = berth_pipeline::pod_logs::Targets::new();
    loop {
        let run = crate::run_cmd::run_for_dev(args.run.clone());
        // Finish the run in progress even on Ctrl-C: a deploy is never cut in half.
        let mut run = std::pin::pin!(run);
        let mut stop = false;
        let code = loop {
            tokio::select! {
                r = &mut run => break r,
                _ = &mut ctrl_c, if !stop => {
                    eprintln!("stopping after the run in progress…");
                    stop = true;
                }
            }
        };
        match code {
            Ok((_, Some(ran))) if !args.no_logs => {
                // A rebuilt service's previous image is no longer followed: its pods go.
                followed.retain(|_, service| !ran.built.contains_key(service));
                for (service, image) in &ran.built {
                    followed.insert(image.clone(), service.clone());
                }
                let _ = targets.send(followed.clone());
                if let Some(rx) = targets_rx.take() {
                    let (out, items) = tokio::sync::mpsc::unbounded_channel();
                    logs = Some(berth_pipeline::pod_logs::spawn(
                        ran.cluster.clone(),
                        ran.namespace.clone(),
                        ran.release.clone(),
                        rx,
                        out,
                    ));
                    tokio::spawn(crate::dev_logs::print(
                        items,
                        args.run.output == crate::cli::OutputFormat::Json,
                    ));
                }
            }
            Ok(_) => {}
            Err(e) => eprintln!("error: {e}"),
        }
        if stop {
            if let Some(logs) = logs {
                logs.abort();
            }
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("waiting for changes…");
        // A save that arrived during the run (or just after it printed its result) is not
        // dropped: it is waiting in the channel and starts the next run. Runs write nothing
        // under the watched tree that `relevant` lets through.
        tokio::select! {
            got = rx.recv() => if got.is_none() { return Ok(ExitCode::SUCCESS) },
            // Following logs only reads: stopping it leaves the namespace as the run left it.
            _ = &mut ctrl_c => {
                if let Some(logs) = logs {
                    logs.abort();
                }
                return Ok(ExitCode::SUCCESS);
            }
        }
        // Debounce: run once the files have been quiet for a moment.
        while let Ok(Some(())) = tokio::time::timeout(args.debounce, rx.recv()).await {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editor_and_git_files_do_not_trigger_runs() {
        let none: &[PathBuf] = &[];
        assert!(relevant(Path::new("/p/web/index.html"), none));
        assert!(!relevant(Path::new("/p/.git/index"), none));
        assert!(!relevant(Path::new("/p/web/.index.html.swp"), none));
        assert!(!relevant(Path::new("/p/web/index.html~"), none));
        assert!(!relevant(Path::new("/p/target/debug/x"), none));
    }

    #[test]
    fn the_file_berth_dev_writes_its_output_to_does_not_trigger_runs() {
        let log = [PathBuf::from("/p/dev.log")];
        assert!(!relevant(Path::new("/p/dev.log"), &log));
        assert!(relevant(Path::new("/p/web/index.html"), &log));
        assert!(relevant(Path::new("/p/dev.log.old"), &log));
    }
}
