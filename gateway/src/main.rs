//! The `omnigate` command line: run, check, version.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// Measured: glibc malloc spent ~12% of proxy CPU, much of it in arena locks
// contended between Pingora's worker threads (see README, Performance).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "omnigate",
    about = "Customer identity gateway",
    disable_version_flag = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (SIGHUP reloads the config, SIGTERM shuts down gracefully)
    Run {
        #[arg(long, short, default_value = "config.yaml")]
        config: PathBuf,
    },
    /// Validate the config and every policy file it includes
    Check {
        #[arg(long, short, default_value = "config.yaml")]
        config: PathBuf,
    },
    /// Print the admin API's OpenAPI document (gateway/openapi/admin.json)
    Openapi,
    /// Print the version
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => match omnigate::server::run(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Check { config } => match omnigate::server::check(&config) {
            Ok(c) => {
                for w in omnigate::config::warnings(&c) {
                    eprintln!("{}: warning: {w}", config.display());
                }
                println!(
                    "{}: ok ({} listeners, {} upstreams, {} routes)",
                    config.display(),
                    c.listeners.len(),
                    c.upstreams.len(),
                    c.routes.len()
                );
                ExitCode::SUCCESS
            }
            Err(errs) => {
                for d in &errs.0 {
                    eprintln!("{d}");
                }
                eprintln!(
                    "{} error(s); the configuration was not accepted",
                    errs.0.len()
                );
                ExitCode::from(1)
            }
        },
        Command::Openapi => {
            print!("{}", omnigate::admin::openapi_json());
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("omnigate {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}
