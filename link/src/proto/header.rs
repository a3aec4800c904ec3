//! The record header: bytes 8..16 of every record (kind, flags, epoch).

use super::{Epoch, ParseError, RECORD_SIZE, le};

mod field {
    use core::ops::Range;
    pub(super) const KIND: Range<usize> = 8..10;
    pub(super) const FLAGS: Range<usize> = 10..12;
    pub(super) const EPOCH: Range<usize> = 12..16;
}

/// Which way a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Handshake on the Unix socket, before shared memory exists.
    Handshake,
    /// An event: host to control plane.
    Event,
    /// A decision: control plane to host.
    Decision,
}

/// Message kinds. Ranges per subsystem: 0x01xx handshake, 0x02xx link, 0x03xx echo,
/// 0x10xx scheduling, 0x20xx connection control, 0x30xx page tiering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Kind {
    /// [`super::HelloRepr`]
    Hello = 0x0101,
    /// [`super::HelloAckRepr`]
    HelloAck = 0x0102,
    /// [`super::RefusedRepr`]
    Refused = 0x0103,
    /// [`super::TxnResultRepr`]
    TxnResult = 0x0201,
    /// [`super::PingRepr`]
    Ping = 0x0301,
    /// [`super::PongRepr`]
    Pong = 0x0302,
    /// [`super::TaskEventRepr`], `TaskChange::New`
    TaskNew = 0x1001,
    /// [`super::TaskEventRepr`], `TaskChange::Runnable`
    TaskRunnable = 0x1002,
    /// [`super::TaskEventRepr`], `TaskChange::Blocked`
    TaskBlocked = 0x1003,
    /// [`super::TaskEventRepr`], `TaskChange::Preempted`
    TaskPreempted = 0x1004,
    /// [`super::TaskEventRepr`], `TaskChange::Done`
    TaskDone = 0x1005,
    /// [`super::WorkerEventRepr`]
    Worker = 0x1006,
    /// [`super::RunRepr`]
    Run = 0x1081,
    /// [`super::PreemptRepr`]
    Preempt = 0x1082,
    /// [`super::NetMessage::Attach`]
    NetAttach = 0x2001,
    /// [`super::NetMessage::Listen`]
    NetListen = 0x2002,
    /// [`super::NetMessage::Unlisten`]
    NetUnlisten = 0x2003,
    /// [`super::NetMessage::ConnRequest`]
    ConnRequest = 0x2004,
    /// [`super::NetMessage::ConnOpened`]
    ConnOpened = 0x2005,
    /// [`super::NetMessage::ConnClosed`]
    ConnClosed = 0x2006,
    /// [`super::NetMessage::PortsWanted`]
    PortsWanted = 0x2007,
    /// [`super::NetMessage::Place`]
    Place = 0x2081,
    /// [`super::NetMessage::Admit`]
    Admit = 0x2082,
    /// [`super::NetMessage::Refuse`]
    Refuse = 0x2083,
    /// [`super::NetMessage::PortLease`]
    PortLease = 0x2084,
    /// [`super::NetMessage::Neighbor`]
    Neighbor = 0x2085,
    /// [`super::NetMessage::Route`]
    Route = 0x2086,
    /// [`super::TierMessage::Attach`]
    TierAttach = 0x3001,
    /// [`super::TierMessage::Epoch`]
    TierEpoch = 0x3003,
    /// [`super::TierMessage::Park`]
    TierPark = 0x3081,
    /// [`super::TierMessage::Demote`]
    TierDemote = 0x3082,
}

impl Kind {
    /// Decodes a kind, or `None` for a value this ABI does not know.
    pub fn from_u16(value: u16) -> Option<Kind> {
        Some(match value {
            0x0101 => Kind::Hello,
            0x0102 => Kind::HelloAck,
            0x0103 => Kind::Refused,
            0x0201 => Kind::TxnResult,
            0x0301 => Kind::Ping,
            0x0302 => Kind::Pong,
            0x1001 => Kind::TaskNew,
            0x1002 => Kind::TaskRunnable,
            0x1003 => Kind::TaskBlocked,
            0x1004 => Kind::TaskPreempted,
            0x1005 => Kind::TaskDone,
            0x1006 => Kind::Worker,
            0x1081 => Kind::Run,
            0x1082 => Kind::Preempt,
            0x2001 => Kind::NetAttach,
            0x2002 => Kind::NetListen,
            0x2003 => Kind::NetUnlisten,
            0x2004 => Kind::ConnRequest,
            0x2005 => Kind::ConnOpened,
            0x2006 => Kind::ConnClosed,
            0x2007 => Kind::PortsWanted,
            0x2081 => Kind::Place,
            0x2082 => Kind::Admit,
            0x2083 => Kind::Refuse,
            0x2084 => Kind::PortLease,
            0x2085 => Kind::Neighbor,
            0x2086 => Kind::Route,
            0x3001 => Kind::TierAttach,
            0x3003 => Kind::TierEpoch,
            0x3081 => Kind::TierPark,
            0x3082 => Kind::TierDemote,
            _ => return None,
        })
    }

