//! Stream events and their versioned wire format.
//!
//! A producer publishes one [`EventBatch`] per flush of a topic: the new objects of the batch
//! (each with its [`Metadata`]), and an end-of-stream event when the topic was closed. An
//! object either travels inside its event (a topic without a store) or is stored, and then
//! the event carries its [`Key`] and whether to evict it once consumed; the batch names the
//! store once, by its [`StoreConfig`], so that a consumer in any process can rebuild it.
//!
//! # Format (version 1)
//!
//! A message is one version byte, `1`, followed by the batch in bincode (fixed-width
//! little-endian integers, lengths as `u64`, nothing after the batch):
//!
//! ```text
//! message    = version:u8 = 1, batch
//! batch      = topic:string, sequence:u64, store:option<bytes>, events:seq<event>
//! event      = 0:u32, metadata, object:bytes          (the object itself, encoded by the
//!                                                      producer's codec)
//!            | 1:u32, metadata, key, evict:bool       (an object in the batch's store)
//!            | 2:u32                                  (end of stream)
//! metadata   = seq<(name:string, value)>              (sorted by name)
//! value      = 0:u32 (null) | 1:u32, bool | 2:u32, i64 | 3:u32, u64 | 4:u32, f64
//!            | 5:u32, string | 6:u32, bytes
//! store      = the StoreConfig in bincode, at most MAX_STORE_CONFIG_LEN bytes
//! string     = len:u64, UTF-8 bytes;  bytes = len:u64, bytes;  seq<x> = len:u64, x...
//! option<x>  = 0:u8 | 1:u8, x
//! ```
//!
//! `sequence` counts the batches a producer sent to the topic (1, 2, ...). A message whose
//! version is not 1, that does not decode, that has bytes after the batch, whose store
//! configuration is longer than [`MAX_STORE_CONFIG_LEN`], or that has key events without a
//! store is refused with [`Error::Protocol`]; no input makes the decoder panic or allocate
//! more than the message's own length (a property test feeds it arbitrary bytes).

use std::num::NonZeroUsize;
use std::sync::{Mutex, PoisonError};

use bincode::Options;
use bytes::Bytes;
use lru::LruCache;
use serde::{Deserialize, Serialize};

use super::metadata::Metadata;
use crate::error::{Error, Result};
use crate::key::Key;
use crate::store::StoreConfig;

/// The version byte that starts every message of this format.
pub const EVENT_FORMAT_VERSION: u8 = 1;

/// The longest store configuration a batch may carry, in bytes. A real one is a few hundred
/// bytes; the bound keeps a hostile message from nesting connector configurations
/// ([`ConnectorConfig::Multi`](crate::ConnectorConfig::Multi)) deep enough to exhaust the
/// decoder's stack.
pub const MAX_STORE_CONFIG_LEN: usize = 4096;

/// One event of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// A new object, inside the event: encoded by the producer's codec.
    Object {
        /// The object's metadata.
        metadata: Metadata,
        /// The encoded object.
        object: Bytes,
    },
    /// A new object, stored in the batch's store under `key`.
    Key {
        /// The object's metadata.
        metadata: Metadata,
        /// Where the object is.
        key: Key,
        /// Whether the consumer evicts it once consumed.
        evict: bool,
    },
    /// The producer closed the topic: nothing follows.
    EndOfStream,
}

impl Event {
    /// The event's metadata (none for the end of the stream).
    pub fn metadata(&self) -> Option<&Metadata> {
        match self {
            Event::Object { metadata, .. } | Event::Key { metadata, .. } => Some(metadata),
            Event::EndOfStream => None,
        }
    }
}

/// The events a producer sends to one topic at once.
#[derive(Debug, Clone, PartialEq)]
pub struct EventBatch {
    /// The topic.
    pub topic: String,
    /// How many batches the producer sent to this topic, this one included.
    pub sequence: u64,
    /// The store of the batch's [`Event::Key`] events.
    pub store: Option<StoreConfig>,
    /// The events, in order.
    pub events: Vec<Event>,
}

