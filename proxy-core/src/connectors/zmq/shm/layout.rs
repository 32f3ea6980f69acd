//! The layout of a shared memory segment, as both its owner and its readers see it.
//!
//! ```text
//! 0..8     magic  b"PXZSHM\0\x03"
//! 8..24    token  u128: random, also in every descriptor of the segment (proves that the
//!                 file a reader opened is the one the descriptor meant)
//! 24..32   slot size (u64)       32..40  slot count (u64)     40..48  data offset (u64)
//! 48..56   retired (atomic u64): 0 while the owner uses the segment, 1 once it let go of it
//!          (readers then drop their cached mapping when no object of theirs uses it)
//! 56..64   the owner's process id (u64)
//! 64..     slot table: per slot 40 bytes, all atomics:
//!          [generation u64][pins u64][object id, low u64][object id, high u64][length u64]
//! data offset..  the slots, each `slot size` bytes, page aligned
//! ```
//!
//! All integers little endian; every word is only accessed atomically (readers load the
//! header's words with atomic loads too: the owner may store `retired` at any time).
//!
//! A slot's generation is odd while the slot is free or being written and even while it
//! holds a finished object: the owner stores the object id and then the even generation
//! (and its length) with `Release` ordering after copying the bytes in, and makes it odd again (the next odd
//! number) before it may reuse the slot. A reader pins the slot, loads the generation
//! (`SeqCst`, which includes `Acquire`), and accepts it only when it is even, equal to its
//! descriptor's, and the slot's object id is the one it asked for and its length the
//! descriptor's; so a forged or stale descriptor never pins a slot whose bytes are being
//! written, nor reads a finished object cut short or with bytes beyond its end. (Version 3
//! added the length word: a location a proxy carries is not authenticated, unlike a reply.)

use std::sync::atomic::AtomicU64;

use super::sys::Mapping;

const MAGIC: [u8; 8] = *b"PXZSHM\x00\x03";
const TABLE_OFFSET: u64 = 64;
const ENTRY_LEN: u64 = 40;
/// Slots and the data area start on a page boundary.
pub(crate) const PAGE: u64 = 4096;
/// Most slots in one segment (its slot table then fits in one page).
pub(crate) const MAX_SLOTS: u64 = 64;

/// Where the parts of a segment are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Bytes per slot (a multiple of [`PAGE`]).
    pub(crate) slot_size: u64,
    /// Slots in the segment.
    pub(crate) slot_count: u64,
    /// Where slot 0 starts.
    pub(crate) data_offset: u64,
}

impl Layout {
    /// The layout of a segment of `slot_count` slots of `slot_size` bytes, or `None` when
    /// that is no segment: no slots or more than [`MAX_SLOTS`], a slot size that is 0 or
    /// not a page multiple, or a total that does not fit in 64 bits.
    pub(crate) fn new(slot_size: u64, slot_count: u64) -> Option<Layout> {
        if slot_size == 0
            || !slot_size.is_multiple_of(PAGE)
            || !(1..=MAX_SLOTS).contains(&slot_count)
        {
            return None;
        }
        let table_end = TABLE_OFFSET.checked_add(ENTRY_LEN.checked_mul(slot_count)?)?;
        let layout = Layout {
            slot_size,
            slot_count,
            data_offset: table_end.div_ceil(PAGE).checked_mul(PAGE)?,
        };
        layout.checked_total()?;
        Some(layout)
    }

    fn checked_total(&self) -> Option<u64> {
        self.slot_size
            .checked_mul(self.slot_count)?
            .checked_add(self.data_offset)
    }

    /// The segment's size in bytes (checked in [`Layout::new`]).
    pub(crate) fn total_len(&self) -> u64 {
        self.checked_total().unwrap_or(u64::MAX)
    }

    /// Where slot `slot` starts (`slot` is below the slot count).
    pub(crate) fn slot_offset(&self, slot: u64) -> u64 {
        self.data_offset
            .saturating_add(self.slot_size.saturating_mul(slot))
    }

    /// The first bytes of a segment of this layout (before its slot table).
    pub(crate) fn encode_header(&self, token: u128, owner: u32) -> [u8; TABLE_OFFSET as usize] {
        let mut header = [0u8; TABLE_OFFSET as usize];
        header[..8].copy_from_slice(&MAGIC);
        header[8..24].copy_from_slice(&token.to_le_bytes());
        header[24..32].copy_from_slice(&self.slot_size.to_le_bytes());
        header[32..40].copy_from_slice(&self.slot_count.to_le_bytes());
        header[40..48].copy_from_slice(&self.data_offset.to_le_bytes());
        header[56..64].copy_from_slice(&u64::from(owner).to_le_bytes());
        header
    }

