//! The connectors: one module per storage backend.

mod file;
mod local;
mod multi;
mod redis;
mod zmq;

pub use file::FileConnector;
pub use local::LocalConnector;
pub use multi::{MultiChildConfig, MultiConnector, MultiConnectorBuilder, RoutingPolicy};
pub(crate) use redis::build_redis;
#[cfg(feature = "redis")]
pub use redis::RedisConnector;
pub use redis::{RedisOptions, DEFAULT_REDIS_PREFIX};
pub(crate) use zmq::{
    check_library, is_loopback, library_is_hardened, read_secret_file, secret_from_env,
    zmq_context, Reservation, ZmqSecret,
};
pub use zmq::{PeerStats, ZmqConfig, ZmqConnector, ZmqOptions};
