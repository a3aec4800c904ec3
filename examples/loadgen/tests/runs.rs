//! `loadgen run` end to end: against `rpc-server` on a shared-memory wire (our stack on both
//! sides; no root), and against Debian's `memcached` over kernel sockets on loopback. Both must
//! answer every request without an error reply.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_loadgen");

fn check_table(out: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}{err}");
    // One row per rate: offered, achieved, p50, p99, p99.9, late, unanswered, errors, and the
    // SCAN p50 and p99 (`-` without SCANs).
    let rows: Vec<Vec<&str>> =
        text.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 2, "{text}");
    for row in &rows {
        assert_eq!(row.len(), 11, "{text}");
        assert_eq!((row[7], row[8]), ("0", "0"), "unanswered and errors: {text}");
    }
    text
}

#[test]
fn against_rpc_server_on_a_shared_memory_wire() {
    let csv = std::env::temp_dir().join(format!("wave-loadgen-{}.csv", std::process::id()));
    let out = Command::new(BIN)
        .args(["run", "--server", "wire", "--rates", "2000,8000", "--seconds", "0.5"])
        .args(["--keys", "500", "--conns", "4", "--control", "on-host", "--csv"])
        .arg(&csv)
        .output()
        .expect("loadgen (and rpc-server next to it: cargo build -p rpc-server)");
    check_table(&out);
    let rows = std::fs::read_to_string(&csv).unwrap();
    assert!(rows.starts_with("control,offered_per_s") && rows.lines().count() == 3, "{rows}");
    let _ = std::fs::remove_file(&csv);
}

#[test]
fn against_memcached_over_kernel_sockets() {
    let port = 20_000 + (std::process::id() % 20_000);
    let Ok(mut memcached) = Command::new("memcached")
        .args(["-u", "nobody", "-l", "127.0.0.1", "-U", "0", "-p", &port.to_string()])
        .stderr(Stdio::null())
        .spawn()
    else {
        panic!("memcached missing (scripts/setup.sh installs it)");
    };
    let addr = format!("127.0.0.1:{port}");
    let start = Instant::now();
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "memcached did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = Command::new(BIN)
        .args(["run", "--server", &addr, "--rates", "2000,8000", "--seconds", "0.5"])
        .args(["--keys", "500", "--conns", "4", "--threads", "2"])
        .output()
        .unwrap();
    let _ = memcached.kill();
    let _ = memcached.wait();
    check_table(&out);
}

#[test]
fn a_get_scan_mix_against_rocksdb_server_on_the_wire() {
    let out = Command::new(BIN)
        .args(["run", "--server", "wire", "--wire-server", "rocksdb-server"])
        .args(["--rates", "1000,3000", "--seconds", "0.5", "--keys", "500", "--conns", "4"])
        .args(["--scan-ratio", "0.05", "--scan-count", "50"])
        .output()
        .expect("loadgen (and rocksdb-server next to it: cargo build -p rocksdb-server)");
    let text = check_table(&out);
    for row in text.lines().skip(1) {
        let scan_p99 = row.split_whitespace().last().unwrap();
        assert!(scan_p99.parse::<u64>().is_ok(), "SCANs were answered: {text}");
    }
}

#[test]
fn skewed_text_values_against_rocksdb_server_under_local_shinjuku() {
    // The flags the RocksDB experiments use: a hot set, values of words, Shinjuku in the
    // runtime's own queue (scans preempted between chunks), a client that sleeps when idle,
    // and the server's last line forwarded.
    let out = Command::new(BIN)
        .args(["run", "--server", "wire", "--wire-server", "rocksdb-server"])
        .args(["--rates", "500,1000", "--seconds", "0.5", "--keys", "500", "--conns", "4"])
        .args(["--hot-keys", "0.1", "--hot-share", "0.9", "--text-values", "--value-bytes", "200"])
        .args(["--scan-ratio", "0.05", "--scan-count", "200", "--idle-sleep-us", "20"])
        .args(["--server-arg=--sched", "--server-arg=local", "--server-arg=--sched-policy"])
        .args(["--server-arg=shinjuku", "--server-arg=--slice-us", "--server-arg=20"])
        .output()
        .expect("loadgen (and rocksdb-server next to it: cargo build -p rocksdb-server)");
    check_table(&out);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("rocksdb-server: final: rss_kib="), "{said}");
}

#[test]
fn bad_flags_are_refused_with_a_reason() {
    for (args, reason) in [
        (&["--hot-keys", "0.1"][..], "--hot-share"),
        (&["--hot-keys", "1.5", "--hot-share", "0.9"][..], "--hot-keys"),
        (&["--hot-keys", "0.1", "--hot-share", "2"][..], "--hot-share"),
        (&["--scan-ratio", "1.5"][..], "--scan-ratio"),
        (&["--idle-sleep-us", "20000"][..], "--idle-sleep-us"),
        (&["--server-arg=--sched-policy", "--server-arg=lottery"][..], "lottery"),
        (&["--server-arg=--slice-us", "--server-arg=0"][..], "slice-us"),
        (&["--server-arg=--block-bytes", "--server-arg=10"][..], "block-bytes"),
    ] {
        let out = Command::new(BIN)
            .args(["run", "--server", "wire", "--rates", "1000", "--seconds", "0.2"])
            .args(["--wire-server", "rocksdb-server"])
            .args(args)
            .output()
            .expect("loadgen");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(said.contains(reason), "{args:?}: {said}");
    }
}

/// The pids of `pid`'s children, from /proc.
fn children(pid: u32) -> Vec<u32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

#[test]
fn a_killed_loadgen_takes_its_wire_server_with_it() {
    let mut loadgen = Command::new(BIN)
        .args(["run", "--server", "wire", "--rates", "1000", "--seconds", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("loadgen");
    let deadline = Instant::now() + Duration::from_secs(20);
    let server = loop {
        if let Some(&server) = children(loadgen.id()).first() {
            break server;
        }
        assert!(Instant::now() < deadline, "loadgen started no server");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(500)); // serving by now
    loadgen.kill().expect("SIGKILL loadgen");
    loadgen.wait().expect("reaped");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{server}")).exists() {
        let state = std::fs::read_to_string(format!("/proc/{server}/stat")).unwrap_or_default();
        if state.split_whitespace().nth(2) == Some("Z") {
            break; // exited; its new parent has not reaped it yet
        }
        assert!(Instant::now() < deadline, "the wire server outlived its loadgen");
        std::thread::sleep(Duration::from_millis(20));
    }
}
