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
