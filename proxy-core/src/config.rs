//! Serializable connector configurations, from which connectors are rebuilt in any process.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::connector::Connector;
use crate::connectors::{FileConnector, LocalConnector, ZmqConfig};
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
        /// The directory holding the objects.
        dir: PathBuf,
    },
    /// A [`ZmqConnector`](crate::ZmqConnector): objects served peer to peer.
    Zmq(ZmqConfig),
}

impl ConnectorConfig {
    /// Builds the connector this configuration describes.
    pub fn build(&self) -> Result<Arc<dyn Connector>> {
        Ok(match self {
            ConnectorConfig::Local { id } => Arc::new(LocalConnector::with_id(*id)),
            ConnectorConfig::File { dir } => Arc::new(FileConnector::new(dir)?),
            ConnectorConfig::Zmq(config) => Arc::new(config.build()?),
        })
    }
}
