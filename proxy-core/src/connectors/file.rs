//! `FileConnector`: one file per object in a directory.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;

use crate::config::ConnectorConfig;
use crate::connector::{check_kind, Capability, Connector};
use crate::error::{Error, Result};
use crate::ids::new_id;
use crate::key::Key;

const KIND: &str = "file";

/// `PROXYSTORE_FILE_RECYCLE`: how many evicted files a [`FileConnector`] keeps for reuse
/// (see [`FileConnector::with_recycled_files`]); `0` turns recycling off.
pub(crate) const ENV_RECYCLE: &str = "PROXYSTORE_FILE_RECYCLE";

/// How many times a get reopens an object whose name moved to another file while it read
/// (an [`overwrite`](Connector::overwrite) in between) before it gives up.
const READ_ATTEMPTS: usize = 16;

/// Objects kept as files in a directory, one file per object named by its key's id.
///
/// A `put` writes the object under a name no key can have (a dot file in the same
/// directory) and renames it into place, so a reader never sees a partly written object.
/// Several processes (or machines sharing the filesystem) can use the same directory at once.
///
/// **Recycled files.** An `evict` renames the object's file to a free name and empties it,
/// and a later `put` of this connector (or of its clones) writes into such a free file
/// before renaming it to the new key, instead of creating a file. Creating files is what a
/// put costs on a local disk: on ext4 without a journal every new inode first skips each
/// inode of its block group freed in the last minutes (`recently_deleted` in the kernel's
/// allocator), so with puts and evicts going on, creating one file took 0.1 to 1 ms on this
/// project's test machine, and a recycled put took a few tens of microseconds (see
/// `benchmarks/README.md`). A get checks, after reading, that the key's name still leads to
/// the file it read (same device and inode), and reads again or answers "not found"
/// otherwise, so a reader that opened an object just before it was evicted never returns
/// the bytes of the object its file was recycled for. Up to
/// [`with_recycled_files`](Self::with_recycled_files) free files are kept (empty files, no
/// data, named `.free-PID-...`), deleted on [`close`](Connector::close), when the last clone
/// is dropped and when the process exits normally (a killed process leaves them; they may
/// be deleted at any time, a put whose free file is gone creates one). On by
/// default ([`FileConnector::DEFAULT_RECYCLED_FILES`]) when the directory is on ext2/3/4 or
/// tmpfs, where it was measured; off by default elsewhere. Do not turn it on for a directory
/// on a network filesystem, whose clients can cache which file a name leads to (the check
/// above relies on every reader seeing renames at once), and turn it off
/// (`with_recycled_files(0)`, `PROXYSTORE_FILE_RECYCLE=0`) for a directory on a local disk
/// that other machines also read (an NFS export). Only [`put`](Connector::put) reuses files
/// (its key is new); [`put_at`](Connector::put_at) and [`overwrite`](Connector::overwrite)
/// always create one.
///
/// The directory is made absolute when the connector is built (against the working directory
/// of that moment, without resolving symbolic links), so a later change of working directory,
/// or a process started elsewhere that rebuilds the connector from its
/// [`config`](Connector::config), still finds the objects.
///
/// [`close`](Connector::close) deletes the directory and everything in it, as ProxyStore's
/// file connector does by default; [`with_clear_on_close(false)`](FileConnector::with_clear_on_close)
/// keeps it. The choice travels in the config, so a connector rebuilt in another process
/// behaves the same way. Several connectors over one directory may all be closed: a directory
/// that is already gone is not an error.
///
/// ```
/// use bytes::Bytes;
/// use proxy_core::{Connector, FileConnector};
///
/// let dir = std::env::temp_dir().join(format!("proxy-core-doc-{}", std::process::id()));
/// let connector = FileConnector::create(&dir)?;
/// let key = connector.put(Bytes::from_static(b"on disk"))?;
/// assert_eq!(connector.get(&key)?, Some(Bytes::from_static(b"on disk")));
/// connector.evict(&key)?;
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), proxy_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct FileConnector {
    dir: PathBuf,
    clear_on_close: bool,
    /// The count set with [`with_recycled_files`](Self::with_recycled_files), which travels in
    /// the config; `None`: this process's default for the directory.
    recycle_choice: Option<usize>,
    recycler: Arc<Recycler>,
}

