//! The open-loop engine: requests leave on a Poisson schedule fixed in advance, whatever the
//! server does; each one's latency runs from its *planned* send time to its reply, so a server
//! (or a client) that falls behind shows up in the latency instead of slowing the offered load
//! down (no coordinated omission). Requests sent late and requests never answered are counted,
//! never dropped from the data.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp};

/// How bytes reach the server: our stack, or kernel sockets.
pub trait Transport {
    /// Moves bytes (polls the stack, or nothing for kernel sockets).
    fn poll(&mut self);
    /// Queues bytes on connection `conn`; returns how many it took.
    fn send(&mut self, conn: usize, data: &[u8]) -> anyhow::Result<usize>;
    /// Reads what arrived on `conn` into `buf`; returns how many bytes.
    fn recv(&mut self, conn: usize, buf: &mut [u8]) -> anyhow::Result<usize>;
    /// Open connections.
    fn conns(&self) -> usize;
}

/// The request mix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mix {
    /// Fraction of requests that are GETs (the rest SETs).
    pub get_ratio: f64,
    /// Fraction of requests that are SCANs instead (`scan key:N count`, for ordered servers
    /// such as rocksdb-server); their latency is kept apart.
    pub scan_ratio: f64,
    /// Items per SCAN.
    pub scan_count: u32,
    /// Keys, `key:0` .. `key:{keys-1}`, chosen uniformly (or as `hot` says).
    pub keys: u32,
    /// Bytes per value.
    pub value_bytes: usize,
    /// A skew: `(fraction, share)` sends `share` of the requests to the first `fraction` of
    /// the keys (uniformly within each part); none: uniform.
    pub hot: Option<(f64, f64)>,
    /// Values made of words (compressible about 2× by LZ4, like text) instead of one
    /// repeated byte.
    pub text_values: bool,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            get_ratio: 0.9,
            scan_ratio: 0.0,
            scan_count: 100,
            keys: 10_000,
            value_bytes: 64,
            hot: None,
            text_values: false,
        }
    }
}

impl Mix {
    /// A key index, as the skew says.
    fn key(&self, rng: &mut SmallRng) -> u32 {
        let Some((fraction, share)) = self.hot else { return rng.random_range(0..self.keys) };
        // In 0..=keys: `fraction` is checked to lie in (0, 1).
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let hot = ((f64::from(self.keys) * fraction) as u32).clamp(1, self.keys);
        if hot == self.keys || rng.random_bool(share) {
            rng.random_range(0..hot)
        } else {
            rng.random_range(hot..self.keys)
        }
    }

    /// The value stored under `key`.
    fn value(&self, key: u32) -> Vec<u8> {
        if !self.text_values {
            return vec![b'v'; self.value_bytes];
        }
        const WORDS: [&str; 32] = [
            "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
            "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
            "sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "one",
            "two", "three", "four", "five", "six",
        ];
        let mut rng = SmallRng::seed_from_u64(u64::from(key));
        let mut value = Vec::with_capacity(self.value_bytes + 16);
        while value.len() < self.value_bytes {
            value.extend_from_slice(WORDS[rng.random_range(0..WORDS.len())].as_bytes());
            value.push(b' ');
        }
        value.truncate(self.value_bytes);
        value
    }
}

/// What one load point measured.
#[derive(Debug, Clone)]
pub struct Point {
    /// Requests per second offered.
    pub offered_per_s: f64,
    /// Replies per second during the run.
    pub achieved_per_s: f64,
    /// Latency from the planned send time to the reply, µs.
    pub latency_us: Histogram<u64>,
    /// The same for SCANs.
    pub scan_latency_us: Histogram<u64>,
    /// Requests sent more than 1 ms after their planned time (the client fell behind).
    pub late: u64,
    /// Requests with no reply by the end of the drain.
    pub unanswered: u64,
    /// Replies that were errors (`ERROR`, `CLIENT_ERROR`, `SERVER_ERROR`).
    pub errors: u64,
    /// Requests planned.
    pub planned: u64,
}

/// One point from several client threads' points at the same time: rates and counts add up,
/// histograms merge.
pub fn merge(points: Vec<Point>) -> anyhow::Result<Point> {
    let mut iter = points.into_iter();
    let mut total = iter.next().ok_or_else(|| anyhow::anyhow!("no points to merge"))?;
    for p in iter {
        total.offered_per_s += p.offered_per_s;
        total.achieved_per_s += p.achieved_per_s;
        total.latency_us.add(&p.latency_us)?;
        total.scan_latency_us.add(&p.scan_latency_us)?;
        total.late += p.late;
        total.unanswered += p.unanswered;
        total.errors += p.errors;
        total.planned += p.planned;
    }
    Ok(total)
}

/// A connection's bytes in flight and its requests awaiting replies (in order).
#[derive(Debug, Default)]
struct Conn {
    out: Vec<u8>,
    input: Vec<u8>,
    /// How much of the partial reply at the front of `input` is parsed already (whole items
    /// of a long SCAN reply): parsing resumes there, so a reply costs its length once.
    parsed: usize,
    /// Planned send times, and whether the request is a SCAN.
    waiting: std::collections::VecDeque<(Instant, bool)>,
}

