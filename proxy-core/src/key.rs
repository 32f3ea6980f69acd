//! Keys: the small, serializable names of stored objects.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
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
///   process can fetch it without a directory service, with the random id the peer drew
///   when it started (its *incarnation*: a key of a peer that restarted, or of another
///   process answering at the same address, is recognised as such) and whether the
///   endpoint was advertised (`PROXYSTORE_ZMQ_ADVERTISE`) rather than bound;
/// - for routing connectors such as `MultiConnector`, the name of
///   the child connector that holds the object.
///
/// Keys are write-once: an object is never updated in place.
///
/// `Key` is a shared handle: cloning it is one reference-count increment.
///
/// Its [`Display`](fmt::Display) form, `[route/]connector:id[@peer[#incarnation[;advertised]]]`
/// with the id as 32 hexadecimal digits and the incarnation as 16, parses back with
/// [`FromStr`]:
///
/// ```
/// use proxy_core::Key;
///
/// let key = Key::new("zmq", 0xab).with_peer("tcp://10.0.0.5:7000");
/// let text = key.to_string();
/// assert_eq!(text, "zmq:000000000000000000000000000000ab@tcp://10.0.0.5:7000");
/// assert_eq!(text.parse::<Key>()?, key);
///
/// let key = key.with_peer_incarnation(0x1234).with_advertised(true);
/// assert_eq!(
///     key.to_string(),
///     "zmq:000000000000000000000000000000ab@tcp://10.0.0.5:7000#0000000000001234;advertised"
/// );
/// assert_eq!(key.to_string().parse::<Key>()?, key);
/// # Ok::<(), proxy_core::Error>(())
/// ```
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
    /// The owning peer's incarnation (0: not known).
    #[serde(default)]
    incarnation: u64,
    /// Whether `peer` is an advertised endpoint rather than the bound one.
    #[serde(default)]
    advertised: bool,
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
                incarnation: 0,
                advertised: false,
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

    /// The same key, naming `incarnation` as the random id its owning peer drew when it
    /// started (0: not known).
    pub fn with_peer_incarnation(mut self, incarnation: u64) -> Self {
        Arc::make_mut(&mut self.inner).incarnation = incarnation;
        self
    }

    /// The same key, saying whether its peer endpoint was advertised
    /// (`PROXYSTORE_ZMQ_ADVERTISE`) rather than the address the peer bound.
    pub fn with_advertised(mut self, advertised: bool) -> Self {
        Arc::make_mut(&mut self.inner).advertised = advertised;
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

    /// The random id the owning peer drew when it started, when the key records it.
    pub fn peer_incarnation(&self) -> Option<u64> {
        Some(self.inner.incarnation).filter(|&incarnation| incarnation != 0)
    }

    /// Whether the [peer](Self::peer) endpoint is one its owner advertised
    /// (`PROXYSTORE_ZMQ_ADVERTISE`) rather than the address it bound.
    pub fn peer_is_advertised(&self) -> bool {
        self.inner.advertised
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The random id alone identifies an object; hashing only it keeps lookups cheap
        // and stays consistent with `Eq` (equal keys have equal ids).
        state.write_u128(self.inner.id);
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    /// By object id, then connector kind, peer, route, incarnation and advertised flag
    /// (consistent with `Eq`).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let (a, b) = (&*self.inner, &*other.inner);
        (
            a.id,
            &a.connector,
            &a.peer,
            &a.route,
            a.incarnation,
            a.advertised,
        )
            .cmp(&(
                b.id,
                &b.connector,
                &b.peer,
                &b.route,
                b.incarnation,
                b.advertised,
            ))
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
            if parts.incarnation != 0 {
                write!(f, "#{:016x}", parts.incarnation)?;
                if parts.advertised {
                    f.write_str(ADVERTISED_SUFFIX)?;
                }
            }
        }
        Ok(())
    }
}

/// The length of the object id in a key's text form.
const ID_HEX_LEN: usize = 32;
/// The length of a peer's incarnation in a key's text form.
const INCARNATION_HEX_LEN: usize = 16;
/// What follows the incarnation in a key's text form when its peer endpoint was advertised.
const ADVERTISED_SUFFIX: &str = ";advertised";

/// Splits `peer[#incarnation[;advertised]]` (the incarnation as 16 hex digits, not zero).
fn split_peer(text: &str) -> (&str, u64, bool) {
    let Some((peer, tail)) = text.rsplit_once('#') else {
        return (text, 0, false);
    };
    let (digits, advertised) = match tail.strip_suffix(ADVERTISED_SUFFIX) {
        Some(digits) => (digits, true),
        None => (tail, false),
    };
    let incarnation = (digits.len() == INCARNATION_HEX_LEN
        && digits.bytes().all(|b| b.is_ascii_hexdigit()))
    .then(|| u64::from_str_radix(digits, 16).ok())
    .flatten()
    .filter(|&incarnation| incarnation != 0);
    match incarnation {
        Some(incarnation) if !peer.is_empty() => (peer, incarnation, advertised),
        _ => (text, 0, false),
    }
}

