//! `MultiConnector`: routes each object to one of several named connectors.

mod policy;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::config::ConnectorConfig;
use crate::connector::{Capability, Connector};
use crate::error::{Error, Result};
use crate::key::Key;

pub use policy::RoutingPolicy;

/// Several named child connectors behind one: each `put` goes to the child whose
/// [`RoutingPolicy`] admits the object (by size and tags) with the highest priority, and the
/// returned key names that child in its [`route`](Key::route), so that `get`, `exists` and
/// `evict` go straight to the owner.
///
/// The keys are the children's own keys plus the route (a child that is itself a
/// `MultiConnector` gets the path `outer/inner`). A key without a route, or with a route
/// naming no child, is refused with [`Error::WrongConnector`]. Batches are split per child
/// and use the children's batch operations. The [`config`](Connector::config) nests the
/// children's configurations, so another process rebuilds the whole tree.
///
/// A child whose policy names [host patterns](RoutingPolicy::with_host_pattern) is used only
/// on matching hosts ([`MultiConnectorBuilder::with_hostname`] injects the name, for tests);
/// rebuilt from a config on another host, it stays dormant and is not built.
///
/// ```
/// use bytes::Bytes;
/// use proxy_core::{Connector, FileConnector, LocalConnector, MultiConnector, RoutingPolicy};
///
/// # let dir = std::env::temp_dir().join(format!("proxy-core-multi-doc-{}", std::process::id()));
/// let small = LocalConnector::new();
/// let large = FileConnector::create(&dir)?;
/// let multi = MultiConnector::builder()
///     .child("small", small.clone(), RoutingPolicy::new().with_max_size(1024))
///     .child("large", large, RoutingPolicy::new().with_min_size(1025))
///     .build()?;
///
/// let key = multi.put(Bytes::from_static(b"tiny"))?;
/// assert_eq!(key.route(), Some("small"));
/// assert!(small.exists(&key)?, "the small object is in the local connector");
/// assert_eq!(multi.get(&key)?, Some(Bytes::from_static(b"tiny")));
///
/// let key = multi.put(Bytes::from(vec![0u8; 4096]))?;
/// assert_eq!(key.route(), Some("large"));
/// multi.evict(&key)?;
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), proxy_core::Error>(())
/// ```
#[derive(Clone)]
pub struct MultiConnector {
    children: Arc<[Child]>,
    hostname: Arc<str>,
}

#[derive(Debug)]
struct Child {
    name: String,
    policy: RoutingPolicy,
    connector: ChildConnector,
}

#[derive(Debug)]
enum ChildConnector {
    /// A built connector (given to the builder, or built from a config on a host where the
    /// child is active).
    Built(Arc<dyn Connector>),
    /// A child whose host patterns do not match this host, rebuilt from a config: it is not
    /// built here; its config is kept so that [`Connector::config`] still describes it.
    Dormant(Box<ConnectorConfig>),
}

impl Child {
    fn built(&self) -> Option<&Arc<dyn Connector>> {
        match &self.connector {
            ChildConnector::Built(connector) => Some(connector),
            ChildConnector::Dormant(_) => None,
        }
    }
}

/// One child of a [`ConnectorConfig::Multi`]: its name, policy and configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MultiChildConfig {
    /// The child's name, recorded in the route of its keys.
    pub name: String,
    /// Which objects the child takes.
    pub policy: RoutingPolicy,
    /// How to build the child.
    pub connector: ConnectorConfig,
}

/// Declares the children of a [`MultiConnector`]; made by [`MultiConnector::builder`].
#[derive(Debug, Default)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct MultiConnectorBuilder {
    children: Vec<Child>,
    hostname: Option<String>,
}

impl MultiConnectorBuilder {
    /// Adds the child `connector` under `name` with `policy`.
    pub fn child(
        self,
        name: impl Into<String>,
        connector: impl Connector + 'static,
        policy: RoutingPolicy,
    ) -> Self {
        self.child_arc(name, Arc::new(connector), policy)
    }

    /// Adds a shared child connector under `name` with `policy`.
    pub fn child_arc(
        mut self,
        name: impl Into<String>,
        connector: Arc<dyn Connector>,
        policy: RoutingPolicy,
    ) -> Self {
        self.children.push(Child {
            name: name.into(),
            policy,
            connector: ChildConnector::Built(connector),
        });
        self
    }