/// Evicted files waiting for a put: empty files under free names in the directory, known
/// only to this connector and its clones. Shared by the clones.
#[derive(Debug)]
struct Recycler {
    capacity: usize,
    free: Mutex<Vec<PathBuf>>,
    /// Puts that wrote into a recycled file.
    recycled_puts: AtomicU64,
}

impl Recycler {
    fn new(capacity: usize) -> Arc<Self> {
        let recycler = Arc::new(Recycler {
            capacity,
            free: Mutex::new(Vec::new()),
            recycled_puts: AtomicU64::new(0),
        });
        if capacity > 0 {
            clear_at_exit(&recycler);
        }
        recycler
    }

    fn free(&self) -> MutexGuard<'_, Vec<PathBuf>> {
        // A panic while holding the lock leaves a list of paths, still valid.
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Deletes the free files (they are empty; a missing one is no error).
    fn clear(&self) {
        for path in self.free().drain(..) {
            let _ = fs::remove_file(path);
        }
    }
}

/// The recyclers of this process, whose free files go when the process exits: a program
/// that ends without closing or dropping its connectors (a store in the registry lives as
/// long as the process) must not leave them behind in a directory meant to end empty.
static LIVE_RECYCLERS: Mutex<Vec<Weak<Recycler>>> = Mutex::new(Vec::new());

/// Registers `recycler` for [`clear_live_recyclers`] at exit (installed once per process).
fn clear_at_exit(recycler: &Arc<Recycler>) {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    #[cfg(unix)]
    INSTALLED.call_once(|| {
        // SAFETY: registers a function without arguments that never unwinds (it catches
        // panics) to run at normal process exit.
        let _ = unsafe { libc::atexit(clear_live_recyclers) };
    });
    #[cfg(not(unix))]
    INSTALLED.call_once(|| {});
    let mut live = LIVE_RECYCLERS.lock().unwrap_or_else(|e| e.into_inner());
    live.retain(|weak| weak.strong_count() > 0);
    live.push(Arc::downgrade(recycler));
}

/// At exit (`atexit`): deletes every live recycler's free files. Other threads may still run
/// and hold a lock, so it only takes locks that are free, and a recycler it cannot lock
/// keeps its files. A killed process leaves at most its connectors' capacities of empty
/// `.free-*` files, which anyone may delete.
#[cfg(unix)]
extern "C" fn clear_live_recyclers() {
    let _ = std::panic::catch_unwind(|| {
        let Ok(live) = LIVE_RECYCLERS.try_lock() else {
            return;
        };
        for recycler in live.iter().filter_map(Weak::upgrade) {
            if let Ok(mut free) = recycler.free.try_lock() {
                for path in free.drain(..) {
                    let _ = fs::remove_file(path);
                }
            }
        }
    });
}

impl Drop for Recycler {
    fn drop(&mut self) {
        self.clear();
    }
}

impl FileConnector {
    /// Evicted files kept for reuse by default, on filesystems where recycling is the
    /// default (see [`with_recycled_files`](Self::with_recycled_files)).
    pub const DEFAULT_RECYCLED_FILES: usize = 1024;

    /// A connector over the existing directory `dir` (made absolute), which
    /// [`close`](Connector::close) deletes.
    ///
    /// Fails with [`Error::Io`] if `dir` is missing or unreadable, and with
    /// [`Error::Config`] if it is not a directory or `PROXYSTORE_FILE_RECYCLE` is not a
    /// number.
    pub fn new(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let dir = std::path::absolute(dir).map_err(|e| Error::io("make absolute", dir, e))?;
        let meta = fs::metadata(&dir).map_err(|e| Error::io("open store directory", &dir, e))?;
        if !meta.is_dir() {
            return Err(Error::Config {
                what: format!("file connector at {}", dir.display()),
                message: "not a directory".into(),
            });
        }
        fs::read_dir(&dir).map_err(|e| Error::io("read store directory", &dir, e))?;
        let recycled = default_recycled_files(&dir, std::env::var(ENV_RECYCLE).ok())?;
        Ok(FileConnector {
            dir,
            clear_on_close: true,
            recycle_choice: None,
            recycler: Recycler::new(recycled),
        })
    }

