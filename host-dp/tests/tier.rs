//! The tier service end to end: an arena's tier host driven by the real `ipu-cp`, which is
//! SIGKILLed mid-run and restarted, while threads hammer the arena with checksummed reads and
//! writes; and a misbehaving agent whose malformed and stale commands are refused. Needs root
//! (userfaultfd), which CI has.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use host_dp::runtime::AgentLink;
use host_dp::tier::TierHost;
use ipu_cp::process::ControlPlane;
use link::proto::{
    Direction, Epoch, Message, NetMessage, Service, TierMessage, TierPlace, WorkerId,
};
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

fn connect(cp: &ControlPlane) -> AgentLink {
    let timeout = Duration::from_secs(5);
    let conn =
        link::transport::connect(&cp.socket, Service::Tier, SHAPE, Epoch(1), LIVENESS, timeout)
            .expect("tier channel");
    AgentLink { end: conn.end, session: Some(conn.stream) }
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
    host.attach(connect(&cp), MonoNanos::now()).expect("attach");
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
    host.attach(connect(&cp), MonoNanos::now()).expect("attach again");
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
    let (end, mut cp) = link::channel::heap_pair(SHAPE, LIVENESS, Epoch(1), Epoch(2), now).unwrap();
    let mut host = TierHost::new(arena.clone());
    host.attach(AgentLink { end, session: None }, now).unwrap();
    host.epoch(MonoNanos::now()).unwrap();
    // The agent's view: every page reported once, at its version.
    let lane = &mut cp.workers[0];
    let mut versions = vec![None; PAGES];
    while let Some(record) = lane.events.try_pop(MonoNanos::now()) {
        if let Ok(Message::Tier(TierMessage::Page { page, version, place, .. })) =
            Message::parse_in(&record, Direction::Event)
        {
            assert_eq!(place, TierPlace::Resident);
            versions[page as usize] = Some(version);
        }
    }
    assert!(versions.iter().all(Option::is_some), "every page reported");
    let v = |page: usize| versions[page].unwrap();
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
}
