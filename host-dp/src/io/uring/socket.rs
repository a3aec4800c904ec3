//! The AF_PACKET socket under the port: opened raw, bound to one interface, told to ignore
//! its own outgoing frames, with a large receive buffer; and the interface's MTU, asked through
//! the socket (sysfs would show the namespace that mounted it, not the caller's).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::UringError;

/// A raw `AF_PACKET` socket bound to `interface`, ignoring its own outgoing frames, with a
/// receive buffer of `rcvbuf_bytes`: what the port uses, public for baselines and tools.
pub fn open_socket(interface: &str, rcvbuf_bytes: u32) -> Result<OwnedFd, UringError> {
    let ifindex = interface_index(interface)?;
    let protocol = u16::try_from(libc::ETH_P_ALL).expect("0x0003").to_be();
    // SAFETY: plain socket(2) call; the result is checked below.
    let raw = unsafe {
        libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, i32::from(protocol))
    };
    if raw < 0 {
        return Err(UringError::Sys {
            call: "socket(AF_PACKET)",
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: `raw` is a fresh descriptor we own.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    let one: libc::c_int = 1;
    set_option(&socket, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, one)?;
    let rcvbuf = libc::c_int::try_from(rcvbuf_bytes).unwrap_or(libc::c_int::MAX);
    if set_option(&socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, rcvbuf).is_err() {
        set_option(&socket, libc::SOL_SOCKET, libc::SO_RCVBUF, rcvbuf)?;
    }
    // SAFETY: sockaddr_ll is plain data; zeroed is a valid starting value.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = u16::try_from(libc::AF_PACKET).expect("17");
    address.sll_protocol = protocol;
    address.sll_ifindex = ifindex;
    let size = u32::try_from(std::mem::size_of::<libc::sockaddr_ll>()).expect("small struct");
    // SAFETY: `address` is a valid sockaddr_ll of `size` bytes for the call.
    let bound = unsafe {
        libc::bind(socket.as_raw_fd(), (&raw const address).cast::<libc::sockaddr>(), size)
    };
    if bound < 0 {
        return Err(UringError::Sys {
            call: "bind(AF_PACKET)",
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(socket)
}

/// The interface's index (in the calling thread's network namespace).
pub(super) fn interface_index(interface: &str) -> Result<i32, UringError> {
    let name =
        CString::new(interface).map_err(|_| UringError::NoSuchInterface(interface.into()))?;
    // SAFETY: `name` is NUL-terminated.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    match i32::try_from(ifindex) {
        Ok(index) if index > 0 => Ok(index),
        _ => Err(UringError::NoSuchInterface(interface.to_owned())),
    }
}

/// The interface's MTU, asked through the socket (sysfs would show the namespace that mounted
/// it, not the caller's).
pub(super) fn interface_mtu(socket: &OwnedFd, interface: &str) -> Result<usize, UringError> {
    // SAFETY: ifreq is plain data; zeroed is a valid starting value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    let name = interface.as_bytes();
    if name.len() >= request.ifr_name.len() {
        return Err(UringError::NoSuchInterface(interface.to_owned()));
    }
    for (dst, &src) in request.ifr_name.iter_mut().zip(name) {
        *dst = libc::c_char::from_ne_bytes([src]);
    }
    // SAFETY: `request` is a valid ifreq with a NUL-terminated name (zeroed tail); the ioctl
    // writes only `ifr_ifru.ifru_mtu`.
    let code = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFMTU, &raw mut request) };
    if code < 0 {
        return Err(UringError::Sys {
            call: "ioctl(SIOCGIFMTU)",
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: the successful ioctl initialised the mtu member of the union.
    let mtu = unsafe { request.ifr_ifru.ifru_mtu };
    usize::try_from(mtu).map_err(|_| UringError::Config("negative MTU"))
}

pub(super) fn set_option(
    socket: &OwnedFd,
    level: i32,
    name: i32,
    value: libc::c_int,
) -> Result<(), UringError> {
    let size = u32::try_from(std::mem::size_of::<libc::c_int>()).expect("small");
    // SAFETY: `value` is a valid c_int of `size` bytes for the call.
    let code = unsafe {
        libc::setsockopt(socket.as_raw_fd(), level, name, (&raw const value).cast(), size)
    };
    if code < 0 {
        return Err(UringError::Sys {
            call: "setsockopt",
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}
