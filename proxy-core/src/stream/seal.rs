//! The envelope of event messages on a network channel: who sent them, in which order, and
//! (under the cluster secret) a proof that a member of the cluster did.
//!
//! Layout (68 bytes, before the message itself):
//!
//! ```text
//! offset size field
//!      0    1 version = 1
//!      1    1 flags: bit 0 = authenticated (the proof is a MAC); other bits 0
//!      2    2 reserved, 0
//!      4   16 publisher id: random, drawn when the publisher starts
//!     20    8 sequence: the publisher's count of messages to this topic (1, 2, ...), LE
//!     28    8 time: microseconds since the Unix epoch at sending, LE
//!     36   32 proof: BLAKE3-keyed(stream key, bytes 0..36 ‖ topic length (u32 LE) ‖ topic ‖
//!             message), or zeros when not authenticated
//! ```
//!
//! The stream key is `BLAKE3-derive_key(STREAM_CONTEXT, request key)`, where the request key
//! is the one the ZeroMQ peers derive from the cluster secret: its own context, so that no
//! event proof is a valid request or reply proof and the other way round. The topic is bound,
//! so an event cannot be moved to another topic.
//!
//! A subscriber keeps, per publisher id and topic, the last sequence number it accepted: a
//! message at or below it is refused (a replay or a duplicate); with `strict` order (PUB/SUB,
//! where every subscriber sees every message of its topics) a message past the next one says
//! how many were lost. A publisher id it does not know yet is accepted only with a time
//! within [`FIRST_EVENT_WINDOW`] of its own clock (when authenticated), so a stream recorded
//! earlier cannot be replayed to a new subscriber later.

use std::num::NonZeroUsize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lru::LruCache;

use crate::connectors::ZmqSecret;
use crate::error::{Error, Result};

/// Domain separation of the stream key's derivation.
pub(crate) const STREAM_CONTEXT: &str = "proxystore stream events 2026-12 proof v1";
/// The envelope's version.
const VERSION: u8 = 1;
/// The envelope's length.
pub(crate) const SEAL_LEN: usize = 68;
/// The bytes the proof covers before the topic and message.
const PROVEN_LEN: usize = 36;
const AUTHENTICATED: u8 = 1;
/// How far from the subscriber's clock the first message of a publisher may be.
pub(crate) const FIRST_EVENT_WINDOW: Duration = Duration::from_secs(300);
/// How many (publisher, topic) positions a subscriber remembers.
const POSITIONS: usize = 4096;

/// The key that proves events, derived from the cluster secret.
#[derive(Clone)]
pub(crate) struct StreamKey([u8; 32]);

impl std::fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamKey(<redacted>)")
    }
}

impl StreamKey {
    pub(crate) fn from_secret(secret: &ZmqSecret) -> StreamKey {
        StreamKey(secret.derive_key(STREAM_CONTEXT))
    }

