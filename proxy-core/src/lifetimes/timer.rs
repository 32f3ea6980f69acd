//! The one timer thread that ends every lease of the process when it expires.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use super::lease::Lease;

/// Leases by deadline. The thread sleeps until the earliest one; a lease extended since it
/// was queued goes back with its new deadline (an extension only postpones, so the queue
/// never has to be searched).
struct Timer {
    queue: Mutex<Queue>,
    changed: Condvar,
}

#[derive(Default)]
struct Queue {
    due: BinaryHeap<Reverse<Due>>,
    /// Whether the thread runs (a failed start is retried by the next lease).
    running: bool,
    next_seq: u64,
}

struct Due {
    at: Instant,
    /// Ties broken by arrival, so that `Ord` never looks at the lease.
    seq: u64,
    lease: Arc<Lease>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

fn timer() -> &'static Timer {
    static TIMER: OnceLock<Timer> = OnceLock::new();
    TIMER.get_or_init(|| Timer {
        queue: Mutex::new(Queue::default()),
        changed: Condvar::new(),
    })
}

impl Timer {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(queue: &mut Queue, at: Instant, lease: Arc<Lease>) {
        let seq = queue.next_seq;
        queue.next_seq += 1;
        queue.due.push(Reverse(Due { at, seq, lease }));
    }

    fn run(&'static self) {
        let mut queue = self.lock();
        loop {
            let now = Instant::now();
            let next = queue.due.peek().map(|Reverse(due)| due.at);
            match next {
                None => {
                    queue = self.changed.wait(queue).unwrap_or_else(|p| p.into_inner());
                }
                Some(at) if at > now => {
                    queue = self
                        .changed
                        .wait_timeout(queue, at - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                Some(_) => {
                    let Some(Reverse(due)) = queue.due.pop() else {
                        continue;
                    };
                    // Evict without the queue's lock: new leases must not wait for a slow
                    // store. Later leases wait for it, though: an eviction is one request.
                    drop(queue);
                    let lease = due.lease;
                    let later = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        lease.expire_if_due()
                    }))
                    .unwrap_or_else(|_| {
                        tracing::warn!(lease = %lease.name(), "a lease's eviction panicked");
                        None
                    });
                    queue = self.lock();
                    if let Some(at) = later {
                        Self::push(&mut queue, at, lease);
                    }
                }
            }
        }
    }
}

/// Queues `lease` to be looked at on `at` (its deadline then), starting the timer thread
/// if it is not running yet.
pub(super) fn schedule(at: Instant, lease: Arc<Lease>) {
    let timer = timer();
    let mut queue = timer.lock();
    Timer::push(&mut queue, at, lease);
    if !queue.running {
        let spawned = std::thread::Builder::new()
            .name("proxy-lease-timer".into())
            .spawn(move || timer.run());
        match spawned {
            Ok(_) => queue.running = true,
            Err(error) => tracing::warn!(
                %error,
                "could not start the lease timer thread: leases end only when closed, until \
                 a later lease starts it"
            ),
        }
    }
    drop(queue);
    timer.changed.notify_one();
}
