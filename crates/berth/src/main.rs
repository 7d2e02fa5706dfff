//! The `berth` command line.
//!
//! Clap lives here and nowhere else: `cli` holds the raw flags, each subcommand has one file
//! that turns them into validated settings and drives the libraries, and only this crate prints.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod atomic_write;
mod build_cmd;
mod builder_flags;
mod cli;
mod convert_cmd;
mod data_cmd;
mod deploy_cmd;
mod dev_cmd;
mod dev_logs;
mod doctor;
mod init_cmd;
mod output;
mod progress;
mod run_cmd;
mod serve_cmd;
mod trust;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    trust::ensure_roots();
    // One rustls crypto provider for the whole process, before any TLS client exists: with two
    // providers compiled in, rustls would panic on the first handshake.
    rustls::crypto::ring::default_provider()
        .install_default()
        .expect("no other rustls provider was installed before main");

    let args = cli::Cli::parse();
    init_tracing(args.verbose);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    let result = runtime.block_on(async {
        match args.command {
            cli::Command::Doctor(a) => doctor::run(a).await,
            cli::Command::Render(a) => deploy_cmd::render_command(a).await,
            cli::Command::Deploy(a) => deploy_cmd::deploy(a).await,
            cli::Command::Run(a) => run_cmd::run(a).await,
            cli::Command::Init(a) => init_cmd::init(a),
            cli::Command::Dev(a) => dev_cmd::dev(a).await,
            cli::Command::Promote(a) => run_cmd::promote(a).await,
            cli::Command::Schema(a) => {
                if a.markdown {
                    print!("{}", berth_config::reference_markdown());
                } else {
                    let schema = berth_config::json_schema();
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&schema).expect("schema serializes")
                    );
                }
                Ok(std::process::ExitCode::SUCCESS)
            }
            cli::Command::Completions(a) => {
                let mut command = <cli::Cli as clap::CommandFactory>::command();
                clap_complete::generate(a.shell, &mut command, "berth", &mut std::io::stdout());
                Ok(std::process::ExitCode::SUCCESS)
            }
            cli::Command::Man(a) => man_pages(a),
            cli::Command::Diff(a) => deploy_cmd::diff(a).await,
            cli::Command::History(a) => deploy_cmd::history(a).await,
            cli::Command::Rollback(a) => deploy_cmd::rollback(a).await,
            cli::Command::Build(a) => build_cmd::run(a).await,
            cli::Command::Data(a) => data_cmd::run(a).await,
            cli::Command::Serve(a) => serve_cmd::serve(a).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// `berth man`: berth.1 on stdout, or one page per command into a folder.
fn man_pages(args: cli::ManArgs) -> Result<ExitCode, String> {
    let command = <cli::Cli as clap::CommandFactory>::command();
    match args.out_dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .and_then(|()| clap_mangen::generate_to(command, &dir))
                .map_err(|e| format!("writing man pages into {}: {e}", dir.display()))?;
            println!("wrote man pages into {}", dir.display());
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .and_then(|()| std::io::Write::write_all(&mut std::io::stdout(), &page))
                .map_err(|e| format!("writing the man page: {e}"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,berth=debug",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
