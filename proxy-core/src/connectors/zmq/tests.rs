//! Tests of the ZeroMQ connector: the conformance suite on local and remote paths, the
//! wire's defences against bad input, timeouts, pipelining and rebuilding from config.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::wire::{Header, Op, Status, HEADER_LEN};
use super::*;

const SHORT: Duration = Duration::from_millis(300);

fn peer() -> ZmqConnector {
    ZmqConnector::new().expect("start a zmq peer")
}

fn peer_with_timeout(timeout: Duration) -> ZmqConnector {
    ZmqOptions::default()
        .with_timeout(timeout)
        .build()
        .expect("start a zmq peer")
}

fn endpoint(connector: &ZmqConnector) -> String {
    connector.endpoint().expect("server started").to_string()
}

/// Two peers seen as one connector: objects live on `home` (put there directly, or sent
/// there with a remote `PUT`), and every read goes through `visitor`, over TCP.
#[derive(Debug)]
struct TwoPeers {
    home: ZmqConnector,
    visitor: ZmqConnector,
    remote_puts: bool,
}

impl TwoPeers {
    fn new(remote_puts: bool) -> Self {
        TwoPeers {
            home: peer(),
            visitor: ZmqConnector::client(ZmqOptions::default()).expect("client"),
            remote_puts,
        }
    }
}

impl Connector for TwoPeers {
    fn put(&self, data: Bytes) -> Result<Key> {
        if self.remote_puts {
            self.visitor.put_to(&endpoint(&self.home), data)
        } else {
            self.home.put(data)
        }
    }
    fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        self.visitor.get(key)
    }
    fn new_key(&self) -> Result<Key> {
        self.home.new_key()
    }
    fn put_at(&self, key: &Key, data: Bytes) -> Result<()> {
        if self.remote_puts {
            self.visitor.put_at(key, data)
        } else {
            self.home.put_at(key, data)
        }
    }
    fn exists(&self, key: &Key) -> Result<bool> {
        self.visitor.exists(key)
    }
    fn evict(&self, key: &Key) -> Result<()> {
        self.visitor.evict(key)
    }
    fn get_batch(&self, keys: &[Key]) -> Result<Vec<Option<Bytes>>> {
        self.visitor.get_batch(keys)
    }
    fn config(&self) -> ConnectorConfig {
        self.home.config()
    }
    fn object_count(&self) -> Option<usize> {
        self.home.object_count()
    }
}

/// The suite on one peer: its own keys, read from its own map.
mod local {
    use super::*;
    crate::conformance_tests!(peer());
}

/// The suite with every read going to another peer's server.
mod remote_get {
    use super::*;
    crate::conformance_tests!(TwoPeers::new(false));
}

/// The suite with every operation, puts included, going to another peer's server.
mod remote_put {
    use super::*;
    crate::conformance_tests!(TwoPeers::new(true));
}

#[test]
fn put_is_local_and_the_key_names_this_peer() {
    let connector = peer();
    let key = connector.put(Bytes::from_static(b"abc")).expect("put");
    assert_eq!(key.connector(), "zmq");
    assert_eq!(key.peer(), connector.endpoint());
    assert!(endpoint(&connector).starts_with("tcp://127.0.0.1:"));
    assert_eq!(connector.object_count(), Some(1));
}

#[test]
fn own_gets_share_the_stored_buffer() {
    // Without shared memory the stored buffer is the caller's own.
    let connector = ZmqOptions::default()
        .with_shared_memory(false)
        .build()
        .expect("peer");
    let data = Bytes::from(vec![3u8; 1 << 20]);
    let key = connector.put(data.clone()).expect("put");
    let back = connector.get(&key).expect("get").expect("present");
    assert_eq!(
        back.as_ptr(),
        data.as_ptr(),
        "a local get copied the payload"
    );
    // With it too: an object of at most 16 MiB is copied into shared memory only when a
    // same-host reader asks for it, and then every local get shares that one copy.
    let connector = peer();
    let key = connector.put(data.clone()).expect("put");
    let first = connector.get(&key).expect("get").expect("present");
    assert_eq!(
        first.as_ptr(),
        data.as_ptr(),
        "a local get copied the payload"
    );
    assert_eq!(connector.shared_memory_bytes().0, 0);
    let reader = peer();
    assert_eq!(reader.get(&key).expect("remote get"), Some(data.clone()));
    assert_eq!(reader.mapped_reads(), 1);
    assert_eq!(connector.shared_memory_bytes().0, data.len() as u64);
    let shared = connector.get(&key).expect("get").expect("present");
    let again = connector.get(&key).expect("get").expect("present");
    assert_eq!(shared, data);
    assert_eq!(
        shared.as_ptr(),
        again.as_ptr(),
        "a local get copied the payload"
    );
    assert_ne!(
        shared.as_ptr(),
        data.as_ptr(),
        "the object moved to shared memory"
    );
    assert_eq!(first, data, "a handle taken before keeps its bytes");
}

#[test]
fn rebuilding_in_the_same_process_reaches_the_same_server() {
    let original = peer();
    let key = original.put(Bytes::from_static(b"x")).expect("put");
    let rebuilt = original.config().build().expect("build");
    assert_eq!(
        rebuilt.get(&key).expect("get"),
        Some(Bytes::from_static(b"x"))
    );
    let second = rebuilt
        .put(Bytes::from_static(b"y"))
        .expect("put via rebuilt");
    assert_eq!(
        second.peer(),
        original.endpoint(),
        "a duplicate server was started"
    );
    assert_eq!(original.object_count(), Some(2));
}

#[test]
fn a_config_whose_server_is_gone_builds_a_client_that_starts_its_own() {
    let original = peer();
    let config = original.config();
    let old_endpoint = endpoint(&original);
    original.close().expect("close");
    let ConnectorConfig::Zmq(zmq_config) = &config else {
        panic!("config {config:?}");
    };
    let rebuilt = zmq_config.build().expect("build");
    assert_eq!(
        rebuilt.endpoint(),
        None,
        "a client starts no server before its first put"
    );
    let key = rebuilt.put(Bytes::from_static(b"z")).expect("put");
    assert_ne!(key.peer(), Some(old_endpoint.as_str()));
    assert_eq!(key.peer(), rebuilt.endpoint());
}

#[test]
fn close_stops_the_server_and_later_operations_fail_cleanly() {
    let owner = peer();
    let reader = peer_with_timeout(SHORT);
    let key = owner.put(Bytes::from_static(b"bye")).expect("put");
    assert!(reader.exists(&key).expect("exists before close"));
    owner.close().expect("close");
    owner.close().expect("closing twice is fine");
    assert!(matches!(owner.put(Bytes::new()), Err(Error::Closed { .. })));
    assert!(matches!(owner.get(&key), Err(Error::Closed { .. })));
    assert_eq!(owner.object_count(), Some(0), "close drops the objects");
    match reader.get(&key) {
        Err(Error::Timeout { peer, .. }) => assert_eq!(Some(peer.as_str()), key.peer()),
        other => panic!("get from a closed peer gave {other:?}"),
    }
}

#[test]
fn dropping_the_last_handle_stops_the_server() {
    let connector = peer();
    let endpoint = endpoint(&connector);
    assert!(server::live_server(&endpoint).is_some());
    drop(connector);
    assert!(server::live_server(&endpoint).is_none());
}

#[test]
fn keys_without_or_with_a_bad_peer_are_errors() {
    let connector = peer_with_timeout(SHORT);
    let no_peer = Key::random("zmq");
    assert!(matches!(
        connector.get(&no_peer),
        Err(Error::Protocol { .. })
    ));
    for bad in [
        "garbage",
        "tcp://127.0.0.1",
        "inproc://x",
        "tcp://a\0b:1",
        "tcp://[::1:zz",
    ] {
        let key = Key::random("zmq").with_peer(bad);
        match connector.get(&key) {
            Err(Error::Peer { peer, .. }) => assert_eq!(peer, bad),
            other => panic!("peer {bad:?} gave {other:?}"),
        }
    }
    // The connector is still fine afterwards.
    let key = connector.put(Bytes::from_static(b"ok")).expect("put");
    assert!(connector.exists(&key).expect("exists"));
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a probe socket");
    listener.local_addr().expect("probe address").port()
}

