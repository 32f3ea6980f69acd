//! Turning the redis client's errors into this crate's [`Error`], naming the server.

use std::fmt;
use std::time::Duration;

use redis::{ErrorKind, RedisError};

use crate::error::Error;
use crate::key::Key;

/// What was being done when an error happened, for error messages: a command and its key or
/// the size of its batch.
#[derive(Clone, Copy, Debug)]
pub(super) enum Operation<'a> {
    /// Opening a connection (and authenticating).
    Connect,
    /// A command on one object.
    One(&'static str, &'a Key),
    /// A command on a batch of objects.
    Batch(&'static str, usize),
    /// A command without a key.
    Plain(&'static str),
}

impl fmt::Display for Operation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operation::Connect => f.write_str("connect"),
            Operation::One(command, key) => write!(f, "{command} {key}"),
            Operation::Batch(command, count) => write!(f, "{command} of {count} objects"),
            Operation::Plain(command) => f.write_str(command),
        }
    }
}

/// Whether `error` means the connection is unusable (reset, closed, refused) rather than that
/// the server answered with an error or did not answer in time.
pub(super) fn is_connection_lost(error: &RedisError) -> bool {
    !error.is_timeout() && (error.is_connection_dropped() || error.is_io_error())
}

/// The crate's error for `error`, raised by `operation` on `server` (a url without password).
/// `timeout` is the timeout that applied to the operation. Every occurrence of `password`
/// is scrubbed from the message, in case the client or the server ever echoes it.
pub(super) fn to_error(
    error: &RedisError,
    server: &str,
    operation: Operation<'_>,
    timeout: Duration,
    password: Option<&str>,
) -> Error {
    if error.is_timeout() {
        return Error::Timeout {
            peer: server.to_string(),
            operation: operation.to_string(),
            timeout,
        };
    }
    let detail = scrub(error.to_string(), password);
    let unreachable = |message: String| Error::Unreachable {
        peer: server.to_string(),
        message,
    };
    if is_auth_failure(error) {
        Error::Peer {
            peer: server.to_string(),
            message: format!("authentication failed during {operation}: {detail}"),
        }
    } else if error.is_connection_refusal() {
        unreachable(format!(
            "{operation}: connection refused (is redis-server running there?): {detail}"
        ))
    } else if matches!(operation, Operation::Connect) {
        unreachable(format!("cannot connect: {detail}"))
    } else if is_connection_lost(error) {
        unreachable(format!("connection lost during {operation}: {detail}"))
    } else {
        Error::Peer {
            peer: server.to_string(),
            message: format!("{operation} failed: {detail}"),
        }
    }
}

fn is_auth_failure(error: &RedisError) -> bool {
    error.kind() == ErrorKind::AuthenticationFailed
        || matches!(error.code(), Some("NOAUTH" | "WRONGPASS"))
}

fn scrub(message: String, password: Option<&str>) -> String {
    match password {
        Some(password) if !password.is_empty() && message.contains(password) => {
            message.replace(password, "***")
        }
        _ => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_name_the_server_and_the_operation() {
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let err = to_error(
            &refused,
            "redis://h:1/0",
            Operation::Connect,
            Duration::ZERO,
            None,
        );
        let text = err.to_string();
        assert!(
            matches!(err, Error::Unreachable { ref peer, .. } if peer == "redis://h:1/0"),
            "{text}"
        );
        assert!(err.is_unreachable() && !err.is_refused(), "{text}");
        assert!(text.contains("connection refused"), "{text}");

        let key = Key::new("redis", 7);
        let reset = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        let lost = to_error(
            &reset,
            "s",
            Operation::One("GET", &key),
            Duration::ZERO,
            None,
        );
        assert!(lost.is_unreachable(), "{lost}");
        let text = lost.to_string();
        assert!(text.contains("connection lost during GET redis:"), "{text}");
    }

    #[test]
    fn timeouts_become_timeout_errors() {
        let timed_out = RedisError::from(std::io::Error::from(std::io::ErrorKind::WouldBlock));
        let err = to_error(
            &timed_out,
            "s",
            Operation::Batch("MGET", 3),
            Duration::from_secs(2),
            None,
        );
        assert!(
            matches!(err, Error::Timeout { ref operation, timeout, .. }
                if operation == "MGET of 3 objects" && timeout == Duration::from_secs(2)),
            "{err}"
        );
    }

    #[test]
    fn the_password_is_scrubbed() {
        let leaky = RedisError::from(std::io::Error::other("bad secret-pw"));
        let text = to_error(
            &leaky,
            "s",
            Operation::Connect,
            Duration::ZERO,
            Some("secret-pw"),
        )
        .to_string();
        assert!(!text.contains("secret-pw"), "{text}");
    }
}
