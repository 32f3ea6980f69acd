//! A cool-down per peer after a timeout, so that a dead or silent peer costs its callers one
//! timeout, not one per request.
//!
//! A dataflow that resolves 256 records owned by a host that went away would otherwise wait
//! one full timeout for each record (minutes at the default 5 s), with the worker blocked.
//! After a request to a peer times out, every request to that peer made in the next
//! `cool-down` fails at once with the same kind of error ([`Error::Timeout`], naming the peer
//! and saying that the request was not sent); the first request after the cool-down is sent
//! as usual, and its answer (any answer) ends the peer's cool-down. The table is process
//! wide (every connector and thread of the process shares what it learnt about a peer) and
//! bounded: a key can name any endpoint, so at most [`MAX_PEERS`] silent peers are
//! remembered, the oldest forgotten first.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Silent peers remembered at most (each entry is an endpoint of at most 256 bytes).
pub(crate) const MAX_PEERS: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Silence {
    /// When the request that timed out gave up.
    since: Instant,
    /// Requests before this instant are not sent.
    until: Instant,
    /// The timeout that request ran out of (reported in the errors of the skipped ones).
    timeout: Duration,
}

fn silent_peers() -> MutexGuard<'static, HashMap<String, Silence>> {
    static SILENT: OnceLock<Mutex<HashMap<String, Silence>>> = OnceLock::new();
    SILENT
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Fails at once, with a timeout error naming `peer` and `operation`, when `peer` timed out
/// less than its cool-down ago; never when the caller's own `cooldown` is zero (it opted
/// out).
pub(crate) fn check(
    peer: &str,
    cooldown: Duration,
    operation: impl FnOnce() -> String,
) -> Result<()> {
    if cooldown.is_zero() {
        return Ok(());
    }
    let now = Instant::now();
    let silence = {
        let mut peers = silent_peers();
        match peers.get(peer).copied() {
            Some(silence) if now < silence.until => silence,
            Some(_) => {
                peers.remove(peer);
                return Ok(());
            }
            None => return Ok(()),
        }
    };
    Err(Error::Timeout {
        peer: peer.to_string(),
        operation: format!(
            "{} (not sent: this peer timed out {} ago; it is tried again after a cool-down, \
             in {})",
            operation(),
            humantime::format_duration(round_ms(now.saturating_duration_since(silence.since))),
            humantime::format_duration(round_ms(silence.until.saturating_duration_since(now))),
        ),
        timeout: silence.timeout,
    })
}

/// Learns from the outcome of a request to `peer`: a timeout starts a cool-down of
/// `cooldown` (none when it is zero); any other outcome (an answer, even an error reply)
/// shows that the peer is alive and ends its cool-down.
pub(crate) fn observe<T>(peer: &str, cooldown: Duration, outcome: &Result<T>) {
    match outcome {
        Err(Error::Timeout { timeout, .. }) if !cooldown.is_zero() => {
            let now = Instant::now();
            let mut peers = silent_peers();
            if peers.len() >= MAX_PEERS && !peers.contains_key(peer) {
                forget_oldest(&mut peers, now);
            }
            peers.insert(
                peer.to_string(),
                Silence {
                    since: now,
                    until: now + cooldown,
                    timeout: *timeout,
                },
            );
        }
        Err(Error::Timeout { .. }) => {}
        _ => {
            let mut peers = silent_peers();
            if !peers.is_empty() {
                peers.remove(peer);
            }
        }
    }
}

/// Makes room in a full table: drops every expired entry, else the oldest one.
fn forget_oldest(peers: &mut HashMap<String, Silence>, now: Instant) {
    peers.retain(|_, silence| now < silence.until);
    if peers.len() >= MAX_PEERS {
        if let Some(oldest) = peers
            .iter()
            .min_by_key(|(_, silence)| silence.since)
            .map(|(peer, _)| peer.clone())
        {
            peers.remove(&oldest);
        }
    }
}

fn round_ms(duration: Duration) -> Duration {
    Duration::from_millis(duration.as_millis().try_into().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn timeout(peer: &str) -> Result<()> {
        Err(Error::Timeout {
            peer: peer.to_string(),
            operation: "get of object 1".to_string(),
            timeout: Duration::from_millis(300),
        })
    }

    #[test]
    fn a_timed_out_peer_is_skipped_until_its_cool_down_ends() {
        let peer = "tcp://192.0.2.1:7001";
        assert!(check(peer, HOUR, || "get".into()).is_ok());
        observe(peer, Duration::from_secs(3600), &timeout(peer));
        let err = check(peer, HOUR, || "get of object 2".into()).expect_err("in its cool-down");
        assert!(err.is_timeout(), "{err}");
        let message = err.to_string();
        assert!(message.contains(peer), "{message}");
        assert!(message.contains("get of object 2"), "{message}");
        assert!(message.contains("not sent"), "{message}");
        assert!(message.contains("within 300ms"), "{message}");
        // Another peer is not affected.
        assert!(check("tcp://192.0.2.1:7002", HOUR, || "get".into()).is_ok());
        // Any answer ends the cool-down.
        observe(peer, Duration::from_secs(3600), &Ok(()));
        assert!(check(peer, HOUR, || "get".into()).is_ok());
    }

    #[test]
    fn the_cool_down_expires_and_zero_disables_it() {
        let peer = "tcp://192.0.2.1:7003";
        observe(peer, Duration::from_millis(1), &timeout(peer));
        let deadline = Instant::now() + Duration::from_secs(60);
        while check(peer, HOUR, || "get".into()).is_err() {
            assert!(Instant::now() < deadline, "the cool-down never ended");
            std::thread::sleep(Duration::from_millis(1));
        }
        let peer = "tcp://192.0.2.1:7004";
        observe(peer, Duration::ZERO, &timeout(peer));
        assert!(check(peer, HOUR, || "get".into()).is_ok());
        // A caller that opted out sends even to a peer others saw time out.
        let peer = "tcp://192.0.2.1:7006";
        observe(peer, HOUR, &timeout(peer));
        assert!(check(peer, HOUR, || "get".into()).is_err());
        assert!(check(peer, Duration::ZERO, || "get".into()).is_ok());
    }

    #[test]
    fn other_errors_do_not_start_a_cool_down() {
        let peer = "tcp://192.0.2.1:7005";
        let refused: Result<()> = Err(Error::Peer {
            peer: peer.to_string(),
            message: "request rejected".to_string(),
        });
        observe(peer, Duration::from_secs(3600), &refused);
        assert!(check(peer, HOUR, || "get".into()).is_ok());
    }

    #[test]
    fn the_table_of_silent_peers_is_bounded() {
        let mut peers = HashMap::new();
        let now = Instant::now();
        for i in 0..MAX_PEERS {
            peers.insert(
                format!("tcp://192.0.2.2:{i}"),
                Silence {
                    since: now + Duration::from_millis(i as u64),
                    until: now + Duration::from_secs(3600),
                    timeout: Duration::from_secs(1),
                },
            );
        }
        forget_oldest(&mut peers, now);
        assert_eq!(peers.len(), MAX_PEERS - 1);
        assert!(
            !peers.contains_key("tcp://192.0.2.2:0"),
            "the oldest goes first"
        );
    }
}