fn assert_times_out(
    result: Result<Option<Bytes>>,
    peer: &str,
    started: Instant,
    timeout: Duration,
) {
    let elapsed = started.elapsed();
    match result {
        Err(Error::Timeout {
            peer: named,
            timeout: reported,
            operation,
        }) => {
            assert_eq!(named, peer);
            assert_eq!(reported, timeout);
            assert!(operation.starts_with("get"), "{operation}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(
        elapsed >= timeout,
        "gave up after {elapsed:?}, before {timeout:?}"
    );
    // Expected: the timeout and one progress check (50 ms); allow five times that, for a
    // loaded machine.
    assert!(elapsed < 5 * (timeout + PROGRESS_CHECK), "took {elapsed:?}");
}

/// How often a waiting client looks at its connection's progress (`client::PROGRESS_CHECK`).
const PROGRESS_CHECK: Duration = Duration::from_millis(50);

#[test]
fn a_dead_port_times_out_naming_the_peer() {
    let client = peer_with_timeout(SHORT);
    let dead = format!("tcp://127.0.0.1:{}", free_port());
    let key = Key::random("zmq").with_peer(dead.as_str());
    let started = Instant::now();
    assert_times_out(client.get(&key), &dead, started, SHORT);
    let started = Instant::now();
    assert!(matches!(client.exists(&key), Err(Error::Timeout { .. })));
    assert!(started.elapsed() < 5 * (SHORT + PROGRESS_CHECK));
}

/// A test-side `ROUTER` standing in for a peer that misbehaves.
struct FakePeer {
    socket: zmq::Socket,
    endpoint: String,
}

impl FakePeer {
    fn bind() -> Self {
        let socket = context().socket(zmq::ROUTER).expect("socket");
        socket.set_linger(0).expect("linger");
        socket.set_rcvtimeo(3000).expect("rcvtimeo");
        socket.bind("tcp://127.0.0.1:*").expect("bind");
        let endpoint = socket
            .get_last_endpoint()
            .expect("endpoint")
            .expect("utf-8 endpoint");
        FakePeer { socket, endpoint }
    }

    /// The next request: the sender's id and the decoded header.
    fn receive(&self) -> (Vec<u8>, Header) {
        let frames = self.socket.recv_multipart(0).expect("a request");
        (
            frames[0].clone(),
            Header::decode(&frames[1]).expect("a valid request header"),
        )
    }

    fn reply(&self, to: &[u8], frames: &[&[u8]]) {
        let mut all = vec![to];
        all.extend_from_slice(frames);
        self.socket.send_multipart(all, 0).expect("reply");
    }

    /// Binds a fake peer and hands it to `script` on its own thread (sockets stay on one
    /// thread); returns its endpoint and the thread.
    fn run<T: Send + 'static>(
        script: impl FnOnce(FakePeer) -> T + Send + 'static,
    ) -> (String, std::thread::JoinHandle<T>) {
        let fake = FakePeer::bind();
        let endpoint = fake.endpoint.clone();
        (endpoint, std::thread::spawn(move || script(fake)))
    }
}

#[test]
fn a_silent_peer_times_out_and_a_late_reply_is_never_taken_for_the_next() {
    let first = Key::random("zmq");
    let second = Key::random("zmq");
    let (gave_up, client_gave_up) = std::sync::mpsc::channel::<()>();
    let (endpoint, fake) = FakePeer::run(move |fake| {
        // Answer the first request late, once the client has given up; then the second
        // properly.
        let (to, late) = fake.receive();
        client_gave_up.recv().expect("the client gives up");
        fake.reply(&to, &[&late.reply(Status::Ok).encode(), b"late"]);
        let (to, header) = fake.receive();
        fake.reply(&to, &[&header.reply(Status::Ok).encode(), b"fresh"]);
        (late.object_id, header.object_id)
    });
    let first = first.with_peer(endpoint.as_str());
    let second = second.with_peer(endpoint.as_str());
    // No cool-down: the second request must reach the peer that just timed out.
    let client = ZmqOptions::default()
        .with_timeout(SHORT)
        .with_peer_cooldown(Duration::ZERO)
        .build()
        .expect("start a zmq peer");

    let started = Instant::now();
    assert_times_out(client.get(&first), &endpoint, started, SHORT);
    gave_up.send(()).expect("tell the fake peer");
    assert_eq!(
        client.get(&second).expect("second get"),
        Some(Bytes::from_static(b"fresh"))
    );
    assert_eq!(fake.join().expect("fake peer"), (first.id(), second.id()));
}

#[test]
fn malformed_replies_are_protocol_errors_naming_the_peer() {
    type MakeReply = fn(&Header) -> Vec<Vec<u8>>;
    let replies: [(&str, MakeReply); 4] = [
        ("garbage header", |_| vec![b"garbage".to_vec()]),
        ("get reply without payload", |h| {
            vec![h.reply(Status::Ok).encode().to_vec()]
        }),
        ("reply about another object", |h| {
            let mut other = *h;
            other.object_id ^= 1;
            vec![other.reply(Status::Ok).encode().to_vec(), b"x".to_vec()]
        }),
        ("too many frames", |h| {
            vec![
                h.reply(Status::Ok).encode().to_vec(),
                b"x".to_vec(),
                b"y".to_vec(),
            ]
        }),
    ];
    let client = peer_with_timeout(Duration::from_secs(2));
    for (what, make) in replies {
        let (endpoint, fake) = FakePeer::run(move |fake| {
            let (to, header) = fake.receive();
            let frames = make(&header);
            let frames: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
            fake.reply(&to, &frames);
        });
        let key = Key::random("zmq").with_peer(endpoint.as_str());
        match client.get(&key) {
            Err(Error::Protocol { peer, message }) => {
                assert_eq!(peer, endpoint, "{what}: {message}")
            }
            other => panic!("{what}: expected a protocol error, got {other:?}"),
        }
        fake.join().expect("fake peer");
    }
}

#[test]
fn error_replies_become_peer_errors() {
    let (endpoint, fake) = FakePeer::run(|fake| {
        let (to, header) = fake.receive();
        fake.reply(&to, &[&header.reply(Status::Error).encode(), b"no thanks"]);
    });
    let client = peer_with_timeout(Duration::from_secs(2));
    let key = Key::random("zmq").with_peer(endpoint.as_str());
    match client.get(&key) {
        Err(Error::Peer { peer, message }) => {
            assert_eq!(peer, endpoint);
            assert!(message.contains("no thanks"), "{message}");
        }
        other => panic!("expected a peer error, got {other:?}"),
    }
    fake.join().expect("fake peer");
}

#[test]
fn batches_are_pipelined() {
    // The fake peer answers nothing until it holds every request of the batch: a client
    // that waited for each answer before sending the next request would time out here.
    const N: usize = 20;
    let (endpoint, fake) = FakePeer::run(|fake| {
        let requests: Vec<(Vec<u8>, Header)> = (0..N).map(|_| fake.receive()).collect();
        // Answer in reverse order; odd objects are missing.
        for (i, (to, header)) in requests.iter().enumerate().rev() {
            if i % 2 == 0 {
                let payload = header.object_id.to_le_bytes();
                fake.reply(to, &[&header.reply(Status::Ok).encode(), &payload]);
            } else {
                fake.reply(to, &[&header.reply(Status::NotFound).encode()]);
            }
        }
    });
    let client = peer_with_timeout(Duration::from_secs(2));
    let keys: Vec<Key> = (0..N)
        .map(|_| Key::random("zmq").with_peer(endpoint.as_str()))
        .collect();
    let got = client.get_batch(&keys).expect("pipelined batch");
    fake.join().expect("fake peer");
    for (i, (key, value)) in keys.iter().zip(&got).enumerate() {
        if i % 2 == 0 {
            assert_eq!(
                value.as_deref(),
                Some(&key.id().to_le_bytes()[..]),
                "object {i}"
            );
        } else {
            assert_eq!(value, &None, "object {i}");
        }
    }
}

#[test]
fn batches_larger_than_the_window_and_across_peers_keep_their_order() {
    let a = peer();
    let b = peer();
    let reader = peer();
    let mut keys = Vec::new();
    let mut expected = Vec::new();
    for i in 0..(3 * client::WINDOW + 5) {
        let data = Bytes::from(format!("object {i}"));
        let owner = [&a, &b, &reader][i % 3];
        keys.push(owner.put(data.clone()).expect("put"));
        expected.push(Some(data));
    }
    let missing = a.put(Bytes::from_static(b"gone")).expect("put");
    a.evict(&missing).expect("evict");
    keys.insert(7, missing);
    expected.insert(7, None);
    assert_eq!(reader.get_batch(&keys).expect("get_batch"), expected);
}

/// Gives a raw socket the connection token of `secret` (as a member's client does).
fn with_token(socket: &zmq::Socket, secret: &auth::Secret) {
    socket
        .set_plain_username(Some(zap::USERNAME))
        .expect("username");
    socket
        .set_plain_password(Some(&zap::TokenKey::of(secret).token()))
        .expect("token");
}

/// A raw `DEALER` socket speaking (or failing to speak) the wire format.
fn raw_socket(endpoint: &str) -> zmq::Socket {
    let socket = context().socket(zmq::DEALER).expect("socket");
    socket.set_linger(0).expect("linger");
    socket.set_rcvtimeo(2000).expect("rcvtimeo");
    socket.connect(endpoint).expect("connect");
    socket
}

/// A raw `DEALER` socket to `endpoint`, and a monitor that receives its `DISCONNECTED`
/// events.
fn monitored_raw_socket(endpoint: &str) -> (zmq::Socket, zmq::Socket) {
    let socket = context().socket(zmq::DEALER).expect("socket");
    socket.set_linger(0).expect("linger");
    let monitor_at = format!("inproc://zmq-tests-monitor-{:032x}", crate::ids::new_id());
    socket
        .monitor(&monitor_at, zmq::SocketEvent::DISCONNECTED as i32)
        .expect("monitor");
    let monitor = context().socket(zmq::PAIR).expect("socket");
    monitor.set_linger(0).expect("linger");
    // Bounds a test that would otherwise hang; never reached when the peer behaves.
    monitor.set_rcvtimeo(10_000).expect("rcvtimeo");
    monitor.connect(&monitor_at).expect("connect the monitor");
    socket.connect(endpoint).expect("connect");
    (socket, monitor)
}

/// Stops `socket`'s monitor, then closes both: libzmq sends monitor events with blocking
/// sends, so the receiving end must not go first.
fn stop_monitor(mut socket: zmq::Socket, monitor: zmq::Socket) {
    // SAFETY: `socket` is a live socket owned by this thread; a null endpoint stops its
    // monitor.
    unsafe {
        zmq_sys::zmq_socket_monitor(socket.as_mut_ptr(), std::ptr::null(), 0);
    }
    drop(monitor);
    drop(socket);
}

fn header_bytes(op: u8, request_id: u64, object_id: u128) -> Vec<u8> {
    let mut bytes = Header::request(Op::Get, request_id, object_id)
        .encode()
        .to_vec();
    bytes[4] = op;
    // A put's size field gives its payload's length: the 9-byte payloads below.
    if op == 4 {
        bytes[32..40].copy_from_slice(&9u64.to_le_bytes());
    }
    bytes
}

#[test]
fn malformed_requests_get_error_replies_and_the_server_keeps_serving() {
    let server = peer();
    let key = server.put(Bytes::from_static(b"still here")).expect("put");
    let reader = peer();
    let raw = raw_socket(&endpoint(&server));

    let mut wrong_version = header_bytes(1, 5, 6);
    wrong_version[3] = 1;
    let mut nonzero_status = header_bytes(2, 13, 1);
    nonzero_status[5] = 1;
    let mut nonzero_reserved = header_bytes(2, 14, 1);
    nonzero_reserved[7] = 7;
    let mut unknown_flags = header_bytes(2, 15, 1);
    unknown_flags[6] = 0x80;
    let duplicate_put = header_bytes(4, 9, key.id());
    let cases: Vec<(&str, Vec<Vec<u8>>, u64)> = vec![
        ("garbage", vec![b"\xff\x00garbage".to_vec()], 0),
        ("empty frame", vec![Vec::new()], 0),
        (
            "truncated header",
            vec![header_bytes(1, 3, 4)[..HEADER_LEN - 5].to_vec()],
            0,
        ),
        ("unknown version", vec![wrong_version], 0),
        ("unknown operation", vec![header_bytes(200, 7, 8)], 7),
        (
            "get with a payload",
            vec![header_bytes(1, 10, 1), b"x".to_vec()],
            10,
        ),
        ("put without a payload", vec![header_bytes(4, 11, 1)], 11),
        (
            "too many frames",
            vec![header_bytes(1, 12, 1), b"a".to_vec(), b"b".to_vec()],
            12,
        ),
        (
            "put over an existing key",
            vec![duplicate_put, b"overwrite".to_vec()],
            9,
        ),
        ("request with a status", vec![nonzero_status], 13),
        ("request with a reserved byte", vec![nonzero_reserved], 14),
        ("request with unknown flags", vec![unknown_flags], 15),
    ];
    let count = cases.len() as u64;
    for (what, frames, request_id) in cases {
        raw.send_multipart(frames, 0).expect("send");
        let reply = raw
            .recv_multipart(0)
            .unwrap_or_else(|e| panic!("{what}: no reply ({e})"));
        assert_eq!(reply.len(), 2, "{what}: reply {reply:?}");
        assert_eq!(
            &reply[0][..4],
            &[b'P', b'X', b'Z', super::wire::VERSION],
            "{what}"
        );
        assert_eq!(reply[0][5], Status::Error as u8, "{what}: status");
        assert_eq!(
            u64::from_le_bytes(reply[0][8..16].try_into().expect("8 bytes")),
            request_id,
            "{what}"
        );
        assert!(!reply[1].is_empty(), "{what}: the error reply says nothing");
        // The server still serves, over the network and locally.
        assert_eq!(
            reader.get(&key).expect(what),
            Some(Bytes::from_static(b"still here")),
            "{what}"
        );
    }
    assert_eq!(server.rejected_requests(), count);
    assert_eq!(
        server.object_count(),
        Some(1),
        "bad requests changed the map"
    );
}

#[test]
fn oversized_requests_are_refused_and_the_server_keeps_serving() {
    let small = ZmqOptions::default()
        .with_max_message_size(64 << 10)
        .with_timeout(SHORT)
        .build()
        .expect("peer");
    let key = small.put(Bytes::from_static(b"fine")).expect("put");
    let (raw, monitor) = monitored_raw_socket(&endpoint(&small));
    raw.send_multipart([header_bytes(4, 1, 99), vec![0u8; 1 << 20]], 0)
        .expect("send");
    // libzmq drops the connection that sent the oversized frame: no reply, nothing stored.
    monitor
        .recv_multipart(0)
        .expect("the peer drops the connection of an oversized request");
    assert!(
        raw.recv_multipart(zmq::DONTWAIT).is_err(),
        "an oversized request was answered"
    );
    assert_eq!(small.object_count(), Some(1));
    stop_monitor(raw, monitor);

    // A client refuses to send what its own limit forbids, before touching the network.
    match small.put_to(
        &endpoint(&small).replace("127.0.0.1", "localhost"),
        Bytes::from(vec![0u8; 1 << 20]),
    ) {
        Err(Error::TooLarge {
            size, limit, whose, ..
        }) => assert_eq!((size, limit, whose), (1 << 20, 64 << 10, "this process's")),
        other => panic!("oversized put_to gave {other:?}"),
    }
    // A client with a larger limit learns the peer's limit first and says so, without
    // sending the object.
    let big = peer_with_timeout(SHORT);
    match big.put_to(&endpoint(&small), Bytes::from(vec![0u8; 1 << 20])) {
        Err(Error::TooLarge {
            peer,
            size,
            limit,
            whose,
            ..
        }) => {
            assert_eq!(peer, endpoint(&small));
            assert_eq!((size, limit, whose), (1 << 20, 64 << 10, "the peer's"));
        }
        other => panic!("oversized put_to gave {other:?}"),
    }
    // A reply larger than the reader's limit is refused by the peer, naming the limit.
    let large = big.put(Bytes::from(vec![1u8; 1 << 20])).expect("put");
    match small.get(&large) {
        Err(Error::TooLarge {
            size, limit, whose, ..
        }) => assert_eq!((size, limit, whose), (1 << 20, 64 << 10, "this process's")),
        other => panic!("oversized get gave {other:?}"),
    }
    assert_eq!(
        big.get(&key).expect("get after the oversized request"),
        Some(Bytes::from_static(b"fine"))
    );
}

#[test]
fn a_port_range_skips_taken_ports_and_names_itself_when_all_are_taken() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a probe socket");
    let port = taken.local_addr().expect("probe address").port();
    // The taken port first in the range, or last where there is no room above it.
    let (first, last) = match port.checked_add(40) {
        Some(last) => (port, last),
        None => (port - 40, port),
    };
    let connector = ZmqOptions::default()
        .with_port_range(first, last)
        .build()
        .expect("a free port in the range");
    let endpoint = connector.endpoint().expect("endpoint").to_string();
    let bound: u16 = endpoint
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    assert!(
        bound != port && (first..=last).contains(&bound),
        "{endpoint}"
    );

    match ZmqOptions::default().with_port(port).build() {
        Err(Error::Peer { peer, message }) => {
            assert_eq!(peer, format!("tcp://127.0.0.1:{port}"));
            assert!(message.contains("PROXYSTORE_ZMQ_PORT"), "{message}");
        }
        other => panic!("binding a taken port gave {other:?}"),
    }
}

