//! The peer protocol's wire format, version 4.
//!
//! A request is one ZeroMQ multipart message sent by a `DEALER` socket to a peer's `ROUTER`;
//! the reply is one multipart message back. Each message has:
//!
//! 1. a **header frame** of exactly [`HEADER_LEN`] (144) bytes, all integers little endian:
//!
//!    | bytes    | field       | meaning                                                    |
//!    |----------|-------------|------------------------------------------------------------|
//!    | 0..3     | magic       | `b"PXZ"`                                                   |
//!    | 3        | version     | [`VERSION`] (4)                                            |
//!    | 4        | operation   | 1 `GET`, 2 `EXISTS`, 3 `EVICT`, 4 `PUT`, 5 `LIMITS`, 6 `STATS` |
//!    | 5        | status      | requests: 0; replies: see [`Status`]                       |
//!    | 6        | flags       | requests: bit 0 ([`FLAG_SHARED_MEMORY`]), others 0; replies: 0 |
//!    | 7        | reserved    | 0 (a message with anything else is refused)                |
//!    | 8..16    | request id  | chosen by the client, echoed by the reply (u64)            |
//!    | 16..32   | object id   | the [`Key`](crate::Key)'s 128-bit id (u128)                |
//!    | 32..40   | size        | see below (u64)                                            |
//!    | 40..48   | time        | request: the sender's clock, microseconds since the Unix epoch; reply: 0 |
//!    | 48..56   | session     | request: the session the peer gave this client (0: none); `LIMITS` reply: the new session; other replies: 0 |
//!    | 56..64   | sequence    | request: this client socket's counter, strictly increasing; reply: 0 |
//!    | 64..72   | incarnation | request: the destination peer's incarnation as the client knows it (0: not known); reply: the replying peer's |
//!    | 72..80   | reserved    | 0 (a message with anything else is refused)                |
//!    | 80..112  | digest      | with a secret, BLAKE3 of the payload frame when there is one; else 0 |
//!    | 112..144 | proof       | with a secret: the request's or the reply's MAC (see below); else 0 |
//!
//!    The size field: in a `PUT` request, the payload's length; in a `GET` request, the
//!    largest object the client accepts (its maximum message size); in a `LIMITS` reply, the
//!    peer's maximum message size; in a `TOO LARGE` or `OVER QUOTA` reply, the limit that
//!    refused the request; otherwise 0.
//!
//!    The **incarnation** is a random, non-zero 64-bit id a peer draws each time it starts.
//!    Keys carry it (see [`Key::peer_incarnation`](crate::Key::peer_incarnation)); a client
//!    learns it for puts from a `LIMITS` reply. A peer answers a request naming another
//!    incarnation with status `WRONG PEER` (its own incarnation in the reply header): the
//!    key's object was stored by an earlier run of this peer, or by another process answering
//!    at the same address. `PUT` and `EVICT` must name the peer's incarnation when the peer
//!    has a secret (0 is refused); `GET`, `EXISTS`, `LIMITS` and `STATS` may send 0.
//!
//! 2. at most one **payload frame**, sent as its own frame so that it is never copied into a
//!    buffer together with the header:
//!    - a `PUT` request carries the object; a `GET` reply with status ok carries the object;
//!    - a `STATS` reply with status ok carries the peer's counters (layout below);
//!    - a `GET` reply with status `SHARED` carries a shared memory descriptor (see below);
//!    - an error reply carries a UTF-8 message saying what was wrong;
//!    - every other message has no payload frame.
//!
//! **`STATS` reply payload**: exactly [`STATS_LEN`](super::stats::STATS_LEN) (72) bytes,
//! nine little-endian u64 fields (a client refuses any other length); see
//! [`PeerStats`](super::PeerStats) for their meaning:
//!
//! | bytes  | field             |
//! |--------|-------------------|
//! | 0..8   | objects held      |
//! | 8..16  | bytes held        |
//! | 16..24 | rejected requests |
//! | 24..32 | requests answered |
//! | 32..40 | remote bytes held |
//! | 40..48 | byte quota        |
//! | 48..56 | max message size  |
//! | 56..64 | shared memory bytes held |
//! | 64..72 | shared memory reserved   |
//!
//! A `STATS` request has object id 0 (ignored, echoed), no payload, and, to a peer with a secret, a proof like
//! any other request (the counters tell about the peer's contents and traffic).
//!
//! **Proofs**: when peers share a secret, every request carries
//! `BLAKE3-keyed(request key, header[0..112])` and every reply
//! `BLAKE3-keyed(reply key, header[0..112] ‖ request session ‖ request sequence ‖ request proof)`,
//! the two keys derived from the secret with different contexts (see [`auth`](super::auth)).
//! The secret itself never travels. The payload is bound through the digest field, which the
//! proof covers: a peer checks a request's header proof first, and hashes a payload only for
//! a request whose proof holds (a stranger's junk put costs a MAC of 112 bytes, not a hash of
//! its payload); a message whose payload does not match its digest is refused. The request's
//! proof covers the destination's incarnation, so a request captured on its way to one peer
//! is refused by every other peer and by the same peer after a restart.
//!
//! **Replays**: a peer with a secret refuses requests whose time is more than a minute away
//! from its own clock. `PUT` and `EVICT` must moreover come within a **session**: a `LIMITS`
//! request (proven) opens one, and its reply gives the session's random id; each later
//! destructive request names it with a sequence number above the last one the peer accepted
//! in that session. The peer keeps the last sequence number of its most recently used
//! sessions (a bounded table, least recently used dropped first); a destructive request in an
//! unknown session, or whose sequence number is not above the last, gets status
//! `NO SESSION`, and the client opens a new session and sends it again (once). A replay thus
//! never succeeds (its session is gone or its number used), and no member can fill a shared
//! structure that refuses other clients: flooding costs each flooder only its own sessions.
//! The reply's proof covers the request's session, sequence and proof, so a client with the
//! secret refuses a reply that was changed, made up, or recorded for another request. A peer
//! proves every reply it sends (objects, descriptors, counters, refusals, error replies to
//! garbage, with the zeros it read as a binding), and a client with a secret refuses any reply
//! without a valid proof (`Error::Protocol`; a refusal of authentication that does not verify
//! is `Error::Unauthenticated`: the peer's secret differs). Version 4 added the incarnation,
//! sessions and the digest field (the header proof no longer needs the payload to be hashed
//! first); version 3 had added reply proofs.
//!
//! **Shared memory** (same host): a `GET` request with flag bit 0 set says "I can map your
//! shared memory if we share a machine". A peer that holds the object in shared memory may
//! then answer with status `SHARED` (6) and a payload of exactly 80 bytes, a descriptor
//! (the owner's boot id digest, pid, segment descriptor number and token, slot, generation,
//! offset, length: see `shm/descriptor.rs`) instead of the bytes. The reader maps the
//! segment through `/proc/PID/fd/FD` (same user or root only) and reads the object in place;
//! when it cannot (another machine, another user, the object evicted meanwhile) it sends
//! the `GET` again without the flag. Peers never send `SHARED` to a request without the
//! flag, so clients that do not set it are unaffected. The flag is part of the proven bytes.
//!
//! A reply echoes the request's operation, request id and object id. A request the server
//! cannot parse gets an error reply; when even the request id cannot be read (garbage,
//! truncated header) the reply's request id is 0 and its operation is 0, and when the version
//! is unknown the reply is written in this version, so an old client can say what happened.
//! Status `not found` answers `GET` and `EXISTS` for a missing object; `EVICT` of a missing
//! object is ok; `PUT` under an id already taken is an error (keys are write-once).

