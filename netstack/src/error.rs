//! Why a socket call failed, and what a Linux socket would have said.

/// Why a socket call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// The config is out of bounds.
    #[error("invalid stack config: {0}")]
    Config(&'static str),
    /// No such connection (closed and released, or never ours).
    #[error("no such connection")]
    NoSuchConn,
    /// The port is listened on already, or the endpoint is in use.
    #[error("address in use")]
    AddrInUse,
    /// The connection cannot send or receive any more (reset, or closed by the peer for
    /// receiving).
    #[error("connection closed")]
    Closed,
    /// Invalid argument (port 0, unspecified address).
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    /// The link has frames lent out, so it cannot be handed to another owner.
    #[error("the link has frames lent out")]
    LinkInUse,
}

impl NetError {
    /// The errno a Linux socket call gives for the same condition.
    pub fn errno(self) -> i32 {
        match self {
            NetError::Config(_) | NetError::Invalid(_) => libc::EINVAL,
            NetError::NoSuchConn => libc::ENOTCONN,
            NetError::AddrInUse => libc::EADDRINUSE,
            NetError::Closed => libc::EPIPE,
            NetError::LinkInUse => libc::EBUSY,
        }
    }
}

/// Standard I/O sees the errno a Linux socket would give (`raw_os_error`), so its
/// `ErrorKind` is Linux's too (`Closed` is `BrokenPipe`, `AddrInUse` is `AddrInUse`).
impl From<NetError> for std::io::Error {
    fn from(error: NetError) -> std::io::Error {
        std::io::Error::from_raw_os_error(error.errno())
    }
}
