//! `RedisConnector`: objects kept in a redis server.

#[cfg(feature = "redis")]
mod errors;
mod options;
#[cfg(feature = "redis")]
mod pool;

pub use options::{RedisOptions, DEFAULT_REDIS_PREFIX};

use std::sync::Arc;

use crate::connector::Connector;
use crate::error::Result;

#[cfg(feature = "redis")]
pub use connector::RedisConnector;

/// Builds the redis connector `options` describe, or explains that this build has none.
pub(crate) fn build_redis(options: &RedisOptions) -> Result<Arc<dyn Connector>> {
    #[cfg(feature = "redis")]
    {
        Ok(Arc::new(RedisConnector::with_options(options.clone())?))
    }
    #[cfg(not(feature = "redis"))]
    {
        Err(crate::Error::Config {
            what: format!("redis connector for {}", options.server()),
            message: "proxy-core was built without its `redis` feature".into(),
        })
    }
}

#[cfg(feature = "redis")]
mod connector {
    use std::fmt;
    use std::sync::Arc;

    use bytes::Bytes;
    use redis::{Cmd, Connection, ConnectionLike, RedisResult, Value};

    use super::errors::Operation;
    use super::options::RedisOptions;
    use super::pool::ConnectionPool;
    use crate::config::ConnectorConfig;
    use crate::connector::{check_kind, Capability, Connector};
    use crate::error::{Error, Result};
    use crate::key::Key;

    const KIND: &str = "redis";

    /// Objects kept in a redis server, one redis string per object under the key
    /// `<prefix><id>` (prefix `proxystore:` unless [`RedisOptions::with_prefix`] says
    /// otherwise).
    ///
    /// The connector keeps a small pool of blocking connections, so threads run commands in
    /// parallel; batches are one command each (`MSET`, `MGET`), hence one round trip. Errors
    /// name the server (never its password): [`Error::Unreachable`] when it cannot be
    /// reached or drops the connection, [`Error::Peer`] when it refuses the password or a
    /// command, [`Error::Timeout`] when it does not answer within the configured timeout. After the server comes back, the same
    /// connector works again.
    ///
    /// ```no_run
    /// use bytes::Bytes;
    /// use proxy_core::{Connector, RedisConnector, Store};
    ///
    /// let connector = RedisConnector::new("redis://127.0.0.1:6379/0")?;
    /// let key = connector.put(Bytes::from_static(b"in redis"))?;
    /// assert_eq!(connector.get(&key)?, Some(Bytes::from_static(b"in redis")));
    /// connector.evict(&key)?;
    ///
    /// // Or behind a store, which any process can rebuild from its config.
    /// let store = Store::new("my-store", connector);
    /// # Ok::<(), proxy_core::Error>(())
    /// ```
    #[derive(Clone)]
    pub struct RedisConnector {
        pool: Arc<ConnectionPool>,
    }

    impl RedisConnector {
        /// A connector for the server at `url` (`redis://[:password@]host[:port][/db]`) with
        /// default [`RedisOptions`]. Connects once to check that the server answers.
        pub fn new(url: impl Into<String>) -> Result<Self> {
            Self::with_options(RedisOptions::new(url))
        }

        /// A connector configured by `options`. Connects once to check that the server
        /// answers (and accepts the password).
        pub fn with_options(options: RedisOptions) -> Result<Self> {
            let connector = RedisConnector {
                pool: Arc::new(ConnectionPool::new(options)?),
            };
            connector.pool.run(Operation::Plain("PING"), |connection| {
                connection.req_command(&redis::cmd("PING"))?.extract_error()
            })?;
            Ok(connector)
        }

        /// The options this connector was made from.
        pub fn options(&self) -> &RedisOptions {
            self.pool.options()
        }

        /// The redis key under which the object named by `key` is stored.
        pub fn redis_key(&self, key: &Key) -> Result<String> {
            check_kind(key, KIND)?;
            Ok(self.redis_key_of_id(key))
        }

        fn redis_key_of_id(&self, key: &Key) -> String {
            format!("{}{}", self.options().prefix(), key.id_hex())
        }