    /// The host name that [host patterns](RoutingPolicy::with_host_pattern) are matched
    /// against (default: this machine's, from `gethostname`). For tests, and for machines
    /// known under another name than their own.
    pub fn with_hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = Some(hostname.into());
        self
    }

    /// The connector. Fails with [`Error::Config`] if there is no child, or a name is empty,
    /// repeated or contains `/` (the route separator).
    pub fn build(self) -> Result<MultiConnector> {
        let invalid = |message: String| Error::Config {
            what: "multi connector".into(),
            message,
        };
        if self.children.is_empty() {
            return Err(invalid("it needs at least one child".into()));
        }
        for (i, child) in self.children.iter().enumerate() {
            if child.name.is_empty() || child.name.contains('/') {
                return Err(invalid(format!(
                    "child name `{}` must be non-empty and free of `/`",
                    child.name
                )));
            }
            if self.children[..i]
                .iter()
                .any(|other| other.name == child.name)
            {
                return Err(invalid(format!("two children are named `{}`", child.name)));
            }
        }
        Ok(MultiConnector {
            children: self.children.into(),
            hostname: self.hostname.unwrap_or_else(system_hostname).into(),
        })
    }
}

impl MultiConnector {
    /// Starts declaring the children.
    pub fn builder() -> MultiConnectorBuilder {
        MultiConnectorBuilder::default()
    }

    /// Rebuilds a connector from its children's configurations, on this machine.
    pub(crate) fn from_configs(children: &[MultiChildConfig]) -> Result<Self> {
        Self::from_configs_on_host(children, &system_hostname())
    }

    /// Rebuilds a connector from its children's configurations as on the host `hostname`:
    /// children whose host patterns do not match it stay dormant (not built); nested multi
    /// connectors are rebuilt for the same host.
    pub fn from_configs_on_host(children: &[MultiChildConfig], hostname: &str) -> Result<Self> {
        let mut builder = Self::builder().with_hostname(hostname);
        for child in children {
            let connector = if !child.policy.active_on(hostname) {
                ChildConnector::Dormant(Box::new(child.connector.clone()))
            } else if let ConnectorConfig::Multi { children } = &child.connector {
                ChildConnector::Built(Arc::new(Self::from_configs_on_host(children, hostname)?))
            } else {
                ChildConnector::Built(child.connector.build()?)
            };
            builder.children.push(Child {
                name: child.name.clone(),
                policy: child.policy.clone(),
                connector,
            });
        }
        builder.build()
    }

    /// The host name the children's host patterns are matched against.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// The names of the children that are dormant here (their host patterns do not match
    /// [`hostname`](MultiConnector::hostname)), in declaration order.
    pub fn dormant_children(&self) -> impl Iterator<Item = &str> {
        self.children
            .iter()
            .filter(|c| !c.policy.active_on(&self.hostname))
            .map(|c| c.name.as_str())
    }

    /// The child named `name` (`None` also for a dormant child that was not built).
    pub fn child(&self, name: &str) -> Option<&Arc<dyn Connector>> {
        self.children
            .iter()
            .find(|c| c.name == name)
            .and_then(Child::built)
    }

    /// The children's names and policies, in declaration order.
    pub fn children(&self) -> impl Iterator<Item = (&str, &RoutingPolicy)> {
        self.children.iter().map(|c| (c.name.as_str(), &c.policy))
    }

    /// The name of the child that a put of `size` bytes with `tags` goes to.
    ///
    /// Fails with [`Error::Config`] naming the size and tags when no child admits it.
    pub fn route_for(&self, size: usize, tags: &[&str]) -> Result<&str> {
        self.route_for_tags(size, tags, tags)
    }

    /// The name of the child that a put of `size` bytes with `subset_tags` and
    /// `superset_tags` goes to ([`put_with_tags`](MultiConnector::put_with_tags)).
    pub fn route_for_tags(
        &self,
        size: usize,
        subset_tags: &[&str],
        superset_tags: &[&str],
    ) -> Result<&str> {
        self.choose(size, Tags::new(subset_tags, superset_tags))
            .map(|i| self.children[i].name.as_str())
    }

    /// Stores `data` in the child chosen for its size among those carrying all of `tags`
    /// and requiring none that `tags` lacks (`tags` as both the subset and the superset
    /// tags of [`put_with_tags`](MultiConnector::put_with_tags)).
    pub fn put_tagged(&self, data: Bytes, tags: &[&str]) -> Result<Key> {
        self.put_with_tags(data, tags, tags)
    }

