//! The tier service end to end: an arena's tier host driven by the real `ipu-cp`, which is
//! SIGKILLed mid-run and restarted, while threads hammer the arena with checksummed reads and
//! writes; and a misbehaving agent whose malformed and stale commands are refused. Needs root
//! (userfaultfd), which CI has.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use host_dp::runtime::AgentChannel;
use host_dp::tier::TierHost;
use ipu_cp::process::ControlPlane;
use link::proto::{Direction, Epoch, Message, NetMessage, TierMessage, WorkerId};
use link::{ChannelConfig, LivenessConfig, MonoNanos};
use memmgr::{Arena, get};

const WORDS_PER_PAGE: usize = 512;
const SHAPE: ChannelConfig =
    ChannelConfig { workers: 1, ring_capacity: 4096, prestage_slots: 1, delay_ns: 0 };
const LIVENESS: LivenessConfig =
    LivenessConfig { heartbeat_interval_ns: 1_000_000, peer_timeout_ns: 1_000_000_000 };

fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

fn expected(page: usize, version: u64, word: usize) -> u64 {
    version.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ((page as u64) << 20) ^ word as u64
}

fn write_page(arena: &Arena, page: usize, version: u64) {
    let words = &arena.words()[page * WORDS_PER_PAGE..(page + 1) * WORDS_PER_PAGE];
    for (index, word) in words.iter().enumerate().skip(1) {
        word.store(expected(page, version, index), Ordering::Relaxed);
    }
    words[0].store(version, Ordering::Release);
}

fn check_page(arena: &Arena, page: usize, version: u64) {
    let words = &arena.words()[page * WORDS_PER_PAGE..(page + 1) * WORDS_PER_PAGE];
    assert_eq!(words[0].load(Ordering::Acquire), version, "page {page}: version");
    for (index, word) in words.iter().enumerate().skip(1) {
        assert_eq!(word.load(Ordering::Relaxed), expected(page, version, index), "page {page}");
    }
}

fn start_cp(tag: &str) -> ControlPlane {
    let exe = ipu_cp::process::binary_next_to_exe().expect("ipu-cp missing: cargo build");
    let args = ["--tier-epoch-ms", "20", "--tier-promotion-target", "100"].map(String::from);
    ControlPlane::start(&exe, tag, &args, false).expect("ipu-cp starts")
}

fn connect(arena: &Arena, cp: &ControlPlane) -> AgentChannel {
    let timeout = Duration::from_secs(5);
    host_dp::tier::connect(arena, &cp.socket, SHAPE, LIVENESS, timeout).expect("tier channel")
}

/// Runs epochs of 20 ms (ticking every millisecond) for `duration`.
fn run_epochs(host: &mut TierHost, duration: Duration) {
    let until = Instant::now() + duration;
    while Instant::now() < until {
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(1));
            host.tick(MonoNanos::now());
        }
        host.epoch(MonoNanos::now()).expect("epoch");
    }
}

#[test]
fn no_data_lost_while_ipu_cp_is_killed_mid_run_and_restarted() {
    const PAGES: usize = 768;
    const THREADS: usize = 3;
    let arena = Arc::new(Arena::new(PAGES).expect("userfaultfd (run as root)"));
    // Thread t owns pages p with p % THREADS == t and writes all of them first; most of its
    // accesses then go to an eighth of them, so the rest turn cold and get demoted.
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (arena, stop) = (arena.clone(), stop.clone());
            std::thread::spawn(move || {
                let mine: Vec<usize> = (t..PAGES).step_by(THREADS).collect();
                let mut versions = vec![0u64; PAGES];
                for &page in &mine {
                    versions[page] = 1;
                    write_page(&arena, page, 1);
                }
                let mut rng = 0x5eed + t as u64;
                while !stop.load(Ordering::Relaxed) {
                    let pick = next(&mut rng);
                    let span = if pick.is_multiple_of(1000) { mine.len() } else { mine.len() / 8 };
                    let page = mine[usize::try_from(pick >> 20).unwrap() % span];
                    if pick.is_multiple_of(4) {
                        versions[page] += 1;
                        write_page(&arena, page, versions[page]);
                    } else {
                        check_page(&arena, page, versions[page]);
                    }
                    std::thread::sleep(Duration::from_micros(20));
                }
                for &page in &mine {
                    check_page(&arena, page, versions[page]);
                }
            })
        })
        .collect();
    let mut host = TierHost::new(arena.clone());
    let cp = start_cp("tier-1");
    host.attach(connect(&arena, &cp), MonoNanos::now()).expect("attach");
    run_epochs(&mut host, Duration::from_millis(1500));
    let before = get(&arena.counters().demotions);
    assert!(before > 0, "the offloaded policy demoted pages: {:?}", host.stats());
    // Mid-epoch: the kill lands whenever it lands; the host notices the session hang-up.
    drop(cp);
    run_epochs(&mut host, Duration::from_millis(300));
    assert!(!host.is_attached(), "the host fell back to local");
    assert_eq!(host.stats().fallbacks, 1);
    let local = get(&arena.counters().demotions);
    run_epochs(&mut host, Duration::from_millis(300));
    assert_eq!(get(&arena.counters().demotions), local, "no demotion without a policy");
    let cp = start_cp("tier-2");
    host.attach(connect(&arena, &cp), MonoNanos::now()).expect("attach again");
    run_epochs(&mut host, Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().expect("no lost or corrupted data");
    }
    let stats = host.stats();
    assert_eq!(stats.reattaches, 1);
    assert_eq!(stats.rejected, 0, "{stats:?}");
    let counters = arena.counters();
    assert!(get(&counters.demotions) > local, "the new policy demoted again: {stats:?}");
    assert!(get(&counters.promotions) > 0, "cold pages came back on touch");
    eprintln!(
        "tier: {stats:?}; demotions {} promotions {}",
        get(&counters.demotions),
        get(&counters.promotions)
    );
}

