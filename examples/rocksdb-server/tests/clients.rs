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
fn scan_returns_live_items_in_key_order_across_chunks_and_pipelined() {
    let db = temp_db("scan");
    let (ns, child) = server("rscan", &db);
    // 200 keys, one expired; a scan of 150 from k010 spans three chunks of 64 and is
    // pipelined with a get behind it: the replies come in order.
    let script = "import socket\n\
         s=socket.create_connection(('198.18.0.2',11211),timeout=10)\n\
         f=s.makefile('rb')\n\
         for i in range(200):\n    \
             e=b'-1' if i==20 else b'0'\n    \
             s.sendall(b'set k%03d 0 %s 1\\r\\nx\\r\\n' % (i,e)); f.readline()\n\
         s.sendall(b'scan k010 150\\r\\nget k199\\r\\n')\n\
         keys=[]\n\
         while True:\n    \
             l=f.readline()\n    \
             if l.startswith(b'END'): break\n    \
             keys.append(l.split()[1].decode()); f.readline()\n\
         last=f.readline()\n\
         print(len(keys), keys[0], keys[9], keys[10], keys[-1], last.split()[1].decode())\n";
    let got = run("ip", &["netns", "exec", ns.name(), "python3", "-c", script]);
    stop(child);
    let _ = std::fs::remove_dir_all(&db);
    // From k010: k010..k019, then k021 (k020 expired), ... 150 keys end at k160.
    assert_eq!(got.trim(), "150 k010 k019 k021 k160 k199");
}
