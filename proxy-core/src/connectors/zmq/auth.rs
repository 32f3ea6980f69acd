//! Proof of a cluster secret, per request and per reply, without sending it.
//!
//! Peers of one cluster share a secret ([`Secret`]). A client proves it knows the secret by
//! sending, in each request header, `BLAKE3-keyed(request key, header[0..64] [‖ BLAKE3(payload)])`
//! where `request key = BLAKE3-derive_key(REQUEST_CONTEXT, secret)`: a MAC over the
//! operation, ids, size, the client's clock and a random nonce, and for puts the object's
//! digest. Only the MAC travels; the secret and the keys stay in memory (and out of `Debug`,
//! logs, errors, keys and serialized configurations).
//!
//! A peer with a secret proves every reply the same way, with another key
//! (`reply key = BLAKE3-derive_key(REPLY_CONTEXT, secret)`, so that no request proof is ever a
//! valid reply proof): `BLAKE3-keyed(reply key, reply header[0..64] ‖ request nonce ‖
//! request proof ‖ payload flag ‖ BLAKE3(payload))`. The request's nonce and proof bind the
//! reply to the one request it answers (a reply recorded earlier, or for another request, does
//! not verify); the payload's digest covers the object, descriptor, counters or message. An
//! object's digest is the one its owner computed once (at put for large objects, on the first
//! read over TCP for others, or from a remote put's request proof) and keeps with the object,
//! so a peer does not hash an object on every read; the reader hashes what it received.
//!
//! Replays: a peer with a secret refuses requests whose time is more than [`WINDOW`] away
//! from its own clock, and remembers the nonces of destructive requests (`PUT`, `EVICT`)
//! for that long, so a recorded request cannot be played again to evict or re-store an
//! object. (A replayed `GET` or `EXISTS` only repeats an answer its eavesdropper already
//! saw, so those are not remembered.) Clocks of the cluster must agree within the window.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::wire::{Header, HEADER_LEN, PROOF_LEN, PROVEN_LEN};

/// Domain separation of the request key's derivation.
const REQUEST_CONTEXT: &str = "proxystore zmq peer 2026-12 request proof v3";
/// Domain separation of the reply key's derivation.
const REPLY_CONTEXT: &str = "proxystore zmq peer 2026-12 reply proof v3";
/// How far a request's clock may be from the peer's.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// Most nonces of destructive requests remembered at once; beyond this, destructive
/// requests are refused until old nonces expire (bounds the peer's memory).
const MAX_REMEMBERED: usize = 1 << 20;

/// A cluster secret, kept only as the keys derived from it. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret {
    key: [u8; 32],
    reply_key: [u8; 32],
}

/// What ties a reply to its request: the request's nonce and proof.
pub(crate) type Binding = ([u8; 16], [u8; PROOF_LEN]);

