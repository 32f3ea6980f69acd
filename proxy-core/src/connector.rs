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

    /// Whether this connector supports an optional operation (one whose default refuses):
    /// `Some(true)` or `Some(false)` when it says, `None` when it does not (the default: a
    /// connector written before this method; the operation is then tried, and fails with the
    /// default's error if it is not implemented). Callers check up front with it:
    /// [`OwnedProxy::borrow_mut`](crate::OwnedProxy::borrow_mut) refuses at once on a
    /// connector that says it cannot [overwrite](Capability::Overwrite), rather than hand out
    /// a guard whose write-back must fail.
    ///
    /// Every connector of this crate says. A connector that implements an optional operation
    /// should say so here; a wrapper forwards it ([`delegate_connector!`](crate::delegate_connector)
    /// does).
    fn supports(&self, capability: Capability) -> Option<bool> {
        let _ = capability;
        None
    }
}

/// An optional operation of [`Connector`], one whose default implementation refuses
/// ([`Connector::supports`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Capability {
    /// [`Connector::overwrite`]: replacing a stored object under its key (what
    /// [`OwnedProxy::borrow_mut`](crate::OwnedProxy::borrow_mut) writes back with).
    Overwrite,
    /// [`Connector::new_key`] and [`Connector::put_at`]: reserving a key and writing it once
    /// later (what [futures](crate::StoreFuture) need).
    ReservedKeys,
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Capability::Overwrite => "overwrite objects (Connector::overwrite)",
            Capability::ReservedKeys => "reserve keys for futures (Connector::new_key/put_at)",
        })
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
            fn supports(&self, capability: Capability) -> Option<bool> {
                (**self).supports(capability)
            }
        }
    )*};
}

forward_connector!(Arc, Box);

/// Implements every method of [`Connector`] that a wrapper does not write itself by
/// forwarding it to one of its fields, so that a wrapper never loses an operation (batches,
/// [`alloc`](Connector::alloc)/[`put_buffer`](Connector::put_buffer) (writing in place),
/// [`overwrite`](Connector::overwrite), [`new_key`](Connector::new_key)/[`put_at`](Connector::put_at),
/// [`supports`](Connector::supports), ...) by forgetting to forward it, including methods
/// added to the trait later.
///
/// Call it inside `impl Connector for Wrapper { ... }` with the field that holds the inner
/// connector (a name, or an index for a tuple struct: `delegate_connector!(0)`; any type
/// that implements [`Connector`]: a connector, `Arc<dyn Connector>`, `Box<C>`), and after
/// `except` the methods the wrapper writes itself:
/// `delegate_connector!(inner)` forwards all of them, `delegate_connector!(inner; except put,
/// get)` all but `put` and `get`. A name that is not a method of the trait is a compile
/// error. Forwarding [`config`](Connector::config) makes the wrapper rebuild as the bare
/// inner connector in another process; write your own `config` to rebuild the wrapper.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use bytes::Bytes;
/// use proxy_core::{delegate_connector, Capability, Connector, Key, LocalConnector, Result};
///
/// /// Counts puts; everything else is the inner connector's.
/// #[derive(Debug)]
/// struct CountingPuts {
///     inner: LocalConnector,
///     puts: AtomicU64,
/// }
///
/// impl Connector for CountingPuts {
///     fn put(&self, data: Bytes) -> Result<Key> {
///         self.puts.fetch_add(1, Ordering::Relaxed);
///         self.inner.put(data)
///     }
///     delegate_connector!(inner; except put);
/// }
///
/// let counting = CountingPuts { inner: LocalConnector::new(), puts: AtomicU64::new(0) };
/// let key = counting.put(Bytes::from_static(b"x"))?;
/// counting.overwrite(&key, Bytes::from_static(b"y"))?; // forwarded, not the refusing default
/// assert_eq!(counting.supports(Capability::Overwrite), Some(true));
/// assert_eq!(counting.puts.load(Ordering::Relaxed), 1);
/// # Ok::<(), proxy_core::Error>(())
/// ```
///
/// A misspelt name after `except` does not compile (it would forward the method silently):
///
/// ```compile_fail
/// use proxy_core::{delegate_connector, Connector, LocalConnector};
///
/// #[derive(Debug)]
/// struct Wrapper {
///     inner: LocalConnector,
/// }
///
/// impl Connector for Wrapper {
///     delegate_connector!(inner; except putt);
/// }
/// ```
#[macro_export]
macro_rules! delegate_connector {
    ($field:tt) => {
        $crate::delegate_connector!($field; except);
    };
    ($field:tt; except $($skip:ident),* $(,)?) => {
        $crate::__delegate_connector_check!($($skip)*);
        $crate::__delegate_connector_method!(put [$($skip)*] $field);
        $crate::__delegate_connector_method!(get [$($skip)*] $field);
        $crate::__delegate_connector_method!(exists [$($skip)*] $field);
        $crate::__delegate_connector_method!(evict [$($skip)*] $field);
        $crate::__delegate_connector_method!(put_batch [$($skip)*] $field);
        $crate::__delegate_connector_method!(get_batch [$($skip)*] $field);
        $crate::__delegate_connector_method!(alloc [$($skip)*] $field);
        $crate::__delegate_connector_method!(put_buffer [$($skip)*] $field);
        $crate::__delegate_connector_method!(overwrite [$($skip)*] $field);
        $crate::__delegate_connector_method!(new_key [$($skip)*] $field);
        $crate::__delegate_connector_method!(put_at [$($skip)*] $field);
        $crate::__delegate_connector_method!(close [$($skip)*] $field);
        $crate::__delegate_connector_method!(config [$($skip)*] $field);
        $crate::__delegate_connector_method!(object_count [$($skip)*] $field);
        $crate::__delegate_connector_method!(supports [$($skip)*] $field);
    };
}

