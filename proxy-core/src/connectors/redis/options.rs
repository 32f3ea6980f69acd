//! `RedisOptions`: where a redis server is and how objects are laid out in it.
//!
//! This module does not depend on the redis client, so that a [`ConnectorConfig`] naming a
//! redis server can be carried (and reported as unbuildable) by builds without the `redis`
//! feature.
//!
//! [`ConnectorConfig`]: crate::ConnectorConfig

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The redis key prefix used unless [`RedisOptions::with_prefix`] sets another one.
pub const DEFAULT_REDIS_PREFIX: &str = "proxystore:";

/// How to reach a redis server and name objects in it: what a `RedisConnector` (feature
/// `redis`) is built from, and what its
/// [`config`](crate::Connector::config) carries to other processes.
///
/// The url has the form `redis://[[user]:password@]host[:port][/db]`. A password in it
/// travels with the configuration (another process needs it to connect), but it never
/// appears in [`Debug`] output, in error messages or in [`RedisOptions::server`].
///
/// ```
/// use std::time::Duration;
/// use proxy_core::RedisOptions;
///
/// let options = RedisOptions::new("redis://:s3cret@127.0.0.1:6379/0")
///     .with_prefix("my-app:")
///     .with_io_timeout(Duration::from_secs(2));
/// assert_eq!(options.server(), "redis://:***@127.0.0.1:6379/0");
/// assert!(!format!("{options:?}").contains("s3cret"));
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[must_use = "options do nothing until a connector is built from them"]
pub struct RedisOptions {
    url: String,
    prefix: String,
    connect_timeout: Duration,
    io_timeout: Duration,
    max_idle_connections: usize,
    #[serde(default)]
    clear_on_close: bool,
}

impl RedisOptions {
    /// Options for the server at `url`, with the default prefix ([`DEFAULT_REDIS_PREFIX`]),
    /// a 5 s connect timeout, a 10 s read/write timeout and at most 16 idle connections.
    pub fn new(url: impl Into<String>) -> Self {
        RedisOptions {
            url: url.into(),
            prefix: DEFAULT_REDIS_PREFIX.to_string(),
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(10),
            max_idle_connections: 16,
            clear_on_close: false,
        }
    }

    /// Whether [`close`](crate::Connector::close) deletes every object stored under this
    /// prefix (redis keys `<prefix><32 hex digits>`, found with `SCAN`), like ProxyStore's
    /// `close(clear=True)`. Off by default: objects outlive the connector. The prefix is
    /// shared by every connector that uses it, so give a store its own prefix before turning
    /// this on.
    pub fn with_clear_on_close(mut self, clear: bool) -> Self {
        self.clear_on_close = clear;
        self
    }

    /// Stores objects under redis keys `<prefix><32 hex digits>`.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long opening a connection (including authentication) may take.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one read or write on an open connection may block before the operation
    /// fails with [`Error::Timeout`](crate::Error::Timeout).
    pub fn with_io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }

    /// How many idle connections the connector keeps for reuse (at least one is kept).
    pub fn with_max_idle_connections(mut self, count: usize) -> Self {
        self.max_idle_connections = count;
        self
    }

    /// The server's url, including its password if it has one. Prefer
    /// [`server`](RedisOptions::server) for anything that is displayed or logged.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's url with any password replaced by `***`: safe to log.
    pub fn server(&self) -> String {
        redact_url(&self.url)
    }

    /// The redis key prefix of stored objects.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The read/write timeout.
    pub fn io_timeout(&self) -> Duration {
        self.io_timeout
    }

    /// The largest number of idle connections kept for reuse.
    pub fn max_idle_connections(&self) -> usize {
        self.max_idle_connections.max(1)
    }

    /// Whether closing the connector deletes the objects under the prefix.
    pub fn clear_on_close(&self) -> bool {
        self.clear_on_close
    }

    /// The `SCAN MATCH` pattern of this connector's object keys: the prefix with glob
    /// characters escaped, then 32 hex digits.
    #[cfg(feature = "redis")]
    pub(crate) fn object_pattern(&self) -> String {
        let mut pattern = String::with_capacity(self.prefix.len() + 32 * 8);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        for _ in 0..32 {
            pattern.push_str("[0-9a-f]");
        }
        pattern
    }
}

impl fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisOptions")
            .field("server", &self.server())
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("io_timeout", &self.io_timeout)
            .field("max_idle_connections", &self.max_idle_connections)
            .field("clear_on_close", &self.clear_on_close)
            .finish()
    }
}

/// `url` with the password of its user-info part, and the value of any `pass`/`password`
/// query parameter (used by `redis+unix://` urls), replaced by `***`.
pub(crate) fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{user_info}@{host}"),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((name, _)) if name.to_ascii_lowercase().starts_with("pass") => {
                        format!("{name}=***")
                    }
                    _ => param.to_string(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_string(),
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{authority}{tail}"),
        None => format!("{authority}{tail}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_without_secrets_are_unchanged() {
        for url in [
            "redis://127.0.0.1:6379/0",
            "redis://localhost",
            "redis://user@host:1/2",
            "redis+unix:///tmp/redis.sock?db=1",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("redis://:hunter2@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_url("redis://alice:p%40ss@host/3?protocol=resp3"),
            "redis://alice:***@host/3?protocol=resp3"
        );
        assert_eq!(
            redact_url("redis+unix:///tmp/r.sock?db=1&pass=hunter2"),
            "redis+unix:///tmp/r.sock?db=1&pass=***"
        );
    }

    #[test]
    fn debug_output_hides_the_password() {
        let options = RedisOptions::new("redis://:hunter2@127.0.0.1:1/0").with_prefix("p:");
        let debug = format!("{options:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("127.0.0.1:1"), "{debug}");
        assert_eq!(options.url(), "redis://:hunter2@127.0.0.1:1/0");
    }

    #[test]
    #[cfg(feature = "redis")]
    fn the_object_pattern_escapes_glob_characters() {
        let options = RedisOptions::new("redis://h").with_prefix("a*b?[c]\\:");
        let pattern = options.object_pattern();
        assert!(
            pattern.starts_with("a\\*b\\?\\[c\\]\\\\:[0-9a-f]"),
            "{pattern}"
        );
        assert_eq!(pattern.matches("[0-9a-f]").count(), 32);
    }

    #[test]
    fn options_round_trip_through_serde() {
        let options = RedisOptions::new("redis://:pw@h:1/0")
            .with_clear_on_close(true)
            .with_prefix("x:")
            .with_io_timeout(Duration::from_millis(1500))
            .with_max_idle_connections(3);
        let bytes = bincode::serialize(&options).expect("serialize");
        let back: RedisOptions = bincode::deserialize(&bytes).expect("deserialize");
        assert_eq!(back, options);
    }
}
