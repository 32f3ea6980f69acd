//! Serializable connector configurations, from which connectors are rebuilt in any process.

use std::path::PathBuf;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::connector::Connector;
use crate::connectors::{
    FileConnector, LocalConnector, MultiChildConfig, MultiConnector, RedisOptions, ZmqConfig,
};
use crate::error::{Error, Result};

/// How to build a connector: what [`Connector::config`] returns and what travels inside a
/// serialized [`Proxy`](crate::Proxy) so that another process can reach the object.
///
/// It is a plain serde type (it works with any serde format, including the compact binary
/// ones Timely uses), so it can cross process boundaries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
// A config is built once per store and cloned rarely (proxies share it behind an `Arc`);
// boxing the ZeroMQ variant would change the public enum for no measurable gain.
#[allow(clippy::large_enum_variant)]
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
        /// How many evicted files the connector keeps for reuse, when set with
        /// [`FileConnector::with_recycled_files`]; absent: the default of the process that
        /// builds it (its filesystem and `PROXYSTORE_FILE_RECYCLE`).
        #[serde(default)]
        recycled_files: Option<usize>,
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
    /// A connector defined outside this crate, rebuilt by the builder registered for its
    /// kind ([`register_connector_kind`](crate::register_connector_kind)) in the process
    /// that rebuilds it.
    External(ExternalConfig),
}

/// The configuration of a connector defined outside this crate: the name of its kind and
/// its own serde configuration, encoded (see [`ConnectorConfig::External`] and
/// [`register_connector_kind`](crate::register_connector_kind)).
///
/// The configuration travels as bytes so that it crosses any serde format (Timely's compact
/// binary one included); its `Debug` output shows only the kind and the length, so a secret
/// inside it never reaches a log.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalConfig {
    kind: String,
    config: Vec<u8>,
}

impl std::fmt::Debug for ExternalConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalConfig")
            .field("kind", &self.kind)
            .field("config_bytes", &self.config.len())
            .finish()
    }
}

impl ExternalConfig {
    /// The configuration `config` of a connector of kind `kind`.
    pub fn new<C: Serialize>(kind: impl Into<String>, config: &C) -> Result<Self> {
        let kind = kind.into();
        let config = crate::codec::encode_config(config).map_err(|message| Error::Config {
            what: format!("connector kind `{kind}`"),
            message,
        })?;
        Ok(ExternalConfig { kind, config })
    }

    /// The connector kind's name.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The connector's own configuration, decoded.
    pub fn decode<C: DeserializeOwned>(&self) -> Result<C> {
        crate::codec::decode_config(&self.config).map_err(|message| Error::Config {
            what: format!("connector kind `{}`", self.kind),
            message,
        })
    }
}

impl ConnectorConfig {
    /// The configuration of a connector of kind `kind` defined outside this crate
    /// ([`ConnectorConfig::External`]), for its [`Connector::config`].
    pub fn external<C: Serialize>(kind: impl Into<String>, config: &C) -> Result<Self> {
        ExternalConfig::new(kind, config).map(ConnectorConfig::External)
    }
}

impl ConnectorConfig {
    /// Builds the connector this configuration describes.
    pub fn build(&self) -> Result<Arc<dyn Connector>> {
        Ok(match self {
            ConnectorConfig::Local { id } => Arc::new(LocalConnector::with_id(*id)),
            ConnectorConfig::File {
                dir,
                clear_on_close,
                recycled_files,
            } => {
                let connector = FileConnector::new(dir)?.with_clear_on_close(*clear_on_close);
                Arc::new(match recycled_files {
                    Some(files) => connector.with_recycled_files(*files),
                    None => connector,
                })
            }
            ConnectorConfig::Zmq(config) => Arc::new(config.build()?),
            ConnectorConfig::Redis(options) => crate::connectors::build_redis(options)?,
            ConnectorConfig::Multi { children } => {
                Arc::new(MultiConnector::from_configs(children)?)
            }
            ConnectorConfig::External(external) => crate::connector_kinds::build(external)?,
        })
    }
}

/// A file connector's config without `clear_on_close` clears on close, as a new connector does.
fn clear_on_close_default() -> bool {
    true
}
