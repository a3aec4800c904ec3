//! The memcached text protocol: parsing requests out of a connection's receive buffer.
//!
//! [`parse`] looks at the front of the buffer and says what it holds: a complete command (and
//! how many bytes it took), not enough bytes yet, or an error with the reply memcached gives
//! for it. It never allocates for the data: keys and values borrow from the buffer.

/// Longest key memcached accepts.
pub const KEY_MAX: usize = 250;
/// Longest command line (without a value) we wait for; a longer one is an error.
pub const LINE_MAX: usize = 4096;
/// The Unix second an item stored at `now_s` with `exptime` expires at (0: never; a negative
/// exptime: already).
pub fn expires_at(exptime: i64, now_s: i64) -> i64 {
    match exptime {
        0 => 0,
        e if e < 0 => now_s - 1,
        e if e <= RELATIVE_EXPTIME_MAX => now_s + e,
        e => e,
    }
}

/// Most items one `scan` returns.
pub const SCAN_MAX: usize = 10_000;
/// `exptime` values up to this many seconds are relative; larger ones are Unix times.
pub const RELATIVE_EXPTIME_MAX: i64 = 60 * 60 * 24 * 30;

/// A storage command's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    /// Store unconditionally.
    Set,
    /// Store only if absent.
    Add,
    /// Store only if present.
    Replace,
    /// Append to a present value.
    Append,
    /// Prepend to a present value.
    Prepend,
    /// Store only if unchanged since the `gets` that returned `cas`.
    Cas(u64),
}

/// One request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// `get`/`gets` of one or more keys (`with_cas`: gets).
    Get {
        /// The keys.
        keys: Vec<&'a [u8]>,
        /// Return each value's CAS unique.
        with_cas: bool,
    },
    /// A storage command with its data block.
    Store {
        /// Which.
        op: StoreOp,
        /// The key.
        key: &'a [u8],
        /// Opaque client flags.
        flags: u32,
        /// Expiry as sent (0 never; ≤ 30 days relative; else a Unix time; negative: now).
        exptime: i64,
        /// The value.
        data: &'a [u8],
        /// No reply wanted.
        noreply: bool,
    },
    /// `delete`.
    Delete {
        /// The key.
        key: &'a [u8],
        /// No reply wanted.
        noreply: bool,
    },
    /// `incr`/`decr`.
    Arith {
        /// The key.
        key: &'a [u8],
        /// Increment (else decrement).
        incr: bool,
        /// By how much.
        delta: u64,
        /// No reply wanted.
        noreply: bool,
    },
    /// `touch`: a new expiry.
    Touch {
        /// The key.
        key: &'a [u8],
        /// The new expiry.
        exptime: i64,
        /// No reply wanted.
        noreply: bool,
    },
    /// `flush_all`, now or after `delay` seconds.
    FlushAll {
        /// Seconds from now (0: now).
        delay: i64,
        /// No reply wanted.
        noreply: bool,
    },
    /// `version`.
    Version,
    /// `stats` (general statistics only).
    Stats,
    /// `verbosity` (accepted, ignored).
    Verbosity {
        /// No reply wanted.
        noreply: bool,
    },
    /// `quit`: close the connection.
    Quit,
    /// `scan <start> <count>`: up to `count` items from key `start` on, in key order (an
    /// extension for ordered backends, answered like a `get`; others say `ERROR`).
    Scan {
        /// First key (inclusive).
        start: &'a [u8],
        /// Most items.
        count: usize,
    },
}

/// What the front of the buffer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Not a whole command yet: read more.
    Incomplete,
    /// A command that took `used` bytes.
    Command(Command<'a>, usize),
    /// A request that gets `reply` and took `used` bytes; then `skip` more bytes (a value
    /// block being refused) are to be discarded as they arrive. `close`: hang up after the
    /// reply (the stream can no longer be framed).
    Error {
        /// The reply line, without CRLF.
        reply: &'static str,
        /// Bytes of the buffer it took.
        used: usize,
        /// Bytes still to discard.
        skip: usize,
        /// Close after replying.
        close: bool,
    },
}

const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format";
/// memcached's reply to a `delete` with more than a key (and `0`, and `noreply`).
const DELETE_USAGE: &str = "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]";
/// memcached's reply to a `flush_all` whose delay is not a number.
const BAD_EXPTIME: &str = "CLIENT_ERROR invalid exptime argument";

