//! Hostile clients against a real `proxy-peer` over TCP: each fault a client could exploit,
//! and the behaviour that replaced it.

use std::process::{Child, Command};
use std::time::Duration;

use bytes::Bytes;
use proxy_core::{Connector, Error, ZmqConnector, ZmqOptions};

mod common;
use common::{start_peer, PEER};

/// A `proxy-peer` child process, killed when dropped.
struct Peer {
    child: Child,
    endpoint: String,
}

impl Peer {
    fn start(args: &[&str]) -> Peer {
        let (child, endpoint) = start_peer(args);
        Peer { child, endpoint }
    }

    /// Panics if the peer process has exited.
    fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().expect("wait") {
            panic!("the peer process died: {status}");
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> ZmqConnector {
    ZmqConnector::client(ZmqOptions::default().with_timeout(Duration::from_secs(3)))
        .expect("client")
}

/// An ordinary client stores and reads back an object: the peer serves.
fn assert_serves(peer: &mut Peer) {
    let client = client();
    let data = Bytes::from(vec![42u8; 10_000]);
    let key = client
        .put_to(&peer.endpoint, data.clone())
        .expect("put_to after the attack");
    assert_eq!(client.get(&key).expect("get"), Some(data));
    peer.assert_alive();
}

/// A raw DEALER that claims `routing_id` and completes the ZMTP handshake.
fn claim(context: &zmq::Context, endpoint: &str, routing_id: &[u8]) -> zmq::Socket {
    let socket = context.socket(zmq::DEALER).expect("socket");
    socket.set_linger(0).expect("linger");
    socket.set_identity(routing_id).expect("routing id");
    socket.connect(endpoint).expect("connect");
    // Any message makes sure the handshake has finished before the next client comes.
    socket.send(&b"x"[..], 0).expect("send");
    socket
}

/// libzmq hands out automatic routing ids `00` + a 4-byte counter (first value from an
/// unseeded `rand()`: `6b 8b 45 67`); a client claiming that id before an ordinary client
/// connects used to make the peer abort (`Assertion failed: ok (socket_base.cpp:2128)`).
#[test]
fn claiming_the_next_automatic_routing_id_does_not_crash_the_peer() {
    let mut peer = Peer::start(&[]);
    let context = zmq::Context::new();
    let _claimed = claim(&context, &peer.endpoint, &[0x00, 0x6b, 0x8b, 0x45, 0x67]);
    std::thread::sleep(Duration::from_millis(100));
    assert_serves(&mut peer);
    assert_serves(&mut peer);
}

/// Blind: after 50 ordinary clients, 256 claimed ids around the counter's likely values.
#[test]
fn a_spray_of_claimed_routing_ids_does_not_crash_the_peer() {
    let mut peer = Peer::start(&[]);
    let context = zmq::Context::new();
    let mut plain = Vec::new();
    for _ in 0..50 {
        let socket = context.socket(zmq::DEALER).expect("socket");
        socket.set_linger(0).expect("linger");
        socket.connect(&peer.endpoint).expect("connect");
        socket.send(&b"x"[..], 0).expect("send");
        plain.push(socket);
    }
    let start: u32 = 0x6b8b_4567;
    let claimed: Vec<zmq::Socket> = (0..256u32)
        .map(|i| {
            let mut id = vec![0u8];
            id.extend_from_slice(&start.wrapping_add(i).to_be_bytes());
            claim(&context, &peer.endpoint, &id)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..20 {
        assert_serves(&mut peer);
    }
    drop(claimed);
    drop(plain);
    assert_serves(&mut peer);
}

/// A secret file in a temporary directory (kept alive by the returned guard).
fn secret_file(secret: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("secret");
    std::fs::write(&path, format!("{secret}\n")).expect("write the secret");
    let path = path.to_str().expect("utf-8 path").to_string();
    (dir, path)
}

fn client_with(options: ZmqOptions) -> ZmqConnector {
    ZmqConnector::client(options.with_timeout(Duration::from_secs(3))).expect("client")
}

/// A peer with a secret refuses clients without it (or with another), with an error that
/// says so; nothing is stored or read; clients with the secret are served.
#[test]
fn a_peer_with_a_secret_refuses_requests_without_proof() {
    let (_dir, path) = secret_file("correct horse battery staple");
    let mut peer = Peer::start(&["--secret-file", &path]);
    let member = client_with(ZmqOptions::default().with_secret("correct horse battery staple"));
    let key = member
        .put_to(&peer.endpoint, Bytes::from_static(b"members only"))
        .expect("put with the secret");
    assert_eq!(
        member.get(&key).expect("get with the secret"),
        Some(Bytes::from_static(b"members only"))
    );

    for (who, stranger) in [
        ("no secret", client()),
        (
            "another secret",
            client_with(ZmqOptions::default().with_secret("guess")),
        ),
    ] {
        for result in [
            stranger.get(&key).map(|_| ()),
            stranger.exists(&key).map(|_| ()),
            stranger.evict(&key),
            stranger
                .put_to(&peer.endpoint, Bytes::from_static(b"intruder"))
                .map(|_| ()),
            stranger.peer_stats(&peer.endpoint).map(|_| ()),
        ] {
            match result {
                Err(Error::Unauthenticated {
                    peer: p, message, ..
                }) => {
                    assert_eq!(p, peer.endpoint, "{who}");
                    assert!(!message.contains("correct horse"), "{message}");
                }
                other => panic!("{who}: {other:?}"),
            }
        }
    }
    // Nothing was evicted; the refusals were counted (5 requests from each stranger), and
    // members read the counters.
    assert_eq!(
        member.get(&key).expect("get"),
        Some(Bytes::from_static(b"members only"))
    );
    let stats = member
        .peer_stats(&peer.endpoint)
        .expect("stats with the secret");
    assert_eq!((stats.objects, stats.rejected_requests), (1, 10));
    peer.assert_alive();
}

/// Frames a man in the middle saw, by request.
fn relay(listen: zmq::Socket, upstream: zmq::Socket, requests: usize) -> Vec<Vec<Vec<u8>>> {
    let mut seen = Vec::new();
    for _ in 0..requests {
        let mut frames = listen.recv_multipart(0).expect("a request to relay");
        let identity = frames.remove(0);
        upstream.send_multipart(&frames, 0).expect("forward");
        let mut reply = upstream.recv_multipart(0).expect("a reply to relay");
        reply.insert(0, identity);
        listen.send_multipart(reply, 0).expect("relay back");
        seen.push(frames);
    }
    seen
}

/// An eavesdropper who recorded a member's put and evict cannot play them again.
#[test]
fn replayed_requests_are_refused() {
    let mut peer = Peer::start(&["--secret-file", &secret_file("s3cret").1]);
    let context = zmq::Context::new();
    let listen = context.socket(zmq::ROUTER).expect("socket");
    listen.set_linger(0).expect("linger");
    listen.set_rcvtimeo(5000).expect("rcvtimeo");
    listen.bind("tcp://127.0.0.1:*").expect("bind");
    let middle = listen
        .get_last_endpoint()
        .expect("endpoint")
        .expect("utf-8");
    let upstream = context.socket(zmq::DEALER).expect("socket");
    upstream.set_linger(0).expect("linger");
    upstream.set_rcvtimeo(5000).expect("rcvtimeo");
    upstream.connect(&peer.endpoint).expect("connect");
    // limits, put, evict
    let recorder = std::thread::spawn(move || relay(listen, upstream, 3));

    let member = client_with(ZmqOptions::default().with_secret("s3cret"));
    let key = member
        .put_to(&middle, Bytes::from_static(b"recorded"))
        .expect("put through the middle");
    member.evict(&key).expect("evict through the middle");
    let seen = recorder.join().expect("relay");
    assert_eq!(seen.len(), 3);

    let replayer = context.socket(zmq::DEALER).expect("socket");
    replayer.set_linger(0).expect("linger");
    replayer.set_rcvtimeo(3000).expect("rcvtimeo");
    replayer.connect(&peer.endpoint).expect("connect");
    for recorded in &seen[1..] {
        replayer.send_multipart(recorded, 0).expect("replay");
        let reply = replayer.recv_multipart(0).expect("a reply to the replay");
        assert_eq!(
            reply[0][5], 5,
            "a replay was not refused as unauthenticated"
        );
        assert!(
            String::from_utf8_lossy(&reply[1]).contains("replayed"),
            "{:?}",
            String::from_utf8_lossy(&reply[1])
        );
    }
    peer.assert_alive();
}

/// Binding a non-loopback interface without a secret is refused, unless `--insecure`.
#[test]
fn exposing_a_peer_without_a_secret_is_refused() {
    let output = Command::new(PEER)
        .args(["--bind", "0.0.0.0", "--address", "127.0.0.1"])
        .env_remove("PROXYSTORE_SECRET")
        .env_remove("PROXYSTORE_SECRET_FILE")
        .env_remove("PROXYSTORE_INSECURE")
        .output()
        .expect("run proxy-peer");
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "it served anyway");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("without a secret") && said.contains("--insecure"),
        "{said}"
    );
}

/// A peer holds at most `--max-bytes` for remote puts; a put beyond gets a quota error
/// naming the peer, the limit and the size, and nothing is stored.
#[test]
fn remote_puts_beyond_the_quota_are_refused() {
    let mut peer = Peer::start(&["--max-bytes", "1000000"]);
    let client = client();
    let first = client
        .put_to(&peer.endpoint, Bytes::from(vec![1u8; 600_000]))
        .expect("first put fits");
    for _ in 0..3 {
        match client.put_to(&peer.endpoint, Bytes::from(vec![2u8; 600_000])) {
            Err(Error::QuotaExceeded {
                peer: p,
                size,
                limit,
                ..
            }) => {
                assert_eq!(p, peer.endpoint);
                assert_eq!((size, limit), (600_000, 1_000_000));
            }
            other => panic!("over quota: {other:?}"),
        }
    }
    // Evicting frees the quota.
    client.evict(&first).expect("evict");
    let second = client
        .put_to(&peer.endpoint, Bytes::from(vec![3u8; 600_000]))
        .expect("fits again after the evict");
    assert_eq!(
        client.get(&second).expect("get").map(|b| b.len()),
        Some(600_000)
    );
    peer.assert_alive();
}

/// A 96-byte version 3 request header.
fn request_header(op: u8, request_id: u64, object_id: u128, size: u64) -> Vec<u8> {
    let mut header = vec![0u8; 96];
    header[..4].copy_from_slice(b"PXZ\x03");
    header[4] = op;
    header[8..16].copy_from_slice(&request_id.to_le_bytes());
    header[16..32].copy_from_slice(&object_id.to_le_bytes());
    header[32..40].copy_from_slice(&size.to_le_bytes());
    header
}

/// xorshift64*: a fixed, reproducible stream of test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// One random or mutated request: 1 to 3 frames.
fn fuzzed_message(rng: &mut Rng, request_id: u64) -> Vec<Vec<u8>> {
    match rng.below(4) {
        // Garbage frames.
        0 => (0..1 + rng.below(3))
            .map(|_| {
                let len = rng.below(200) as usize;
                rng.bytes(len)
            })
            .collect(),
        // A valid request with a few bytes of its header changed.
        1 | 2 => {
            let op = 1 + rng.below(6) as u8;
            let len = rng.below(2000) as usize;
            let payload = rng.bytes(len);
            let mut header =
                request_header(op, request_id, u128::from(rng.next()), payload.len() as u64);
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(96) as usize;
                header[at] = rng.next() as u8;
            }
            let mut frames = vec![header];
            if op == 4 || rng.below(4) == 0 {
                frames.push(payload);
            }
            frames
        }
        // A well-formed request, truncated or extended, sometimes with extra frames.
        _ => {
            let mut header = request_header(1 + rng.below(6) as u8, request_id, 7, 0);
            let len = rng.below(120) as usize;
            header.resize(len, rng.next() as u8);
            let mut frames = vec![header];
            for _ in 0..rng.below(3) {
                let len = rng.below(64) as usize;
                frames.push(rng.bytes(len));
            }
            frames
        }
    }
}

fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// Tens of thousands of random and mutated messages against a live peer: each gets a reply,
/// the peer keeps serving a fresh put and get, and its memory stays within a bound.
#[test]
fn a_fuzzed_peer_answers_everything_keeps_serving_and_stays_small() {
    const MESSAGES: u64 = 40_000;
    const IN_FLIGHT: u64 = 200;
    let mut peer = Peer::start(&["--max-message-size", "65536", "--max-bytes", "4000000"]);
    assert_serves(&mut peer);
    let before = resident_bytes(peer.child.id());

    let context = zmq::Context::new();
    let socket = context.socket(zmq::DEALER).expect("socket");
    socket.set_linger(0).expect("linger");
    socket.set_rcvtimeo(5000).expect("rcvtimeo");
    socket.connect(&peer.endpoint).expect("connect");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut refused = 0u64;
    let mut sent = 0u64;
    while sent < MESSAGES {
        let batch = IN_FLIGHT.min(MESSAGES - sent);
        for i in 0..batch {
            let frames = fuzzed_message(&mut rng, sent + i);
            socket.send_multipart(frames, 0).expect("send");
        }
        for _ in 0..batch {
            let reply = socket
                .recv_multipart(0)
                .unwrap_or_else(|e| panic!("no reply after {sent} messages: {e}"));
            assert_eq!(&reply[0][..4], b"PXZ\x03", "not a reply");
            if reply[0][5] >= 2 {
                refused += 1;
                assert_eq!(reply.len(), 2, "a refusal without a reason");
            }
        }
        sent += batch;
    }
    assert!(
        refused > MESSAGES / 2,
        "only {refused} of {MESSAGES} refused"
    );
    assert_serves(&mut peer);
    let after = resident_bytes(peer.child.id());
    // Remote puts are held to 4 MB; allow the allocator and libzmq that much again.
    assert!(
        after < before + (16 << 20),
        "resident memory grew from {before} to {after} bytes"
    );
}

/// A client that sends frame after frame of one message without ever finishing it: each
/// frame is under the limit, and libzmq used to keep them all (the peer grew by what was
/// sent). Now the whole message is bounded by the maximum message size.
#[test]
fn an_unfinished_message_cannot_grow_the_peer() {
    let mut peer = Peer::start(&["--max-message-size", "65536"]);
    assert_serves(&mut peer);
    let before = resident_bytes(peer.child.id());
    let context = zmq::Context::new();
    let socket = context.socket(zmq::DEALER).expect("socket");
    socket.set_linger(0).expect("linger");
    socket.set_sndtimeo(2000).expect("sndtimeo");
    socket.connect(&peer.endpoint).expect("connect");
    let frame = vec![0x5au8; 60_000];
    // 64 MB in one message that never ends.
    for _ in 0..1000 {
        if socket.send(&frame[..], zmq::SNDMORE).is_err() {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = resident_bytes(peer.child.id());
    assert!(
        after < before + (16 << 20),
        "an unfinished message grew the peer from {before} to {after} bytes"
    );
    assert_serves(&mut peer);
}

/// A timeout measures silence, not the transfer: 256 MiB puts and gets succeed with a
/// 100 ms timeout from a live peer, and a stopped peer still times out within the timeout
/// and a small margin.
#[test]
fn timeouts_measure_silence_not_the_transfer() {
    const TIMEOUT: Duration = Duration::from_millis(100);
    let mut peer = Peer::start(&[]);
    let client = ZmqConnector::client(ZmqOptions::default().with_timeout(TIMEOUT)).expect("client");
    let big = Bytes::from(vec![7u8; 256 << 20]);
    let key = client
        .put_to(&peer.endpoint, big.clone())
        .expect("a 256 MiB put with a 100 ms timeout");
    let got = client
        .get(&key)
        .expect("a 256 MiB get with a 100 ms timeout")
        .expect("stored");
    assert!(got == big, "the object changed on the way");
    drop(got);

    let pid = i32::try_from(peer.child.id()).expect("pid");
    // SAFETY: stops and resumes our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    for attempt in ["get", "put"] {
        let started = std::time::Instant::now();
        let result = match attempt {
            "get" => client.get(&key).map(|_| ()),
            _ => client.put_to(&peer.endpoint, big.clone()).map(|_| ()),
        };
        let waited = started.elapsed();
        assert!(
            matches!(result, Err(Error::Timeout { .. })),
            "{attempt} from a stopped peer gave {result:?}"
        );
        assert!(
            waited < TIMEOUT + Duration::from_millis(400),
            "{attempt} from a stopped peer took {waited:?}"
        );
    }
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    assert_serves(&mut peer);
}
