//! Connection control end to end, in one process: a client stack on one end of an in-memory
//! wire, a two-worker plane on the other, and the `admission` policy of `ipu-cp` in an agent
//! thread (on-host mode), or a test playing a misbehaving agent by hand.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use conn_bench::{CLIENT, PORT, Rig};
use host_dp::net::ControlConfig;
use host_dp::runtime::AgentChannel;
use ipu_cp::net::adapter::{NetAgent, NetCounters};
use ipu_cp::net::{Admission, AdmissionConfig};
use ipu_cp::on_host::{OnHostAgent, OnHostOptions};
use link::proto::{Epoch, Message, NetMessage, WorkerId};
use link::{ChannelConfig, CpEnd, MonoNanos};
use netstack::ConnState;

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn net_channel() -> (AgentChannel, CpEnd) {
    let config = ChannelConfig { workers: 1, ring_capacity: 256, prestage_slots: 32, delay_ns: 0 };
    let (host, cp) = link::channel::heap_pair(
        config,
        conn_bench::liveness(),
        Epoch(1),
        Epoch(2),
        MonoNanos::now(),
    )
    .unwrap();
    (AgentChannel { end: host, session: None }, cp)
}

fn on_host_agent(config: AdmissionConfig) -> (AgentChannel, OnHostAgent, Arc<NetCounters>) {
    let (link, cp) = net_channel();
    let policy = NetAgent::new(Admission::new(config));
    let counters = policy.counters();
    let agent = OnHostAgent::start(Box::new(policy), cp, OnHostOptions::default()).unwrap();
    (link, agent, counters)
}

fn rig(control: ControlConfig) -> Rig {
    Rig::new(2, control).unwrap()
}

#[test]
fn prestaged_tokens_place_connections_on_both_workers_without_asking() {
    let _serial = serial();
    let (link, agent, counters) =
        on_host_agent(AdmissionConfig { prestage_depth: 4, ..AdmissionConfig::default() });
    let mut rig = rig(ControlConfig::default());
    rig.plane.attach(link, MonoNanos::now()).unwrap();
    rig.plane.listen(PORT, 1, 16).unwrap();
    rig.until("the first tokens", |_| NetCounters::get(&counters.tokens) >= 4).unwrap();
    let mut per_worker = [0; 2];
    for _ in 0..20 {
        let open = rig.open().unwrap();
        per_worker[open.worker] += 1;
        rig.echo(open).unwrap();
        rig.close(open);
    }
    let stats = rig.plane.control_stats();
    eprintln!("{stats:?} per worker {per_worker:?}");
    assert_eq!(stats.placed_prestaged + stats.placed_requested, 20, "{stats:?}");
    assert!(stats.placed_prestaged >= 4, "{stats:?}");
    assert_eq!(stats.placed_local, 0);
    assert!(per_worker[0] > 0 && per_worker[1] > 0, "least-loaded placement: {per_worker:?}");
    assert_eq!(rig.plane.flow_count(), 0, "released flows leave the table");
    rig.until("the agent saw every close", |_| NetCounters::get(&counters.closed) == 20).unwrap();
    assert_eq!(NetCounters::get(&counters.tokens_used), stats.placed_prestaged);
    drop(agent);
}

#[test]
fn the_listener_limit_refuses_with_a_reset_and_frees_on_close() {
    let _serial = serial();
    let config =
        AdmissionConfig { prestage_depth: 0, max_per_listener: 3, ..AdmissionConfig::default() };
    let (link, agent, counters) = on_host_agent(config);
    let mut rig = rig(ControlConfig::default());
    rig.plane.attach(link, MonoNanos::now()).unwrap();
    rig.plane.listen(PORT, 1, 16).unwrap();
    let open: Vec<_> = (0..3).map(|_| rig.open().unwrap()).collect();
    let refused = rig.connect().unwrap();
    rig.until("the reset", |rig| rig.client.state(refused) == Ok(ConnState::Closed)).unwrap();
    rig.client.release(refused);
    assert_eq!(rig.plane.stats().resets, 1);
    assert_eq!(rig.plane.control_stats().refused_by_agent, 1);
    assert_eq!(NetCounters::get(&counters.refused), 1);
    for &conn in &open {
        rig.echo(conn).unwrap(); // the open ones are untouched
    }
    rig.close(open[0]);
    let again = rig.open().unwrap();
    rig.echo(again).unwrap();
    assert_eq!(rig.plane.control_stats().placed_requested, 4);
    drop(agent);
}

