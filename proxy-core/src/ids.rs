//! Generation of object identifiers that are unique across threads, processes and machines.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn random_u64(salt: u64) -> u64 {
    // `RandomState` is seeded from the operating system's randomness; mixing in a process-wide
    // counter, the process id and the clock makes two draws differ even with equal seeds.
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(salt);
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    hasher.write_u128(nanos);
    hasher.finish()
}

thread_local! {
    /// This thread's random 128-bit base, drawn once, and a counter of ids made from it.
    static BASE: Cell<(u64, u64, u64)> =
        Cell::new((random_u64(0x5eed_0001), random_u64(0x5eed_0002), 0));
}

/// A bijective mixer (splitmix64's finalizer): distinct inputs give distinct outputs.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A new random 128-bit identifier.
///
/// The high half is the thread's random base; the low half mixes the thread's other base
/// word with a counter, so ids of one thread never repeat and ids of different threads or
/// processes collide only if their 64-bit random bases do.
pub(crate) fn new_id() -> u128 {
    BASE.with(|base| {
        let (high, low, count) = base.get();
        base.set((high, low, count.wrapping_add(1)));
        (u128::from(high) << 64) | u128::from(mix(low.wrapping_add(count)))
    })
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
}