/// Late threshold: a request that leaves this long after its planned time is counted late.
const LATE: Duration = Duration::from_millis(1);

/// Stores every key once (pipelined, closed loop), so GETs hit.
pub fn preload(transport: &mut impl Transport, mix: &Mix, timeout: Duration) -> anyhow::Result<()> {
    let mut conns: Vec<Conn> = (0..transport.conns()).map(|_| Conn::default()).collect();
    let start = Instant::now();
    for key in 0..mix.keys {
        let c = usize::try_from(key).unwrap_or(0) % conns.len();
        set_request(&mut conns[c].out, key, &mix.value(key));
        conns[c].waiting.push_back((start, false));
    }
    let mut errors = 0;
    let mut buf = vec![0u8; RECV_BYTES];
    while conns.iter().any(|c| !c.waiting.is_empty()) {
        anyhow::ensure!(start.elapsed() < timeout, "preloading timed out");
        pump(transport, &mut conns, &mut buf, &mut |_, error| errors += u64::from(error))?;
    }
    anyhow::ensure!(errors == 0, "{errors} preload SETs failed");
    Ok(())
}

/// Offers `rate_per_s` requests per second for `duration`, then waits up to `drain` for the
/// last replies. Between sends the client polls for replies; with `idle_sleep` above zero, a
/// poll that found nothing sleeps that long (unless a send is due sooner), so that on a
/// machine with few cores the client leaves them to the server and its control plane. The
/// sleep adds up to `idle_sleep` plus the wakeup to a reply's measured latency; sends still
/// leave at their planned times, or are counted late.
pub fn run(
    transport: &mut impl Transport,
    mix: &Mix,
    rate_per_s: f64,
    duration: Duration,
    drain: Duration,
    idle_sleep: Duration,
    seed: u64,
) -> anyhow::Result<Point> {
    anyhow::ensure!(rate_per_s > 0.0 && transport.conns() > 0, "need a rate and connections");
    let mut rng = SmallRng::seed_from_u64(seed);
    let gaps = Exp::new(rate_per_s)?;
    let mut conns: Vec<Conn> = (0..transport.conns()).map(|_| Conn::default()).collect();
    let mut latency_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut scan_latency_us = latency_us.clone();
    let (mut late, mut errors, mut planned, mut next_conn) = (0u64, 0u64, 0u64, 0usize);
    let start = Instant::now();
    let end = start + duration;
    let mut next = start;
    let mut answered = 0u64;
    let mut buf = vec![0u8; RECV_BYTES];
    loop {
        let now = Instant::now();
        let (planned_before, answered_before) = (planned, answered);
        // Everything due by now leaves now, in planned order, whatever came back so far.
        while next <= now && next < end {
            let count = conns.len();
            let conn = &mut conns[next_conn];
            next_conn = (next_conn + 1) % count;
            let key = mix.key(&mut rng);
            let scan = mix.scan_ratio > 0.0 && rng.random_bool(mix.scan_ratio);
            if scan {
                let line = format!("scan key:{key} {}\r\n", mix.scan_count);
                conn.out.extend_from_slice(line.as_bytes());
            } else if rng.random_bool(mix.get_ratio) {
                get_request(&mut conn.out, key);
            } else {
                set_request(&mut conn.out, key, &mix.value(key));
            }
            conn.waiting.push_back((next, scan));
            late += u64::from(now.duration_since(next) > LATE);
            planned += 1;
            next += Duration::from_secs_f64(gaps.sample(&mut rng));
        }
        pump(transport, &mut conns, &mut buf, &mut |(sent_at, scan), error| {
            let us = u64::try_from(sent_at.elapsed().as_micros()).unwrap_or(u64::MAX);
            let histogram = if scan { &mut scan_latency_us } else { &mut latency_us };
            histogram.saturating_record(us.max(1));
            errors += u64::from(error);
            answered += 1;
        })?;
        let waiting = conns.iter().any(|c| !c.waiting.is_empty());
        if now >= end && (!waiting || now >= end + drain) {
            break;
        }
        let idle = planned == planned_before && answered == answered_before;
        if idle && !idle_sleep.is_zero() && (next >= end || next > now + 2 * idle_sleep) {
            std::thread::sleep(idle_sleep);
        }
    }
    let unanswered = conns.iter().map(|c| c.waiting.len() as u64).sum();
    Ok(Point {
        offered_per_s: rate_per_s,
        achieved_per_s: answered as f64 / duration.as_secs_f64(),
        latency_us,
        scan_latency_us,
        late,
        unanswered,
        errors,
        planned,
    })
}

/// Bytes read per `recv` call.
const RECV_BYTES: usize = 16 * 1024;

