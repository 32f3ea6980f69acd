//! A small pool of blocking redis connections that reconnects after the server comes back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use redis::{Client, Connection, RedisResult};

use super::errors::{is_connection_lost, to_error, Operation};
use super::options::RedisOptions;
use crate::error::{Error, Result};

/// Connections to one redis server, shared by all threads of a connector.
///
/// A thread takes an idle connection (or opens one), runs its command without holding any
/// lock, and gives the connection back. A connection that failed is dropped. When a reused
/// connection turns out to be dead (the server restarted since it was opened), every idle
/// connection is dropped too and the command is retried once on a fresh connection, so the
/// connector recovers by itself once the server is back. Retrying is safe because every
/// command the connector sends is idempotent (writes go to fresh random keys).
pub(super) struct ConnectionPool {
    client: Client,
    options: RedisOptions,
    server: String,
    idle: Mutex<Vec<Connection>>,
    closed: AtomicBool,
}

impl ConnectionPool {
    /// A pool for the server of `options`. Does not connect yet.
    pub(super) fn new(options: RedisOptions) -> Result<Self> {
        let server = options.server();
        let client = Client::open(options.url()).map_err(|e| Error::Config {
            what: format!("redis connector for {server}"),
            message: format!(
                "invalid redis url: {}",
                e.to_string().replace(options.url(), &server)
            ),
        })?;
        Ok(ConnectionPool {
            client,
            options,
            server,
            idle: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        })
    }

    /// The options the pool was made from.
    pub(super) fn options(&self) -> &RedisOptions {
        &self.options
    }

    /// The server's url without password.
    pub(super) fn server(&self) -> &str {
        &self.server
    }

    /// Runs `command` on a connection, reconnecting and retrying once if a reused
    /// connection was found dead.
    pub(super) fn run<T>(
        &self,
        operation: Operation<'_>,
        mut command: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Result<T> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed {
                connector: format!("redis {}", self.server),
            });
        }
        let (mut connection, reused) = match self.take_idle() {
            Some(connection) => (connection, true),
            None => (self.open()?, false),
        };
        match command(&mut connection) {
            Ok(value) => {
                self.give_back(connection);
                Ok(value)
            }
            Err(error) if reused && is_connection_lost(&error) => {
                // The other idle connections most likely died with this one.
                self.drop_idle();
                let mut connection = self.open()?;
                let value = command(&mut connection).map_err(|e| self.error(&e, operation))?;
                self.give_back(connection);
                Ok(value)
            }
            Err(error) => Err(self.error(&error, operation)),
        }
    }

    /// Drops the idle connections and refuses further commands.
    /// Whether [`close`](ConnectionPool::close) was called.
    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.drop_idle();
    }

    fn open(&self) -> Result<Connection> {
        let connection = self
            .client
            .get_connection_with_timeout(self.options.connect_timeout())
            .map_err(|e| self.error(&e, Operation::Connect))?;
        let io_timeout = Some(self.options.io_timeout());
        connection
            .set_read_timeout(io_timeout)
            .and_then(|()| connection.set_write_timeout(io_timeout))
            .map_err(|e| self.error(&e, Operation::Connect))?;
        Ok(connection)
    }

    fn take_idle(&self) -> Option<Connection> {
        self.lock_idle().pop()
    }

    fn give_back(&self, connection: Connection) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let mut idle = self.lock_idle();
        if idle.len() < self.options.max_idle_connections() {
            idle.push(connection);
        }
    }

    fn drop_idle(&self) {
        let stale = std::mem::take(&mut *self.lock_idle());
        // Closing sockets outside the lock.
        drop(stale);
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // The list is only pushed to and popped from, so a poisoned lock holds a valid list.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn error(&self, error: &redis::RedisError, operation: Operation<'_>) -> Error {
        let timeout = match operation {
            Operation::Connect => self.options.connect_timeout(),
            _ => self.options.io_timeout(),
        };
        let password = self
            .client
            .get_connection_info()
            .redis_settings()
            .password();
        to_error(error, &self.server, operation, timeout, password)
    }
}
