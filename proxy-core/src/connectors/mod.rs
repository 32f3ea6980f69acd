//! The connectors: one module per storage backend.

mod file;
mod local;
mod zmq;

pub use file::FileConnector;
pub use local::LocalConnector;
pub use zmq::{ZmqConfig, ZmqConnector, ZmqOptions};