    /// The wire value.
    pub fn to_u16(self) -> u16 {
        self as u16
    }

    /// Which way this kind travels.
    pub fn direction(self) -> Direction {
        match self {
            Kind::Hello | Kind::HelloAck | Kind::Refused => Direction::Handshake,
            Kind::TxnResult | Kind::Ping => Direction::Event,
            Kind::TaskNew
            | Kind::TaskRunnable
            | Kind::TaskBlocked
            | Kind::TaskPreempted
            | Kind::TaskDone
            | Kind::Worker => Direction::Event,
            Kind::NetAttach
            | Kind::NetListen
            | Kind::NetUnlisten
            | Kind::ConnRequest
            | Kind::ConnOpened
            | Kind::ConnClosed
            | Kind::PortsWanted => Direction::Event,
            Kind::TierAttach | Kind::TierEpoch => Direction::Event,
            Kind::TierPark | Kind::TierDemote => Direction::Decision,
            Kind::Pong | Kind::Run | Kind::Preempt => Direction::Decision,
            Kind::Place
            | Kind::Admit
            | Kind::Refuse
            | Kind::PortLease
            | Kind::Neighbor
            | Kind::Route => Direction::Decision,
        }
    }
}

/// A view of a record's header over any byte buffer.
#[derive(Debug, Clone, Copy)]
pub struct HeaderView<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> HeaderView<T> {
    /// Wraps a buffer without checking its length; accessors may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> HeaderView<T> {
        HeaderView { buffer }
    }

    /// Wraps a buffer after [`Self::check_len`].
    pub fn new_checked(buffer: T) -> Result<HeaderView<T>, ParseError> {
        let view = Self::new_unchecked(buffer);
        view.check_len()?;
        Ok(view)
    }

    /// Checks that the buffer holds a whole record: after this no accessor panics.
    pub fn check_len(&self) -> Result<(), ParseError> {
        let len = self.buffer.as_ref().len();
        if len < RECORD_SIZE {
            return Err(ParseError::Truncated { len, need: RECORD_SIZE });
        }
        Ok(())
    }

    /// The raw kind field.
    pub fn kind(&self) -> u16 {
        le::u16_at(self.buffer.as_ref(), field::KIND.start)
    }

    /// The raw flags field.
    pub fn flags(&self) -> u16 {
        le::u16_at(self.buffer.as_ref(), field::FLAGS.start)
    }

    /// The sender's epoch.
    pub fn epoch(&self) -> Epoch {
        Epoch(le::u32_at(self.buffer.as_ref(), field::EPOCH.start))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> HeaderView<T> {
    /// Sets the kind field.
    pub fn set_kind(&mut self, kind: u16) {
        le::put_u16(self.buffer.as_mut(), field::KIND.start, kind);
    }

    /// Sets the flags field.
    pub fn set_flags(&mut self, flags: u16) {
        le::put_u16(self.buffer.as_mut(), field::FLAGS.start, flags);
    }

    /// Sets the epoch field.
    pub fn set_epoch(&mut self, epoch: Epoch) {
        le::put_u32(self.buffer.as_mut(), field::EPOCH.start, epoch.0);
    }
}

/// The meaning of a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRepr {
    /// What the payload is.
    pub kind: Kind,
    /// The sender's epoch.
    pub epoch: Epoch,
}

impl HeaderRepr {
    /// Parses a checked header view.
    pub fn parse<T: AsRef<[u8]>>(view: &HeaderView<T>) -> Result<HeaderRepr, ParseError> {
        let raw = view.kind();
        let kind = Kind::from_u16(raw).ok_or(ParseError::UnknownKind(raw))?;
        if view.flags() != 0 {
            return Err(ParseError::Reserved);
        }
        Ok(HeaderRepr { kind, epoch: view.epoch() })
    }

    /// Emits into a view of a whole record.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, view: &mut HeaderView<T>) {
        view.set_kind(self.kind.to_u16());
        view.set_flags(0);
        view.set_epoch(self.epoch);
    }
}
