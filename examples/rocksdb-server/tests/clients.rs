//! `memccapable`'s ascii tests against `rocksdb-server` through a veth in a throwaway namespace
//! (RocksDB behind the same protocol as rpc-server), and `scan` in key order. Needs root
//! (namespaces, AF_PACKET), libmemcached-tools and librocksdb-dev (scripts/setup.sh).

#[path = "../../../host-dp/tests/netns/mod.rs"]
mod netns;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_rocksdb-server");

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().expect(program);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{program} {args:?}: {text}");
    text
}

fn server(tag: &str, db: &std::path::Path) -> (netns::Netns, Child) {
    let ns = netns::Netns::with_veth_pair(tag);
    run("ip", &["-n", ns.name(), "addr", "add", "198.18.0.1/24", "dev", "vb"]);
    run("ip", &["netns", "exec", ns.name(), "ethtool", "-K", "vb", "tx", "off"]);
    let db = db.to_str().unwrap();
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns.name(), BIN, "--iface", "va", "--ip", "198.18.0.2/24"])
        .args(["--workers", "2", "--seconds", "120", "--db", db])
        .stderr(Stdio::piped())
        .spawn()
        .expect("rocksdb-server");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("serving memcached protocol on 198.18.0.2:11211"), "{first}");
    (ns, child)
}

fn stop(mut child: Child) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let _ = child.wait();
}

fn temp_db(tag: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("wave-rocks-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    path
}

#[test]
fn memccapable_ascii_tests_pass_against_rocksdb() {
    let db = temp_db("mccap");
    let (ns, child) = server("rocks", &db);
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name(), "memccapable", "-a", "-h", "198.18.0.2"])
        .args(["-p", "11211", "-t", "10"])
        .output()
        .expect("memccapable");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    stop(child);
    let _ = std::fs::remove_dir_all(&db);
    assert!(text.contains("All tests passed"), "{text}");
}

#[test]
fn scan_returns_live_items_in_key_order() {
    let db = temp_db("scan");
    let (ns, child) = server("rscan", &db);
    let script = "import socket\n\
         s=socket.create_connection(('198.18.0.2',11211),timeout=10)\n\
         f=s.makefile('rb')\n\
         for k in [b'b',b'a',b'd',b'c']:\n    \
             s.sendall(b'set %s 0 0 1\\r\\n%s\\r\\n' % (k, k.upper())); f.readline()\n\
         s.sendall(b'set e 0 -1 1\\r\\nE\\r\\n'); f.readline()\n\
         s.sendall(b'scan b 10\\r\\n')\n\
         out=[]\n\
         while True:\n    \
             l=f.readline()\n    \
             if l.startswith(b'END'): break\n    \
             out.append(l.split()[1].decode()); f.readline()\n\
         print(','.join(out))\n";
    let got = run("ip", &["netns", "exec", ns.name(), "python3", "-c", script]);
    stop(child);
    let _ = std::fs::remove_dir_all(&db);
    assert_eq!(got.trim(), "b,c,d", "from b on, in order, the expired e skipped");
}