    /// Writes the header into a new segment of this process (before anyone else can know
    /// of it); every slot starts free (generation 1).
    pub(crate) fn write_header(&self, mapping: &Mapping, token: u128, owner: u32) {
        let header = self.encode_header(token, owner);
        if mapping.len() < header.len() || !mapping.is_writable() {
            return;
        }
        // SAFETY: the mapping is writable and at least as long as the header (checked
        // above); nobody else has seen this segment yet.
        unsafe {
            std::ptr::copy_nonoverlapping(header.as_ptr(), mapping.as_ptr(), header.len());
        }
        for slot in 0..self.slot_count {
            if let Some(generation) = generation(mapping, slot) {
                generation.store(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    }

    /// Reads and checks the header of a segment a reader mapped (read-only): the magic, the
    /// `token` the descriptor gave, the owner's process id, and a layout that is exactly the
    /// mapping's length. Never trusts the numbers; every word is loaded atomically.
    pub(crate) fn read_header(
        mapping: &Mapping,
        token: u128,
        owner: u32,
    ) -> Result<Layout, String> {
        let word = |at: u64| {
            mapping
                .load_u64(at)
                .ok_or_else(|| format!("segment of {} bytes has no header", mapping.len()))
        };
        if word(0)?.to_le_bytes() != MAGIC {
            return Err("not a proxy-core shared memory segment (bad magic)".to_string());
        }
        let found = u128::from(word(8)?) | (u128::from(word(16)?) << 64);
        if found != token {
            return Err("segment token does not match the descriptor".to_string());
        }
        let claimed = word(56)?;
        if claimed != u64::from(owner) {
            return Err(format!(
                "segment belongs to process {claimed}, not to process {owner} that the descriptor names"
            ));
        }
        let (slot_size, slot_count, data_offset) = (word(24)?, word(32)?, word(40)?);
        let layout = Layout::new(slot_size, slot_count)
            .filter(|layout| layout.data_offset == data_offset)
            .filter(|layout| layout.total_len() == mapping.len() as u64);
        layout.ok_or_else(|| {
            format!(
                "segment header is inconsistent ({slot_count} slots of {slot_size} bytes from \
                 {data_offset} in {} bytes)",
                mapping.len()
            )
        })
    }
}

/// The segment's retired flag (see the module documentation).
pub(crate) fn retired(mapping: &Mapping) -> Option<&AtomicU64> {
    mapping.atomic_u64(48)
}

/// Loads the retired flag from any mapping of the segment (read-only ones too).
pub(crate) fn is_retired(mapping: &Mapping) -> bool {
    mapping.load_u64(48).is_none_or(|flag| flag != 0)
}

fn entry(slot: u64, word: u64) -> Option<u64> {
    TABLE_OFFSET
        .checked_add(slot.checked_mul(ENTRY_LEN)?)?
        .checked_add(word * 8)
}

/// Slot `slot`'s generation (see the module documentation: even while it holds a finished
/// object), in a read-write mapping of the slot table.
pub(crate) fn generation(mapping: &Mapping, slot: u64) -> Option<&AtomicU64> {
    mapping.atomic_u64(entry(slot, 0)?)
}

/// Slot `slot`'s pin count: how many readers in other processes hold its bytes.
pub(crate) fn pins(mapping: &Mapping, slot: u64) -> Option<&AtomicU64> {
    mapping.atomic_u64(entry(slot, 1)?)
}

/// The two words of the id of the object in slot `slot` (low, high).
pub(crate) fn object_id(mapping: &Mapping, slot: u64) -> Option<(&AtomicU64, &AtomicU64)> {
    Some((
        mapping.atomic_u64(entry(slot, 2)?)?,
        mapping.atomic_u64(entry(slot, 3)?)?,
    ))
}

/// The length of the object in slot `slot` (stored with its id, before its generation).
pub(crate) fn object_len(mapping: &Mapping, slot: u64) -> Option<&AtomicU64> {
    mapping.atomic_u64(entry(slot, 4)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_checked_and_never_overflow() {
        let one = Layout::new(PAGE, 1).expect("one slot of a page");
        assert_eq!((one.data_offset, one.total_len()), (PAGE, 2 * PAGE));
        let full = Layout::new(16 << 20, MAX_SLOTS).expect("a full segment");
        assert_eq!(full.data_offset, PAGE, "the slot table fits in one page");
        for (slot_size, slot_count) in [
            (0, 1),
            (0, 1 << 60),
            (PAGE, 0),
            (PAGE, MAX_SLOTS + 1),
            (PAGE + 1, 1),
            (!(PAGE - 1), 2),
            (1 << 62, 8),
        ] {
            assert_eq!(
                Layout::new(slot_size, slot_count),
                None,
                "{slot_size} x {slot_count}"
            );
        }
    }
}
