//! The memfd transport's handshake: every refusal is clear and typed on both sides, and bad
//! socket paths are reported, never clobbered.

mod common;

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use common::socket_path;
use link::proto::{
    ABI_VERSION, AppId, Epoch, HelloAckRepr, HelloRepr, Message, Record, RefusalReason, Service,
};
use link::transport::{
    AcceptPolicy, BindError, ConnectError, HandshakeError, Incoming, Listener, connect,
};
use link::{ChannelConfig, LivenessConfig, MonoNanos};

fn accept(listener: &Listener) -> Incoming {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(incoming) = listener.try_accept().unwrap() {
            return incoming;
        }
        assert!(Instant::now() < deadline, "nothing connected");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn admit(listener: &Listener, policy: AcceptPolicy, room: bool) -> Result<(), HandshakeError> {
    accept(listener).admit(&policy, AppId::new(2, 1), Epoch(1), room, MonoNanos::now()).map(drop)
}

fn connect_default(path: &std::path::Path) -> Result<link::transport::Connection, ConnectError> {
    let liveness = LivenessConfig::default();
    connect(
        path,
        Service::Sched,
        ChannelConfig::default(),
        Epoch(1),
        liveness,
        Duration::from_secs(5),
    )
}

fn hello(abi_version: u32, ring_capacity: u32) -> Record {
    Message::Hello(HelloRepr {
        abi_version,
        pid: 1,
        workers: 1,
        prestage_slots: 0,
        ring_capacity,
        delay_ns: 0,
        service: Service::Sched,
    })
    .to_record(Epoch(0))
}

/// Sends raw bytes as a hand-written client and returns the control plane's reply.
fn raw_exchange(
    listener: &Listener,
    request: &[u8],
    policy: AcceptPolicy,
) -> (Message, HandshakeError) {
    let path = listener.path().to_path_buf();
    let mut client = UnixStream::connect(&path).unwrap();
    client.write_all(request).unwrap();
    let error = admit(listener, policy, true).unwrap_err();
    let mut reply = Record::ZERO;
    std::io::Read::read_exact(&mut client, reply.as_mut()).unwrap();
    (reply.parse().unwrap(), error)
}

#[test]
fn connect_attaches_the_requested_shape() {
    let path = socket_path("ok");
    let listener = Listener::bind(&path).unwrap();
    let config = ChannelConfig { workers: 3, ring_capacity: 64, prestage_slots: 2, delay_ns: 500 };
    let client = std::thread::spawn(move || {
        connect(
            &path,
            Service::Sched,
            config,
            Epoch(4),
            LivenessConfig::default(),
            Duration::from_secs(5),
        )
    });
    let session = accept(&listener)
        .admit(&AcceptPolicy::default(), AppId::new(2, 1), Epoch(1), true, MonoNanos::now())
        .unwrap();
    let conn = client.join().unwrap().unwrap();
    assert_eq!(conn.end.app, AppId::new(2, 1));
    assert_eq!(conn.end.layout.config(), config);
    assert_eq!(session.end.layout, conn.end.layout);
    assert_eq!(conn.end.workers.len(), 3);
    assert!(!session.hung_up());
    drop(conn);
    assert!(session.hung_up(), "closing the app's socket is seen");
}

#[test]
fn app_with_another_abi_is_refused_by_name() {
    let listener = Listener::bind(&socket_path("abi")).unwrap();
    let request = hello(ABI_VERSION + 1, 64);
    let (reply, error) = raw_exchange(&listener, request.as_ref(), AcceptPolicy::default());
    let Message::Refused(refused) = reply else { panic!("expected Refused, got {reply:?}") };
    assert_eq!((refused.reason, refused.abi_version), (RefusalReason::AbiMismatch, ABI_VERSION));
    let text = error.to_string();
    assert!(
        text.contains("AbiMismatch") && text.contains(&format!("ours {ABI_VERSION}")),
        "{text}"
    );
}

#[test]
fn control_plane_with_another_abi_is_refused_by_the_app() {
    let path = socket_path("cp-abi");
    let fake = UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = fake.accept().unwrap();
        let mut request = Record::ZERO;
        std::io::Read::read_exact(&mut stream, request.as_mut()).unwrap();
        let ack = HelloAckRepr { abi_version: 99, app_id: AppId(1), region_len: 4096 };
        stream.write_all(Message::HelloAck(ack).to_record(Epoch(0)).as_ref()).unwrap();
    });
    let error = connect_default(&path).unwrap_err();
    server.join().unwrap();
    assert!(
        matches!(error, ConnectError::AbiMismatch { ours: ABI_VERSION, theirs: 99 }),
        "{error}"
    );
    assert!(error.to_string().contains("ABI mismatch"));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn unlisted_user_is_refused() {
    let path = socket_path("uid");
    let listener = Listener::bind(&path).unwrap();
    let client = std::thread::spawn(move || connect_default(&path));
    let nobody = AcceptPolicy { allowed_uids: vec![65_534], ..AcceptPolicy::default() };
    let error = admit(&listener, nobody, true).unwrap_err();
    assert!(matches!(
        error,
        HandshakeError::Refused { reason: RefusalReason::PermissionDenied, .. }
    ));
    let error = client.join().unwrap().unwrap_err();
    assert!(matches!(error, ConnectError::Refused { reason: RefusalReason::PermissionDenied }));
}

