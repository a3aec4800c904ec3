//! One client's session: bytes in, replies out, independent of how bytes travel (the async
//! loop in `main.rs` feeds it from a `TcpStream`; tests feed it directly). Pipelined requests
//! are answered in order, in one write per batch.

use std::io::Write as _;
use std::sync::Arc;

use crate::backend::Backend;
use crate::protocol::{Command, LINE_MAX, Parsed, parse};
use crate::store::{Arith, Stored};

/// The version we announce.
pub const VERSION: &str = concat!("wave-rpc-server ", env!("CARGO_PKG_VERSION"));

/// A client's session state.
#[derive(Debug)]
pub struct Session<B: Backend> {
    store: Arc<B>,
    value_max: usize,
    input: Vec<u8>,
    /// Bytes of a refused value block still to discard.
    skip: usize,
    started_s: i64,
    /// Leave `scan`s to the caller (who runs them in chunks between preempt points) instead of
    /// running them inline.
    defer_scans: bool,
    /// A deferred scan: (start, count); input after it waits until the caller resumes.
    pending_scan: Option<(Vec<u8>, usize)>,
}

impl<B: Backend> Session<B> {
    /// A session on `store`, refusing values over `value_max` bytes; `now_s` is the Unix time.
    pub fn new(store: Arc<B>, value_max: usize, now_s: i64) -> Session<B> {
        store.counters().connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Session {
            store,
            value_max,
            input: Vec::new(),
            skip: 0,
            started_s: now_s,
            defer_scans: false,
            pending_scan: None,
        }
    }

    /// Leaves `scan`s to the caller: [`Session::feed`] stops at one, [`Session::take_scan`]
    /// hands it over, and feeding (even nothing) resumes after it.
    pub fn defer_scans(mut self) -> Session<B> {
        self.defer_scans = true;
        self
    }

    /// The deferred scan the last feed stopped at, if any.
    pub fn take_scan(&mut self) -> Option<(Vec<u8>, usize)> {
        self.pending_scan.take()
    }

    /// Takes `bytes` that arrived, appends the replies to `out`; false once the session must
    /// close (quit, or a stream that cannot be framed any more).
    pub fn feed(&mut self, mut bytes: &[u8], now_s: i64, out: &mut Vec<u8>) -> bool {
        let skipped = self.skip.min(bytes.len());
        self.skip -= skipped;
        bytes = &bytes[skipped..];
        self.input.extend_from_slice(bytes);
        let mut used = 0;
        let mut open = true;
        while open && used < self.input.len() && self.pending_scan.is_none() {
            match parse(&self.input[used..], self.value_max) {
                Parsed::Incomplete => break,
                Parsed::Command(Command::Scan { start, count }, took) if self.defer_scans => {
                    self.pending_scan = Some((start.to_vec(), count));
                    used += took;
                }
                Parsed::Command(command, took) => {
                    used += took;
                    open = self.execute(command, now_s, out);
                }
                Parsed::Error { reply, used: took, skip, close } => {
                    used += took;
                    let here = skip.min(self.input.len() - used);
                    used += here;
                    self.skip = skip - here;
                    line(out, reply.as_bytes());
                    open = !close;
                }
            }
        }
        self.input.drain(..used);
        // Bounded: a line longer than LINE_MAX or a value over value_max never waits here.
        debug_assert!(self.input.len() <= self.value_max + LINE_MAX + 2);
        open
    }