    /// A connector over `dir`, creating the directory (and its parents) if needed.
    pub fn create(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        fs::create_dir_all(dir).map_err(|e| Error::io("create store directory", dir, e))?;
        Self::new(dir)
    }

    /// Whether [`close`](Connector::close) deletes the directory (default `true`, as in
    /// ProxyStore). With `false`, the objects stay on disk after `close`.
    #[must_use]
    pub fn with_clear_on_close(mut self, clear: bool) -> Self {
        self.clear_on_close = clear;
        self
    }

    /// How many evicted files to keep for reuse by later puts (see "Recycled files" above);
    /// `0` turns recycling off. Default: [`DEFAULT_RECYCLED_FILES`](Self::DEFAULT_RECYCLED_FILES)
    /// when the directory is on ext2/3/4 or tmpfs, else 0; `PROXYSTORE_FILE_RECYCLE` sets the
    /// default of a process. The count travels in the config. The returned connector has its
    /// own, empty set of free files.
    #[must_use]
    pub fn with_recycled_files(mut self, files: usize) -> Self {
        self.recycle_choice = Some(files);
        self.recycler = Recycler::new(files);
        self
    }

    /// How many evicted files this connector keeps for reuse at most (0: none).
    pub fn recycled_files(&self) -> usize {
        self.recycler.capacity
    }

    /// How many puts of this connector (and its clones) wrote into a recycled file instead of
    /// creating one.
    pub fn recycled_puts(&self) -> u64 {
        self.recycler.recycled_puts.load(Ordering::Relaxed)
    }

    /// The directory holding the objects (always absolute).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether [`close`](Connector::close) deletes the directory.
    pub fn clear_on_close(&self) -> bool {
        self.clear_on_close
    }

