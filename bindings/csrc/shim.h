/* Non-inline wrappers for DPDK's `static inline` fast-path functions and macros, which
 * bindgen cannot bind. Each is a one-line call of the DPDK function without the trailing
 * underscore; see shim.c. */
#ifndef WAVE_DPDK_SHIM_H
#define WAVE_DPDK_SHIM_H
#include <stdint.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

uint16_t rte_eth_rx_burst_(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t rte_eth_tx_burst_(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
struct rte_mbuf *rte_pktmbuf_alloc_(struct rte_mempool *pool);
int rte_pktmbuf_alloc_bulk_(struct rte_mempool *pool, struct rte_mbuf **mbufs, unsigned count);
void rte_pktmbuf_free_(struct rte_mbuf *m);
char *rte_pktmbuf_append_(struct rte_mbuf *m, uint16_t len);
int rte_pktmbuf_trim_(struct rte_mbuf *m, uint16_t len);
void *rte_pktmbuf_mtod_(struct rte_mbuf *m);
uint16_t rte_pktmbuf_data_len_(const struct rte_mbuf *m);
uint32_t rte_pktmbuf_pkt_len_(const struct rte_mbuf *m);
uint16_t rte_pktmbuf_tailroom_(const struct rte_mbuf *m);
uint16_t rte_pktmbuf_data_room_size_(struct rte_mempool *pool);
int rte_errno_(void);
unsigned rte_ring_enqueue_burst_(struct rte_ring *r, void *const *objs, unsigned n);
unsigned rte_ring_dequeue_burst_(struct rte_ring *r, void **objs, unsigned n);
unsigned rte_mempool_avail_count_(const struct rte_mempool *pool);
#endif