    fn execute(&self, command: Command<'_>, now_s: i64, out: &mut Vec<u8>) -> bool {
        let store = &self.store;
        match command {
            Command::Get { keys, with_cas } => {
                for key in keys {
                    if let Some((value, flags, cas)) = store.get(key, now_s) {
                        out.extend_from_slice(b"VALUE ");
                        out.extend_from_slice(key);
                        let _ = write!(out, " {flags} {}", value.len());
                        if with_cas {
                            let _ = write!(out, " {cas}");
                        }
                        out.extend_from_slice(b"\r\n");
                        out.extend_from_slice(&value);
                        out.extend_from_slice(b"\r\n");
                    }
                }
                line(out, b"END");
            }
            Command::Store { op, key, flags, exptime, data, noreply } => {
                let reply: &[u8] = match store.store(op, key, flags, exptime, data, now_s) {
                    Stored::Stored => b"STORED",
                    Stored::NotStored => b"NOT_STORED",
                    Stored::Exists => b"EXISTS",
                    Stored::NotFound => b"NOT_FOUND",
                    Stored::OutOfMemory => b"SERVER_ERROR out of memory storing object",
                };
                reply_unless(out, noreply, reply);
            }
            Command::Delete { key, noreply } => {
                let reply: &[u8] = if store.delete(key, now_s) { b"DELETED" } else { b"NOT_FOUND" };
                reply_unless(out, noreply, reply);
            }
            Command::Arith { key, incr, delta, noreply } => {
                match store.arith(key, incr, delta, now_s) {
                    Arith::Value(value) => reply_unless(out, noreply, value.to_string().as_bytes()),
                    Arith::NotFound => reply_unless(out, noreply, b"NOT_FOUND"),
                    Arith::NotNumeric => reply_unless(
                        out,
                        noreply,
                        b"CLIENT_ERROR cannot increment or decrement non-numeric value",
                    ),
                }
            }
            Command::Touch { key, exptime, noreply } => {
                let reply: &[u8] =
                    if store.touch(key, exptime, now_s) { b"TOUCHED" } else { b"NOT_FOUND" };
                reply_unless(out, noreply, reply);
            }
            Command::FlushAll { delay, noreply } => {
                store.flush_all(delay, now_s);
                reply_unless(out, noreply, b"OK");
            }
            Command::Version => line(out, format!("VERSION {VERSION}").as_bytes()),
            Command::Verbosity { noreply } => reply_unless(out, noreply, b"OK"),
            Command::Stats => self.stats(now_s, out),
            Command::Scan { start, count } => match store.scan(start, count, now_s) {
                Some(items) => {
                    for (key, value, flags) in items {
                        out.extend_from_slice(b"VALUE ");
                        out.extend_from_slice(&key);
                        let _ = write!(out, " {flags} {}", value.len());
                        out.extend_from_slice(b"\r\n");
                        out.extend_from_slice(&value);
                        out.extend_from_slice(b"\r\n");
                    }
                    line(out, b"END");
                }
                None => line(out, b"ERROR"),
            },
            Command::Quit => return false,
        }
        true
    }

    fn stats(&self, now_s: i64, out: &mut Vec<u8>) {
        use std::sync::atomic::Ordering::Relaxed;
        let c = self.store.counters();
        let (items, bytes, bytes_max) = self.store.usage();
        let stats: [(&str, String); 11] = [
            ("pid", std::process::id().to_string()),
            ("uptime", (now_s - self.started_s).max(0).to_string()),
            ("time", now_s.to_string()),
            ("version", VERSION.replace(' ', "-")),
            ("curr_items", items.to_string()),
            ("bytes", bytes.to_string()),
            ("limit_maxbytes", bytes_max.to_string()),
            ("get_hits", c.get_hits.load(Relaxed).to_string()),
            ("get_misses", c.get_misses.load(Relaxed).to_string()),
            ("cmd_set", c.sets.load(Relaxed).to_string()),
            ("total_connections", c.connections.load(Relaxed).to_string()),
        ];
        for (name, value) in stats {
            line(out, format!("STAT {name} {value}").as_bytes());
        }
        line(out, b"END");
    }
}

fn line(out: &mut Vec<u8>, text: &[u8]) {
    out.extend_from_slice(text);
    out.extend_from_slice(b"\r\n");
}

fn reply_unless(out: &mut Vec<u8>, noreply: bool, text: &[u8]) {
    if !noreply {
        line(out, text);
    }
}