#[test]
fn bad_shapes_are_refused_on_both_sides() {
    let bad = ChannelConfig { ring_capacity: 1000, ..ChannelConfig::default() };
    let error = connect(
        &socket_path("unused"),
        Service::Sched,
        bad,
        Epoch(0),
        LivenessConfig::default(),
        Duration::from_secs(1),
    )
    .unwrap_err();
    assert!(matches!(error, ConnectError::Config(_)), "checked before connecting: {error}");

    let listener = Listener::bind(&socket_path("shape")).unwrap();
    let (reply, _) =
        raw_exchange(&listener, hello(ABI_VERSION, 1000).as_ref(), AcceptPolicy::default());
    assert!(matches!(reply, Message::Refused(r) if r.reason == RefusalReason::BadConfig));
}

#[test]
fn garbage_hello_is_refused_as_malformed() {
    let listener = Listener::bind(&socket_path("garbage")).unwrap();
    let (reply, error) = raw_exchange(&listener, &[0xa5; 64], AcceptPolicy::default());
    assert!(matches!(reply, Message::Refused(r) if r.reason == RefusalReason::Malformed));
    assert!(error.to_string().contains("unknown message kind"), "{error}");
}

#[test]
fn full_control_plane_refuses_more_apps() {
    let path = socket_path("full");
    let listener = Listener::bind(&path).unwrap();
    let client = std::thread::spawn(move || connect_default(&path));
    let error = admit(&listener, AcceptPolicy::default(), false).unwrap_err();
    assert!(matches!(error, HandshakeError::Refused { reason: RefusalReason::TooManyApps, .. }));
    let error = client.join().unwrap().unwrap_err();
    assert!(matches!(error, ConnectError::Refused { reason: RefusalReason::TooManyApps }));
}

#[test]
fn silent_client_times_out_without_hanging_the_control_plane() {
    let listener = Listener::bind(&socket_path("silent")).unwrap();
    let _client = UnixStream::connect(listener.path()).unwrap();
    let policy =
        AcceptPolicy { handshake_timeout: Duration::from_millis(50), ..AcceptPolicy::default() };
    let error = admit(&listener, policy, true).unwrap_err();
    assert!(matches!(error, HandshakeError::Io(_)), "{error}");
}

#[test]
fn missing_control_plane_is_named() {
    let error = connect_default(&socket_path("nobody")).unwrap_err();
    assert!(matches!(error, ConnectError::NoControlPlane { .. }));
    assert!(error.to_string().contains("is ipu-cp running?"));
}

#[test]
fn socket_paths_in_use_stale_or_foreign() {
    let path = socket_path("bind");
    let live = Listener::bind(&path).unwrap();
    assert!(matches!(Listener::bind(&path), Err(BindError::InUse(_))));
    // A stale socket (its listener gone without cleanup) is replaced.
    let stale = UnixListener::bind(socket_path("stale")).unwrap();
    let stale_path = stale.local_addr().unwrap().as_pathname().unwrap().to_path_buf();
    drop(stale);
    let replaced = Listener::bind(&stale_path).unwrap();
    drop(replaced);
    assert!(!stale_path.exists(), "the listener removes its socket file");
    drop(live);
    assert!(!path.exists());

    let file = std::env::temp_dir().join(format!("wave-notasocket-{}", std::process::id()));
    std::fs::write(&file, b"precious").unwrap();
    assert!(matches!(Listener::bind(&file), Err(BindError::NotASocket(_))));
    assert_eq!(std::fs::read(&file).unwrap(), b"precious", "never clobbered");
    std::fs::remove_file(&file).unwrap();

    let missing = std::path::Path::new("/nonexistent-wave-dir/cp.sock");
    let error = Listener::bind(missing).unwrap_err();
    assert!(matches!(error, BindError::Directory { .. }));
    assert!(error.to_string().contains("/nonexistent-wave-dir"));
}
