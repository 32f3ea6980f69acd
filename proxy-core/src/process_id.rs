//! This process's id, without a system call per use.
//!
//! The ZeroMQ connector checks on every operation that it is still in the process that made
//! it (a connector inherited through `fork()` must refuse to work, see
//! `ZmqConnector::check_process`). `std::process::id()` is a `getpid` system call each time
//! (glibc stopped caching it), and the in-place write path asked about a dozen times per
//! object: 196,539 calls for 16,384 objects in a scatter run, a tenth of the producer's time
//! at 64 KiB. Here the id is read once and kept; a handler registered with
//! `pthread_atfork` refreshes it in the child of every `fork()` (before the child runs
//! anything else), so a forked child never sees its parent's id.
//!
//! A child made by `vfork()` or a raw `clone` system call runs no fork handlers; such a
//! child may only call `exec` or `_exit`, which is all `std::process::Command` and
//! `posix_spawn` do in it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

/// The id, once read (0 until then: no process has id 0).
static PID: AtomicU32 = AtomicU32::new(0);

/// Registers the fork handler, once per process (a forked child inherits the registration).
static REGISTER: Once = Once::new();

/// In the child of a `fork()`: the new process's id. Only `getpid` and an atomic store,
/// both safe to run in a forked child of a multi-threaded process.
extern "C" fn refresh_in_child() {
    PID.store(read_pid(), Ordering::Relaxed);
}

fn read_pid() -> u32 {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() as u32 }
}

/// This process's id (`getpid`), read from the system once per process.
pub(crate) fn current() -> u32 {
    let pid = PID.load(Ordering::Relaxed);
    if pid != 0 {
        return pid;
    }
    REGISTER.call_once(|| {
        // Registered before the id is kept: a fork after this point refreshes it. If
        // registering fails (out of memory), the id is not kept and every call reads it.
        // SAFETY: the handler is an `extern "C"` function with no arguments that only
        // calls `getpid` and stores an atomic.
        let registered = unsafe { libc::pthread_atfork(None, None, Some(refresh_in_child)) };
        if registered == 0 {
            PID.store(read_pid(), Ordering::Relaxed);
        }
    });
    match PID.load(Ordering::Relaxed) {
        0 => read_pid(),
        pid => pid,
    }
}

/// The value in `slot` if this process made it. A value made by the parent of a `fork()` is
/// taken out and forgotten, never dropped (dropping it could wait for threads or close
/// sockets the child does not have), so the caller makes this process's own and stores it
/// with [`current`]'s id.
pub(crate) fn made_here<T>(slot: &mut Option<(u32, T)>) -> Option<&mut T> {
    if slot
        .as_ref()
        .is_some_and(|(made_in, _)| *made_in != current())
    {
        std::mem::forget(slot.take());
    }
    slot.as_mut().map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_id_is_this_processes() {
        assert_eq!(current(), std::process::id());
        assert_eq!(
            current(),
            std::process::id(),
            "read again from the kept value"
        );
    }

    #[test]
    fn values_made_by_another_process_are_not_handed_out() {
        let mut here = Some((current(), 7));
        assert_eq!(made_here(&mut here), Some(&mut 7));
        let mut inherited = Some((current().wrapping_add(1), 7));
        assert_eq!(made_here(&mut inherited), None);
        assert!(inherited.is_none(), "the inherited value is taken out");
        assert_eq!(made_here::<u8>(&mut None), None);
    }

    #[test]
    fn a_forked_child_sees_its_own_id_not_its_parents() {
        let parent = current();
        // SAFETY: the child only reads atomics, calls getpid and _exit (async-signal-safe
        // work), then exits without running any destructor or test harness code.
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork failed");
        if child == 0 {
            let seen = current();
            // SAFETY: as above.
            let own = unsafe { libc::getpid() } as u32;
            let status = if seen == own && seen != parent { 0 } else { 1 };
            unsafe { libc::_exit(status) };
        }
        let mut status = 0;
        // SAFETY: waits for the child just made.
        let waited = unsafe { libc::waitpid(child, &mut status, 0) };
        assert_eq!(waited, child);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the forked child saw the parent's id (status {status:#x})"
        );
        assert_eq!(current(), parent, "the parent's id is unchanged");
    }
}