impl FromStr for Key {
    type Err = crate::Error;

    /// Parses the [`Display`](fmt::Display) form back. The connector kind is what stands
    /// between the last `/` before the id and the `:` in front of it; a route may itself
    /// contain `/`, and a peer anything.
    fn from_str(text: &str) -> crate::Result<Key> {
        let invalid = |message: &str| crate::Error::Config {
            what: format!("key {text:?}"),
            message: format!(
                "{message} (expected [route/]connector:<32 hex digits>[@peer], as keys print)"
            ),
        };
        // The id: the first `:` followed by exactly 32 hex digits and then `@` or the end.
        let id_start = text
            .match_indices(':')
            .map(|(at, _)| at + 1)
            .find(|&start| {
                let rest = &text[start..];
                rest.len() >= ID_HEX_LEN
                    && rest.as_bytes()[..ID_HEX_LEN]
                        .iter()
                        .all(u8::is_ascii_hexdigit)
                    && matches!(rest.as_bytes().get(ID_HEX_LEN), None | Some(b'@'))
            })
            .ok_or_else(|| invalid("no object id"))?;
        let id_end = id_start + ID_HEX_LEN;
        let id = u128::from_str_radix(&text[id_start..id_end], 16)
            .map_err(|_| invalid("the object id is not hexadecimal"))?;
        let head = &text[..id_start - 1];
        let (route, connector) = match head.rfind('/') {
            Some(slash) => (Some(&head[..slash]), &head[slash + 1..]),
            None => (None, head),
        };
        if connector.is_empty() {
            return Err(invalid("no connector kind"));
        }
        let mut key = Key::new(connector, id).with_route(route.map(str::to_string));
        if let Some(peer) = text[id_end..].strip_prefix('@') {
            if peer.is_empty() {
                return Err(invalid("an empty peer after @"));
            }
            let (peer, incarnation, advertised) = split_peer(peer);
            key = key
                .with_peer(peer)
                .with_peer_incarnation(incarnation)
                .with_advertised(advertised);
        }
        Ok(key)
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
    fn the_text_form_parses_back() {
        let id = 0x0123_4567_89ab_cdef_0011_2233_4455_6677;
        for key in [
            Key::new("local", id),
            Key::new("zmq", u128::MAX).with_peer("tcp://127.0.0.1:5555"),
            Key::new("zmq", 0).with_peer("tcp://[::1]:7000"),
            Key::new("file", id).with_route(Some("big".into())),
            Key::new("zmq", id)
                .with_peer("tcp://node-1:7000")
                .with_route(Some("nested/route".into())),
            Key::random("multi"),
            Key::new("zmq", id)
                .with_peer("tcp://10.0.0.5:7000")
                .with_peer_incarnation(u64::MAX),
            Key::new("zmq", id)
                .with_peer("tcp://10.0.0.5:7000")
                .with_peer_incarnation(1)
                .with_advertised(true),
            // A peer whose text looks like an incarnation suffix but is not one stays whole.
            Key::new("zmq", id).with_peer("ipc:///tmp/odd#name"),
            Key::new("zmq", id).with_peer("ipc:///tmp/odd#0000000000000000"),
        ] {
            let text = key.to_string();
            let back: Key = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(back, key, "{text}");
            assert_eq!(
                (back.connector(), back.peer(), back.route()),
                (key.connector(), key.peer(), key.route())
            );
            assert_eq!(
                (back.peer_incarnation(), back.peer_is_advertised()),
                (key.peer_incarnation(), key.peer_is_advertised())
            );
        }
    }

    #[test]
    fn ordering_is_consistent_with_equality() {
        let a = Key::new("zmq", 1).with_peer("tcp://a:1");
        let b = Key::new("zmq", 1).with_peer("tcp://b:1");
        let c = Key::new("zmq", 2);
        assert!(a < b && b < c, "id first, then peer");
        assert_eq!(a.cmp(&a.clone()), std::cmp::Ordering::Equal);
        let mut keys = vec![c.clone(), b.clone(), a.clone()];
        keys.sort();
        assert_eq!(keys, [a, b, c]);
    }

    #[test]
    fn malformed_text_is_an_error_naming_it() {
        for bad in [
            "",
            "zmq",
            "zmq:",
            "zmq:123",
            ":000000000000000000000000000000ab",
            "route/:000000000000000000000000000000ab",
            "zmq:000000000000000000000000000000ab@",
            "zmq:000000000000000000000000000000abX",
            "zmq:00000000000000000000000000000g0ab",
        ] {
            let err = bad.parse::<Key>().expect_err(bad);
            assert!(matches!(err, crate::Error::Config { .. }), "{bad}: {err:?}");
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
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
