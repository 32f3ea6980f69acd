//! The metadata that travels with each object of a stream (ProxyStore's `metadata` dict).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One metadata value: a scalar, a string or bytes.
///
/// Values are flat on purpose (no lists or maps inside): events come from the network, and a
/// flat type cannot be nested deep enough to exhaust the decoder's stack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// No value.
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    UInt(u64),
    /// A floating-point number.
    Float(f64),
    /// Text.
    Str(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
}

impl Value {
    /// The value as an `i64`, when it is an integer that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int(v) => Some(v),
            Value::UInt(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a `u64`, when it is an integer that fits.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Int(v) => u64::try_from(v).ok(),
            Value::UInt(v) => Some(v),
            _ => None,
        }
    }

    /// The value as an `f64`, when it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Float(v) => Some(v),
            Value::Int(v) => Some(v as f64),
            Value::UInt(v) => Some(v as f64),
            _ => None,
        }
    }

    /// The value as a `bool`, when it is one.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// The value as text, when it is text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(v) => Some(v),
            _ => None,
        }
    }

    /// The value as bytes, when it is bytes.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(v) => Some(v),
            _ => None,
        }
    }
}

macro_rules! value_from {
    ($($t:ty => $variant:ident as $as:ty),* $(,)?) => {
        $(impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::$variant(<$as>::from(v))
            }
        })*
    };
}

value_from!(
    bool => Bool as bool,
    i8 => Int as i64,
    i16 => Int as i64,
    i32 => Int as i64,
    i64 => Int as i64,
    u8 => UInt as u64,
    u16 => UInt as u64,
    u32 => UInt as u64,
    u64 => UInt as u64,
    f32 => Float as f64,
    f64 => Float as f64,
    String => Str as String,
    &str => Str as String,
    Vec<u8> => Bytes as Vec<u8>,
);

impl From<usize> for Value {
    fn from(v: usize) -> Value {
        Value::UInt(v as u64)
    }
}

impl From<()> for Value {
    fn from(_: ()) -> Value {
        Value::Null
    }
}

/// The metadata of one object in a stream: named [`Value`]s, sorted by name.
///
/// Producers and consumers filter on it ([`StreamProducerBuilder::with_filter`],
/// [`StreamConsumerBuilder::with_filter`]), and consumers read it next to each object
/// ([`StreamConsumer::next_with_metadata`]).
///
/// [`StreamProducerBuilder::with_filter`]: super::StreamProducerBuilder::with_filter
/// [`StreamConsumerBuilder::with_filter`]: super::StreamConsumerBuilder::with_filter
/// [`StreamConsumer::next_with_metadata`]: super::StreamConsumer::next_with_metadata
///
/// ```
/// use proxy_core::stream::{Metadata, Value};
///
/// let metadata = Metadata::new().with("index", 3).with("source", "camera-1");
/// assert_eq!(metadata.get("index").and_then(Value::as_i64), Some(3));
/// assert_eq!(metadata.get("source").and_then(Value::as_str), Some("camera-1"));
/// assert!(metadata.get("missing").is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata(BTreeMap<String, Value>);

impl Metadata {
    /// No metadata.
    pub fn new() -> Metadata {
        Metadata::default()
    }

    /// This metadata with `name` set to `value`.
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Value>) -> Metadata {
        self.insert(name, value);
        self
    }

    /// Sets `name` to `value`, returning the value it replaces.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<Value>) -> Option<Value> {
        self.0.insert(name.into(), value.into())
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        self.0.remove(name)
    }

    /// How many values there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The values, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(name, value)| (name.as_str(), value))
    }

    /// Adds every value of `other`, replacing those of the same name (what an aggregated
    /// batch's metadata is: the union of its objects', later ones winning).
    pub fn extend(&mut self, other: Metadata) {
        self.0.extend(other.0);
    }
}

impl<K: Into<String>, V: Into<Value>> FromIterator<(K, V)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Metadata {
        Metadata(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_convert_and_read_back() {
        assert_eq!(Value::from(-3i32).as_i64(), Some(-3));
        assert_eq!(Value::from(-3i32).as_u64(), None);
        assert_eq!(Value::from(7u32).as_i64(), Some(7));
        assert_eq!(Value::from(u64::MAX).as_i64(), None);
        assert_eq!(Value::from(1.5f64).as_f64(), Some(1.5));
        assert_eq!(Value::from(true).as_bool(), Some(true));
        assert_eq!(Value::from("x").as_str(), Some("x"));
        assert_eq!(Value::from(vec![1u8, 2]).as_bytes(), Some(&[1u8, 2][..]));
        assert_eq!(Value::from(()), Value::Null);
        assert_eq!(Value::Null.as_i64(), None);
    }

    #[test]
    fn extend_is_a_union_where_later_values_win() {
        let mut a = Metadata::new().with("a", 1).with("shared", 1);
        a.extend(Metadata::new().with("b", 2).with("shared", 2));
        let names: Vec<&str> = a.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "b", "shared"]);
        assert_eq!(a.get("shared").and_then(Value::as_i64), Some(2));
        assert_eq!(a.len(), 3);
        assert_eq!(a.remove("a"), Some(Value::Int(1)));
        assert!(!a.is_empty());
        let collected: Metadata = [("k", 1)].into_iter().collect();
        assert_eq!(collected, Metadata::new().with("k", 1));
    }
}
