//! Proof of a cluster secret, per request and per reply, without sending it; sessions that
//! make replays fail.
//!
//! Peers of one cluster share a secret ([`Secret`]). A client proves it knows the secret by
//! sending, in each request header, `BLAKE3-keyed(request key, header[0..112])` where
//! `request key = BLAKE3-derive_key(REQUEST_CONTEXT, secret)`: a MAC over the operation,
//! ids, size, the client's clock, its session and sequence number, the destination peer's
//! incarnation and, for puts, the payload's BLAKE3 digest (a header field). Only the MAC
//! travels; the secret and the keys stay in memory (and out of `Debug`, logs, errors, keys
//! and serialized configurations). A peer checks the header's proof before it hashes any
//! payload, then the payload against the proven digest.
//!
//! A peer with a secret proves every reply the same way, with another key
//! (`reply key = BLAKE3-derive_key(REPLY_CONTEXT, secret)`, so that no request proof is ever a
//! valid reply proof): `BLAKE3-keyed(reply key, reply header[0..112] ‖ request session ‖
//! request sequence ‖ request proof)`, the reply's payload bound through its digest field.
//! The request's session, sequence and proof bind the reply to the one request it answers (a
//! reply recorded earlier, or for another request, does not verify). An object's digest is the
//! one its owner computed once (at put for large objects, on the first read over TCP for
//! others, or from a remote put's request) and keeps with the object, so a peer does not hash
//! an object on every read; the reader hashes what it received.
//!
//! Replays: a peer with a secret refuses requests whose time is more than [`WINDOW`] away from
//! its own clock, and destructive requests (`PUT`, `EVICT`) that are not the next in a
//! session it knows ([`Sessions`]): a replay's sequence number is used already, or its
//! session forgotten. A request's proof names the destination's incarnation (a random id
//! drawn at each start), so it is refused by any other peer and by the same peer after a
//! restart. Clocks of the cluster must agree within the window.

use std::fmt;
use std::num::NonZeroUsize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lru::LruCache;

use super::wire::{Header, Status, DIGEST_LEN, HEADER_LEN, PROOF_LEN, PROVEN_LEN};

/// Domain separation of the request key's derivation.
const REQUEST_CONTEXT: &str = "proxystore zmq peer 2026-12 request proof v4";
/// Domain separation of the reply key's derivation.
const REPLY_CONTEXT: &str = "proxystore zmq peer 2026-12 reply proof v4";
/// How far a request's clock may be from the peer's.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// Sessions a peer keeps by default ([`ZmqOptions::with_max_sessions`](super::ZmqOptions::with_max_sessions)).
pub(crate) const DEFAULT_MAX_SESSIONS: usize = 65_536;

/// A cluster secret, kept only as the keys derived from it. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret {
    key: [u8; 32],
    reply_key: [u8; 32],
}

/// What ties a reply to its request: the request's session and sequence number (little
/// endian, 8 bytes each) and its proof.
pub(crate) type Binding = ([u8; 16], [u8; PROOF_LEN]);

/// The binding of the request `header`.
pub(crate) fn binding(header: &Header) -> Binding {
    let mut ids = [0u8; 16];
    ids[..8].copy_from_slice(&header.session.to_le_bytes());
    ids[8..].copy_from_slice(&header.sequence.to_le_bytes());
    (ids, header.proof)
}

/// The digest of a payload, as proofs cover it.
pub(crate) fn digest(payload: &[u8]) -> [u8; DIGEST_LEN] {
    *blake3::hash(payload).as_bytes()
}