use std::fmt;

/// The bytes every header starts with.
pub(crate) const MAGIC: [u8; 3] = *b"PXZ";
/// The version of the wire format this module reads and writes.
pub(crate) const VERSION: u8 = 4;
/// Size of a header frame.
pub(crate) const HEADER_LEN: usize = 144;
/// The part of the header a proof covers (everything before the proof).
pub(crate) const PROVEN_LEN: usize = 112;
/// Size of a payload digest.
pub(crate) const DIGEST_LEN: usize = 32;
/// Size of a proof.
pub(crate) const PROOF_LEN: usize = 32;
/// Request flag: the client can read objects from this peer's shared memory (`GET`).
pub(crate) const FLAG_SHARED_MEMORY: u8 = 1;
/// Every flag this version knows.
const KNOWN_FLAGS: u8 = FLAG_SHARED_MEMORY;

/// What a request asks the peer to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Send back the object.
    Get = 1,
    /// Say whether the object is stored.
    Exists = 2,
    /// Remove the object.
    Evict = 3,
    /// Store the payload under the object id.
    Put = 4,
    /// Say what the peer accepts (its maximum message size), before a put.
    Limits = 5,
    /// Report the peer's counters ([`PeerStats`](super::PeerStats)).
    Stats = 6,
}

impl Op {
    fn from_byte(byte: u8) -> Option<Op> {
        match byte {
            1 => Some(Op::Get),
            2 => Some(Op::Exists),
            3 => Some(Op::Evict),
            4 => Some(Op::Put),
            5 => Some(Op::Limits),
            6 => Some(Op::Stats),
            _ => None,
        }
    }

