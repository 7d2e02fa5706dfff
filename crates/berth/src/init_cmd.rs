//! `berth init`: propose a berth.yaml for an existing repository and explain each choice.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

/// `berth init`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// The repository to read.
    #[arg(default_value = ".")]
    pub dir: PathBuf,

    /// Repository prefix for images the manifests do not name yet (default:
    /// $BERTH_REGISTRY/<folder name>).
    #[arg(long)]
    pub registry: Option<String>,

    /// Namespace of the `dev` environment (default: the folder's name).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,

    /// Replace an existing berth.yaml.
    #[arg(long)]
    pub force: bool,

    /// Print the proposal instead of writing it.
    #[arg(long)]
    pub print: bool,
}

/// Runs `berth init`.
pub fn init(args: InitArgs) -> Result<ExitCode, String> {
    let target = args.dir.join(berth_config::FILE_NAME);
    if target.exists() && !args.force && !args.print {
        return Err(format!(
            "{} exists; pass --force to replace it, or --print to see the proposal",
            target.display()
        ));
    }
    let folder = std::fs::canonicalize(&args.dir)
        .map_err(|e| format!("{}: {e}", args.dir.display()))?
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .to_lowercase()
                .replace(['_', '.', ' '], "-")
        })
        .unwrap_or_else(|| "app".into());
    let prefix = args.registry.clone().unwrap_or_else(|| {
        let host =
            std::env::var("BERTH_REGISTRY").unwrap_or_else(|_| "registry.example.com".into());
        format!("{host}/{folder}")
    });
    let namespace = args.namespace.clone().unwrap_or(folder);
    let plan =
        berth_pipeline::init::plan(&args.dir, &prefix, &namespace).map_err(|e| e.to_string())?;
    for choice in &plan.choices {
        eprintln!("  {choice}");
    }
    // What could not be decided is also a comment in the written file.
    for note in plan.comments.iter().map(|c| (None, c)).chain(
        plan.services
            .iter()
            .flat_map(|s| s.comments.iter().map(move |c| (Some(&s.name), c))),
    ) {
        match note {
            (Some(service), c) => eprintln!("  note (service {service}): {c}"),
            (None, c) => eprintln!("  note: {c}"),
        }
    }
    if args.print {
        print!("{}", plan.yaml);
        return Ok(ExitCode::SUCCESS);
    }
    crate::atomic_write::replace(&target, plan.yaml.as_bytes())
        .map_err(|e| format!("{}: {e}", target.display()))?;
    match berth_config::load(&target) {
        Ok(_) => {
            eprintln!(
                "wrote {}; deploy it with: berth run -c {}",
                target.display(),
                target.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!(
                "wrote {}, but it needs a fix before `berth run`:\n{e}",
                target.display()
            );
            Ok(ExitCode::from(1))
        }
    }
}
