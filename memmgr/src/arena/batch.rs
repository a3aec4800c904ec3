//! The policy's interface: page views, and batches of commands carried out with as few
//! unmaps as possible. Every unmap (a `UFFDIO_MOVE` out of the arena, a drop of staging
//! pages) flushes the TLB of every CPU the process runs on, an interrupt each on a VM, so a
//! batch parks contiguous runs of pages with one `UFFDIO_MOVE` each, and drops the staging
//! pages of up to [`DROP_GROUP`] demoted pages with one call.

use std::sync::atomic::Ordering;

use super::{Applied, Arena, Command, Error, Op, Outcome, PageView};
use super::{COMPRESSED, PARKED, RESIDENT, UNTOUCHED, add};
use crate::uffd::PAGE;

/// Pages parked by one `UFFDIO_MOVE`, at most (2 MiB).
const RUN_MAX: usize = 512;
/// Demoted pages whose staging pages are dropped together; they stay `BUSY` (a fault on one
/// waits) until then, so the group is small.
const DROP_GROUP: usize = 64;

impl Arena {
    /// Page `index` as the policy sees it.
    pub fn view(&self, index: usize) -> PageView {
        let entry = &self.inner.table[index];
        let state = entry.state.load(Ordering::Acquire);
        PageView {
            version: entry.version.load(Ordering::Relaxed),
            parked: state == PARKED,
            compressed: state == COMPRESSED,
            touched: entry.touched.load(Ordering::Acquire),
            free: state == UNTOUCHED || entry.unused.load(Ordering::Acquire),
            touches: entry.touches.load(Ordering::Relaxed),
            writes: entry.writes.load(Ordering::Relaxed),
        }
    }

    /// Carries out a batch of commands, each only if its page is still at the version it
    /// names: the host never trusts a decision made on a page that has changed since. Parks
    /// go first, in page order and by contiguous runs; then demotions, in page order.
    pub fn apply(&self, commands: &[Command]) -> Result<Applied, Error> {
        let mut applied = Applied::default();
        let (mut parks, mut demotes) = (Vec::new(), Vec::new());
        for command in commands {
            match usize::try_from(command.page).ok().filter(|&i| i < self.pages()) {
                None => applied.invalid += 1,
                Some(index) if command.op == Op::Park => parks.push((index, command.version)),
                Some(index) => demotes.push((index, command.version)),
            }
        }
        parks.sort_unstable();
        demotes.sort_unstable();
        let mut claimed = Vec::with_capacity(parks.len());
        for (index, version) in parks {
            let outcome = self.claim_in_use(index, Some(version));
            count(&mut applied, outcome);
            if outcome == Outcome::Done {
                claimed.push(index);
            }
        }
        // Claimed pages are still mapped (their accesses do not fault) until their run moves.
        let mut rest = claimed.as_slice();
        while let Some(&first) = rest.first() {
            let n = rest.iter().enumerate().take(RUN_MAX).take_while(|&(k, &i)| i == first + k);
            let n = n.count();
            self.park_run(first, n)?;
            rest = &rest[n..];
        }
        for group in demotes.chunks(DROP_GROUP) {
            self.demote_group(group, &mut applied)?;
        }
        Ok(applied)
    }

    /// Parks the `n` claimed pages from `first` with one move (page by page for whatever
    /// the kernel did not move).
    fn park_run(&self, first: usize, n: usize) -> Result<(), Error> {
        let inner = &*self.inner;
        let (src, dst) = (inner.arena.page_addr(first), inner.staging.page_addr(first));
        if let Err(error) = inner.uffd.unprotect(src, n) {
            for index in first..first + n {
                inner.table[index].state.store(RESIDENT, Ordering::Release);
            }
            return Err(error);
        }
        let moved = inner.uffd.move_pages(src, dst, n).min(n);
        for index in first..first + moved {
            inner.finish(index, PARKED);
        }
        add(&inner.counters.parks, moved as u64);
        for index in first + moved..first + n {
            if let Err(error) = self.move_out(index) {
                for left in index..first + n {
                    inner.table[left].state.store(RESIDENT, Ordering::Release);
                }
                return Err(error);
            }
            inner.finish(index, PARKED);
            add(&inner.counters.parks, 1);
        }
        Ok(())
    }

    /// Demotes a group of pages, dropping their staging pages together.
    fn demote_group(&self, group: &[(usize, u32)], applied: &mut Applied) -> Result<(), Error> {
        let mut stored = Vec::with_capacity(group.len());
        let mut failure = None;
        for &(index, version) in group {
            let outcome = match self.claim_for_demotion(index, Some(version)) {
                Ok(Outcome::Done) => match self.compress_claimed(index) {
                    Ok(true) => {
                        stored.push(index);
                        Outcome::Done
                    }
                    Ok(false) => Outcome::Skipped,
                    Err(error) => {
                        failure = Some(error);
                        break;
                    }
                },
                Ok(outcome) => outcome,
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            };
            count(applied, outcome);
        }
        // Stored pages are BUSY until sealed, whatever happens next.
        let dropped = self.inner.staging.discard_pages(&stored);
        for &index in &stored {
            if dropped.is_ok() {
                self.seal(index);
            } else {
                // The copy is kept, the staging page too: still parked, nothing lost.
                self.inner.table[index].state.store(PARKED, Ordering::Release);
            }
        }
        dropped?;
        failure.map_or(Ok(()), Err)
    }
}

fn count(applied: &mut Applied, outcome: Outcome) {
    match outcome {
        Outcome::Done => applied.done += 1,
        Outcome::Stale => applied.stale += 1,
        Outcome::Skipped => applied.skipped += 1,
    }
}

const _: () = assert!(RUN_MAX * PAGE <= 2 << 20);
