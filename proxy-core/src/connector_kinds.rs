//! Connector kinds defined outside this crate: a process-wide map from a kind's name to the
//! function that builds its connectors from their configuration.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use serde::de::DeserializeOwned;

use crate::config::ExternalConfig;
use crate::connector::Connector;
use crate::error::{Error, Result};

type Builder = Arc<dyn Fn(&ExternalConfig) -> Result<Arc<dyn Connector>> + Send + Sync>;

fn kinds() -> &'static RwLock<HashMap<String, Builder>> {
    static KINDS: OnceLock<RwLock<HashMap<String, Builder>>> = OnceLock::new();
    KINDS.get_or_init(RwLock::default)
}

/// Registers the connector kind `kind`: `build` makes a connector from the configuration
/// that the kind's [`Connector::config`] wrote with [`ConnectorConfig::external`].
///
/// A process that rebuilds such a connector (from a deserialized [`Proxy`](crate::Proxy),
/// say) must register the kind first, as ProxyStore requires importing a connector's module.
/// Registering a kind again replaces its builder.
///
/// ```
/// use std::path::PathBuf;
/// use std::sync::Arc;
/// use bytes::Bytes;
/// use proxy_core::{
///     delegate_connector, register_connector_kind, Connector, ConnectorConfig, FileConnector,
///     Result,
/// };
///
/// /// A connector from another crate (here a thin wrapper), configured by a serde type.
/// #[derive(Debug)]
/// struct Wrapped(FileConnector, PathBuf);
///
/// impl Connector for Wrapped {
///     fn config(&self) -> ConnectorConfig {
///         ConnectorConfig::external("wrapped-doc", &self.1).expect("a path encodes")
///     }
///     // Everything else (overwrite, futures' keys, batches, ...) is the file connector's.
///     delegate_connector!(0; except config);
/// }
///
/// fn wrapped(dir: PathBuf) -> Result<Arc<dyn Connector>> {
///     Ok(Arc::new(Wrapped(FileConnector::new(&dir)?, dir)))
/// }
///
/// // Every process that may rebuild the connector registers its kind.
/// register_connector_kind("wrapped-doc", wrapped);
///
/// let dir = std::env::temp_dir().join(format!("wrapped-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).expect("temporary directory");
/// let original = wrapped(dir.clone())?;
/// let key = original.put(Bytes::from_static(b"hi"))?;
/// let rebuilt = original.config().build()?;
/// assert_eq!(rebuilt.get(&key)?.as_deref(), Some(&b"hi"[..]));
/// rebuilt.evict(&key)?;
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), proxy_core::Error>(())
/// ```
///
/// [`ConnectorConfig::external`]: crate::ConnectorConfig::external
pub fn register_connector_kind<C, F>(kind: impl Into<String>, build: F)
where
    C: DeserializeOwned,
    F: Fn(C) -> Result<Arc<dyn Connector>> + Send + Sync + 'static,
{
    let builder: Builder = Arc::new(move |external: &ExternalConfig| build(external.decode()?));
    kinds()
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(kind.into(), builder);
}

/// Whether the connector kind `kind` is registered in this process.
pub fn is_connector_kind_registered(kind: &str) -> bool {
    kinds()
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .contains_key(kind)
}

/// Builds the connector an external configuration describes.
pub(crate) fn build(external: &ExternalConfig) -> Result<Arc<dyn Connector>> {
    let builder = kinds()
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(external.kind())
        .cloned();
    match builder {
        Some(build) => build(external),
        None => Err(Error::Config {
            what: format!("connector kind `{}`", external.kind()),
            message: "not registered in this process: call \
                      proxy_core::register_connector_kind before resolving its proxies"
                .to_string(),
        }),
    }
}