    /// Whether a request of this operation carries a payload frame.
    pub(crate) fn request_has_payload(self) -> bool {
        self == Op::Put
    }

    /// Whether the operation changes what the peer stores (replays of these are refused).
    pub(crate) fn is_destructive(self) -> bool {
        matches!(self, Op::Put | Op::Evict)
    }
}

impl Op {
    /// The operation's name, as messages and metrics spell it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Exists => "exists",
            Op::Evict => "evict",
            Op::Put => "put",
            Op::Limits => "limits",
            Op::Stats => "stats",
        }
    }

    /// The name of the operation byte `byte`, or `malformed`.
    pub(crate) fn name_of_byte(byte: u8) -> &'static str {
        Op::from_byte(byte).map_or("malformed", Op::name)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The outcome a reply reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Done; for `GET` the payload frame holds the object.
    Ok = 0,
    /// No object is stored under the id.
    NotFound = 1,
    /// The request was malformed or refused; the payload frame says why.
    Error = 2,
    /// The object is larger than a maximum message size (the size field gives it).
    TooLarge = 3,
    /// Storing the object would exceed the peer's byte quota (the size field gives it).
    OverQuota = 4,
    /// The request did not prove knowledge of the peer's secret (or was a replay).
    Unauthenticated = 5,
    /// The object is in the peer's shared memory; the payload frame is its descriptor
    /// (only in answer to a `GET` with [`FLAG_SHARED_MEMORY`]).
    Shared = 6,
    /// The request names another incarnation of the peer than the one answering (the reply
    /// header gives the answering one's); the payload frame says what that means.
    WrongPeer = 7,
    /// A destructive request in a session the peer does not know (or no longer keeps), or
    /// whose sequence number is not above the last it accepted: open a new session.
    NoSession = 8,
}

impl Status {
    /// The outcome a status byte reports, as metrics spell it.
    pub(crate) fn outcome_of_byte(byte: u8) -> &'static str {
        match Status::from_byte(byte) {
            Some(Status::Ok) => "ok",
            Some(Status::NotFound) => "not_found",
            Some(Status::Error) | None => "error",
            Some(Status::TooLarge) => "too_large",
            Some(Status::OverQuota) => "over_quota",
            Some(Status::Unauthenticated) => "unauthenticated",
            Some(Status::Shared) => "shared",
            Some(Status::WrongPeer) => "wrong_peer",
            Some(Status::NoSession) => "no_session",
        }
    }

    fn from_byte(byte: u8) -> Option<Status> {
        match byte {
            0 => Some(Status::Ok),
            1 => Some(Status::NotFound),
            2 => Some(Status::Error),
            3 => Some(Status::TooLarge),
            4 => Some(Status::OverQuota),
            5 => Some(Status::Unauthenticated),
            6 => Some(Status::Shared),
            7 => Some(Status::WrongPeer),
            8 => Some(Status::NoSession),
            _ => None,
        }
    }
}

