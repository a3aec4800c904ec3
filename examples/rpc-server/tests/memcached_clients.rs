//! Clients nobody here wrote against `rpc-server`, through a veth in a throwaway namespace:
//! `memccapable`'s ascii protocol tests (libmemcached's conformance suite) and `memcaslap`'s
//! get/set mix with data verification. The server runs two workers' stacks with connection
//! control by the admission policy in an agent thread; and error paths answered as Debian's
//! memcached answers them, stream by stream. Needs root (namespaces, AF_PACKET) and
//! `libmemcached-tools` (scripts/setup.sh installs it).

#[path = "../../../host-dp/tests/netns/mod.rs"]
mod netns;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_rpc-server");

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().expect(program);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The namespace with the kernel's end at 198.18.0.1 and `rpc-server` on the other end.
/// The server in a fresh namespace, with `extra` flags.
fn server(tag: &str, extra: &[&str]) -> (netns::Netns, Child) {
    let ns = netns::Netns::with_veth_pair(tag);
    run("ip", &["-n", ns.name(), "addr", "add", "198.18.0.1/24", "dev", "vb"]);
    run("ip", &["netns", "exec", ns.name(), "ethtool", "-K", "vb", "tx", "off"]);
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns.name(), BIN, "--iface", "va", "--ip", "198.18.0.2/24"])
        .args(["--workers", "2", "--control", "on-host", "--seconds", "120"])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .expect("rpc-server");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("serving memcached protocol on 198.18.0.2:11211"), "{first}");
    (ns, child)
}

fn stop(mut child: Child) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    // `ip netns exec` enters the namespace and execs the server: the child is the server.
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let _ = child.wait();
}

#[test]
fn memccapable_ascii_tests_all_pass() {
    let (ns, child) = server("mccap", &[]);
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name(), "memccapable", "-a", "-h", "198.18.0.2"])
        .args(["-p", "11211", "-t", "10"])
        .output()
        .expect("memccapable (scripts/setup.sh installs libmemcached-tools)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    stop(child);
    assert!(text.contains("All tests passed"), "{text}");
    assert!(text.matches("[pass]").count() >= 27, "{text}");
}

#[test]
fn memcaslap_get_set_mix_runs_without_errors() {
    // The other transmit path: an io_uring `Send` per frame (memccapable runs the default).
    let (ns, child) = server("mcslap", &["--tx", "send"]);
    // 20 000 operations (90 % get, 10 % set), 16 connections, 10 % of gets verified.
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name(), "memcaslap", "-s", "198.18.0.2:11211"])
        .args(["-x", "20000", "-T", "1", "-c", "16", "--verify=0.1"])
        .output()
        .expect("memcaslap (scripts/setup.sh installs libmemcached-tools)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    stop(child);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Ops: 20000"), "{text}");
    assert!(!text.contains("ERROR"), "error replies: {text}");
    assert!(text.contains("cmd_get: 18000") && text.contains("get_misses: 0"), "{text}");
}

#[test]
fn an_unknown_transmit_mode_is_refused() {
    let out = Command::new(BIN).args(["--iface", "va", "--tx", "carrier-pigeon"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(text.contains("invalid value 'carrier-pigeon' for '--tx <TX>'"), "{text}");
    assert!(text.contains("[possible values: ring, send]"), "{text}");
}

#[test]
fn error_paths_end_as_memcacheds_do() {
    // memcached (Debian's, scripts/setup.sh installs it) on the kernel's end of the veth, our
    // server on the other: the same streams to both, the same replies expected.
    let (ns, child) = server("mcdiff", &[]);
    let mut memcached = Command::new("ip")
        .args(["netns", "exec", ns.name(), "memcached", "-u", "nobody", "-U", "0"])
        .args(["-l", "198.18.0.1", "-p", "11311"])
        .spawn()
        .expect("memcached");
    std::thread::sleep(std::time::Duration::from_millis(300)); // it binds
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/memcached_diff.py");
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name(), "python3", script, "198.18.0.2", "198.18.0.1", "11311"])
        .output()
        .expect("python3");
    let _ = memcached.kill();
    let _ = memcached.wait();
    stop(child);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("differ 0"), "{said}");
}
