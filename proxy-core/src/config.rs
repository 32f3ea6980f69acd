//! Serializable connector configurations, from which connectors are rebuilt in any process.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::connector::Connector;
use crate::connectors::{
    FileConnector, LocalConnector, MultiChildConfig, MultiConnector, RedisOptions, ZmqConfig,
};
use crate::error::Result;

/// How to build a connector: what [`Connector::config`] returns and what travels inside a
/// serialized [`Proxy`](crate::Proxy) so that another process can reach the object.
///
/// It is a plain serde type (it works with any serde format, including the compact binary
/// ones Timely uses), so it can cross process boundaries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ConnectorConfig {
    /// A [`LocalConnector`]: process memory. Rebuilding it in the process that made it gives
    /// back the same map; in another process it gives an empty one.
    Local {
        /// The identity of the shared map.
        id: u64,
    },
    /// A [`FileConnector`] over a directory.
    File {
        /// The directory holding the objects (absolute when made by a [`FileConnector`]).
        dir: PathBuf,
        /// Whether closing the connector deletes the directory (`true` when absent).
        #[serde(default = "clear_on_close_default")]
        clear_on_close: bool,
    },
    /// A [`ZmqConnector`](crate::ZmqConnector): objects served peer to peer.
    Zmq(ZmqConfig),
    /// A `RedisConnector` (feature `redis`): a redis server (the url's password, if any,
    /// travels with the configuration but never shows in its `Debug` output). Without the
    /// feature, building it is an error.
    Redis(RedisOptions),
    /// A [`MultiConnector`]: named children, each with its routing policy and configuration.
    Multi {
        /// The children, in the order they were declared.
        children: Vec<MultiChildConfig>,
    },
}

impl ConnectorConfig {
    /// Builds the connector this configuration describes.
    pub fn build(&self) -> Result<Arc<dyn Connector>> {
        Ok(match self {
            ConnectorConfig::Local { id } => Arc::new(LocalConnector::with_id(*id)),
            ConnectorConfig::File {
                dir,
                clear_on_close,
            } => Arc::new(FileConnector::new(dir)?.with_clear_on_close(*clear_on_close)),
            ConnectorConfig::Zmq(config) => Arc::new(config.build()?),
            ConnectorConfig::Redis(options) => crate::connectors::build_redis(options)?,
            ConnectorConfig::Multi { children } => {
                Arc::new(MultiConnector::from_configs(children)?)
            }
        })
    }
}

/// A file connector's config without `clear_on_close` clears on close, as a new connector does.
fn clear_on_close_default() -> bool {
    true
}
