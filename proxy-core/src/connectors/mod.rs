//! The connectors: one module per storage backend.

mod file;
mod local;

pub use file::FileConnector;
pub use local::LocalConnector;
