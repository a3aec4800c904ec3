//! The README's first code block is `examples/echo.rs`, word for word, and it works: run in a
//! throwaway namespace on `veth0`, it echoes 200 KB to a Python client (the kernel's TCP) on
//! each of four connections and closes each in order: a clean EOF after the client's
//! half-close, and tcpdump sees FINs both ways and no RST. Needs root (namespaces, AF_PACKET)
//! and tcpdump.

mod netns;

use std::process::{Command, Stdio};

const EXAMPLE: &str = include_str!("../examples/echo.rs");
const README: &str = include_str!("../../README.md");

/// The example without its leading `//!` lines (the README needs no crate docs).
fn example_code() -> String {
    EXAMPLE.lines().filter(|line| !line.starts_with("//!")).map(|l| format!("{l}\n")).collect()
}

/// The README's first fenced code block, and its language.
fn first_block() -> (String, String) {
    let start = README.find("```").expect("a code block");
    let rest = &README[start + 3..];
    let (language, body) = rest.split_once('\n').expect("a fence line");
    let end = body.find("```").expect("a closing fence");
    (language.trim().to_owned(), body[..end].to_owned())
}

#[test]
fn the_readmes_first_block_is_the_echo_example_of_at_most_fifteen_lines() {
    let (language, block) = first_block();
    assert_eq!(language, "rust");
    assert_eq!(block, example_code(), "README.md's first block and examples/echo.rs differ");
    assert!(block.lines().count() <= 15, "{} lines", block.lines().count());
}

fn ip(ns: &str, args: &[&str]) {
    let out = Command::new("ip").args(["-n", ns]).args(args).output().expect("ip");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_echo_example_serves_a_kernel_client_and_closes_cleanly() {
    let ns = netns::Netns::with_veth_pair("readme");
    let name = ns.name();
    ip(name, &["link", "add", "veth0", "type", "veth", "peer", "name", "veth1"]);
    ip(name, &["link", "set", "veth0", "up"]);
    ip(name, &["link", "set", "veth1", "up"]);
    ip(name, &["addr", "add", "198.18.0.1/24", "dev", "veth1"]);
    let offload = ["netns", "exec", name, "ethtool", "-K", "veth1", "tx", "off"];
    assert!(Command::new("ip").args(offload).stdout(Stdio::null()).status().unwrap().success());
    let exe = std::env::current_exe().unwrap();
    let example = exe.parent().unwrap().parent().unwrap().join("examples/echo");
    assert!(
        example.exists(),
        "{} is missing: cargo test --workspace builds it (or cargo build -p host-dp --examples)",
        example.display()
    );
    let mut server = Command::new("ip")
        .args(["netns", "exec", name])
        .arg(&example)
        .stderr(Stdio::null())
        .spawn()
        .expect("the echo example");
    let capture = ns.capture("veth1");
    let python = "import socket, time\n\
        data = bytes(i * 7 % 251 for i in range(200_000))\n\
        for attempt in range(100):\n\
        \x20   try:\n\
        \x20       socket.create_connection(('198.18.0.2', 7), timeout=1).close(); break\n\
        \x20   except OSError: time.sleep(0.1)\n\
        for conn in range(4):\n\
        \x20   s = socket.create_connection(('198.18.0.2', 7), timeout=20)\n\
        \x20   s.sendall(data)\n\
        \x20   s.shutdown(socket.SHUT_WR)\n\
        \x20   got = b''\n\
        \x20   while chunk := s.recv(65536):\n\
        \x20       got += chunk\n\
        \x20   assert got == data, (conn, len(got))\n\
        \x20   s.close()\n\
        print('echoed and closed')\n";
    let out = Command::new("ip")
        .args(["netns", "exec", name, "python3", "-c", python])
        .output()
        .expect("python3");
    let flags = capture.finish();
    let _ = server.kill();
    let _ = server.wait();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said == "echoed and closed\n",
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Each echo connection closed with a FIN both ways, and nothing was reset.
    assert_eq!(flags.resets, 0, "{flags:?}");
    assert!(flags.fins >= 2 * 4, "{flags:?}");
}
