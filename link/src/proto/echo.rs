//! The echo pair: a host worker's latency probe and the control plane's answer. It is the
//! smallest event/decision round trip, used by the demo and the link benchmark.

use super::{ParseError, WorkerId, le};

/// Event: worker `worker` sent probe `seq` at `sent_at_ns` (host clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingRepr {
    /// The sending worker.
    pub worker: WorkerId,
    /// Probe number, per worker.
    pub seq: u64,
    /// Host monotonic time of sending, echoed back untouched.
    pub sent_at_ns: u64,
}

/// Decision: the echo of a [`PingRepr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PongRepr {
    /// The worker the probe came from.
    pub worker: WorkerId,
    /// The probe number.
    pub seq: u64,
    /// The probe's `sent_at_ns`, echoed.
    pub ping_sent_at_ns: u64,
}

fn parse_triple(p: &[u8]) -> Result<(WorkerId, u64, u64), ParseError> {
    if !le::zero(p, 2..8) || !le::zero(p, 24..48) {
        return Err(ParseError::Reserved);
    }
    Ok((WorkerId(le::u16_at(p, 0)), le::u64_at(p, 8), le::u64_at(p, 16)))
}

fn emit_triple(p: &mut [u8], worker: WorkerId, seq: u64, time_ns: u64) {
    le::put_u16(p, 0, worker.0);
    le::put_u64(p, 8, seq);
    le::put_u64(p, 16, time_ns);
}

impl PingRepr {
    pub(super) fn parse_payload(p: &[u8]) -> Result<PingRepr, ParseError> {
        let (worker, seq, sent_at_ns) = parse_triple(p)?;
        Ok(PingRepr { worker, seq, sent_at_ns })
    }

    pub(super) fn emit_payload(&self, p: &mut [u8]) {
        emit_triple(p, self.worker, self.seq, self.sent_at_ns);
    }
}

impl PongRepr {
    pub(super) fn parse_payload(p: &[u8]) -> Result<PongRepr, ParseError> {
        let (worker, seq, ping_sent_at_ns) = parse_triple(p)?;
        Ok(PongRepr { worker, seq, ping_sent_at_ns })
    }

    pub(super) fn emit_payload(&self, p: &mut [u8]) {
        emit_triple(p, self.worker, self.seq, self.ping_sent_at_ns);
    }
}
