//! `RoutingPolicy`: which objects a child of a [`MultiConnector`](crate::MultiConnector) takes.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// Which objects one child of a [`MultiConnector`](crate::MultiConnector) accepts, and how
/// much it is preferred over the others.
///
/// A put names two sets of tags, as ProxyStore's `MultiConnector.put` does
/// ([`MultiConnector::put_with_tags`](crate::MultiConnector::put_with_tags)):
/// *subset tags*, which the child must all carry, and *superset tags*, which must include
/// every tag the child requires. A child admits an object when
/// - its size lies within `[min_size, max_size]` (both inclusive; no maximum unless set),
/// - every subset tag of the put is one the child carries
///   ([`with_tag`](RoutingPolicy::with_tag) or [`with_required_tag`](RoutingPolicy::with_required_tag));
///   no subset tags: any child,
/// - every tag the child [requires](RoutingPolicy::with_required_tag) (ProxyStore's policy
///   `superset_tags`) is among the put's superset tags; the put's other superset tags do not
///   matter. A child that requires none admits any superset tags; a child that requires
///   some takes no put without them.
///
/// [`admits`](RoutingPolicy::admits) and
/// [`MultiConnector::put_tagged`](crate::MultiConnector::put_tagged) take one list of tags used
/// as both sets (so there every tag must be carried as well).
/// Among the children that admit an object, the one with the highest priority takes it; on a
/// tie, the one declared first.
///
/// A policy with [host patterns](RoutingPolicy::with_host_pattern) makes its child active only
/// on machines whose host name matches one of them; elsewhere the child is *dormant*: it takes
/// no puts, and a connector rebuilt from a config on such a host does not even build it (a
/// key routed to it is refused with an error naming the child and the host).
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
///
/// let gpu_only = RoutingPolicy::new().with_required_tag("gpu");
/// assert!(gpu_only.admits(10, &["gpu"]));
/// assert!(!gpu_only.admits(10, &[]), "a put that does not ask for `gpu` goes elsewhere");
/// // Superset tags: `gpu` is required, `fp64` is extra and need not be carried.
/// assert!(gpu_only.admits_with_tags(10, &[], &["gpu", "fp64"]));
/// assert!(!gpu_only.admits(10, &["gpu", "fp64"]), "as one list, `fp64` must be carried");
///
/// let cluster = RoutingPolicy::new().with_host_pattern("node-*.cluster");
/// assert!(cluster.active_on("node-17.cluster"));
/// assert!(!cluster.active_on("laptop"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[must_use = "a policy does nothing until given to a MultiConnector child"]
pub struct RoutingPolicy {
    min_size: u64,
    max_size: Option<u64>,
    tags: BTreeSet<String>,
    priority: i32,
    #[serde(default)]
    required_tags: BTreeSet<String>,
    #[serde(default)]
    host_patterns: Vec<String>,
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

    /// Requires `tag`: the child takes only puts that ask for it (and carries it). Several
    /// required tags must all be asked for: the put's tags are a superset of them.
    pub fn with_required_tag(mut self, tag: impl Into<String>) -> Self {
        let tag = tag.into();
        self.tags.insert(tag.clone());
        self.required_tags.insert(tag);
        self
    }

