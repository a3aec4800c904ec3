//! Real HTTP clients against hyper on Wave, through a veth in a throwaway namespace: curl over
//! HTTP/1.1 and HTTP/2 (prior knowledge), a POST echoed back, then short `wrk` (HTTP/1.1) and
//! `h2load` (HTTP/2) runs in which every response must be a 200 and no request may fail.
//! The same service on tokio answers curl too (the benchmark's baseline).
//! Needs root (namespaces, AF_PACKET), curl, wrk and h2load (scripts/setup.sh installs them).

#[path = "../../../host-dp/tests/netns/mod.rs"]
mod netns;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_hyper-server");

fn run(ns: &netns::Netns, program: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name(), program])
        .args(args)
        .output()
        .expect(program);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The server, and the rest of what it says (read at the end: a closed pipe would fail its
/// last line).
struct Server {
    child: Child,
    said: BufReader<std::process::ChildStderr>,
}

/// Starts the server in `ns` with `args`; returns it once it says it serves.
fn start(ns: &netns::Netns, args: &[&str]) -> Server {
    let mut server = Command::new("ip")
        .args(["netns", "exec", ns.name(), BIN])
        .args(args)
        .args(["--seconds", "120"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("hyper-server");
    let mut lines = BufReader::new(server.stderr.take().expect("stderr"));
    let mut first = String::new();
    lines.read_line(&mut first).expect("the server's first line");
    assert!(first.contains("serving HTTP/1.1 and HTTP/2"), "{first}");
    Server { child: server, said: lines }
}

fn stop(mut server: Server) {
    let pid = server.child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut server.said, &mut rest);
    let status = server.child.wait().expect("the server exits");
    assert!(status.success(), "an orderly stop: {status:?}; it said {rest}");
}

/// The number after `label` in `text` (e.g. `h2load`'s "succeeded," count).
fn number_before(text: &str, label: &str) -> u64 {
    let at = text.find(label).unwrap_or_else(|| panic!("no `{label}` in {text}"));
    let digits: String =
        text[..at].trim_end().chars().rev().take_while(char::is_ascii_digit).collect();
    digits.chars().rev().collect::<String>().parse().unwrap_or_else(|_| panic!("{text}"))
}

#[test]
fn curl_wrk_and_h2load_get_every_answer_from_hyper_on_wave() {
    let ns = netns::Netns::with_veth_pair("hyper");
    run(&ns, "ip", &["addr", "add", "198.18.0.1/24", "dev", "vb"]);
    run(&ns, "ethtool", &["-K", "vb", "tx", "off"]);
    let server = start(&ns, &["--iface", "va", "--ip", "198.18.0.2/24", "--workers", "2"]);
    let url = "http://198.18.0.2:8080/";
    let curl = |args: &[&str]| {
        let mut all = vec!["-sS", "--max-time", "20"];
        all.extend_from_slice(args);
        run(&ns, "curl", &all)
    };
    assert_eq!(curl(&[url]), "hello from hyper\n");
    let head = curl(&["-i", url]);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let h2 = curl(&["--http2-prior-knowledge", "-w", " %{http_version}", url]);
    assert_eq!(h2, "hello from hyper\n 2");
    let echoed = curl(&["--data-binary", "echo me through Wave", "http://198.18.0.2:8080/echo"]);
    assert_eq!(echoed, "echo me through Wave");
    let big = curl(&["--http2-prior-knowledge", "http://198.18.0.2:8080/bytes/300000"]);
    assert_eq!(big.len(), 300_000);

    let wrk = run(&ns, "wrk", &["-t1", "-c8", "-d2s", "--timeout", "5s", url]);
    assert!(!wrk.contains("Non-2xx"), "every wrk response is a 200: {wrk}");
    assert!(!wrk.contains("Socket errors"), "no wrk socket errors: {wrk}");
    assert!(number_before(&wrk, "requests in") > 100, "{wrk}");

    let h2load = run(&ns, "h2load", &["-n", "4000", "-c", "8", "-m", "4", url]);
    assert_eq!(number_before(&h2load, "2xx"), 4000, "every h2load response is a 200: {h2load}");
    assert!(h2load.contains("4000 succeeded, 0 failed, 0 errored"), "{h2load}");
    stop(server);
}

#[test]
fn the_same_service_answers_on_tokio_over_kernel_tcp() {
    let ns = netns::Netns::with_veth_pair("hyper-tokio");
    run(&ns, "ip", &["addr", "add", "198.18.0.1/24", "dev", "vb"]);
    let server = start(&ns, &["--runtime", "tokio", "--listen", "198.18.0.1", "--port", "8081"]);
    let plain = run(&ns, "curl", &["-sS", "--max-time", "20", "http://198.18.0.1:8081/"]);
    assert_eq!(plain, "hello from hyper\n");
    let h2 = run(&ns, "curl", &["-sS", "--http2-prior-knowledge", "http://198.18.0.1:8081/"]);
    assert_eq!(h2, "hello from hyper\n");
    stop(server);
}
