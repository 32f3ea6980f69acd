//! Object identifiers: 128 bits from the operating system's cryptographically secure
//! generator, so that one key tells nothing about any other.
//!
//! A key is a capability (whoever holds it can read and evict the object), so ids must not be
//! guessable from each other. Each thread keeps a buffer of [`IDS_PER_REFILL`] ids filled by
//! one `getrandom` call, which keeps a local `put` cheap (a refill of 1 KiB costs about a
//! microsecond, shared by 64 ids). Two ids collide with probability about n²/2¹²⁹.

use std::cell::RefCell;

/// Ids drawn from the OS per refill of a thread's buffer.
const IDS_PER_REFILL: usize = 64;

/// A thread's unused random ids.
struct IdBuffer {
    ids: [u128; IDS_PER_REFILL],
    next: usize,
}

thread_local! {
    static BUFFER: RefCell<IdBuffer> = const {
        RefCell::new(IdBuffer { ids: [0; IDS_PER_REFILL], next: IDS_PER_REFILL })
    };
}

/// `IDS_PER_REFILL` ids straight from the operating system.
fn draw() -> [u128; IDS_PER_REFILL] {
    let mut bytes = [0u8; IDS_PER_REFILL * 16];
    if let Err(error) = getrandom::fill(&mut bytes) {
        // Without the OS generator there is no safe way to make a key: stop rather than hand
        // out guessable ones. (Linux's getrandom(2) does not fail once the pool is seeded.)
        panic!("the operating system's random number generator failed: {error}");
    }
    let mut ids = [0u128; IDS_PER_REFILL];
    for (id, chunk) in ids.iter_mut().zip(bytes.chunks_exact(16)) {
        let mut word = [0u8; 16];
        word.copy_from_slice(chunk);
        *id = u128::from_le_bytes(word);
    }
    ids
}

/// A new identifier: 128 bits from the OS's cryptographically secure generator.
pub(crate) fn new_id() -> u128 {
    let from_buffer = BUFFER.try_with(|buffer| {
        let mut buffer = buffer.borrow_mut();
        if buffer.next == IDS_PER_REFILL {
            buffer.ids = draw();
            buffer.next = 0;
        }
        let next = buffer.next;
        // Never keep a handed-out id around.
        let id = std::mem::take(&mut buffer.ids[next]);
        buffer.next = next + 1;
        id
    });
    // During thread teardown the buffer is gone: draw directly.
    from_buffer.unwrap_or_else(|_| draw()[0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_do_not_repeat_across_threads() {
        let handles: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..10_000).map(|_| new_id()).collect::<Vec<_>>()))
            .collect();
        let mut seen = HashSet::new();
        for h in handles {
            for id in h.join().expect("thread panicked") {
                assert!(seen.insert(id), "duplicate id {id:x}");
            }
        }
        assert_eq!(seen.len(), 40_000);
    }

    /// The inverse of splitmix64's finaliser, which the old ids used for their low half.
    fn unmix(mut z: u64) -> u64 {
        z = z ^ (z >> 31) ^ (z >> 62);
        z = z.wrapping_mul(0x3196_42b2_d24d_8ec3);
        z = z ^ (z >> 27) ^ (z >> 54);
        z = z.wrapping_mul(0x96de_1b17_3f11_9089);
        z ^ (z >> 30) ^ (z >> 60)
    }

    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The attack on the old scheme: from one leaked id, predict the next ids of its thread
    /// (same high half, low half `mix(unmix(low) + k)`). It must find none of them now.
    #[test]
    fn one_id_does_not_reveal_its_siblings() {
        assert_eq!(unmix(mix(0x0123_4567_89ab_cdef)), 0x0123_4567_89ab_cdef);
        let leaked = new_id();
        let siblings: HashSet<u128> = (0..1000).map(|_| new_id()).collect();
        let high = leaked >> 64;
        let base = unmix(leaked as u64);
        let guesses: Vec<u128> = (1..=1000u64)
            .map(|k| (high << 64) | u128::from(mix(base.wrapping_add(k))))
            .collect();
        let found = guesses.iter().filter(|g| siblings.contains(g)).count();
        assert_eq!(found, 0, "the old inversion still predicts ids");
        assert!(
            siblings.iter().all(|id| id >> 64 != high),
            "ids share their high half"
        );
    }
}
