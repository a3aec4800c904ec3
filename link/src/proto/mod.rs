//! The record contract between the host and the control plane.
//!
//! Every message is one 64-byte [`Record`]: one cache line, one write-combined PCIe burst. The
//! layout, explicit little-endian throughout:
//!
//! ```text
//! 0..8    channel word   owned by the channel (ring sequence stamp, or txn slot state)
//! 8..10   kind           u16, see [`Kind`]
//! 10..12  flags          u16, reserved, must be zero in this ABI
//! 12..16  epoch          u32, the sender's epoch (bumped on every restart of the sender)
//! 16..64  payload        48 bytes, laid out per kind
//! ```
//!
//! Messages follow the smoltcp `wire` pattern: a view `FooView<T: AsRef<[u8]>>` over bytes
//! (`new_unchecked` / `check_len` / `new_checked`; once `check_len` passed no accessor
//! panics) and a `FooRepr` with `parse` / `emit`. Bytes the peer wrote are *foreign*: the
//! channel copies them out of shared memory first, and only that private copy is parsed.
//!
//! This module uses only `core` and never `unsafe`.
#![forbid(unsafe_code)]

mod control;
mod echo;
mod header;
mod ids;
mod net;
mod sched;
mod tier;
mod txn_result;

pub use control::{HELLO_MAGIC, HelloAckRepr, HelloRepr, RefusalReason, RefusedRepr, Service};
pub use echo::{PingRepr, PongRepr};
pub use header::{Direction, HeaderRepr, HeaderView, Kind};
pub use ids::{AppId, Barrier, Epoch, Seq, SlotIndex, TaskId, WorkerId};
pub use net::{FlowKey, NetMessage, RefuseReason};
pub use sched::{PreemptRepr, RunRepr, TaskChange, TaskEventRepr, WorkerEventRepr};
pub use tier::TierMessage;
pub use txn_result::{TxnOutcome, TxnResultRepr};

/// The ABI version of every layout in this crate: records and shared-memory layout alike,
/// and what each record obliges the peer to do (6: page-tiering records; 7: the tier
/// service's page-state table, shared at the handshake, in place of per-page records;
/// `docs/abi.md`). Any change bumps it; both sides refuse a peer with another version.
pub const ABI_VERSION: u32 = 7;

/// Size of one record in bytes: one cache line.
pub const RECORD_SIZE: usize = 64;
/// Size of the channel word at the start of every record.
pub const CHANNEL_WORD_SIZE: usize = 8;
/// First payload byte.
pub const PAYLOAD_OFFSET: usize = 16;
/// Payload bytes available to a message.
pub const PAYLOAD_SIZE: usize = RECORD_SIZE - PAYLOAD_OFFSET;

const _: () = assert!(RECORD_SIZE == 64, "a record is one cache line");
const _: () = assert!(RECORD_SIZE.is_multiple_of(8), "records are copied in 8-byte atomic words");
const _: () = assert!(core::mem::size_of::<Record>() == RECORD_SIZE);
const _: () = assert!(core::mem::align_of::<Record>() == RECORD_SIZE, "never straddles a line");

/// One 64-byte record: a private, cache-line aligned copy of a message.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(C, align(64))]
pub struct Record {
    bytes: [u8; RECORD_SIZE],
}

impl Record {
    /// An all-zero record (kind 0 is invalid, so it parses as an error).
    pub const ZERO: Record = Record { bytes: [0; RECORD_SIZE] };

    /// Wraps raw bytes.
    #[inline]
    pub const fn from_bytes(bytes: [u8; RECORD_SIZE]) -> Record {
        Record { bytes }
    }

    /// The raw bytes.
    #[inline]
    pub const fn bytes(&self) -> &[u8; RECORD_SIZE] {
        &self.bytes
    }

    /// The raw bytes, mutably.
    #[inline]
    pub fn bytes_mut(&mut self) -> &mut [u8; RECORD_SIZE] {
        &mut self.bytes
    }

