//! `rpc-server`: memcached's text protocol on Wave, with the in-memory store. See
//! `rpc-server --help`.

use std::sync::Arc;

use clap::Parser;
use rpc_server::store::Store;

/// A memcached-protocol key-value server on Wave's stack and runtime.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    server: rpc_server::app::Args,
    /// Memory for keys and values, MiB.
    #[arg(long, default_value_t = 64)]
    memory_mb: u64,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let store = Arc::new(Store::new(cli.memory_mb << 20));
    match rpc_server::app::run(cli.server, "rpc-server", store) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rpc-server: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
