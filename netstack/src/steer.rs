//! What flow steering needs from the wire, without a stack: classify a received frame by the
//! flow it belongs to, answer a refused SYN with a RST, and build the ARP reply that teaches a
//! stack a neighbour it was told about.
//!
//! Steering runs before any stack sees the frame, so it trusts nothing: every length is
//! checked (smoltcp's `new_checked`), and a frame that does not parse is `Malformed`.

use std::net::{Ipv4Addr, SocketAddrV4};

use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, IpProtocol,
    Ipv4Packet, TcpPacket, UdpPacket,
};

/// A received frame, by where it should go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameClass {
    /// An ARP request: one stack answers.
    ArpRequest,
    /// An ARP reply: every stack learns from it.
    ArpReply,
    /// A TCP segment of the flow (`local_port`, `remote`).
    Tcp {
        /// Our port.
        local_port: u16,
        /// The peer.
        remote: SocketAddrV4,
        /// SYN without ACK: a connection attempt.
        syn: bool,
        /// RST set.
        rst: bool,
    },
    /// A UDP datagram to `local_port`.
    Udp {
        /// Our port.
        local_port: u16,
    },
    /// Anything else that parses (ICMP, IP fragments after the first, other protocols).
    Other,
    /// Too short or inconsistent to parse.
    Malformed,
}

/// Classifies an Ethernet frame.
pub fn classify(frame: &[u8]) -> FrameClass {
    let Ok(eth) = EthernetFrame::new_checked(frame) else { return FrameClass::Malformed };
    match eth.ethertype() {
        EthernetProtocol::Arp => match ArpPacket::new_checked(eth.payload()) {
            Ok(arp) => match arp.operation() {
                ArpOperation::Request => FrameClass::ArpRequest,
                ArpOperation::Reply => FrameClass::ArpReply,
                ArpOperation::Unknown(_) => FrameClass::Other,
            },
            Err(_) => FrameClass::Malformed,
        },
        EthernetProtocol::Ipv4 => classify_ipv4(eth.payload()),
        _ => FrameClass::Other,
    }
}

fn classify_ipv4(packet: &[u8]) -> FrameClass {
    let Ok(ip) = Ipv4Packet::new_checked(packet) else { return FrameClass::Malformed };
    if ip.version() != 4 || usize::from(ip.header_len()) < IPV4_HEADER {
        return FrameClass::Malformed;
    }
    if ip.frag_offset() != 0 || ip.more_frags() {
        return FrameClass::Other; // fragments: reassembled by the default stack
    }
    let src = ip.src_addr();
    match ip.next_header() {
        IpProtocol::Tcp => match TcpPacket::new_checked(ip.payload()) {
            Ok(tcp) => FrameClass::Tcp {
                local_port: tcp.dst_port(),
                remote: SocketAddrV4::new(src, tcp.src_port()),
                syn: tcp.syn() && !tcp.ack(),
                rst: tcp.rst(),
            },
            Err(_) => FrameClass::Malformed,
        },
        IpProtocol::Udp => match UdpPacket::new_checked(ip.payload()) {
            Ok(udp) => FrameClass::Udp { local_port: udp.dst_port() },
            Err(_) => FrameClass::Malformed,
        },
        _ => FrameClass::Other,
    }
}

const ETH_HEADER: usize = 14;
const IPV4_HEADER: usize = 20;
const TCP_HEADER: usize = 20;
// The same lengths in the header fields' own types.
const IPV4_HEADER_U8: u8 = 20;
const TCP_HEADER_U8: u8 = 20;
const IPV4_TCP_LEN_U16: u16 = 40;
/// The shortest Ethernet frame without its FCS.
const ETH_MIN: usize = 60;

