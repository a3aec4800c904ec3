//! The app's side of the memfd transport.

use std::io::ErrorKind;
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::wire;
use crate::channel::HostEnd;
use crate::clock::MonoNanos;
use crate::layout::{ChannelConfig, ConfigError, SuperblockError};
use crate::liveness::LivenessConfig;
use crate::proto::{ABI_VERSION, Epoch, HelloRepr, Message, ParseError, RefusalReason, Service};
use crate::region::{Region, RegionError};

/// Why the app could not attach to the control plane.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Our own config is out of bounds (nothing was sent).
    #[error("invalid channel config: {0}")]
    Config(#[from] ConfigError),
    /// Nothing listens at the path.
    #[error("no control plane at {path} ({source}); is ipu-cp running?")]
    NoControlPlane {
        /// The socket path.
        path: PathBuf,
        /// Why the connect failed.
        source: std::io::Error,
    },
    /// The control plane speaks another ABI version.
    #[error("ABI mismatch: this app speaks link ABI {ours}, the control plane {theirs}")]
    AbiMismatch {
        /// Ours.
        ours: u32,
        /// The control plane's.
        theirs: u32,
    },
    /// The control plane refused us for another reason.
    #[error("control plane refused the app: {reason:?}")]
    Refused {
        /// Its reason.
        reason: RefusalReason,
    },
    /// The control plane answered something that is not a handshake reply.
    #[error("bad handshake reply: {0}")]
    Protocol(&'static str),
    /// Its reply did not parse.
    #[error("malformed handshake reply: {0}")]
    Malformed(#[from] ParseError),
    /// Socket I/O failed or timed out.
    #[error("handshake I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The region it sent could not be mapped.
    #[error("cannot map the shared region: {0}")]
    Region(#[from] RegionError),
    /// The region's superblock is not what the handshake promised.
    #[error("bad shared region: {0}")]
    Superblock(#[from] SuperblockError),
}

/// An attached app: its channel end and the session socket.
#[derive(Debug)]
pub struct Connection {
    /// The host's end of the channel.
    pub end: HostEnd,
    /// Kept open for the session's life: closing it tells the control plane we left.
    pub stream: UnixStream,
}

impl Connection {
    /// True once the control plane closed the session (it exited or crashed): a
    /// non-blocking check, quicker than waiting for its heartbeat to time out.
    pub fn hung_up(&self) -> bool {
        super::wire::peer_hung_up(&self.stream)
    }
}

/// Connects to the control plane at `path` and attaches a channel of shape `config` for
/// `service` (not the tier service, which shares its page table: [`connect_tier`]).
pub fn connect(
    path: &Path,
    service: Service,
    config: ChannelConfig,
    epoch: Epoch,
    liveness: LivenessConfig,
    timeout: Duration,
) -> Result<Connection, ConnectError> {
    connect_sharing(path, service, config, epoch, liveness, timeout, None)
}

/// Connects to the control plane at `path` for the tier service, sharing `page_table`: the
/// mechanism's page-state table, a memfd sealed against shrinking (`memmgr::table`), which
/// the policy maps read-only.
pub fn connect_tier(
    path: &Path,
    config: ChannelConfig,
    epoch: Epoch,
    liveness: LivenessConfig,
    timeout: Duration,
    page_table: BorrowedFd<'_>,
) -> Result<Connection, ConnectError> {
    let service = Service::Tier;
    connect_sharing(path, service, config, epoch, liveness, timeout, Some(page_table))
}

fn connect_sharing(
    path: &Path,
    service: Service,
    config: ChannelConfig,
    epoch: Epoch,
    liveness: LivenessConfig,
    timeout: Duration,
    shared: Option<BorrowedFd<'_>>,
) -> Result<Connection, ConnectError> {
    config.validate()?;
    let stream = UnixStream::connect(path).map_err(|source| match source.kind() {
        ErrorKind::NotFound | ErrorKind::ConnectionRefused => {
            ConnectError::NoControlPlane { path: path.to_path_buf(), source }
        }
        _ => ConnectError::Io(source),
    })?;
    stream.set_read_timeout(Some(timeout))?;
    let hello = HelloRepr {
        abi_version: ABI_VERSION,
        pid: std::process::id(),
        workers: config.workers,
        prestage_slots: config.prestage_slots,
        ring_capacity: config.ring_capacity,
        delay_ns: config.delay_ns,
        service,
    };
    wire::send(&stream, &Message::Hello(hello).to_record(epoch), shared)?;
    let (record, fd) = wire::recv(&stream)?;
    let ack = match Message::parse(&record)? {
        Message::HelloAck(ack) => ack,
        Message::Refused(refused) if refused.reason == RefusalReason::AbiMismatch => {
            return Err(ConnectError::AbiMismatch {
                ours: ABI_VERSION,
                theirs: refused.abi_version,
            });
        }
        Message::Refused(refused) => return Err(ConnectError::Refused { reason: refused.reason }),
        _ => return Err(ConnectError::Protocol("expected HelloAck or Refused")),
    };
    if ack.abi_version != ABI_VERSION {
        return Err(ConnectError::AbiMismatch { ours: ABI_VERSION, theirs: ack.abi_version });
    }
    let fd = fd.ok_or(ConnectError::Protocol("HelloAck without a memfd"))?;
    let len = usize::try_from(ack.region_len).map_err(|_| ConnectError::Protocol("region len"))?;
    let region = Arc::new(Region::map_fd(fd, len)?);
    let end = HostEnd::attach(region, epoch, liveness, MonoNanos::now())?;
    if end.layout.config() != config {
        return Err(ConnectError::Protocol("region shape differs from the one requested"));
    }
    stream.set_read_timeout(None)?;
    Ok(Connection { end, stream })
}