/// A decoded header (of a request or a reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// The operation.
    pub(crate) op: Op,
    /// The outcome (always [`Status::Ok`] in requests).
    pub(crate) status: Status,
    /// Request flags ([`FLAG_SHARED_MEMORY`]); 0 in replies.
    pub(crate) flags: u8,
    /// Pairs a reply with its request.
    pub(crate) request_id: u64,
    /// The object's id.
    pub(crate) object_id: u128,
    /// Payload length, accepted size or limit (see the module documentation).
    pub(crate) size: u64,
    /// Microseconds since the Unix epoch on the sender's clock (requests).
    pub(crate) time: u64,
    /// The session a destructive request belongs to (requests), or the session a `LIMITS`
    /// reply opens; 0 for none.
    pub(crate) session: u64,
    /// The client socket's counter (requests).
    pub(crate) sequence: u64,
    /// The destination's incarnation as the client knows it (requests; 0: not known), or
    /// the replying peer's (replies).
    pub(crate) incarnation: u64,
    /// BLAKE3 of the payload frame with a secret, else zeros.
    pub(crate) digest: [u8; DIGEST_LEN],
    /// The proof of the secret, or zeros.
    pub(crate) proof: [u8; PROOF_LEN],
}

/// Why a header frame could not be decoded, with what could still be read of it so that
/// the error reply can be paired with the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HeaderError {
    /// The request id, when the frame was long enough and in a known version.
    pub(crate) request_id: u64,
    /// The object id, when it could be read.
    pub(crate) object_id: u128,
    /// What was wrong, in words.
    pub(crate) message: String,
}

impl Header {
    /// A request header (time, session, sequence, incarnation, digest and proof still zero).
    pub(crate) fn request(op: Op, request_id: u64, object_id: u128) -> Header {
        Header {
            op,
            status: Status::Ok,
            flags: 0,
            request_id,
            object_id,
            size: 0,
            time: 0,
            session: 0,
            sequence: 0,
            incarnation: 0,
            digest: [0; DIGEST_LEN],
            proof: [0; PROOF_LEN],
        }
    }

    /// The header of the reply to `self` with `status` (size 0, no time, session, sequence,
    /// incarnation, digest or proof: the peer fills in its incarnation, and with a secret the
    /// digest and, last, the proof over the encoded reply).
    pub(crate) fn reply(&self, status: Status) -> Header {
        Header {
            status,
            flags: 0,
            size: 0,
            time: 0,
            session: 0,
            sequence: 0,
            incarnation: 0,
            digest: [0; DIGEST_LEN],
            proof: [0; PROOF_LEN],
            ..*self
        }
    }