#[test]
fn malformed_and_stale_commands_are_refused_and_counted() {
    const PAGES: usize = 64;
    let arena = Arc::new(Arena::new(PAGES).expect("userfaultfd (run as root)"));
    for page in 0..PAGES {
        write_page(&arena, page, 7);
    }
    let now = MonoNanos::now();
    let (link, mut cp) = host_dp::tier::heap_pair(&arena, SHAPE, LIVENESS, now).unwrap();
    let mut host = TierHost::new(arena.clone());
    host.attach(link, now).unwrap();
    host.epoch(MonoNanos::now()).unwrap();
    // The agent's view: the arena's size, an epoch's end, and every page in the table.
    let lane = &mut cp.workers[0];
    let mut events = Vec::new();
    while let Some(record) = lane.events.try_pop(MonoNanos::now()) {
        events.push(Message::parse_in(&record, Direction::Event).expect("a valid event"));
    }
    assert!(matches!(events[..], [Message::Tier(TierMessage::Attach { pages: 64 }), _]));
    let table = cp.page_table.clone().expect("the agent holds the table");
    let entries: Vec<_> = (0..64).map(|page| table.entry(page).expect("well formed")).collect();
    assert!(entries.iter().all(|e| e.state == link::tier_table::PageState::Resident));
    let v = |page: usize| entries[page].version;
    let decisions = [
        Message::Tier(TierMessage::Park { page: 1, version: v(1) }),
        Message::Tier(TierMessage::Park { page: 2, version: v(2).wrapping_add(5) }), // stale
        Message::Tier(TierMessage::Demote { page: 9_999, version: 0 }), // outside the arena
        Message::Net(NetMessage::Admit { conn: 3, worker: WorkerId(0) }), // not a tier command
    ];
    for decision in decisions {
        lane.decisions.try_push(&decision.to_record(Epoch(2)), MonoNanos::now()).unwrap();
    }
    host.epoch(MonoNanos::now()).unwrap();
    let stats = host.stats();
    assert_eq!((stats.applied, stats.stale, stats.rejected), (1, 1, 2), "{stats:?}");
    assert!(arena.view(1).parked && !arena.view(2).parked);
    for page in 0..PAGES {
        check_page(&arena, page, 7);
    }
    drop(host);
    let status = cp.liveness.tick(MonoNanos::now());
    assert!(matches!(status, link::PeerStatus::Closed), "an orderly goodbye: {status:?}");
}

/// The table `memmgr` writes is the table `link` reads: every state change the mechanism
/// makes shows in the policy's read-only mapping, with the arena's own versions.
#[test]
fn the_policy_reads_the_states_the_mechanism_writes() {
    use link::tier_table::PageState;
    const PAGES: usize = 8;
    let arena = Arc::new(Arena::new(PAGES).expect("userfaultfd (run as root)"));
    let (_link, cp) = host_dp::tier::heap_pair(&arena, SHAPE, LIVENESS, MonoNanos::now()).unwrap();
    let table = cp.page_table.expect("the agent's end holds the table");
    let entry = |page: usize| table.entry(u32::try_from(page).unwrap()).expect("well formed");
    assert_eq!(table.pages() as usize, PAGES);
    assert!((0..PAGES).all(|page| entry(page).state == PageState::Untouched));
    for page in 0..PAGES {
        write_page(&arena, page, 5);
    }
    assert_eq!(entry(0).state, PageState::Resident);
    // Parked, then touched: the touch counter moves and the page is resident again.
    assert!(arena.park(1).unwrap());
    assert_eq!(entry(1).state, PageState::Parked);
    check_page(&arena, 1, 5);
    assert_eq!((entry(1).state, entry(1).touches), (PageState::Resident, 1));
    // Demoted, then promoted by a read and written: with write tracking, the write counter.
    assert!(arena.demote(2).unwrap());
    assert_eq!(entry(2).state, PageState::Compressed);
    check_page(&arena, 2, 5);
    assert_eq!(entry(2).state, PageState::Resident);
    if arena.tracks_writes() {
        assert!(entry(2).clean, "promoted from a kept copy");
        write_page(&arena, 2, 6);
        arena.track_writes().unwrap();
        assert!(!entry(2).clean);
        assert_eq!(entry(2).writes, 1);
    }
    // Retired by an allocator: resident but unused.
    arena.retire(3, 1).unwrap();
    assert!(entry(3).unused);
    for page in 0..PAGES {
        assert_eq!(entry(page).version, arena.view(page).version, "page {page}");
    }
}
