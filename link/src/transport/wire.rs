//! One record per message on the Unix socket, optionally with one fd attached.

use std::io::{IoSlice, IoSliceMut, Read};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

use crate::proto::{RECORD_SIZE, Record};
use crate::region::adopt_received_fd;

/// Sends `record`, with `fd` attached if given.
pub(super) fn send(
    stream: &UnixStream,
    record: &Record,
    fd: Option<BorrowedFd<'_>>,
) -> std::io::Result<()> {
    let iov = [IoSlice::new(record.as_ref())];
    let raw = fd.map(|fd| [fd.as_raw_fd()]);
    let cmsgs: Vec<ControlMessage<'_>> = raw.iter().map(|r| ControlMessage::ScmRights(r)).collect();
    let sent = sendmsg::<()>(stream.as_raw_fd(), &iov, &cmsgs, MsgFlags::MSG_NOSIGNAL, None)?;
    if sent != RECORD_SIZE {
        // A 64-byte send on a Unix stream socket is never split short of an error.
        return Err(std::io::Error::new(std::io::ErrorKind::WriteZero, "short handshake write"));
    }
    Ok(())
}

/// Receives one record and at most one fd. Honours the stream's read timeout.
pub(super) fn recv(stream: &UnixStream) -> std::io::Result<(Record, Option<OwnedFd>)> {
    let mut record = Record::ZERO;
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 2]);
    let (got, mut fds) = {
        let mut iov = [IoSliceMut::new(record.as_mut())];
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        let mut fds = Vec::new();
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                fds.extend(raw.into_iter().map(adopt_received_fd));
            }
        }
        (msg.bytes, fds)
    };
    if got == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    if got < RECORD_SIZE {
        (&*stream).read_exact(&mut record.as_mut()[got..])?;
    }
    if fds.len() > 1 {
        // More than we asked for: close them all (by dropping) and refuse the message.
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "several fds"));
    }
    Ok((record, fds.pop()))
}

/// True when the peer closed its end (or the socket failed): a zero-byte peek, without
/// blocking. The peer sends nothing after the handshake, so pending data means "alive".
pub fn peer_hung_up(stream: &UnixStream) -> bool {
    let mut byte = [0u8; 1];
    let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT;
    match nix::sys::socket::recv(stream.as_raw_fd(), &mut byte, flags) {
        Ok(0) => true,
        Ok(_) => false,
        Err(errno) => errno != nix::errno::Errno::EAGAIN,
    }
}
