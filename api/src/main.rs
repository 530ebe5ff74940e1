//! The `tessera` binary.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod config;
mod error;
mod routes;
mod server;

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about = "A versioned, image-oriented data service speaking DVID's HTTP API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Serve {
        /// TOML configuration in DVID's shape.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address; port 0 picks a free port (the bound address is printed).
        #[arg(long)]
        addr: Option<String>,
        /// Directory of the embedded RocksDB store when the config names no store.
        #[arg(long, default_value = "tessera-data")]
        data: PathBuf,
        /// Compute backend for label kernels.
        #[arg(long, value_parser = ["auto", "gpu", "cpu"])]
        compute: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve {
            config,
            addr,
            data,
            compute,
        } => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(server::serve(server::ServeArgs {
                config,
                addr,
                data,
                compute,
            }))
        }
    }
}
