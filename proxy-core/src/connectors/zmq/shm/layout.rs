//! The layout of a shared memory segment, as both its owner and its readers see it.
//!
//! ```text
//! 0..8     magic  b"PXZSHM\0\x01"
//! 8..24    token  u128: random, also in every descriptor of the segment (proves that the
//!                 file a reader opened is the one the descriptor meant)
//! 24..32   slot size (u64)       32..40  slot count (u64)     40..48  data offset (u64)
//! 48..56   retired (atomic u64): 0 while the owner uses the segment, 1 once it let go of it
//!          (readers then drop their cached mapping when no object of theirs uses it)
//! 64..     slot table: per slot 16 bytes, [generation u64][pins u64], both atomics
//! data offset..  the slots, each `slot size` bytes, page aligned
//! ```
//!
//! All integers little endian; the table's words are only accessed atomically.

use std::sync::atomic::AtomicU64;

use super::sys::Mapping;

const MAGIC: [u8; 8] = *b"PXZSHM\x00\x01";
const TABLE_OFFSET: u64 = 64;
const ENTRY_LEN: u64 = 16;
/// Slots and the data area start on a page boundary.
pub(crate) const PAGE: u64 = 4096;

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
    /// The layout of a segment of `slot_count` slots of `slot_size` bytes.
    pub(crate) fn new(slot_size: u64, slot_count: u64) -> Layout {
        let table_end = TABLE_OFFSET + ENTRY_LEN * slot_count;
        Layout {
            slot_size,
            slot_count,
            data_offset: table_end.div_ceil(PAGE) * PAGE,
        }
    }

    /// The segment's size in bytes.
    pub(crate) fn total_len(&self) -> u64 {
        self.data_offset + self.slot_size * self.slot_count
    }

    /// Where slot `slot` starts.
    pub(crate) fn slot_offset(&self, slot: u64) -> u64 {
        self.data_offset + self.slot_size * slot
    }

    /// Writes the header into a new segment (before anyone else can know of it).
    pub(crate) fn write_header(&self, mapping: &Mapping, token: u128) {
        let mut header = [0u8; TABLE_OFFSET as usize];
        header[..8].copy_from_slice(&MAGIC);
        header[8..24].copy_from_slice(&token.to_le_bytes());
        header[24..32].copy_from_slice(&self.slot_size.to_le_bytes());
        header[32..40].copy_from_slice(&self.slot_count.to_le_bytes());
        header[40..48].copy_from_slice(&self.data_offset.to_le_bytes());
        // SAFETY: the mapping is at least a page long (the data offset is a page); nobody
        // else has seen this segment yet.
        unsafe {
            std::ptr::copy_nonoverlapping(header.as_ptr(), mapping.as_ptr(), header.len());
        }
        for slot in 0..self.slot_count {
            // Generations start at 1; 0 is never a live object's generation.
            if let Some(generation) = generation(mapping, slot) {
                generation.store(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    }

    /// Reads and checks the header of a segment a reader mapped: the magic, the `token` the
    /// descriptor gave, and a layout that fits in the mapping. Never trusts the numbers.
    pub(crate) fn read_header(mapping: &Mapping, token: u128) -> Result<Layout, String> {
        let header = mapping
            .slice(0, TABLE_OFFSET)
            .ok_or_else(|| format!("segment of {} bytes has no header", mapping.len()))?;
        let word = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&header[at..at + 8]);
            u64::from_le_bytes(bytes)
        };
        if header[..8] != MAGIC {
            return Err("not a proxy-core shared memory segment (bad magic)".to_string());
        }
        let mut found = [0u8; 16];
        found.copy_from_slice(&header[8..24]);
        if u128::from_le_bytes(found) != token {
            return Err("segment token does not match the descriptor".to_string());
        }
        let layout = Layout::new(word(24), word(32));
        let total = layout
            .slot_size
            .checked_mul(layout.slot_count)
            .and_then(|data| data.checked_add(layout.data_offset));
        let fits = total.is_some_and(|total| total <= mapping.len() as u64);
        if !fits || word(40) != layout.data_offset || !layout.slot_size.is_multiple_of(PAGE) {
            return Err(format!(
                "segment header is inconsistent ({} slots of {} bytes from {} in {} bytes)",
                layout.slot_count,
                layout.slot_size,
                word(40),
                mapping.len()
            ));
        }
        Ok(layout)
    }
}

/// The segment's retired flag (see the module documentation).
pub(crate) fn retired(mapping: &Mapping) -> Option<&AtomicU64> {
    mapping.atomic_u64(48)
}

/// Slot `slot`'s generation: bumped each time the slot is freed, so a descriptor made for
/// an earlier object no longer matches.
pub(crate) fn generation(mapping: &Mapping, slot: u64) -> Option<&AtomicU64> {
    mapping.atomic_u64(TABLE_OFFSET.checked_add(slot.checked_mul(ENTRY_LEN)?)?)
}

/// Slot `slot`'s pin count: how many readers in other processes hold its bytes.
pub(crate) fn pins(mapping: &Mapping, slot: u64) -> Option<&AtomicU64> {
    mapping.atomic_u64(
        TABLE_OFFSET
            .checked_add(slot.checked_mul(ENTRY_LEN)?)?
            .checked_add(8)?,
    )
}
