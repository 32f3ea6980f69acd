//! The `Connector` trait: what a storage backend must implement.

use std::fmt::Debug;
use std::sync::Arc;

use bytes::Bytes;

use crate::config::ConnectorConfig;
use crate::error::{Error, Result};
use crate::key::Key;
use crate::write_buffer::WriteBuffer;

/// A storage backend for raw bytes: the four operations of the ProxyStore model, batches,
/// and a configuration from which the same connector can be rebuilt in another process.
///
/// Connectors are object safe and shared between threads (`Arc<dyn Connector>`). Payloads
/// are [`Bytes`], so that in-memory backends hand out the stored buffer without copying.
///
/// Keys are write-once: [`put`](Connector::put) always stores a new object under a new key.
/// A connector must refuse (with [`Error::WrongConnector`]) a key made by another kind of
/// connector, and must treat a key it made but no longer holds as missing (`None`/`false`).
///
/// Every connector in this crate passes the shared conformance suite in
/// [`conformance`](crate::conformance) (enable the `integration` feature to run it on your own).
pub trait Connector: Send + Sync + Debug {
    /// Stores `data` as a new object and returns its key.
    fn put(&self, data: Bytes) -> Result<Key>;

    /// The object's bytes, or `None` if no object is stored under `key`.
    fn get(&self, key: &Key) -> Result<Option<Bytes>>;

    /// Whether an object is stored under `key`.
    fn exists(&self, key: &Key) -> Result<bool>;

    /// Removes the object stored under `key`. Evicting a missing object is not an error.
    fn evict(&self, key: &Key) -> Result<()>;

    /// Stores several objects; the keys come back in the same order.
    fn put_batch(&self, data: Vec<Bytes>) -> Result<Vec<Key>> {
        data.into_iter().map(|d| self.put(d)).collect()
    }

    /// Fetches several objects; the results come back in the same order as `keys`.
    fn get_batch(&self, keys: &[Key]) -> Result<Vec<Option<Bytes>>> {
        keys.iter().map(|k| self.get(k)).collect()
    }

    /// A buffer of `len` bytes to write an object into and then store with
    /// [`put_buffer`](Connector::put_buffer), so that the object is written once, where it
    /// is kept (see [`WriteBuffer`]). The default is a zeroed heap buffer; a connector
    /// that keeps objects in memory of its own (the ZeroMQ peer's shared memory) hands out
    /// that memory.
    fn alloc(&self, len: usize) -> Result<WriteBuffer> {
        Ok(WriteBuffer::heap(len))
    }

    /// Stores what was written into `buffer` as a new object and returns its key. The
    /// default stores [`WriteBuffer::into_bytes`] with [`put`](Connector::put) (no copy for a
    /// heap buffer).
    fn put_buffer(&self, buffer: WriteBuffer) -> Result<Key> {
        self.put(buffer.into_bytes())
    }

    /// Replaces the object stored under `key` with `data`, atomically for readers (they see
    /// the old bytes or the new ones, never a mix). Fails with [`Error::NotFound`] when no
    /// object is stored under `key` (an overwrite never brings an evicted object back).
    ///
    /// Keys are write-once everywhere else: this is the one overwrite path, used by
    /// [`OwnedProxy::borrow_mut`](crate::OwnedProxy::borrow_mut) to write a changed object
    /// back under its key (ProxyStore's `update`). Proxies that already resolved the old
    /// object elsewhere keep the value they hold. The default refuses with
    /// [`Error::Config`]: a connector opts in by implementing it.
    fn overwrite(&self, key: &Key, data: Bytes) -> Result<()> {
        let _ = data;
        Err(Error::Config {
            what: format!("connector {self:?}"),
            message: format!("it cannot overwrite objects (key {key})"),
        })
    }

    /// A fresh key under which [`put_at`](Connector::put_at) can store one object later:
    /// what a [future](crate::StoreFuture) hands out before its value exists. Nothing is
    /// stored yet (`get` gives `None`, `exists` gives `false`). For a peer-to-peer connector
    /// the key names the peer that will hold the object.
    ///
    /// The default refuses with [`Error::Config`]: a connector opts in by implementing both
    /// this and `put_at` (every connector of this crate does).
    fn new_key(&self) -> Result<Key> {
        Err(Error::Config {
            what: format!("connector {self:?}"),
            message: "it cannot reserve keys for futures (no new_key/put_at)".to_string(),
        })
    }

    /// Stores `data` under `key`, a key made by [`new_key`](Connector::new_key) (in this
    /// process or another). Write-once: fails with [`Error::KeyTaken`] when an object is
    /// already stored under `key` (a future set twice), and a concurrent second writer never
    /// replaces the first one's bytes. Readers see the whole object or nothing.
    ///
    /// The default refuses with [`Error::Config`].
    fn put_at(&self, key: &Key, data: Bytes) -> Result<()> {
        let _ = data;
        Err(Error::Config {
            what: format!("connector {self:?}"),
            message: format!("it cannot store objects under a chosen key ({key})"),
        })
    }

    /// Releases the connector's resources. Operations after `close` may fail with
    /// [`Error::Closed`]. Closing twice is not an error.
    fn close(&self) -> Result<()> {
        Ok(())
    }

    /// A description from which [`ConnectorConfig::build`] makes an equivalent connector,
    /// in this process or another one.
    fn config(&self) -> ConnectorConfig;

    /// How many objects this connector holds (for a peer-to-peer connector: that this
    /// process serves), when the backend can tell cheaply. Used by leak checks.
    fn object_count(&self) -> Option<usize> {
        None
    }
}

/// Checks that `key` was made by a connector of kind `kind`.
pub fn check_kind(key: &Key, kind: &str) -> Result<()> {
    if key.connector() == kind {
        Ok(())
    } else {
        Err(Error::WrongConnector {
            key: key.clone(),
            expected: kind.to_string(),
        })
    }
}

macro_rules! forward_connector {
    ($($ptr:ident),*) => {$(
        impl<C: Connector + ?Sized> Connector for $ptr<C> {
            fn put(&self, data: Bytes) -> Result<Key> {
                (**self).put(data)
            }
            fn get(&self, key: &Key) -> Result<Option<Bytes>> {
                (**self).get(key)
            }
            fn exists(&self, key: &Key) -> Result<bool> {
                (**self).exists(key)
            }
            fn evict(&self, key: &Key) -> Result<()> {
                (**self).evict(key)
            }
            fn put_batch(&self, data: Vec<Bytes>) -> Result<Vec<Key>> {
                (**self).put_batch(data)
            }
            fn get_batch(&self, keys: &[Key]) -> Result<Vec<Option<Bytes>>> {
                (**self).get_batch(keys)
            }
            fn alloc(&self, len: usize) -> Result<WriteBuffer> {
                (**self).alloc(len)
            }
            fn put_buffer(&self, buffer: WriteBuffer) -> Result<Key> {
                (**self).put_buffer(buffer)
            }
            fn overwrite(&self, key: &Key, data: Bytes) -> Result<()> {
                (**self).overwrite(key, data)
            }
            fn new_key(&self) -> Result<Key> {
                (**self).new_key()
            }
            fn put_at(&self, key: &Key, data: Bytes) -> Result<()> {
                (**self).put_at(key, data)
            }
            fn close(&self) -> Result<()> {
                (**self).close()
            }
            fn config(&self) -> ConnectorConfig {
                (**self).config()
            }
            fn object_count(&self) -> Option<usize> {
                (**self).object_count()
            }
        }
    )*};
}

forward_connector!(Arc, Box);
