//! Connection-control messages (kinds 0x20xx): listeners, new and closed connections and port
//! requests up; admission tokens, answers, port leases, neighbours and routes down.
//!
//! The host never waits for the link on a SYN when it holds a [`PlaceRepr`] token for the
//! listener: a token is one admission, already placed on a worker, prestaged in a transaction
//! slot. Without one it asks ([`ConnRequestRepr`]) and holds the SYN until the answer
//! ([`AdmitRepr`] or [`RefuseRepr`]) names the same connection id.

use core::net::Ipv4Addr;

use super::{ParseError, WorkerId, le};

/// A TCP flow as the host's single address sees it: our port, the peer's address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// Our port (the listener's, or the ephemeral one of an outgoing connection).
    pub local_port: u16,
    /// The peer's IPv4 address.
    pub remote_ip: Ipv4Addr,
    /// The peer's port.
    pub remote_port: u16,
}

impl FlowKey {
    fn parse(p: &[u8], at: usize) -> FlowKey {
        FlowKey {
            local_port: le::u16_at(p, at),
            remote_port: le::u16_at(p, at + 2),
            remote_ip: ip_at(p, at + 4),
        }
    }

    fn emit(&self, p: &mut [u8], at: usize) {
        le::put_u16(p, at, self.local_port);
        le::put_u16(p, at + 2, self.remote_port);
        p[at + 4..at + 8].copy_from_slice(&self.remote_ip.octets());
    }
}

fn ip_at(p: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(p[at], p[at + 1], p[at + 2], p[at + 3])
}

/// Why the control plane refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RefuseReason {
    /// The listener holds its maximum of connections.
    ListenerFull = 1,
    /// The listener's tenant holds its maximum of connections.
    TenantFull = 2,
    /// SYNs to the listener arrive faster than its rate limit.
    RateLimited = 3,
    /// No such listener is known to the control plane.
    NoListener = 4,
}

impl RefuseReason {
    fn from_u8(value: u8) -> Option<RefuseReason> {
        Some(match value {
            1 => RefuseReason::ListenerFull,
            2 => RefuseReason::TenantFull,
            3 => RefuseReason::RateLimited,
            4 => RefuseReason::NoListener,
            _ => return None,
        })
    }
}

/// Every connection-control message (the `Message::Net` variant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetMessage {
    /// Event 0x2001: the app's stacks are up: `workers` stacks answering for `ip`.
    Attach {
        /// Worker stacks (placement targets are `0..workers`).
        workers: u16,
        /// The address they share.
        ip: Ipv4Addr,
    },
    /// Event 0x2002: a listener opened on `port` for `tenant`.
    Listen {
        /// The port.
        port: u16,
        /// Who owns it (admission limits per tenant).
        tenant: u16,
    },
    /// Event 0x2003: the listener on `port` closed.
    Unlisten {
        /// The port.
        port: u16,
    },
    /// Event 0x2004: a SYN for which the host held no token; the host holds it until answered.
    ConnRequest {
        /// The host's id for this connection.
        conn: u64,
        /// The flow.
        flow: FlowKey,
    },
    /// Event 0x2005: the host installed `flow` on `worker` (from a token if `prestaged`).
    ConnOpened {
        /// The host's id for this connection.
        conn: u64,
        /// The flow.
        flow: FlowKey,
        /// Its worker.
        worker: WorkerId,
        /// Placed by a prestaged token, without waiting for the link.
        prestaged: bool,
    },
    /// Event 0x2006: the connection left the flow table.
    ConnClosed {
        /// The host's id for this connection.
        conn: u64,
        /// The flow.
        flow: FlowKey,
        /// Its worker.
        worker: WorkerId,
    },
    /// Event 0x2007: the host runs low on ephemeral ports and wants `count` more.
    PortsWanted {
        /// How many.
        count: u16,
    },
    /// Decision 0x2081, prestaged: one admission to `port`'s listener, placed on `worker`.
    Place {
        /// The listener's port.
        port: u16,
        /// Where the connection goes.
        worker: WorkerId,
    },
    /// Decision 0x2082: admit the held connection `conn` on `worker`.
    Admit {
        /// The host's id from the request.
        conn: u64,
        /// Where it goes.
        worker: WorkerId,
    },
    /// Decision 0x2083: refuse the held connection `conn` (the host answers the SYN with RST).
    Refuse {
        /// The host's id from the request.
        conn: u64,
        /// Why.
        reason: RefuseReason,
    },
    /// Decision 0x2084: ports `first .. first + count` are the app's for outgoing connections.
    PortLease {
        /// First port.
        first: u16,
        /// How many.
        count: u16,
    },
    /// Decision 0x2085: `ip` is at `mac` on the local network.
    Neighbor {
        /// The neighbour's address.
        ip: Ipv4Addr,
        /// Its Ethernet address.
        mac: [u8; 6],
    },
    /// Decision 0x2086: reach `prefix`/`prefix_len` through `gateway`.
    Route {
        /// Destination network.
        prefix: Ipv4Addr,
        /// Its length in bits (0: the default route).
        prefix_len: u8,
        /// The next hop.
        gateway: Ipv4Addr,
    },
}

