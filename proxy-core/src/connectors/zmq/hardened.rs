//! Whether the libzmq linked into this process carries proxy-core's patches, and the
//! refusal to serve a routable interface with one that does not.
//!
//! proxy-core builds its own patched libzmq (the `proxystore-zmq-sys` and
//! `proxystore-zeromq-src` crates under `vendor/`), so every program that depends on it
//! links that one. A program can still swap it (its own `[patch]` of those crates, a
//! different build of libzmq): then a peer bound to a non-loopback interface could be
//! aborted by any client that reaches it (a claimed routing id) or made to hold unbounded
//! memory (a multipart message that never ends). The patched libzmq says it is patched:
//! `zmq_has("proxystore-hardened-2")` returns 1 (patch 4, handshake frames bounded to 8 KiB,
//! added the `-2`). Loopback stays usable with any libzmq.

use super::options::is_loopback;
use crate::error::{Error, Result};

/// The capability proxy-core's patched libzmq reports through `zmq_has`.
pub(crate) const HARDENED_CAPABILITY: &str = "proxystore-hardened-2";

/// Whether the libzmq linked into this process has proxy-core's patches.
pub(crate) fn library_is_hardened() -> bool {
    zmq::has(HARDENED_CAPABILITY).unwrap_or(false)
}

/// Refuses to serve `interface` when it is not loopback and the linked libzmq is not
/// `hardened`.
pub(crate) fn check_library(interface: &str, hardened: bool) -> Result<()> {
    if hardened || is_loopback(interface) {
        return Ok(());
    }
    Err(Error::Config {
        what: "zmq connector".to_string(),
        message: format!(
            "refusing to serve interface {interface:?}: the libzmq linked into this program lacks proxy-core's patches (zmq_has(\"{HARDENED_CAPABILITY}\") is 0), so any client that reaches the interface could abort this process (a claimed routing id) or make it hold unbounded memory (a multipart message that never ends). Link proxy-core's own libzmq: remove the [patch] or build setting that replaces proxystore-zeromq-src or proxystore-zmq-sys (see proxy-core/ZMQ.md, Security), or serve a loopback interface only"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_build_links_the_patched_libzmq() {
        assert!(library_is_hardened());
    }

    #[test]
    fn an_unpatched_libzmq_serves_loopback_only() {
        for loopback in ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"] {
            assert!(check_library(loopback, false).is_ok(), "{loopback}");
            assert!(check_library(loopback, true).is_ok(), "{loopback}");
        }
        for exposed in ["0.0.0.0", "*", "10.0.0.5", "::", "node-1"] {
            assert!(check_library(exposed, true).is_ok(), "{exposed}");
            match check_library(exposed, false) {
                Err(Error::Config { message, .. }) => {
                    assert!(message.contains(exposed), "{message}");
                    assert!(message.contains("proxystore-hardened"), "{message}");
                    assert!(message.contains("[patch]"), "{message}");
                    assert!(message.contains("loopback"), "{message}");
                }
                other => panic!("{exposed}: {other:?}"),
            }
        }
    }
}
