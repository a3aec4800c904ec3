//! The DPDK Environment Abstraction Layer: initialised once per process, never re-initialised
//! (DPDK refuses a second `rte_eal_init`, even after `rte_eal_cleanup`).
//!
//! Invariants: `rte_eal_init` runs at most once, under the `OnceLock`; every other DPDK call in
//! this backend requires a `&'static Eal`, so none can run before EAL is up.

use std::ffi::CString;
use std::os::raw::c_char;
use std::sync::OnceLock;

use super::DpdkError;

/// How to start EAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EalConfig {
    /// Lcores EAL may use (`-l`), e.g. "0".
    pub lcores: String,
    /// Virtual devices (`--vdev`), e.g. `net_ring0`, `net_tap0,iface=tap0`,
    /// `net_af_packet0,iface=veth0`, `net_memif0,role=server,socket=/run/memif.sock`.
    pub vdevs: Vec<String>,
    /// PCI devices to use (`-a`); empty with `pci: false` means `--no-pci`.
    pub pci_allow: Vec<String>,
    /// Probe PCI devices (real NICs bound to vfio-pci). Off on machines without them.
    pub pci: bool,
    /// Memory in MiB when no hugepages are reserved (`--no-huge -m`).
    pub memory_mb: u32,
    /// Anything else, passed through verbatim.
    pub extra: Vec<String>,
}

impl Default for EalConfig {
    fn default() -> Self {
        EalConfig {
            lcores: "0".into(),
            vdevs: Vec::new(),
            pci_allow: Vec::new(),
            pci: false,
            memory_mb: 256,
            extra: Vec::new(),
        }
    }
}

impl EalConfig {
    /// The argument vector for `rte_eal_init`. Without reserved hugepages EAL runs on plain
    /// memory (`--no-huge`); with them it runs `--in-memory`. Each process gets its own file
    /// prefix, so several DPDK processes can run at once.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["wave".to_owned(), "-l".to_owned(), self.lcores.clone()];
        if hugepages_reserved() {
            args.push("--in-memory".into());
        } else {
            args.extend(["--no-huge".into(), "-m".into(), self.memory_mb.to_string()]);
            args.push(format!("--file-prefix=wave-{}", std::process::id()));
        }
        if !self.pci {
            args.push("--no-pci".into());
        }
        for device in &self.pci_allow {
            args.extend(["-a".into(), device.clone()]);
        }
        for vdev in &self.vdevs {
            args.push(format!("--vdev={vdev}"));
        }
        args.extend(["--log-level".into(), "lib.eal:error".into()]);
        args.extend(self.extra.iter().cloned());
        args
    }
}

fn hugepages_reserved() -> bool {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let total = meminfo.lines().find_map(|l| l.strip_prefix("HugePages_Total:"));
    total.and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0) > 0
}

/// Proof that EAL is up in this process.
#[derive(Debug)]
pub struct Eal {
    config: EalConfig,
    hugepages: bool,
}

static EAL: OnceLock<Result<Eal, DpdkError>> = OnceLock::new();

impl Eal {
    /// Starts EAL with `config`, or returns the running EAL if one was started with the same
    /// config. A different config is an error: EAL cannot restart within a process.
    pub fn init(config: EalConfig) -> Result<&'static Eal, DpdkError> {
        let result = EAL.get_or_init(|| {
            start(&config).map(|hugepages| Eal { config: config.clone(), hugepages })
        });
        match result {
            Ok(eal) if eal.config == config => Ok(eal),
            Ok(_) => Err(DpdkError::EalAlreadyRunning),
            Err(error) => Err(error.clone()),
        }
    }

    /// The config EAL runs with.
    pub fn config(&self) -> &EalConfig {
        &self.config
    }

    /// Whether EAL runs on hugepages (`--in-memory`) rather than on 4 KiB pages
    /// (`--no-huge`). Packet rates differ by up to 2x between the two (TLB misses).
    pub fn hugepages(&self) -> bool {
        self.hugepages
    }
}

/// Starts EAL; returns whether it runs on hugepages.
fn start(config: &EalConfig) -> Result<bool, DpdkError> {
    let args = config.args();
    let owned: Vec<CString> = args
        .iter()
        .map(|a| CString::new(a.as_str()).map_err(|_| DpdkError::BadArgument(a.clone())))
        .collect::<Result<_, _>>()?;
    let mut argv: Vec<*mut c_char> = owned.iter().map(|a| a.as_ptr().cast_mut()).collect();
    let argc = i32::try_from(argv.len()).map_err(|_| DpdkError::BadArgument("argc".into()))?;
    // SAFETY: argv holds `argc` pointers to NUL-terminated strings that outlive the call (EAL
    // copies what it keeps); the OnceLock guarantees this runs once per process.
    let parsed = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
    if parsed < 0 {
        return Err(DpdkError::EalInit { errno: super::rte_errno(), args: args.join(" ") });
    }
    Ok(args.iter().any(|a| a == "--in-memory"))
}
