//! `hyper-server`: the same hyper service on Wave (`--runtime wave`: AF_PACKET on an
//! interface with no IP of its own, our stack, the host's workers) or on tokio (`--runtime
//! tokio`: kernel TCP, one worker thread). See `hyper-server --help`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use host_dp::host::Cidr;
use host_dp::hyper::HyperTimer;
use host_dp::{Host, HostConfig};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;

/// One hyper service (HTTP/1.1 and HTTP/2) on Wave or on tokio.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Which runtime and TCP stack serve: wave (ours) or tokio (the kernel's).
    #[arg(long, value_parser = ["wave", "tokio"], default_value = "wave")]
    runtime: String,
    /// Wave: the host's config file (TOML); `WAVE_*` variables and the flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Wave: the interface to serve on (no IP address of its own).
    #[arg(long)]
    iface: Option<String>,
    /// Wave: our address, ADDRESS/PREFIX.
    #[arg(long)]
    ip: Option<Cidr>,
    /// Wave: worker threads.
    #[arg(long)]
    workers: Option<u16>,
    /// Tokio: the address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    listen: std::net::IpAddr,
    /// TCP port.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Stop after this many seconds (default: at SIGINT/SIGTERM).
    #[arg(long)]
    seconds: Option<u64>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if signal_hook::flag::register(signal, stop.clone()).is_err() {
            eprintln!("hyper-server: cannot install signal handlers");
            return std::process::ExitCode::FAILURE;
        }
    }
    let served = match cli.runtime.as_str() {
        "wave" => on_wave(&cli, &stop),
        _ => on_tokio(&cli, &stop),
    };
    match served {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hyper-server: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Waits for a signal or the end of `--seconds`.
fn wait(cli: &Cli, stop: &AtomicBool) {
    let deadline = cli.seconds.map(|s| Instant::now() + Duration::from_secs(s));
    while !stop.load(Ordering::Relaxed) && deadline.is_none_or(|d| Instant::now() < d) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn on_wave(cli: &Cli, stop: &AtomicBool) -> anyhow::Result<()> {
    let mut config = match &cli.config {
        Some(path) => HostConfig::from_file(path)?,
        None => HostConfig::default(),
    }
    .with_vars(std::env::vars())?;
    if let Some(iface) = &cli.iface {
        config.port = Some(host_dp::host::PortConfig::AfPacket {
            iface: iface.clone(),
            tx: Default::default(),
        });
    }
    config.ip = cli.ip.unwrap_or(config.ip);
    config.workers = cli.workers.unwrap_or(config.workers);
    let host =
        Host::builder().config(config).build().context("starting Wave (AF_PACKET needs root)")?;
    let listener = host.listen(cli.port)?;
    let spawner = host.handle();
    host.spawn(async move {
        while let Ok((stream, _peer)) = listener.accept().await {
            let mut builder = auto::Builder::new(spawner.clone());
            builder.http1().timer(HyperTimer);
            builder.http2().timer(HyperTimer);
            let _ = spawner.spawn(async move {
                let service = hyper::service::service_fn(hyper_server::handle);
                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
            });
        }
    })?;
    let ip = host.config().ip.ip;
    eprintln!("hyper-server: serving HTTP/1.1 and HTTP/2 on Wave at {ip}:{}", cli.port);
    wait(cli, stop);
    let stats = host.shutdown();
    eprintln!("hyper-server: stopped; {:?}", stats.plane);
    Ok(())
}

fn on_tokio(cli: &Cli, stop: &AtomicBool) -> anyhow::Result<()> {
    // One thread: `block_on` below runs the accept loop, every connection and the timers.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let address = SocketAddr::new(cli.listen, cli.port);
    let deadline = cli.seconds.map(|s| Instant::now() + Duration::from_secs(s));
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("binding {address}"))?;
        tokio::spawn(async move {
            while let Ok((stream, _peer)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder.http1().timer(TokioTimer::new());
                builder.http2().timer(TokioTimer::new());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(hyper_server::handle);
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        eprintln!("hyper-server: serving HTTP/1.1 and HTTP/2 on tokio at {address}");
        while !stop.load(Ordering::Relaxed) && deadline.is_none_or(|d| Instant::now() < d) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    })
}