/// Fails to compile when a name given to [`delegate_connector!`] after `except` is not a
/// method of [`Connector`].
#[doc(hidden)]
#[macro_export]
macro_rules! __delegate_connector_check {
    () => {};
    (put $($rest:ident)*) => { $crate::__delegate_connector_check!($($rest)*); };
    (get $($rest:ident)*) => { $crate::__delegate_connector_check!($($rest)*); };
    (exists $($rest:ident)*) => { $crate::__delegate_connector_check!($($rest)*); };
    (evict $($rest:ident)*) => { $crate::__delegate_connector_check!($($rest)*); };
    (put_batch $($rest:ident)*) => { $crate::__delegate_connector_check!($($rest)*); };
    (get_batch $($rest:ident)*) => { $crate::__delegate_connector_check!($($rest)*); };
    (alloc $($rest:ident)*) => { $crate::__delegate_connector_check!($($rest)*); };
    (put_buffer $($rest:ident)*) => { $crate::__delegate_connector_check!($($rest)*); };
    (overwrite $($rest:ident)*) => { $crate::__delegate_connector_check!($($rest)*); };
    (new_key $($rest:ident)*) => { $crate::__delegate_connector_check!($($rest)*); };
    (put_at $($rest:ident)*) => { $crate::__delegate_connector_check!($($rest)*); };
    (close $($rest:ident)*) => { $crate::__delegate_connector_check!($($rest)*); };
    (config $($rest:ident)*) => { $crate::__delegate_connector_check!($($rest)*); };
    (object_count $($rest:ident)*) => { $crate::__delegate_connector_check!($($rest)*); };
    (supports $($rest:ident)*) => { $crate::__delegate_connector_check!($($rest)*); };
    ($unknown:ident $($rest:ident)*) => {
        compile_error!(concat!(
            "delegate_connector!: `",
            stringify!($unknown),
            "` is not a method of proxy_core::Connector"
        ));
    };
}

