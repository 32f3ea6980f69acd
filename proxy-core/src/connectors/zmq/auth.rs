//! Proof of a cluster secret, per request, without sending it.
//!
//! Peers of one cluster share a secret ([`Secret`]). A client proves it knows the secret by
//! sending, in each request header, `BLAKE3-keyed(key, header[0..64] ‖ payload)` where
//! `key = BLAKE3-derive_key(CONTEXT, secret)`: a MAC over the operation, ids, size, the
//! client's clock and a random nonce, and for puts the object itself. Only the MAC travels;
//! the secret and the key stay in memory (and out of `Debug`, logs, errors, keys and
//! serialized configurations).
//!
//! Replays: a peer with a secret refuses requests whose time is more than [`WINDOW`] away
//! from its own clock, and remembers the nonces of destructive requests (`PUT`, `EVICT`)
//! for that long, so a recorded request cannot be played again to evict or re-store an
//! object. (A replayed `GET` or `EXISTS` only repeats an answer its eavesdropper already
//! saw, so those are not remembered.) Clocks of the cluster must agree within the window.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::wire::{Header, HEADER_LEN, PROOF_LEN, PROVEN_LEN};
use crate::error::{Error, Result};

/// Domain separation of the key derivation.
const CONTEXT: &str = "proxystore zmq peer 2026-12 request proof v2";
/// How far a request's clock may be from the peer's.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// Most nonces of destructive requests remembered at once; beyond this, destructive
/// requests are refused until old nonces expire (bounds the peer's memory).
const MAX_REMEMBERED: usize = 1 << 20;

/// A cluster secret, kept only as the key derived from it. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret {
    key: [u8; 32],
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// A secret from its bytes. Empty secrets are refused by the caller.
    pub(crate) fn new(secret: &[u8]) -> Secret {
        Secret {
            key: blake3::derive_key(CONTEXT, secret),
        }
    }

    /// Reads a secret file: its content without a trailing newline.
    pub(crate) fn from_file(path: &Path) -> Result<Secret> {
        let bytes = std::fs::read(path).map_err(|e| Error::io("read the secret file", path, e))?;
        let trimmed = bytes
            .strip_suffix(b"\r\n")
            .or_else(|| bytes.strip_suffix(b"\n"))
            .unwrap_or(&bytes);
        if trimmed.is_empty() {
            return Err(Error::Config {
                what: "zmq connector".to_string(),
                message: format!("the secret file {} is empty", path.display()),
            });
        }
        Ok(Secret::new(trimmed))
    }

    fn mac(&self, header: &[u8; HEADER_LEN], payload: Option<&[u8]>) -> blake3::Hash {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(&header[..PROVEN_LEN]);
        if let Some(payload) = payload {
            hasher.update(payload);
        }
        hasher.finalize()
    }

    /// Fills in the header's time, nonce and proof.
    pub(crate) fn sign(&self, header: &mut Header, payload: Option<&[u8]>) {
        header.time = now_micros();
        header.nonce = crate::ids::new_id().to_le_bytes();
        header.proof = [0; PROOF_LEN];
        let mac = self.mac(&header.encode(), payload);
        header.proof = *mac.as_bytes();
    }

    /// Whether the header's proof matches (compared in constant time).
    fn verify(&self, header: &Header, payload: Option<&[u8]>) -> bool {
        let mac = self.mac(&header.encode(), payload);
        mac == blake3::Hash::from_bytes(header.proof)
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

    /// `Ok` when the request proves the secret, is fresh and (if destructive) not a replay;
    /// otherwise why not, in words safe to send back.
    pub(crate) fn check(
        &mut self,
        header: &Header,
        payload: Option<&[u8]>,
    ) -> std::result::Result<(), String> {
        if header.proof == [0; PROOF_LEN] {
            return Err("this peer requires the cluster secret and the request carries no proof of it (set the same secret on every process: PROXYSTORE_SECRET or PROXYSTORE_SECRET_FILE)".to_string());
        }
        if !self.secret.verify(header, payload) {
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
    use crate::connectors::zmq::wire::Op;

    #[test]
    fn proofs_verify_only_with_the_same_secret_and_bytes() {
        let secret = Secret::new(b"cluster secret");
        let mut header = Header::request(Op::Put, 1, 2);
        header.size = 3;
        secret.sign(&mut header, Some(b"abc"));
        let mut verifier = Verifier::new(secret.clone());
        assert_eq!(verifier.check(&header, Some(b"abc")), Ok(()));
        // The same request again: a replay.
        assert!(verifier
            .check(&header, Some(b"abc"))
            .expect_err("replay")
            .contains("replayed"));

        let mut other = Verifier::new(Secret::new(b"another secret"));
        assert!(other.check(&header, Some(b"abc")).is_err());
        let mut fresh = Verifier::new(secret.clone());
        assert!(
            fresh.check(&header, Some(b"abd")).is_err(),
            "payload changed"
        );
        let mut evict = header;
        evict.op = Op::Evict;
        assert!(fresh.check(&evict, Some(b"abc")).is_err(), "op changed");
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
}