#[test]
fn losing_the_agent_keeps_every_connection_and_a_new_agent_learns_them() {
    let _serial = serial();
    let (link, agent, _) =
        on_host_agent(AdmissionConfig { prestage_depth: 2, ..AdmissionConfig::default() });
    let mut rig = rig(ControlConfig::default());
    rig.plane.attach(link, MonoNanos::now()).unwrap();
    rig.plane.listen(PORT, 1, 16).unwrap();
    let mut open: Vec<_> = (0..5).map(|_| rig.open().unwrap()).collect();
    agent.stop(); // an orderly close: the host falls back at once
    rig.until("the fallback", |rig| !rig.plane.has_agent()).unwrap();
    for &conn in &open {
        rig.echo(conn).unwrap();
    }
    open.push(rig.open().unwrap());
    assert_eq!(rig.plane.control_stats().placed_local, 1);
    // A new agent with room for exactly the six open connections refuses a seventh: it was
    // told about every flow on attach.
    let config =
        AdmissionConfig { prestage_depth: 0, max_per_listener: 6, ..AdmissionConfig::default() };
    let (link, agent, counters) = on_host_agent(config);
    rig.plane.attach(link, MonoNanos::now()).unwrap();
    let refused = rig.connect().unwrap();
    rig.until("the reset", |rig| rig.client.state(refused) == Ok(ConnState::Closed)).unwrap();
    assert_eq!(NetCounters::get(&counters.refused), 1);
    let stats = rig.plane.control_stats();
    assert_eq!((stats.fallbacks, stats.reattaches), (1, 1));
    for &conn in &open {
        rig.echo(conn).unwrap();
    }
    drop(agent);
}

/// The test plays the agent: every record it sends is checked by the host.
#[test]
fn bad_stale_and_slow_decisions_are_refused_or_replaced_locally() {
    let _serial = serial();
    let (link, mut cp) = net_channel();
    let control = ControlConfig { answer_timeout_ns: 20_000_000, ..ControlConfig::default() };
    let mut rig = rig(control);
    rig.plane.attach(link, MonoNanos::now()).unwrap();
    rig.plane.listen(PORT, 1, 16).unwrap();
    let lane = &mut cp.workers[0];
    let send = |lane: &mut link::CpWorker, message: NetMessage| {
        let record = Message::Net(message).to_record(Epoch(2));
        lane.decisions.try_push(&record, MonoNanos::now()).unwrap();
    };
    // A token for a worker that does not exist, a stale answer, a lease of privileged ports,
    // and a scheduling decision on the connection lane.
    let bad_place = Message::Net(NetMessage::Place { port: PORT, worker: WorkerId(9) });
    lane.slots.publish(&bad_place.to_record(Epoch(2))).unwrap();
    send(lane, NetMessage::Admit { conn: 999, worker: WorkerId(0) });
    send(lane, NetMessage::PortLease { first: 80, count: 10 });
    let run = link::proto::RunRepr {
        task: link::proto::TaskId(1),
        barrier: link::proto::Barrier(0),
        worker: WorkerId(0),
        slice_ns: 0,
    };
    lane.decisions.try_push(&Message::Run(run).to_record(Epoch(2)), MonoNanos::now()).unwrap();
    // Nobody answers the request that follows the rejected token: after the timeout the
    // local policy places the connection.
    let conn = rig.open().unwrap();
    rig.echo(conn).unwrap();
    let stats = rig.plane.control_stats();
    assert_eq!(stats.stale_answers, 1, "{stats:?}");
    assert_eq!(stats.rejected, 3, "bad token, bad lease, wrong kind: {stats:?}");
    assert_eq!((stats.placed_local, stats.placed_prestaged), (1, 0), "{stats:?}");
    // The host told the agent what it did: the rejected token, the request, the opening.
    let mut seen = Vec::new();
    while let Some(record) = cp.workers[0].events.try_pop(MonoNanos::now()) {
        seen.push(record.parse().unwrap().kind());
    }
    use link::proto::Kind;
    for kind in [Kind::NetAttach, Kind::NetListen, Kind::TxnResult, Kind::ConnRequest] {
        assert!(seen.contains(&kind), "{kind:?} missing from {seen:?}");
    }
    assert!(seen.contains(&Kind::ConnOpened));
}

