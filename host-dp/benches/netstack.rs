//! Two of our TCP/IP stacks over the shared-memory wire against Linux TCP over loopback, in
//! the same run: 64 B request/response round trips (p50, p99, requests/s on one connection)
//! and bulk throughput on one connection. Client on `--client-cpu`, server on
//! `--server-cpu`, for both; blocks of ours and of Linux alternate, and each ratio is taken
//! within a round.
//!
//! `cargo bench -p host-dp --bench netstack -- --rounds 5 [--out docs/results/netstack.tmp]`

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use host_dp::io::QueueId;
use host_dp::io::shm::{ShmPort, Side, WireConfig};
use host_dp::net::PortWire;
use netstack::{NetError, Stack, StackConfig};

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const MESSAGE: usize = 64;

struct Args {
    rounds: usize,
    requests: usize,
    bulk_bytes: usize,
    client_cpu: usize,
    server_cpu: usize,
    out: Option<String>,
}

fn args() -> Args {
    let mut args = Args {
        rounds: 5,
        requests: 20_000,
        bulk_bytes: 64 << 20,
        client_cpu: 0,
        server_cpu: 1,
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().expect("flag value");
        match flag.as_str() {
            "--rounds" => args.rounds = value().parse().expect("--rounds N"),
            "--requests" => args.requests = value().parse().expect("--requests N"),
            "--bulk-mb" => args.bulk_bytes = value().parse::<usize>().expect("--bulk-mb N") << 20,
            "--client-cpu" => args.client_cpu = value().parse().expect("--client-cpu N"),
            "--server-cpu" => args.server_cpu = value().parse().expect("--server-cpu N"),
            "--out" => args.out = Some(value()),
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

fn pin(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).expect("cpu");
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).expect("pin");
}

type ShmStack = Stack<PortWire<ShmPort>>;

fn shm_stack(region: &Arc<link::region::Region>, side: Side, ip: Ipv4Addr, mac: u8) -> ShmStack {
    let port = ShmPort::attach(region.clone(), side).expect("attach the wire");
    let config = StackConfig { ip, mac: [2, 0, 0, 0, 0, mac], ..StackConfig::default() };
    Stack::new(PortWire::new(port, QueueId(0)), config, Instant::now()).expect("stack")
}

/// What one block measured.
struct Block {
    rtt: Histogram<u64>,
    requests_per_s: f64,
    bulk_gbps: f64,
}

/// Our stacks: an echo server thread and a client in this thread.
fn ours(args: &Args) -> Block {
    let region = host_dp::io::shm::create(WireConfig::default(), false).expect("wire");
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let (region, stop, cpu) = (region.clone(), stop.clone(), args.server_cpu);
        std::thread::spawn(move || {
            pin(cpu);
            let mut stack = shm_stack(&region, Side::B, SERVER_IP, 2);
            stack.listen(7, 4).expect("listen");
            let mut conns = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            while !stop.load(Ordering::Relaxed) {
                stack.poll(Instant::now());
                while let Some(conn) = stack.accept(7) {
                    conns.push(conn);
                }
                for &conn in &conns {
                    // Echo what fits; bulk data (no reply expected) is read and dropped.
                    if let Ok(n) = stack.recv(conn, &mut buf)
                        && n > 0
                        && n <= MESSAGE
                    {
                        let _ = stack.send(conn, &buf[..n]);
                    }
                }
            }
        })
    };
    pin(args.client_cpu);
    let mut stack = shm_stack(&region, Side::A, Ipv4Addr::new(198, 18, 0, 3), 3);
    let drive = |stack: &mut ShmStack, conn, request: &[u8], reply: &mut [u8]| {
        let mut sent = 0;
        let mut got = 0;
        while got < reply.len() {
            stack.poll(Instant::now());
            if sent < request.len() {
                sent += stack.send(conn, &request[sent..]).expect("send");
            }
            match stack.recv(conn, &mut reply[got..]) {
                Ok(n) => got += n,
                Err(NetError::Closed) => panic!("server closed"),
                Err(error) => panic!("recv: {error}"),
            }
        }
    };
    let conn = stack.connect(SocketAddrV4::new(SERVER_IP, 7)).expect("connect");
    let request = [7u8; MESSAGE];
    let mut reply = [0u8; MESSAGE];
    for _ in 0..1000 {
        drive(&mut stack, conn, &request, &mut reply); // warm-up, ARP, handshake
    }
    let mut rtt = Histogram::new_with_bounds(1, 1_000_000_000, 3).expect("histogram");
    let start = Instant::now();
    for _ in 0..args.requests {
        let begun = Instant::now();
        drive(&mut stack, conn, &request, &mut reply);
        rtt.saturating_record(nanos(begun.elapsed()));
    }
    let requests_per_s = args.requests as f64 / start.elapsed().as_secs_f64();
    // Bulk: a second connection streams `bulk_bytes`; done when the peer acknowledged all.
    let bulk = stack.connect(SocketAddrV4::new(SERVER_IP, 7)).expect("connect");
    let chunk = vec![1u8; 64 * 1024];
    let mut sent = 0;
    let start = Instant::now();
    while sent < args.bulk_bytes || stack.unsent(bulk).expect("conn") > 0 {
        stack.poll(Instant::now());
        if sent < args.bulk_bytes {
            let len = chunk.len().min(args.bulk_bytes - sent);
            sent += stack.send(bulk, &chunk[..len]).expect("send");
        }
    }
    let bulk_gbps = args.bulk_bytes as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e9;
    stop.store(true, Ordering::Relaxed);
    server.join().expect("server thread");
    Block { rtt, requests_per_s, bulk_gbps }
}

