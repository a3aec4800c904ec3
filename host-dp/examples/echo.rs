//! The README's echo server: Wave on `veth0` (an interface with no IP address of its own),
//! two workers, echoing what each connection sends. `host-dp/tests/readme.rs` runs it.
use host_dp::Host;
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let host = Host::builder().iface("veth0").ip("198.18.0.2/24").workers(2).build()?;
    let (listener, spawner) = (host.listen(7)?, host.handle());
    Ok(host.block_on(async move {
        while let Ok((mut stream, _peer)) = listener.accept().await {
            let _ = spawner.spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    let Ok(()) = stream.write_all(&buf[..n]).await else { break };
                }
            });
        }
    })?)
}
