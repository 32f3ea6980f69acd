//! `ZmqOptions` (how a peer binds, waits and what it accepts) and `ZmqConfig` (what travels).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ZmqConnector;
use crate::error::{Error, Result};

/// Default time a request may wait for a silent peer.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default largest message (frame) a peer accepts from the network: 1 GiB.
pub(crate) const DEFAULT_MAX_MESSAGE_SIZE: u64 = 1 << 30;

/// Options of a [`ZmqConnector`], set builder style and finished with [`build`](Self::build).
///
/// ```
/// use std::time::Duration;
/// use proxy_core::ZmqOptions;
///
/// let connector = ZmqOptions::default()
///     .with_interface("127.0.0.1")
///     .with_port(0) // the OS picks one
///     .with_timeout(Duration::from_secs(2))
///     .with_max_message_size(256 << 20)
///     .build()?;
/// assert!(connector.endpoint().unwrap().starts_with("tcp://127.0.0.1:"));
/// # Ok::<(), proxy_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZmqOptions {
    interface: String,
    address: Option<String>,
    port: u16,
    timeout: Duration,
    max_message_size: u64,
}

impl Default for ZmqOptions {
    fn default() -> Self {
        ZmqOptions {
            interface: "127.0.0.1".to_string(),
            address: None,
            port: 0,
            timeout: DEFAULT_TIMEOUT,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

impl ZmqOptions {
    /// The interface the peer server binds: an IP address, a host name, or `*` / `0.0.0.0`
    /// for all interfaces (which then needs an [`address`](Self::with_address)). Default
    /// `127.0.0.1`.
    pub fn with_interface(mut self, interface: impl Into<String>) -> Self {
        self.interface = interface.into();
        self
    }

    /// The host name or address other peers use to reach this one, written into every key.
    /// Default: the interface.
    pub fn with_address(mut self, address: impl Into<String>) -> Self {
        self.address = Some(address.into());
        self
    }

    /// The TCP port of the peer server; 0 (the default) lets the OS choose.
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// How long a request waits for a peer that does not answer before failing with
    /// [`Error::Timeout`]. In a batch, the time allowed between two replies. Default 5 s.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest frame accepted from the network, in bytes, both by the peer server (a
    /// larger request drops the connection that sent it) and by this connector's client
    /// sockets (a larger reply does the same, and the request then times out). Default 1 GiB.
    pub fn with_max_message_size(mut self, bytes: u64) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// A connector with these options, its peer server started and bound.
    pub fn build(self) -> Result<ZmqConnector> {
        ZmqConnector::with_options(self)
    }

    /// Checks the options without binding anything.
    pub(crate) fn validate(&self) -> Result<()> {
        let fail = |message: String| {
            Err(Error::Config {
                what: "zmq connector".to_string(),
                message,
            })
        };
        if self.interface.is_empty() || self.interface.contains(['\0', '/']) {
            return fail(format!(
                "interface {:?} is not a host or address",
                self.interface
            ));
        }
        if self.address.is_none() && is_wildcard(&self.interface) {
            return fail(format!(
                "binding all interfaces ({:?}) needs an address for other peers to use",
                self.interface
            ));
        }
        if let Some(address) = &self.address {
            if address.is_empty() || address.contains(['\0', '/']) || is_wildcard(address) {
                return fail(format!(
                    "address {address:?} is not a reachable host or address"
                ));
            }
        }
        if self.timeout.is_zero() {
            return fail("the timeout must be positive".to_string());
        }
        if self.max_message_size == 0 || self.max_message_size > i64::MAX as u64 {
            return fail(format!(
                "max message size {} is out of range",
                self.max_message_size
            ));
        }
        Ok(())
    }

    /// The endpoint the peer server binds.
    pub(crate) fn bind_endpoint(&self) -> String {
        let port = if self.port == 0 {
            "*".to_string()
        } else {
            self.port.to_string()
        };
        format!("tcp://{}:{port}", bracket_ipv6(&self.interface))
    }

    /// The endpoint other peers connect to, once the server listens on `port`.
    pub(crate) fn advertised_endpoint(&self, port: u16) -> String {
        let host = self.address.as_deref().unwrap_or(&self.interface);
        format!("tcp://{}:{port}", bracket_ipv6(host))
    }

    /// Whether the server must be allowed to use IPv6.
    pub(crate) fn uses_ipv6(&self) -> bool {
        self.interface.contains(':') || is_wildcard(&self.interface)
    }

    /// The configured maximum message size in bytes.
    pub(crate) fn get_max_message_size(&self) -> u64 {
        self.max_message_size
    }

    /// The configured timeout.
    pub(crate) fn request_timeout(&self) -> Duration {
        self.timeout
    }

    /// The maximum message size as libzmq's option value.
    pub(crate) fn max_message_size_option(&self) -> i64 {
        i64::try_from(self.max_message_size).unwrap_or(i64::MAX)
    }
}

fn is_wildcard(host: &str) -> bool {
    matches!(host, "*" | "0.0.0.0" | "::" | "[::]")
}

fn bracket_ipv6(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// The serializable description of a [`ZmqConnector`] (inside
/// [`ConnectorConfig::Zmq`](crate::ConnectorConfig::Zmq)).
///
/// Built in the process whose connector made it, while that connector's server runs, it gives
/// back a connector on the same server and objects. Built anywhere else, it gives a connector
/// with the same options that reads any peer's objects (the keys name their peers) and starts
/// its own server on its first `put`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZmqConfig {
    /// The options of the original connector.
    pub options: ZmqOptions,
    /// The endpoint of the original connector's peer server, if it had started one.
    pub endpoint: Option<String>,
}

impl ZmqConfig {
    /// Builds the connector this configuration describes (see the type's documentation).
    pub fn build(&self) -> Result<ZmqConnector> {
        ZmqConnector::from_config(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_follow_the_options() {
        let options = ZmqOptions::default();
        assert_eq!(options.bind_endpoint(), "tcp://127.0.0.1:*");
        assert_eq!(options.advertised_endpoint(4000), "tcp://127.0.0.1:4000");
        let options = ZmqOptions::default().with_interface("::1").with_port(7);
        assert_eq!(options.bind_endpoint(), "tcp://[::1]:7");
        assert!(options.uses_ipv6());
        let options = ZmqOptions::default()
            .with_interface("0.0.0.0")
            .with_address("node-3");
        assert_eq!(options.advertised_endpoint(9), "tcp://node-3:9");
    }

    #[test]
    fn unusable_options_are_config_errors() {
        for options in [
            ZmqOptions::default().with_interface("*"),
            ZmqOptions::default().with_interface(""),
            ZmqOptions::default().with_interface("a\0b"),
            ZmqOptions::default().with_address("0.0.0.0"),
            ZmqOptions::default().with_timeout(Duration::ZERO),
            ZmqOptions::default().with_max_message_size(0),
        ] {
            match options.validate() {
                Err(Error::Config { what, .. }) => assert_eq!(what, "zmq connector"),
                other => panic!("{options:?} gave {other:?}"),
            }
        }
        assert!(ZmqOptions::default().validate().is_ok());
    }
}
