//! Connection control offloaded to the real `ipu-cp` binary, over memfd shared memory with an
//! emulated link delay: prestaged admissions, the SYN rate limit, and a SIGKILL mid-run that
//! loses no established connection, then a restarted `ipu-cp` that takes over again.

use std::path::PathBuf;
use std::time::Duration;

use conn_bench::{AgentSide, Mode, Rig, Setup};
use ipu_cp::net::AdmissionConfig;
use ipu_cp::process::ControlPlane;

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `ipu-cp` as built next to this test (`cargo test --workspace` builds it).
fn ipu_cp() -> PathBuf {
    ipu_cp::process::binary_next_to_exe().expect("ipu-cp missing: cargo build -p ipu-cp")
}

/// Offloaded, polite (no spinning, no pinning: CI shares two vCPUs).
fn setup(depth: u16, admission: AdmissionConfig) -> Setup {
    Setup {
        mode: Mode::Offloaded,
        depth,
        delay_ns: 2_000,
        workers: 2,
        agent_cpu: None,
        spin: false,
        ipu_cp: ipu_cp(),
        admission,
    }
}

#[test]
fn prestaged_admissions_cross_the_process_boundary() {
    let _serial = serial();
    let mut rig = Rig::start(&setup(8, AdmissionConfig::default()), "prestaged").unwrap();
    let churn = rig.churn(4, Duration::from_millis(300)).unwrap();
    let c = churn.control;
    assert!(churn.established > 50, "{churn:?}");
    assert_eq!(churn.refused, 0);
    assert!(c.placed_prestaged > 0, "{c:?}");
    assert_eq!(c.placed_local, 0, "the agent stayed: {c:?}");
    assert!(rig.plane.has_agent());
}

#[test]
fn the_syn_rate_limit_answers_excess_attempts_with_resets() {
    let _serial = serial();
    let admission =
        AdmissionConfig { syn_rate_per_s: 50, syn_burst: 5, ..AdmissionConfig::default() };
    let mut rig = Rig::start(&setup(0, admission), "rate").unwrap();
    let churn = rig.churn(4, Duration::from_millis(300)).unwrap();
    // At most the burst plus the rate over the run's length (and a little slack for the time
    // the rig took to start) gets in; everything else is refused with a RST.
    let allowed = 5.0 + 50.0 * (churn.elapsed.as_secs_f64() + 0.2);
    assert!((churn.established as f64) <= allowed, "{churn:?}");
    assert!(churn.established >= 5, "{churn:?}");
    assert!(churn.refused > 0, "{churn:?}");
    // Every refusal became a RST; the last few may still be on their way to the client.
    let by_agent = churn.control.refused_by_agent;
    assert!(by_agent >= churn.refused && by_agent <= churn.refused + 4, "{churn:?}");
    assert_eq!(rig.plane.stats().resets, by_agent);
}

#[test]
fn a_killed_control_plane_loses_no_connection_and_a_restarted_one_takes_over() {
    let _serial = serial();
    let config = setup(4, AdmissionConfig::default());
    let mut rig = Rig::start(&config, "fault").unwrap();
    let mut open: Vec<_> = (0..5).map(|_| rig.open().unwrap()).collect();
    let AgentSide::Offloaded(mut cp, service) = std::mem::replace(&mut rig.agent, AgentSide::None)
    else {
        panic!("offloaded")
    };
    cp.kill(); // SIGKILL: no goodbye; the session socket hangs up
    rig.until("the fallback", |rig| !rig.plane.has_agent()).unwrap();
    for &conn in &open {
        rig.echo(conn).unwrap();
    }
    open.push(rig.open().unwrap());
    assert_eq!(rig.plane.control_stats().placed_local, 1);
    // A restarted ipu-cp on the same socket, with room for exactly the six open connections:
    // the service re-attaches the plane by itself, the agent learns them on attach, so a
    // seventh is refused.
    let args = ["--max-conns-per-listener", "6", "--conn-prestage-depth", "0"].map(String::from);
    let cp = ControlPlane::start(&config.ipu_cp, "conn-fault", &args, false).unwrap();
    rig.until("the re-attach", |rig| rig.plane.has_agent()).unwrap();
    rig.agent = AgentSide::Offloaded(cp, service);
    let refused = rig.connect().unwrap();
    rig.until("the reset", |rig| {
        rig.client.state(refused).is_ok_and(|s| s == netstack::ConnState::Closed)
    })
    .unwrap();
    let stats = rig.plane.control_stats();
    assert_eq!((stats.fallbacks, stats.reattaches, stats.refused_by_agent), (1, 1, 1));
    for &conn in &open {
        rig.echo(conn).unwrap();
    }
    // Below the limit again, the new agent admits.
    let first = open.remove(0);
    rig.close(first);
    rig.until("the close to reach the agent", |rig| rig.plane.flow_count() == 5).unwrap();
    let again = rig.open().unwrap();
    rig.echo(again).unwrap();
}
