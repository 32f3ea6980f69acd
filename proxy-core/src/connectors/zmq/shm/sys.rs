//! The system calls shared memory needs: sealed anonymous memory files, mappings, and opening
//! another process's file through `/proc`. Linux only; elsewhere every call reports
//! `Unsupported` and the connector stays on TCP.

use std::collections::HashSet;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

/// A shared mapping of (the start of) a memory file, unmapped on drop: read-write (the
/// owner's segments, a reader's slot table) or read-only (the object bytes a reader maps).
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    writable: bool,
}

// SAFETY: the mapping is plain memory shared with other processes; every access to it goes
// through `slice` (bytes that the protocol keeps unchanged while they are read, see the
// caveat there), `copy_out` (raw copies) or atomics, all of which are usable from any thread.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// The mapping's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping may be written (the owner's, or a reader's slot table).
    pub(crate) fn is_writable(&self) -> bool {
        self.writable
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
    /// `arena`) keeps a slot unchanged while anyone reads it, but the kernel does not: any
    /// process of the owner's user can open the memory file read-write (through
    /// `/proc/OWNER/fd/N`, or as its owner) and change these bytes while the slice is
    /// borrowed. Such a process can already read and write this process's memory (it is the
    /// same user), so the default hands the slice out; a program that must not trust the
    /// bytes to stay put copies them with [`copy_out`](Self::copy_out) instead (the
    /// connector's copy-on-read option). Whatever is written, a read never leaves the
    /// mapping: its length is fixed and the file is sealed against shrinking.
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

    /// A copy of `len` bytes at `offset`, made with raw reads (no reference to the shared
    /// bytes is formed), or `None` when they are not all inside the mapping.
    pub(crate) fn copy_out(&self, offset: u64, len: u64) -> Option<Vec<u8>> {
        let end = offset.checked_add(len)?;
        if end > self.len as u64 {
            return None;
        }
        let len = usize::try_from(len).ok()?;
        let mut out = Vec::with_capacity(len);
        // SAFETY: `offset..end` lies inside the mapping; `out` has room for `len` bytes,
        // which the copy initialises before `set_len`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset as usize),
                out.as_mut_ptr(),
                len,
            );
            out.set_len(len);
        }
        Some(out)
    }

    /// The 8-byte atomic at `offset` of a read-write mapping, or `None` when the mapping is
    /// read-only or the word is outside it or unaligned.
    pub(crate) fn atomic_u64(&self, offset: u64) -> Option<&AtomicU64> {
        if !self.writable {
            return None;
        }
        self.atomic_at(offset)
    }

    /// Loads the 8-byte word at `offset` atomically (read-only mappings too), or `None` when
    /// it is outside the mapping or unaligned.
    pub(crate) fn load_u64(&self, offset: u64) -> Option<u64> {
        self.atomic_at(offset)
            .map(|word| word.load(std::sync::atomic::Ordering::Acquire))
    }

    fn atomic_at(&self, offset: u64) -> Option<&AtomicU64> {
        let end = offset.checked_add(8)?;
        if end > self.len as u64 || !offset.is_multiple_of(8) {
            return None;
        }
        // SAFETY: in bounds and 8-byte aligned (the mapping is page aligned); every process
        // accesses these words only atomically, and a read-only mapping's words are only
        // loaded (`atomic_u64` refuses them), which reads without writing.
        Some(unsafe { &*self.ptr.as_ptr().add(offset as usize).cast::<AtomicU64>() })
    }

    /// Asks the kernel to fill the page tables of `offset..offset + len` now, in one call
    /// rather than a fault per page (`MADV_POPULATE_READ`; ignored where unsupported).
    /// Only for bytes the reader is about to read anyway.
    pub(crate) fn populate(&self, offset: u64, len: u64) {
        imp::populate(self, offset, len);
    }
}

/// What a reader checked about a segment file before mapping it (see [`check_segment`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
}

#[cfg(target_os = "linux")]
mod imp {
    use std::ffi::CString;
    use std::io;
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
    use std::ptr::NonNull;

    use super::{FileId, Mapping};

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

    fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
        // SAFETY: `stat` is plain data, filled by `fstat`.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `stat` is a valid out-pointer.
        check(unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) })?;
        Ok(stat)
    }

    fn refused(message: String) -> io::Error {
        io::Error::new(io::ErrorKind::PermissionDenied, message)
    }

    /// Checks, before anything of it is mapped, that `fd` is a segment a reader may map: a
    /// regular file of tmpfs (where memory files live) owned by this process's own
    /// effective user (root too reads no one else's), sealed against shrinking and
    /// growing, of exactly `len` bytes (at most `max_len`), and with every page allocated
    /// (a sparse file would make the reader's page faults allocate memory).
    pub(crate) fn check_segment(fd: BorrowedFd<'_>, len: u64, max_len: u64) -> io::Result<FileId> {
        let stat = fstat(fd)?;
        if stat.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(refused("not a regular file".to_string()));
        }
        // SAFETY: plain call.
        let me = unsafe { libc::geteuid() };
        if stat.st_uid != me {
            return Err(refused(format!(
                "the file belongs to user {}, not to this process's user {me}",
                stat.st_uid
            )));
        }
        // SAFETY: `statfs` is plain data, filled by `fstatfs`.
        let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: `fs` is a valid out-pointer.
        check(unsafe { libc::fstatfs(fd.as_raw_fd(), &mut fs) })?;
        // The two types differ between targets (`i64`, `u32`, ...): compare as `i64`.
        #[allow(clippy::unnecessary_cast)]
        let (found, tmpfs) = (fs.f_type as i64, libc::TMPFS_MAGIC as i64);
        if found != tmpfs {
            return Err(refused(format!(
                "not a memory file (file system type {:#x})",
                fs.f_type
            )));
        }
        // SAFETY: plain call on a borrowed descriptor.
        let seals = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) })?;
        let needed = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
        if seals & needed != needed {
            return Err(refused(
                "the memory file is not sealed against shrinking and growing".to_string(),
            ));
        }
        let size = u64::try_from(stat.st_size).map_err(|_| io::ErrorKind::InvalidData)?;
        if size != len || size > max_len {
            return Err(refused(format!(
                "the file is {size} bytes; the descriptor says {len} (at most {max_len})"
            )));
        }
        let allocated = u64::try_from(stat.st_blocks)
            .unwrap_or(0)
            .saturating_mul(512);
        if allocated < size {
            return Err(refused(format!(
                "only {allocated} of the file's {size} bytes are allocated (a sparse file)"
            )));
        }
        Ok(FileId {
            dev: stat.st_dev,
            ino: stat.st_ino,
        })
    }

    /// Whether `fd` is the file `id` names (the same device and inode).
    pub(crate) fn is_file(fd: BorrowedFd<'_>, id: FileId) -> io::Result<bool> {
        let stat = fstat(fd)?;
        Ok(stat.st_dev == id.dev && stat.st_ino == id.ino)
    }

    fn mmap(
        fd: BorrowedFd<'_>,
        len: u64,
        writable: bool,
        flags: libc::c_int,
    ) -> io::Result<Mapping> {
        let len = usize::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        if len == 0 {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a new mapping chosen by the kernel; `fd` is a valid descriptor.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED | flags,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(io::ErrorKind::InvalidData)?;
        Ok(Mapping { ptr, len, writable })
    }

    /// Maps the whole of this process's own new file shared and read-write, its page
    /// tables filled now (`MAP_POPULATE`): a page fault costs about 3 us on the VMs this
    /// was measured on, so a mapping is made once and reused for many objects. Only for
    /// files this process made and allocated (never for one a descriptor named).
    pub(crate) fn map(fd: BorrowedFd<'_>, len: u64) -> io::Result<Mapping> {
        mmap(fd, len, true, libc::MAP_POPULATE)
    }

    /// Maps the first `len` bytes of another process's file read-only, without touching a
    /// page: only the pages read later are faulted in.
    pub(crate) fn map_read_only(fd: BorrowedFd<'_>, len: u64) -> io::Result<Mapping> {
        mmap(fd, len, false, 0)
    }

    /// Maps the first `len` bytes (a segment's header and slot table, already checked)
    /// of another process's file read-write, without touching a page.
    pub(crate) fn map_table(fd: BorrowedFd<'_>, len: u64) -> io::Result<Mapping> {
        mmap(fd, len, true, 0)
    }

    pub(crate) fn populate(mapping: &Mapping, offset: u64, len: u64) {
        let page = super::super::layout::PAGE;
        let start = offset / page * page;
        let Some(end) = offset.checked_add(len) else {
            return;
        };
        let end = end.min(mapping.len as u64);
        if start >= end {
            return;
        }
        // SAFETY: the range lies inside the mapping (page aligned start); the advice only
        // fills page tables of pages that exist (the file is fully allocated), and its
        // failure (an older kernel) changes nothing.
        unsafe {
            libc::madvise(
                mapping.ptr.as_ptr().add(start as usize).cast(),
                (end - start) as usize,
                libc::MADV_POPULATE_READ,
            );
        }
    }

    fn open_proc(pid: u32, fd: u32, flags: libc::c_int) -> io::Result<OwnedFd> {
        let path = CString::new(format!("/proc/{pid}/fd/{fd}"))
            .map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: `path` is NUL-terminated; the flags are valid.
        let raw = check(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) })?;
        // SAFETY: `raw` was just opened and nothing else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    }

    /// Opens, read-only, the file another process holds open as descriptor `fd`, through
    /// `/proc/PID/fd/FD` (the kernel allows it only to the same user, or root). Opening
    /// does not block, make a terminal ours, or touch a page.
    pub(crate) fn open_process_file(pid: u32, fd: u32) -> io::Result<OwnedFd> {
        open_proc(pid, fd, libc::O_RDONLY | libc::O_NOCTTY | libc::O_NONBLOCK)
    }

    /// Opens the same file read-write, for its slot table (pins), once it has been checked;
    /// refused unless it is still the file `id` names.
    pub(crate) fn reopen_read_write(pid: u32, fd: u32, id: FileId) -> io::Result<OwnedFd> {
        let file = open_proc(pid, fd, libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK)?;
        if !is_file(file.as_fd(), id)? {
            return Err(refused(format!(
                "/proc/{pid}/fd/{fd} changed to another file while it was checked"
            )));
        }
        Ok(file)
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

    use super::{FileId, Mapping};

    fn unsupported<T>() -> io::Result<T> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub(crate) fn create_memory_file(_name: &str, _len: u64) -> io::Result<OwnedFd> {
        unsupported()
    }
    pub(crate) fn check_segment(_fd: BorrowedFd<'_>, _len: u64, _max: u64) -> io::Result<FileId> {
        unsupported()
    }
    pub(crate) fn map(_fd: BorrowedFd<'_>, _len: u64) -> io::Result<Mapping> {
        unsupported()
    }
    pub(crate) fn map_read_only(_fd: BorrowedFd<'_>, _len: u64) -> io::Result<Mapping> {
        unsupported()
    }
    pub(crate) fn map_table(_fd: BorrowedFd<'_>, _len: u64) -> io::Result<Mapping> {
        unsupported()
    }
    pub(crate) fn populate(_mapping: &Mapping, _offset: u64, _len: u64) {}
    pub(crate) fn open_process_file(_pid: u32, _fd: u32) -> io::Result<OwnedFd> {
        unsupported()
    }
    pub(crate) fn reopen_read_write(_pid: u32, _fd: u32, _id: FileId) -> io::Result<OwnedFd> {
        unsupported()
    }
    pub(crate) fn unmap(_mapping: &mut Mapping) {}
}