/// Writes into `out` the RST|ACK that refuses the connection attempt `syn` (a frame that
/// [`classify`] called a SYN), and returns its length; `None` if `syn` is not one or `out` is
/// too small. Checksums are filled.
pub fn rst_for_syn(syn: &[u8], out: &mut [u8]) -> Option<usize> {
    let eth = EthernetFrame::new_checked(syn).ok()?;
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    if !tcp.syn() || tcp.ack() || out.len() < ETH_MIN {
        return None;
    }
    // The SYN occupies one sequence number, plus any data it carried.
    let segment_len = ip.payload().len() - usize::from(tcp.header_len()) + 1;
    let ack = tcp.seq_number() + segment_len;
    let (our_ip, peer_ip) = (ip.dst_addr(), ip.src_addr());
    let (our_port, peer_port) = (tcp.dst_port(), tcp.src_port());
    let (our_mac, peer_mac) = (eth.dst_addr(), eth.src_addr());

    out[..ETH_MIN].fill(0);
    let mut reply = EthernetFrame::new_unchecked(&mut out[..ETH_MIN]);
    reply.set_dst_addr(peer_mac);
    reply.set_src_addr(our_mac);
    reply.set_ethertype(EthernetProtocol::Ipv4);
    let mut ip_out = Ipv4Packet::new_unchecked(reply.payload_mut());
    ip_out.set_version(4);
    ip_out.set_header_len(IPV4_HEADER_U8);
    ip_out.set_total_len(IPV4_TCP_LEN_U16);
    ip_out.set_dont_frag(true);
    ip_out.set_hop_limit(64);
    ip_out.set_next_header(IpProtocol::Tcp);
    ip_out.set_src_addr(our_ip);
    ip_out.set_dst_addr(peer_ip);
    ip_out.fill_checksum();
    let mut tcp_out = TcpPacket::new_unchecked(&mut ip_out.payload_mut()[..TCP_HEADER]);
    tcp_out.set_src_port(our_port);
    tcp_out.set_dst_port(peer_port);
    tcp_out.set_seq_number(smoltcp::wire::TcpSeqNumber(0));
    tcp_out.set_ack_number(ack);
    tcp_out.set_header_len(TCP_HEADER_U8);
    tcp_out.clear_flags();
    tcp_out.set_rst(true);
    tcp_out.set_ack(true);
    tcp_out.fill_checksum(&our_ip.into(), &peer_ip.into());
    Some(ETH_MIN)
}

/// An ARP reply from `neighbor` (`neighbor_mac`) to a stack at `ip` (`mac`): delivered to
/// that stack, it fills the stack's neighbour cache as if the neighbour had answered.
pub fn arp_reply_from(
    neighbor: Ipv4Addr,
    neighbor_mac: [u8; 6],
    ip: Ipv4Addr,
    mac: [u8; 6],
) -> Vec<u8> {
    let mut frame = vec![0u8; ETH_MIN];
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.set_dst_addr(EthernetAddress(mac));
    eth.set_src_addr(EthernetAddress(neighbor_mac));
    eth.set_ethertype(EthernetProtocol::Arp);
    let repr = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: EthernetAddress(neighbor_mac),
        source_protocol_addr: neighbor,
        target_hardware_addr: EthernetAddress(mac),
        target_protocol_addr: ip,
    };
    repr.emit(&mut ArpPacket::new_unchecked(
        &mut frame[ETH_HEADER..ETH_HEADER + repr.buffer_len()],
    ));
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_malformed_or_other_and_never_panics() {
        assert_eq!(classify(&[]), FrameClass::Malformed);
        assert_eq!(classify(&[0; 13]), FrameClass::Malformed);
        let mut frame = [0u8; 40];
        frame[12..14].copy_from_slice(&[0x08, 0x00]); // IPv4 with a zero header
        assert_eq!(classify(&frame), FrameClass::Malformed);
        frame[12..14].copy_from_slice(&[0x86, 0xdd]); // IPv6: not ours
        assert_eq!(classify(&frame), FrameClass::Other);
        assert_eq!(rst_for_syn(&frame, &mut [0; 60]), None);
    }

    #[test]
    fn arp_reply_classifies_as_a_reply() {
        let ip = Ipv4Addr::new(198, 18, 0, 2);
        let frame = arp_reply_from(Ipv4Addr::new(198, 18, 0, 1), [2, 0, 0, 0, 0, 1], ip, [2; 6]);
        assert_eq!(classify(&frame), FrameClass::ArpReply);
    }
}
