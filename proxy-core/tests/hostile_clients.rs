//! Hostile clients against a real `proxy-peer` over TCP: each fault a client could exploit,
//! and the behaviour that replaced it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use proxy_core::{Connector, ZmqConnector, ZmqOptions};

const PEER: &str = env!("CARGO_BIN_EXE_proxy-peer");

/// A `proxy-peer` child process, killed when dropped.
struct Peer {
    child: Child,
    endpoint: String,
}

impl Peer {
    fn start(args: &[&str]) -> Peer {
        let mut child = Command::new(PEER)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start proxy-peer");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the endpoint");
        let endpoint = line.trim().to_string();
        assert!(endpoint.starts_with("tcp://"), "printed {line:?}");
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
    ZmqConnector::client(ZmqOptions::default().timeout(Duration::from_secs(3))).expect("client")
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
