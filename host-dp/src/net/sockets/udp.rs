//! A UDP socket on one stack, owned by a task: poll methods and async methods over them.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::task::{Context, Poll};

use netstack::{NetError, UdpSock, Wire};

use super::{AnyPort, NetRuntime, NetWorker};

/// A UDP socket on one stack, owned by a task. Dropping it closes it, discarding datagrams
/// still queued to send (they leave at the stack's next poll; keep the socket until then).
#[derive(Debug)]
pub struct UdpSocket<L: Wire = AnyPort> {
    net: Arc<NetRuntime<L>>,
    worker: usize,
    sock: Option<UdpSock>,
    local: SocketAddrV4,
}

impl<L: Wire> UdpSocket<L> {
    pub(super) fn new(
        net: Arc<NetRuntime<L>>,
        worker: usize,
        sock: UdpSock,
        local: SocketAddrV4,
    ) -> UdpSocket<L> {
        UdpSocket { net, worker, sock: Some(sock), local }
    }

    fn with<T>(&self, f: impl FnOnce(&mut NetWorker<L>, UdpSock) -> T) -> Result<T, NetError> {
        let sock = self.sock.ok_or(NetError::NoSuchConn)?;
        Ok(f(&mut self.net.stack(self.worker), sock))
    }

    /// The next datagram into `buf` (cut to `buf`'s length): its length and sender; or
    /// registers `cx` to be woken when one arrives.
    pub fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddrV4)>> {
        self.poll_recv(cx, buf).map_err(io::Error::from)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<Result<(usize, SocketAddrV4), NetError>> {
        let polled = self.with(|stack, sock| match stack.stack().udp_recv_from(sock, buf) {
            Ok(Some(got)) => Poll::Ready(Ok(got)),
            Ok(None) => match stack.stack().udp_register_recv_waker(sock, cx.waker()) {
                Ok(()) => Poll::Pending,
                Err(error) => Poll::Ready(Err(error)),
            },
            Err(error) => Poll::Ready(Err(error)),
        });
        polled.unwrap_or_else(|error| Poll::Ready(Err(error)))
    }

    /// Queues one datagram to `to`, or registers `cx` to be woken when the send queue has
    /// room for it.
    pub fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        data: &[u8],
        to: SocketAddrV4,
    ) -> Poll<io::Result<usize>> {
        self.poll_send(cx, data, to).map_ok(|()| data.len()).map_err(io::Error::from)
    }

    fn poll_send(
        &self,
        cx: &mut Context<'_>,
        data: &[u8],
        to: SocketAddrV4,
    ) -> Poll<Result<(), NetError>> {
        let polled = self.with(|stack, sock| match stack.stack().udp_send_to(sock, data, to) {
            Ok(true) => Poll::Ready(Ok(())),
            Ok(false) => match stack.stack().udp_register_send_waker(sock, cx.waker()) {
                Ok(()) => Poll::Pending,
                Err(error) => Poll::Ready(Err(error)),
            },
            Err(error) => Poll::Ready(Err(error)),
        });
        polled.unwrap_or_else(|error| Poll::Ready(Err(error)))
    }

    /// The next datagram into `buf`: its length and sender; waits for one.
    pub async fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, SocketAddrV4), NetError> {
        poll_fn(|cx| self.poll_recv(cx, buf)).await
    }

    /// Queues one datagram to `to`, waiting for room in the send queue.
    pub async fn send_to(&self, data: &[u8], to: SocketAddrV4) -> Result<(), NetError> {
        poll_fn(|cx| self.poll_send(cx, data, to)).await
    }

    /// The address it is bound to.
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }
}

impl<L: Wire> Drop for UdpSocket<L> {
    fn drop(&mut self) {
        if let Some(sock) = self.sock.take() {
            self.net.stack(self.worker).stack().udp_close(sock);
        }
    }
}
