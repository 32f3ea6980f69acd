//! What a program that depends on proxy-core gets: `tests/downstream/` is such a program (a
//! path dependency on proxy-core, no `[patch]`, its own workspace). This test builds it with
//! the same `cargo` as a user would, runs the peer it serves, and attacks that peer the two
//! ways the patched libzmq defends against: a claimed routing id (libzmq 4.3.4 aborted the
//! process) and a multipart message that never ends (libzmq 4.3.4 kept every frame).
//!
//! Build cost: proxy-core, its dependencies and libzmq compiled once into
//! `target/downstream` (unoptimised, no debug info; about a minute on 2 cores), then
//! incrementally.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use proxy_core::zmq;
use proxy_core::{Connector, ZmqConnector, ZmqOptions};

/// How long a reply from a live peer may take: far above what it needs on an idle machine,
/// so that a busy CI machine does not fail the test. Only a dead or wedged peer waits this.
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// Builds `tests/downstream` once per test process; the path of its binary, or why not.
fn downstream_binary() -> &'static Result<PathBuf, String> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINARY.get_or_init(build_downstream)
}

fn build_downstream() -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let krate = root.join("tests").join("downstream");
    // `target/tmp` is this workspace's; its parent is the target directory.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let target = tmp.parent().unwrap_or(tmp).join("downstream");
    // The workspace's lock as the starting point: the same versions as this build, all
    // already downloaded, so no network and no newer dependency that needs a newer Rust.
    // Cargo drops what the crate does not use.
    std::fs::copy(root.join("Cargo.lock"), krate.join("Cargo.lock"))
        .map_err(|e| format!("copying Cargo.lock into {}: {e}", krate.display()))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .arg("build")
        .arg("--manifest-path")
        .arg(krate.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .map_err(|e| format!("running {cargo:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "building {} failed ({}):\n{}",
            krate.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let binary = target
        .join("debug")
        .join(format!("downstream-peer{}", std::env::consts::EXE_SUFFIX));
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!("the build made no {}", binary.display()))
    }
}

/// The downstream program's peer, stopped (standard input closed) when dropped.
struct Downstream {
    child: Child,
    stdin: Option<ChildStdin>,
    endpoint: String,
}

impl Downstream {
    fn start(args: &[&str]) -> Downstream {
        let binary = match downstream_binary() {
            Ok(binary) => binary,
            Err(why) => panic!("{why}"),
        };
        let mut child = Command::new(binary)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the downstream peer");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the endpoint");
        let endpoint = line.trim().to_string();
        assert!(endpoint.starts_with("tcp://127.0.0.1:"), "printed {line:?}");
        Downstream {
            child,
            stdin,
            endpoint,
        }
    }

    /// Panics if the peer process has exited.
    fn assert_alive(&mut self, after: &str) {
        if let Some(status) = self.child.try_wait().expect("wait") {
            panic!("the downstream peer died {after}: {status}");
        }
    }

    /// An ordinary client stores and reads back an object: the peer serves.
    fn assert_serves(&mut self, after: &str) {
        let client = ZmqConnector::client(ZmqOptions::default().with_timeout(REPLY_TIMEOUT))
            .expect("client");
        let data = Bytes::from(vec![42u8; 10_000]);
        let stored = client
            .put_to(&self.endpoint, data.clone())
            .and_then(|key| client.get(&key));
        self.assert_alive(after);
        match stored {
            Ok(got) => assert_eq!(got, Some(data), "{after}"),
            Err(e) => panic!("the downstream peer does not serve {after}: {e}"),
        }
    }

    /// Stops the peer the way its program says (standard input closes); it exits cleanly.
    fn stop(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "the downstream peer ended with {status}");
    }
}

