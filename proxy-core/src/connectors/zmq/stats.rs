//! [`PeerStats`]: what a peer holds and has refused, and its fixed wire layout (the payload
//! of a `STATS` reply, see [`wire`](super::wire)).

/// Length of a `STATS` reply's payload: [`FIELDS`] little-endian `u64`s.
pub(crate) const STATS_LEN: usize = FIELDS * 8;
/// Fields of the payload, in order.
const FIELDS: usize = 12;

/// A peer server's counters, as [`ZmqConnector::peer_stats`](super::ZmqConnector::peer_stats)
/// reports them (one `STATS` request, answered from counters the server keeps: no scan of
/// its objects).
///
/// Fields may be added in later versions, so the struct cannot be built outside this crate;
/// read its fields.
///
/// ```
/// use bytes::Bytes;
/// use proxy_core::{Connector, ZmqConnector};
///
/// let peer = ZmqConnector::new()?;
/// peer.put(Bytes::from_static(b"four"))?;
/// let stats = peer.peer_stats(peer.endpoint().unwrap())?;
/// assert_eq!((stats.objects, stats.bytes), (1, 4));
/// # Ok::<(), proxy_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PeerStats {
    /// Objects the peer holds (its own puts and those other processes stored on it).
    pub objects: u64,
    /// Bytes of those objects.
    pub bytes: u64,
    /// Requests the peer refused: malformed, unauthenticated, too large, over quota, or
    /// otherwise answered with an error.
    pub rejected_requests: u64,
    /// Requests from other processes the peer has answered, refused ones included (the
    /// `STATS` request being answered is not yet counted).
    pub requests: u64,
    /// Bytes of the objects other processes stored on the peer (remote puts), wherever they
    /// are (heap or shared memory).
    pub remote_bytes: u64,
    /// The quota: most bytes the peer holds for remote puts
    /// ([`ZmqOptions::with_max_bytes`](super::ZmqOptions::with_max_bytes)).
    pub max_bytes: u64,
    /// The largest message the peer accepts, in bytes
    /// ([`ZmqOptions::with_max_message_size`](super::ZmqOptions::with_max_message_size)).
    pub max_message_size: u64,
    /// Bytes of objects the peer holds in same-host shared memory (0 when it is off).
    pub shared_memory_bytes: u64,
    /// Bytes of shared memory segments the peer holds (held objects, their rounding to size
    /// classes, and free slots kept for reuse; a segment unused for the idle time,
    /// [`ZmqOptions::with_shared_memory_idle`](super::ZmqOptions::with_shared_memory_idle),
    /// is returned to the operating system).
    pub shared_memory_reserved: u64,
    /// Of those, bytes of the segments made for objects other processes stored on the
    /// peer: part of [`quota_used`](Self::quota_used).
    pub shared_memory_remote_reserved: u64,
    /// The most bytes of shared memory segments the peer holds
    /// ([`ZmqOptions::with_shared_memory_capacity`](super::ZmqOptions::with_shared_memory_capacity);
    /// 0 when shared memory is off).
    pub shared_memory_capacity: u64,
    /// What remote puts are charged against [`max_bytes`](Self::max_bytes) now: 320 bytes
    /// per object, the bytes of those on the heap, and
    /// [`shared_memory_remote_reserved`](Self::shared_memory_remote_reserved).
    pub quota_used: u64,
}

impl PeerStats {
    /// The payload bytes: the fields in declaration order, each a little-endian `u64`.
    pub(crate) fn encode(&self) -> [u8; STATS_LEN] {
        let fields = [
            self.objects,
            self.bytes,
            self.rejected_requests,
            self.requests,
            self.remote_bytes,
            self.max_bytes,
            self.max_message_size,
            self.shared_memory_bytes,
            self.shared_memory_reserved,
            self.shared_memory_remote_reserved,
            self.shared_memory_capacity,
            self.quota_used,
        ];
        let mut out = [0u8; STATS_LEN];
        for (chunk, field) in out.chunks_exact_mut(8).zip(fields) {
            chunk.copy_from_slice(&field.to_le_bytes());
        }
        out
    }

    /// Reads a payload received from the network: exactly [`STATS_LEN`] bytes, else an
    /// error in words (never panics).
    pub(crate) fn decode(payload: &[u8]) -> Result<PeerStats, String> {
        if payload.len() != STATS_LEN {
            return Err(format!(
                "stats payload is {} bytes, expected {STATS_LEN}",
                payload.len()
            ));
        }
        let mut fields = [0u64; FIELDS];
        for (field, chunk) in fields.iter_mut().zip(payload.chunks_exact(8)) {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(chunk);
            *field = u64::from_le_bytes(bytes);
        }
        let [objects, bytes, rejected_requests, requests, remote_bytes, max_bytes, max_message_size, shared_memory_bytes, shared_memory_reserved, shared_memory_remote_reserved, shared_memory_capacity, quota_used] =
            fields;
        Ok(PeerStats {
            objects,
            bytes,
            rejected_requests,
            requests,
            remote_bytes,
            max_bytes,
            max_message_size,
            shared_memory_bytes,
            shared_memory_reserved,
            shared_memory_remote_reserved,
            shared_memory_capacity,
            quota_used,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_layout_is_fixed() {
        let stats = PeerStats {
            objects: 1,
            bytes: 0x0203,
            rejected_requests: 3,
            requests: 4,
            remote_bytes: 5,
            max_bytes: u64::MAX,
            max_message_size: 7,
            shared_memory_bytes: 8,
            shared_memory_reserved: 9,
            shared_memory_remote_reserved: 10,
            shared_memory_capacity: 11,
            quota_used: 12,
        };
        let bytes = stats.encode();
        assert_eq!(bytes.len(), 96);
        assert_eq!(&bytes[..8], &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[8..16], &[3, 2, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[16..24], &3u64.to_le_bytes());
        assert_eq!(&bytes[24..32], &4u64.to_le_bytes());
        assert_eq!(&bytes[32..40], &5u64.to_le_bytes());
        assert_eq!(&bytes[40..48], &[0xff; 8]);
        assert_eq!(&bytes[48..56], &7u64.to_le_bytes());
        assert_eq!(&bytes[56..64], &8u64.to_le_bytes());
        assert_eq!(&bytes[64..72], &9u64.to_le_bytes());
        assert_eq!(&bytes[72..80], &10u64.to_le_bytes());
        assert_eq!(&bytes[80..88], &11u64.to_le_bytes());
        assert_eq!(&bytes[88..96], &12u64.to_le_bytes());
        assert_eq!(PeerStats::decode(&bytes), Ok(stats));
    }

    #[test]
    fn short_and_long_payloads_are_errors() {
        let bytes = PeerStats::default().encode();
        for len in [0, 1, 8, STATS_LEN - 1] {
            let err = PeerStats::decode(&bytes[..len]).expect_err("short");
            assert!(err.contains(&format!("{len} bytes")), "{err}");
        }
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(PeerStats::decode(&long).is_err());
    }

    proptest! {
        /// Any bytes decode without panicking; what decodes re-encodes to the same bytes.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(payload in proptest::collection::vec(any::<u8>(), 0..120)) {
            match PeerStats::decode(&payload) {
                Ok(stats) => prop_assert_eq!(&stats.encode()[..], &payload[..]),
                Err(message) => prop_assert!(payload.len() != STATS_LEN && !message.is_empty()),
            }
        }
    }
}