    /// The 8-byte word `index` (0..8) in native byte order, as the channel stores it.
    #[inline]
    pub fn word(&self, index: usize) -> u64 {
        let start = index * 8;
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.bytes[start..start + 8]);
        u64::from_ne_bytes(word)
    }

    /// Sets the 8-byte word `index` (0..8) from a native-order value.
    #[inline]
    pub fn set_word(&mut self, index: usize, value: u64) {
        let start = index * 8;
        self.bytes[start..start + 8].copy_from_slice(&value.to_ne_bytes());
    }

    /// The channel word, decoded as little-endian.
    #[inline]
    pub fn channel_word(&self) -> u64 {
        u64::from_le_bytes(self.word(0).to_ne_bytes())
    }

    /// Sets the channel word, encoded as little-endian.
    #[inline]
    pub fn set_channel_word(&mut self, value: u64) {
        self.set_word(0, u64::from_ne_bytes(value.to_le_bytes()));
    }

    /// The header view of this record.
    #[inline]
    pub fn header(&self) -> HeaderView<&[u8]> {
        HeaderView::new_unchecked(&self.bytes[..])
    }

    /// Parses the record as a message of either direction.
    pub fn parse(&self) -> Result<Message, ParseError> {
        Message::parse(self)
    }
}

impl Default for Record {
    fn default() -> Self {
        Record::ZERO
    }
}

impl AsRef<[u8]> for Record {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl AsMut<[u8]> for Record {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
}

impl core::fmt::Debug for Record {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.parse() {
            Ok(message) => write!(f, "Record({message:?})"),
            Err(error) => write!(f, "Record(<{error}> {:02x?})", &self.bytes[8..16]),
        }
    }
}

/// Why a record was rejected. Small and `Copy`: this is a hot-path error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Fewer bytes than the message needs.
    #[error("truncated: {len} bytes, need {need}")]
    Truncated {
        /// Bytes present.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// The kind field names no message of this ABI.
    #[error("unknown message kind {0:#06x}")]
    UnknownKind(u16),
    /// A known kind arrived on the wrong side (an event where a decision belongs, say).
    #[error("message kind {0:?} not allowed in this direction")]
    WrongDirection(Kind),
    /// Reserved bits or bytes were not zero.
    #[error("reserved field is not zero")]
    Reserved,
    /// A field holds a value outside its domain.
    #[error("field `{0}` out of range")]
    Field(&'static str),
}

/// Any message of this ABI, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// Handshake: the app introduces itself (socket only).
    Hello(HelloRepr),
    /// Handshake: the control plane accepts (socket only).
    HelloAck(HelloAckRepr),
    /// Handshake: the control plane refuses (socket only).
    Refused(RefusedRepr),
    /// Event: a latency probe from a host worker.
    Ping(PingRepr),
    /// Decision: the answer to a [`PingRepr`].
    Pong(PongRepr),
    /// Event: what became of a prestaged decision.
    TxnResult(TxnResultRepr),
    /// Event: a task was created, woke, blocked, was preempted or finished.
    Task(TaskEventRepr),
    /// Event: a worker is idle, or ticks while running a task.
    Worker(WorkerEventRepr),
    /// Decision: run a task on a worker.
    Run(RunRepr),
    /// Decision: preempt a running task.
    Preempt(PreemptRepr),
    /// Connection control, either way (kinds 0x20xx).
    Net(NetMessage),
    /// Page tiering, either way (kinds 0x30xx).
    Tier(TierMessage),
}

impl Message {
    /// Parses any message kind.
    pub fn parse(record: &Record) -> Result<Message, ParseError> {
        let header = HeaderRepr::parse(&HeaderView::new_checked(record.as_ref())?)?;
        let payload = &record.as_ref()[PAYLOAD_OFFSET..];
        Ok(match header.kind {
            Kind::Hello => Message::Hello(HelloRepr::parse_payload(payload)?),
            Kind::HelloAck => Message::HelloAck(HelloAckRepr::parse_payload(payload)?),
            Kind::Refused => Message::Refused(RefusedRepr::parse_payload(payload)?),
            Kind::Ping => Message::Ping(PingRepr::parse_payload(payload)?),
            Kind::Pong => Message::Pong(PongRepr::parse_payload(payload)?),
            Kind::TxnResult => Message::TxnResult(TxnResultRepr::parse_payload(payload)?),
            Kind::TaskNew => Message::Task(TaskEventRepr::parse_payload(TaskChange::New, payload)?),
            Kind::TaskRunnable => {
                Message::Task(TaskEventRepr::parse_payload(TaskChange::Runnable, payload)?)
            }
            Kind::TaskBlocked => {
                Message::Task(TaskEventRepr::parse_payload(TaskChange::Blocked, payload)?)
            }
            Kind::TaskPreempted => {
                Message::Task(TaskEventRepr::parse_payload(TaskChange::Preempted, payload)?)
            }
            Kind::TaskDone => {
                Message::Task(TaskEventRepr::parse_payload(TaskChange::Done, payload)?)
            }
            Kind::Worker => Message::Worker(WorkerEventRepr::parse_payload(payload)?),
            Kind::Run => Message::Run(RunRepr::parse_payload(payload)?),
            Kind::Preempt => Message::Preempt(PreemptRepr::parse_payload(payload)?),
            Kind::NetAttach
            | Kind::NetListen
            | Kind::NetUnlisten
            | Kind::ConnRequest
            | Kind::ConnOpened
            | Kind::ConnClosed
            | Kind::PortsWanted
            | Kind::Place
            | Kind::Admit
            | Kind::Refuse
            | Kind::PortLease
            | Kind::Neighbor
            | Kind::Route => {
                Message::Net(NetMessage::parse_payload(header.kind.to_u16(), payload)?)
            }
            Kind::TierAttach | Kind::TierEpoch | Kind::TierPark | Kind::TierDemote => {
                Message::Tier(TierMessage::parse_payload(header.kind.to_u16(), payload)?)
            }
        })
    }

