//! UDP on a worker's stack: bind a port, send datagrams to any address, receive them with
//! their sender. Datagrams that find the receive queue full are dropped by smoltcp (UDP's
//! contract); a full send queue is reported, not dropped.

use std::net::SocketAddrV4;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::udp;
use smoltcp::wire::IpAddress;

use crate::NetError;
use crate::stack::Stack;
use crate::wire::Wire;

/// A bound UDP socket, by handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpSock(SocketHandle);

/// Datagrams queued per direction and socket.
const DATAGRAMS: usize = 64;

impl<L: Wire> Stack<L> {
    /// Binds a UDP socket to `port` with room for 64 datagrams and `buffer_bytes` of payload
    /// each way.
    pub fn udp_bind(&mut self, port: u16, buffer_bytes: usize) -> Result<UdpSock, NetError> {
        if port == 0 {
            return Err(NetError::Invalid("UDP port must be non-zero"));
        }
        // smoltcp would let two sockets bind one port (and deliver to the first): refuse.
        let taken = self.misc.iter().any(|(_, socket)| {
            matches!(socket, smoltcp::socket::Socket::Udp(udp) if udp.endpoint().port == port)
        });
        if taken {
            return Err(NetError::AddrInUse);
        }
        let buffer = || {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; DATAGRAMS],
                vec![0; buffer_bytes],
            )
        };
        let mut socket = udp::Socket::new(buffer(), buffer());
        socket.bind(port).map_err(|_| NetError::AddrInUse)?;
        Ok(UdpSock(self.misc.add(socket)))
    }

    fn udp(&mut self, sock: UdpSock) -> Result<&mut udp::Socket<'static>, NetError> {
        self.misc.iter_mut().find(|(h, _)| *h == sock.0).ok_or(NetError::NoSuchConn)?;
        Ok(self.misc.get_mut::<udp::Socket>(sock.0))
    }

    /// Queues one datagram to `to`. `Ok(false)`: the send queue is full, try after a poll.
    pub fn udp_send_to(
        &mut self,
        sock: UdpSock,
        data: &[u8],
        to: SocketAddrV4,
    ) -> Result<bool, NetError> {
        let endpoint = (IpAddress::Ipv4(*to.ip()), to.port());
        match self.udp(sock)?.send_slice(data, endpoint) {
            Ok(()) => {
                self.misc_due = true;
                Ok(true)
            }
            Err(udp::SendError::BufferFull) => Ok(false),
            Err(udp::SendError::Unaddressable) => Err(NetError::Invalid("unaddressable datagram")),
        }
    }

    /// The next datagram (its length, truncated to `buf`, and its sender), if one arrived.
    pub fn udp_recv_from(
        &mut self,
        sock: UdpSock,
        buf: &mut [u8],
    ) -> Result<Option<(usize, SocketAddrV4)>, NetError> {
        match self.udp(sock)?.recv_slice(buf) {
            Ok((n, meta)) => {
                let IpAddress::Ipv4(ip) = meta.endpoint.addr;
                Ok(Some((n, SocketAddrV4::new(ip, meta.endpoint.port))))
            }
            Err(udp::RecvError::Exhausted) => Ok(None),
            Err(udp::RecvError::Truncated) => {
                Err(NetError::Invalid("datagram larger than the buffer"))
            }
        }
    }

    /// Wakes `waker` when a datagram arrives on `sock` (once; register again after a wake).
    pub fn udp_register_recv_waker(
        &mut self,
        sock: UdpSock,
        waker: &std::task::Waker,
    ) -> Result<(), NetError> {
        self.udp(sock)?.register_recv_waker(waker);
        Ok(())
    }

    /// Wakes `waker` when `sock`'s send queue has room again (once).
    pub fn udp_register_send_waker(
        &mut self,
        sock: UdpSock,
        waker: &std::task::Waker,
    ) -> Result<(), NetError> {
        self.udp(sock)?.register_send_waker(waker);
        Ok(())
    }

    /// Closes and forgets a UDP socket.
    pub fn udp_close(&mut self, sock: UdpSock) {
        if self.udp(sock).is_ok() {
            self.misc.get_mut::<udp::Socket>(sock.0).close();
            self.misc.remove(sock.0);
        }
    }
}
