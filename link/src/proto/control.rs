//! Handshake messages, sent as single records over the Unix socket before shared memory
//! exists. `Hello` must parse whatever `abi_version` it carries, so that a mismatch can be
//! refused by name rather than as garbage.

use super::{ParseError, le};

/// `Hello.magic`: the bytes "WAVE" read as a little-endian u32.
pub const HELLO_MAGIC: u32 = u32::from_le_bytes(*b"WAVE");

/// Which control-plane service a channel is for; each has its own policy in `ipu-cp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Service {
    /// Task scheduling (and the echo probe): kinds 0x03xx and 0x10xx.
    Sched = 1,
    /// Connection control: kinds 0x20xx.
    Net = 2,
    /// Page tiering: kinds 0x30xx.
    Tier = 3,
}

impl Service {
    /// Decodes a service, or `None` for an unknown value.
    pub fn from_u16(value: u16) -> Option<Service> {
        Some(match value {
            1 => Service::Sched,
            2 => Service::Net,
            3 => Service::Tier,
            _ => return None,
        })
    }
}

/// App → control plane: who I am and the channel I want.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelloRepr {
    /// The app's [`super::ABI_VERSION`].
    pub abi_version: u32,
    /// The app's process id (informational: the control plane trusts SO_PEERCRED instead).
    pub pid: u32,
    /// Worker count: one event ring and one decision ring each.
    pub workers: u16,
    /// Prestage slots per worker.
    pub prestage_slots: u16,
    /// Records per ring (a power of two).
    pub ring_capacity: u32,
    /// Emulated one-way PCIe delay in nanoseconds (0: off).
    pub delay_ns: u32,
    /// The service the channel is for.
    pub service: Service,
}

impl HelloRepr {
    pub(super) fn parse_payload(p: &[u8]) -> Result<HelloRepr, ParseError> {
        if le::u32_at(p, 0) != HELLO_MAGIC {
            return Err(ParseError::Field("magic"));
        }
        if !le::zero(p, 26..48) {
            return Err(ParseError::Reserved);
        }
        let abi_version = le::u32_at(p, 4);
        // Before ABI 4 there was one service and no field: parse such a hello anyway, so its
        // version can be refused by name.
        let service = match Service::from_u16(le::u16_at(p, 24)) {
            Some(service) => service,
            None if abi_version < 4 => Service::Sched,
            None => return Err(ParseError::Field("service")),
        };
        Ok(HelloRepr {
            abi_version,
            service,
            pid: le::u32_at(p, 8),
            workers: le::u16_at(p, 12),
            prestage_slots: le::u16_at(p, 14),
            ring_capacity: le::u32_at(p, 16),
            delay_ns: le::u32_at(p, 20),
        })
    }

    pub(super) fn emit_payload(&self, p: &mut [u8]) {
        le::put_u32(p, 0, HELLO_MAGIC);
        le::put_u32(p, 4, self.abi_version);
        le::put_u32(p, 8, self.pid);
        le::put_u16(p, 12, self.workers);
        le::put_u16(p, 14, self.prestage_slots);
        le::put_u32(p, 16, self.ring_capacity);
        le::put_u32(p, 20, self.delay_ns);
        le::put_u16(p, 24, self.service as u16);
    }
}

/// Control plane → app: accepted; the memfd follows in the same message (SCM_RIGHTS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelloAckRepr {
    /// The control plane's [`super::ABI_VERSION`].
    pub abi_version: u32,
    /// The id the control plane gave this app.
    pub app_id: super::AppId,
    /// Length of the shared region in bytes.
    pub region_len: u64,
}

impl HelloAckRepr {
    pub(super) fn parse_payload(p: &[u8]) -> Result<HelloAckRepr, ParseError> {
        if !le::zero(p, 8..16) || !le::zero(p, 24..48) {
            return Err(ParseError::Reserved);
        }
        Ok(HelloAckRepr {
            abi_version: le::u32_at(p, 0),
            app_id: super::AppId(le::u32_at(p, 4)),
            region_len: le::u64_at(p, 16),
        })
    }

    pub(super) fn emit_payload(&self, p: &mut [u8]) {
        le::put_u32(p, 0, self.abi_version);
        le::put_u32(p, 4, self.app_id.0);
        le::put_u64(p, 16, self.region_len);
    }
}

/// Why the control plane refused an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum RefusalReason {
    /// The app's ABI version differs from the control plane's.
    AbiMismatch = 1,
    /// SO_PEERCRED named a user the control plane does not serve.
    PermissionDenied = 2,
    /// The requested channel shape is out of bounds.
    BadConfig = 3,
    /// The control plane serves its maximum number of apps.
    TooManyApps = 4,
    /// The hello did not parse.
    Malformed = 5,
    /// The hello asked for a service this control plane does not offer.
    NoService = 6,
}

impl RefusalReason {
    fn from_u16(value: u16) -> Option<RefusalReason> {
        Some(match value {
            1 => RefusalReason::AbiMismatch,
            2 => RefusalReason::PermissionDenied,
            3 => RefusalReason::BadConfig,
            4 => RefusalReason::TooManyApps,
            5 => RefusalReason::Malformed,
            6 => RefusalReason::NoService,
            _ => return None,
        })
    }
}

/// Control plane → app: refused, with the reason and the control plane's ABI version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusedRepr {
    /// Why.
    pub reason: RefusalReason,
    /// The control plane's [`super::ABI_VERSION`].
    pub abi_version: u32,
}

impl RefusedRepr {
    pub(super) fn parse_payload(p: &[u8]) -> Result<RefusedRepr, ParseError> {
        let reason =
            RefusalReason::from_u16(le::u16_at(p, 0)).ok_or(ParseError::Field("reason"))?;
        if !le::zero(p, 2..4) || !le::zero(p, 8..48) {
            return Err(ParseError::Reserved);
        }
        Ok(RefusedRepr { reason, abi_version: le::u32_at(p, 4) })
    }

    pub(super) fn emit_payload(&self, p: &mut [u8]) {
        le::put_u16(p, 0, self.reason as u16);
        le::put_u32(p, 4, self.abi_version);
    }
}
