//! `wave-httpd`: a minimal HTTP/1.1 server on Wave's own TCP/IP stack (netstack over AF_PACKET
//! on `--iface`), for kernel clients such as curl. It answers every `GET` with a short text
//! body, keeps connections alive unless asked to close, and stops after `--max-requests` or
//! `--seconds` (or never). The interface should carry no IP address of its own: the kernel then
//! leaves its traffic to us.
//!
//! `wave-httpd --iface eth1 --ip 198.18.0.2/24 --port 8080`, then `curl http://198.18.0.2:8080/`.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use host_dp::io::QueueId;
use host_dp::io::uring::{UringConfig, UringPort};
use host_dp::net::PortWire;
use netstack::{Conn, ConnState, Stack, StackConfig};

/// A minimal HTTP/1.1 server on Wave's TCP/IP stack.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Interface to serve on (AF_PACKET; needs root or CAP_NET_RAW).
    #[arg(long)]
    iface: String,
    /// Our address and prefix, e.g. 198.18.0.2/24.
    #[arg(long, value_parser = parse_cidr)]
    ip: (Ipv4Addr, u8),
    /// TCP port.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Stop after answering this many requests.
    #[arg(long)]
    max_requests: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    seconds: Option<u64>,
}

fn parse_cidr(text: &str) -> Result<(Ipv4Addr, u8), String> {
    let (ip, prefix) = text.split_once('/').ok_or("expected ADDRESS/PREFIX, e.g. 198.18.0.2/24")?;
    let ip = ip.parse().map_err(|e| format!("bad address {ip}: {e}"))?;
    let prefix = prefix.parse().ok().filter(|p| *p <= 32).ok_or("prefix must be 0..=32")?;
    Ok((ip, prefix))
}

/// One connection: what arrived and is not yet a whole request, and what is left to send.
struct Client {
    conn: Conn,
    request: Vec<u8>,
    reply: Vec<u8>,
    close_after_reply: bool,
    /// When the connection was first seen closed with nothing left to send.
    closing_since: Option<Instant>,
}

/// How long a closed connection waits for the peer to acknowledge our FIN before it is
/// released anyway (with a RST, as `release` does for an unfinished connection).
const LINGER: Duration = Duration::from_secs(2);

/// Longest request head we accept (then 431 and close).
const HEAD_MAX: usize = 16 * 1024;

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
    let port = UringPort::open(&args.iface, UringConfig::default())
        .with_context(|| format!("opening {} (AF_PACKET needs root)", args.iface))?;
    let (ip, prefix_len) = args.ip;
    let config = StackConfig { ip, prefix_len, ..StackConfig::default() };
    let mut stack = Stack::new(PortWire::new(port, QueueId(0)), config, Instant::now())?;
    stack.listen(args.port, 128)?;
    eprintln!("wave-httpd: serving http://{ip}:{}/ on {}", args.port, args.iface);
    let deadline = args.seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let mut clients: Vec<Client> = Vec::new();
    let mut served = 0u64;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(served);
        }
        if args.max_requests.is_some_and(|max| served >= max) && clients.is_empty() {
            return Ok(served);
        }
        stack.poll(Instant::now());
        while let Some(conn) = stack.accept(args.port) {
            clients.push(Client {
                conn,
                request: Vec::new(),
                reply: Vec::new(),
                close_after_reply: false,
                closing_since: None,
            });
        }
        let now = Instant::now();
        clients.retain_mut(|client| serve(&mut stack, client, &mut buf, &mut served, now));
    }
}

/// Moves one connection along; false once it is finished and released.
fn serve<L: netstack::Wire>(
    stack: &mut Stack<L>,
    client: &mut Client,
    buf: &mut [u8],
    served: &mut u64,
    now: Instant,
) -> bool {
    if !client.reply.is_empty() {
        let sent = stack.send(client.conn, &client.reply).unwrap_or(0);
        client.reply.drain(..sent);
        if client.reply.is_empty() && client.close_after_reply {
            let _ = stack.close(client.conn);
        }
    }
    match stack.recv(client.conn, buf) {
        Ok(n) => client.request.extend_from_slice(&buf[..n]),
        Err(_) => {
            let _ = stack.close(client.conn);
        }
    }
    if client.reply.is_empty() && !client.close_after_reply {
        if let Some(end) = find(&client.request, b"\r\n\r\n") {
            let head: Vec<u8> = client.request.drain(..end + 4).collect();
            let (reply, close) = respond(&head);
            client.reply = reply;
            client.close_after_reply = close;
            *served += 1;
        } else if client.request.len() > HEAD_MAX {
            client.reply =
                response("431 Request Header Fields Too Large", "header too large\n", true);
            client.close_after_reply = true;
        }
    }
    // Released once our FIN is acknowledged, so the client sees a clean close rather than a
    // RST after the reply; a peer that never acknowledges is cut off after `LINGER`.
    let closed = stack.state(client.conn).map_or(true, |s| s == ConnState::Closed);
    if closed && stack.unsent(client.conn).unwrap_or(0) == 0 {
        let since = *client.closing_since.get_or_insert(now);
        if stack.finished(client.conn).unwrap_or(true) || now - since >= LINGER {
            stack.release(client.conn);
            return false;
        }
    }
    true
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
        assert_eq!(parse_cidr("198.18.0.2/24"), Ok((Ipv4Addr::new(198, 18, 0, 2), 24)));
        assert!(parse_cidr("198.18.0.2").is_err() && parse_cidr("198.18.0.2/33").is_err());
    }
}