/// Whether `payload` is what the (already proven) `header`'s digest field says: a payload
/// with its BLAKE3 digest, or no payload and a zero digest.
pub(crate) fn payload_matches(header: &Header, payload: Option<&[u8]>) -> bool {
    match payload {
        Some(payload) => digest(payload) == header.digest,
        None => header.digest == [0; DIGEST_LEN],
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// A secret from its bytes. Short secrets are refused by the caller (`secret`).
    pub(crate) fn new(secret: &[u8]) -> Secret {
        Secret {
            key: blake3::derive_key(REQUEST_CONTEXT, secret),
            reply_key: blake3::derive_key(REPLY_CONTEXT, secret),
        }
    }

    /// A key for another use of the secret, derived from the request key with its own
    /// `context` (the proof of stream events, `proxy_core::stream`): no proof made with it is
    /// a valid request or reply proof, nor the other way round.
    pub(crate) fn derive_key(&self, context: &str) -> [u8; 32] {
        blake3::derive_key(context, &self.key)
    }

    fn mac(&self, header: &[u8; HEADER_LEN]) -> blake3::Hash {
        blake3::keyed_hash(&self.key, &header[..PROVEN_LEN])
    }

    /// Fills in the header's time and proof; the caller has set everything else (session,
    /// sequence, incarnation, and the payload's [`digest`] if the request has one).
    pub(crate) fn sign(&self, header: &mut Header) {
        header.time = now_micros();
        header.proof = [0; PROOF_LEN];
        let mac = self.mac(&header.encode());
        header.proof = *mac.as_bytes();
    }

    /// Whether the header's proof matches (compared in constant time). Reads no payload.
    fn verify(&self, header: &Header) -> bool {
        self.mac(&header.encode()) == blake3::Hash::from_bytes(header.proof)
    }

    fn reply_mac(&self, reply: &[u8; HEADER_LEN], request: &Binding) -> blake3::Hash {
        let mut hasher = blake3::Hasher::new_keyed(&self.reply_key);
        hasher.update(&reply[..PROVEN_LEN]);
        hasher.update(&request.0);
        hasher.update(&request.1);
        hasher.finalize()
    }

    /// Writes the digest field (`payload_digest`, zeros without a payload) and then the proof
    /// of the reply header `reply` (encoded, proof bytes ignored) to the request `request`.
    pub(crate) fn seal_reply(
        &self,
        reply: &mut [u8; HEADER_LEN],
        request: &Binding,
        payload_digest: Option<&[u8; DIGEST_LEN]>,
    ) {
        reply[PROVEN_LEN - DIGEST_LEN..PROVEN_LEN]
            .copy_from_slice(payload_digest.unwrap_or(&[0; DIGEST_LEN]));
        let mac = self.reply_mac(reply, request);
        reply[PROVEN_LEN..].copy_from_slice(mac.as_bytes());
    }

    /// Whether `reply` (with `payload`) proves the secret and answers `request`: the header's
    /// proof first (compared in constant time), then the payload against its digest.
    pub(crate) fn verify_reply(
        &self,
        reply: &Header,
        request: &Binding,
        payload: Option<&[u8]>,
    ) -> bool {
        let mac = self.reply_mac(&reply.encode(), request);
        mac == blake3::Hash::from_bytes(reply.proof) && payload_matches(reply, payload)
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Why a request was refused: the reply's status and words safe to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: Status,
    pub(crate) message: String,
}

impl Refusal {
    fn unauthenticated(message: impl Into<String>) -> Refusal {
        Refusal {
            status: Status::Unauthenticated,
            message: message.into(),
        }
    }

    fn no_session(message: impl Into<String>) -> Refusal {
        Refusal {
            status: Status::NoSession,
            message: message.into(),
        }
    }
}

/// The sessions a peer keeps: for each, the last sequence number it accepted.
///
/// At most `capacity` sessions; opening one more forgets the least recently used. Forgetting
/// is always safe: a destructive request in a forgotten session is refused (`NO SESSION`) and
/// its client opens a new one, so a replay can never slip through a forgotten session, and a
/// member who opens sessions as fast as it can only makes idle clients open theirs again.
/// Memory is bounded by `capacity` whatever the request rate; one client's flood of
/// destructive requests uses one entry.
#[derive(Debug)]
pub(crate) struct Sessions {
    last: LruCache<u64, u64>,
}

impl Sessions {
    pub(crate) fn new(capacity: usize) -> Sessions {
        Sessions {
            last: LruCache::new(NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN)),
        }
    }

    /// Opens a session: a fresh random non-zero id.
    pub(crate) fn open(&mut self) -> u64 {
        loop {
            let id = crate::ids::new_id() as u64;
            if id != 0 && !self.last.contains(&id) {
                self.last.put(id, 0);
                return id;
            }
        }
    }

    /// Accepts `sequence` in `session` when it is above the last one accepted there.
    fn accept(&mut self, session: u64, sequence: u64) -> std::result::Result<(), Refusal> {
        match self.last.get_mut(&session) {
            None => Err(Refusal::no_session(if session == 0 {
                "a put or evict must come within a session (send LIMITS first)".to_string()
            } else {
                format!("session {session:016x} is unknown to this peer (expired, or opened with an earlier run of it)")
            })),
            Some(last) if sequence <= *last => Err(Refusal::no_session(format!(
                "sequence number {sequence} of session {session:016x} was used already (a replayed request, or another sender in this session)"
            ))),
            Some(last) => {
                *last = sequence;
                Ok(())
            }
        }
    }

    /// How many sessions are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.last.len()
    }
}