#[derive(Serialize)]
struct WireRef<'a> {
    topic: &'a str,
    sequence: u64,
    store: Option<&'a [u8]>,
    events: &'a [Event],
}

#[derive(Deserialize)]
struct Wire {
    topic: String,
    sequence: u64,
    store: Option<Vec<u8>>,
    events: Vec<Event>,
}

fn options(limit: usize) -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .reject_trailing_bytes()
        .with_limit(limit as u64)
}

/// Store configurations decoded lately, by their bytes: a stream names the same store in
/// every batch, so most batches find theirs here.
static STORE_CONFIGS: Mutex<Option<LruCache<Vec<u8>, StoreConfig>>> = Mutex::new(None);
/// How many decoded store configurations are kept.
const STORE_CONFIGS_KEPT: usize = 64;
/// The stack of the thread that decodes a new store configuration.
const DECODER_STACK: usize = 16 << 20;

/// Decodes a store configuration (at most [`MAX_STORE_CONFIG_LEN`] bytes).
///
/// Connector configurations nest ([`ConnectorConfig::Multi`](crate::ConnectorConfig::Multi))
/// and serde decodes them recursively: the bound on the length bounds the depth, but a
/// hostile configuration that deep can need more stack than the calling thread has left (a
/// few hundred KiB in a debug build). A new configuration is therefore decoded on a thread
/// of its own with a 16 MiB stack (reserved, and touched only as far as used); the decoded
/// configurations are kept, by their bytes, so this happens once per store.
fn decode_store_config(bytes: Vec<u8>) -> std::result::Result<StoreConfig, String> {
    let cache = || STORE_CONFIGS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(config) = cache().as_mut().and_then(|c| c.get(&bytes).cloned()) {
        return Ok(config);
    }
    let decoded = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("proxystore-stream-config".to_string())
            .stack_size(DECODER_STACK)
            .spawn_scoped(scope, || {
                // Cloning a nested configuration recurses as deep as decoding it: the copy
                // for the cache is made here too.
                options(bytes.len())
                    .deserialize::<StoreConfig>(&bytes)
                    .map(|config| (config.clone(), config))
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| format!("could not start its decoder: {e}"))?
            .join()
            .map_err(|_| "its decoder failed".to_string())?
    })?;
    let (kept, decoded) = decoded;
    cache()
        .get_or_insert_with(|| {
            LruCache::new(NonZeroUsize::new(STORE_CONFIGS_KEPT).unwrap_or(NonZeroUsize::MIN))
        })
        .put(bytes, kept);
    Ok(decoded)
}

impl EventBatch {
    /// Encodes the batch as a message of the current format (version and layout: [`EventBatch`]).
    ///
    /// # Errors
    /// [`Error::Codec`] when the store configuration is longer than
    /// [`MAX_STORE_CONFIG_LEN`] or the batch cannot be encoded.
    pub fn encode(&self) -> Result<Bytes> {
        let codec = |message: String| Error::Codec {
            action: "encode",
            type_name: "EventBatch",
            message,
        };
        let store = match &self.store {
            Some(config) => {
                let bytes = options(usize::MAX)
                    .serialize(config)
                    .map_err(|e| codec(e.to_string()))?;
                if bytes.len() > MAX_STORE_CONFIG_LEN {
                    return Err(codec(format!(
                        "the configuration of store `{}` is {} bytes, more than the {MAX_STORE_CONFIG_LEN} an event may carry",
                        config.name,
                        bytes.len()
                    )));
                }
                Some(bytes)
            }
            None => None,
        };
        let wire = WireRef {
            topic: &self.topic,
            sequence: self.sequence,
            store: store.as_deref(),
            events: &self.events,
        };
        let mut message = vec![EVENT_FORMAT_VERSION];
        options(usize::MAX)
            .serialize_into(&mut message, &wire)
            .map_err(|e| codec(e.to_string()))?;
        Ok(Bytes::from(message))
    }

