//! The peer process and the control words it shares with the host side.

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use link::region::Region;
use link::{CpEnd, MonoNanos, Record};

use super::*;

// Control words (one per line) in the control region.
pub(crate) const READY: usize = 0;
pub(crate) const DONE_NS: usize = 64;
pub(crate) const PING: usize = 128;
pub(crate) const PONG: usize = 192;
pub(crate) const MODE: usize = 256;
pub(crate) const BATCH: usize = 320;
pub(crate) const PAUSED: usize = 384;
/// Which channel the sink serves (the current block's).
pub(crate) const ACTIVE: usize = 448;
/// Per channel: records the sink has received so far (one line each).
pub(crate) const RECEIVED: usize = 512;
pub(crate) const MODE_SERVE: u64 = 0;
pub(crate) const MODE_EXIT: u64 = 1;
pub(crate) const MODE_PAUSE: u64 = 2;

pub(crate) struct Peer {
    pub(crate) control: Arc<Region>,
    pub(crate) child: std::process::Child,
}

/// Starts the child `role` on PEER_CPU, sharing `control` and the `channels`.
pub(crate) fn spawn(
    role: &str,
    control: &Arc<Region>,
    channels: &[Arc<Region>],
    extra: &[String],
) -> anyhow::Result<Peer> {
    let fd_path =
        |r: &Region| format!("/proc/{}/fd/{}", std::process::id(), r.fd().unwrap().as_raw_fd());
    let mut command = Command::new(std::env::current_exe()?);
    command.args(["--child", role, &fd_path(control), &channels.len().to_string()]);
    for channel in channels {
        command.args([fd_path(channel), channel.len().to_string()]);
    }
    command.args(extra);
    command.args(["--peer-cpu", &peer_cpu().to_string()]);
    let child = command.spawn().context("spawning the peer process")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while control.word(READY).load(Ordering::Acquire) == 0 {
        if Instant::now() > deadline {
            bail!("peer {role} did not start");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(Peer { control: control.clone(), child })
}

impl Peer {
    pub(crate) fn finish(mut self) -> anyhow::Result<u64> {
        self.control.word(MODE).store(MODE_EXIT, Ordering::Release);
        let status = self.child.wait()?;
        if !status.success() {
            bail!("peer failed: {status}");
        }
        Ok(self.control.word(DONE_NS).load(Ordering::Acquire))
    }
}

pub(crate) fn open_shared(path: &str, len: usize) -> anyhow::Result<Region> {
    let file =
        OpenOptions::new().read(true).write(true).open(path).with_context(|| path.to_owned())?;
    Ok(Region::map_fd(OwnedFd::from(file), len)?)
}

pub(crate) fn child(args: &[String]) -> anyhow::Result<()> {
    pin(peer_cpu())?;
    let control = open_shared(&args[1], 4096)?;
    let channel_count: usize = args[2].parse()?;
    let mut ends = Vec::new();
    for i in 0..channel_count {
        let (path, len) = (&args[3 + 2 * i], args[4 + 2 * i].parse()?);
        ends.push(attach_cp(Arc::new(open_shared(path, len)?))?);
    }
    control.word(READY).store(1, Ordering::Release);
    match args[0].as_str() {
        "echo" => echo(&control, &mut ends),
        "sink" => sink(&control, &mut ends),
        other => bail!("unknown child role {other}"),
    }
    Ok(())
}

/// Serves the raw ping word and every channel's event ring in one polling loop, so the floor
/// and the rings are measured against the same peer, interleaved, until told to exit.
pub(crate) fn echo(control: &Region, ends: &mut [CpEnd]) {
    let mut last_ping = 0;
    let mut polls = 0u64;
    loop {
        let ping = control.word(PING).load(Ordering::Acquire);
        if ping != last_ping {
            control.word(PONG).store(ping, Ordering::Release);
            last_ping = ping;
        }
        for end in ends.iter_mut() {
            let delayed = end.layout.config().delay_ns > 0;
            let worker = &mut end.workers[0];
            if let Some(record) = worker.events.try_pop(now_if(delayed)) {
                // Forwarded untouched: this measures the link's transport. Parsing and
                // policy work are measured end to end by `link-ping` through `ipu-cp`.
                while worker.decisions.try_push(&record, now_if(delayed)).is_err() {
                    std::hint::spin_loop();
                }
            }
        }
        polls += 1;
        if polls.is_multiple_of(4096) && control.word(MODE).load(Ordering::Acquire) == MODE_EXIT {
            return;
        }
    }
}

/// Drains every channel's event ring, `BATCH` records per call, publishing running counts,
/// until told to exit; sleeps while told to pause (so thread baselines get this CPU).
pub(crate) fn sink(control: &Region, ends: &mut [CpEnd]) {
    let mut received = vec![0u64; ends.len()];
    let mut out = vec![Record::ZERO; 64];
    let mut idle = 0u64;
    loop {
        let batch = usize::try_from(control.word(BATCH).load(Ordering::Relaxed)).unwrap_or(1);
        let batch = batch.clamp(1, out.len());
        let mut got_any = false;
        let active = usize::try_from(control.word(ACTIVE).load(Ordering::Relaxed)).unwrap_or(0);
        // Serve only the active channel: polling the others would add their clock reads.
        for (i, end) in ends.iter_mut().enumerate().filter(|(i, _)| *i == active) {
            let delayed = end.layout.config().delay_ns > 0;
            let got = end.workers[0].events.pop_batch(&mut out[..batch], now_if(delayed));
            if got > 0 {
                received[i] += got as u64;
                control.word(RECEIVED + 64 * i).store(received[i], Ordering::Release);
                got_any = true;
            }
        }
        idle = if got_any { 0 } else { idle + 1 };
        if idle > 0 && idle.is_multiple_of(4096) {
            match control.word(MODE).load(Ordering::Acquire) {
                MODE_EXIT => return,
                MODE_PAUSE => {
                    control.word(PAUSED).store(1, Ordering::Release);
                    while control.word(MODE).load(Ordering::Acquire) == MODE_PAUSE {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    control.word(PAUSED).store(0, Ordering::Release);
                }
                _ => {}
            }
        }
    }
}

/// The peer plays the control plane over a region the parent formatted.
pub(crate) fn attach_cp(region: Arc<Region>) -> anyhow::Result<CpEnd> {
    let (layout, app) = Layout::read_superblock(&region)?;
    Ok(CpEnd::attach_existing(
        region,
        layout,
        app,
        Epoch(2),
        LivenessConfig::default(),
        MonoNanos::now(),
    ))
}
