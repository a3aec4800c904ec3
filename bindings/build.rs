//! Generates the DPDK bindings with bindgen and compiles the inline-function shim.
//!
//! Needs Debian's `libdpdk-dev` (DPDK 22.11) and `libclang-dev`, both installed by
//! `scripts/setup.sh`. Without libdpdk the build stops with one line saying so.

use std::path::PathBuf;
use std::process::Command;

const MIN_VERSION: &str = "22.11";
const SETUP_HINT: &str = "run ./scripts/setup.sh (installs libdpdk-dev, libclang-dev, pkg-config)";

fn main() {
    println!("cargo:rerun-if-changed=csrc");
    println!("cargo:rerun-if-changed=build.rs");
    let library = match pkg_config::Config::new().atleast_version(MIN_VERSION).probe("libdpdk") {
        Ok(library) => library,
        Err(error) => {
            let text = error.to_string();
            let reason = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("no detail");
            eprintln!("dpdk-sys: libdpdk >= {MIN_VERSION} not found ({reason}); {SETUP_HINT}");
            std::process::exit(1);
        }
    };
    // pkg-config's parsed output keeps only -I/-D; DPDK also needs `-include rte_config.h`
    // and its -march, so pass the raw cflags, in order, to clang and to cc.
    let raw = Command::new("pkg-config").args(["--cflags", "libdpdk"]).output();
    let cflags: Vec<String> = match raw {
        Ok(out) if out.status.success() => {
            String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_owned).collect()
        }
        _ => {
            eprintln!("dpdk-sys: `pkg-config --cflags libdpdk` failed; {SETUP_HINT}");
            std::process::exit(1);
        }
    };
    // rte_eth_from_rings() lives in the ring PMD and rte_vdev_init() in the vdev bus driver;
    // EAL otherwise only dlopen()s both. Linking the same files it would load registers each
    // driver once (Debian's libs are symlinks into the plugin directory).
    println!("cargo:rustc-link-lib=rte_net_ring");
    println!("cargo:rustc-link-lib=rte_bus_vdev");

    let mut shim = cc::Build::new();
    shim.file("csrc/shim.c").include("csrc").define("ALLOW_EXPERIMENTAL_API", None);
    for flag in &cflags {
        shim.flag(flag);
    }
    for path in &library.include_paths {
        shim.include(path);
    }
    shim.warnings(false).compile("wave_dpdk_shim");

    let bindings = bindgen::Builder::default()
        .header("csrc/wrapper.h")
        .clang_args(cflags.iter())
        .clang_arg("-Icsrc")
        .clang_arg("-DALLOW_EXPERIMENTAL_API")
        .allowlist_function("rte_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*")
        .allowlist_var("RING_F_.*")
        // Both fail to derive with bindgen 0.72/0.73 (packed+aligned, Debug); we never use them.
        .opaque_type("rte_l2tpv2_combined_msg_hdr")
        .opaque_type("rte_gtp_psc_generic_hdr")
        .derive_default(true)
        .wrap_unsafe_ops(true)
        .layout_tests(false)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate();
    let bindings = match bindings {
        Ok(bindings) => bindings,
        Err(error) => {
            eprintln!(
                "dpdk-sys: bindgen failed ({error}); is libclang-dev installed? {SETUP_HINT}"
            );
            std::process::exit(1);
        }
    };
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindings.write_to_file(out.join("bindings.rs")).expect("write bindings.rs");
}