    /// Stores `data` in the child chosen as ProxyStore's `MultiConnector.put(obj,
    /// subset_tags, superset_tags)` chooses: among the children whose size bounds admit it,
    /// that carry every tag of `subset_tags` and whose
    /// [required tags](RoutingPolicy::with_required_tag) are all in `superset_tags` (extra
    /// superset tags are ignored), the one with the highest priority (the first declared on
    /// a tie). See [`RoutingPolicy`] for the rule.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use proxy_core::{LocalConnector, MultiConnector, RoutingPolicy};
    ///
    /// let multi = MultiConnector::builder()
    ///     .child("any", LocalConnector::new(), RoutingPolicy::new())
    ///     .child(
    ///         "gpu",
    ///         LocalConnector::new(),
    ///         RoutingPolicy::new().with_required_tag("gpu").with_priority(1),
    ///     )
    ///     .build()?;
    /// // `gpu` is required by the child; `fp64` is an extra superset tag and does not matter.
    /// let key = multi.put_with_tags(Bytes::from_static(b"x"), &[], &["gpu", "fp64"])?;
    /// assert_eq!(key.route(), Some("gpu"));
    /// // Without `gpu` among the superset tags, the gpu child takes nothing.
    /// let key = multi.put_with_tags(Bytes::from_static(b"x"), &[], &["fp64"])?;
    /// assert_eq!(key.route(), Some("any"));
    /// # Ok::<(), proxy_core::Error>(())
    /// ```
    pub fn put_with_tags(
        &self,
        data: Bytes,
        subset_tags: &[&str],
        superset_tags: &[&str],
    ) -> Result<Key> {
        let child =
            &self.children[self.choose(data.len(), Tags::new(subset_tags, superset_tags))?];
        let key = self.connector_of(child)?.put(data)?;
        Ok(add_route(&child.name, key))
    }

    /// Stores several objects, each in the child chosen for its size among those carrying all
    /// of `tags` (as [`put_tagged`](MultiConnector::put_tagged)); each child gets its share as
    /// one batch. The keys come back in order.
    pub fn put_batch_tagged(&self, data: Vec<Bytes>, tags: &[&str]) -> Result<Vec<Key>> {
        self.put_batch_with_tags(data, tags, tags)
    }

    /// Stores several objects, each in the child that
    /// [`put_with_tags`](MultiConnector::put_with_tags) would choose; each child gets its share
    /// as one batch. The keys come back in order.
    pub fn put_batch_with_tags(
        &self,
        data: Vec<Bytes>,
        subset_tags: &[&str],
        superset_tags: &[&str],
    ) -> Result<Vec<Key>> {
        let tags = Tags::new(subset_tags, superset_tags);
        let mut shares: Vec<(Vec<usize>, Vec<Bytes>)> =
            vec![Default::default(); self.children.len()];
        let count = data.len();
        for (position, bytes) in data.into_iter().enumerate() {
            let (positions, payloads) = &mut shares[self.choose(bytes.len(), tags)?];
            positions.push(position);
            payloads.push(bytes);
        }
        let mut keys: Vec<Option<Key>> = vec![None; count];
        for (child, (positions, payloads)) in self.children.iter().zip(shares) {
            if positions.is_empty() {
                continue;
            }
            let child_keys = match self
                .connector_of(child)
                .and_then(|connector| connector.put_batch(payloads))
            {
                Ok(child_keys) if child_keys.len() == positions.len() => child_keys,
                failed => {
                    // Do not leave the objects already stored in other children behind.
                    self.evict_quietly(keys.iter().flatten());
                    return Err(match failed {
                        Err(error) => error,
                        Ok(child_keys) => self.batch_length_error(
                            child,
                            "put_batch",
                            positions.len(),
                            child_keys.len(),
                        ),
                    });
                }
            };
            for (position, key) in positions.into_iter().zip(child_keys) {
                keys[position] = Some(add_route(&child.name, key));
            }
        }
        Ok(keys.into_iter().flatten().collect())
    }