/// Emits the forwarding of one method of [`Connector`] unless it is in the skip list.
#[doc(hidden)]
#[macro_export]
macro_rules! __delegate_connector_method {
    // Listed: the wrapper writes it.
    (put [put $($rest:ident)*] $field:tt) => {};
    (get [get $($rest:ident)*] $field:tt) => {};
    (exists [exists $($rest:ident)*] $field:tt) => {};
    (evict [evict $($rest:ident)*] $field:tt) => {};
    (put_batch [put_batch $($rest:ident)*] $field:tt) => {};
    (get_batch [get_batch $($rest:ident)*] $field:tt) => {};
    (alloc [alloc $($rest:ident)*] $field:tt) => {};
    (put_buffer [put_buffer $($rest:ident)*] $field:tt) => {};
    (overwrite [overwrite $($rest:ident)*] $field:tt) => {};
    (new_key [new_key $($rest:ident)*] $field:tt) => {};
    (put_at [put_at $($rest:ident)*] $field:tt) => {};
    (close [close $($rest:ident)*] $field:tt) => {};
    (config [config $($rest:ident)*] $field:tt) => {};
    (object_count [object_count $($rest:ident)*] $field:tt) => {};
    (supports [supports $($rest:ident)*] $field:tt) => {};
    // Not this one: look at the rest of the list.
    ($method:ident [$other:ident $($rest:ident)*] $field:tt) => {
        $crate::__delegate_connector_method!($method [$($rest)*] $field);
    };
    // Not listed: forward it.
    (put [] $field:tt) => {
        fn put(&self, data: $crate::__private::Bytes) -> $crate::Result<$crate::Key> {
            $crate::Connector::put(&self.$field, data)
        }
    };
    (get [] $field:tt) => {
        fn get(&self, key: &$crate::Key) -> $crate::Result<::core::option::Option<$crate::__private::Bytes>> {
            $crate::Connector::get(&self.$field, key)
        }
    };
    (exists [] $field:tt) => {
        fn exists(&self, key: &$crate::Key) -> $crate::Result<bool> {
            $crate::Connector::exists(&self.$field, key)
        }
    };
    (evict [] $field:tt) => {
        fn evict(&self, key: &$crate::Key) -> $crate::Result<()> {
            $crate::Connector::evict(&self.$field, key)
        }
    };
    (put_batch [] $field:tt) => {
        fn put_batch(
            &self,
            data: ::std::vec::Vec<$crate::__private::Bytes>,
        ) -> $crate::Result<::std::vec::Vec<$crate::Key>> {
            $crate::Connector::put_batch(&self.$field, data)
        }
    };
    (get_batch [] $field:tt) => {
        fn get_batch(
            &self,
            keys: &[$crate::Key],
        ) -> $crate::Result<::std::vec::Vec<::core::option::Option<$crate::__private::Bytes>>> {
            $crate::Connector::get_batch(&self.$field, keys)
        }
    };
    (alloc [] $field:tt) => {
        fn alloc(&self, len: usize) -> $crate::Result<$crate::WriteBuffer> {
            $crate::Connector::alloc(&self.$field, len)
        }
    };
    (put_buffer [] $field:tt) => {
        fn put_buffer(&self, buffer: $crate::WriteBuffer) -> $crate::Result<$crate::Key> {
            $crate::Connector::put_buffer(&self.$field, buffer)
        }
    };
    (overwrite [] $field:tt) => {
        fn overwrite(
            &self,
            key: &$crate::Key,
            data: $crate::__private::Bytes,
        ) -> $crate::Result<()> {
            $crate::Connector::overwrite(&self.$field, key, data)
        }
    };
    (new_key [] $field:tt) => {
        fn new_key(&self) -> $crate::Result<$crate::Key> {
            $crate::Connector::new_key(&self.$field)
        }
    };
    (put_at [] $field:tt) => {
        fn put_at(&self, key: &$crate::Key, data: $crate::__private::Bytes) -> $crate::Result<()> {
            $crate::Connector::put_at(&self.$field, key, data)
        }
    };
    (close [] $field:tt) => {
        fn close(&self) -> $crate::Result<()> {
            $crate::Connector::close(&self.$field)
        }
    };
    (config [] $field:tt) => {
        fn config(&self) -> $crate::ConnectorConfig {
            $crate::Connector::config(&self.$field)
        }
    };
    (object_count [] $field:tt) => {
        fn object_count(&self) -> ::core::option::Option<usize> {
            $crate::Connector::object_count(&self.$field)
        }
    };
    (supports [] $field:tt) => {
        fn supports(&self, capability: $crate::Capability) -> ::core::option::Option<bool> {
            $crate::Connector::supports(&self.$field, capability)
        }
    };
}

#[cfg(test)]
mod tests {
    /// The names of the methods of the `Connector` trait, read from this file's source.
    fn trait_methods(source: &str) -> Vec<String> {
        let start = source
            .find("pub trait Connector:")
            .expect("the trait is in this file");
        let body = &source[start..];
        let end = body.find("\n}\n").expect("the trait's end");
        body[..end]
            .lines()
            .filter_map(|line| line.trim_start().strip_prefix("fn "))
            .map(|rest| {
                rest.split(['(', '<'])
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }

    /// `delegate_connector!` forwards every method of the trait, and the `Arc`/`Box` impls
    /// too: a method added to the trait and forgotten here fails this test, instead of being
    /// silently lost by every wrapper.
    #[test]
    fn every_trait_method_is_forwarded_by_the_macros() {
        let source = include_str!("connector.rs");
        let methods = trait_methods(source);
        assert!(methods.len() >= 13, "{methods:?}");
        for method in &methods {
            for needle in [
                format!("__delegate_connector_method!({method} ["),
                format!("({method} [{method} $($rest:ident)*] $field:tt) => {{}};"),
                format!("({method} [] $field:tt) => {{"),
                format!("({method} $($rest:ident)*) => {{ $crate::__delegate_connector_check!"),
                format!("(**self).{method}("),
            ] {
                assert!(
                    source.contains(needle.as_str()),
                    "`{method}` is missing from the forwarding macros: no `{needle}`"
                );
            }
        }
    }
}
