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
use netstack::Link;

/// The Unix time in seconds (the server's clock, read at the edge: once per batch of bytes).
pub fn unix_now_s() -> i64 {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_secs()).unwrap_or(i64::MAX)
}

/// Serves one connection until the client leaves, quits, or breaks the framing.
pub async fn serve<L: Link, B: backend::Backend>(
    mut stream: TcpStream<L>,
    store: Arc<B>,
    value_max: usize,
) {
    let mut session = session::Session::new(store, value_max, unix_now_s());
    let mut buf = vec![0u8; 16 * 1024];
    let mut out = Vec::with_capacity(16 * 1024);
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let open = session.feed(&buf[..n], unix_now_s(), &mut out);
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