fn error(reply: &'static str, used: usize) -> Parsed<'static> {
    Parsed::Error { reply, used, skip: 0, close: false }
}

/// Parses the front of `buf`; values larger than `value_max` are refused.
pub fn parse(buf: &[u8], value_max: usize) -> Parsed<'_> {
    let Some(newline) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > LINE_MAX {
            return Parsed::Error {
                reply: "CLIENT_ERROR line too long",
                used: buf.len(),
                skip: 0,
                close: true,
            };
        }
        return Parsed::Incomplete;
    };
    let line_len = newline + 1;
    let line = buf[..newline].strip_suffix(b"\r").unwrap_or(&buf[..newline]);
    let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let Some(name) = words.next() else { return error("ERROR", line_len) };
    let args: Vec<&[u8]> = words.collect();
    let noreply = args.last() == Some(&&b"noreply"[..]);
    let plain = if noreply { &args[..args.len() - 1] } else { &args[..] };
    let command = match name {
        // memcached answers a command with the wrong number of words `ERROR`, as if unknown.
        b"get" | b"gets" => {
            if plain.is_empty() {
                return error("ERROR", line_len);
            }
            if plain.iter().any(|k| !valid_key(k)) {
                return error(BAD_FORMAT, line_len);
            }
            Command::Get { keys: plain.to_vec(), with_cas: name == b"gets" }
        }
        b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas" => {
            return parse_store(buf, name, plain, noreply, line_len, value_max);
        }
        b"delete" => match plain {
            [] => return error("ERROR", line_len),
            [key] | [key, b"0"] if valid_key(key) => Command::Delete { key, noreply },
            _ => return error(DELETE_USAGE, line_len),
        },
        b"incr" | b"decr" => match plain {
            [key, delta] if valid_key(key) => match number::<u64>(delta) {
                Some(delta) => Command::Arith { key, incr: name == b"incr", delta, noreply },
                None => return error("CLIENT_ERROR invalid numeric delta argument", line_len),
            },
            [_, _] => return error(BAD_FORMAT, line_len),
            _ => return error("ERROR", line_len),
        },
        b"touch" => match plain {
            [key, exptime] if valid_key(key) => match number::<i64>(exptime) {
                Some(exptime) => Command::Touch { key, exptime, noreply },
                None => return error(BAD_EXPTIME, line_len),
            },
            [_, _] => return error(BAD_FORMAT, line_len),
            _ => return error("ERROR", line_len),
        },
        b"flush_all" => match plain {
            [] => Command::FlushAll { delay: 0, noreply },
            [delay] => match number::<i64>(delay) {
                Some(delay) => Command::FlushAll { delay, noreply },
                None => return error(BAD_EXPTIME, line_len),
            },
            _ => return error(BAD_EXPTIME, line_len),
        },
        // memcached ignores anything after `version`.
        b"version" => Command::Version,
        b"stats" if args.is_empty() => Command::Stats,
        b"stats" => return error("ERROR", line_len), // subcommands are not served
        // Like memcached: a level (ignored here), `noreply`, or both; nothing else.
        b"verbosity" if plain.len() == 1 || (plain.is_empty() && noreply) => {
            Command::Verbosity { noreply }
        }
        b"verbosity" => return error("ERROR", line_len),
        b"quit" if args.is_empty() => Command::Quit,
        b"scan" => match plain {
            [start, count] if valid_key(start) => match number::<usize>(count) {
                Some(count) if count <= SCAN_MAX => Command::Scan { start, count },
                _ => return error(BAD_FORMAT, line_len),
            },
            _ => return error(BAD_FORMAT, line_len),
        },
        b"quit" => return error(BAD_FORMAT, line_len),
        _ => return error("ERROR", line_len),
    };
    Parsed::Command(command, line_len)
}

fn parse_store<'a>(
    buf: &'a [u8],
    name: &[u8],
    plain: &[&'a [u8]],
    noreply: bool,
    line_len: usize,
    value_max: usize,
) -> Parsed<'a> {
    let want = if name == b"cas" { 5 } else { 4 };
    if plain.len() != want {
        return error("ERROR", line_len); // as memcached: a wrong word count is no command
    }
    if !valid_key(plain[0]) {
        return error(BAD_FORMAT, line_len);
    }
    let (Some(flags), Some(exptime), Some(bytes)) =
        (number::<u32>(plain[1]), number::<i64>(plain[2]), number::<usize>(plain[3]))
    else {
        return error(BAD_FORMAT, line_len);
    };
    let op = match name {
        b"set" => StoreOp::Set,
        b"add" => StoreOp::Add,
        b"replace" => StoreOp::Replace,
        b"append" => StoreOp::Append,
        b"prepend" => StoreOp::Prepend,
        _ => match number::<u64>(plain[4]) {
            Some(cas) => StoreOp::Cas(cas),
            None => return error(BAD_FORMAT, line_len),
        },
    };
    if bytes > value_max {
        // Refused, but its data block follows: discard it as it arrives.
        let reply = "SERVER_ERROR object too large for cache";
        return Parsed::Error {
            reply,
            used: line_len,
            skip: bytes.saturating_add(2),
            close: false,
        };
    }
    let end = line_len + bytes;
    if buf.len() < end + 2 {
        return Parsed::Incomplete;
    }
    if &buf[end..end + 2] != b"\r\n" {
        // The block does not end where the line said. As memcached does: the line's length
        // plus two bytes are taken as the block and refused, and parsing goes on after them
        // (what is left of the client's block then reads as a line of its own).
        return Parsed::Error {
            reply: "CLIENT_ERROR bad data chunk",
            used: end + 2,
            skip: 0,
            close: false,
        };
    }
    let data = &buf[line_len..end];
    Parsed::Command(Command::Store { op, key: plain[0], flags, exptime, data, noreply }, end + 2)
}

/// Like memcached: any bytes but the separators (a space ends a key, a line ends the command),
/// at most [`KEY_MAX`] of them. Clients do send binary keys (memcaslap does).
fn valid_key(key: &[u8]) -> bool {
    !key.is_empty()
        && key.len() <= KEY_MAX
        && !key.iter().any(|&b| matches!(b, b' ' | b'\r' | b'\n'))
}

fn number<T: std::str::FromStr>(text: &[u8]) -> Option<T> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

#[cfg(test)]
mod tests;
