//! `rpc-server`: a key-value server speaking the memcached text protocol on Wave: async tasks
//! on `host-dp`'s runtime, one `netstack` stack per worker behind one port, connection control
//! by `ipu-cp` (local, on-host or offloaded).
//!
//! - [`protocol`]: parsing requests (get/gets/set/add/replace/append/prepend/cas/delete/incr/
//!   decr/touch/flush_all/version/stats/verbosity/quit, `noreply`, memcached's error replies).
//! - [`store`]: the sharded store (CAS, expiry, a memory bound).
//! - [`session`]: one client's bytes in, replies out.
//! - [`serve`]: a session on a connection of the runtime.

pub mod app;
pub mod backend;
pub mod protocol;
pub mod session;
pub mod store;

use std::sync::Arc;

use host_dp::net::TcpStream;
use netstack::Wire;

/// The Unix time in seconds (the server's clock, read at the edge: once per batch of bytes).
pub fn unix_now_s() -> i64 {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_secs()).unwrap_or(i64::MAX)
}

/// Items a scan hands over between two preempt points. A chunk must take well under the
/// time slice for the slice to mean anything (with a 30 µs slice, 16 `rocksdb-server` items
/// fit and 64 did not: `docs/results/rocksdb.md`); each chunk costs one more seek.
const SCAN_CHUNK: usize = 16;

/// Serves one connection until the client leaves, quits, or breaks the framing. A `scan` runs
/// in chunks with a preempt point between them, so a long one yields its worker when its time
/// slice is up (or the agent asks) instead of holding it until it ends.
pub async fn serve<L: Wire, B: backend::Backend>(
    mut stream: TcpStream<L>,
    store: Arc<B>,
    value_max: usize,
) {
    let mut session = session::Session::new(store.clone(), value_max, unix_now_s()).defer_scans();
    let mut buf = vec![0u8; 16 * 1024];
    let mut out = Vec::with_capacity(16 * 1024);
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut open = session.feed(&buf[..n], unix_now_s(), &mut out);
        while let Some((start, count)) = session.take_scan() {
            scan_in_chunks(&*store, start, count, &mut out).await;
            open = session.feed(&[], unix_now_s(), &mut out);
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                break;
            }
            out.clear();
        }
        if !open {
            break;
        }
    }
    let _ = stream.close().await;
}

/// Appends a `scan`'s reply to `out`, `SCAN_CHUNK` items at a time with a preempt point
/// between chunks.
async fn scan_in_chunks<B: backend::Backend>(
    store: &B,
    mut start: Vec<u8>,
    mut left: usize,
    out: &mut Vec<u8>,
) {
    while left > 0 {
        let asked = left.min(SCAN_CHUNK);
        let Some(items) = store.scan(&start, asked, unix_now_s()) else {
            out.extend_from_slice(b"ERROR\r\n");
            return;
        };
        let got = items.len();
        for (key, value, flags) in &items {
            out.extend_from_slice(b"VALUE ");
            out.extend_from_slice(key);
            out.extend_from_slice(format!(" {flags} {}\r\n", value.len()).as_bytes());
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        left -= got;
        let Some((last, _, _)) = items.last() else { break };
        if got < asked {
            break; // no more keys
        }
        // The next chunk starts just after the last key: the smallest key above it.
        start = last.clone();
        start.push(0);
        host_dp::runtime::preempt_point().await;
    }
    out.extend_from_slice(b"END\r\n");
}
