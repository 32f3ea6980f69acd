//! `RoutingPolicy`: which objects a child of a [`MultiConnector`](crate::MultiConnector) takes.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// Which objects one child of a [`MultiConnector`](crate::MultiConnector) accepts, and how
/// much it is preferred over the others.
///
/// A child admits an object when its size lies within `[min_size, max_size]` (both
/// inclusive; no maximum unless set) and the child carries every tag the put asked for
/// (a put without tags asks for none). Among the children that admit an object, the one with
/// the highest priority takes it; on a tie, the one declared first.
///
/// ```
/// use proxy_core::RoutingPolicy;
///
/// let small = RoutingPolicy::new().with_max_size(1 << 20).with_priority(1);
/// assert!(small.admits(1024, &[]));
/// assert!(!small.admits(2 << 20, &[]));
///
/// let archive = RoutingPolicy::new().with_tag("durable");
/// assert!(archive.admits(10, &["durable"]));
/// assert!(!small.admits(10, &["durable"]));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[must_use = "a policy does nothing until given to a MultiConnector child"]
pub struct RoutingPolicy {
    min_size: u64,
    max_size: Option<u64>,
    tags: BTreeSet<String>,
    priority: i32,
}

impl RoutingPolicy {
    /// A policy that admits every object, with no tags and priority 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Admits only objects of at least `bytes` bytes.
    pub fn with_min_size(mut self, bytes: u64) -> Self {
        self.min_size = bytes;
        self
    }

    /// Admits only objects of at most `bytes` bytes.
    pub fn with_max_size(mut self, bytes: u64) -> Self {
        self.max_size = Some(bytes);
        self
    }

    /// Adds `tag` to the tags this child carries.
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.insert(tag.into());
        self
    }

    /// Sets the priority: among the children that admit an object, the highest wins.
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// The smallest admitted size in bytes.
    pub fn min_size(&self) -> u64 {
        self.min_size
    }

    /// The largest admitted size in bytes, if there is one.
    pub fn max_size(&self) -> Option<u64> {
        self.max_size
    }

    /// The tags this child carries.
    pub fn tags(&self) -> impl Iterator<Item = &str> {
        self.tags.iter().map(String::as_str)
    }

    /// The child's priority.
    pub fn priority(&self) -> i32 {
        self.priority
    }

    /// Whether an object of `size` bytes, put with `tags`, may go to this child.
    pub fn admits(&self, size: usize, tags: &[&str]) -> bool {
        let size = size as u64;
        size >= self.min_size
            && self.max_size.is_none_or(|max| size <= max)
            && tags.iter().all(|tag| self.tags.contains(*tag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_bounds_are_inclusive() {
        let policy = RoutingPolicy::new().with_min_size(10).with_max_size(20);
        assert!(!policy.admits(9, &[]));
        assert!(policy.admits(10, &[]));
        assert!(policy.admits(20, &[]));
        assert!(!policy.admits(21, &[]));
    }

    #[test]
    fn every_requested_tag_must_be_carried() {
        let policy = RoutingPolicy::new().with_tag("fast").with_tag("local");
        assert!(policy.admits(1, &[]));
        assert!(policy.admits(1, &["fast"]));
        assert!(policy.admits(1, &["local", "fast"]));
        assert!(!policy.admits(1, &["fast", "durable"]));
    }
}
