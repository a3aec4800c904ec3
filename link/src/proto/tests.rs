use super::*;
use proptest::prelude::*;

/// A Ping from worker 0x0102, seq 0x1122334455667788, sent at 0x0a0b0c0d, epoch 7.
const PING_GOLDEN: [u8; 64] = [
    0, 0, 0, 0, 0, 0, 0, 0, // channel word (the channel's)
    0x01, 0x03, // kind 0x0301, little-endian
    0, 0, // flags
    7, 0, 0, 0, // epoch
    0x02, 0x01, 0, 0, 0, 0, 0, 0, // worker, reserved
    0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, // seq
    0x0d, 0x0c, 0x0b, 0x0a, 0, 0, 0, 0, // sent_at_ns
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // reserved
];

fn golden_ping() -> PingRepr {
    PingRepr { worker: WorkerId(0x0102), seq: 0x1122_3344_5566_7788, sent_at_ns: 0x0a0b_0c0d }
}

#[test]
fn ping_matches_golden_bytes_both_ways() {
    let record = Message::Ping(golden_ping()).to_record(Epoch(7));
    assert_eq!(record.bytes(), &PING_GOLDEN);
    let parsed = Record::from_bytes(PING_GOLDEN).parse().unwrap();
    assert_eq!(parsed, Message::Ping(golden_ping()));
    assert_eq!(Record::from_bytes(PING_GOLDEN).header().epoch(), Epoch(7));
}

#[test]
fn hello_golden_bytes() {
    let hello = HelloRepr {
        abi_version: 1,
        pid: 0x0403_0201,
        workers: 2,
        prestage_slots: 8,
        ring_capacity: 1024,
        delay_ns: 500,
        service: Service::Net,
    };
    let record = Message::Hello(hello).to_record(Epoch(0));
    let b = record.bytes();
    assert_eq!(&b[8..10], &[0x01, 0x01]);
    assert_eq!(&b[16..20], b"WAVE");
    assert_eq!(&b[20..24], &[1, 0, 0, 0]);
    assert_eq!(&b[24..28], &[1, 2, 3, 4]);
    assert_eq!(&b[28..32], &[2, 0, 8, 0]);
    assert_eq!(&b[32..36], &[0, 4, 0, 0]);
    assert_eq!(&b[36..40], &[0xf4, 1, 0, 0]);
    assert_eq!(&b[40..42], &[2, 0]);
    assert!(b[42..].iter().all(|&x| x == 0));
}

#[test]
fn hello_service_is_required_from_abi_4_only() {
    let mut hello = HelloRepr {
        abi_version: ABI_VERSION,
        pid: 1,
        workers: 1,
        prestage_slots: 0,
        ring_capacity: 2,
        delay_ns: 0,
        service: Service::Sched,
    };
    let mut record = Message::Hello(hello).to_record(Epoch(0));
    record.bytes_mut()[PAYLOAD_OFFSET + 24] = 0;
    assert_eq!(record.parse(), Err(ParseError::Field("service")));
    // An older app wrote no service: its hello still parses, so its ABI is refused by name.
    hello.abi_version = 3;
    let mut record = Message::Hello(hello).to_record(Epoch(0));
    record.bytes_mut()[PAYLOAD_OFFSET + 24] = 0;
    assert!(matches!(record.parse(), Ok(Message::Hello(h)) if h.abi_version == 3));
}