    fn mac(&self, proven: &[u8], topic: &str, message: &[u8]) -> blake3::Hash {
        let mut hasher = blake3::Hasher::new_keyed(&self.0);
        hasher.update(proven);
        hasher.update(&(topic.len() as u32).to_le_bytes());
        hasher.update(topic.as_bytes());
        hasher.update(message);
        hasher.finalize()
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Seals a publisher's messages.
#[derive(Debug)]
pub(crate) struct Sealer {
    key: Option<StreamKey>,
    publisher: u128,
    sequences: std::collections::HashMap<String, u64>,
}

impl Sealer {
    pub(crate) fn new(key: Option<StreamKey>) -> Sealer {
        Sealer {
            key,
            publisher: crate::ids::new_id(),
            sequences: std::collections::HashMap::new(),
        }
    }

    /// The envelope of the next `message` to `topic`.
    pub(crate) fn seal(&mut self, topic: &str, message: &[u8]) -> [u8; SEAL_LEN] {
        let sequence = self.sequences.entry(topic.to_string()).or_insert(0);
        *sequence += 1;
        let mut seal = [0u8; SEAL_LEN];
        seal[0] = VERSION;
        seal[4..20].copy_from_slice(&self.publisher.to_le_bytes());
        seal[20..28].copy_from_slice(&sequence.to_le_bytes());
        seal[28..36].copy_from_slice(&now_micros().to_le_bytes());
        if let Some(key) = &self.key {
            seal[1] = AUTHENTICATED;
            let mac = key.mac(&seal[..PROVEN_LEN], topic, message);
            seal[PROVEN_LEN..].copy_from_slice(mac.as_bytes());
        }
        seal
    }
}

/// Checks the envelopes of the messages a subscriber receives.
#[derive(Debug)]
pub(crate) struct Opener {
    key: Option<StreamKey>,
    strict: bool,
    positions: LruCache<(u128, String), u64>,
}

impl Opener {
    /// `strict`: every message of a topic reaches this subscriber, so a gap is a loss.
    pub(crate) fn new(key: Option<StreamKey>, strict: bool) -> Opener {
        Opener {
            key,
            strict,
            positions: LruCache::new(NonZeroUsize::new(POSITIONS).unwrap_or(NonZeroUsize::MIN)),
        }
    }

    /// Checks `seal` for `message` on `topic` from `source`; on success the message is
    /// accepted (its position recorded).
    pub(crate) fn open(
        &mut self,
        source: &str,
        topic: &str,
        seal: &[u8],
        message: &[u8],
    ) -> Result<()> {
        let operation = || format!("receive an event of topic `{topic}`");
        let protocol = |message: String| Error::Protocol {
            peer: source.to_string(),
            message,
        };
        let refuse = |message: String| Error::Unauthenticated {
            peer: source.to_string(),
            operation: operation(),
            message,
        };
        let seal: &[u8; SEAL_LEN] = seal.try_into().map_err(|_| {
            protocol(format!(
                "a stream event envelope of {} bytes, not {SEAL_LEN}",
                seal.len()
            ))
        })?;
        if seal[0] != VERSION {
            return Err(protocol(format!(
                "stream event envelope version {}, but this subscriber reads version {VERSION}",
                seal[0]
            )));
        }
        if seal[1] & !AUTHENTICATED != 0 || seal[2..4] != [0, 0] {
            return Err(protocol(
                "a stream event envelope with unknown flags or reserved bits set".to_string(),
            ));
        }
        let authenticated = seal[1] & AUTHENTICATED != 0;
        match (&self.key, authenticated) {
            (Some(key), true) => {
                let proof = blake3::Hash::from_bytes(seal[PROVEN_LEN..].try_into().unwrap_or([0; 32]));
                // blake3::Hash compares in constant time.
                if key.mac(&seal[..PROVEN_LEN], topic, message) != proof {
                    return Err(refuse(
                        "the event's proof does not match (another secret, or altered in transit)"
                            .to_string(),
                    ));
                }
            }
            (Some(_), false) => {
                return Err(refuse(
                    "the event carries no proof, and this subscriber has a cluster secret".to_string(),
                ))
            }
            (None, true) => {
                return Err(refuse(
                    "the event is authenticated with a cluster secret this subscriber does not have (set PROXYSTORE_SECRET or PROXYSTORE_SECRET_FILE, or ZmqStreamOptions::with_secret)".to_string(),
                ))
            }
            (None, false) => {}
        }
        let field = |range: std::ops::Range<usize>| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&seal[range]);
            u64::from_le_bytes(word)
        };
        let mut id = [0u8; 16];
        id.copy_from_slice(&seal[4..20]);
        let publisher = u128::from_le_bytes(id);
        let sequence = field(20..28);
        let time = field(28..36);
        let position = (publisher, topic.to_string());
        match self.positions.get(&position).copied() {
            Some(last) if sequence <= last => {
                let message = format!(
                    "event {sequence} of publisher {publisher:032x} was received already (the last was {last}): a replay or a duplicate"
                );
                return Err(if self.key.is_some() {
                    refuse(message)
                } else {
                    protocol(message)
                });
            }
            Some(last) if self.strict && sequence > last + 1 => {
                self.positions.put(position, sequence);
                return Err(protocol(format!(
                    "{} events of topic `{topic}` from publisher {publisher:032x} were lost before event {sequence} (a subscriber that fell too far behind, or reconnected)",
                    sequence - last - 1
                )));
            }
            Some(_) => {}
            None if self.key.is_some() => {
                let now = now_micros();
                let window = FIRST_EVENT_WINDOW.as_micros() as u64;
                if now.abs_diff(time) > window {
                    return Err(refuse(format!(
                        "the first event seen from publisher {publisher:032x} is dated {}s away from this host's clock, more than the {}s allowed (a replay of an old stream, or clocks that disagree)",
                        now.abs_diff(time) / 1_000_000,
                        FIRST_EVENT_WINDOW.as_secs()
                    )));
                }
            }
            None => {}
        }
        self.positions.put(position, sequence);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: &str) -> Option<StreamKey> {
        Some(StreamKey::from_secret(&ZmqSecret::new(secret.as_bytes())))
    }

