//! Keys: the small, serializable names of stored objects.

use std::fmt;
use std::hash::{Hash, Hasher};

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The name of one stored object.
///
/// A key is small (tens of bytes), cheap to compare and hash, and serializable, so it can
/// travel inside a [`Proxy`](crate::Proxy) to another thread or process. It records:
/// - the kind of connector that made it (`"local"`, `"file"`, `"zmq"`, ...), so that a
///   connector can refuse keys it did not make;
/// - a random 128-bit object id;
/// - for peer-to-peer connectors, the peer that owns the object (its endpoint), so any
///   process can fetch it without a directory service;
/// - for routing connectors such as [`MultiConnector`](crate::MultiConnector), the name of
///   the child connector that holds the object.
///
/// Keys are write-once: an object is never updated in place.
///
/// `Key` is a shared handle: cloning it is one reference-count increment.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    inner: Arc<KeyParts>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
struct KeyParts {
    connector: String,
    id: u128,
    peer: Option<String>,
    route: Option<String>,
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.inner.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        KeyParts::deserialize(deserializer).map(|parts| Key {
            inner: Arc::new(parts),
        })
    }
}

impl Key {
    /// A key of the connector kind `connector` with object id `id`.
    pub fn new(connector: impl Into<String>, id: u128) -> Self {
        Key {
            inner: Arc::new(KeyParts {
                connector: connector.into(),
                id,
                peer: None,
                route: None,
            }),
        }
    }

    /// A key with a fresh random object id.
    pub fn random(connector: impl Into<String>) -> Self {
        Key::new(connector, crate::ids::new_id())
    }

    /// The same key, naming `peer` as the owner of the object.
    pub fn with_peer(mut self, peer: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.inner).peer = Some(peer.into());
        self
    }

    /// The same key, routed to the child connector named `route`.
    pub fn with_route(mut self, route: Option<String>) -> Self {
        Arc::make_mut(&mut self.inner).route = route;
        self
    }

    /// The kind of connector that made this key.
    pub fn connector(&self) -> &str {
        &self.inner.connector
    }

    /// The object's 128-bit id.
    pub fn id(&self) -> u128 {
        self.inner.id
    }

    /// The object id as 32 lowercase hexadecimal digits (used in file names and server keys).
    pub fn id_hex(&self) -> String {
        format!("{:032x}", self.inner.id)
    }

    /// The peer that owns the object, for peer-to-peer connectors.
    pub fn peer(&self) -> Option<&str> {
        self.inner.peer.as_deref()
    }

    /// The child connector holding the object, for routing connectors.
    pub fn route(&self) -> Option<&str> {
        self.inner.route.as_deref()
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The random id alone identifies an object; hashing only it keeps lookups cheap
        // and stays consistent with `Eq` (equal keys have equal ids).
        state.write_u128(self.inner.id);
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = &*self.inner;
        if let Some(route) = &parts.route {
            write!(f, "{route}/")?;
        }
        write!(f, "{}:{:032x}", parts.connector, parts.id)?;
        if let Some(peer) = &parts.peer {
            write!(f, "@{peer}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_route_kind_id_and_peer() {
        let key = Key::new("zmq", 0xab)
            .with_peer("tcp://127.0.0.1:5555")
            .with_route(Some("big".into()));
        assert_eq!(
            key.to_string(),
            "big/zmq:000000000000000000000000000000ab@tcp://127.0.0.1:5555"
        );
        assert_eq!(key.peer(), Some("tcp://127.0.0.1:5555"));
        assert_eq!(key.route(), Some("big"));
    }

    #[test]
    fn serialized_key_is_small_and_round_trips() {
        let key = Key::random("local");
        let bytes = bincode::serialize(&key).expect("serialize");
        assert!(bytes.len() < 64, "key is {} bytes", bytes.len());
        let back: Key = bincode::deserialize(&bytes).expect("deserialize");
        assert_eq!(back, key);
    }
}