/// Sends what is queued, polls, reads and parses replies; calls `done(planned, error)` for
/// each reply in order. Only connections that wait for a reply are read: with hundreds of
/// connections, asking every one each round costs more than the replies themselves (a reply
/// nobody asked for still shows, at the connection's next request).
fn pump(
    transport: &mut impl Transport,
    conns: &mut [Conn],
    buf: &mut [u8],
    done: &mut impl FnMut((Instant, bool), bool),
) -> anyhow::Result<()> {
    for (index, conn) in conns.iter_mut().enumerate() {
        if !conn.out.is_empty() {
            let sent = transport.send(index, &conn.out)?;
            conn.out.drain(..sent);
        }
    }
    transport.poll();
    for (index, conn) in conns.iter_mut().enumerate() {
        if conn.waiting.is_empty() {
            continue;
        }
        loop {
            let n = transport.recv(index, buf)?;
            if n == 0 {
                break;
            }
            conn.input.extend_from_slice(&buf[..n]);
        }
        let mut used = 0;
        while let Some((took, error)) = reply_len(&conn.input[used..], &mut conn.parsed) {
            used += took;
            let planned = conn
                .waiting
                .pop_front()
                .ok_or_else(|| anyhow::anyhow!("a reply nobody asked for"))?;
            done(planned, error);
        }
        conn.input.drain(..used);
    }
    Ok(())
}

fn get_request(out: &mut Vec<u8>, key: u32) {
    out.extend_from_slice(format!("get key:{key}\r\n").as_bytes());
}

fn set_request(out: &mut Vec<u8>, key: u32, value: &[u8]) {
    out.extend_from_slice(format!("set key:{key} 0 0 {}\r\n", value.len()).as_bytes());
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The length of the complete reply at the front of `buf` and whether it is an error; `None`
/// if it is not all there yet. Replies: `VALUE ... \r\n<data>\r\n`* `END\r\n`, or one line.
/// Parsing starts at `*parsed` (the whole items of this reply seen by earlier calls); when the
/// reply is incomplete, `*parsed` moves to the end of its last whole item, and when it is
/// complete, back to 0 for the next reply.
fn reply_len(buf: &[u8], parsed: &mut usize) -> Option<(usize, bool)> {
    let mut at = *parsed;
    loop {
        let item = at;
        let Some(line_end) = find_crlf(&buf[at..]).map(|i| i + at) else {
            *parsed = item;
            return None;
        };
        let line = &buf[at..line_end];
        at = line_end + 2;
        if let Some(rest) = line.strip_prefix(b"VALUE ") {
            let bytes: usize =
                std::str::from_utf8(rest.rsplit(|&b| b == b' ').next()?).ok()?.parse().ok()?;
            // (gets adds a CAS after the length: this client never sends gets.)
            if buf.len() < at + bytes + 2 {
                *parsed = item;
                return None;
            }
            at += bytes + 2;
            continue;
        }
        let error = line.ends_with(b"ERROR")
            || line.starts_with(b"CLIENT_ERROR")
            || line.starts_with(b"SERVER_ERROR");
        *parsed = 0;
        return Some((at, error));
    }
}

/// Where the first `\r\n` in `buf` starts.
fn find_crlf(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    loop {
        let newline = from + buf[from..].iter().position(|&b| b == b'\n')?;
        if newline > 0 && buf[newline - 1] == b'\r' {
            return Some(newline - 1);
        }
        from = newline + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::reply_len;

    fn whole(buf: &[u8]) -> Option<(usize, bool)> {
        reply_len(buf, &mut 0)
    }

    #[test]
    fn replies_are_framed_whole_or_not_at_all() {
        assert_eq!(whole(b"STORED\r\n"), Some((8, false)));
        assert_eq!(whole(b"END\r\nSTORED\r\n"), Some((5, false)));
        let hit = b"VALUE key:1 0 3\r\nabc\r\nEND\r\n";
        assert_eq!(whole(hit), Some((hit.len(), false)));
        assert_eq!(whole(&hit[..hit.len() - 1]), None);
        assert_eq!(whole(b"VALUE key:1 0 3\r\nab"), None);
        assert_eq!(whole(b"SERVER_ERROR out of memory storing object\r\n"), Some((43, true)));
        assert_eq!(whole(b"ERROR\r\n"), Some((7, true)));
        assert_eq!(whole(b"VALUE key:1 0 4\r\na\nb\r\r\nEND\r\n"), Some((28, false)));
    }

    #[test]
    fn a_long_reply_parsed_as_it_arrives_matches_the_whole() {
        let mut reply = Vec::new();
        for i in 0..200 {
            reply.extend_from_slice(format!("VALUE key:{i} 0 6\r\nv\r\n{i:03}\r\n").as_bytes());
        }
        reply.extend_from_slice(b"END\r\nSTORED\r\n");
        let end = reply.len() - 8;
        let mut parsed = 0;
        for len in 0..end {
            assert_eq!(reply_len(&reply[..len], &mut parsed), None, "at {len}");
            assert!(parsed <= len, "resumes inside what arrived");
        }
        assert_eq!(reply_len(&reply, &mut parsed), Some((end, false)));
        assert_eq!(parsed, 0, "the next reply starts fresh");
        assert_eq!(reply_len(&reply[end..], &mut parsed), Some((8, false)));
    }
}
