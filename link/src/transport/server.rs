//! The control plane's side of the memfd transport.

use std::io::ErrorKind;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::{UnixCredentials, getsockopt, sockopt};

use super::wire;
use crate::channel::CpEnd;
use crate::clock::MonoNanos;
use crate::layout::Layout;
use crate::liveness::LivenessConfig;
use crate::proto::{
    ABI_VERSION, AppId, Epoch, HelloAckRepr, HelloRepr, Message, RefusalReason, RefusedRepr,
    Service,
};
use crate::region::{Region, RegionError};
use crate::tier_table::PageTableView;

/// Why the control plane cannot listen on a path.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The directory does not exist or cannot be used.
    #[error("cannot use socket directory {dir}: {source}")]
    Directory {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another live control plane answers on this path.
    #[error("socket {0} is in use by a running process")]
    InUse(PathBuf),
    /// Something that is not a socket sits at the path; we never delete it.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// `bind`/`listen` failed.
    #[error("cannot bind {path}: {source}")]
    Bind {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A listening control-plane socket. Removes its socket file when dropped.
#[derive(Debug)]
pub struct Listener {
    listener: UnixListener,
    path: PathBuf,
}

impl Listener {
    /// Listens on `path`. A stale socket file (no process answering) is replaced; a live one,
    /// or a file that is not a socket, is an error.
    pub fn bind(path: &Path) -> Result<Listener, BindError> {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        match std::fs::metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                let source = std::io::Error::new(ErrorKind::NotADirectory, "not a directory");
                return Err(BindError::Directory { dir, source });
            }
            Err(source) => return Err(BindError::Directory { dir, source }),
        }
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(BindError::NotASocket(path.to_path_buf()));
            }
            match UnixStream::connect(path) {
                Ok(_) => return Err(BindError::InUse(path.to_path_buf())),
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                    // Stale: left by a control plane that died without cleaning up.
                    let _ = std::fs::remove_file(path);
                }
                Err(source) => return Err(BindError::Bind { path: path.to_path_buf(), source }),
            }
        }
        let bind_error = |source| BindError::Bind { path: path.to_path_buf(), source };
        // Bound and listening under a private name first, then renamed into place: whoever
        // sees the path can connect (no window between bind and listen).
        let mut staged = path.as_os_str().to_owned();
        staged.push(format!(".{}.tmp", std::process::id()));
        let staged = PathBuf::from(staged);
        let _ = std::fs::remove_file(&staged);
        let listener = UnixListener::bind(&staged).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        if let Err(source) = std::fs::rename(&staged, path) {
            let _ = std::fs::remove_file(&staged);
            return Err(bind_error(source));
        }
        Ok(Listener { listener, path: path.to_path_buf() })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts one pending connection, if any, without blocking.
    pub fn try_accept(&self) -> std::io::Result<Option<Incoming>> {
        match self.listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                let peer = getsockopt(&stream, sockopt::PeerCredentials)?;
                Ok(Some(Incoming { stream, peer }))
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whom to serve, and how.
#[derive(Debug, Clone)]
pub struct AcceptPolicy {
    /// Users allowed to attach (checked with SO_PEERCRED). Empty: only our own user.
    pub allowed_uids: Vec<u32>,
    /// Liveness settings of every channel ...
    pub liveness: LivenessConfig,
    /// ... but these for a channel of the tier service, whose host beats from a mechanism
    /// thread that sleeps between epochs rather than from polling workers.
    pub tier_liveness: LivenessConfig,
    /// How long to wait for a `Hello`.
    pub handshake_timeout: Duration,
    /// Services offered; a `Hello` for another is refused with `NoService`.
    pub services: Vec<Service>,
}

impl Default for AcceptPolicy {
    fn default() -> Self {
        AcceptPolicy {
            allowed_uids: Vec::new(),
            liveness: LivenessConfig::default(),
            tier_liveness: LivenessConfig {
                heartbeat_interval_ns: 1_000_000,
                peer_timeout_ns: 1_000_000_000,
            },
            handshake_timeout: Duration::from_secs(2),
            services: vec![Service::Sched, Service::Net, Service::Tier],
        }
    }
}

/// Why a connection did not become a session.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// We refused the app (and told it why).
    #[error("refused app (pid {pid}, uid {uid}): {reason:?}{detail}")]
    Refused {
        /// The reason sent to the app.
        reason: RefusalReason,
        /// Peer pid from SO_PEERCRED.
        pid: i32,
        /// Peer uid from SO_PEERCRED.
        uid: u32,
        /// More detail for our log.
        detail: String,
    },
    /// Socket I/O failed or timed out.
    #[error("handshake I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The shared region could not be created.
    #[error("cannot create the shared region: {0}")]
    Region(#[from] RegionError),
}

/// A connection accepted but not yet admitted.
#[derive(Debug)]
pub struct Incoming {
    stream: UnixStream,
    peer: UnixCredentials,
}

/// An admitted app: its channel end and the socket that lives as long as the session.
#[derive(Debug)]
pub struct Session {
    /// The control plane's end of the channel.
    pub end: CpEnd,
    /// The session socket (hang-up means the app is gone).
    pub stream: UnixStream,
    /// SO_PEERCRED of the app.
    pub peer: UnixCredentials,
    /// What the app asked for.
    pub hello: HelloRepr,
}

impl Incoming {
    /// SO_PEERCRED of the connecting process.
    pub fn peer(&self) -> UnixCredentials {
        self.peer
    }

    fn refuse(&self, reason: RefusalReason, detail: String) -> HandshakeError {
        let refused = Message::Refused(RefusedRepr { reason, abi_version: ABI_VERSION });
        // Best effort: the app may already be gone; the refusal stands either way.
        let _ = wire::send(&self.stream, &refused.to_record(Epoch(0)), None);
        HandshakeError::Refused { reason, pid: self.peer.pid(), uid: self.peer.uid(), detail }
    }

    /// Runs the handshake: check the peer, read `Hello`, check ABI and shape, create and format
    /// the region, send it. `room` says whether the control plane can take another app.
    pub fn admit(
        self,
        policy: &AcceptPolicy,
        app: AppId,
        epoch: Epoch,
        room: bool,
        now: MonoNanos,
    ) -> Result<Session, HandshakeError> {
        let uid = self.peer.uid();
        let own_uid = nix::unistd::geteuid().as_raw();
        let allowed = if policy.allowed_uids.is_empty() {
            uid == own_uid
        } else {
            policy.allowed_uids.contains(&uid)
        };
        if !allowed {
            return Err(self.refuse(RefusalReason::PermissionDenied, format!(": uid {uid}")));
        }
        self.stream.set_read_timeout(Some(policy.handshake_timeout))?;
        let (record, fd) = wire::recv(&self.stream)?;
        let hello = match Message::parse(&record) {
            Ok(Message::Hello(hello)) => hello,
            Ok(other) => {
                let detail = format!(": expected Hello, got {:?}", other.kind());
                return Err(self.refuse(RefusalReason::Malformed, detail));
            }
            Err(e) => {
                return Err(self.refuse(RefusalReason::Malformed, format!(": {e}")));
            }
        };
        if hello.abi_version != ABI_VERSION {
            let detail = format!(": app ABI {}, ours {ABI_VERSION}", hello.abi_version);
            return Err(self.refuse(RefusalReason::AbiMismatch, detail));
        }
        if !policy.services.contains(&hello.service) {
            let detail = format!(": service {:?} is not served", hello.service);
            return Err(self.refuse(RefusalReason::NoService, detail));
        }
        // The tier service's app shares its page-state table; no other sends an fd.
        let page_table = match (hello.service, fd) {
            (Service::Tier, Some(fd)) => match PageTableView::open(fd) {
                Ok(table) => Some(Arc::new(table)),
                Err(e) => return Err(self.refuse(RefusalReason::Malformed, format!(": {e}"))),
            },
            (Service::Tier, None) => {
                let detail = ": a tier app must share its page-state table".into();
                return Err(self.refuse(RefusalReason::Malformed, detail));
            }
            (_, Some(_)) => {
                return Err(self.refuse(RefusalReason::Malformed, ": unexpected fd".into()));
            }
            (_, None) => None,
        };
        let layout = match Layout::new(config_of(&hello)) {
            Ok(layout) => layout,
            Err(e) => return Err(self.refuse(RefusalReason::BadConfig, format!(": {e}"))),
        };
        if !room {
            return Err(self.refuse(RefusalReason::TooManyApps, String::new()));
        }
        let region = Arc::new(Region::memfd(c"wave-link", layout.total_len())?);
        let region_len = layout.total_len() as u64;
        let liveness =
            if hello.service == Service::Tier { policy.tier_liveness } else { policy.liveness };
        let mut end = CpEnd::format(region.clone(), layout, app, epoch, liveness, now);
        end.page_table = page_table;
        let ack = HelloAckRepr { abi_version: ABI_VERSION, app_id: app, region_len };
        wire::send(&self.stream, &Message::HelloAck(ack).to_record(epoch), region.fd())?;
        self.stream.set_read_timeout(None)?;
        self.stream.set_nonblocking(true)?;
        Ok(Session { end, stream: self.stream, peer: self.peer, hello })
    }
}

fn config_of(hello: &HelloRepr) -> crate::layout::ChannelConfig {
    crate::layout::ChannelConfig {
        workers: hello.workers,
        ring_capacity: hello.ring_capacity,
        prestage_slots: hello.prestage_slots,
        delay_ns: hello.delay_ns,
    }
}

impl Session {
    /// True once the app closed its socket (exited, crashed, or dropped the connection).
    pub fn hung_up(&self) -> bool {
        super::wire::peer_hung_up(&self.stream)
    }
}
