//! The peer protocol's wire format, version 3.
//!
//! A request is one ZeroMQ multipart message sent by a `DEALER` socket to a peer's `ROUTER`;
//! the reply is one multipart message back. Each message has:
//!
//! 1. a **header frame** of exactly [`HEADER_LEN`] (96) bytes, all integers little endian:
//!
//!    | bytes  | field      | meaning                                                      |
//!    |--------|------------|--------------------------------------------------------------|
//!    | 0..3   | magic      | `b"PXZ"`                                                     |
//!    | 3      | version    | [`VERSION`] (3)                                              |
//!    | 4      | operation  | 1 `GET`, 2 `EXISTS`, 3 `EVICT`, 4 `PUT`, 5 `LIMITS`, 6 `STATS` |
//!    | 5      | status     | requests: 0; replies: see [`Status`]                         |
//!    | 6      | flags      | requests: bit 0 ([`FLAG_SHARED_MEMORY`]), others 0; replies: 0 |
//!    | 7      | reserved   | 0 (a request with anything else is refused)                  |
//!    | 8..16  | request id | chosen by the client, echoed by the reply (u64)              |
//!    | 16..32 | object id  | the [`Key`](crate::Key)'s 128-bit id (u128)                  |
//!    | 32..40 | size       | see below (u64)                                              |
//!    | 40..48 | time       | request: the sender's clock, microseconds since the Unix epoch; reply: 0 |
//!    | 48..64 | nonce      | request: 16 random bytes; reply: 0                           |
//!    | 64..96 | proof      | with a secret: the request's or the reply's MAC (see below); else 0 |
//!
//!    The size field: in a `PUT` request, the payload's length; in a `GET` request, the
//!    largest object the client accepts (its maximum message size); in a `LIMITS` reply, the
//!    peer's maximum message size; in a `TOO LARGE` or `OVER QUOTA` reply, the limit that
//!    refused the request; otherwise 0.
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
//! `BLAKE3-keyed(request key, header[0..64] [‖ BLAKE3(payload)])` and every reply
//! `BLAKE3-keyed(reply key, header[0..64] ‖ request nonce ‖ request proof ‖ has payload (1
//! byte) ‖ [BLAKE3(payload)])`, the two keys derived from the secret with different contexts
//! (see [`auth`](super::auth)). The secret itself never travels. The time and nonce inside a
//! request's proven bytes let a peer refuse replays of destructive requests; the request's
//! nonce and proof inside a reply's proof tie it to that one request, so a client with the
//! secret refuses a reply that was changed, made up, or recorded for another request. A peer
//! proves every reply it sends (objects, descriptors, counters, refusals, error replies to
//! garbage, with the zeros it read as a binding), and a client with a secret refuses any reply
//! without a valid proof (`Error::Protocol`; a refusal of authentication that does not verify
//! is `Error::Unauthenticated`: the peer's secret differs). Version 3 added reply proofs and
//! changed the request proof to cover the payload's digest rather than the payload (the peer
//! keeps the digest of a remote put with the object).
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
pub(crate) const VERSION: u8 = 3;
/// Size of a header frame.
pub(crate) const HEADER_LEN: usize = 96;
/// The part of the header a proof covers (everything before the proof).
pub(crate) const PROVEN_LEN: usize = 64;
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

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Get => "get",
            Op::Exists => "exists",
            Op::Evict => "evict",
            Op::Put => "put",
            Op::Limits => "limits",
            Op::Stats => "stats",
        })
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
}

impl Status {
    fn from_byte(byte: u8) -> Option<Status> {
        match byte {
            0 => Some(Status::Ok),
            1 => Some(Status::NotFound),
            2 => Some(Status::Error),
            3 => Some(Status::TooLarge),
            4 => Some(Status::OverQuota),
            5 => Some(Status::Unauthenticated),
            6 => Some(Status::Shared),
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
    /// Random bytes that make each request unique (requests).
    pub(crate) nonce: [u8; 16],
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
    /// A request header (time, nonce and proof still zero).
    pub(crate) fn request(op: Op, request_id: u64, object_id: u128) -> Header {
        Header {
            op,
            status: Status::Ok,
            flags: 0,
            request_id,
            object_id,
            size: 0,
            time: 0,
            nonce: [0; 16],
            proof: [0; PROOF_LEN],
        }
    }

    /// The header of the reply to `self` with `status` (size 0, no time, nonce or proof: a
    /// peer with a secret writes the proof last, over the encoded reply).
    pub(crate) fn reply(&self, status: Status) -> Header {
        Header {
            status,
            flags: 0,
            size: 0,
            time: 0,
            nonce: [0; 16],
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
        out[48..64].copy_from_slice(&self.nonce);
        out[64..96].copy_from_slice(&self.proof);
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
        Ok(Header {
            op,
            status,
            flags: fixed[6],
            request_id,
            object_id,
            size: u64::from_le_bytes(read_array(fixed, 32)),
            time: u64::from_le_bytes(read_array(fixed, 40)),
            nonce: read_array(fixed, 48),
            proof: read_array(fixed, 64),
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
        header.nonce = [3; 16];
        header.proof = [9; PROOF_LEN];
        let bytes = header.encode();
        assert_eq!(&bytes[..4], b"PXZ\x03");
        assert_eq!(Header::decode(&bytes), Ok(header));
        let reply = header.reply(Status::NotFound);
        assert_eq!(Header::decode(&reply.encode()), Ok(reply));
        assert_eq!(
            (reply.size, reply.time, reply.proof),
            (0, 0, [0; PROOF_LEN])
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
        status[5] = 7;
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
        (0u8..7).prop_map(|b| Status::from_byte(b).unwrap_or(Status::Error))
    }

    proptest! {
        /// Any byte string decodes without panicking, and whatever decodes re-encodes to
        /// the same bytes (the decoder accepts nothing it would not write).
        #[test]
        fn decoding_arbitrary_bytes_never_panics(frame in proptest::collection::vec(any::<u8>(), 0..200)) {
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
                && bytes[7] == 0;
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