/// Reads exactly `buf.len()` bytes, spinning on a non-blocking socket when `spin`.
fn read_exact(stream: &mut TcpStream, buf: &mut [u8]) {
    let mut got = 0;
    while got < buf.len() {
        match stream.read(&mut buf[got..]) {
            Ok(0) => panic!("peer closed"),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Writes all of `buf`, spinning on a non-blocking socket when it is full.
fn write_all(stream: &mut TcpStream, buf: &[u8]) {
    let mut sent = 0;
    while sent < buf.len() {
        match stream.write(&buf[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) => panic!("write: {e}"),
        }
    }
}

/// Linux TCP over loopback, the same pattern; with `spin`, both ends busy-poll non-blocking
/// sockets (no sleeping, no cross-CPU wakeup), like our stacks do.
fn linux(args: &Args, spin: bool) -> Block {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let cpu = args.server_cpu;
    let server = std::thread::spawn(move || {
        pin(cpu);
        let handle = move |mut stream: TcpStream| {
            stream.set_nodelay(true).expect("nodelay");
            stream.set_nonblocking(spin).expect("nonblocking");
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) if n <= MESSAGE => write_all(&mut stream, &buf[..n]),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::hint::spin_loop(),
                    Err(_) => return,
                }
            }
        };
        let (rpc, _) = listener.accept().expect("accept");
        let rpc = std::thread::spawn(move || handle(rpc));
        let (bulk, _) = listener.accept().expect("accept");
        handle(bulk);
        rpc.join().expect("rpc thread");
    });
    pin(args.client_cpu);
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream.set_nonblocking(spin).expect("nonblocking");
    let request = [7u8; MESSAGE];
    let mut reply = [0u8; MESSAGE];
    for _ in 0..1000 {
        write_all(&mut stream, &request);
        read_exact(&mut stream, &mut reply);
    }
    let mut rtt = Histogram::new_with_bounds(1, 1_000_000_000, 3).expect("histogram");
    let start = Instant::now();
    for _ in 0..args.requests {
        let begun = Instant::now();
        write_all(&mut stream, &request);
        read_exact(&mut stream, &mut reply);
        rtt.saturating_record(nanos(begun.elapsed()));
    }
    let requests_per_s = args.requests as f64 / start.elapsed().as_secs_f64();
    let mut bulk = TcpStream::connect(addr).expect("connect");
    let chunk = vec![1u8; 64 * 1024];
    let start = Instant::now();
    let mut sent = 0;
    while sent < args.bulk_bytes {
        let len = chunk.len().min(args.bulk_bytes - sent);
        write_all(&mut bulk, &chunk[..len]);
        sent += len;
    }
    bulk.shutdown(std::net::Shutdown::Write).expect("shutdown");
    bulk.set_nonblocking(false).expect("blocking");
    let mut end = [0u8; 1];
    let _ = bulk.read(&mut end); // the server closes once it read everything
    let bulk_gbps = args.bulk_bytes as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e9;
    drop(stream);
    server.join().expect("server thread");
    Block { rtt, requests_per_s, bulk_gbps }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args = args();
    // Per round: [ours, Linux blocking, Linux busy-poll] × [p50, p99, req/s, Gbit/s].
    let mut rows: Vec<[[f64; 4]; 3]> = Vec::new();
    for round in 0..args.rounds {
        let mut blocks: [Option<Block>; 3] = [None, None, None];
        // Rotate the order, so drift of the machine does not favour one.
        for k in 0..3 {
            let which = (round + k) % 3;
            blocks[which] = Some(match which {
                0 => ours(&args),
                1 => linux(&args, false),
                _ => linux(&args, true),
            });
        }
        let us = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1e3;
        let row = blocks.map(|b| {
            let b = b.expect("ran");
            [us(&b.rtt, 0.5), us(&b.rtt, 0.99), b.requests_per_s, b.bulk_gbps]
        });
        eprintln!("round {round}: {row:.2?}");
        rows.push(row);
    }
    let col = |s: usize, i: usize| median(rows.iter().map(|r| r[s][i]).collect());
    let ratio = |s: usize, i: usize| median(rows.iter().map(|r| r[0][i] / r[s][i]).collect());
    let mut report = String::new();
    report += &format!(
        "{} rounds (medians; ratios taken within each round), client on CPU {}, server on CPU {}, \
         {} requests of {MESSAGE} B per block, {} MiB bulk\n\n",
        args.rounds,
        args.client_cpu,
        args.server_cpu,
        args.requests,
        args.bulk_bytes >> 20
    );
    report += "| measure | ours (shm wire) | Linux loopback, blocking | ours / it | Linux \
               loopback, busy-polling | ours / it |\n|---|---|---|---|---|---|\n";
    for (i, name, digits) in [
        (0, "RTT p50 µs", 2),
        (1, "RTT p99 µs", 2),
        (2, "requests/s (1 conn)", 0),
        (3, "bulk Gbit/s (1 conn)", 2),
    ] {
        report += &format!(
            "| {name} | {:.digits$} | {:.digits$} | {:.2} | {:.digits$} | {:.2} |\n",
            col(0, i),
            col(1, i),
            ratio(1, i),
            col(2, i),
            ratio(2, i),
        );
    }
    print!("{report}");
    if let Some(out) = args.out {
        std::fs::write(out, report).expect("write --out");
    }
}
