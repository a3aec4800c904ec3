//! The tier service's page-state table: opened only when sealed and well formed, read as the
//! host wrote it, and required (and only accepted) from a tier-service app at the handshake.

mod common;

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use common::socket_path;
use link::proto::{AppId, Epoch, RefusalReason, Service};
use link::region::RegionError;
use link::tier_table::{HEADER_BYTES, PageState, PageTableView, TABLE_MAGIC, TableError};
use link::transport::{AcceptPolicy, ConnectError, HandshakeError, Listener, Session};
use link::{ChannelConfig, LivenessConfig, MonoNanos};
use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};

/// A table of `pages` entries as bytes: a valid header, entry `i` resident at version `i`.
fn table_bytes(pages: u32) -> Vec<u8> {
    let mut bytes = vec![0u8; HEADER_BYTES + pages as usize * 16];
    bytes[0..8].copy_from_slice(&TABLE_MAGIC.to_le_bytes());
    bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
    bytes[12..16].copy_from_slice(&16u32.to_le_bytes());
    bytes[16..24].copy_from_slice(&u64::from(pages).to_le_bytes());
    for page in 0..pages {
        let entry = HEADER_BYTES + page as usize * 16;
        bytes[entry] = 1;
        bytes[entry + 4..entry + 8].copy_from_slice(&page.to_le_bytes());
    }
    bytes
}

/// A memfd holding `bytes`, sealed against shrinking when `seal`.
fn memfd(bytes: &[u8], seal: bool) -> OwnedFd {
    let fd = memfd_create(c"test-table", MFdFlags::MFD_ALLOW_SEALING).unwrap();
    let file = File::from(fd);
    file.write_all_at(bytes, 0).unwrap();
    if seal {
        let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW;
        fcntl(&file, FcntlArg::F_ADD_SEALS(seals)).unwrap();
    }
    OwnedFd::from(file)
}

#[test]
fn a_sealed_table_opens_and_reads_what_the_host_wrote() {
    let mut bytes = table_bytes(4);
    let third = HEADER_BYTES + 2 * 16;
    bytes[third] = 3; // parked
    bytes[third + 8..third + 12].copy_from_slice(&5u32.to_le_bytes()); // touches
    bytes[third + 12..third + 16].copy_from_slice(&2u32.to_le_bytes()); // writes
    let last = HEADER_BYTES + 3 * 16;
    bytes[last] = 9; // no such state
    let table = PageTableView::open(memfd(&bytes, true)).unwrap();
    assert_eq!(table.pages(), 4);
    let entry = table.entry(2).unwrap();
    assert_eq!(entry.state, PageState::Parked);
    assert_eq!((entry.version, entry.touches, entry.writes), (2, 5, 2));
    assert_eq!(table.entry(1).unwrap().state, PageState::Resident);
    assert_eq!(table.entry(3).unwrap_err().page, 3, "garbage is an error, not a state");
}

#[test]
fn unsealed_or_malformed_tables_are_refused() {
    let error = PageTableView::open(memfd(&table_bytes(2), false)).unwrap_err();
    assert!(matches!(error, TableError::Region(RegionError::NotSealed)), "{error}");
    let mut bad_magic = table_bytes(2);
    bad_magic[0] ^= 1;
    let mut wrong_count = table_bytes(2);
    wrong_count[16] = 3;
    let mut zero = table_bytes(0);
    zero.resize(HEADER_BYTES + 64, 0);
    let mut version = table_bytes(2);
    version[8] = 2;
    for bytes in [bad_magic, wrong_count, zero, version] {
        let error = PageTableView::open(memfd(&bytes, true)).unwrap_err();
        assert!(matches!(error, TableError::Header(_)), "{error}");
    }
}

fn handshake(
    service: Service,
    table: Option<OwnedFd>,
) -> (Result<Session, HandshakeError>, Result<link::transport::Connection, ConnectError>) {
    let path = socket_path("table");
    let listener = Listener::bind(&path).unwrap();
    let client = std::thread::spawn(move || {
        let (config, epoch) = (ChannelConfig::default(), Epoch(1));
        let (liveness, timeout) = (LivenessConfig::default(), Duration::from_secs(5));
        match (service, &table) {
            (Service::Tier, Some(fd)) => {
                link::transport::connect_tier(&path, config, epoch, liveness, timeout, fd.as_fd())
            }
            _ => link::transport::connect(&path, service, config, epoch, liveness, timeout),
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let incoming = loop {
        if let Some(incoming) = listener.try_accept().unwrap() {
            break incoming;
        }
        assert!(Instant::now() < deadline, "nothing connected");
        std::thread::sleep(Duration::from_millis(1));
    };
    let policy = AcceptPolicy::default();
    let session = incoming.admit(&policy, AppId::new(2, 1), Epoch(1), true, MonoNanos::now());
    (session, client.join().unwrap())
}

#[test]
fn a_tier_app_shares_its_table_at_the_handshake() {
    let (session, conn) = handshake(Service::Tier, Some(memfd(&table_bytes(8), true)));
    let session = session.unwrap();
    conn.unwrap();
    let table = session.end.page_table.as_ref().expect("the table came with the session");
    assert_eq!(table.pages(), 8);
    assert_eq!(table.entry(7).unwrap().version, 7);
}

#[test]
fn a_tier_app_without_a_sound_table_is_refused() {
    let unsealed = Some(memfd(&table_bytes(8), false));
    for table in [None, unsealed] {
        let (session, conn) = handshake(Service::Tier, table);
        let malformed = RefusalReason::Malformed;
        assert!(
            matches!(session, Err(HandshakeError::Refused { reason, .. }) if reason == malformed)
        );
        assert!(matches!(conn, Err(ConnectError::Refused { reason }) if reason == malformed));
    }
}
