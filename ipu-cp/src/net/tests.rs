use std::net::Ipv4Addr;

use link::MonoNanos;
use link::proto::{AppId, FlowKey, Message, NetMessage, RefuseReason, TxnOutcome, WorkerId};

use super::adapter::{EPHEMERAL_FIRST, NetAgent, NetCounters};
use super::{Admission, AdmissionConfig};
use crate::policy::{Decisions, Delivery, Policy};

const A: AppId = AppId(1);
const B: AppId = AppId(2);
const LANE: WorkerId = WorkerId(0);

fn agent(config: AdmissionConfig) -> NetAgent<Admission> {
    NetAgent::new(Admission::new(config))
}

fn at_ms(ms: u64) -> MonoNanos {
    MonoNanos(1_000_000_000 + ms * 1_000_000)
}

fn event(
    agent: &mut NetAgent<Admission>,
    app: AppId,
    net: NetMessage,
    now: MonoNanos,
) -> Decisions {
    let mut out = Decisions::default();
    agent.on_event(app, LANE, &Message::Net(net), now, &mut out);
    agent.decide(app, now, &mut out);
    out
}

/// Attaches `app` with `workers` workers and one listener on `port` for `tenant`; returns
/// the decisions of the attach and of the listen.
fn start(
    agent: &mut NetAgent<Admission>,
    app: AppId,
    workers: u16,
    port: u16,
    tenant: u16,
) -> (Decisions, Decisions) {
    let shape =
        link::ChannelConfig { workers: 1, ring_capacity: 64, prestage_slots: 32, delay_ns: 0 };
    agent.on_app_attached(app, shape);
    let ip = Ipv4Addr::new(198, 18, 0, 2);
    let attach = event(agent, app, NetMessage::Attach { workers, ip }, at_ms(0));
    let listen = event(agent, app, NetMessage::Listen { port, tenant }, at_ms(0));
    (attach, listen)
}

fn places(out: &Decisions) -> Vec<(u16, WorkerId)> {
    out.as_slice()
        .iter()
        .filter_map(|(_, m, delivery)| match m {
            Message::Net(NetMessage::Place { port, worker }) => {
                assert_eq!(*delivery, Delivery::Prestaged, "tokens are prestaged");
                Some((*port, *worker))
            }
            _ => None,
        })
        .collect()
}

fn flow(port: u16, remote_port: u16) -> FlowKey {
    FlowKey { local_port: port, remote_ip: Ipv4Addr::new(198, 18, 0, 1), remote_port }
}

fn answer(out: &Decisions) -> NetMessage {
    out.as_slice()
        .iter()
        .find_map(|(_, m, _)| match m {
            Message::Net(n @ (NetMessage::Admit { .. } | NetMessage::Refuse { .. })) => Some(*n),
            _ => None,
        })
        .expect("an answer")
}

#[test]
fn attach_pushes_tables_and_a_lease_then_tokens_spread_over_workers() {
    let neighbor = (Ipv4Addr::new(198, 18, 0, 1), [2, 0, 0, 0, 0, 1]);
    let route = (Ipv4Addr::UNSPECIFIED, 0, Ipv4Addr::new(198, 18, 0, 1));
    let config = AdmissionConfig {
        prestage_depth: 4,
        neighbors: vec![neighbor],
        routes: vec![route],
        ..AdmissionConfig::default()
    };
    let mut cp = agent(config);
    let (attach, listen) = start(&mut cp, A, 2, 80, 7);
    let kinds: Vec<Message> = attach.as_slice().iter().map(|(_, m, _)| *m).collect();
    assert_eq!(
        kinds,
        [
            Message::Net(NetMessage::Neighbor { ip: neighbor.0, mac: neighbor.1 }),
            Message::Net(NetMessage::Route { prefix: route.0, prefix_len: 0, gateway: route.2 }),
            Message::Net(NetMessage::PortLease { first: EPHEMERAL_FIRST, count: 1024 }),
        ]
    );
    let tokens = places(&listen);
    assert_eq!(tokens.len(), 4, "topped up to the depth");
    let on_1 = tokens.iter().filter(|(_, w)| *w == WorkerId(1)).count();
    assert_eq!(on_1, 2, "least-loaded placement alternates: {tokens:?}");
    // Using a token opens a connection on its worker; the next decide replaces the token.
    let opened = NetMessage::ConnOpened {
        conn: 1,
        flow: flow(80, 5000),
        worker: tokens[0].1,
        prestaged: true,
    };
    assert_eq!(places(&event(&mut cp, A, opened, at_ms(1))).len(), 1);
    assert_eq!(NetCounters::get(&cp.counters().tokens_used), 1);
}