    /// A missing object is `None`, but a missing directory is an error: the store is gone.
    fn missing(&self, action: &'static str) -> Result<()> {
        match fs::metadata(&self.dir) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(Error::io(
                action,
                &self.dir,
                std::io::Error::new(
                    ErrorKind::NotADirectory,
                    "store directory replaced by a file",
                ),
            )),
            Err(e) => Err(Error::io(action, &self.dir, e)),
        }
    }

    /// A name in the directory that no key can have (keys are hexadecimal, never dotted),
    /// with this process's id for whoever finds it.
    fn private_name(&self, prefix: &str) -> PathBuf {
        self.dir.join(format!(
            ".{prefix}-{}-{:032x}",
            std::process::id(),
            new_id()
        ))
    }

    /// Writes `data` to a new temporary file in the directory and returns its path.
    fn write_temporary(&self, data: &[u8]) -> Result<PathBuf> {
        let tmp = self.private_name("tmp");
        let write = || -> std::io::Result<()> {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(data)?;
            Ok(())
        };
        match write() {
            Ok(()) => Ok(tmp),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(Error::io("write", &tmp, e))
            }
        }
    }

    /// Writes `data` to a temporary file in the directory and renames it to `path`, so a
    /// reader sees the whole object or none of it (or the previous one, when replacing).
    fn write_into_place(&self, path: &Path, data: &[u8]) -> Result<()> {
        let tmp = self.write_temporary(data)?;
        fs::rename(&tmp, path).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Error::io("rename into place", path, e)
        })
    }

    /// Writes `data` into a recycled (empty) file and renames it to `path`; `false` when
    /// there was no free file or it could not be used (the caller then creates one).
    fn write_recycled(&self, path: &Path, data: &[u8]) -> bool {
        let Some(free) = self.recycler.free().pop() else {
            return false;
        };
        let write = || -> std::io::Result<()> {
            // Never created here: a free file deleted meanwhile is an error, not a new file.
            let mut file = fs::OpenOptions::new().write(true).open(&free)?;
            file.write_all(data)?;
            drop(file);
            fs::rename(&free, path)
        };
        match write() {
            Ok(()) => {
                self.recycler.recycled_puts.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(_) => {
                let _ = fs::remove_file(&free);
                false
            }
        }
    }

    /// Evicts by renaming `path` to a free name and emptying it, if the connector keeps
    /// free files and has room for one more. `None` when it does not apply (the caller then
    /// deletes the file), else the outcome.
    fn evict_to_free(&self, path: &Path) -> Option<Result<()>> {
        if self.recycler.capacity == 0 || self.recycler.free().len() >= self.recycler.capacity {
            return None;
        }
        let free = self.private_name("free");
        match fs::rename(path, &free) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Some(self.missing("evict from store directory"))
            }
            Err(_) => return None,
        }
        // Emptied only once it has left the key's name: a reader that opened it before sees
        // its name gone when it checks, whatever it read.
        let emptied = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&free)
            .map(drop);
        if emptied.is_ok() {
            let mut list = self.recycler.free();
            if list.len() < self.recycler.capacity {
                list.push(free);
                return Some(Ok(()));
            }
        }
        Some(match fs::remove_file(&free) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(Error::io("remove", free, e)),
            _ => Ok(()),
        })
    }

    /// Like [`write_into_place`](Self::write_into_place), but never replaces a file already
    /// at `path`: the temporary file is hard-linked to `path`, which fails when the name is
    /// taken (atomically, so of two concurrent writers exactly one wins).
    fn write_new(&self, path: &Path, data: &[u8]) -> Result<bool> {
        let tmp = self.write_temporary(data)?;
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(Error::io("link into place", path, e)),
        }
    }

    fn path_of(&self, key: &Key) -> Result<PathBuf> {
        check_kind(key, KIND)?;
        // The file name comes from the numeric id only, never from a string in the key, so a
        // key cannot name a path outside the directory.
        Ok(self.dir.join(key.id_hex()))
    }

    /// Opens the file at `path` for a get: the file and its identity, or `None` if there
    /// is no such file.
    fn open_object(&self, path: &Path) -> Result<Option<(fs::File, FileId)>> {
        let file = match fs::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read", path, e)),
        };
        let meta = file.metadata().map_err(|e| Error::io("stat", path, e))?;
        Ok(Some((file, FileId::of(&meta))))
    }

    /// Reads the opened file to its end and keeps the bytes only if `path` still leads to
    /// that file: `Some(bytes)`, or `None` when the name moved (the object was evicted, its
    /// file perhaps recycled and rewritten while it was read, or it was overwritten).
    fn read_opened(&self, path: &Path, opened: (fs::File, FileId)) -> Result<Option<Bytes>> {
        let (mut file, id) = opened;
        let mut data = Vec::with_capacity(usize::try_from(id.len).unwrap_or(0));
        file.read_to_end(&mut data)
            .map_err(|e| Error::io("read", path, e))?;
        drop(file);
        match fs::metadata(path) {
            Ok(meta) if FileId::of(&meta).same_file(&id) => Ok(Some(Bytes::from(data))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("stat", path, e)),
        }
    }
}

/// Which file a name led to: device and inode (and the length, to size the read).
#[derive(Clone, Copy, Debug)]
struct FileId {
    dev: u64,
    ino: u64,
    len: u64,
}

impl FileId {
    #[cfg(unix)]
    fn of(meta: &fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
        }
    }

    /// Without inode numbers nothing is recycled (see [`default_recycled_files`]), so the
    /// name still leads to the same file when it exists.
    #[cfg(not(unix))]
    fn of(meta: &fs::Metadata) -> Self {
        FileId {
            dev: 0,
            ino: 0,
            len: meta.len(),
        }
    }

    fn same_file(&self, other: &FileId) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }
}

/// The default number of recycled files for `dir`: `PROXYSTORE_FILE_RECYCLE` (`var`) when
/// set, else [`FileConnector::DEFAULT_RECYCLED_FILES`] on ext2/3/4 and tmpfs, 0 elsewhere.
fn default_recycled_files(dir: &Path, var: Option<String>) -> Result<usize> {
    if let Some(value) = var.filter(|v| !v.trim().is_empty()) {
        return value.trim().parse().map_err(|_| Error::Config {
            what: format!("{ENV_RECYCLE} for the file connector at {}", dir.display()),
            message: format!("{value:?} is not a number of files"),
        });
    }
    Ok(if filesystem_recycles(dir) {
        FileConnector::DEFAULT_RECYCLED_FILES
    } else {
        0
    })
}

