//! `wave-httpd`: a minimal HTTP/1.1 server on Wave (the host's workers, our TCP/IP stack over
//! AF_PACKET on `--iface`), for kernel clients such as curl. It answers every `GET` with a
//! short text body, keeps connections alive unless asked to close, and stops after
//! `--max-requests` or `--seconds` (or at SIGINT/SIGTERM). The interface should carry no IP
//! address of its own: the kernel then leaves its traffic to us.
//!
//! `wave-httpd --iface eth1 --ip 198.18.0.2/24 --port 8080`, then `curl http://198.18.0.2:8080/`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use host_dp::host::Cidr;
use host_dp::net::TcpStream;
use host_dp::{Host, HostConfig};

/// A minimal HTTP/1.1 server on Wave's TCP/IP stack.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Interface to serve on (AF_PACKET; needs root or CAP_NET_RAW).
    #[arg(long)]
    iface: String,
    /// Our address and prefix, e.g. 198.18.0.2/24.
    #[arg(long)]
    ip: Cidr,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    workers: u16,
    /// TCP port.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Stop after answering this many requests (once their connections are closed).
    #[arg(long)]
    max_requests: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    seconds: Option<u64>,
}

/// Longest request head we accept (then 431 and close).
const HEAD_MAX: usize = 16 * 1024;

/// What the connections' tasks count.
#[derive(Debug, Default)]
struct Counts {
    served: AtomicU64,
    open: AtomicU64,
}

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(served) => {
            eprintln!("wave-httpd: stopped after {served} requests");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("wave-httpd: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<u64> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("installing signal handlers")?;
    }
    let config = HostConfig::default().with_vars(std::env::vars())?;
    let host = Host::builder()
        .config(config)
        .iface(&args.iface)
        .ip(&args.ip.to_string())
        .workers(args.workers)
        .build()
        .with_context(|| format!("opening {} (AF_PACKET needs root)", args.iface))?;
    let listener = host.listen(args.port)?;
    let counts = Arc::new(Counts::default());
    let (spawner, tasks) = (host.handle(), counts.clone());
    host.spawn(async move {
        while let Ok((stream, _peer)) = listener.accept().await {
            tasks.open.fetch_add(1, Ordering::Relaxed);
            let counts = tasks.clone();
            let _ = spawner.spawn(async move {
                serve(stream, &counts).await;
                counts.open.fetch_sub(1, Ordering::Relaxed);
            });
        }
    })?;
    eprintln!("wave-httpd: serving http://{}:{}/ on {}", args.ip.ip, args.port, args.iface);
    let deadline = args.seconds.map(|s| Instant::now() + Duration::from_secs(s));
    loop {
        let served = counts.served.load(Ordering::Relaxed);
        let done = args.max_requests.is_some_and(|max| served >= max)
            && counts.open.load(Ordering::Relaxed) == 0;
        if done || stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    host.shutdown();
    Ok(counts.served.load(Ordering::Relaxed))
}

/// Serves one connection: requests in, replies out, until either side closes. Dropping the
/// stream closes it in order (the reply is delivered, then our FIN).
async fn serve(mut stream: TcpStream, counts: &Counts) {
    let mut request = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while let Some(end) = find(&request, b"\r\n\r\n") {
            let head: Vec<u8> = request.drain(..end + 4).collect();
            let (reply, close) = respond(&head);
            counts.served.fetch_add(1, Ordering::Relaxed);
            if stream.write_all(&reply).await.is_err() || close {
                return;
            }
        }
        if request.len() > HEAD_MAX {
            let reply = response("431 Request Header Fields Too Large", "header too large\n", true);
            let _ = stream.write_all(&reply).await;
            return;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
}

/// The reply to one request head, and whether to close after it.
fn respond(head: &[u8]) -> (Vec<u8>, bool) {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, path, version) = (parts.next(), parts.next(), parts.next());
    let close_requested = lines.any(|l| l.to_ascii_lowercase().starts_with("connection: close"));
    let close = close_requested || version != Some("HTTP/1.1");
    match (method, path, version) {
        (Some("GET"), Some(path), Some(v)) if v.starts_with("HTTP/1.") => {
            let body = format!("hello from Wave: you asked for {path}\n");
            (response("200 OK", &body, close), close)
        }
        (Some(_), Some(_), Some(v)) if v.starts_with("HTTP/1.") => {
            (response("405 Method Not Allowed", "only GET here\n", close), close)
        }
        _ => (response("400 Bad Request", "malformed request\n", true), true),
    }
}

fn response(status: &str, body: &str, close: bool) -> Vec<u8> {
    let connection = if close { "close" } else { "keep-alive" };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: \
         {connection}\r\nServer: wave-httpd\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_get_the_right_replies() {
        let (ok, close) = respond(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(!close && String::from_utf8_lossy(&ok).starts_with("HTTP/1.1 200 OK"));
        assert!(String::from_utf8_lossy(&ok).ends_with("you asked for /x\n"));
        let (_, close) = respond(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(close);
        let (_, close) = respond(b"GET / HTTP/1.0\r\n\r\n");
        assert!(close, "HTTP/1.0 closes by default");
        let (bad, close) = respond(b"garbage\r\n\r\n");
        assert!(close && String::from_utf8_lossy(&bad).starts_with("HTTP/1.1 400"));
        let (post, _) = respond(b"POST / HTTP/1.1\r\n\r\n");
        assert!(String::from_utf8_lossy(&post).starts_with("HTTP/1.1 405"));
    }
}