pub(crate) use imp::{
    check_segment, create_memory_file, map, map_read_only, map_table, open_process_file,
    reopen_read_write,
};

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

/// Checks that process `pid` is the one serving `peer` (the endpoint a reply came from):
/// it holds, among its own descriptors, the listening socket of that endpoint (for
/// `tcp://HOST:PORT`, a TCP socket listening on that port and that address or a wildcard,
/// as its network namespace sees it, and for a loopback address, in this process's network
/// namespace; for `ipc://PATH`, the Unix socket bound to that path). A descriptor naming
/// any other process is refused: a peer can hand out only its own segments.
pub(crate) fn serves(pid: u32, peer: &str) -> Result<(), String> {
    enum Kind<'a> {
        Tcp(&'a str),
        Unix(&'a str),
    }
    let kind = if let Some(path) = peer.strip_prefix("ipc://") {
        Kind::Unix(path)
    } else if let Some(address) = peer.strip_prefix("tcp://") {
        Kind::Tcp(address)
    } else {
        return Err(format!("{peer} is not a tcp:// or ipc:// endpoint"));
    };
    let sockets = socket_inodes(pid)?;
    // The kernel's socket tables are not read atomically: an entry can be missed while
    // other sockets come and go, so a miss is read again a few times.
    for _ in 0..8 {
        let listening = match kind {
            Kind::Unix(path) => unix_listeners(pid, path)?,
            Kind::Tcp(address) => tcp_listeners(pid, address)?,
        };
        if listening.iter().any(|inode| sockets.contains(inode)) {
            return Ok(());
        }
    }
    Err(format!(
        "process {pid} holds no socket listening on {peer}: it is not the peer that answered"
    ))
}

/// The inodes of the sockets among `pid`'s open descriptors.
fn socket_inodes(pid: u32) -> Result<HashSet<u64>, String> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(|e| format!("cannot list /proc/{pid}/fd: {e}"))?;
    Ok(fds
        .flatten()
        .filter_map(|entry| {
            let link = std::fs::read_link(entry.path()).ok()?;
            link.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect())
}

/// A `/proc` table, read with as few system calls as possible (each is consistent within
/// itself, not with the next).
fn read_table(path: &str) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut buffer = vec![0u8; 256 << 10];
    let mut filled = 0;
    loop {
        if filled == buffer.len() {
            buffer.resize(buffer.len() * 2, 0);
        }
        let read = file.read(&mut buffer[filled..])?;
        if read == 0 {
            break;
        }
        filled += read;
    }
    buffer.truncate(filled);
    Ok(String::from_utf8_lossy(&buffer).into_owned())
}

/// Inodes of the TCP sockets that `pid`'s network namespace has listening on `address`
/// (`HOST:PORT`, `[V6]:PORT`).
fn tcp_listeners(pid: u32, address: &str) -> Result<Vec<u64>, String> {
    use std::net::{IpAddr, ToSocketAddrs};
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("tcp://{address} has no port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("tcp://{address} has no port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let targets: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .map(|address| address.ip())
            .collect(),
    };
    if targets.iter().any(IpAddr::is_loopback) {
        let here = std::fs::read_link("/proc/self/ns/net").map_err(|e| e.to_string())?;
        let there = std::fs::read_link(format!("/proc/{pid}/ns/net"))
            .map_err(|e| format!("cannot read process {pid}'s network namespace: {e}"))?;
        if here != there {
            return Err(format!(
                "process {pid} runs in another network namespace than this one's loopback"
            ));
        }
    }
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let mut inodes = Vec::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = read_table(&format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let (Some(local), Some(&"0A"), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let Some((ip, listen_port)) = parse_proc_address(local) else {
                continue;
            };
            let matches = listen_port == port
                && (ip.is_unspecified()
                    || targets
                        .iter()
                        .any(|&target| canonical(target) == canonical(ip)));
            if let (true, Ok(inode)) = (matches, inode.parse::<u64>()) {
                inodes.push(inode);
            }
        }
    }
    Ok(inodes)
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6), as `/proc/net/tcp*` print
/// them: each 32-bit word in this machine's byte order.
fn parse_proc_address(text: &str) -> Option<(std::net::IpAddr, u16)> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for at in (0..ip.len()).step_by(8) {
        let word = u32::from_str_radix(ip.get(at..at + 8)?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => std::net::IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?),
        _ => return None,
    };
    Some((ip, port))
}

