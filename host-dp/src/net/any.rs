//! A port of any backend, chosen at run time, as one link type: what the builder
//! ([`crate::Host`]) puts under the plane, so sockets never name the backend
//! (`TcpStream`, not `TcpStream<PortWire<UringPort>>`).
//!
//! Dispatch is one `match` per burst call and per frame access: the plane copies every frame
//! into a worker's inbox anyway, which costs far more.

use netstack::{MemoryWire, Wire, WireFrame};

use super::{PortFrame, PortWire, SharedWire};
use crate::io::shm::{ShmFrame, ShmPort};
use crate::io::uring::{UringFrame, UringPort};

/// A port of any backend, as a stack's link.
// One per plane, never moved after set-up: boxing the big variant would only add a pointer
// chase to every burst.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum AnyPort {
    /// AF_PACKET through io_uring.
    AfPacket(Tagged<PortWire<UringPort>>),
    /// A shared-memory wire.
    Wire(Tagged<PortWire<ShmPort>>),
    /// A DPDK port.
    #[cfg(feature = "dpdk")]
    Dpdk(Tagged<PortWire<crate::io::dpdk::DpdkPort>>),
    /// An in-memory wire (tests, and two stacks in one process).
    Memory(Tagged<MemoryWire>),
}

/// A frame of an [`AnyPort`].
#[derive(Debug)]
pub enum AnyFrame {
    /// From [`AnyPort::AfPacket`].
    AfPacket(PortFrame<UringFrame>),
    /// From [`AnyPort::Wire`].
    Wire(PortFrame<ShmFrame>),
    /// From [`AnyPort::Dpdk`].
    #[cfg(feature = "dpdk")]
    Dpdk(PortFrame<crate::io::dpdk::Mbuf>),
    /// From [`AnyPort::Memory`].
    Memory(Vec<u8>),
}

/// A backend's link with the vector its frames pass through on their way to and from
/// [`AnyFrame`]s (kept, so no burst allocates).
#[derive(Debug)]
pub struct Tagged<L: Wire> {
    link: L,
    scratch: Vec<L::Frame>,
}

impl<L: Wire> Tagged<L> {
    fn new(link: L) -> Tagged<L> {
        Tagged { link, scratch: Vec::new() }
    }
}

impl From<PortWire<UringPort>> for AnyPort {
    fn from(link: PortWire<UringPort>) -> AnyPort {
        AnyPort::AfPacket(Tagged::new(link))
    }
}

impl From<PortWire<ShmPort>> for AnyPort {
    fn from(link: PortWire<ShmPort>) -> AnyPort {
        AnyPort::Wire(Tagged::new(link))
    }
}

#[cfg(feature = "dpdk")]
impl From<PortWire<crate::io::dpdk::DpdkPort>> for AnyPort {
    fn from(link: PortWire<crate::io::dpdk::DpdkPort>) -> AnyPort {
        AnyPort::Dpdk(Tagged::new(link))
    }
}

impl From<MemoryWire> for AnyPort {
    fn from(link: MemoryWire) -> AnyPort {
        AnyPort::Memory(Tagged::new(link))
    }
}

impl AnyPort {
    /// The backend's name, for logs.
    pub fn backend(&self) -> &'static str {
        match self {
            AnyPort::AfPacket(_) => "af-packet",
            AnyPort::Wire(_) => "wire",
            #[cfg(feature = "dpdk")]
            AnyPort::Dpdk(_) => "dpdk",
            AnyPort::Memory(_) => "memory",
        }
    }
}

/// Runs `$body` with `$link` bound to the backend's `Tagged` link, and `$variant` to the
/// matching `AnyFrame` constructor.
macro_rules! each_backend {
    ($port:expr, $link:ident, $variant:ident => $body:expr) => {
        match $port {
            AnyPort::AfPacket($link) => {
                #[allow(unused)]
                use AnyFrame::AfPacket as $variant;
                $body
            }
            AnyPort::Wire($link) => {
                #[allow(unused)]
                use AnyFrame::Wire as $variant;
                $body
            }
            #[cfg(feature = "dpdk")]
            AnyPort::Dpdk($link) => {
                #[allow(unused)]
                use AnyFrame::Dpdk as $variant;
                $body
            }
            AnyPort::Memory($link) => {
                #[allow(unused)]
                use AnyFrame::Memory as $variant;
                $body
            }
        }
    };
}

/// Moves the frames of `frames` that belong to `$variant`'s backend into `$scratch`, in
/// order (a frame of another backend cannot be sent here and is dropped: the plane never
/// mixes them).
macro_rules! unwrap_into {
    ($frames:expr, $scratch:expr, $variant:ident) => {
        $scratch.extend($frames.drain(..).filter_map(|frame| match frame {
            $variant(inner) => Some(inner),
            #[allow(unreachable_patterns)]
            _ => None,
        }))
    };
}

impl Wire for AnyPort {
    type Frame = AnyFrame;

    fn frame_len_max(&self) -> usize {
        each_backend!(self, tagged, Variant => tagged.link.frame_len_max())
    }

    fn receive(&mut self, out: &mut Vec<AnyFrame>, max: usize) -> usize {
        each_backend!(self, tagged, Variant => {
            let count = tagged.link.receive(&mut tagged.scratch, max);
            out.extend(tagged.scratch.drain(..).map(Variant));
            count
        })
    }

    fn alloc(&mut self) -> Option<AnyFrame> {
        each_backend!(self, tagged, Variant => tagged.link.alloc().map(Variant))
    }

    fn send(&mut self, frames: &mut Vec<AnyFrame>) -> usize {
        each_backend!(self, tagged, Variant => {
            unwrap_into!(frames, tagged.scratch, Variant);
            let sent = tagged.link.send(&mut tagged.scratch);
            // What the port did not take stays, in order, for the next try.
            frames.extend(tagged.scratch.drain(..).map(Variant));
            sent
        })
    }

    fn recycle(&mut self, frames: &mut Vec<AnyFrame>) {
        each_backend!(self, tagged, Variant => {
            unwrap_into!(frames, tagged.scratch, Variant);
            tagged.link.recycle(&mut tagged.scratch);
        })
    }

    fn tick(&mut self, now: std::time::Instant) {
        each_backend!(self, tagged, Variant => tagged.link.tick(now))
    }
}

impl AnyPort {
    /// True while no frame the port lent is alive outside it (`SharedWire::lends_nothing`).
    pub(super) fn backend_lends_nothing(&self) -> bool {
        each_backend!(self, tagged, Variant => tagged.link.lends_nothing())
    }
}

/// Runs `$body` with `$frame` bound to the frame inside any variant.
macro_rules! each_frame {
    ($frame:expr, $inner:ident => $body:expr) => {
        match $frame {
            AnyFrame::AfPacket($inner) => $body,
            AnyFrame::Wire($inner) => $body,
            #[cfg(feature = "dpdk")]
            AnyFrame::Dpdk($inner) => $body,
            AnyFrame::Memory($inner) => $body,
        }
    };
}

impl WireFrame for AnyFrame {
    #[inline]
    fn data(&self) -> &[u8] {
        each_frame!(self, frame => WireFrame::data(frame))
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        each_frame!(self, frame => WireFrame::data_mut(frame))
    }

    #[inline]
    fn set_len(&mut self, len: usize) -> bool {
        each_frame!(self, frame => WireFrame::set_len(frame, len))
    }
}