    /// Makes the child active only on hosts whose name matches `pattern` (or another pattern
    /// given the same way). A pattern is matched against the whole host name, ASCII case
    /// insensitively; `*` stands for any run of characters and `?` for one character.
    pub fn with_host_pattern(mut self, pattern: impl Into<String>) -> Self {
        self.host_patterns.push(pattern.into());
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

    /// The tags a put must ask for.
    pub fn required_tags(&self) -> impl Iterator<Item = &str> {
        self.required_tags.iter().map(String::as_str)
    }

    /// The host patterns (none: active everywhere).
    pub fn host_patterns(&self) -> impl Iterator<Item = &str> {
        self.host_patterns.iter().map(String::as_str)
    }

    /// Whether the child is active on the host named `hostname` (always, without patterns).
    pub fn active_on(&self, hostname: &str) -> bool {
        self.host_patterns.is_empty()
            || self
                .host_patterns
                .iter()
                .any(|pattern| wildcard_match(pattern.as_bytes(), hostname.as_bytes()))
    }

    /// Whether an object of `size` bytes, put with `tags`, may go to this child: `tags` are
    /// both the subset and the superset tags of [`admits_with_tags`](Self::admits_with_tags)
    /// (every one must be carried, and every required tag must be among them).
    pub fn admits(&self, size: usize, tags: &[&str]) -> bool {
        self.admits_with_tags(size, tags, tags)
    }

    /// Whether an object of `size` bytes may go to this child when put with `subset_tags`
    /// (each must be carried by the child) and `superset_tags` (they must include every tag
    /// the child requires; others are ignored), ProxyStore's `Policy.is_valid`. See the
    /// [type's docs](RoutingPolicy) for the whole rule.
    pub fn admits_with_tags(
        &self,
        size: usize,
        subset_tags: &[&str],
        superset_tags: &[&str],
    ) -> bool {
        let size = size as u64;
        size >= self.min_size
            && self.max_size.is_none_or(|max| size <= max)
            && subset_tags.iter().all(|tag| self.tags.contains(*tag))
            && self
                .required_tags
                .iter()
                .all(|required| superset_tags.contains(&required.as_str()))
    }
}

/// Whether `text` matches `pattern` as a whole (`*`: any run, `?`: one byte), ignoring ASCII
/// case. Greedy with one backtrack point, so linear in practice and never recursive.
fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c.eq_ignore_ascii_case(&text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
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
    fn required_tags_must_all_be_asked_for() {
        let policy = RoutingPolicy::new()
            .with_required_tag("gpu")
            .with_required_tag("fast")
            .with_tag("spare");
        assert!(!policy.admits(1, &[]));
        assert!(!policy.admits(1, &["gpu"]));
        assert!(policy.admits(1, &["fast", "gpu"]));
        assert!(policy.admits(1, &["fast", "gpu", "spare"]));
        assert!(
            !policy.admits(1, &["fast", "gpu", "other"]),
            "still carried tags only"
        );
    }

    #[test]
    fn host_patterns_match_whole_names_with_wildcards() {
        let any = RoutingPolicy::new();
        assert!(any.active_on("whatever"));
        let policy = RoutingPolicy::new()
            .with_host_pattern("node-*.cluster")
            .with_host_pattern("gpu??");
        for host in [
            "node-1.cluster",
            "NODE-abc.Cluster",
            "node-.cluster",
            "gpu01",
        ] {
            assert!(policy.active_on(host), "{host}");
        }
        for host in [
            "node-1.cluster.org",
            "xnode-1.cluster",
            "gpu1",
            "gpu001",
            "",
        ] {
            assert!(!policy.active_on(host), "{host}");
        }
        assert!(wildcard_match(b"*", b""));
        assert!(wildcard_match(b"a*b*c", b"axxbyybc"));
        assert!(!wildcard_match(b"a*b*c", b"axxbyyb"));
    }

    #[test]
    fn superset_tags_need_only_include_the_required_ones() {
        let gpu = RoutingPolicy::new()
            .with_required_tag("gpu")
            .with_required_tag("fast");
        assert!(gpu.admits_with_tags(1, &[], &["fast", "gpu"]));
        assert!(
            gpu.admits_with_tags(1, &[], &["fast", "gpu", "fp64", "big"]),
            "extra superset tags do not matter"
        );
        assert!(!gpu.admits_with_tags(1, &[], &["gpu"]), "`fast` is missing");
        assert!(!gpu.admits_with_tags(1, &[], &[]));
        // Subset tags are still checked against the carried ones.
        assert!(gpu.admits_with_tags(1, &["gpu"], &["fast", "gpu", "fp64"]));
        assert!(!gpu.admits_with_tags(1, &["fp64"], &["fast", "gpu", "fp64"]));
        // A child that requires nothing admits any superset tags.
        let plain = RoutingPolicy::new();
        assert!(plain.admits_with_tags(1, &[], &["gpu", "anything"]));
        assert!(
            !plain.admits_with_tags(1, &["gpu"], &[]),
            "subset tags must be carried"
        );
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
