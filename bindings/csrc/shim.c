/* See shim.h. Compiled by build.rs with the cflags of libdpdk. */
#include <rte_config.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>
#include "shim.h"

uint16_t rte_eth_rx_burst_(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{ return rte_eth_rx_burst(port, queue, pkts, n); }
uint16_t rte_eth_tx_burst_(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{ return rte_eth_tx_burst(port, queue, pkts, n); }
struct rte_mbuf *rte_pktmbuf_alloc_(struct rte_mempool *pool) { return rte_pktmbuf_alloc(pool); }
int rte_pktmbuf_alloc_bulk_(struct rte_mempool *pool, struct rte_mbuf **mbufs, unsigned count)
{ return rte_pktmbuf_alloc_bulk(pool, mbufs, count); }
void rte_pktmbuf_free_(struct rte_mbuf *m) { rte_pktmbuf_free(m); }
char *rte_pktmbuf_append_(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_append(m, len); }
int rte_pktmbuf_trim_(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_trim(m, len); }
void *rte_pktmbuf_mtod_(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, void *); }
uint16_t rte_pktmbuf_data_len_(const struct rte_mbuf *m) { return rte_pktmbuf_data_len(m); }
uint32_t rte_pktmbuf_pkt_len_(const struct rte_mbuf *m) { return rte_pktmbuf_pkt_len(m); }
uint16_t rte_pktmbuf_tailroom_(const struct rte_mbuf *m) { return rte_pktmbuf_tailroom(m); }
uint16_t rte_pktmbuf_data_room_size_(struct rte_mempool *pool)
{ return rte_pktmbuf_data_room_size(pool); }
int rte_errno_(void) { return rte_errno; }
unsigned rte_ring_enqueue_burst_(struct rte_ring *r, void *const *objs, unsigned n)
{ return rte_ring_enqueue_burst(r, objs, n, NULL); }
unsigned rte_ring_dequeue_burst_(struct rte_ring *r, void **objs, unsigned n)
{ return rte_ring_dequeue_burst(r, objs, n, NULL); }
unsigned rte_mempool_avail_count_(const struct rte_mempool *pool)
{ return rte_mempool_avail_count(pool); }