#[test]
fn binding_an_address_of_another_host_is_an_error_with_a_hint() {
    // 198.51.100.0/24 is reserved for documentation: never an address of this host.
    // (insecure: without it the missing secret is refused before binding is tried)
    match ZmqOptions::default()
        .with_interface("198.51.100.77")
        .insecure()
        .build()
    {
        Err(Error::Peer { peer, message }) => {
            assert_eq!(peer, "tcp://198.51.100.77:*");
            assert!(message.contains("PROXYSTORE_ZMQ_INTERFACE"), "{message}");
        }
        other => panic!("binding a foreign address gave {other:?}"),
    }
}

/// What a process on "host A" sends along with its proxies: its own interface, address and
/// port, none of which exist on this host.
fn config_from_host_a() -> ZmqConfig {
    ZmqConfig {
        options: ZmqOptions::default()
            .with_interface("198.51.100.7")
            .with_address("host-a")
            .with_port(7777)
            .with_timeout(Duration::from_secs(3)),
        endpoint: Some("tcp://host-a:7777".to_string()),
    }
}

#[test]
fn a_connector_rebuilt_on_another_host_binds_and_advertises_that_host() {
    let config = config_from_host_a();
    // "Host B" says where it listens through its own environment.
    let env_of_b = |name: &str| match name {
        "PROXYSTORE_ZMQ_INTERFACE" => Some("127.0.0.1".to_string()),
        "PROXYSTORE_ZMQ_ADVERTISE" => Some("localhost".to_string()),
        _ => None,
    };
    let on_b = ZmqConnector::from_config_with(&config, env_of_b).expect("rebuild on B");
    assert_eq!(on_b.endpoint(), None, "no server before the first put");
    assert_eq!(
        on_b.options().timeout(),
        Duration::from_secs(3),
        "the timeout travels"
    );
    let key = on_b.put(Bytes::from_static(b"from B")).expect("put on B");
    let peer = key.peer().expect("peer").to_string();
    assert!(peer.starts_with("tcp://localhost:"), "{peer}");
    assert_eq!(Some(peer.as_str()), on_b.endpoint());
    // Another peer reads it from B.
    assert_eq!(
        peer_with_timeout(SHORT).get(&key).expect("get from B"),
        Some(Bytes::from_static(b"from B"))
    );

    // With nothing in B's environment: B's defaults, still nothing of A's.
    let on_b = ZmqConnector::from_config_with(&config, |_| None).expect("rebuild");
    let key = on_b.put(Bytes::from_static(b"x")).expect("put");
    assert!(key.peer().expect("peer").starts_with("tcp://127.0.0.1:"));

    // B's environment beats the travelled timeout.
    let env = |name: &str| (name == "PROXYSTORE_ZMQ_TIMEOUT").then(|| "700ms".to_string());
    let on_b = ZmqConnector::from_config_with(&config, env).expect("rebuild");
    assert_eq!(on_b.options().timeout(), Duration::from_millis(700));
}

#[test]
fn a_public_rebuild_never_binds_the_address_of_the_config() {
    // Before, this put tried to bind host A's 198.51.100.7:7777 and failed.
    let rebuilt = config_from_host_a().build().expect("rebuild");
    let key = rebuilt.put(Bytes::from_static(b"y")).expect("put");
    let peer = key.peer().expect("peer");
    assert!(
        !peer.contains("host-a") && !peer.contains("198.51.100.7") && !peer.ends_with(":7777"),
        "{peer}"
    );
}

