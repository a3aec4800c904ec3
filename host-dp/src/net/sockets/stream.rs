//! One TCP connection owned by a task: poll methods, async methods over them, and the
//! standard async I/O traits (`futures_io`, and tokio's with the `tokio` feature).

use std::future::poll_fn;
use std::io;
use std::net::SocketAddrV4;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use netstack::{Conn, NetError, Wire};

use super::{AnyPort, NetRuntime, NetWorker};

/// One TCP connection, owned by a task. Dropping it closes the connection as a Linux `close`
/// does (SO_LINGER off): what is queued is still sent, then a FIN, and the stack finishes the
/// close in the background. [`TcpStream::close`] does the same and waits until the peer
/// acknowledged everything; [`TcpStream::abort`] resets the connection instead.
#[derive(Debug)]
pub struct TcpStream<L: Wire = AnyPort> {
    net: Arc<NetRuntime<L>>,
    worker: usize,
    conn: Option<Conn>,
}

impl<L: Wire> TcpStream<L> {
    pub(super) fn new(net: Arc<NetRuntime<L>>, worker: usize, conn: Conn) -> TcpStream<L> {
        TcpStream { net, worker, conn: Some(conn) }
    }

    fn with<T>(&self, f: impl FnOnce(&mut NetWorker<L>, Conn) -> T) -> Result<T, NetError> {
        let conn = self.conn.ok_or(NetError::NoSuchConn)?;
        Ok(f(&mut self.net.stack(self.worker), conn))
    }

    /// Reads what has arrived into `buf`, or registers `cx` to be woken when more arrives.
    /// `Ok(0)` at the end of the stream (the peer closed its side) or for an empty `buf`.
    pub fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.poll_recv(cx, buf).map_err(io::Error::from)
    }

    fn poll_recv(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Result<usize, NetError>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let polled = self.with(|stack, conn| match stack.stack().recv(conn, buf) {
            Ok(0) => match stack.stack().register_recv_waker(conn, cx.waker()) {
                Ok(()) => Poll::Pending,
                Err(error) => Poll::Ready(Err(error)),
            },
            Ok(n) => Poll::Ready(Ok(n)),
            Err(NetError::Closed) => Poll::Ready(Ok(0)),
            Err(error) => Poll::Ready(Err(error)),
        });
        polled.unwrap_or_else(|error| Poll::Ready(Err(error)))
    }

    /// Queues as much of `data` as fits and returns how much, or registers `cx` to be woken
    /// when there is room. `Ok(0)` only for an empty `data`.
    pub fn poll_write(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_send(cx, data).map_err(io::Error::from)
    }

    fn poll_send(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<Result<usize, NetError>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let polled = self.with(|stack, conn| match stack.stack().send(conn, data) {
            Ok(0) => match stack.stack().register_send_waker(conn, cx.waker()) {
                Ok(()) => Poll::Pending,
                Err(error) => Poll::Ready(Err(error)),
            },
            other => Poll::Ready(other),
        });
        polled.unwrap_or_else(|error| Poll::Ready(Err(error)))
    }

    /// Always ready: what is queued leaves at the owning worker's next poll, as soon as the
    /// peer's window allows (no user-space buffer to flush).
    pub fn poll_flush(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Ends our side: a FIN follows what is queued (`shutdown(SHUT_WR)`). Reading goes on
    /// until the peer closes its side.
    pub fn poll_shutdown(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.shutdown().map_err(io::Error::from))
    }

    /// Reads what has arrived into `buf`, waiting for at least one byte; 0 at the end of the
    /// stream (the peer closed its side).
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, NetError> {
        poll_fn(|cx| self.poll_recv(cx, buf)).await
    }

    /// Queues as much of `data` as fits, waiting for room for at least one byte.
    pub async fn write(&mut self, data: &[u8]) -> Result<usize, NetError> {
        poll_fn(|cx| self.poll_send(cx, data)).await
    }

    /// Queues all of `data`.
    pub async fn write_all(&mut self, mut data: &[u8]) -> Result<(), NetError> {
        while !data.is_empty() {
            let n = self.write(data).await?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Ends our side (a FIN after what is queued) and keeps reading what the peer still sends;
    /// [`TcpStream::close`] (or dropping the stream) finishes.
    pub fn shutdown(&mut self) -> Result<(), NetError> {
        self.with(|stack, conn| stack.stack().close(conn))?
    }

    /// Overrides the RPC defaults for this connection (Nagle's algorithm, a delayed-ACK timer).
    pub fn set_coalescing(
        &mut self,
        nagle: bool,
        ack_delay: Option<std::time::Duration>,
    ) -> Result<(), NetError> {
        self.with(|stack, conn| stack.stack().set_coalescing(conn, nagle, ack_delay))?
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Result<SocketAddrV4, NetError> {
        self.with(|stack, conn| stack.stack().peer(conn))??.ok_or(NetError::NoSuchConn)
    }

    /// Our address.
    pub fn local_addr(&self) -> Result<SocketAddrV4, NetError> {
        self.with(|stack, conn| stack.stack().local(conn))??.ok_or(NetError::NoSuchConn)
    }

    /// Which stack (worker) owns the connection.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// Sends what is queued, then a FIN, and waits until the peer acknowledged all of it (or
    /// reset the connection); then releases it.
    pub async fn close(mut self) -> Result<(), NetError> {
        self.with(|stack, conn| stack.stack().close(conn))??;
        poll_fn(|cx| {
            self.with(|stack, conn| match stack.stack().finished(conn) {
                Ok(true) | Err(_) => Poll::Ready(()),
                Ok(false) => {
                    // Both wakers: the state changes through either direction.
                    let _ = stack.stack().register_recv_waker(conn, cx.waker());
                    let _ = stack.stack().register_send_waker(conn, cx.waker());
                    Poll::Pending
                }
            })
            .unwrap_or(Poll::Ready(()))
        })
        .await;
        self.release();
        Ok(())
    }

    /// Resets the connection (a RST; what is queued is discarded): SO_LINGER with a zero
    /// timeout.
    pub fn abort(mut self) {
        if let Some(conn) = self.conn.take() {
            self.net.stack(self.worker).abort(conn);
        }
    }

    /// Closes our side if it is still open, and hands the connection to the stack to finish.
    fn release(&mut self) {
        if let Some(conn) = self.conn.take() {
            let mut stack = self.net.stack(self.worker);
            // A FIN after what is queued; nothing if our side is closed already.
            let _ = stack.stack().close(conn);
            stack.release(conn);
        }
    }
}

impl<L: Wire> Drop for TcpStream<L> {
    fn drop(&mut self) {
        self.release();
    }
}

impl<L: Wire> futures_io::AsyncRead for TcpStream<L> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        TcpStream::poll_read(self.get_mut(), cx, buf)
    }
}

impl<L: Wire> futures_io::AsyncWrite for TcpStream<L> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        TcpStream::poll_write(self.get_mut(), cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_flush(self.get_mut(), cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_shutdown(self.get_mut(), cx)
    }
}

#[cfg(feature = "tokio")]
impl<L: Wire> tokio::io::AsyncRead for TcpStream<L> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let unfilled = buf.initialize_unfilled();
        match TcpStream::poll_read(self.get_mut(), cx, unfilled) {
            Poll::Ready(Ok(n)) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(feature = "tokio")]
impl<L: Wire> tokio::io::AsyncWrite for TcpStream<L> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        TcpStream::poll_write(self.get_mut(), cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_flush(self.get_mut(), cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_shutdown(self.get_mut(), cx)
    }
}
