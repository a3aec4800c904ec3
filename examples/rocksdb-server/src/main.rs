//! `rocksdb-server`: RocksDB behind memcached's text protocol (plus `scan <start> <count>`), on
//! Wave's runtime and stack. See `rocksdb-server --help`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use rocksdb_server::RocksStore;

/// A RocksDB server speaking the memcached protocol on Wave's stack and runtime.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    server: rpc_server::app::Args,
    /// The database directory (created if missing).
    #[arg(long)]
    db: PathBuf,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let store = match RocksStore::open(&cli.db) {
        Ok(store) => Arc::new(store),
        Err(error) => {
            eprintln!("rocksdb-server: error: opening {}: {error}", cli.db.display());
            return std::process::ExitCode::FAILURE;
        }
    };
    match rpc_server::app::run(cli.server, "rocksdb-server", store) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rocksdb-server: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
