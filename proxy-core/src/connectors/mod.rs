//! The connectors: one module per storage backend.

mod file;
mod local;
mod redis;

pub use file::FileConnector;
pub use local::LocalConnector;
pub(crate) use redis::build_redis;
#[cfg(feature = "redis")]
pub use redis::RedisConnector;
pub use redis::{RedisOptions, DEFAULT_REDIS_PREFIX};
