//! The system calls shared memory needs: sealed anonymous memory files, mappings, and opening
//! another process's file through `/proc`. Linux only; elsewhere every call reports
//! `Unsupported` and the connector stays on TCP.

use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

/// A shared, read-write mapping of a whole memory file, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory shared with other processes; every access to it goes
// through `slice` (bytes that the protocol keeps unchanged while they are read) or
// `atomic_u64` (atomics), both of which are safe to use from any thread.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// The mapping's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The first byte of the mapping.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Whether `ptr` points into this mapping (tests).
    #[cfg(test)]
    pub(crate) fn contains(&self, ptr: *const u8) -> bool {
        let start = self.ptr.as_ptr() as usize;
        (start..start + self.len).contains(&(ptr as usize))
    }

    /// `len` bytes at `offset`, or `None` when they are not all inside the mapping.
    ///
    /// The bytes are shared with other processes. The protocol (pins and generations, see
    /// `arena`) keeps a slot unchanged while anyone reads it; a process that breaks it (the
    /// same user, writing the memory file on purpose) can change what a reader sees, as it
    /// could change a file the reader maps, but never make a read leave the mapping.
    pub(crate) fn slice(&self, offset: u64, len: u64) -> Option<&[u8]> {
        let end = offset.checked_add(len)?;
        if end > self.len as u64 {
            return None;
        }
        // SAFETY: `offset..end` lies inside the mapping, which lives as long as `self`
        // (the file is sealed against shrinking, so no page of it can vanish).
        Some(unsafe {
            std::slice::from_raw_parts(self.ptr.as_ptr().add(offset as usize), len as usize)
        })
    }

    /// The 8-byte atomic at `offset`, or `None` when it is outside the mapping or unaligned.
    pub(crate) fn atomic_u64(&self, offset: u64) -> Option<&AtomicU64> {
        let end = offset.checked_add(8)?;
        if end > self.len as u64 || !offset.is_multiple_of(8) {
            return None;
        }
        // SAFETY: in bounds and 8-byte aligned (the mapping is page aligned); every process
        // accesses these words only atomically.
        Some(unsafe { &*self.ptr.as_ptr().add(offset as usize).cast::<AtomicU64>() })
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::ffi::CString;
    use std::io;
    use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
    use std::ptr::NonNull;

    use super::Mapping;

    fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    }

    /// A new memory file of `len` bytes, readable and writable by this user only, its
    /// pages allocated, sealed so that nobody can shrink or grow it (a reader's mapping can
    /// never lose pages under it). The kernel frees it when the last descriptor and
    /// mapping are gone, whatever way the process ends.
    pub(crate) fn create_memory_file(name: &str, len: u64) -> io::Result<OwnedFd> {
        let name = CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
        let size = libc::off_t::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: `name` is a NUL-terminated string; the flags are valid.
        let raw = check(unsafe {
            libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        })?;
        // SAFETY: `raw` is a descriptor this call just opened and nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: plain calls on a descriptor we own.
        unsafe {
            check(libc::fchmod(fd.as_raw_fd(), 0o600))?;
            check(libc::ftruncate(fd.as_raw_fd(), size))?;
            // Allocate the pages now (a failure here is a clean error, not a SIGBUS later).
            check(libc::fallocate(fd.as_raw_fd(), 0, 0, size))?;
            check(libc::fcntl(
                fd.as_raw_fd(),
                libc::F_ADD_SEALS,
                libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL,
            ))?;
        }
        Ok(fd)
    }

    /// The size of a memory file that is sealed against shrinking (the only kind a reader
    /// maps: a file that could shrink could take pages away under a reader).
    pub(crate) fn sealed_size(fd: BorrowedFd<'_>) -> io::Result<u64> {
        // SAFETY: plain call on a borrowed descriptor.
        let seals = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) })?;
        if seals & libc::F_SEAL_SHRINK == 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the memory file is not sealed against shrinking",
            ));
        }
        // SAFETY: `stat` is plain data, filled by `fstat`.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `stat` is a valid out-pointer.
        check(unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) })?;
        u64::try_from(stat.st_size).map_err(|_| io::ErrorKind::InvalidData.into())
    }

    /// Maps the whole file shared and read-write, its page tables filled now
    /// (`MAP_POPULATE`): a page fault costs about 3 us on the VMs this was measured on,
    /// so a mapping is made once and reused for many objects.
    pub(crate) fn map(fd: BorrowedFd<'_>, len: u64) -> io::Result<Mapping> {
        let len = usize::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        if len == 0 {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        // SAFETY: a new mapping chosen by the kernel; `fd` is a valid descriptor.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(io::ErrorKind::InvalidData)?;
        Ok(Mapping { ptr, len })
    }

    /// Opens, read-write, the file another process holds open as descriptor `fd`, through
    /// `/proc/PID/fd/FD`. The kernel allows it only to the same user (or root): the same
    /// check as attaching a debugger read-only.
    pub(crate) fn open_process_file(pid: u32, fd: u32) -> io::Result<OwnedFd> {
        let path = CString::new(format!("/proc/{pid}/fd/{fd}"))
            .map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: `path` is NUL-terminated; the flags are valid.
        let raw = check(unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })?;
        // SAFETY: `raw` was just opened and nothing else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    }

    pub(crate) fn unmap(mapping: &mut Mapping) {
        // SAFETY: `ptr`/`len` are exactly what `mmap` returned; called once, from `Drop`.
        unsafe { libc::munmap(mapping.ptr.as_ptr().cast(), mapping.len) };
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;
    use std::os::fd::{BorrowedFd, OwnedFd};

    use super::Mapping;

    fn unsupported<T>() -> io::Result<T> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub(crate) fn create_memory_file(_name: &str, _len: u64) -> io::Result<OwnedFd> {
        unsupported()
    }
    pub(crate) fn sealed_size(_fd: BorrowedFd<'_>) -> io::Result<u64> {
        unsupported()
    }
    pub(crate) fn map(_fd: BorrowedFd<'_>, _len: u64) -> io::Result<Mapping> {
        unsupported()
    }
    pub(crate) fn open_process_file(_pid: u32, _fd: u32) -> io::Result<OwnedFd> {
        unsupported()
    }
    pub(crate) fn unmap(_mapping: &mut Mapping) {}
}

pub(crate) use imp::{create_memory_file, map, open_process_file, sealed_size};

impl Drop for Mapping {
    fn drop(&mut self) {
        imp::unmap(self);
    }
}

/// Whether a process with this id exists (a recycled id counts: callers pair it with a
/// check of their own).
pub(crate) fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// A 16-byte digest of this boot of this machine (`/proc/sys/kernel/random/boot_id`), or
/// `None` where it cannot be read. Two processes with the same digest run on one kernel.
pub(crate) fn boot_id() -> Option<[u8; 16]> {
    static BOOT: std::sync::OnceLock<Option<[u8; 16]>> = std::sync::OnceLock::new();
    *BOOT.get_or_init(|| {
        let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let digest = blake3::hash(text.trim().as_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest.as_bytes()[..16]);
        Some(out)
    })
}