    /// The header's bytes.
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = encode_raw(self.op as u8, self.status, self.request_id, self.object_id);
        out[6] = self.flags;
        out[32..40].copy_from_slice(&self.size.to_le_bytes());
        out[40..48].copy_from_slice(&self.time.to_le_bytes());
        out[48..56].copy_from_slice(&self.session.to_le_bytes());
        out[56..64].copy_from_slice(&self.sequence.to_le_bytes());
        out[64..72].copy_from_slice(&self.incarnation.to_le_bytes());
        out[80..112].copy_from_slice(&self.digest);
        out[112..144].copy_from_slice(&self.proof);
        out
    }

    /// Reads a header frame received from the network (never panics).
    pub(crate) fn decode(frame: &[u8]) -> Result<Header, HeaderError> {
        let fail = |request_id, object_id, message: String| HeaderError {
            request_id,
            object_id,
            message,
        };
        if frame.len() < 4 || frame[..3] != MAGIC {
            return Err(fail(
                0,
                0,
                format!(
                    "not a proxy-core peer message ({} byte header frame without the magic bytes)",
                    frame.len()
                ),
            ));
        }
        if frame[3] != VERSION {
            return Err(fail(
                0,
                0,
                format!(
                    "unsupported wire version {} (this peer speaks version {VERSION})",
                    frame[3]
                ),
            ));
        }
        let Ok(fixed) = <&[u8; HEADER_LEN]>::try_from(frame) else {
            return Err(fail(
                0,
                0,
                format!(
                    "header frame is {} bytes, expected {HEADER_LEN}",
                    frame.len()
                ),
            ));
        };
        let request_id = u64::from_le_bytes(read_array(fixed, 8));
        let object_id = u128::from_le_bytes(read_array(fixed, 16));
        let Some(op) = Op::from_byte(fixed[4]) else {
            return Err(fail(
                request_id,
                object_id,
                format!("unknown operation {}", fixed[4]),
            ));
        };
        let Some(status) = Status::from_byte(fixed[5]) else {
            return Err(fail(
                request_id,
                object_id,
                format!("unknown status {}", fixed[5]),
            ));
        };
        if fixed[6] & !KNOWN_FLAGS != 0 {
            return Err(fail(
                request_id,
                object_id,
                format!("unknown flags {:#04x}", fixed[6] & !KNOWN_FLAGS),
            ));
        }
        if fixed[7] != 0 {
            return Err(fail(
                request_id,
                object_id,
                format!("reserved byte is {}, not zero", fixed[7]),
            ));
        }
        if fixed[72..80] != [0; 8] {
            return Err(fail(
                request_id,
                object_id,
                "reserved bytes 72..80 are not zero".to_string(),
            ));
        }
        Ok(Header {
            op,
            status,
            flags: fixed[6],
            request_id,
            object_id,
            size: u64::from_le_bytes(read_array(fixed, 32)),
            time: u64::from_le_bytes(read_array(fixed, 40)),
            session: u64::from_le_bytes(read_array(fixed, 48)),
            sequence: u64::from_le_bytes(read_array(fixed, 56)),
            incarnation: u64::from_le_bytes(read_array(fixed, 64)),
            digest: read_array(fixed, 80),
            proof: read_array(fixed, 112),
        })
    }
}

/// The header of an error reply to a request whose operation could not be read.
pub(crate) fn error_reply_header(error: &HeaderError) -> [u8; HEADER_LEN] {
    encode_raw(0, Status::Error, error.request_id, error.object_id)
}

fn encode_raw(op: u8, status: Status, request_id: u64, object_id: u128) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[..3].copy_from_slice(&MAGIC);
    out[3] = VERSION;
    out[4] = op;
    out[5] = status as u8;
    out[8..16].copy_from_slice(&request_id.to_le_bytes());
    out[16..32].copy_from_slice(&object_id.to_le_bytes());
    out
}