    /// Evicts `keys` as a clean-up after a failure, ignoring errors (the failure that caused
    /// the clean-up is the one worth reporting).
    fn evict_quietly<'a>(&self, keys: impl Iterator<Item = &'a Key>) {
        for key in keys {
            let _ = self.evict(key);
        }
    }

    /// The index of the child that takes an object of `size` bytes with `tags`.
    fn choose(&self, size: usize, tags: Tags<'_>) -> Result<usize> {
        self.children
            .iter()
            .enumerate()
            .filter(|(_, child)| {
                child
                    .policy
                    .admits_with_tags(size, tags.subset, tags.superset)
                    && child.policy.active_on(&self.hostname)
            })
            // `max_by_key` keeps the last of equal maxima; reversing keeps the first declared.
            .rev()
            .max_by_key(|(_, child)| child.policy.priority())
            .map(|(i, _)| i)
            .ok_or_else(|| Error::Config {
                what: format!("multi connector {}", self.description()),
                message: format!(
                    "no child active on host `{}` admits an object of {size} bytes with {tags}",
                    self.hostname
                ),
            })
    }

    /// The child's connector, or an error naming it if it is dormant here.
    fn connector_of<'a>(&self, child: &'a Child) -> Result<&'a Arc<dyn Connector>> {
        child.built().ok_or_else(|| Error::Config {
            what: format!("multi connector {}", self.description()),
            message: format!(
                "child `{}` is dormant on host `{}` (its host patterns: {:?})",
                child.name,
                self.hostname,
                child.policy.host_patterns().collect::<Vec<_>>()
            ),
        })
    }

    /// The connector of the child owning `key`, and the key as that child made it.
    fn owner_connector(&self, key: &Key) -> Result<(&Arc<dyn Connector>, Key)> {
        let (index, child_key) = self.owner(key)?;
        Ok((self.connector_of(&self.children[index])?, child_key))
    }

    /// The index of the child owning `key`, and the key as that child made it.
    fn owner(&self, key: &Key) -> Result<(usize, Key)> {
        let wrong = || Error::WrongConnector {
            key: key.clone(),
            expected: self.description(),
        };
        let route = key.route().ok_or_else(wrong)?;
        let (name, inner_route) = match route.split_once('/') {
            Some((name, inner)) => (name, Some(inner.to_string())),
            None => (route, None),
        };
        let index = self
            .children
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(wrong)?;
        Ok((index, key.clone().with_route(inner_route)))
    }

    /// `multi(a, b, c)`: the kind of connector and its children, for error messages.
    fn description(&self) -> String {
        let names: Vec<&str> = self.children.iter().map(|c| c.name.as_str()).collect();
        format!("multi({})", names.join(", "))
    }

    fn batch_length_error(
        &self,
        child: &Child,
        operation: &str,
        asked: usize,
        got: usize,
    ) -> Error {
        Error::Protocol {
            peer: format!("child `{}` of {}", child.name, self.description()),
            message: format!("{operation} of {asked} objects returned {got} results"),
        }
    }
}

/// The tags of one put: those the child must carry, and those that must include the child's
/// required ones.
#[derive(Clone, Copy)]
struct Tags<'a> {
    subset: &'a [&'a str],
    superset: &'a [&'a str],
}

impl<'a> Tags<'a> {
    fn new(subset: &'a [&'a str], superset: &'a [&'a str]) -> Self {
        Tags { subset, superset }
    }
}

impl fmt::Display for Tags<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.subset == self.superset {
            write!(f, "tags {:?}", self.subset)
        } else {
            write!(
                f,
                "subset tags {:?} and superset tags {:?}",
                self.subset, self.superset
            )
        }
    }
}

/// `key`, made by the child `name`, with the route that leads back to that child.
fn add_route(name: &str, key: Key) -> Key {
    let route = match key.route() {
        Some(inner) => format!("{name}/{inner}"),
        None => name.to_string(),
    };
    key.with_route(Some(route))
}

impl Connector for MultiConnector {
    fn put(&self, data: Bytes) -> Result<Key> {
        self.put_tagged(data, &[])
    }

    fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        let (connector, child_key) = self.owner_connector(key)?;
        connector.get(&child_key)
    }

    fn exists(&self, key: &Key) -> Result<bool> {
        let (connector, child_key) = self.owner_connector(key)?;
        connector.exists(&child_key)
    }

    fn evict(&self, key: &Key) -> Result<()> {
        let (connector, child_key) = self.owner_connector(key)?;
        connector.evict(&child_key)
    }

    /// A key of the child the policies choose for an object of unknown size (they are asked
    /// as for an empty object without tags): a future's value goes where its key says.
    fn new_key(&self) -> Result<Key> {
        let child = &self.children[self.choose(0, Tags::new(&[], &[]))?];
        let key = self.connector_of(child)?.new_key()?;
        Ok(add_route(&child.name, key))
    }

    fn put_at(&self, key: &Key, data: Bytes) -> Result<()> {
        let (connector, child_key) = self.owner_connector(key)?;
        connector.put_at(&child_key, data).map_err(|e| match e {
            // Name the key the caller used, with its route.
            Error::KeyTaken { connector, .. } => Error::KeyTaken {
                key: key.clone(),
                connector,
            },
            other => other,
        })
    }

    fn overwrite(&self, key: &Key, data: Bytes) -> Result<()> {
        let (connector, child_key) = self.owner_connector(key)?;
        connector.overwrite(&child_key, data).map_err(|e| match e {
            // Name the key the caller used, with its route.
            Error::NotFound { store, .. } => Error::NotFound {
                store,
                key: key.clone(),
            },
            other => other,
        })
    }

    fn put_batch(&self, data: Vec<Bytes>) -> Result<Vec<Key>> {
        self.put_batch_tagged(data, &[])
    }

    fn get_batch(&self, keys: &[Key]) -> Result<Vec<Option<Bytes>>> {
        // Resolve every route before fetching anything, so a bad key fails the whole batch.
        let mut shares: Vec<(Vec<usize>, Vec<Key>)> = vec![Default::default(); self.children.len()];
        for (position, key) in keys.iter().enumerate() {
            let (index, child_key) = self.owner(key)?;
            shares[index].0.push(position);
            shares[index].1.push(child_key);
        }
        let mut results: Vec<Option<Bytes>> = vec![None; keys.len()];
        for (child, (positions, child_keys)) in self.children.iter().zip(shares) {
            if positions.is_empty() {
                continue;
            }
            let objects = self.connector_of(child)?.get_batch(&child_keys)?;
            if objects.len() != positions.len() {
                return Err(self.batch_length_error(
                    child,
                    "get_batch",
                    positions.len(),
                    objects.len(),
                ));
            }
            for (position, object) in positions.into_iter().zip(objects) {
                results[position] = object;
            }
        }
        Ok(results)
    }

    fn close(&self) -> Result<()> {
        // Close every child even if one fails; report the first failure.
        let mut first_failure = None;
        for child in self.children.iter() {
            let Some(connector) = child.built() else {
                continue;
            };
            if let Err(error) = connector.close() {
                first_failure.get_or_insert(error);
            }
        }
        first_failure.map_or(Ok(()), Err)
    }

    fn config(&self) -> ConnectorConfig {
        ConnectorConfig::Multi {
            children: self
                .children
                .iter()
                .map(|child| MultiChildConfig {
                    name: child.name.clone(),
                    policy: child.policy.clone(),
                    connector: match &child.connector {
                        ChildConnector::Built(connector) => connector.config(),
                        ChildConnector::Dormant(config) => (**config).clone(),
                    },
                })
                .collect(),
        }
    }

    /// What every child built here says: `Some(true)` when all of them support it,
    /// `Some(false)` when none does, `None` otherwise (it depends on the child a key routes
    /// to, or a child does not say). For [reserved keys](Capability::ReservedKeys), what the
    /// child that [`new_key`](Connector::new_key) uses says.
    fn supports(&self, capability: Capability) -> Option<bool> {
        if capability == Capability::ReservedKeys {
            let child = &self.children[self.choose(0, Tags::new(&[], &[])).ok()?];
            return child.built()?.supports(capability);
        }
        let mut answers = self
            .children
            .iter()
            .filter_map(Child::built)
            .map(|child| child.supports(capability));
        let first = answers.next()?;
        answers
            .all(|answer| answer == first)
            .then_some(first)
            .flatten()
    }

    fn object_count(&self) -> Option<usize> {
        self.children
            .iter()
            .filter_map(Child::built)
            .map(|connector| connector.object_count())
            .sum()
    }
}

impl fmt::Debug for MultiConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiConnector")
            .field("children", &self.children)
            .field("hostname", &self.hostname)
            .finish()
    }
}

/// This machine's host name (`gethostname`), or an empty name if it cannot be read (then
/// only children without host patterns, or with a pattern matching "", are active).
fn system_hostname() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the pointer and length describe `buffer`, which outlives the call.
    let rc = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
}

#[cfg(test)]
mod tests;
