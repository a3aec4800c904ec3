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
    server_with(tag, db, &[])
}

fn server_with(tag: &str, db: &std::path::Path, extra: &[&str]) -> (netns::Netns, Child) {
    let ns = netns::Netns::with_veth_pair(tag);
    run("ip", &["-n", ns.name(), "addr", "add", "198.18.0.1/24", "dev", "vb"]);
    run("ip", &["netns", "exec", ns.name(), "ethtool", "-K", "vb", "tx", "off"]);
    let db = db.to_str().unwrap();
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns.name(), BIN, "--iface", "va", "--ip", "198.18.0.2/24"])
        .args(["--workers", "2", "--seconds", "120", "--db", db])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .expect("rocksdb-server");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    assert!(first.contains("serving memcached protocol on 198.18.0.2:11211"), "{first}");
    child.stderr = Some(stderr.into_inner());
    (ns, child)
}

/// Stops the server; returns the rest of its standard error.
fn stop(mut child: Child) -> String {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut rest);
    let _ = child.wait();
    rest
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

#[test]
fn the_block_cache_in_a_tiered_arena_serves_reads_through_demotion() {
    let db = temp_db("tier");
    // Small memtables, so the values reach SST files and reads go through the block cache;
    // the cache in a 16 MiB arena tiered by the on-host policy with 50 ms epochs.
    let extra = ["--write-buffer-kb", "64", "--block-cache-mb", "4", "--tier-arena-mb", "16"];
    let extra = [&extra[..], &["--tier-policy", "on-host", "--tier-epoch-ms", "50"]].concat();
    let (ns, child) = server_with("rtier", &db, &extra);
    // 3000 values of 300 bytes; every value read back twice, with a pause between the
    // rounds in which the untouched cache blocks turn cold and are demoted.
    let script = "import socket, time\n\
         s=socket.create_connection(('198.18.0.2',11211),timeout=20)\n\
         f=s.makefile('rb')\n\
         v=lambda i: (b'%05d' % i) * 60\n\
         for i in range(3000):\n    \
             s.sendall(b'set key%05d 0 0 300\\r\\n%s\\r\\n' % (i, v(i)))\n    \
             assert f.readline()==b'STORED\\r\\n'\n\
         bad=0\n\
         for r in range(2):\n    \
             for i in range(3000):\n        \
                 s.sendall(b'get key%05d\\r\\n' % i); f.readline()\n        \
                 d=f.readline()[:-2]; f.readline()\n        \
                 bad += d != v(i)\n    \
             time.sleep(1.5)\n\
         print('bad', bad)\n";
    let got = run("ip", &["netns", "exec", ns.name(), "python3", "-c", script]);
    let report = stop(child);
    let _ = std::fs::remove_dir_all(&db);
    assert_eq!(got.trim(), "bad 0");
    // The server's last words: blocks were in the arena, some went cold and came back.
    let line = report.lines().find(|l| l.contains("rocksdb-server: final:")).expect(&report);
    let number = |name: &str| -> u64 {
        let field = line.split_whitespace().find_map(|f| f.strip_prefix(name)?.strip_prefix('='));
        field.expect(name).parse().unwrap()
    };
    eprintln!("{line}");
    assert!(number("arena_in_use_kib") > 0, "{line}");
    assert_eq!(number("heap_fallbacks"), 0, "{line}");
    assert!(number("demotions") > 0, "{line}");
    assert!(number("rss_kib") > 0, "{line}");
}