    /// Decodes a message of the format described at [`EventBatch`]; `source` (where it came from) names the peer
    /// of the error.
    ///
    /// # Errors
    /// [`Error::Protocol`] for anything that is not a well-formed message.
    pub fn decode(message: &[u8], source: &str) -> Result<EventBatch> {
        let refuse = |message: String| Error::Protocol {
            peer: source.to_string(),
            message,
        };
        let Some((&version, body)) = message.split_first() else {
            return Err(refuse("an empty stream event message".to_string()));
        };
        if version != EVENT_FORMAT_VERSION {
            return Err(refuse(format!(
                "stream event format version {version}, but this consumer reads version {EVENT_FORMAT_VERSION}"
            )));
        }
        let wire: Wire = options(body.len())
            .deserialize(body)
            .map_err(|e| refuse(format!("malformed stream event batch: {e}")))?;
        let store = match wire.store {
            Some(bytes) if bytes.len() > MAX_STORE_CONFIG_LEN => {
                return Err(refuse(format!(
                "the store configuration is {} bytes, more than the {MAX_STORE_CONFIG_LEN} allowed",
                bytes.len()
            )))
            }
            Some(bytes) => Some(
                decode_store_config(bytes)
                    .map_err(|e| refuse(format!("malformed store configuration: {e}")))?,
            ),
            None => None,
        };
        if store.is_none() && wire.events.iter().any(|e| matches!(e, Event::Key { .. })) {
            return Err(refuse(format!(
                "a batch of topic `{}` has stored objects but names no store",
                wire.topic
            )));
        }
        Ok(EventBatch {
            topic: wire.topic,
            sequence: wire.sequence,
            store,
            events: wire.events,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LocalConnector, Store};
    use proptest::prelude::*;

    fn batch() -> EventBatch {
        let store = Store::new("events-test", LocalConnector::new());
        EventBatch {
            topic: "topic".to_string(),
            sequence: 7,
            store: Some(store.config()),
            events: vec![
                Event::Object {
                    metadata: Metadata::new().with("i", 1),
                    object: Bytes::from_static(b"inline"),
                },
                Event::Key {
                    metadata: Metadata::new(),
                    key: Key::random("local"),
                    evict: true,
                },
                Event::EndOfStream,
            ],
        }
    }

    /// ProxyStore's `events_test.py::test_encode_decode` (every event kind, alone and in a
    /// batch).
    #[test]
    fn every_event_kind_round_trips() {
        let full = batch();
        for events in [
            vec![full.events[0].clone()],
            vec![full.events[1].clone()],
            vec![Event::EndOfStream],
            full.events.clone(),
        ] {
            let batch = EventBatch {
                events,
                ..full.clone()
            };
            let message = batch.encode().expect("encode");
            assert_eq!(message[0], EVENT_FORMAT_VERSION);
            assert_eq!(EventBatch::decode(&message, "test").expect("decode"), batch);
        }
        let inline_only = EventBatch {
            store: None,
            events: vec![full.events[0].clone()],
            ..full
        };
        let message = inline_only.encode().expect("encode");
        assert_eq!(
            EventBatch::decode(&message, "test").expect("decode"),
            inline_only
        );
    }

    /// ProxyStore's `events_test.py::test_new_object_key`: the key comes back equal.
    #[test]
    fn keys_come_back_equal() {
        let full = batch();
        let decoded = EventBatch::decode(&full.encode().expect("encode"), "t").expect("decode");
        match (&full.events[1], &decoded.events[1]) {
            (Event::Key { key: a, .. }, Event::Key { key: b, .. }) => {
                assert_eq!(a, b);
                assert_eq!(a.id(), b.id());
            }
            other => panic!("{other:?}"),
        }
    }

    fn refusal(message: &[u8]) -> String {
        match EventBatch::decode(message, "the-source") {
            Err(Error::Protocol { peer, message }) => {
                assert_eq!(peer, "the-source");
                message
            }
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }

    #[test]
    fn malformed_messages_are_protocol_errors_that_say_why() {
        let good = batch().encode().expect("encode");
        assert!(refusal(&[]).contains("empty"));
        let mut other_version = good.to_vec();
        other_version[0] = 2;
        assert!(refusal(&other_version).contains("version 2"));
        let mut trailing = good.to_vec();
        trailing.push(0);
        assert!(refusal(&trailing).contains("malformed"));
        assert!(refusal(&good[..good.len() - 1]).contains("malformed"));
        // Key events without a store.
        let storeless = EventBatch {
            store: None,
            ..batch()
        };
        let message = storeless.encode().expect("encode");
        assert!(refusal(&message).contains("names no store"));
    }

    #[test]
    fn store_configurations_past_the_bound_are_refused_both_ways() {
        let mut big = Store::new("x".repeat(MAX_STORE_CONFIG_LEN), LocalConnector::new()).config();
        let batch = EventBatch {
            store: Some(big.clone()),
            ..batch()
        };
        assert!(matches!(batch.encode(), Err(Error::Codec { .. })));
        // A hand-made message with a long configuration is refused before it is decoded.
        big.name = "short".to_string();
        let long = vec![0u8; MAX_STORE_CONFIG_LEN + 1];
        let wire = WireRef {
            topic: "t",
            sequence: 1,
            store: Some(&long),
            events: &[],
        };
        let mut message = vec![EVENT_FORMAT_VERSION];
        options(usize::MAX)
            .serialize_into(&mut message, &wire)
            .expect("encode");
        assert!(refusal(&message).contains("more than the"));
    }

    /// A store configuration nested as deep as the bound allows decodes (or is refused)
    /// without exhausting the stack of a thread with a small stack.
    #[test]
    fn the_deepest_store_configuration_that_fits_does_not_exhaust_the_stack() {
        use crate::connectors::MultiChildConfig;
        use crate::{ConnectorConfig, RoutingPolicy};
        // Nest Multi configurations until the encoding passes the bound.
        let mut config = ConnectorConfig::Local { id: 1 };
        let mut depth = 0;
        loop {
            let next = ConnectorConfig::Multi {
                children: vec![MultiChildConfig {
                    name: String::new(),
                    policy: RoutingPolicy::default(),
                    connector: config.clone(),
                }],
            };
            let len = options(usize::MAX).serialize(&next).expect("encode").len();
            if len > MAX_STORE_CONFIG_LEN - 64 {
                break;
            }
            config = next;
            depth += 1;
        }
        assert!(depth > 10, "only {depth} levels fit");
        let mut store = Store::new("deep", LocalConnector::new()).config();
        store.connector = config;
        let message = EventBatch {
            topic: "t".to_string(),
            sequence: 1,
            store: Some(store.clone()),
            events: vec![],
        }
        .encode()
        .expect("encode");
        // 256 KiB of stack: an eighth of a spawned thread's default.
        let decoded = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || EventBatch::decode(&message, "deep").map(|b| b.store))
            .expect("spawn")
            .join()
            .expect("the decoder did not overflow its stack");
        assert_eq!(decoded.expect("decode"), Some(store));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Arbitrary bytes: an error or a batch, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = EventBatch::decode(&bytes, "fuzz");
        }

        /// A valid message with bytes changed, cut or grown: an error or a batch, never a panic.
        #[test]
        fn mutated_messages_never_panic(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in any::<usize>(),
            grow in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            let mut message = batch().encode().expect("encode").to_vec();
            for (at, byte) in flips {
                let at = at % message.len();
                message[at] = byte;
            }
            message.truncate(cut % (message.len() + 1));
            message.extend(grow);
            let _ = EventBatch::decode(&message, "fuzz");
        }
    }
}