/// Wire values of the kinds (the same as [`super::Kind`]'s).
mod kind {
    pub(super) const ATTACH: u16 = 0x2001;
    pub(super) const LISTEN: u16 = 0x2002;
    pub(super) const UNLISTEN: u16 = 0x2003;
    pub(super) const CONN_REQUEST: u16 = 0x2004;
    pub(super) const CONN_OPENED: u16 = 0x2005;
    pub(super) const CONN_CLOSED: u16 = 0x2006;
    pub(super) const PORTS_WANTED: u16 = 0x2007;
    pub(super) const PLACE: u16 = 0x2081;
    pub(super) const ADMIT: u16 = 0x2082;
    pub(super) const REFUSE: u16 = 0x2083;
    pub(super) const PORT_LEASE: u16 = 0x2084;
    pub(super) const NEIGHBOR: u16 = 0x2085;
    pub(super) const ROUTE: u16 = 0x2086;
}

/// Fails unless `p[from..]` is all zero (each message's unused tail is reserved).
fn tail(p: &[u8], from: usize) -> Result<(), ParseError> {
    if le::zero(p, from..p.len()) { Ok(()) } else { Err(ParseError::Reserved) }
}

impl NetMessage {
    /// The wire kind.
    pub(super) fn kind_u16(&self) -> u16 {
        match self {
            NetMessage::Attach { .. } => kind::ATTACH,
            NetMessage::Listen { .. } => kind::LISTEN,
            NetMessage::Unlisten { .. } => kind::UNLISTEN,
            NetMessage::ConnRequest { .. } => kind::CONN_REQUEST,
            NetMessage::ConnOpened { .. } => kind::CONN_OPENED,
            NetMessage::ConnClosed { .. } => kind::CONN_CLOSED,
            NetMessage::PortsWanted { .. } => kind::PORTS_WANTED,
            NetMessage::Place { .. } => kind::PLACE,
            NetMessage::Admit { .. } => kind::ADMIT,
            NetMessage::Refuse { .. } => kind::REFUSE,
            NetMessage::PortLease { .. } => kind::PORT_LEASE,
            NetMessage::Neighbor { .. } => kind::NEIGHBOR,
            NetMessage::Route { .. } => kind::ROUTE,
        }
    }