/// A peer's check of requests: proof, clock, incarnation and sessions.
#[derive(Debug)]
pub(crate) struct Verifier {
    secret: Secret,
    sessions: Sessions,
}

impl Verifier {
    pub(crate) fn new(secret: Secret, max_sessions: usize) -> Verifier {
        Verifier {
            secret,
            sessions: Sessions::new(max_sessions),
        }
    }

    /// The secret replies are proven with.
    pub(crate) fn secret(&self) -> &Secret {
        &self.secret
    }

    /// Opens a session for the client whose `LIMITS` request was just checked.
    pub(crate) fn open_session(&mut self) -> u64 {
        self.sessions.open()
    }

    /// `Ok` when the header proves the secret, is fresh, names `incarnation` (the checking
    /// peer's) where it must, and (if destructive) is the next request of a session this peer
    /// knows; otherwise why not. Reads the header only: the caller then checks the payload
    /// against the proven digest ([`payload_matches`]).
    pub(crate) fn check(
        &mut self,
        header: &Header,
        incarnation: u64,
    ) -> std::result::Result<(), Refusal> {
        if header.proof == [0; PROOF_LEN] {
            return Err(Refusal::unauthenticated("this peer requires the cluster secret and the request carries no proof of it (set the same secret on every process: PROXYSTORE_SECRET or PROXYSTORE_SECRET_FILE)"));
        }
        if !self.secret.verify(header) {
            return Err(Refusal::unauthenticated(
                "the request's proof does not match this peer's secret",
            ));
        }
        let now = now_micros();
        let window = WINDOW.as_micros() as u64;
        if header.time.abs_diff(now) > window {
            return Err(Refusal::unauthenticated(format!(
                "the request's clock is {} s away from this peer's (at most {} s allowed)",
                header.time.abs_diff(now) / 1_000_000,
                WINDOW.as_secs()
            )));
        }
        if header.op.is_destructive() {
            if header.incarnation != incarnation {
                return Err(Refusal {
                    status: Status::WrongPeer,
                    message: wrong_incarnation(header.incarnation, incarnation),
                });
            }
            self.sessions.accept(header.session, header.sequence)?;
        }
        Ok(())
    }
}