#[test]
fn conn_opened_golden_bytes() {
    let flow = FlowKey {
        local_port: 0x1f90,
        remote_ip: core::net::Ipv4Addr::new(198, 18, 0, 1),
        remote_port: 0xc000,
    };
    let opened =
        NetMessage::ConnOpened { conn: 0x0102, flow, worker: WorkerId(3), prestaged: true };
    let record = Message::Net(opened).to_record(Epoch(1));
    let b = record.bytes();
    assert_eq!(&b[8..10], &[0x05, 0x20]);
    assert_eq!(&b[16..24], &[2, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&b[24..32], &[0x90, 0x1f, 0x00, 0xc0, 198, 18, 0, 1]);
    assert_eq!(&b[32..35], &[3, 0, 1]);
    assert!(b[35..].iter().all(|&x| x == 0));
    assert_eq!(record.parse(), Ok(Message::Net(opened)));
    let mut bad = record;
    bad.bytes_mut()[PAYLOAD_OFFSET + 18] = 2;
    assert_eq!(bad.parse(), Err(ParseError::Field("prestaged")));
    let mut bad = record;
    bad.bytes_mut()[63] = 1;
    assert_eq!(bad.parse(), Err(ParseError::Reserved));
    let route = Message::Net(NetMessage::Route {
        prefix: core::net::Ipv4Addr::UNSPECIFIED,
        prefix_len: 0,
        gateway: core::net::Ipv4Addr::new(198, 18, 0, 1),
    });
    let mut bad = route.to_record(Epoch(1));
    bad.bytes_mut()[PAYLOAD_OFFSET + 4] = 33;
    assert_eq!(bad.parse(), Err(ParseError::Field("prefix_len")));
    assert_eq!(
        Message::parse_in(&record, Direction::Decision),
        Err(ParseError::WrongDirection(Kind::ConnOpened))
    );
}

#[test]
fn run_decision_golden_bytes() {
    let run = RunRepr {
        task: TaskId(0x0102),
        barrier: Barrier(7),
        worker: WorkerId(3),
        slice_ns: 30_000,
    };
    let record = Message::Run(run).to_record(Epoch(1));
    let b = record.bytes();
    assert_eq!(&b[8..10], &[0x81, 0x10], "kind 0x1081");
    assert_eq!(&b[16..24], &[2, 1, 0, 0, 0, 0, 0, 0], "task");
    assert_eq!(&b[24..32], &[7, 0, 0, 0, 0, 0, 0, 0], "barrier");
    assert_eq!(&b[32..40], &30_000u64.to_le_bytes(), "slice");
    assert_eq!(&b[40..42], &[3, 0], "worker");
    assert_eq!(record.parse(), Ok(Message::Run(run)));
    assert_eq!(
        Message::parse_in(&record, Direction::Event),
        Err(ParseError::WrongDirection(Kind::Run))
    );
}

#[test]
fn idle_worker_event_must_not_name_a_task() {
    let idle = WorkerEventRepr { worker: WorkerId(1), running: None, ran_ns: 0 };
    let mut record = Message::Worker(idle).to_record(Epoch(1));
    assert_eq!(record.parse(), Ok(Message::Worker(idle)));
    record.bytes_mut()[PAYLOAD_OFFSET + 8] = 5; // a task id while "idle"
    assert_eq!(record.parse(), Err(ParseError::Reserved));
    record.bytes_mut()[PAYLOAD_OFFSET + 2] = 9; // neither idle nor running
    assert_eq!(record.parse(), Err(ParseError::Field("running flag")));
}

#[test]
fn channel_word_is_little_endian() {
    let mut record = Record::ZERO;
    record.set_channel_word(0x0102_0304_0506_0708);
    assert_eq!(&record.bytes()[..8], &[8, 7, 6, 5, 4, 3, 2, 1]);
    assert_eq!(record.channel_word(), 0x0102_0304_0506_0708);
}

#[test]
fn truncated_input_is_rejected() {
    for len in [0, 1, 15, 16, 63] {
        let error = HeaderView::new_checked(&PING_GOLDEN[..len]).unwrap_err();
        assert_eq!(error, ParseError::Truncated { len, need: RECORD_SIZE });
    }
}

#[test]
fn unknown_kind_reserved_bits_and_bad_fields_are_rejected() {
    let mut bytes = PING_GOLDEN;
    bytes[8..10].copy_from_slice(&0x7777u16.to_le_bytes());
    assert_eq!(Record::from_bytes(bytes).parse(), Err(ParseError::UnknownKind(0x7777)));
    assert_eq!(Record::ZERO.parse(), Err(ParseError::UnknownKind(0)), "zeroed slot");

    let mut bytes = PING_GOLDEN;
    bytes[10] = 1;
    assert_eq!(Record::from_bytes(bytes).parse(), Err(ParseError::Reserved), "flags");

    let mut bytes = PING_GOLDEN;
    bytes[63] = 1;
    assert_eq!(Record::from_bytes(bytes).parse(), Err(ParseError::Reserved), "tail");

    let mut hello = Message::Hello(HelloRepr {
        abi_version: 1,
        pid: 1,
        workers: 1,
        prestage_slots: 0,
        ring_capacity: 2,
        delay_ns: 0,
        service: Service::Sched,
    })
    .to_record(Epoch(0));
    hello.bytes_mut()[16] = b'X';
    assert_eq!(hello.parse(), Err(ParseError::Field("magic")));

    let mut result = Message::TxnResult(TxnResultRepr {
        worker: WorkerId(0),
        slot: SlotIndex(0),
        generation: 1,
        outcome: TxnOutcome::Stale,
        barrier: Barrier(3),
    })
    .to_record(Epoch(0));
    result.bytes_mut()[PAYLOAD_OFFSET + 4] = 9;
    assert_eq!(result.parse(), Err(ParseError::Field("outcome")));
}

#[test]
fn direction_is_enforced() {
    let ping = Message::Ping(golden_ping()).to_record(Epoch(1));
    assert!(Message::parse_in(&ping, Direction::Event).is_ok());
    assert_eq!(
        Message::parse_in(&ping, Direction::Decision),
        Err(ParseError::WrongDirection(Kind::Ping))
    );
}

fn any_sched_message() -> impl Strategy<Value = Message> {
    let change = prop_oneof![
        Just(TaskChange::New),
        Just(TaskChange::Runnable),
        Just(TaskChange::Blocked),
        Just(TaskChange::Preempted),
        Just(TaskChange::Done),
    ];
    let worker = any::<u16>().prop_map(WorkerId);
    prop_oneof![
        (change, any::<u64>(), any::<u64>(), worker.clone(), any::<u64>()).prop_map(
            |(change, task, seq, worker, ran_ns)| Message::Task(TaskEventRepr {
                change,
                task: TaskId(task),
                seq: Barrier(seq),
                worker,
                ran_ns,
            })
        ),
        (worker.clone(), prop::option::of((any::<u64>(), any::<u64>())), any::<u64>()).prop_map(
            |(worker, running, ran_ns)| Message::Worker(WorkerEventRepr {
                worker,
                running: running.map(|(t, s)| (TaskId(t), Barrier(s))),
                ran_ns,
            })
        ),
        (any::<u64>(), any::<u64>(), worker.clone(), any::<u64>()).prop_map(
            |(task, barrier, worker, slice_ns)| Message::Run(RunRepr {
                task: TaskId(task),
                barrier: Barrier(barrier),
                worker,
                slice_ns,
            })
        ),
        (any::<u64>(), any::<u64>(), worker).prop_map(|(task, barrier, worker)| {
            Message::Preempt(PreemptRepr { task: TaskId(task), barrier: Barrier(barrier), worker })
        }),
    ]
}

fn any_message() -> impl Strategy<Value = Message> {
    prop_oneof![any_link_message(), any_sched_message(), any_net_message(), any_tier_message()]
}

fn any_net_message() -> impl Strategy<Value = Message> {
    use core::net::Ipv4Addr;
    let ip = any::<[u8; 4]>().prop_map(Ipv4Addr::from);
    let worker = any::<u16>().prop_map(WorkerId);
    let flow = (any::<u16>(), ip.clone(), any::<u16>()).prop_map(
        |(local_port, remote_ip, remote_port)| FlowKey { local_port, remote_ip, remote_port },
    );
    let reason = prop_oneof![
        Just(RefuseReason::ListenerFull),
        Just(RefuseReason::TenantFull),
        Just(RefuseReason::RateLimited),
        Just(RefuseReason::NoListener),
    ];
    let net = prop_oneof![
        (any::<u16>(), ip.clone()).prop_map(|(workers, ip)| NetMessage::Attach { workers, ip }),
        (any::<u16>(), any::<u16>()).prop_map(|(port, tenant)| NetMessage::Listen { port, tenant }),
        any::<u16>().prop_map(|port| NetMessage::Unlisten { port }),
        (any::<u64>(), flow.clone())
            .prop_map(|(conn, flow)| NetMessage::ConnRequest { conn, flow }),
        (any::<u64>(), flow.clone(), worker.clone(), any::<bool>()).prop_map(
            |(conn, flow, worker, prestaged)| NetMessage::ConnOpened {
                conn,
                flow,
                worker,
                prestaged
            }
        ),
        (any::<u64>(), flow, worker.clone())
            .prop_map(|(conn, flow, worker)| NetMessage::ConnClosed { conn, flow, worker }),
        any::<u16>().prop_map(|count| NetMessage::PortsWanted { count }),
        (any::<u16>(), worker.clone())
            .prop_map(|(port, worker)| NetMessage::Place { port, worker }),
        (any::<u64>(), worker).prop_map(|(conn, worker)| NetMessage::Admit { conn, worker }),
        (any::<u64>(), reason).prop_map(|(conn, reason)| NetMessage::Refuse { conn, reason }),
        (any::<u16>(), any::<u16>())
            .prop_map(|(first, count)| NetMessage::PortLease { first, count }),
        (ip.clone(), any::<[u8; 6]>()).prop_map(|(ip, mac)| NetMessage::Neighbor { ip, mac }),
        (ip.clone(), 0u8..=32, ip).prop_map(|(prefix, prefix_len, gateway)| NetMessage::Route {
            prefix,
            prefix_len,
            gateway
        }),
    ];
    net.prop_map(Message::Net)
}

fn any_link_message() -> impl Strategy<Value = Message> {
    let worker = any::<u16>().prop_map(WorkerId);
    prop_oneof![
        (worker.clone(), any::<u64>(), any::<u64>()).prop_map(|(worker, seq, sent_at_ns)| {
            Message::Ping(PingRepr { worker, seq, sent_at_ns })
        }),
        (worker.clone(), any::<u64>(), any::<u64>()).prop_map(|(worker, seq, ping_sent_at_ns)| {
            Message::Pong(PongRepr { worker, seq, ping_sent_at_ns })
        }),
        (
            any::<u32>(),
            any::<u32>(),
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
            1u16..=3
        )
            .prop_map(
                |(abi_version, pid, workers, prestage_slots, ring_capacity, delay_ns, s)| {
                    Message::Hello(HelloRepr {
                        abi_version,
                        pid,
                        workers,
                        prestage_slots,
                        ring_capacity,
                        delay_ns,
                        service: Service::from_u16(s).expect("1..=3"),
                    })
                }
            ),
        (any::<u32>(), any::<u32>(), any::<u64>()).prop_map(|(abi_version, app, region_len)| {
            Message::HelloAck(HelloAckRepr { abi_version, app_id: AppId(app), region_len })
        }),
        (1u16..=6, any::<u32>()).prop_map(|(reason, abi_version)| {
            let reason = match reason {
                1 => RefusalReason::AbiMismatch,
                2 => RefusalReason::PermissionDenied,
                3 => RefusalReason::BadConfig,
                4 => RefusalReason::TooManyApps,
                5 => RefusalReason::Malformed,
                _ => RefusalReason::NoService,
            };
            Message::Refused(RefusedRepr { reason, abi_version })
        }),
        (worker, any::<u16>(), any::<u32>(), 1u8..=3, any::<u64>()).prop_map(
            |(worker, slot, generation, outcome, barrier)| {
                let outcome = match outcome {
                    1 => TxnOutcome::Committed,
                    2 => TxnOutcome::Stale,
                    _ => TxnOutcome::Rejected,
                };
                Message::TxnResult(TxnResultRepr {
                    worker,
                    slot: SlotIndex(slot),
                    generation,
                    outcome,
                    barrier: Barrier(barrier),
                })
            }
        ),
    ]
}

proptest! {
    #[test]
    fn every_message_round_trips(
        message in any_message(),
        epoch in any::<u32>(),
        word in any::<u64>(),
    ) {
        let mut record = message.to_record(Epoch(epoch));
        record.set_channel_word(word); // the channel word never affects the message
        prop_assert_eq!(record.parse(), Ok(message));
        prop_assert_eq!(record.header().epoch(), Epoch(epoch));
        let again = Message::parse(&record).unwrap().to_record(Epoch(epoch));
        prop_assert_eq!(&again.bytes()[8..], &record.bytes()[8..]);
    }

    /// Garbage never panics, and whatever parses re-emits to the same bytes.
    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
        if HeaderView::new_checked(&bytes[..]).is_ok() {
            let mut raw = [0u8; RECORD_SIZE];
            raw.copy_from_slice(&bytes[..RECORD_SIZE]);
            let record = Record::from_bytes(raw);
            if let Ok(message) = record.parse() {
                let epoch = record.header().epoch();
                let again = message.to_record(epoch);
                prop_assert_eq!(&again.bytes()[8..], &raw[8..]);
            }
        }
    }
}

