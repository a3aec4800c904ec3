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
    let served = cli.server.host.host_config().and_then(rpc_server::app::start).and_then(|host| {
        rpc_server::app::run(&cli.server, host, "rpc-server", store).map(host_dp::Host::shutdown)
    });
    match served {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rpc-server: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