/// Whether `dir` is on a filesystem where recycling is the default, local ones where it was
/// measured to help: ext2/3/4 (one magic number for the three; creating files is what a put
/// costs there) and tmpfs (1.6x on puts).
#[cfg(target_os = "linux")]
fn filesystem_recycles(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    const EXT4_SUPER_MAGIC: i64 = 0xEF53;
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `statfs` fills the zeroed struct it is given from a NUL-terminated path.
    let mut stats: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to a C string and to a `statfs`.
    if unsafe { libc::statfs(path.as_ptr(), &mut stats) } != 0 {
        return false;
    }
    #[allow(clippy::unnecessary_cast)] // `f_type`'s width differs between targets.
    let magic = stats.f_type as i64;
    magic == EXT4_SUPER_MAGIC || magic == TMPFS_MAGIC
}

#[cfg(not(target_os = "linux"))]
fn filesystem_recycles(_dir: &Path) -> bool {
    false
}

impl Connector for FileConnector {
    fn put(&self, data: Bytes) -> Result<Key> {
        let key = Key::random(KIND);
        let path = self.dir.join(key.id_hex());
        if !self.write_recycled(&path, &data) {
            self.write_into_place(&path, &data)?;
        }
        Ok(key)
    }

    fn new_key(&self) -> Result<Key> {
        Ok(Key::random(KIND))
    }

    fn put_at(&self, key: &Key, data: Bytes) -> Result<()> {
        let path = self.path_of(key)?;
        if self.write_new(&path, &data)? {
            Ok(())
        } else {
            Err(Error::KeyTaken {
                key: key.clone(),
                connector: format!("file connector at {}", self.dir.display()),
            })
        }
    }

    /// Writes the new bytes under a temporary name and renames them over the old file, so
    /// readers see one or the other.
    fn overwrite(&self, key: &Key, data: Bytes) -> Result<()> {
        let path = self.path_of(key)?;
        if !self.exists(key)? {
            return Err(Error::NotFound {
                store: format!("file connector at {}", self.dir.display()),
                key: key.clone(),
            });
        }
        self.write_into_place(&path, &data)
    }

