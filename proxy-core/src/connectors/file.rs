//! `FileConnector`: one file per object in a directory.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::config::ConnectorConfig;
use crate::connector::{check_kind, Connector};
use crate::error::{Error, Result};
use crate::ids::new_id;
use crate::key::Key;

const KIND: &str = "file";

/// Objects kept as files in a directory, one file per object named by its key's id.
///
/// A `put` writes to a temporary file in the same directory and renames it into place, so a
/// reader never sees a partly written object. Several processes (or machines sharing the
/// filesystem) can use the same directory at once.
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
}

impl FileConnector {
    /// A connector over the existing directory `dir` (made absolute), which
    /// [`close`](Connector::close) deletes.
    ///
    /// Fails with [`Error::Io`] if `dir` is missing or unreadable, and with
    /// [`Error::Config`] if it is not a directory.
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
        Ok(FileConnector {
            dir,
            clear_on_close: true,
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

    /// Writes `data` to a new temporary file in the directory and returns its path.
    fn write_temporary(&self, data: &[u8]) -> Result<PathBuf> {
        let tmp = self.dir.join(format!(".tmp-{:032x}", new_id()));
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
}

impl Connector for FileConnector {
    fn put(&self, data: Bytes) -> Result<Key> {
        let key = Key::random(KIND);
        let path = self.dir.join(key.id_hex());
        self.write_into_place(&path, &data)?;
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

    fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        let path = self.path_of(key)?;
        match fs::read(&path) {
            Ok(data) => Ok(Some(Bytes::from(data))),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.missing("read store directory").map(|()| None)
            }
            Err(e) => Err(Error::io("read", path, e)),
        }
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

    fn evict(&self, key: &Key) -> Result<()> {
        let path = self.path_of(key)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", path, e)),
        }
    }

    /// Deletes the directory and its objects unless built with
    /// [`with_clear_on_close(false)`](FileConnector::with_clear_on_close). A directory that is
    /// already gone (another connector over it was closed first) is not an error.
    fn close(&self) -> Result<()> {
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
