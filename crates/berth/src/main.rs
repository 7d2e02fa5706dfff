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

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
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
            cli::Command::Schema => {
                let schema = berth_config::json_schema();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&schema).expect("schema serializes")
                );
                Ok(std::process::ExitCode::SUCCESS)
            }
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