fn read_array<const N: usize>(frame: &[u8; HEADER_LEN], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&frame[at..at + N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn headers_round_trip() {
        let mut header = Header::request(Op::Put, 0x0102_0304_0506_0708, u128::MAX - 5);
        header.size = 77;
        header.time = 1_700_000_000_000_000;
        header.session = 0x1111;
        header.sequence = 0x2222;
        header.incarnation = 0x3333;
        header.digest = [4; DIGEST_LEN];
        header.proof = [9; PROOF_LEN];
        let bytes = header.encode();
        assert_eq!(&bytes[..4], b"PXZ\x04");
        assert_eq!(&bytes[48..50], &[0x11, 0x11]);
        assert_eq!(&bytes[56..58], &[0x22, 0x22]);
        assert_eq!(&bytes[64..66], &[0x33, 0x33]);
        assert_eq!(&bytes[80..112], &[4; DIGEST_LEN]);
        assert_eq!(Header::decode(&bytes), Ok(header));
        let reply = header.reply(Status::NotFound);
        assert_eq!(Header::decode(&reply.encode()), Ok(reply));
        assert_eq!(
            (reply.size, reply.time, reply.proof),
            (0, 0, [0; PROOF_LEN])
        );
        assert_eq!(
            (
                reply.session,
                reply.sequence,
                reply.incarnation,
                reply.digest
            ),
            (0, 0, 0, [0; DIGEST_LEN])
        );
    }

    #[test]
    fn bad_headers_are_errors_with_what_could_be_read() {
        assert!(Header::decode(b"").is_err());
        assert!(Header::decode(b"hello world, not a header at all").is_err());
        let good = Header::request(Op::Get, 42, 7).encode();
        let truncated = Header::decode(&good[..20]).expect_err("truncated");
        assert!(
            truncated.message.contains("20 bytes"),
            "{}",
            truncated.message
        );

        let mut version = good;
        version[3] = 9;
        let err = Header::decode(&version).expect_err("version");
        assert!(err.message.contains("version 9"), "{}", err.message);

        let mut op = good;
        op[4] = 7;
        let err = Header::decode(&op).expect_err("op 7");
        assert!(err.message.contains("operation 7"), "{}", err.message);
        op[4] = 77;
        let err = Header::decode(&op).expect_err("op");
        assert_eq!((err.request_id, err.object_id), (42, 7));
        assert!(err.message.contains("operation 77"), "{}", err.message);

        let mut status = good;
        status[5] = 9;
        assert!(Header::decode(&status).is_err());

        let mut flags = good;
        flags[6] = 2;
        let err = Header::decode(&flags).expect_err("unknown flag");
        assert!(err.message.contains("flags"), "{}", err.message);
        flags[6] = FLAG_SHARED_MEMORY;
        assert_eq!(
            Header::decode(&flags).map(|h| h.flags),
            Ok(FLAG_SHARED_MEMORY)
        );

        let mut reserved = good;
        reserved[7] = 1;
        let err = Header::decode(&reserved).expect_err("reserved");
        assert!(err.message.contains("reserved"), "{}", err.message);
        let mut reserved = good;
        reserved[75] = 1;
        let err = Header::decode(&reserved).expect_err("reserved 72..80");
        assert!(err.message.contains("reserved"), "{}", err.message);

        let mut long = good.to_vec();
        long.push(0);
        assert!(Header::decode(&long).is_err());
    }

    fn any_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::Get),
            Just(Op::Exists),
            Just(Op::Evict),
            Just(Op::Put),
            Just(Op::Limits),
            Just(Op::Stats)
        ]
    }

    fn any_status() -> impl Strategy<Value = Status> {
        (0u8..9).prop_map(|b| Status::from_byte(b).unwrap_or(Status::Error))
    }

    proptest! {
        /// Any byte string decodes without panicking, and whatever decodes re-encodes to
        /// the same bytes (the decoder accepts nothing it would not write).
        #[test]
        fn decoding_arbitrary_bytes_never_panics(frame in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(header) = Header::decode(&frame) {
                prop_assert_eq!(&header.encode()[..], &frame[..]);
            }
        }

        /// Valid headers with some bytes changed: decoded exactly when the change keeps
        /// every field valid, and then to what the bytes say.
        #[test]
        fn mutated_headers_decode_to_their_bytes_or_fail(
            op in any_op(),
            status in any_status(),
            request_id in any::<u64>(),
            object_id in any::<u128>(),
            size in any::<u64>(),
            shared in any::<bool>(),
            flips in proptest::collection::vec((0usize..HEADER_LEN, any::<u8>()), 0..4),
        ) {
            let mut header = Header::request(op, request_id, object_id);
            header.status = status;
            header.size = size;
            header.flags = if shared { FLAG_SHARED_MEMORY } else { 0 };
            let mut bytes = header.encode();
            prop_assert_eq!(Header::decode(&bytes), Ok(header));
            for (at, value) in flips {
                bytes[at] = value;
            }
            let valid = bytes[..3] == MAGIC
                && bytes[3] == VERSION
                && Op::from_byte(bytes[4]).is_some()
                && Status::from_byte(bytes[5]).is_some()
                && bytes[6] & !KNOWN_FLAGS == 0
                && bytes[7] == 0
                && bytes[72..80] == [0; 8];
            match Header::decode(&bytes) {
                Ok(decoded) => {
                    prop_assert!(valid);
                    prop_assert_eq!(decoded.encode(), bytes);
                }
                Err(error) => {
                    prop_assert!(!valid);
                    prop_assert!(!error.message.is_empty());
                }
            }
        }
    }
}