/// The digest of a payload, as proofs cover it.
pub(crate) fn digest(payload: &[u8]) -> [u8; 32] {
    *blake3::hash(payload).as_bytes()
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

    fn mac(&self, header: &[u8; HEADER_LEN], payload_digest: Option<&[u8; 32]>) -> blake3::Hash {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(&header[..PROVEN_LEN]);
        if let Some(digest) = payload_digest {
            hasher.update(digest);
        }
        hasher.finalize()
    }

    /// Fills in the header's time, nonce and proof; `payload_digest` is the payload's
    /// [`digest`], if the request has one.
    pub(crate) fn sign(&self, header: &mut Header, payload_digest: Option<&[u8; 32]>) {
        header.time = now_micros();
        header.nonce = crate::ids::new_id().to_le_bytes();
        header.proof = [0; PROOF_LEN];
        let mac = self.mac(&header.encode(), payload_digest);
        header.proof = *mac.as_bytes();
    }

    /// Whether the header's proof matches (compared in constant time).
    fn verify(&self, header: &Header, payload_digest: Option<&[u8; 32]>) -> bool {
        let mac = self.mac(&header.encode(), payload_digest);
        mac == blake3::Hash::from_bytes(header.proof)
    }

    fn reply_mac(
        &self,
        reply: &[u8; HEADER_LEN],
        request: &Binding,
        payload_digest: Option<&[u8; 32]>,
    ) -> blake3::Hash {
        let mut hasher = blake3::Hasher::new_keyed(&self.reply_key);
        hasher.update(&reply[..PROVEN_LEN]);
        hasher.update(&request.0);
        hasher.update(&request.1);
        match payload_digest {
            Some(digest) => hasher.update(&[1]).update(digest),
            None => hasher.update(&[0]),
        };
        hasher.finalize()
    }

    /// Writes the proof of the reply header `reply` (encoded, proof bytes ignored) to the
    /// request `request`, whose payload has digest `payload_digest`.
    pub(crate) fn seal_reply(
        &self,
        reply: &mut [u8; HEADER_LEN],
        request: &Binding,
        payload_digest: Option<&[u8; 32]>,
    ) {
        let mac = self.reply_mac(reply, request, payload_digest);
        reply[PROVEN_LEN..].copy_from_slice(mac.as_bytes());
    }

    /// Whether `reply` (with `payload`) proves the secret and answers `request`. Hashes the
    /// payload; compares in constant time.
    pub(crate) fn verify_reply(
        &self,
        reply: &Header,
        request: &Binding,
        payload: Option<&[u8]>,
    ) -> bool {
        let digest = payload.map(digest);
        let mac = self.reply_mac(&reply.encode(), request, digest.as_ref());
        mac == blake3::Hash::from_bytes(reply.proof)
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A peer's check of requests: proof, clock and replays.
#[derive(Debug)]
pub(crate) struct Verifier {
    secret: Secret,
    seen: HashSet<[u8; 16]>,
    expiry: VecDeque<(Instant, [u8; 16])>,
}

impl Verifier {
    pub(crate) fn new(secret: Secret) -> Verifier {
        Verifier {
            secret,
            seen: HashSet::new(),
            expiry: VecDeque::new(),
        }
    }

    /// The secret replies are proven with.
    pub(crate) fn secret(&self) -> &Secret {
        &self.secret
    }

    /// `Ok` when the request proves the secret, is fresh and (if destructive) not a replay;
    /// otherwise why not, in words safe to send back. `payload_digest` is the request
    /// payload's [`digest`], if it has one.
    pub(crate) fn check(
        &mut self,
        header: &Header,
        payload_digest: Option<&[u8; 32]>,
    ) -> std::result::Result<(), String> {
        if header.proof == [0; PROOF_LEN] {
            return Err("this peer requires the cluster secret and the request carries no proof of it (set the same secret on every process: PROXYSTORE_SECRET or PROXYSTORE_SECRET_FILE)".to_string());
        }
        if !self.secret.verify(header, payload_digest) {
            return Err("the request's proof does not match this peer's secret".to_string());
        }
        let now = now_micros();
        let window = WINDOW.as_micros() as u64;
        if header.time.abs_diff(now) > window {
            return Err(format!(
                "the request's clock is {} s away from this peer's (at most {} s allowed)",
                header.time.abs_diff(now) / 1_000_000,
                WINDOW.as_secs()
            ));
        }
        if header.op.is_destructive() {
            self.expire();
            if self.seen.contains(&header.nonce) {
                return Err("replayed request".to_string());
            }
            if self.seen.len() >= MAX_REMEMBERED {
                return Err(
                    "too many destructive requests in the replay window; retry later".to_string(),
                );
            }
            self.seen.insert(header.nonce);
            // Twice the window: a request may be stamped up to WINDOW in the future.
            self.expiry
                .push_back((Instant::now() + 2 * WINDOW, header.nonce));
        }
        Ok(())
    }

    fn expire(&mut self) {
        let now = Instant::now();
        while let Some((at, nonce)) = self.expiry.front() {
            if *at > now {
                break;
            }
            self.seen.remove(nonce);
            self.expiry.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::zmq::wire::{Op, Status};

    #[test]
    fn proofs_verify_only_with_the_same_secret_and_bytes() {
        let secret = Secret::new(b"cluster secret");
        let (abc, abd) = (digest(b"abc"), digest(b"abd"));
        let mut header = Header::request(Op::Put, 1, 2);
        header.size = 3;
        secret.sign(&mut header, Some(&abc));
        let mut verifier = Verifier::new(secret.clone());
        assert_eq!(verifier.check(&header, Some(&abc)), Ok(()));
        // The same request again: a replay.
        assert!(verifier
            .check(&header, Some(&abc))
            .expect_err("replay")
            .contains("replayed"));

        let mut other = Verifier::new(Secret::new(b"another secret"));
        assert!(other.check(&header, Some(&abc)).is_err());
        let mut fresh = Verifier::new(secret.clone());
        assert!(fresh.check(&header, Some(&abd)).is_err(), "payload changed");
        assert!(fresh.check(&header, None).is_err(), "payload dropped");
        let mut evict = header;
        evict.op = Op::Evict;
        assert!(fresh.check(&evict, Some(&abc)).is_err(), "op changed");
        let mut unsigned = Header::request(Op::Get, 1, 2);
        assert!(fresh
            .check(&unsigned, None)
            .expect_err("unsigned")
            .contains("no proof"));
        // Stale clocks are refused even with a valid proof.
        unsigned.time = now_micros() - 2 * WINDOW.as_micros() as u64;
        unsigned.proof = *secret.mac(&unsigned.encode(), None).as_bytes();
        assert!(fresh
            .check(&unsigned, None)
            .expect_err("stale")
            .contains("clock"));
    }

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new(b"hunter2");
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
        let secret = Secret::new(b"cluster secret");
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
        let other = Secret::new(b"another secret");
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
        secret.sign(&mut header, None);
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
            let secret = Secret::new(b"s");
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