#[test]
fn a_remote_store_puts_on_the_peer_and_serves_nothing_itself() {
    let home = peer();
    let home_endpoint = endpoint(&home);
    let remote = ZmqConnector::remote(&home_endpoint).expect("remote connector");
    assert_eq!(remote.options().remote(), Some(home_endpoint.as_str()));

    let key = remote.put(Bytes::from_static(b"one")).expect("remote put");
    assert_eq!(key.peer(), Some(home_endpoint.as_str()));
    let keys = remote
        .put_batch(vec![
            Bytes::from_static(b"two"),
            Bytes::from_static(b"three"),
        ])
        .expect("remote batch");
    assert!(keys
        .iter()
        .all(|k| k.peer() == Some(home_endpoint.as_str())));
    assert_eq!(remote.endpoint(), None, "a remote store starts no server");
    assert_eq!(home.object_count(), Some(3));
    assert_eq!(remote.object_count(), Some(0));

    // Typed puts and proxies through a Store, read back anywhere.
    let store = crate::Store::builder("remote-typed", remote.clone())
        .with_cache_size(0)
        .build();
    let proxy = store.proxy(vec![7u64, 8, 9]).expect("proxy");
    assert_eq!(
        crate::Proxy::key(&proxy).peer(),
        Some(home_endpoint.as_str())
    );
    let reader = crate::Store::builder("remote-typed-reader", peer_with_timeout(SHORT))
        .with_cache_size(0)
        .build();
    let back: Option<std::sync::Arc<Vec<u64>>> =
        reader.get(crate::Proxy::key(&proxy)).expect("get");
    assert_eq!(back.as_deref(), Some(&vec![7, 8, 9]));
    assert_eq!(*proxy, vec![7, 8, 9]);

    // Gets of other peers' keys work as before; evict reaches the owner.
    let other = peer();
    let other_key = other.put(Bytes::from_static(b"elsewhere")).expect("put");
    assert_eq!(
        remote.get(&other_key).expect("get"),
        Some(Bytes::from_static(b"elsewhere"))
    );
    remote.evict(&key).expect("evict");
    assert!(!home.exists(&key).expect("exists"));
}

#[test]
fn a_remote_store_whose_peer_is_dead_times_out_naming_it() {
    let dead = format!("tcp://127.0.0.1:{}", free_port());
    let remote = ZmqOptions::default()
        .with_remote(&dead)
        .with_timeout(SHORT)
        .build()
        .expect("a remote connector does not connect before its first put");
    match remote.put(Bytes::from_static(b"lost")) {
        Err(Error::Timeout { peer, .. }) => assert_eq!(peer, dead),
        other => panic!("put to a dead peer gave {other:?}"),
    }
}

#[test]
fn a_client_only_connector_reads_but_never_stores() {
    let home = peer();
    let key = home.put(Bytes::from_static(b"read me")).expect("put");
    let client = ZmqOptions::default()
        .with_client_only()
        .build()
        .expect("client");
    assert_eq!(
        client.get(&key).expect("get"),
        Some(Bytes::from_static(b"read me"))
    );
    for result in [
        client.put(Bytes::from_static(b"no")).map(|_| ()),
        client.put_batch(vec![Bytes::new()]).map(|_| ()),
    ] {
        match result {
            Err(Error::Config { message, .. }) => assert!(message.contains("client-only")),
            other => panic!("a client-only put gave {other:?}"),
        }
    }
    assert_eq!(client.endpoint(), None);
}

