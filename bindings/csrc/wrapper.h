/* What bindgen sees: the DPDK headers the backends use, then the shim's prototypes. */
#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>
#include <rte_ether.h>
#include <rte_bus_vdev.h>
#include <rte_eth_ring.h>
#include "shim.h"