/// Inodes of the listening Unix sockets bound to `path` in `pid`'s network namespace.
fn unix_listeners(pid: u32, path: &str) -> Result<Vec<u64>, String> {
    let text = read_table(&format!("/proc/{pid}/net/unix"))
        .map_err(|e| format!("cannot read /proc/{pid}/net/unix: {e}"))?;
    // Num RefCount Protocol Flags Type St Inode Path; flag 0x10000: listening.
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = u32::from_str_radix(fields.get(3)?, 16).ok()?;
            (flags & 0x10000 != 0 && fields.get(7) == Some(&path))
                .then(|| fields.get(6)?.parse().ok())
                .flatten()
        })
        .collect())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn only_the_process_listening_on_an_endpoint_serves_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
        let port = listener.local_addr().expect("address").port();
        let endpoint = format!("tcp://127.0.0.1:{port}");
        let me = std::process::id();
        assert_eq!(serves(me, &endpoint), Ok(()));
        assert_eq!(serves(me, &format!("tcp://localhost:{port}")), Ok(()));
        // Another process of the same user does not serve it.
        let mut other = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .expect("sleep");
        let refused = serves(other.id(), &endpoint);
        let _ = other.kill();
        let _ = other.wait();
        assert!(refused.is_err(), "{refused:?}");
        drop(listener);
        assert!(
            serves(me, &endpoint).is_err(),
            "a closed listener still serves"
        );
        assert!(serves(me, "inproc://x").is_err());
        assert!(serves(me, "tcp://127.0.0.1").is_err());
    }
}
