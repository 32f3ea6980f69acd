//! A store's configuration as a TOML file, so an operator can keep one file per cluster.
//!
//! ```
//! use proxy_core::{FileConnector, Store, StoreConfig};
//!
//! # let dir = std::env::temp_dir().join(format!("proxy-core-toml-doc-{}", std::process::id()));
//! let store = Store::builder("cluster-a", FileConnector::create(dir.join("objects"))?)
//!     .with_cache_size(32)
//!     .build();
//! let path = dir.join("store.toml");
//! store.config().to_toml_file(&path)?;
//!
//! // Later, in any process:
//! let config = StoreConfig::from_toml_file(&path)?;
//! assert_eq!(config, store.config());
//! let again = Store::from_config(&config)?;
//! assert_eq!(again.name(), "cluster-a");
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), proxy_core::Error>(())
//! ```
//!
//! The file is the serde form of [`StoreConfig`] (the connector as a table named after its
//! kind, for example `[connector.File]`). Fields added to the configuration later have
//! defaults, so an older file still loads.

use std::fs;
use std::path::Path;

use crate::error::{Error, Result};
use crate::ids::new_id;
use crate::store::StoreConfig;

impl StoreConfig {
    /// The configuration as TOML text.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| Error::Config {
            what: format!("store `{}` as TOML", self.name),
            message: e.to_string(),
        })
    }

    /// A configuration from TOML text.
    pub fn from_toml(text: &str) -> Result<StoreConfig> {
        toml::from_str(text).map_err(|e| Error::Config {
            what: "store config in TOML".into(),
            message: e.to_string(),
        })
    }

    /// Writes the configuration to `path` as TOML. The file is written under a temporary
    /// name and renamed into place, so a reader never sees half a file.
    pub fn to_toml_file(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let text = self.to_toml().map_err(|e| in_file(e, path))?;
        let file_name = path.file_name().ok_or_else(|| Error::Config {
            what: format!("store config file {}", path.display()),
            message: "the path names no file".into(),
        })?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(file_name);
        tmp_name.push(format!(".tmp-{:032x}", new_id()));
        let tmp = path.with_file_name(tmp_name);
        fs::write(&tmp, text).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Error::io("write store config file", path, e)
        })?;
        fs::rename(&tmp, path).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Error::io("write store config file", path, e)
        })
    }

    /// Reads a configuration written by [`to_toml_file`](StoreConfig::to_toml_file) (or by
    /// hand). Errors name the path.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<StoreConfig> {
        let path = path.as_ref();
        let text =
            fs::read_to_string(path).map_err(|e| Error::io("read store config file", path, e))?;
        StoreConfig::from_toml(&text).map_err(|e| in_file(e, path))
    }
}

/// A config error, said to be about the file at `path`.
fn in_file(error: Error, path: &Path) -> Error {
    match error {
        Error::Config { message, .. } => Error::Config {
            what: format!("store config file {}", path.display()),
            message,
        },
        other => other,
    }
}