fn any_tier_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        any::<u32>().prop_map(|pages| TierMessage::Attach { pages }),
        any::<u64>().prop_map(|promotions| TierMessage::Epoch { promotions }),
        (any::<u32>(), any::<u32>())
            .prop_map(|(page, version)| TierMessage::Park { page, version }),
        (any::<u32>(), any::<u32>())
            .prop_map(|(page, version)| TierMessage::Demote { page, version }),
    ]
    .prop_map(Message::Tier)
}

#[test]
fn tier_golden_bytes_and_retired_kinds() {
    let park = TierMessage::Park { page: 7, version: 9 };
    let record = Message::Tier(park).to_record(Epoch(1));
    let b = record.bytes();
    assert_eq!(&b[8..10], &[0x81, 0x30]);
    assert_eq!(&b[16..24], &[7, 0, 0, 0, 9, 0, 0, 0]);
    assert!(b[24..].iter().all(|&x| x == 0));
    let mut retired = record;
    retired.bytes_mut()[8] = 0x02; // 0x3002, ABI 6's per-page report
    assert!(retired.parse().is_err(), "a retired kind is refused");
    let demote = Message::Tier(TierMessage::Demote { page: 1, version: 2 }).to_record(Epoch(1));
    assert_eq!(
        Message::parse_in(&demote, Direction::Event),
        Err(ParseError::WrongDirection(Kind::TierDemote))
    );
}