    pub(super) fn parse_payload(kind_value: u16, p: &[u8]) -> Result<NetMessage, ParseError> {
        let message = match kind_value {
            kind::ATTACH => {
                tail(p, 8)?;
                if !le::zero(p, 2..4) {
                    return Err(ParseError::Reserved);
                }
                NetMessage::Attach { workers: le::u16_at(p, 0), ip: ip_at(p, 4) }
            }
            kind::LISTEN => {
                tail(p, 4)?;
                NetMessage::Listen { port: le::u16_at(p, 0), tenant: le::u16_at(p, 2) }
            }
            kind::UNLISTEN => {
                tail(p, 2)?;
                NetMessage::Unlisten { port: le::u16_at(p, 0) }
            }
            kind::CONN_REQUEST => {
                tail(p, 16)?;
                NetMessage::ConnRequest { conn: le::u64_at(p, 0), flow: FlowKey::parse(p, 8) }
            }
            kind::CONN_OPENED => {
                tail(p, 19)?;
                let prestaged = match p[18] {
                    0 => false,
                    1 => true,
                    _ => return Err(ParseError::Field("prestaged")),
                };
                NetMessage::ConnOpened {
                    conn: le::u64_at(p, 0),
                    flow: FlowKey::parse(p, 8),
                    worker: WorkerId(le::u16_at(p, 16)),
                    prestaged,
                }
            }
            kind::CONN_CLOSED => {
                tail(p, 18)?;
                NetMessage::ConnClosed {
                    conn: le::u64_at(p, 0),
                    flow: FlowKey::parse(p, 8),
                    worker: WorkerId(le::u16_at(p, 16)),
                }
            }
            kind::PORTS_WANTED => {
                tail(p, 2)?;
                NetMessage::PortsWanted { count: le::u16_at(p, 0) }
            }
            kind::PLACE => {
                tail(p, 4)?;
                NetMessage::Place { port: le::u16_at(p, 0), worker: WorkerId(le::u16_at(p, 2)) }
            }
            kind::ADMIT => {
                tail(p, 10)?;
                NetMessage::Admit { conn: le::u64_at(p, 0), worker: WorkerId(le::u16_at(p, 8)) }
            }
            kind::REFUSE => {
                tail(p, 9)?;
                let reason = RefuseReason::from_u8(p[8]).ok_or(ParseError::Field("reason"))?;
                NetMessage::Refuse { conn: le::u64_at(p, 0), reason }
            }
            kind::PORT_LEASE => {
                tail(p, 4)?;
                NetMessage::PortLease { first: le::u16_at(p, 0), count: le::u16_at(p, 2) }
            }
            kind::NEIGHBOR => {
                tail(p, 10)?;
                let mut mac = [0; 6];
                mac.copy_from_slice(&p[4..10]);
                NetMessage::Neighbor { ip: ip_at(p, 0), mac }
            }
            kind::ROUTE => {
                tail(p, 12)?;
                if !le::zero(p, 5..8) {
                    return Err(ParseError::Reserved);
                }
                if p[4] > 32 {
                    return Err(ParseError::Field("prefix_len"));
                }
                NetMessage::Route { prefix: ip_at(p, 0), prefix_len: p[4], gateway: ip_at(p, 8) }
            }
            other => return Err(ParseError::UnknownKind(other)),
        };
        Ok(message)
    }

    pub(super) fn emit_payload(&self, p: &mut [u8]) {
        match *self {
            NetMessage::Attach { workers, ip } => {
                le::put_u16(p, 0, workers);
                p[4..8].copy_from_slice(&ip.octets());
            }
            NetMessage::Listen { port, tenant } => {
                le::put_u16(p, 0, port);
                le::put_u16(p, 2, tenant);
            }
            NetMessage::Unlisten { port } => le::put_u16(p, 0, port),
            NetMessage::ConnRequest { conn, flow } => {
                le::put_u64(p, 0, conn);
                flow.emit(p, 8);
            }
            NetMessage::ConnOpened { conn, flow, worker, prestaged } => {
                le::put_u64(p, 0, conn);
                flow.emit(p, 8);
                le::put_u16(p, 16, worker.0);
                p[18] = u8::from(prestaged);
            }
            NetMessage::ConnClosed { conn, flow, worker } => {
                le::put_u64(p, 0, conn);
                flow.emit(p, 8);
                le::put_u16(p, 16, worker.0);
            }
            NetMessage::PortsWanted { count } => le::put_u16(p, 0, count),
            NetMessage::Place { port, worker } => {
                le::put_u16(p, 0, port);
                le::put_u16(p, 2, worker.0);
            }
            NetMessage::Admit { conn, worker } => {
                le::put_u64(p, 0, conn);
                le::put_u16(p, 8, worker.0);
            }
            NetMessage::Refuse { conn, reason } => {
                le::put_u64(p, 0, conn);
                p[8] = reason as u8;
            }
            NetMessage::PortLease { first, count } => {
                le::put_u16(p, 0, first);
                le::put_u16(p, 2, count);
            }
            NetMessage::Neighbor { ip, mac } => {
                p[0..4].copy_from_slice(&ip.octets());
                p[4..10].copy_from_slice(&mac);
            }
            NetMessage::Route { prefix, prefix_len, gateway } => {
                p[0..4].copy_from_slice(&prefix.octets());
                p[4] = prefix_len;
                p[8..12].copy_from_slice(&gateway.octets());
            }
        }
    }
}