/// Why a request naming incarnation `named` was refused by the peer of incarnation `own`.
pub(crate) fn wrong_incarnation(named: u64, own: u64) -> String {
    if named == 0 {
        format!("this peer (incarnation {own:016x}) needs a put or evict to name its incarnation")
    } else {
        format!(
            "the request is for incarnation {named:016x} of the peer at this address, and this is incarnation {own:016x}: the peer restarted since (its objects are gone), or another process answers at the same address"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::zmq::wire::{Op, Status};

    const INCARNATION: u64 = 0x1234_5678_9abc_def0;

    /// A signed put of `payload` in `session` with `sequence`, to `INCARNATION`.
    fn put(secret: &Secret, session: u64, sequence: u64, payload: &[u8]) -> Header {
        let mut header = Header::request(Op::Put, sequence, 2);
        header.size = payload.len() as u64;
        header.session = session;
        header.sequence = sequence;
        header.incarnation = INCARNATION;
        header.digest = digest(payload);
        secret.sign(&mut header);
        header
    }

    #[test]
    fn proofs_verify_only_with_the_same_secret_and_header() {
        let secret = Secret::new(b"cluster secret of 32 bytes, okay");
        let mut verifier = Verifier::new(secret.clone(), 16);
        let session = verifier.open_session();
        let header = put(&secret, session, 1, b"abc");
        assert_eq!(verifier.check(&header, INCARNATION), Ok(()));
        assert!(payload_matches(&header, Some(b"abc")));
        assert!(!payload_matches(&header, Some(b"abd")), "payload changed");
        assert!(!payload_matches(&header, None), "payload dropped");
        // The same request again: a replay.
        let replay = verifier.check(&header, INCARNATION).expect_err("replay");
        assert_eq!(replay.status, Status::NoSession);
        assert!(replay.message.contains("used already"), "{replay:?}");

        let mut other = Verifier::new(Secret::new(b"another secret of 32 bytes, okay"), 16);
        let refused = other.check(&header, INCARNATION).expect_err("other secret");
        assert_eq!(refused.status, Status::Unauthenticated);
        let mut digest_changed = put(&secret, session, 2, b"abc");
        digest_changed.digest = digest(b"abd");
        assert_eq!(
            verifier
                .check(&digest_changed, INCARNATION)
                .map_err(|r| r.status),
            Err(Status::Unauthenticated),
            "a digest changed after signing"
        );
        let mut evict = put(&secret, session, 3, b"abc");
        evict.op = Op::Evict;
        assert!(verifier.check(&evict, INCARNATION).is_err(), "op changed");
        let mut unsigned = Header::request(Op::Get, 1, 2);
        assert!(verifier
            .check(&unsigned, INCARNATION)
            .expect_err("unsigned")
            .message
            .contains("no proof"));
        // Stale clocks are refused even with a valid proof.
        unsigned.time = now_micros() - 2 * WINDOW.as_micros() as u64;
        unsigned.proof = *secret.mac(&unsigned.encode()).as_bytes();
        assert!(verifier
            .check(&unsigned, INCARNATION)
            .expect_err("stale")
            .message
            .contains("clock"));
    }

    #[test]
    fn destructive_requests_name_this_incarnation_and_come_in_order_within_a_session() {
        let secret = Secret::new(b"cluster secret of 32 bytes, okay");
        let mut verifier = Verifier::new(secret.clone(), 16);
        let session = verifier.open_session();
        // Captured for this peer, played to another one or to this one after a restart.
        let header = put(&secret, session, 1, b"abc");
        let elsewhere = verifier
            .check(&header, INCARNATION + 1)
            .expect_err("other peer");
        assert_eq!(elsewhere.status, Status::WrongPeer);
        assert!(elsewhere.message.contains("restarted"), "{elsewhere:?}");
        let mut unnamed = put(&secret, session, 2, b"abc");
        unnamed.incarnation = 0;
        secret.sign(&mut unnamed);
        assert_eq!(
            verifier.check(&unnamed, INCARNATION).map_err(|r| r.status),
            Err(Status::WrongPeer)
        );
        // Reads need no session and may leave the incarnation out.
        let mut get = Header::request(Op::Get, 9, 2);
        secret.sign(&mut get);
        assert_eq!(verifier.check(&get, INCARNATION), Ok(()));
        assert_eq!(verifier.check(&get, INCARNATION), Ok(()));
        // Sequence numbers must grow; gaps are fine.
        assert_eq!(
            verifier.check(&put(&secret, session, 5, b"x"), INCARNATION),
            Ok(())
        );
        for stale in [5, 4, 1] {
            assert_eq!(
                verifier
                    .check(&put(&secret, session, stale, b"x"), INCARNATION)
                    .map_err(|r| r.status),
                Err(Status::NoSession),
                "sequence {stale} after 5"
            );
        }
        assert_eq!(
            verifier.check(&put(&secret, session, 6, b"x"), INCARNATION),
            Ok(())
        );
        // A session this peer never opened, or none.
        for unknown in [0, session ^ 1] {
            assert_eq!(
                verifier
                    .check(&put(&secret, unknown, 7, b"x"), INCARNATION)
                    .map_err(|r| r.status),
                Err(Status::NoSession)
            );
        }
    }

    #[test]
    fn sessions_stay_bounded_and_forgetting_one_never_admits_a_replay() {
        let secret = Secret::new(b"cluster secret of 32 bytes, okay");
        let mut verifier = Verifier::new(secret.clone(), 4);
        let first = verifier.open_session();
        let recorded = put(&secret, first, 1, b"abc");
        assert_eq!(verifier.check(&recorded, INCARNATION), Ok(()));
        // One flooding client: any number of requests, one session.
        let flooder = verifier.open_session();
        for sequence in 1..=10_000 {
            assert_eq!(
                verifier.check(&put(&secret, flooder, sequence, b""), INCARNATION),
                Ok(())
            );
        }
        assert_eq!(verifier.sessions.len(), 2);
        // Opening many sessions forgets the least recently used, never more than 4 kept.
        for _ in 0..100 {
            verifier.open_session();
        }
        assert_eq!(verifier.sessions.len(), 4);
        let replay = verifier
            .check(&recorded, INCARNATION)
            .expect_err("forgotten");
        assert_eq!(replay.status, Status::NoSession);
        assert!(replay.message.contains("unknown"), "{replay:?}");
    }

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new(b"hunter2-hunter2-hunter2");
        let shown = format!("{secret:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    fn sealed(
        secret: &Secret,
        status: Status,
        request: &Binding,
        payload: Option<&[u8]>,
    ) -> Header {
        let mut reply = Header::request(Op::Get, 7, 99).reply(status);
        reply.size = 5;
        let mut bytes = reply.encode();
        secret.seal_reply(&mut bytes, request, payload.map(digest).as_ref());
        Header::decode(&bytes).expect("a sealed reply decodes")
    }

    #[test]
    fn replies_verify_only_for_their_request_payload_and_secret() {
        let secret = Secret::new(b"cluster secret of 32 bytes, okay");
        let request: Binding = ([1; 16], [2; PROOF_LEN]);
        let reply = sealed(&secret, Status::Ok, &request, Some(b"object"));
        assert!(secret.verify_reply(&reply, &request, Some(b"object")));
        assert!(
            !secret.verify_reply(&reply, &request, Some(b"objecT")),
            "payload"
        );
        assert!(
            !secret.verify_reply(&reply, &request, None),
            "payload dropped"
        );
        assert!(!secret.verify_reply(&reply, &([1; 16], [3; PROOF_LEN]), Some(b"object")));
        assert!(!secret.verify_reply(&reply, &([0; 16], [2; PROOF_LEN]), Some(b"object")));
        let other = Secret::new(b"another secret of 32 bytes, okay");
        assert!(!other.verify_reply(&reply, &request, Some(b"object")));
        let mut status = reply;
        status.status = Status::NotFound;
        assert!(!secret.verify_reply(&status, &request, Some(b"object")));
        let empty = sealed(&secret, Status::NotFound, &request, None);
        assert!(secret.verify_reply(&empty, &request, None));
        assert!(
            !secret.verify_reply(&empty, &request, Some(b"")),
            "payload added"
        );
        // A request's proof is never a reply's: the keys differ.
        let mut header = Header::request(Op::Get, 7, 99);
        secret.sign(&mut header);
        let mut as_reply = header;
        as_reply.proof = header.proof;
        assert!(!secret.verify_reply(&as_reply, &request, None));
    }

    proptest::proptest! {
        /// A sealed reply with any bytes of its header, payload or request binding changed
        /// no longer verifies (and checking never panics).
        #[test]
        fn changed_replies_never_verify(
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            has_payload in proptest::prelude::any::<bool>(),
            flips in proptest::collection::vec(
                (0usize..HEADER_LEN + 48 + 300, 1u8..=255), 1..4),
        ) {
            let secret = Secret::new(b"cluster secret of 32 bytes, okay");
            let request: Binding = ([4; 16], [5; PROOF_LEN]);
            let payload = has_payload.then_some(payload);
            let mut reply = Header::request(Op::Get, 3, 4).reply(Status::Ok).encode();
            secret.seal_reply(&mut reply, &request, payload.as_deref().map(digest).as_ref());
            let (mut header, mut binding, mut body) = (reply, request, payload.clone());
            let mut changed = false;
            for (at, xor) in flips {
                if at < HEADER_LEN {
                    header[at] ^= xor;
                    changed = true;
                } else if at < HEADER_LEN + 16 {
                    binding.0[at - HEADER_LEN] ^= xor;
                    changed = true;
                } else if at < HEADER_LEN + 48 {
                    binding.1[at - HEADER_LEN - 16] ^= xor;
                    changed = true;
                } else if let Some(body) = body.as_mut().filter(|b| at - HEADER_LEN - 48 < b.len()) {
                    body[at - HEADER_LEN - 48] ^= xor;
                    changed = true;
                }
            }
            // Flips may cancel out (same byte twice).
            let same = header == reply && binding == request && body == payload;
            if let Ok(decoded) = Header::decode(&header) {
                let verified = secret.verify_reply(&decoded, &binding, body.as_deref());
                proptest::prop_assert_eq!(verified, !changed || same);
            }
        }
    }
}