    fn kind(result: Result<()>) -> &'static str {
        match result {
            Ok(()) => "ok",
            Err(Error::Unauthenticated { .. }) => "unauthenticated",
            Err(Error::Protocol { .. }) => "protocol",
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn sealed_messages_open_only_with_the_same_secret_topic_and_bytes() {
        let mut sealer = Sealer::new(key("s3cret"));
        let seal = sealer.seal("t", b"message");
        assert_eq!(
            kind(Opener::new(key("s3cret"), true).open("src", "t", &seal, b"message")),
            "ok"
        );
        for (opener_key, topic, message) in [
            (key("other"), "t", &b"message"[..]),
            (key("s3cret"), "u", b"message"),
            (key("s3cret"), "t", b"messagE"),
            (None, "t", b"message"),
        ] {
            let mut opener = Opener::new(opener_key, true);
            assert_eq!(
                kind(opener.open("src", topic, &seal, message)),
                "unauthenticated"
            );
        }
        // A flipped bit anywhere in the envelope.
        for at in 0..SEAL_LEN {
            let mut bad = seal;
            bad[at] ^= 0x10;
            let result = Opener::new(key("s3cret"), true).open("src", "t", &bad, b"message");
            assert_ne!(kind(result), "ok", "byte {at}");
        }
        // Unauthenticated messages to a subscriber with a secret.
        let plain = Sealer::new(None).seal("t", b"message");
        let mut opener = Opener::new(key("s3cret"), true);
        assert_eq!(
            kind(opener.open("src", "t", &plain, b"message")),
            "unauthenticated"
        );
        assert_eq!(
            kind(opener.open("src", "t", &plain[..10], b"message")),
            "protocol"
        );
    }

    #[test]
    fn replays_are_refused_and_gaps_reported_when_strict() {
        let mut sealer = Sealer::new(key("k"));
        let first = sealer.seal("t", b"1");
        let second = sealer.seal("t", b"2");
        let _lost = sealer.seal("t", b"3");
        let fourth = sealer.seal("t", b"4");
        let other_topic = sealer.seal("u", b"1");
        let mut opener = Opener::new(key("k"), true);
        assert_eq!(kind(opener.open("s", "t", &first, b"1")), "ok");
        assert_eq!(kind(opener.open("s", "t", &first, b"1")), "unauthenticated");
        assert_eq!(kind(opener.open("s", "t", &second, b"2")), "ok");
        assert_eq!(kind(opener.open("s", "t", &fourth, b"4")), "protocol");
        assert_eq!(
            kind(opener.open("s", "t", &fourth, b"4")),
            "unauthenticated"
        );
        assert_eq!(kind(opener.open("s", "u", &other_topic, b"1")), "ok");
        // Not strict (a queue shared by consumers): gaps are normal.
        let mut lenient = Opener::new(key("k"), false);
        assert_eq!(kind(lenient.open("s", "t", &first, b"1")), "ok");
        assert_eq!(kind(lenient.open("s", "t", &fourth, b"4")), "ok");
        assert_eq!(
            kind(lenient.open("s", "t", &second, b"2")),
            "unauthenticated"
        );
    }

    #[test]
    fn an_old_stream_is_not_accepted_by_a_new_subscriber() {
        let mut sealer = Sealer::new(key("k"));
        let mut seal = sealer.seal("t", b"m");
        // Date it 10 minutes back and prove it again (as a recording of an old stream).
        let old = now_micros() - 600_000_000;
        seal[28..36].copy_from_slice(&old.to_le_bytes());
        let mac = key("k").expect("key").mac(&seal[..PROVEN_LEN], "t", b"m");
        seal[PROVEN_LEN..].copy_from_slice(mac.as_bytes());
        let mut opener = Opener::new(key("k"), true);
        match opener.open("s", "t", &seal, b"m") {
            Err(Error::Unauthenticated { message, .. }) => {
                assert!(message.contains("replay of an old stream"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }
}