#[test]
fn a_remote_peer_that_is_not_an_endpoint_is_a_config_error() {
    for bad in [
        "",
        "node-3:7000",
        "tcp://node-3",
        "tcp://*:7000",
        "tcp://h:0",
        "tcp://:1",
    ] {
        assert!(
            matches!(ZmqConnector::remote(bad), Err(Error::Config { .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn stats_count_objects_bytes_and_rejections() {
    let server = ZmqOptions::default()
        .with_max_bytes(1000)
        .with_max_message_size(1 << 20)
        .build()
        .expect("peer");
    let at = endpoint(&server);
    let client = ZmqConnector::client(ZmqOptions::default()).expect("client");

    let empty = client.peer_stats(&at).expect("stats");
    assert_eq!(
        (empty.objects, empty.bytes, empty.rejected_requests),
        (0, 0, 0)
    );
    assert_eq!((empty.max_bytes, empty.max_message_size), (1000, 1 << 20));
    assert_eq!(empty.remote_bytes, 0);

    let own = server.put(Bytes::from(vec![1u8; 10])).expect("own put");
    let remote = client
        .put_to(&at, Bytes::from(vec![2u8; 300]))
        .expect("remote put");
    let after_puts = client.peer_stats(&at).expect("stats");
    assert_eq!(
        (
            after_puts.objects,
            after_puts.bytes,
            after_puts.remote_bytes
        ),
        (2, 310, 300)
    );
    assert!(
        after_puts.requests > empty.requests,
        "{after_puts:?} after {empty:?}"
    );
    // The server's own handle reads the same counters without a request (the stats request
    // itself now counted).
    assert_eq!(
        server.peer_stats(&at).expect("own stats"),
        PeerStats {
            requests: after_puts.requests + 1,
            ..after_puts
        }
    );

    // Refusals: over the quota, and a malformed request.
    match client.put_to(&at, Bytes::from(vec![3u8; 800])) {
        Err(Error::QuotaExceeded { .. }) => {}
        other => panic!("expected the quota to refuse, got {other:?}"),
    }
    let raw = raw_socket(&at);
    raw.send_multipart([b"garbage".to_vec()], 0).expect("send");
    raw.recv_multipart(0).expect("error reply");
    let refused = client.peer_stats(&at).expect("stats");
    assert_eq!(refused.rejected_requests, 2, "{refused:?}");
    assert_eq!((refused.objects, refused.bytes), (2, 310), "nothing stored");

    client.evict(&remote).expect("evict remote");
    server.evict(&own).expect("evict own");
    let evicted = client.peer_stats(&at).expect("stats");
    assert_eq!(
        (evicted.objects, evicted.bytes, evicted.remote_bytes),
        (0, 0, 0)
    );
    assert_eq!(evicted.rejected_requests, 2);
    assert_eq!(server.rejected_requests(), 2);
}

#[test]
fn stats_of_a_peer_with_a_secret_need_the_secret() {
    let secured = ZmqOptions::default()
        .with_secret("stats secret, 16 bytes or more")
        .build()
        .expect("peer");
    let at = endpoint(&secured);
    for (what, stranger) in [
        ("no secret", ZmqOptions::default()),
        (
            "another secret",
            ZmqOptions::default().with_secret("a wrong guess of the secret"),
        ),
    ] {
        let stranger = ZmqConnector::client(stranger).expect("client");
        match stranger.peer_stats(&at) {
            Err(Error::Unauthenticated { peer, .. }) => assert_eq!(peer, at, "{what}"),
            other => panic!("{what}: expected a refusal, got {other:?}"),
        }
    }
    let member =
        ZmqConnector::client(ZmqOptions::default().with_secret("stats secret, 16 bytes or more"))
            .expect("client");
    let stats = member.peer_stats(&at).expect("stats with the secret");
    // Refused at the handshake: no request of theirs was read, none rejected.
    assert_eq!(stats.rejected_requests, 0);
    let (_, _, refused) = secured
        .inner
        .server
        .get()
        .expect("server")
        .connection_counts();
    assert!(
        refused >= 2,
        "the two strangers' handshakes were refused: {refused}"
    );
}

#[test]
fn malformed_stats_replies_are_protocol_errors() {
    type MakeReply = fn(&Header) -> Vec<Vec<u8>>;
    let replies: [(&str, MakeReply); 4] = [
        ("no payload", |h| {
            vec![h.reply(Status::Ok).encode().to_vec()]
        }),
        ("short payload", |h| {
            vec![
                h.reply(Status::Ok).encode().to_vec(),
                vec![0u8; stats::STATS_LEN - 1],
            ]
        }),
        ("long payload", |h| {
            vec![
                h.reply(Status::Ok).encode().to_vec(),
                vec![0u8; stats::STATS_LEN + 1],
            ]
        }),
        ("not found", |h| {
            vec![h.reply(Status::NotFound).encode().to_vec()]
        }),
    ];
    let client = peer_with_timeout(Duration::from_secs(2));
    for (what, make) in replies {
        let (endpoint, fake) = FakePeer::run(move |fake| {
            let (to, header) = fake.receive();
            assert_eq!(header.op, Op::Stats);
            let frames = make(&header);
            let frames: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
            fake.reply(&to, &frames);
        });
        match client.peer_stats(&endpoint) {
            Err(Error::Protocol { peer, message }) => {
                assert_eq!(peer, endpoint, "{what}: {message}")
            }
            other => panic!("{what}: expected a protocol error, got {other:?}"),
        }
        fake.join().expect("fake peer");
    }
}

/// The descriptor of a real object in `owner`'s shared memory.
fn real_descriptor(owner: &ZmqConnector) -> shm::Descriptor {
    let key = owner.put(Bytes::from(vec![1u8; 200_000])).expect("put");
    let server = owner.inner.server.get().expect("server");
    let (_, descriptor) = server.objects().share(key.id(), u64::MAX).expect("stored");
    descriptor.expect("in shared memory")
}

/// A fake peer that answers the first `GET` with `descriptor` (as status `SHARED`), then
/// every `GET` with `b"over tcp"`, and reports the flags of each request.
fn serve_descriptor_then_bytes(
    descriptor: Vec<u8>,
    requests: usize,
) -> (String, std::thread::JoinHandle<Vec<u8>>) {
    FakePeer::run(move |fake| {
        let mut flags = Vec::new();
        for index in 0..requests {
            let (to, header) = fake.receive();
            flags.push(header.flags);
            if index == 0 {
                fake.reply(&to, &[&header.reply(Status::Shared).encode(), &descriptor]);
            } else {
                fake.reply(&to, &[&header.reply(Status::Ok).encode(), b"over tcp"]);
            }
        }
        flags
    })
}

#[test]
fn descriptors_that_cannot_be_mapped_fall_back_to_tcp_and_the_peer_is_remembered() {
    let owner = peer();
    let real = real_descriptor(&owner);
    let unopenable = shm::Descriptor {
        pid: u32::MAX,
        ..real
    };
    let other_host = shm::Descriptor {
        boot: [0; 16],
        ..real
    };
    for descriptor in [unopenable, other_host] {
        let (endpoint, fake) = serve_descriptor_then_bytes(descriptor.encode().to_vec(), 3);
        let client = peer_with_timeout(Duration::from_secs(2));
        let key = Key::random("zmq").with_peer(endpoint.as_str());
        assert_eq!(
            client.get(&key).expect("get"),
            Some(Bytes::from_static(b"over tcp"))
        );
        assert_eq!(
            client.get(&key).expect("second get"),
            Some(Bytes::from_static(b"over tcp"))
        );
        assert_eq!(client.mapped_reads(), 0);
        // Offered once, asked again without the flag, then never offered to that peer.
        assert_eq!(
            fake.join().expect("fake peer"),
            [wire::FLAG_SHARED_MEMORY, 0, 0]
        );
    }
}

#[test]
fn hostile_or_unasked_for_descriptors_are_protocol_errors() {
    let owner = peer();
    let real = real_descriptor(&owner);
    let outside = shm::Descriptor {
        offset: real.offset + 4096,
        ..real
    };
    let too_long = shm::Descriptor {
        len: u64::MAX,
        ..real
    };
    let client = peer_with_timeout(Duration::from_secs(2));
    let off = ZmqOptions::default()
        .with_shared_memory(false)
        .with_timeout(Duration::from_secs(2))
        .build()
        .expect("peer");
    let cases: [(&str, Vec<u8>, &ZmqConnector); 4] = [
        (
            "offset outside its slot",
            outside.encode().to_vec(),
            &client,
        ),
        (
            "longer than the segment",
            too_long.encode().to_vec(),
            &client,
        ),
        (
            "truncated descriptor",
            real.encode()[..40].to_vec(),
            &client,
        ),
        // A reader with shared memory off never offers to map: a descriptor is unasked for.
        ("descriptor without the flag", real.encode().to_vec(), &off),
    ];
    for (what, descriptor, reader) in cases {
        let (endpoint, fake) = serve_descriptor_then_bytes(descriptor, 1);
        let key = Key::random("zmq").with_peer(endpoint.as_str());
        match reader.get(&key) {
            Err(Error::Protocol { peer, .. }) => assert_eq!(peer, endpoint, "{what}"),
            other => panic!(
                "{what}: expected a protocol error, got {:?}",
                other.map(|found| found.map(|b| b.len()))
            ),
        }
        fake.join().expect("fake peer");
    }
}

#[test]
fn stats_report_the_shared_memory_a_peer_holds() {
    let server = ZmqOptions::default()
        .with_shared_memory(true)
        .build()
        .expect("peer");
    let at = endpoint(&server);
    let reader = ZmqConnector::client(ZmqOptions::default().with_shared_memory(true))
        .expect("reader on this host");
    let before = reader.peer_stats(&at).expect("stats");
    assert_eq!(
        (before.shared_memory_bytes, before.shared_memory_reserved),
        (0, 0)
    );

    let size = 1 << 20;
    let key = server.put(Bytes::from(vec![5u8; size])).expect("put");
    let read = reader.get(&key).expect("get").expect("present");
    assert_eq!(read.len(), size);
    // Same-host reads need /proc/PID/fd access; without it the peer serves over TCP and
    // holds nothing in shared memory.
    let mapped = if reader.mapped_reads() == 1 {
        Ok(())
    } else {
        Err("this process cannot map its peer's shared memory (/proc/PID/fd)".to_string())
    };
    let Some(()) = crate::testing::require_or_skip(
        "stats_report_the_shared_memory_a_peer_holds",
        "run it where a process may open its own /proc/PID/fd entries",
        mapped,
    ) else {
        return;
    };
    let held = reader.peer_stats(&at).expect("stats");
    assert_eq!(held.shared_memory_bytes, size as u64, "{held:?}");
    assert!(
        held.shared_memory_reserved >= held.shared_memory_bytes,
        "{held:?}"
    );

    server.evict(&key).expect("evict");
    drop(read);
    let after = reader.peer_stats(&at).expect("stats");
    assert_eq!(after.shared_memory_bytes, 0, "{after:?}");
    assert_eq!(
        after.shared_memory_reserved, held.shared_memory_reserved,
        "segments are kept for reuse"
    );
}

/// A well-formed one-slot segment holding `data` as a fresh object, kept open by a child
/// process (running as `nobody` when `as_nobody`), and a descriptor of it: what a hostile
/// peer could name in a reply. Returns the object's id, the child and the descriptor.
fn foreign_segment(
    token: u128,
    data: &[u8],
    as_nobody: bool,
) -> (u128, std::process::Child, shm::Descriptor) {
    let id = Key::random("zmq").id();
    let holder = shm::spawn_segment_holder(token, id, data, as_nobody);
    let descriptor = shm::holder_descriptor(&holder, token, data.len() as u64);
    (id, holder, descriptor)
}

#[test]
fn a_descriptor_naming_another_process_than_the_answering_peer_falls_back_to_tcp() {
    // The fake peer answers from this process; the segment it names (well formed, holding
    // the very object asked for) belongs to another process of this user.
    let (id, mut holder, descriptor) = foreign_segment(0xfeed, b"not the peer's", false);
    let (endpoint, fake) = serve_descriptor_then_bytes(descriptor.encode().to_vec(), 2);
    let client = peer_with_timeout(Duration::from_secs(2));
    let key = Key::new("zmq", id).with_peer(endpoint.as_str());
    let got = client.get(&key);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(got.expect("get"), Some(Bytes::from_static(b"over tcp")));
    assert_eq!(
        client.mapped_reads(),
        0,
        "another process's segment was mapped"
    );
    assert_eq!(
        fake.join().expect("fake peer"),
        [wire::FLAG_SHARED_MEMORY, 0]
    );
}

#[test]
fn copy_on_read_gets_a_private_copy_of_a_same_host_object() {
    let owner = peer();
    let reader = ZmqOptions::default()
        .with_shared_memory_copy_on_read(true)
        .build()
        .expect("reader");
    assert!(reader.inner.options.shared_memory_copy_on_read());
    let data = Bytes::from(
        (0..300_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let key = owner.put(data.clone()).expect("put");
    let got = reader.get(&key).expect("get").expect("present");
    assert_eq!(got, data);
    let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
    let at = got.as_ptr() as usize;
    let mapped_from_memfd = maps.lines().any(|line| {
        let range = line.split_whitespace().next().unwrap_or_default();
        let mut bounds = range.split('-').map(|b| usize::from_str_radix(b, 16));
        matches!((bounds.next(), bounds.next()), (Some(Ok(low)), Some(Ok(high))) if low <= at && at < high)
            && line.contains("memfd:")
    });
    let mapped = if reader.mapped_reads() == 0 {
        Err("this process could not map its peer's shared memory".to_string())
    } else {
        Ok(())
    };
    let Some(()) = crate::testing::require_or_skip(
        "zmq copy_on_read_gets_a_private_copy_of_a_same_host_object",
        "run on Linux with shared memory available (memfd, /proc)",
        mapped,
    ) else {
        return;
    };
    assert!(
        !mapped_from_memfd,
        "copy-on-read returned bytes in a shared mapping"
    );
    let env = ZmqOptions::default()
        .with_vars(|name| (name == "PROXYSTORE_ZMQ_SHM_COPY_ON_READ").then(|| "1".to_string()))
        .expect("options");
    assert!(env.shared_memory_copy_on_read());
    assert!(ZmqOptions::default()
        .with_vars(|name| (name == "PROXYSTORE_ZMQ_SHM_COPY_ON_READ").then(|| "maybe".to_string()))
        .is_err());
}

#[test]
fn root_falls_back_to_tcp_for_another_users_segment() {
    let Some(()) =
        crate::testing::require_root("zmq root_falls_back_to_tcp_for_another_users_segment")
    else {
        return;
    };
    let (id, mut holder, descriptor) = foreign_segment(0xbeef, b"nobody's bytes", true);
    let (endpoint, fake) = serve_descriptor_then_bytes(descriptor.encode().to_vec(), 2);
    let client = peer_with_timeout(Duration::from_secs(2));
    let got = client.get(&Key::new("zmq", id).with_peer(endpoint.as_str()));
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(got.expect("get"), Some(Bytes::from_static(b"over tcp")));
    assert_eq!(client.mapped_reads(), 0, "root mapped nobody's segment");
    assert_eq!(
        fake.join().expect("fake peer"),
        [wire::FLAG_SHARED_MEMORY, 0]
    );
}

/// Peers that keep a request waiting by moving a few bytes at a time (issue 18, item 2): a
/// raw TCP listener speaking just enough ZMTP 3.1 to take a request, then trickling its reply
/// or sending only heartbeats.
mod slow_peers {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    use super::super::wire::{Header, Status};
    use super::super::*;

    /// What the fake peer does once it has read the request.
    #[derive(Clone, Copy)]
    enum Behaviour {
        /// Sends the reply header, announces a 1 MiB payload, then one byte every 40 ms.
        Trickle,
        /// Sends nothing but ZMTP `PING` commands, one every 40 ms.
        PingOnly,
    }

    const GAP: Duration = Duration::from_millis(40);
    /// The fake stops on its own after this long (the client should have given up long
    /// before; before the fix it waited for as long as bytes kept coming).
    const FAKE_LIFETIME: Duration = Duration::from_secs(30);

    fn greeting() -> [u8; 64] {
        let mut g = [0u8; 64];
        g[0] = 0xff;
        g[9] = 0x7f;
        g[10] = 3; // ZMTP 3.1
        g[11] = 1;
        g[12..16].copy_from_slice(b"NULL");
        g
    }

    /// A command frame (short form) with `body`.
    fn command(body: &[u8]) -> Vec<u8> {
        let mut out = vec![0x04, body.len() as u8];
        out.extend_from_slice(body);
        out
    }

    fn ready() -> Vec<u8> {
        let mut body = vec![5];
        body.extend_from_slice(b"READY");
        body.push(11);
        body.extend_from_slice(b"Socket-Type");
        body.extend_from_slice(&6u32.to_be_bytes());
        body.extend_from_slice(b"ROUTER");
        command(&body)
    }

    /// Reads one ZMTP frame: (flags, body).
    fn read_frame(stream: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
        let mut flags = [0u8; 1];
        stream.read_exact(&mut flags)?;
        let size = if flags[0] & 0x02 != 0 {
            let mut size = [0u8; 8];
            stream.read_exact(&mut size)?;
            u64::from_be_bytes(size)
        } else {
            let mut size = [0u8; 1];
            stream.read_exact(&mut size)?;
            u64::from(size[0])
        };
        let mut body = vec![0u8; size as usize];
        stream.read_exact(&mut body)?;
        Ok((flags[0], body))
    }

    /// Serves one connection as `behaviour` says, until `stop` or the client goes away.
    fn serve(
        mut stream: TcpStream,
        behaviour: Behaviour,
        stop: &AtomicBool,
    ) -> std::io::Result<()> {
        stream.set_nodelay(true)?;
        stream.write_all(&greeting())?;
        let mut theirs = [0u8; 64];
        stream.read_exact(&mut theirs)?;
        stream.write_all(&ready())?;
        // Their READY, then the request's frames (a command frame has bit 2 set).
        let request = loop {
            let (flags, body) = read_frame(&mut stream)?;
            if flags & 0x04 != 0 {
                continue;
            }
            let mut more = flags & 0x01 != 0;
            while more {
                more = read_frame(&mut stream)?.0 & 0x01 != 0;
            }
            break body;
        };
        let started = Instant::now();
        match behaviour {
            Behaviour::Trickle => {
                let header = Header::decode(&request)
                    .map_err(|e| std::io::Error::other(e.message))?
                    .reply(Status::Ok)
                    .encode();
                let mut out = vec![0x01, header.len() as u8];
                out.extend_from_slice(&header);
                out.push(0x02); // last frame, long size
                out.extend_from_slice(&(1u64 << 20).to_be_bytes());
                stream.write_all(&out)?;
                while !stop.load(Ordering::Acquire) && started.elapsed() < FAKE_LIFETIME {
                    stream.write_all(&[0x5a])?;
                    std::thread::sleep(GAP);
                }
            }
            Behaviour::PingOnly => {
                let mut body = vec![4];
                body.extend_from_slice(b"PING");
                body.extend_from_slice(&[0, 0]); // TTL
                let ping = command(&body);
                while !stop.load(Ordering::Acquire) && started.elapsed() < FAKE_LIFETIME {
                    stream.write_all(&ping)?;
                    std::thread::sleep(GAP);
                }
            }
        }
        Ok(())
    }

    /// A get with a 1 s timeout from a fake peer behaving as `behaviour`: fails within a
    /// generous bound, as too slow, naming the peer.
    /// A fake peer on a loopback port that serves its first connection as `behaviour` until
    /// `stop` is set; returns its endpoint, the stop flag and its thread.
    fn fake_peer(behaviour: Behaviour) -> (String, Arc<AtomicBool>, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let endpoint = format!("tcp://{}", listener.local_addr().expect("address"));
        let stop = Arc::new(AtomicBool::new(false));
        let fake = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                if let Ok((stream, _)) = listener.accept() {
                    let _ = serve(stream, behaviour, &stop);
                }
            })
        };
        (endpoint, stop, fake)
    }

    fn a_get_from(behaviour: Behaviour) {
        let (endpoint, stop, fake) = fake_peer(behaviour);
        let timeout = Duration::from_secs(1);
        let key = Key::random("zmq").with_peer(endpoint.as_str());
        let (done, outcome) = mpsc::channel();
        std::thread::spawn(move || {
            let client = ZmqConnector::client(
                ZmqOptions::default()
                    .with_timeout(timeout)
                    .with_shared_memory(false),
            )
            .expect("client");
            let started = Instant::now();
            let result = client.get(&key);
            let _ = done.send((result, started.elapsed()));
        });
        // The client gives up one window (1 s) after the request, plus a slice; 10 s is a
        // generous bound on a busy machine. Before the fix it waited as long as bytes came.
        let bound = Duration::from_secs(10);
        let received = outcome.recv_timeout(bound + Duration::from_secs(5));
        stop.store(true, Ordering::Release);
        let (result, elapsed) = received.expect("the get is still waiting on a trickling peer");
        fake.join().expect("fake peer");
        match result {
            Err(error @ Error::TooSlow { .. }) => {
                let message = error.to_string();
                assert!(message.contains("too slow"), "{message}");
                assert!(message.contains(&endpoint), "{message}");
                assert_eq!(error.kind(), crate::ErrorKind::Timeout);
            }
            other => panic!("expected a too-slow error, got {other:?}"),
        }
        assert!(elapsed >= timeout, "gave up after {elapsed:?}");
        assert!(elapsed < bound, "took {elapsed:?}");
    }

    #[test]
    fn a_peer_that_trickles_its_reply_fails_the_get_as_too_slow() {
        a_get_from(Behaviour::Trickle);
    }

    #[test]
    fn a_peer_that_only_sends_heartbeats_fails_the_get_as_too_slow() {
        a_get_from(Behaviour::PingOnly);
    }

    #[test]
    fn without_a_rate_floor_only_silence_ends_a_request() {
        // min_rate 0: heartbeats keep the get waiting (the old rule), far below any floor;
        // it ends as a timeout (never as too slow) once the fake stops sending.
        let (endpoint, stop, fake) = fake_peer(Behaviour::PingOnly);
        let timeout = Duration::from_secs(1);
        let client = ZmqConnector::client(
            ZmqOptions::default()
                .with_timeout(timeout)
                .with_min_rate(0)
                .with_shared_memory(false),
        )
        .expect("client");
        let key = Key::random("zmq").with_peer(endpoint.as_str());
        let stopper = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(3));
                stop.store(true, Ordering::Release);
            })
        };
        let started = Instant::now();
        let result = client.get(&key);
        let elapsed = started.elapsed();
        stopper.join().expect("stopper");
        fake.join().expect("fake peer");
        assert!(
            matches!(result, Err(Error::Timeout { .. })),
            "expected a timeout, got {result:?}"
        );
        assert!(elapsed >= timeout, "{elapsed:?}");
    }
}

/// Replies rewritten on the path (issue 18, item 5): with a secret, a client refuses any reply
/// that its peer did not prove for its request.
mod man_in_the_middle {
    use std::thread::JoinHandle;
    use std::time::Duration;

    use bytes::Bytes;

    use super::super::wire::{Header, Status, HEADER_LEN};
    use super::super::*;
    use super::endpoint;

    const SECRET: &str = "a cluster secret for the relay tests";

    /// Changes a reply (its frames after the routing id), given its index.
    type Tamper = Box<dyn FnMut(usize, &mut Vec<Vec<u8>>) + Send>;

    /// A relay between clients and `upstream` passing `replies` replies, each first handed to
    /// `tamper`; returns its endpoint and thread.
    fn relay(upstream: &str, replies: usize, mut tamper: Tamper) -> (String, JoinHandle<()>) {
        let listen = context().socket(zmq::ROUTER).expect("socket");
        listen.set_linger(0).expect("linger");
        listen.set_rcvtimeo(10_000).expect("rcvtimeo");
        // The relay takes members' connection tokens (it sits on their path, where PLAIN
        // credentials travel in clear) and shows one upstream.
        let secret = super::super::auth::Secret::new(SECRET.as_bytes());
        super::super::zap::ensure_handler().expect("ZAP handler");
        let registration = super::super::zap::Registration::new(&secret);
        listen
            .set_zap_domain(registration.domain())
            .expect("zap domain");
        listen.set_plain_server(true).expect("plain server");
        listen.bind("tcp://127.0.0.1:*").expect("bind");
        let at = listen
            .get_last_endpoint()
            .expect("endpoint")
            .expect("utf-8");
        let forward = context().socket(zmq::DEALER).expect("socket");
        forward.set_linger(0).expect("linger");
        forward.set_rcvtimeo(10_000).expect("rcvtimeo");
        super::with_token(&forward, &secret);
        forward.connect(upstream).expect("connect");
        let thread = std::thread::spawn(move || {
            let _registration = registration;
            for index in 0..replies {
                let Ok(mut request) = listen.recv_multipart(0) else {
                    return;
                };
                let from = request.remove(0);
                if forward.send_multipart(request, 0).is_err() {
                    return;
                }
                let Ok(mut reply) = forward.recv_multipart(0) else {
                    return;
                };
                tamper(index, &mut reply);
                reply.insert(0, from);
                if listen.send_multipart(reply, 0).is_err() {
                    return;
                }
            }
        });
        (at, thread)
    }

    fn member(shared_memory: bool) -> ZmqConnector {
        ZmqConnector::client(
            ZmqOptions::default()
                .with_secret(SECRET)
                .with_timeout(Duration::from_secs(5))
                .with_shared_memory(shared_memory),
        )
        .expect("client")
    }

    fn owner() -> ZmqConnector {
        ZmqOptions::default()
            .with_secret(SECRET)
            .build()
            .expect("peer")
    }

    fn assert_refused(result: Result<Option<Bytes>>, relay: &str, what: &str) {
        match result {
            Err(Error::Protocol { peer, message }) => {
                assert_eq!(peer, relay, "{what}: {message}");
                assert!(message.contains("not authenticated"), "{what}: {message}");
                assert!(!message.contains(SECRET), "{what}: {message}");
            }
            other => panic!("{what}: expected the reply to be refused, got {other:?}"),
        }
    }

    fn set_request_id(header: &mut [u8], request_id: u64) {
        header[8..16].copy_from_slice(&request_id.to_le_bytes());
    }

    #[test]
    fn an_untouched_relay_delivers_proven_replies() {
        let owner = owner();
        let data = Bytes::from(vec![0xab; 4096]);
        let key = owner.put(data.clone()).expect("put");
        let (at, relay) = relay(&endpoint(&owner), 3, Box::new(|_, _| {}));
        let client = member(false);
        let key = key.with_peer(at.as_str());
        assert_eq!(client.get(&key).expect("get"), Some(data));
        assert!(client.exists(&key).expect("exists"));
        let missing = Key::random("zmq").with_peer(at.as_str());
        assert_eq!(client.get(&missing).expect("get"), None);
        relay.join().expect("relay");
    }

    /// Puts `len` bytes on `owner`, has `client` get them through a relay that flips byte
    /// `index` of the reply's payload, and asserts the client refuses the reply.
    fn assert_a_flipped_payload_byte_is_refused(
        owner: &ZmqConnector,
        len: usize,
        index: usize,
        client: &ZmqConnector,
        what: &str,
    ) {
        let key = owner.put(Bytes::from(vec![0xab; len])).expect("put");
        let (at, relay) = relay(
            &endpoint(owner),
            1,
            Box::new(move |_, reply| {
                if let Some(payload) = reply.get_mut(1) {
                    payload[index] ^= 0x01;
                }
            }),
        );
        assert_refused(client.get(&key.with_peer(at.as_str())), &at, what);
        relay.join().expect("relay");
    }

    #[test]
    fn a_reply_whose_object_was_changed_on_the_path_is_refused() {
        assert_a_flipped_payload_byte_is_refused(
            &owner(),
            4096,
            100,
            &member(false),
            "a flipped byte",
        );
    }

    #[test]
    fn a_recorded_reply_played_for_a_later_request_is_refused() {
        let owner = owner();
        let data = Bytes::from(vec![0xab; 4096]);
        let key = owner.put(data.clone()).expect("put");
        let mut recorded: Option<Vec<Vec<u8>>> = None;
        let (at, relay) = relay(
            &endpoint(&owner),
            2,
            Box::new(move |index, reply| {
                if index == 0 {
                    recorded = Some(reply.clone());
                } else if let Some(old) = &recorded {
                    // The earlier answer, dressed up as the answer to this request.
                    let request_id =
                        u64::from_le_bytes(reply[0][8..16].try_into().expect("a header"));
                    *reply = old.clone();
                    set_request_id(&mut reply[0], request_id);
                }
            }),
        );
        let client = member(false);
        let key = key.with_peer(at.as_str());
        assert_eq!(client.get(&key).expect("first get"), Some(data));
        assert_refused(client.get(&key), &at, "a replayed reply");
        relay.join().expect("relay");
    }

    #[test]
    fn replies_made_up_or_stripped_on_the_path_are_refused() {
        let owner = owner();
        let key = owner.put(Bytes::from(vec![0xab; 4096])).expect("put");
        type Forge = fn(&mut Vec<Vec<u8>>);
        let forgeries: [(&str, Forge); 4] = [
            ("the proof zeroed", |reply| {
                reply[0][112..HEADER_LEN].fill(0);
            }),
            ("another object in its place", |reply| {
                reply[1] = b"what the attacker wants you to read".to_vec();
            }),
            ("not found instead of the object", |reply| {
                let header = Header::decode(&reply[0]).expect("a reply header");
                *reply = vec![header.reply(Status::NotFound).encode().to_vec()];
            }),
            ("the object's size field changed", |reply| {
                reply[0][32] ^= 1;
            }),
        ];
        let client = member(false);
        for (what, forge) in forgeries {
            let (at, relay) = relay(&endpoint(&owner), 1, Box::new(move |_, reply| forge(reply)));
            assert_refused(client.get(&key.clone().with_peer(at.as_str())), &at, what);
            relay.join().expect("relay");
        }
    }

    #[test]
    fn a_shared_memory_descriptor_changed_on_the_path_is_refused() {
        // The owner answers a same-host reader with a descriptor (or, where this process
        // cannot map it, with the bytes); changing either on the path is refused.
        let owner = ZmqOptions::default()
            .with_secret(SECRET)
            .with_shared_memory(true)
            .build()
            .expect("peer");
        // In a descriptor, byte 17 is a byte of the owner's pid (bytes 16..20).
        assert_a_flipped_payload_byte_is_refused(
            &owner,
            1 << 20,
            17,
            &member(true),
            "a changed descriptor",
        );
    }

    #[test]
    fn a_client_with_a_secret_refuses_replies_of_a_peer_without_one() {
        let open = ZmqConnector::new().expect("peer without a secret");
        let key = open.put(Bytes::from_static(b"unproven")).expect("put");
        let at = endpoint(&open);
        // The peer does not ask for a connection token: the handshake fails (another
        // mechanism), and the client says why.
        match member(false).get(&key) {
            Err(Error::Unauthenticated { peer, message, .. }) => {
                assert_eq!(peer, at, "{message}");
                assert!(message.contains("has no cluster secret"), "{message}");
                assert!(!message.contains(SECRET), "{message}");
            }
            other => panic!("expected the peer to be refused, got {other:?}"),
        }
    }
}

/// Peers' incarnations and sessions (wire version 4; issues 19 and 20): keys that know which
/// run of a peer stored them, replays that fail, floods that cost only the flooder.
mod incarnations_and_sessions {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;

    use super::super::client::{exchange, Request};
    use super::super::wire::{Header, Op, Status};
    use super::super::*;
    use super::{endpoint, SHORT};

    const SECRET: &str = "incarnations and sessions secret";

    fn member() -> ZmqConnector {
        ZmqConnector::client(
            ZmqOptions::default()
                .with_secret(SECRET)
                .with_timeout(Duration::from_secs(10)),
        )
        .expect("client")
    }

    fn owner() -> ZmqConnector {
        ZmqOptions::default()
            .with_secret(SECRET)
            .build()
            .expect("peer")
    }

    fn server(connector: &ZmqConnector) -> &PeerServer {
        connector.inner.server.get().expect("server started")
    }

    #[test]
    fn keys_name_their_peers_incarnation_and_every_put_path_agrees() {
        let owner = owner();
        let incarnation = server(&owner).incarnation();
        assert_ne!(incarnation, 0);
        let here = owner.put(Bytes::from_static(b"here")).expect("put");
        let batch = owner
            .put_batch(vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")])
            .expect("put_batch");
        let future = owner.new_key().expect("new_key");
        let client = member();
        let remote = client
            .put_to(&endpoint(&owner), Bytes::from_static(b"remote"))
            .expect("put_to");
        let remote_future = ZmqConnector::client(
            ZmqOptions::default()
                .with_secret(SECRET)
                .with_remote(endpoint(&owner)),
        )
        .expect("remote client")
        .new_key()
        .expect("remote new_key");
        for key in [
            &here,
            &batch[0],
            &batch[1],
            &future,
            &remote,
            &remote_future,
        ] {
            assert_eq!(key.peer_incarnation(), Some(incarnation), "{key}");
            assert!(!key.peer_is_advertised(), "{key}");
        }
        assert_eq!(
            client.get(&remote).expect("get"),
            Some(Bytes::from_static(b"remote"))
        );
        // Another peer draws another incarnation.
        assert_ne!(
            server(&ZmqConnector::new().expect("peer")).incarnation(),
            incarnation
        );
    }

    #[test]
    fn a_restarted_peer_says_its_keys_are_from_an_earlier_run() {
        let first = ZmqConnector::new().expect("peer");
        let key = first
            .put(Bytes::from_static(b"gone with the run"))
            .expect("put");
        let port = endpoint(&first)
            .rsplit(':')
            .next()
            .expect("port")
            .parse()
            .expect("port");
        first.close().expect("close");
        // libzmq closes the old socket in its I/O thread: the port is free a moment later.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let restarted = loop {
            match ZmqOptions::default().with_port(port).build() {
                Ok(restarted) => break restarted,
                Err(e) if std::time::Instant::now() < deadline => {
                    assert!(e.to_string().contains("in use"), "{e}");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("restart on port {port}: {e}"),
            }
        };
        restarted.put(Bytes::from_static(b"new run")).expect("put");
        assert_eq!(
            endpoint(&restarted),
            key.peer().expect("peer"),
            "the same address"
        );

        let reader = ZmqConnector::client(ZmqOptions::default()).expect("client");
        match reader.get(&key) {
            Err(Error::WrongIncarnation { peer, message, .. }) => {
                assert_eq!(Some(peer.as_str()), key.peer());
                assert!(message.contains("restarted"), "{message}");
            }
            other => panic!("expected an incarnation error, got {other:?}"),
        }
        let exists = reader
            .exists(&key)
            .expect_err("exists of another run's key");
        assert!(exists.is_not_found(), "{exists}");
        // Its object is not there: evicting it is done, and the new run's objects stay.
        reader.evict(&key).expect("evict");
        assert_eq!(restarted.object_count(), Some(1));
    }

    #[test]
    fn a_key_of_another_process_on_the_same_loopback_endpoint_explains_the_mix_up() {
        // What another host that also bound 127.0.0.1 on this port wrote into its keys.
        let here = ZmqConnector::new().expect("peer");
        let own = here.put(Bytes::from_static(b"mine")).expect("put");
        let incarnation = own.peer_incarnation().expect("an incarnation");
        let theirs = Key::new("zmq", 7)
            .with_peer(endpoint(&here))
            .with_peer_incarnation(incarnation ^ 1);
        for result in [
            here.get(&theirs).map(|_| ()),
            here.exists(&theirs).map(|_| ()),
        ] {
            match result {
                Err(Error::WrongIncarnation { message, .. }) => {
                    assert!(message.contains("loopback"), "{message}");
                    assert!(message.contains("PROXYSTORE_ZMQ_INTERFACE"), "{message}");
                }
                other => panic!("expected the mix-up explained, got {other:?}"),
            }
        }
        // Its own keys, and keys that name no incarnation, read as before.
        assert_eq!(
            here.get(&own).expect("get"),
            Some(Bytes::from_static(b"mine"))
        );
        let unnamed = Key::new("zmq", own.id()).with_peer(endpoint(&here));
        assert_eq!(
            here.get(&unnamed).expect("get"),
            Some(Bytes::from_static(b"mine"))
        );
    }

    #[test]
    fn a_timeout_at_an_advertised_address_says_it_was_advertised() {
        let advertising = ZmqOptions::default()
            .with_address("127.0.0.1")
            .build()
            .expect("peer");
        let advertised = advertising.put(Bytes::from_static(b"x")).expect("put");
        let bound = ZmqConnector::new().expect("peer");
        let plain = bound.put(Bytes::from_static(b"x")).expect("put");
        assert!(advertised.peer_is_advertised() && !plain.peer_is_advertised());
        advertising.close().expect("close");
        bound.close().expect("close");
        let reader = ZmqConnector::client(
            ZmqOptions::default()
                .with_timeout(SHORT)
                .with_peer_cooldown(Duration::ZERO),
        )
        .expect("client");
        let said = |key: &Key| match reader.get(key) {
            Err(error @ Error::Timeout { .. }) => error.to_string(),
            other => panic!("expected a timeout, got {other:?}"),
        };
        let message = said(&advertised);
        assert!(message.contains("advertised"), "{message}");
        assert!(message.contains("PROXYSTORE_ZMQ_ADVERTISE"), "{message}");
        let message = said(&plain);
        assert!(!message.contains("advertised"), "{message}");
    }

    /// A put with a junk proof, on a connection past the handshake (a member's connection
    /// token, recorded on the path), is refused on its header: the peer never hashes its
    /// payload (a flood of such puts costs the peer a MAC of a header each).
    #[test]
    fn a_put_with_a_junk_proof_is_refused_before_its_payload_is_hashed() {
        let owner = owner();
        let context = context();
        let stranger = context.socket(zmq::DEALER).expect("socket");
        stranger.set_linger(0).expect("linger");
        stranger.set_rcvtimeo(10_000).expect("rcvtimeo");
        super::with_token(
            &stranger,
            &super::super::auth::Secret::new(SECRET.as_bytes()),
        );
        stranger.connect(&endpoint(&owner)).expect("connect");
        let payload = vec![0x5a; 8 << 20];
        let mut header = Header::request(Op::Put, 1, 42);
        header.size = payload.len() as u64;
        header.incarnation = server(&owner).incarnation();
        header.proof = [0xee; 32];
        stranger
            .send_multipart([header.encode().to_vec(), payload.clone()], 0)
            .expect("send");
        let reply = stranger.recv_multipart(0).expect("a reply");
        let reply = Header::decode(&reply[0]).expect("a reply header");
        assert_eq!(reply.status, Status::Unauthenticated);
        assert_eq!(
            server(&owner).payload_bytes_hashed(),
            0,
            "the junk payload was hashed"
        );
        // A member's put of the same size is hashed (the counter counts).
        member()
            .put_to(&endpoint(&owner), Bytes::from(payload))
            .expect("a member's put");
        assert_eq!(server(&owner).payload_bytes_hashed(), 8 << 20);
    }

    /// A peer keeps at most `with_max_connections` connections: idle connections that never
    /// spoke ZeroMQ are dropped, oldest first, and a member connecting afterwards is served.
    #[test]
    fn connections_beyond_the_limit_are_dropped_strangers_first() {
        use std::io::Read;
        const LIMIT: usize = 4;
        let owner = ZmqOptions::default()
            .with_secret(SECRET)
            .with_max_connections(LIMIT)
            .build()
            .expect("peer");
        let at = endpoint(&owner);
        let address = at.strip_prefix("tcp://").expect("tcp endpoint");
        let mut idle: Vec<std::net::TcpStream> = (0..10)
            .map(|_| std::net::TcpStream::connect(address).expect("connect"))
            .collect();
        // The first six are shut down by the peer (read: end of stream after its greeting's
        // first bytes, or a reset); the last four stay open.
        for (i, stream) in idle.iter_mut().take(6).enumerate() {
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let mut buffer = [0u8; 64];
            let closed = loop {
                match stream.read(&mut buffer) {
                    Ok(0) => break true,
                    Ok(_) => continue,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        break false
                    }
                    Err(_) => break true,
                }
            };
            assert!(closed, "idle connection {i} (of the six oldest) was kept");
        }
        let key = owner.put(Bytes::from_static(b"served")).expect("put");
        // A member's connection is the newest: the oldest idle one makes room for it.
        assert_eq!(
            member().get(&key).expect("a member's get"),
            Some(Bytes::from_static(b"served"))
        );
        let (_, dropped, _) = server(&owner).connection_counts();
        assert!(dropped >= 7, "{dropped} connections dropped");
        drop(idle);
    }

    /// Strangers flood a peer with 256 MiB puts with junk proofs, on connections that show no
    /// valid connection token (another secret's, or none): their handshakes are refused, so
    /// nothing of theirs is read, and a member's 1 KiB get is served meanwhile.
    #[test]
    fn a_flood_of_strangers_large_puts_does_not_stop_a_members_get() {
        const FLOODERS: usize = 2;
        let owner = owner();
        let at = endpoint(&owner);
        let key = owner.put(Bytes::from(vec![3u8; 1024])).expect("put");
        let incarnation = server(&owner).incarnation();
        let flooding = Arc::new(AtomicBool::new(true));
        let flooders: Vec<_> = (0..FLOODERS)
            .map(|i| {
                let (at, flooding) = (at.clone(), Arc::clone(&flooding));
                std::thread::spawn(move || {
                    let payload = vec![0x5au8; 256 << 20];
                    let wrong = super::super::auth::Secret::new(b"a wrong guess of the secret");
                    let mut sent = 0u64;
                    while flooding.load(Ordering::Acquire) {
                        let stranger = context().socket(zmq::DEALER).expect("socket");
                        stranger.set_linger(0).expect("linger");
                        if i % 2 == 0 {
                            super::super::tests::with_token(&stranger, &wrong);
                        }
                        stranger.connect(&at).expect("connect");
                        let mut header = Header::request(Op::Put, sent, u128::from(sent));
                        header.size = payload.len() as u64;
                        header.incarnation = incarnation;
                        header.proof = [0xee; 32];
                        let _ = stranger.send_multipart(
                            [header.encode().to_vec(), payload.clone()],
                            zmq::DONTWAIT,
                        );
                        let _ = stranger.poll(zmq::POLLIN, 100);
                        sent += 1;
                    }
                    sent
                })
            })
            .collect();
        let member = member();
        // At least 20 gets, and until the flood has been refused at least once.
        let mut gets = 0;
        while gets < 20 || (server(&owner).connection_counts().2 == 0 && gets < 1_000_000) {
            assert_eq!(
                member.get(&key).expect("a member's get during the flood"),
                Some(Bytes::from(vec![3u8; 1024]))
            );
            gets += 1;
        }
        flooding.store(false, Ordering::Release);
        for flooder in flooders {
            flooder.join().expect("flooder");
        }
        let (_, _, refused) = server(&owner).connection_counts();
        assert!(refused > 0, "no stranger's handshake was refused");
        assert_eq!(
            server(&owner).payload_bytes_hashed(),
            0,
            "a stranger's payload was read"
        );
        assert_eq!(owner.peer_stats(&at).expect("stats").rejected_requests, 0);
    }

    /// One member sends 1.1 million signed evicts (pipelined, in its own session) while another
    /// client puts and evicts: every write of the other client succeeds meanwhile. (With the
    /// old nonce cache, the flood filled it and every write of every client was refused.)
    #[test]
    fn a_member_flooding_a_million_signed_evicts_does_not_stop_other_clients_writes() {
        const FLOOD: usize = 1_100_000;
        const BATCH: usize = 10_000;
        let owner = owner();
        let at = endpoint(&owner);
        let incarnation = server(&owner).incarnation();
        let flooding = Arc::new(AtomicBool::new(true));
        let flooder = {
            let (at, flooding) = (at.clone(), Arc::clone(&flooding));
            std::thread::spawn(move || {
                let member = member();
                let batch: Vec<Request> = (0..BATCH as u128)
                    .map(|id| Request::new(Op::Evict, id).for_incarnation(Some(incarnation)))
                    .collect();
                let mut sent = 0;
                while sent < FLOOD {
                    exchange(&at, &member.inner.options, &batch).expect("the flood's evicts");
                    sent += BATCH;
                }
                flooding.store(false, Ordering::Release);
                sent
            })
        };
        let other = member();
        let mut writes = 0u64;
        while flooding.load(Ordering::Acquire) {
            let key = other
                .put_to(&at, Bytes::from(vec![7u8; 1000]))
                .expect("another client's put during the flood");
            other
                .evict(&key)
                .expect("another client's evict during the flood");
            writes += 1;
        }
        assert_eq!(flooder.join().expect("flooder"), FLOOD);
        assert!(writes > 0, "no write happened during the flood");
        assert_eq!(owner.object_count(), Some(0));
        // The peer answered every request of the flood (none was refused).
        let stats = owner.peer_stats(&at).expect("stats");
        assert_eq!(stats.rejected_requests, 0);
        assert!(stats.requests >= FLOOD as u64 + 2 * writes);
    }
}