    /// Reads the key's file, then checks that the key's name still leads to that file: if
    /// it moved meanwhile (evicted, or overwritten) the get reads again, so it returns the
    /// object's bytes, the new ones of an overwrite, or `None`, never the bytes of a file
    /// recycled for another object.
    fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        let path = self.path_of(key)?;
        for _ in 0..READ_ATTEMPTS {
            let Some(opened) = self.open_object(&path)? else {
                return self.missing("read store directory").map(|()| None);
            };
            if let Some(data) = self.read_opened(&path, opened)? {
                return Ok(Some(data));
            }
        }
        Err(Error::io(
            "read",
            path,
            std::io::Error::other(format!(
                "the object was replaced while it was read, {READ_ATTEMPTS} times in a row"
            )),
        ))
    }

    fn exists(&self, key: &Key) -> Result<bool> {
        let path = self.path_of(key)?;
        match fs::metadata(&path) {
            Ok(meta) => Ok(meta.is_file()),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.missing("read store directory").map(|()| false)
            }
            Err(e) => Err(Error::io("stat", path, e)),
        }
    }

    /// Removes the key's file, or moves it to this connector's free files for a later put
    /// (emptied; see "Recycled files"). A missing object is not an error, but a missing
    /// directory is, as for [`get`](Connector::get) and [`exists`](Connector::exists): the
    /// store is gone ([`Error::Io`] naming the directory).
    fn evict(&self, key: &Key) -> Result<()> {
        let path = self.path_of(key)?;
        if let Some(done) = self.evict_to_free(&path) {
            return done;
        }
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => self.missing("evict from store directory"),
            Err(e) => Err(Error::io("remove", path, e)),
        }
    }

    /// Deletes the directory and its objects unless built with
    /// [`with_clear_on_close(false)`](FileConnector::with_clear_on_close). A directory that is
    /// already gone (another connector over it was closed first) is not an error. This
    /// connector's free files are deleted either way.
    fn close(&self) -> Result<()> {
        self.recycler.clear();
        if !self.clear_on_close {
            return Ok(());
        }
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove store directory", &self.dir, e)),
        }
    }

    fn config(&self) -> ConnectorConfig {
        ConnectorConfig::File {
            dir: self.dir.clone(),
            clear_on_close: self.clear_on_close,
            recycled_files: self.recycle_choice,
        }
    }

    fn supports(&self, capability: Capability) -> Option<bool> {
        match capability {
            Capability::Overwrite | Capability::ReservedKeys => Some(true),
        }
    }

    fn object_count(&self) -> Option<usize> {
        let entries = fs::read_dir(&self.dir).ok()?;
        Some(
            entries
                .filter_map(|e| e.ok())
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> (tempfile::TempDir, FileConnector) {
        let dir = tempfile::tempdir().expect("tempdir");
        let connector = FileConnector::new(dir.path()).expect("connector");
        (dir, connector)
    }

    crate::conformance_tests!({
        let (dir, connector) = fresh();
        // Keep the directory for the rest of the test process; it is removed with /tmp.
        std::mem::forget(dir);
        connector
    });

    /// The suite again with recycling on whatever the filesystem (its default is on only
    /// on ext2/3/4 and tmpfs), and with few free files so that both evict paths run.
    mod recycling {
        use super::*;

        crate::conformance_tests!({
            let (dir, connector) = fresh();
            std::mem::forget(dir);
            connector.with_recycled_files(2)
        });
    }

    /// A connector that recycles up to `files` evicted files, whatever the filesystem.
    fn recycling(files: usize) -> (tempfile::TempDir, FileConnector) {
        let (dir, connector) = fresh();
        (dir, connector.with_recycled_files(files))
    }

    /// The names in `dir` that start with `prefix`.
    fn names(dir: &Path, prefix: &str) -> Vec<PathBuf> {
        fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
            })
            .collect()
    }

    #[test]
    fn a_reader_of_an_evicted_object_never_gets_the_bytes_its_file_was_recycled_for() {
        let (_dir, connector) = recycling(4);
        let a = connector.put(Bytes::from(vec![b'a'; 4096])).expect("put a");
        let path = connector.path_of(&a).expect("path");
        // A get has opened a's file and is about to read it...
        let opened = connector
            .open_object(&path)
            .expect("open")
            .expect("a is stored");
        let id = opened.1;
        // ...when a is evicted and the next put reuses its file for b.
        connector.evict(&a).expect("evict a");
        let b_bytes = Bytes::from(vec![b'b'; 4096]);
        let b = connector.put(b_bytes.clone()).expect("put b");
        assert_eq!(connector.recycled_puts(), 1, "b's put reused a file");
        let b_meta = fs::metadata(connector.path_of(&b).expect("path")).expect("b's file");
        assert!(
            FileId::of(&b_meta).same_file(&id),
            "b was written into the very file the get of a holds open"
        );
        // The get of a must not return b's bytes.
        let got = connector.read_opened(&path, opened).expect("read");
        assert_eq!(
            got.as_deref().map(|d| d.first().copied()),
            None,
            "the get of an evicted key returned the bytes of the object its file was recycled for"
        );
        assert_eq!(connector.get(&a).expect("get a"), None);
        assert_eq!(connector.get(&b).expect("get b"), Some(b_bytes));
    }

    #[test]
    fn a_get_racing_an_overwrite_reads_the_new_bytes() {
        let (_dir, connector) = recycling(4);
        let key = connector.put(Bytes::from_static(b"old")).expect("put");
        let path = connector.path_of(&key).expect("path");
        let opened = connector.open_object(&path).expect("open").expect("stored");
        connector
            .overwrite(&key, Bytes::from_static(b"new"))
            .expect("overwrite");
        // The name moved to another file while the first one was read: read again.
        assert_eq!(connector.read_opened(&path, opened).expect("read"), None);
        assert_eq!(
            connector.get(&key).expect("get"),
            Some(Bytes::from_static(b"new"))
        );
    }

    #[test]
    fn free_files_are_empty_bounded_reused_and_removed() {
        let (dir, connector) = recycling(2);
        let connector = connector.with_clear_on_close(false);
        let keys: Vec<Key> = (0..5)
            .map(|i| connector.put(Bytes::from(vec![i; 1000])).expect("put"))
            .collect();
        for key in &keys {
            connector.evict(key).expect("evict");
        }
        let free = names(dir.path(), ".free-");
        assert_eq!(free.len(), 2, "at most 2 free files: {free:?}");
        for path in &free {
            assert_eq!(fs::metadata(path).expect("free file").len(), 0, "emptied");
        }
        assert_eq!(
            connector.object_count(),
            Some(0),
            "free files are no objects"
        );
        for key in &keys {
            assert_eq!(connector.get(key).expect("get"), None);
            assert!(!connector.exists(key).expect("exists"));
        }

        let again: Vec<Key> = (0..3)
            .map(|i| connector.put(Bytes::from(vec![i; 10])).expect("put"))
            .collect();
        assert_eq!(
            connector.recycled_puts(),
            2,
            "two puts reused the two free files"
        );
        assert!(names(dir.path(), ".free-").is_empty());
        for (i, key) in again.iter().enumerate() {
            assert_eq!(
                connector.get(key).expect("get"),
                Some(Bytes::from(vec![i as u8; 10]))
            );
        }
        assert!(names(dir.path(), ".tmp-").is_empty());

        // Closing deletes the free files even when the objects stay.
        for key in &again {
            connector.evict(key).expect("evict");
        }
        assert_eq!(names(dir.path(), ".free-").len(), 2);
        connector.close().expect("close");
        assert!(names(dir.path(), ".free-").is_empty());

        // So does dropping the last clone.
        let (dir, connector) = recycling(8);
        let clone = connector.clone();
        let key = connector.put(Bytes::from_static(b"x")).expect("put");
        clone.evict(&key).expect("evict through a clone");
        drop(connector);
        assert_eq!(names(dir.path(), ".free-").len(), 1, "the clone holds it");
        drop(clone);
        assert!(names(dir.path(), ".free-").is_empty());
    }

    #[test]
    fn without_recycling_evict_deletes() {
        let (dir, connector) = recycling(0);
        let key = connector.put(Bytes::from_static(b"x")).expect("put");
        connector.evict(&key).expect("evict");
        assert!(names(dir.path(), ".").is_empty());
        connector.put(Bytes::from_static(b"y")).expect("put");
        assert_eq!(connector.recycled_puts(), 0);
    }

    #[test]
    fn the_recycling_count_comes_from_the_environment_and_travels_in_the_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            default_recycled_files(dir.path(), Some("0".into())).expect("0"),
            0
        );
        assert_eq!(
            default_recycled_files(dir.path(), Some(" 17 ".into())).expect("17"),
            17
        );
        let err =
            default_recycled_files(dir.path(), Some("lots".into())).expect_err("not a number");
        assert!(
            matches!(err, Error::Config { ref what, .. } if what.contains(ENV_RECYCLE)),
            "{err}"
        );
        let unset = default_recycled_files(dir.path(), None).expect("default");
        assert!(unset == 0 || unset == FileConnector::DEFAULT_RECYCLED_FILES);

        let (_dir, connector) = recycling(3);
        let rebuilt = connector.config().build().expect("rebuild");
        match rebuilt.config() {
            ConnectorConfig::File { recycled_files, .. } => assert_eq!(recycled_files, Some(3)),
            other => panic!("{other:?}"),
        }
        let (_dir, default) = fresh();
        match default.config() {
            ConnectorConfig::File { recycled_files, .. } => assert_eq!(recycled_files, None),
            other => panic!("{other:?}"),
        }
    }

    /// `get`, `exists` and `evict` agree on a store directory that was removed under the
    /// connector: each fails with an I/O error naming the directory (the store is gone), with
    /// recycling off and on (both evict paths).
    #[test]
    fn a_vanished_directory_fails_get_exists_and_evict_alike() {
        for recycled in [0, 4] {
            let (dir, connector) = fresh();
            let connector = connector.with_recycled_files(recycled);
            let key = connector.put(Bytes::from_static(b"x")).expect("put");
            let store_dir = connector.dir().to_path_buf();
            fs::remove_dir_all(&store_dir).expect("remove the store directory");
            let failures = [
                ("get", connector.get(&key).map(drop)),
                ("exists", connector.exists(&key).map(drop)),
                ("evict", connector.evict(&key)),
            ];
            for (operation, outcome) in failures {
                match outcome {
                    Err(Error::Io {
                        ref path,
                        ref source,
                        ..
                    }) => {
                        assert_eq!(path, &store_dir, "{operation} (recycled {recycled})");
                        assert_eq!(source.kind(), ErrorKind::NotFound, "{operation}");
                    }
                    other => panic!(
                        "{operation} on a vanished directory (recycled {recycled}): {other:?}"
                    ),
                }
            }
            drop(dir);
        }
    }

    #[test]
    fn missing_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope");
        let err = FileConnector::new(&missing).expect_err("must fail");
        assert!(
            matches!(err, Error::Io { ref path, .. } if *path == missing),
            "{err}"
        );
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn a_plain_file_is_not_a_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("f");
        fs::write(&file, b"x").expect("write");
        let err = FileConnector::new(&file).expect_err("must fail");
        assert!(matches!(err, Error::Config { .. }), "{err}");
    }

    #[test]
    fn put_leaves_no_temporary_files() {
        let (dir, connector) = fresh();
        for _ in 0..5 {
            connector.put(Bytes::from_static(b"abc")).expect("put");
        }
        let names: Vec<String> = fs::read_dir(dir.path())
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 5);
        assert!(names.iter().all(|n| !n.starts_with(".tmp")), "{names:?}");
    }

    #[test]
    fn create_makes_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nested = dir.path().join("a/b");
        let connector = FileConnector::create(&nested).expect("create");
        assert!(nested.is_dir());
        assert_eq!(connector.object_count(), Some(0));
    }

    #[test]
    fn close_deletes_the_directory_by_default() {
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = parent.path().join("store");
        let connector = FileConnector::create(&dir).expect("create");
        assert!(connector.clear_on_close());
        connector.put(Bytes::from_static(b"x")).expect("put");
        connector.close().expect("close");
        assert!(!dir.exists(), "close must remove {}", dir.display());
    }

    #[test]
    fn several_connectors_on_one_directory_can_all_be_closed() {
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = parent.path().join("shared");
        let first = FileConnector::create(&dir).expect("create");
        let second = FileConnector::new(&dir).expect("second");
        first.close().expect("close the first");
        second
            .close()
            .expect("the directory is already gone: not an error");
        first.close().expect("closing twice is fine");
    }

    #[test]
    fn close_can_keep_the_objects() {
        let (dir, connector) = fresh();
        let connector = connector.with_clear_on_close(false);
        let key = connector.put(Bytes::from_static(b"kept")).expect("put");
        connector.close().expect("close");
        assert!(dir.path().is_dir());
        let reopened = FileConnector::new(dir.path()).expect("reopen");
        assert_eq!(
            reopened.get(&key).expect("get"),
            Some(Bytes::from_static(b"kept"))
        );
    }

    #[test]
    fn the_clear_choice_travels_in_the_config() {
        let (dir, connector) = fresh();
        let keep = connector.with_clear_on_close(false);
        let rebuilt = keep.config().build().expect("rebuild");
        rebuilt.close().expect("close");
        assert!(
            dir.path().is_dir(),
            "the rebuilt connector must keep the directory"
        );
        let clear = FileConnector::new(dir.path()).expect("clear");
        clear
            .config()
            .build()
            .expect("rebuild")
            .close()
            .expect("close");
        assert!(!dir.path().exists());
    }
}
