//! Facade crate: re-exports the workspace's crates so that the examples and integration
//! tests at the top of the repository can use them together.
//!
//! - [`proxy_core`]: stores, connectors, proxies, codecs and the registry.
//! - [`dataflow_plugin`]: Timely Dataflow operators that move large records as proxies.

pub use dataflow_plugin;
pub use proxy_core;

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The guide (`docs/`, an mdBook): each chapter's examples compiled and run as doc tests, one
/// item per chapter, in the order of `docs/src/SUMMARY.md` (`tests/guide.rs` checks that every
/// chapter is here).
#[cfg(doctest)]
mod guide {
    #[doc = include_str!("../docs/src/introduction.md")]
    struct Introduction;
    #[doc = include_str!("../docs/src/first-dataflow.md")]
    struct FirstDataflow;
    #[doc = include_str!("../docs/src/stores.md")]
    struct Stores;
    #[doc = include_str!("../docs/src/connectors.md")]
    struct Connectors;
    #[doc = include_str!("../docs/src/codecs.md")]
    struct Codecs;
    #[doc = include_str!("../docs/src/proxies.md")]
    struct Proxies;
    #[doc = include_str!("../docs/src/owned-proxies.md")]
    struct OwnedProxies;
    #[doc = include_str!("../docs/src/futures.md")]
    struct Futures;
    #[doc = include_str!("../docs/src/lifetimes.md")]
    struct Lifetimes;
    #[doc = include_str!("../docs/src/operators.md")]
    struct Operators;
    #[doc = include_str!("../docs/src/clusters.md")]
    struct Clusters;
    #[doc = include_str!("../docs/src/security.md")]
    struct Security;
    #[doc = include_str!("../docs/src/performance.md")]
    struct Performance;
    #[doc = include_str!("../docs/src/operating.md")]
    struct Operating;
    #[doc = include_str!("../docs/src/python.md")]
    struct Python;
}
