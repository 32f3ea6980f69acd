//! The descriptor a peer sends instead of an object's bytes: where a reader on the same
//! machine finds them in shared memory. It is the payload frame of a `GET` reply with status
//! `SHARED` (see [`wire`](super::super::wire)), exactly [`DESCRIPTOR_LEN`] bytes, integers
//! little endian:
//!
//! | bytes  | field       | meaning                                                     |
//! |--------|-------------|-------------------------------------------------------------|
//! | 0..16  | boot        | digest of the owner's `/proc/sys/kernel/random/boot_id`     |
//! | 16..20 | pid         | the owning process                                          |
//! | 20..24 | fd          | its descriptor of the segment (open `/proc/PID/fd/FD`)      |
//! | 24..40 | token       | the segment's random token (also in the segment's header)  |
//! | 40..48 | segment len | the segment file's size                                     |
//! | 48..56 | slot        | the slot index in the segment                               |
//! | 56..64 | generation  | the slot's generation when the object was stored           |
//! | 64..72 | offset      | where the object starts in the segment                      |
//! | 72..80 | length      | the object's length                                         |
//!
//! Descriptors come from the network: [`Descriptor::decode`] checks only the length; the
//! reader checks every number against the segment it maps before reading a byte.

/// Size of an encoded descriptor.
pub(crate) const DESCRIPTOR_LEN: usize = 80;

/// Where an object lives in its owner's shared memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Descriptor {
    /// Digest of the owner's boot id.
    pub(crate) boot: [u8; 16],
    /// The owning process.
    pub(crate) pid: u32,
    /// The owner's descriptor of the segment file.
    pub(crate) fd: u32,
    /// The segment's random token.
    pub(crate) token: u128,
    /// The segment file's size.
    pub(crate) segment_len: u64,
    /// The slot the object occupies.
    pub(crate) slot: u64,
    /// The slot's generation when the object was stored.
    pub(crate) generation: u64,
    /// The object's first byte in the segment.
    pub(crate) offset: u64,
    /// The object's length.
    pub(crate) len: u64,
}

impl Descriptor {
    /// The descriptor's bytes.
    pub(crate) fn encode(&self) -> [u8; DESCRIPTOR_LEN] {
        let mut out = [0u8; DESCRIPTOR_LEN];
        out[..16].copy_from_slice(&self.boot);
        out[16..20].copy_from_slice(&self.pid.to_le_bytes());
        out[20..24].copy_from_slice(&self.fd.to_le_bytes());
        out[24..40].copy_from_slice(&self.token.to_le_bytes());
        out[40..48].copy_from_slice(&self.segment_len.to_le_bytes());
        out[48..56].copy_from_slice(&self.slot.to_le_bytes());
        out[56..64].copy_from_slice(&self.generation.to_le_bytes());
        out[64..72].copy_from_slice(&self.offset.to_le_bytes());
        out[72..80].copy_from_slice(&self.len.to_le_bytes());
        out
    }

    /// Reads a descriptor received from the network (never panics).
    pub(crate) fn decode(bytes: &[u8]) -> Result<Descriptor, String> {
        let Ok(fixed) = <&[u8; DESCRIPTOR_LEN]>::try_from(bytes) else {
            return Err(format!(
                "shared memory descriptor is {} bytes, expected {DESCRIPTOR_LEN}",
                bytes.len()
            ));
        };
        let take = |at: usize, out: &mut [u8]| out.copy_from_slice(&fixed[at..at + out.len()]);
        let u32_at = |at| {
            let mut b = [0u8; 4];
            take(at, &mut b);
            u32::from_le_bytes(b)
        };
        let u64_at = |at| {
            let mut b = [0u8; 8];
            take(at, &mut b);
            u64::from_le_bytes(b)
        };
        let mut boot = [0u8; 16];
        take(0, &mut boot);
        let mut token = [0u8; 16];
        take(24, &mut token);
        Ok(Descriptor {
            boot,
            pid: u32_at(16),
            fd: u32_at(20),
            token: u128::from_le_bytes(token),
            segment_len: u64_at(40),
            slot: u64_at(48),
            generation: u64_at(56),
            offset: u64_at(64),
            len: u64_at(72),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn descriptors_round_trip_and_wrong_lengths_are_errors() {
        let descriptor = Descriptor {
            boot: [7; 16],
            pid: 4242,
            fd: 17,
            token: u128::MAX - 3,
            segment_len: 16 << 20,
            slot: 3,
            generation: 9,
            offset: 4096 + 3 * (1 << 20),
            len: (1 << 20) + 8,
        };
        assert_eq!(Descriptor::decode(&descriptor.encode()), Ok(descriptor));
        assert!(Descriptor::decode(&descriptor.encode()[..79]).is_err());
        assert!(Descriptor::decode(&[0u8; 81]).is_err());
        assert!(Descriptor::decode(b"").is_err());
    }

    proptest! {
        #[test]
        fn any_80_bytes_decode_and_reencode_to_themselves(bytes in proptest::collection::vec(any::<u8>(), DESCRIPTOR_LEN)) {
            let decoded = Descriptor::decode(&bytes).expect("80 bytes decode");
            prop_assert_eq!(&decoded.encode()[..], &bytes[..]);
        }
    }
}
