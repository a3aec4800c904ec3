//! `dpdk-sys`: raw bindings to DPDK 22.11 as Debian ships it, generated at build time by
//! bindgen from an allowlist (`rte_*` functions and types, `RTE_*` and `RING_F_*` constants),
//! plus `*_` wrappers (`rte_eth_rx_burst_`, `rte_pktmbuf_alloc_`, ...) for the `static inline`
//! fast-path functions bindgen cannot bind (`csrc/shim.c`).
//!
//! Place in the layers: used only by `host-dp`'s DPDK backend (cargo feature `dpdk`), which
//! wraps everything here in RAII types. Nothing in this crate is safe to call without reading
//! DPDK's documentation for that function: this crate adds no checks.
//!
//! PMDs are not linked: EAL loads them from Debian's plugin directory at `rte_eal_init`, so
//! `--vdev=net_ring0`, `net_tap`, `net_af_packet`, `net_memif` need no extra flags. The ring
//! PMD is linked directly because `rte_eth_from_rings` is called by name.
#![allow(non_upper_case_globals, non_camel_case_types, non_snake_case, missing_docs)]
#![allow(clippy::all, clippy::pedantic, unreachable_pub, missing_debug_implementations)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