    /// Parses a record that must travel in `direction`.
    pub fn parse_in(record: &Record, direction: Direction) -> Result<Message, ParseError> {
        let message = Message::parse(record)?;
        if message.kind().direction() != direction {
            return Err(ParseError::WrongDirection(message.kind()));
        }
        Ok(message)
    }

    /// The kind of this message.
    pub fn kind(&self) -> Kind {
        match self {
            Message::Hello(_) => Kind::Hello,
            Message::HelloAck(_) => Kind::HelloAck,
            Message::Refused(_) => Kind::Refused,
            Message::Ping(_) => Kind::Ping,
            Message::Pong(_) => Kind::Pong,
            Message::TxnResult(_) => Kind::TxnResult,
            Message::Task(event) => match event.change {
                TaskChange::New => Kind::TaskNew,
                TaskChange::Runnable => Kind::TaskRunnable,
                TaskChange::Blocked => Kind::TaskBlocked,
                TaskChange::Preempted => Kind::TaskPreempted,
                TaskChange::Done => Kind::TaskDone,
            },
            Message::Worker(_) => Kind::Worker,
            Message::Run(_) => Kind::Run,
            Message::Preempt(_) => Kind::Preempt,
            Message::Net(net) => {
                Kind::from_u16(net.kind_u16()).expect("every net message has a kind")
            }
            Message::Tier(tier) => {
                Kind::from_u16(tier.kind_u16()).expect("every tier message has a kind")
            }
        }
    }

    /// Emits the message into a fresh record stamped with the sender's `epoch`. The channel
    /// word is left zero: the channel owns it.
    pub fn to_record(&self, epoch: Epoch) -> Record {
        let mut record = Record::ZERO;
        HeaderRepr { kind: self.kind(), epoch }.emit(&mut HeaderView::new_unchecked(&mut record));
        let payload = &mut record.as_mut()[PAYLOAD_OFFSET..];
        match self {
            Message::Hello(repr) => repr.emit_payload(payload),
            Message::HelloAck(repr) => repr.emit_payload(payload),
            Message::Refused(repr) => repr.emit_payload(payload),
            Message::Ping(repr) => repr.emit_payload(payload),
            Message::Pong(repr) => repr.emit_payload(payload),
            Message::TxnResult(repr) => repr.emit_payload(payload),
            Message::Task(repr) => repr.emit_payload(payload),
            Message::Worker(repr) => repr.emit_payload(payload),
            Message::Run(repr) => repr.emit_payload(payload),
            Message::Preempt(repr) => repr.emit_payload(payload),
            Message::Net(repr) => repr.emit_payload(payload),
            Message::Tier(repr) => repr.emit_payload(payload),
        }
        record
    }
}

/// Little-endian field access over a payload slice; callers checked the length.
mod le {
    pub(super) fn u16_at(bytes: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([bytes[at], bytes[at + 1]])
    }
    pub(super) fn u32_at(bytes: &[u8], at: usize) -> u32 {
        let mut word = [0u8; 4];
        word.copy_from_slice(&bytes[at..at + 4]);
        u32::from_le_bytes(word)
    }
    pub(super) fn u64_at(bytes: &[u8], at: usize) -> u64 {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(word)
    }
    pub(super) fn put_u16(bytes: &mut [u8], at: usize, value: u16) {
        bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
    }
    pub(super) fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
        bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }
    pub(super) fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
        bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }
    /// True when every byte in `range` is zero (reserved space).
    pub(super) fn zero(bytes: &[u8], range: core::ops::Range<usize>) -> bool {
        bytes[range].iter().all(|&b| b == 0)
    }
}

#[cfg(test)]
mod tests;