        /// Deletes every object key under the prefix (`SCAN` in pages, `UNLINK` per page).
        /// Closing twice is fine: after the first close the pool refuses, so only clear
        /// while it is open.
        fn clear(&self) -> Result<()> {
            if self.pool.is_closed() {
                return Ok(());
            }
            let pattern = self.options().object_pattern();
            let mut cursor = String::from("0");
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(&cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000);
                let operation = Operation::Plain("SCAN");
                let (next, keys) = match self.pool.run(operation, |c| request(c, &scan))? {
                    Value::Array(mut reply) if reply.len() == 2 => {
                        let keys = reply.pop();
                        let next = reply.pop();
                        match (next, keys) {
                            (Some(Value::BulkString(next)), Some(Value::Array(keys))) => {
                                (String::from_utf8_lossy(&next).into_owned(), keys)
                            }
                            (next, keys) => {
                                let reply = Value::Array(next.into_iter().chain(keys).collect());
                                return Err(self.protocol_error(operation, &reply));
                            }
                        }
                    }
                    other => return Err(self.protocol_error(operation, &other)),
                };
                if !keys.is_empty() {
                    let mut unlink = redis::cmd("UNLINK");
                    let operation = Operation::Plain("UNLINK");
                    for key in keys {
                        match key {
                            Value::BulkString(name) => unlink.arg(name),
                            other => return Err(self.protocol_error(operation, &other)),
                        };
                    }
                    match self.pool.run(operation, |c| request(c, &unlink))? {
                        Value::Int(_) => {}
                        other => return Err(self.protocol_error(operation, &other)),
                    }
                }
                if next == "0" {
                    return Ok(());
                }
                cursor = next;
            }
        }

        /// `SET key data NX` (only if free) or `XX` (only if present), as `condition` says:
        /// whether the condition held, so the value was written.
        fn set_if(&self, key: &Key, data: &Bytes, condition: Condition) -> Result<bool> {
            let (flag, label) = match condition {
                Condition::Free => ("NX", "SET NX"),
                Condition::Present => ("XX", "SET XX"),
            };
            let mut command = redis::cmd("SET");
            command
                .arg(self.redis_key(key)?)
                .arg(data.as_ref())
                .arg(flag);
            let operation = Operation::One(label, key);
            match self.pool.run(operation, |c| request(c, &command))? {
                Value::Okay => Ok(true),
                Value::Nil => Ok(false),
                other => Err(self.protocol_error(operation, &other)),
            }
        }

