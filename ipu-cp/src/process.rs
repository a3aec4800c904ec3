//! Running the `ipu-cp` binary as a child process: what benchmarks and tests of the
//! offloaded mode do. Start it on a fresh socket, wait until it listens, read its CPU time,
//! stop it in order (SIGTERM) or kill it (fault tests).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `ipu-cp`.
#[derive(Debug)]
pub struct ControlPlane {
    /// The process.
    pub child: Child,
    /// Its socket.
    pub socket: PathBuf,
}

/// Why `ipu-cp` did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The binary could not be run.
    #[error("cannot run {path} (build it: cargo build -p ipu-cp): {source}")]
    Spawn {
        /// The binary.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It ran but never listened.
    #[error("ipu-cp did not start listening at {0} within 10 s")]
    NoSocket(PathBuf),
}

impl ControlPlane {
    /// Starts the binary at `exe` listening on a fresh socket named after this process and
    /// `tag`, with `args` added (policy flags, `--cpu`, ...); waits until the socket exists.
    /// Its output goes nowhere unless `verbose`.
    pub fn start(
        exe: &Path,
        tag: &str,
        args: &[String],
        verbose: bool,
    ) -> Result<ControlPlane, StartError> {
        let socket =
            std::env::temp_dir().join(format!("wave-cp-{}-{tag}.sock", std::process::id()));
        let _ = std::fs::remove_file(&socket);
        let mut command = Command::new(exe);
        command.arg("--socket").arg(&socket).args(args).stdout(Stdio::null());
        if !verbose {
            command.stderr(Stdio::null());
        }
        let child = command
            .spawn()
            .map_err(|source| StartError::Spawn { path: exe.to_path_buf(), source })?;
        let cp = ControlPlane { child, socket };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cp.socket.exists() {
            if Instant::now() > deadline {
                return Err(StartError::NoSocket(cp.socket.clone()));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(cp)
    }

    /// CPU time the process used so far (user + system, 10 ms resolution).
    pub fn cpu_ns(&self) -> u64 {
        crate::stat_cpu_ns(&format!("/proc/{}/stat", self.child.id())).unwrap_or(0)
    }

    /// Kills it the hard way (fault tests).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(0));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.kill();
    }
}

/// The `ipu-cp` binary built next to the running executable (see [`sibling_binary`]).
pub fn binary_next_to_exe() -> Option<PathBuf> {
    sibling_binary("ipu-cp")
}

/// The workspace binary `name` built next to the running executable: beside it, or one
/// directory up (a test or bench binary lives in `target/<profile>/deps`).
pub fn sibling_binary(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join(name), dir.parent()?.join(name)].into_iter().find(|path| path.exists())
}
