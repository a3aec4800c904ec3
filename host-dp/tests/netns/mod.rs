//! Throwaway network namespaces for tests: a namespace holding both ends of a veth pair, with
//! IPv6 off so the kernel adds no traffic of its own, removed when the guard drops. Test code
//! runs inside it on a thread that entered the namespace (`setns` is per thread).
#![allow(dead_code, unreachable_pub)]

use std::process::Command;

/// A namespace `wave-<tag>-<pid>` with veth ends `va` and `vb`, both up.
pub struct Netns {
    name: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {} failed: {} (network tests need root and iproute2; scripts/setup.sh installs it)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

impl Netns {
    pub fn with_veth_pair(tag: &str) -> Netns {
        reap_orphans();
        let name = format!("wave-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output(); // leftovers
        ip(&["netns", "add", &name]);
        let guard = Netns { name };
        let ns = guard.name.as_str();
        for key in ["all", "default"] {
            let setting = format!("net.ipv6.conf.{key}.disable_ipv6=1");
            ip(&["netns", "exec", ns, "sysctl", "-qw", &setting]);
        }
        ip(&["-n", ns, "link", "add", "va", "type", "veth", "peer", "name", "vb"]);
        for link in ["lo", "va", "vb"] {
            ip(&["-n", ns, "link", "set", link, "up"]);
        }
        guard
    }

    /// The namespace's name (for `ip -n` and `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Creates bridge `name` in the namespace with `ports` enslaved, everything up.
    pub fn bridge(&self, name: &str, ports: &[&str]) {
        let ns = self.name.as_str();
        ip(&["-n", ns, "link", "add", name, "type", "bridge"]);
        for port in ports {
            ip(&["-n", ns, "link", "set", port, "master", name]);
            ip(&["-n", ns, "link", "set", port, "up"]);
        }
        ip(&["-n", ns, "link", "set", name, "up"]);
    }

    /// Runs `body` on a thread inside the namespace.
    pub fn run<R: Send>(&self, body: impl FnOnce() -> R + Send) -> R {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let file = std::fs::File::open(&path).expect("open the namespace");
                    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
                        .expect("enter the namespace");
                    body()
                })
                .join()
                .expect("test body panicked")
        })
    }
}

/// A tcpdump capture of TCP on one interface of a namespace, started by [`Netns::capture`].
pub struct Capture {
    child: std::process::Child,
    file: std::path::PathBuf,
}

/// What a capture saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    /// Segments with FIN.
    pub fins: usize,
    /// Segments with RST.
    pub resets: usize,
}

impl Netns {
    /// Captures TCP on `iface` (tcpdump, from scripts/setup.sh) until [`Capture::finish`].
    pub fn capture(&self, iface: &str) -> Capture {
        let file = std::env::temp_dir().join(format!("{}-{iface}.pcap", self.name));
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, "tcpdump", "-i", iface, "-U", "-w"])
            .arg(&file)
            .arg("tcp")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("tcpdump");
        let mut capture = Capture { child, file };
        // tcpdump says "listening on" once it captures.
        let mut said = String::new();
        let stderr = capture.child.stderr.as_mut().expect("tcpdump's stderr");
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stderr), &mut said);
        assert!(said.contains("listening on"), "tcpdump: {said}");
        capture
    }
}

impl Capture {
    /// Stops the capture and counts the segments with FIN and with RST.
    pub fn finish(mut self) -> Flags {
        std::thread::sleep(std::time::Duration::from_millis(200)); // the last segments
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let _ = self.child.wait();
        let count = |filter: &str| {
            let out = Command::new("tcpdump")
                .args(["-n", "-r"])
                .arg(&self.file)
                .arg(filter)
                .output()
                .expect("tcpdump -r");
            String::from_utf8_lossy(&out.stdout).lines().count()
        };
        let flags = Flags {
            fins: count("tcp[tcpflags] & tcp-fin != 0"),
            resets: count("tcp[tcpflags] & tcp-rst != 0"),
        };
        let _ = std::fs::remove_file(&self.file);
        flags
    }
}

/// Deletes `wave-*-<pid>` namespaces whose process is gone (a test killed before its guard
/// could drop).
fn reap_orphans() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name.strip_prefix("wave-").and_then(|rest| rest.rsplit('-').next()) else {
            continue;
        };
        let alive = pid
            .parse::<u32>()
            .is_ok_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}