impl Drop for Downstream {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A raw DEALER that claims `routing_id` and has had a reply from the peer at `endpoint`
/// (to a malformed request): its handshake is over and the peer knows it by that id.
fn claim(context: &zmq::Context, endpoint: &str, routing_id: &[u8]) -> zmq::Socket {
    let socket = context.socket(zmq::DEALER).expect("socket");
    socket.set_linger(0).expect("linger");
    socket
        .set_rcvtimeo(REPLY_TIMEOUT.as_millis() as i32)
        .expect("rcvtimeo");
    socket.set_identity(routing_id).expect("routing id");
    socket.connect(endpoint).expect("connect");
    socket.send(&b"x"[..], 0).expect("send");
    let reply = socket
        .recv_multipart(0)
        .unwrap_or_else(|e| panic!("no reply from {endpoint}: {e}"));
    assert_eq!(&reply[0][..4], b"PXZ\x04", "not a reply: {reply:?}");
    socket
}

/// libzmq gives a new connection the automatic routing id `00` + a 4-byte counter whose
/// first value comes from an unseeded `rand()` (`6b 8b 45 67`). A client that claims that
/// id, followed by an ordinary client, aborted an unpatched peer
/// (`Assertion failed: ok (socket_base.cpp:2128)`).
#[test]
fn a_dependent_program_survives_a_claimed_routing_id() {
    let mut peer = Downstream::start(&[]);
    let context = zmq::Context::new();
    let claimed = claim(&context, &peer.endpoint, &[0x00, 0x6b, 0x8b, 0x45, 0x67]);
    peer.assert_serves("after a client claimed the next automatic routing id");
    peer.assert_serves("after a second ordinary client");
    drop(claimed);
    peer.stop();
}

/// Speaks ZMTP 3.0 (NULL mechanism, as a DEALER) over `stream` up to the end of the
/// handshake: greetings and READY commands exchanged.
fn zmtp_handshake(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut greeting = [0u8; 64];
    greeting[0] = 0xff;
    greeting[9] = 0x7f;
    greeting[10] = 3; // version 3.0
    greeting[12..16].copy_from_slice(b"NULL");
    stream.write_all(&greeting)?;
    stream.read_exact(&mut greeting)?;
    let mut ready = vec![0x04, 0, 5];
    ready.extend_from_slice(b"READY");
    ready.push(11);
    ready.extend_from_slice(b"Socket-Type");
    ready.extend_from_slice(&6u32.to_be_bytes());
    ready.extend_from_slice(b"DEALER");
    ready[1] = (ready.len() - 2) as u8;
    stream.write_all(&ready)?;
    // The peer's READY: a short command frame (flags, size, body).
    let mut head = [0u8; 2];
    stream.read_exact(&mut head)?;
    if head[0] != 0x04 {
        return Err(std::io::Error::other(format!(
            "not a READY command: {head:?}"
        )));
    }
    stream.read_exact(&mut vec![0u8; usize::from(head[1])])
}

/// A message whose frames never end, each under the peer's maximum message size, the whole
/// far over it (written by hand over TCP: libzmq's own sockets keep an unfinished message
/// in the sender until its last frame). A patched libzmq bounds the whole message and
/// drops the connection; an unpatched one keeps every frame, without limit.
#[test]
fn a_dependent_program_bounds_an_unfinished_message() {
    const FRAME: usize = 60_000;
    const FRAMES: usize = 1000;
    let mut peer = Downstream::start(&["65536"]);
    let address = peer.endpoint.trim_start_matches("tcp://").to_string();
    let mut stream = TcpStream::connect(&address).expect("connect");
    stream
        .set_read_timeout(Some(REPLY_TIMEOUT))
        .expect("timeout");
    stream
        .set_write_timeout(Some(REPLY_TIMEOUT))
        .expect("timeout");
    zmtp_handshake(&mut stream).expect("ZMTP handshake");

    // Long frames with MORE set: flags, 8-byte size, body.
    let mut frame = vec![0x03];
    frame.extend_from_slice(&(FRAME as u64).to_be_bytes());
    frame.resize(frame.len() + FRAME, 0x5a);
    let mut dropped = None;
    for sent in 0..FRAMES {
        match stream.write_all(&frame) {
            Ok(()) => {}
            Err(e) => {
                dropped = Some((sent, e));
                break;
            }
        }
    }
    match dropped {
        Some((_, e))
            if matches!(
                e.kind(),
                ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted
            ) => {}
        Some((sent, e)) => panic!("after {sent} frames the peer neither read nor closed: {e}"),
        None => panic!(
            "the downstream peer read {} MB of one unfinished message with a 64 KiB limit \
             (its libzmq does not bound multipart messages)",
            FRAME * FRAMES / 1_000_000
        ),
    }
    peer.assert_serves("after an unfinished message");
    peer.stop();
}