        fn protocol_error(&self, operation: Operation<'_>, reply: &Value) -> Error {
            Error::Protocol {
                peer: self.pool.server().to_string(),
                message: format!("unexpected reply to {operation}: {reply:?}"),
            }
        }
    }

    /// Sends `command` and turns a server error reply into an error.
    fn request(connection: &mut Connection, command: &Cmd) -> RedisResult<Value> {
        connection.req_command(command)?.extract_error()
    }

    /// The payload in a `GET`/`MGET` reply element; moves the buffer instead of copying it.
    fn payload(reply: Value) -> std::result::Result<Option<Bytes>, Value> {
        match reply {
            Value::Nil => Ok(None),
            Value::BulkString(data) => Ok(Some(Bytes::from(data))),
            other => Err(other),
        }
    }

    /// The condition of a conditional `SET`.
    #[derive(Clone, Copy)]
    enum Condition {
        /// `NX`: only if no value is stored under the key.
        Free,
        /// `XX`: only if a value is stored under the key.
        Present,
    }

    impl Connector for RedisConnector {
        fn put(&self, data: Bytes) -> Result<Key> {
            let key = Key::random(KIND);
            let mut command = redis::cmd("SET");
            command.arg(self.redis_key_of_id(&key)).arg(data.as_ref());
            let operation = Operation::One("SET", &key);
            match self.pool.run(operation, |c| request(c, &command))? {
                Value::Okay => Ok(key),
                other => Err(self.protocol_error(operation, &other)),
            }
        }

        fn get(&self, key: &Key) -> Result<Option<Bytes>> {
            let mut command = redis::cmd("GET");
            command.arg(self.redis_key(key)?);
            let operation = Operation::One("GET", key);
            let reply = self.pool.run(operation, |c| request(c, &command))?;
            payload(reply).map_err(|other| self.protocol_error(operation, &other))
        }

        fn exists(&self, key: &Key) -> Result<bool> {
            let mut command = redis::cmd("EXISTS");
            command.arg(self.redis_key(key)?);
            let operation = Operation::One("EXISTS", key);
            match self.pool.run(operation, |c| request(c, &command))? {
                Value::Int(count) => Ok(count > 0),
                other => Err(self.protocol_error(operation, &other)),
            }
        }

        fn evict(&self, key: &Key) -> Result<()> {
            let mut command = redis::cmd("DEL");
            command.arg(self.redis_key(key)?);
            let operation = Operation::One("DEL", key);
            match self.pool.run(operation, |c| request(c, &command))? {
                Value::Int(_) => Ok(()),
                other => Err(self.protocol_error(operation, &other)),
            }
        }

        fn new_key(&self) -> Result<Key> {
            Ok(Key::random(KIND))
        }

        /// `SET key data NX`: stores the value only if the key is free (write-once).
        fn put_at(&self, key: &Key, data: Bytes) -> Result<()> {
            if self.set_if(key, &data, Condition::Free)? {
                Ok(())
            } else {
                Err(Error::KeyTaken {
                    key: key.clone(),
                    connector: format!("redis connector at {}", self.pool.server()),
                })
            }
        }

        /// `SET key data XX`: replaces the value only if the key exists.
        fn overwrite(&self, key: &Key, data: Bytes) -> Result<()> {
            if self.set_if(key, &data, Condition::Present)? {
                Ok(())
            } else {
                Err(Error::NotFound {
                    store: self.pool.server().to_string(),
                    key: key.clone(),
                })
            }
        }

        fn put_batch(&self, data: Vec<Bytes>) -> Result<Vec<Key>> {
            if data.is_empty() {
                return Ok(Vec::new());
            }
            let keys: Vec<Key> = data.iter().map(|_| Key::random(KIND)).collect();
            let mut command = redis::cmd("MSET");
            for (key, bytes) in keys.iter().zip(&data) {
                command.arg(self.redis_key_of_id(key)).arg(bytes.as_ref());
            }
            let operation = Operation::Batch("MSET", keys.len());
            match self.pool.run(operation, |c| request(c, &command))? {
                Value::Okay => Ok(keys),
                other => Err(self.protocol_error(operation, &other)),
            }
        }

        fn get_batch(&self, keys: &[Key]) -> Result<Vec<Option<Bytes>>> {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let mut command = redis::cmd("MGET");
            for key in keys {
                command.arg(self.redis_key(key)?);
            }
            let operation = Operation::Batch("MGET", keys.len());
            let replies = match self.pool.run(operation, |c| request(c, &command))? {
                Value::Array(replies) if replies.len() == keys.len() => replies,
                other => return Err(self.protocol_error(operation, &other)),
            };
            replies
                .into_iter()
                .map(|reply| payload(reply).map_err(|other| self.protocol_error(operation, &other)))
                .collect()
        }

        /// Deletes the objects under the prefix first when the options ask for it
        /// ([`RedisOptions::with_clear_on_close`]), then drops the pooled connections.
        fn close(&self) -> Result<()> {
            let cleared = if self.options().clear_on_close() {
                self.clear()
            } else {
                Ok(())
            };
            self.pool.close();
            cleared
        }

        fn config(&self) -> ConnectorConfig {
            ConnectorConfig::Redis(self.options().clone())
        }

        fn supports(&self, capability: Capability) -> Option<bool> {
            match capability {
                Capability::Overwrite | Capability::ReservedKeys => Some(true),
            }
        }
    }

    impl fmt::Debug for RedisConnector {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("RedisConnector")
                .field("server", &self.pool.server())
                .field("prefix", &self.options().prefix())
                .finish()
        }
    }
}

#[cfg(all(test, feature = "redis"))]
mod tests;