#[test]
fn outgoing_connections_use_leased_ports_and_pushed_routes() {
    let _serial = serial();
    let (link, mut cp) = net_channel();
    let mut rig = rig(ControlConfig::default());
    rig.plane.attach(link, MonoNanos::now()).unwrap();
    let lane = &mut cp.workers[0];
    for message in [
        NetMessage::PortLease { first: 50_000, count: 16 },
        NetMessage::Neighbor { ip: CLIENT, mac: [2, 0, 0, 0, 0, 1] },
        NetMessage::Route { prefix: Ipv4Addr::new(198, 19, 0, 0), prefix_len: 16, gateway: CLIENT },
    ] {
        let record = Message::Net(message).to_record(Epoch(2));
        lane.decisions.try_push(&record, MonoNanos::now()).unwrap();
    }
    rig.client.listen(9000, 4).unwrap();
    rig.until("the lease", |rig| rig.plane.stats().steered >= 2).unwrap();
    let conn = rig.workers[1].connect(SocketAddrV4::new(CLIENT, 9000)).unwrap();
    let mut accepted = None;
    rig.until("the connection", |rig| {
        accepted = accepted.or_else(|| rig.client.accept(9000));
        accepted.is_some() && rig.workers[1].stack().state(conn) == Ok(ConnState::Established)
    })
    .unwrap();
    let peer = rig.client.peer(accepted.unwrap()).unwrap().unwrap();
    assert!((50_000..50_016).contains(&peer.port()), "from a leased port: {peer}");
    assert_eq!(rig.plane.flow_count(), 1);
    rig.workers[1].release(conn);
    // Its RST leaves at the next poll, and then the flow goes.
    rig.until("the flow to go", |rig| rig.plane.flow_count() == 0).unwrap();
    // Off the subnet, through the pushed route: the SYN goes to the gateway's (pushed)
    // Ethernet address. smoltcp never ARPs for an address off its subnet, so without the
    // route nothing would leave.
    let before = rig.client.stats().device.rx_frames;
    let far = rig.workers[0].connect(SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, 5), 9000));
    rig.until("the routed SYN", |rig| rig.client.stats().device.rx_frames > before).unwrap();
    rig.workers[0].release(far.unwrap());
}

#[test]
fn a_placed_flow_nobody_accepts_leaves_the_table() {
    let _serial = serial();
    let control = ControlConfig { unaccepted_timeout_ns: 50_000_000, ..ControlConfig::default() };
    let mut rig = rig(control);
    rig.plane.listen(PORT, 1, 4).unwrap();
    let conn = rig.connect().unwrap();
    rig.until("the handshake", |rig| rig.client.state(conn) == Ok(ConnState::Established)).unwrap();
    assert_eq!(rig.plane.flow_count(), 1);
    rig.until("the sweep", |rig| rig.plane.flow_count() == 0).unwrap();
    assert_eq!(rig.plane.control_stats().expired, 1);
}
