//! A member's 1 KiB `GET` latency while strangers flood the peer with 256 MiB puts with
//! junk proofs (issue 19): the flooders hold no valid connection token (another secret's
//! password, or the NULL mechanism), so the peer refuses their handshakes and reads none of
//! their bytes; the member's gets should not notice.
//!
//! ```text
//! cargo run --release -p benchmarks --bin flood_latency [GETS] [FLOODERS]
//! ```
//!
//! Prints p50, p99 and the maximum of `GETS` (default 5,000) gets, first without a flood,
//! then with `FLOODERS` (default 4) flooding threads of three kinds, in turn. The first two
//! are ZeroMQ clients, without credentials (the `NULL` mechanism) and with another secret's
//! token: each opens a connection, queues a 256 MiB put with a junk proof, waits up to
//! 100 ms for an answer, and starts again (libzmq sends the put only once its handshake
//! succeeds). The third writes raw TCP: a ZMTP greeting naming `PLAIN`, then a `HELLO`
//! frame announcing 256 MiB, and junk bytes until the peer drops the connection, and starts
//! again.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proxy_core::{Connector, ZmqConnector, ZmqOptions};

const SECRET: &str = "the flood benchmark's cluster secret";

/// The latency percentiles of `samples` (sorted here): p50, p99, max.
fn summary(samples: &mut [Duration]) -> (Duration, Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99), samples[samples.len() - 1])
}

fn gets(member: &ZmqConnector, key: &proxy_core::Key, count: usize) -> Vec<Duration> {
    (0..count)
        .map(|_| {
            let start = Instant::now();
            let data = member.get(key).expect("get").expect("the object");
            assert_eq!(data.len(), 1024);
            start.elapsed()
        })
        .collect()
}

/// One raw TCP connection that greets as a `PLAIN` client, announces a 256 MiB `HELLO` and
/// writes junk until the peer drops it.
fn raw_flood(address: &str, junk: &[u8]) {
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return;
    };
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let mut greeting = [0u8; 64];
    greeting[0] = 0xff;
    greeting[9] = 0x7f;
    greeting[10] = 3;
    greeting[12..17].copy_from_slice(b"PLAIN");
    let mut hello = vec![0x06];
    hello.extend_from_slice(&(junk.len() as u64).to_be_bytes());
    hello.extend_from_slice(b"\x05HELLO");
    if stream.write_all(&greeting).is_err() || stream.write_all(&hello).is_err() {
        return;
    }
    for chunk in junk.chunks(1 << 20) {
        if stream.write_all(chunk).is_err() {
            return;
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().map_or(Ok(5_000), |a| a.parse())?;
    let flooders: usize = args.next().map_or(Ok(4), |a| a.parse())?;
    let owner = ZmqOptions::default().with_secret(SECRET).build()?;
    let endpoint = owner.endpoint().unwrap_or_default().to_string();
    let key = owner.put(Bytes::from(vec![7u8; 1024]))?;
    let member = ZmqConnector::client(ZmqOptions::default().with_secret(SECRET))?;
    gets(&member, &key, 200); // warm up

    let mut quiet = gets(&member, &key, count);
    let (p50, p99, max) = summary(&mut quiet);
    println!("no flood:            p50 {p50:?}  p99 {p99:?}  max {max:?}  ({count} gets)");

    let flooding = Arc::new(AtomicBool::new(true));
    let sent = Arc::new(AtomicU64::new(0));
    let context = zmq::Context::new();
    let threads: Vec<_> = (0..flooders)
        .map(|i| {
            let (flooding, sent, context, endpoint) = (
                Arc::clone(&flooding),
                Arc::clone(&sent),
                context.clone(),
                endpoint.clone(),
            );
            std::thread::spawn(move || {
                let payload = vec![0x5au8; 256 << 20];
                let mut header = vec![0u8; 144];
                header[..4].copy_from_slice(b"PXZ\x04");
                header[4] = 4; // PUT
                header[32..40].copy_from_slice(&(payload.len() as u64).to_le_bytes());
                header[112..144].fill(0xee); // a junk proof
                let address = endpoint.trim_start_matches("tcp://").to_string();
                while flooding.load(Ordering::Acquire) {
                    if i % 3 == 2 {
                        raw_flood(&address, &payload);
                        sent.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let socket = context.socket(zmq::DEALER).expect("socket");
                    socket.set_linger(0).expect("linger");
                    if i % 3 == 1 {
                        // Another secret's token: refused by the peer's ZAP handler.
                        socket
                            .set_plain_username(Some("proxystore-v1"))
                            .expect("user");
                        socket
                            .set_plain_password(Some(&"0".repeat(96)))
                            .expect("password");
                    }
                    socket.connect(&endpoint).expect("connect");
                    // Waits for the connection (at most 100 ms), not for the peer to read.
                    let _ = socket.set_sndtimeo(100);
                    let _ = socket.send_multipart([header.clone(), payload.clone()], 0);
                    let _ = socket.poll(zmq::POLLIN, 100);
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut flooded = gets(&member, &key, count);
    flooding.store(false, Ordering::Release);
    for thread in threads {
        let _ = thread.join();
    }
    let (p50, p99, max) = summary(&mut flooded);
    println!(
        "{flooders} flooders:          p50 {p50:?}  p99 {p99:?}  max {max:?}  ({count} gets; {} puts of 256 MiB attempted)",
        sent.load(Ordering::Relaxed)
    );
    let stats = owner.peer_stats(&endpoint)?;
    println!(
        "peer: {} requests answered, {} rejected",
        stats.requests, stats.rejected_requests
    );
    owner.close()?;
    Ok(())
}
