//! curl (the kernel's TCP stack) against `wave-httpd` (ours), through a veth in a throwaway
//! namespace: two requests on one kept-alive connection, then one more; then a Python client
//! that asks to close and must see the reply end in a clean close (EOF), not a reset; bad
//! flags refused.
//! Needs root (namespaces, AF_PACKET) and curl (scripts/setup.sh installs it).

#[path = "../../../host-dp/tests/netns/mod.rs"]
mod netns;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_wave-httpd");

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

#[test]
fn curl_talks_to_a_wave_server() {
    let ns = netns::Netns::with_veth_pair("httpd");
    run("ip", &["-n", ns.name(), "addr", "add", "198.18.0.1/24", "dev", "vb"]);
    run("ip", &["netns", "exec", ns.name(), "ethtool", "-K", "vb", "tx", "off"]);
    let mut server = Command::new("ip")
        .args(["netns", "exec", ns.name(), BIN, "--iface", "va", "--ip", "198.18.0.2/24"])
        .args(["--port", "8080", "--max-requests", "4", "--seconds", "60"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("wave-httpd");
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("serving http://198.18.0.2:8080/"), "{first}");
    let curl = |urls: &[&str]| {
        let mut args = vec!["netns", "exec", ns.name(), "curl", "-sS", "--max-time", "20"];
        args.extend_from_slice(urls);
        run("ip", &args)
    };
    // Two URLs in one curl call share one kept-alive connection.
    let both = curl(&["http://198.18.0.2:8080/a", "http://198.18.0.2:8080/b"]);
    assert_eq!(both, "hello from Wave: you asked for /a\nhello from Wave: you asked for /b\n");
    let head = curl(&["-i", "http://198.18.0.2:8080/c"]);
    assert!(
        head.starts_with("HTTP/1.1 200 OK\r\n") && head.contains("Server: wave-httpd"),
        "{head}"
    );
    // A clean close: the whole reply, then EOF (a RST would raise ConnectionResetError).
    let python = "import socket\n\
        s = socket.create_connection(('198.18.0.2', 8080), timeout=20)\n\
        s.sendall(b'GET /d HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n')\n\
        data = b''\n\
        while chunk := s.recv(65536):\n    data += chunk\n\
        assert data.endswith(b'you asked for /d\\n'), data\n\
        print('eof')\n";
    let eof = run("ip", &["netns", "exec", ns.name(), "python3", "-c", python]);
    assert_eq!(eof, "eof\n");
    let status = server.wait().unwrap();
    assert!(status.success(), "wave-httpd exits after its 4 requests");
    let last = lines.map_while(Result::ok).last().unwrap_or_default();
    assert!(last.contains("stopped after 4 requests"), "{last}");
}

#[test]
fn bad_flags_are_refused_with_a_clear_message() {
    let out = Command::new(BIN).args(["--iface", "va", "--ip", "198.18.0.2"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected ADDRESS/PREFIX"));
    let out = Command::new(BIN)
        .args(["--iface", "wave-no-such-if", "--ip", "198.18.0.2/24"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("opening wave-no-such-if"));
}