#[test]
fn listener_limit_counts_tokens_and_refuses_requests() {
    let config =
        AdmissionConfig { max_per_listener: 3, prestage_depth: 8, ..AdmissionConfig::default() };
    let mut cp = agent(config);
    let (_, listen) = start(&mut cp, A, 2, 80, 1);
    let tokens = places(&listen);
    assert_eq!(tokens.len(), 3, "granted tokens count against the limit");
    let request = NetMessage::ConnRequest { conn: 9, flow: flow(80, 1) };
    let refused = answer(&event(&mut cp, A, request, at_ms(1)));
    assert_eq!(refused, NetMessage::Refuse { conn: 9, reason: RefuseReason::ListenerFull });
    // A token used and its connection closed frees one admission.
    let worker = tokens[0].1;
    let opened = NetMessage::ConnOpened { conn: 1, flow: flow(80, 2), worker, prestaged: true };
    assert!(places(&event(&mut cp, A, opened, at_ms(2))).is_empty(), "still at the limit");
    let closed = NetMessage::ConnClosed { conn: 1, flow: flow(80, 2), worker };
    assert_eq!(places(&event(&mut cp, A, closed, at_ms(3))).len(), 1);
    // A token the host rejected also comes back.
    let mut out = Decisions::default();
    let place = Message::Net(NetMessage::Place { port: 80, worker: tokens[1].1 });
    cp.on_commit_failed(A, LANE, &place, TxnOutcome::Rejected, at_ms(4));
    cp.decide(A, at_ms(4), &mut out);
    assert_eq!(places(&out).len(), 1);
    assert_eq!(NetCounters::get(&cp.counters().refused), 1);
}

#[test]
fn tenant_limit_spans_apps() {
    let config =
        AdmissionConfig { max_per_tenant: 2, prestage_depth: 0, ..AdmissionConfig::default() };
    let mut cp = agent(config);
    start(&mut cp, A, 1, 80, 5);
    start(&mut cp, B, 1, 81, 5);
    let admit = |cp: &mut NetAgent<Admission>, app, conn, port| {
        let request =
            NetMessage::ConnRequest { conn, flow: flow(port, 100 + u16::try_from(conn).unwrap()) };
        answer(&event(cp, app, request, at_ms(1)))
    };
    assert_eq!(admit(&mut cp, A, 1, 80), NetMessage::Admit { conn: 1, worker: WorkerId(0) });
    assert_eq!(admit(&mut cp, B, 1, 81), NetMessage::Admit { conn: 1, worker: WorkerId(0) });
    let refused = NetMessage::Refuse { conn: 2, reason: RefuseReason::TenantFull };
    assert_eq!(admit(&mut cp, A, 2, 80), refused);
    // App B leaves: its connection no longer counts for the tenant.
    cp.on_app_detached(B);
    assert!(matches!(admit(&mut cp, A, 3, 80), NetMessage::Admit { .. }));
    let unknown = NetMessage::Refuse { conn: 4, reason: RefuseReason::NoListener };
    assert_eq!(admit(&mut cp, A, 4, 99), unknown);
}

#[test]
fn syn_rate_limit_refills_with_time() {
    let config = AdmissionConfig {
        syn_rate_per_s: 10,
        syn_burst: 2,
        prestage_depth: 8,
        ..AdmissionConfig::default()
    };
    let mut cp = agent(config);
    let (_, listen) = start(&mut cp, A, 1, 80, 1);
    assert_eq!(places(&listen).len(), 2, "the burst");
    let request = NetMessage::ConnRequest { conn: 1, flow: flow(80, 1) };
    let refused = NetMessage::Refuse { conn: 1, reason: RefuseReason::RateLimited };
    assert_eq!(answer(&event(&mut cp, A, request, at_ms(50))), refused);
    // 10 SYN/s: one more admission per 100 ms.
    let request = NetMessage::ConnRequest { conn: 2, flow: flow(80, 2) };
    let out = event(&mut cp, A, request, at_ms(150));
    assert!(matches!(answer(&out), NetMessage::Admit { conn: 2, .. }));
    assert!(places(&out).is_empty(), "the bucket is empty again");
}

#[test]
fn bad_reports_change_nothing_and_are_counted() {
    let mut cp = agent(AdmissionConfig { prestage_depth: 0, ..AdmissionConfig::default() });
    start(&mut cp, A, 2, 80, 1);
    let bad = [
        NetMessage::ConnClosed { conn: 77, flow: flow(80, 1), worker: WorkerId(0) },
        NetMessage::ConnOpened {
            conn: 1,
            flow: flow(80, 1),
            worker: WorkerId(9),
            prestaged: false,
        },
        NetMessage::Unlisten { port: 81 },
        NetMessage::Attach { workers: 4, ip: Ipv4Addr::LOCALHOST },
        NetMessage::Admit { conn: 1, worker: WorkerId(0) },
    ];
    for net in bad {
        assert!(event(&mut cp, A, net, at_ms(1)).is_empty(), "{net:?}");
    }
    assert_eq!(NetCounters::get(&cp.counters().invalid), 5);
}

#[test]
fn port_blocks_never_overlap_between_apps_and_return_on_detach() {
    let mut cp = agent(AdmissionConfig { port_block: 8192, ..AdmissionConfig::default() });
    let lease = |out: &Decisions| {
        out.as_slice().iter().find_map(|(_, m, _)| match m {
            Message::Net(NetMessage::PortLease { first, count }) => Some((*first, *count)),
            _ => None,
        })
    };
    let (a, _) = start(&mut cp, A, 1, 80, 1);
    let (b, _) = start(&mut cp, B, 1, 80, 1);
    assert_eq!(lease(&a), Some((49152, 8192)));
    assert_eq!(lease(&b), Some((57344, 8192)));
    let more = event(&mut cp, A, NetMessage::PortsWanted { count: 1 }, at_ms(1));
    assert_eq!(lease(&more), None, "the space is exhausted");
    cp.on_app_detached(B);
    let more = event(&mut cp, A, NetMessage::PortsWanted { count: 1 }, at_ms(2));
    assert_eq!(lease(&more), Some((57344, 8192)));
}

#[test]
fn tokens_never_outnumber_the_channel_slots() {
    let mut cp = agent(AdmissionConfig { prestage_depth: 8, ..AdmissionConfig::default() });
    let shape =
        link::ChannelConfig { workers: 1, ring_capacity: 64, prestage_slots: 3, delay_ns: 0 };
    cp.on_app_attached(A, shape);
    let ip = Ipv4Addr::new(198, 18, 0, 2);
    event(&mut cp, A, NetMessage::Attach { workers: 2, ip }, at_ms(0));
    let first = places(&event(&mut cp, A, NetMessage::Listen { port: 80, tenant: 1 }, at_ms(0)));
    let second = places(&event(&mut cp, A, NetMessage::Listen { port: 81, tenant: 1 }, at_ms(0)));
    assert_eq!((first.len(), second.len()), (3, 0), "the slots are full");
    let opened =
        NetMessage::ConnOpened { conn: 1, flow: flow(80, 9), worker: first[0].1, prestaged: true };
    assert_eq!(places(&event(&mut cp, A, opened, at_ms(1))).len(), 1, "one slot came free");
}
