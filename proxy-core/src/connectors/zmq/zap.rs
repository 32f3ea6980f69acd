//! Connection tokens: a peer with a secret lets only members of its cluster finish the ZeroMQ
//! handshake, so that a stranger's bytes are never buffered as messages.
//!
//! Request proofs ([`auth`](super::auth)) are checked once a whole message has arrived, and
//! libzmq keeps each connection's unfinished message (up to the socket's maximum message
//! size) until then: eight strangers' connections with unfinished 56 MiB messages held
//! 448 MiB of a secured peer. So a peer with a secret also asks for a proof when a connection
//! opens. Its `ROUTER` is a ZeroMQ `PLAIN` server with a ZAP domain of its own; each client
//! with the secret sends, as the `PLAIN` password, a short-lived token:
//!
//! ```text
//! password = hex(time, 8 bytes LE) ‖ hex(nonce, 8 bytes) ‖ hex(MAC, 32 bytes)
//! MAC      = BLAKE3-keyed(token key, "proxystore zmq connection token v1" ‖ time ‖ nonce)
//! token key = BLAKE3-derive_key(TOKEN_CONTEXT, request key)
//! ```
//!
//! `time` is the client's clock in seconds since the Unix epoch; the peer accepts tokens up to
//! [`TOKEN_LIFETIME`] away from its own clock. The username is [`USERNAME`]. The token key is
//! derived from the secret with its own context ([`Secret::derive_key`]), so no token is a
//! request or reply proof. A token says nothing about requests: a recorded token lets its
//! holder open connections until it expires (and so hold up to one message per connection),
//! but every request still needs its own proof.
//!
//! libzmq asks the process's ZAP handler (a socket bound at `inproc://zeromq.zap.01` in the
//! one context, [`ensure_handler`]) about every `PLAIN` handshake; the handler looks the
//! server's ZAP domain up in a table of the live servers' token keys ([`Registration`]) and
//! answers `200` or `400`. A refused client's connection is closed before any message of it
//! is read, and the patched libzmq (vendor/PATCHED.md, patch 4) bounds each frame to 8 KiB
//! until the handshake completes.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::auth::Secret;
use super::context::context;

/// The username a client sends with its token.
pub(crate) const USERNAME: &str = "proxystore-v1";
/// How far a token's time may be from the peer's clock. A client replaces its connections
/// after [`TOKEN_REFRESH`], so that libzmq's automatic reconnections use a valid token.
pub(crate) const TOKEN_LIFETIME: Duration = Duration::from_secs(600);
/// How long a client keeps using a connection (and its token) before it opens a new one.
pub(crate) const TOKEN_REFRESH: Duration = Duration::from_secs(300);
/// Domain separation of the token key's derivation.
const TOKEN_CONTEXT: &str = "proxystore zmq peer 2026-12 connection token v1";
/// What the token's MAC covers before the time and nonce.
const TOKEN_LABEL: &[u8] = b"proxystore zmq connection token v1";
/// Where libzmq sends ZAP requests (fixed by the ZAP specification, RFC 27).
const ZAP_ENDPOINT: &str = "inproc://zeromq.zap.01";
/// The length of a token: 8 + 8 + 32 bytes, hex encoded.
const TOKEN_LEN: usize = 2 * (8 + 8 + 32);

/// The key tokens are made and checked with.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TokenKey([u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// The token key of `secret`.
    pub(crate) fn of(secret: &Secret) -> TokenKey {
        TokenKey(secret.derive_key(TOKEN_CONTEXT))
    }

    fn mac(&self, time: u64, nonce: &[u8; 8]) -> blake3::Hash {
        let mut hasher = blake3::Hasher::new_keyed(&self.0);
        hasher.update(TOKEN_LABEL);
        hasher.update(&time.to_le_bytes());
        hasher.update(nonce);
        hasher.finalize()
    }

    /// A fresh token, valid for [`TOKEN_LIFETIME`] around now.
    pub(crate) fn token(&self) -> String {
        self.token_at(unix_seconds(), new_nonce())
    }

    fn token_at(&self, time: u64, nonce: [u8; 8]) -> String {
        let mac = self.mac(time, &nonce);
        let mut token = String::with_capacity(TOKEN_LEN);
        for byte in time
            .to_le_bytes()
            .iter()
            .chain(&nonce)
            .chain(mac.as_bytes())
        {
            token.push_str(&format!("{byte:02x}"));
        }
        token
    }

    /// Whether `token` was made with this key at most [`TOKEN_LIFETIME`] from `now` (seconds
    /// since the Unix epoch). The MAC is compared in constant time.
    pub(crate) fn accepts(&self, token: &[u8], now: u64) -> bool {
        let Some(bytes) = unhex::<48>(token) else {
            return false;
        };
        let mut time = [0u8; 8];
        time.copy_from_slice(&bytes[..8]);
        let time = u64::from_le_bytes(time);
        let mut nonce = [0u8; 8];
        nonce.copy_from_slice(&bytes[8..16]);
        let mut mac = [0u8; 32];
        mac.copy_from_slice(&bytes[16..]);
        now.abs_diff(time) <= TOKEN_LIFETIME.as_secs()
            && self.mac(time, &nonce) == blake3::Hash::from_bytes(mac)
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

fn new_nonce() -> [u8; 8] {
    (crate::ids::new_id() as u64).to_le_bytes()
}

/// `N` bytes from `2 * N` hex digits; `None` for anything else.
fn unhex<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; N];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

/// The token keys of the live servers of this process, by ZAP domain.
fn domains() -> &'static Mutex<HashMap<String, TokenKey>> {
    static DOMAINS: OnceLock<Mutex<HashMap<String, TokenKey>>> = OnceLock::new();
    DOMAINS.get_or_init(Default::default)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A server's ZAP domain in the handler's table; removed when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    domain: String,
}

impl Registration {
    /// Registers a new domain for a server whose members hold `secret`.
    pub(crate) fn new(secret: &Secret) -> Registration {
        let domain = format!("proxystore-{:032x}", crate::ids::new_id());
        lock(domains()).insert(domain.clone(), TokenKey::of(secret));
        Registration { domain }
    }

    /// The ZAP domain the server's socket names (`ZMQ_ZAP_DOMAIN`).
    pub(crate) fn domain(&self) -> &str {
        &self.domain
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(domains()).remove(&self.domain);
    }
}

/// Starts the process's ZAP handler thread if it is not running; an error says why it could
/// not (then no server with a secret may start: libzmq would let every client in).
pub(crate) fn ensure_handler() -> Result<(), String> {
    // Per process: a child forked from a process with a handler has none (no thread) and
    // a context of its own (see `context`), so it starts one there.
    static HANDLER: Mutex<Option<(u32, Result<(), String>)>> = Mutex::new(None);
    let mut handler = lock(&HANDLER);
    if let Some(result) = crate::process_id::made_here(&mut handler) {
        return result.clone();
    }
    let result = start_handler();
    *handler = Some((crate::process_id::current(), result.clone()));
    result
}

fn start_handler() -> Result<(), String> {
    let socket = context()
        .socket(zmq::REP)
        .map_err(|e| format!("could not create the ZAP handler socket: {e}"))?;
    socket
        .set_linger(0)
        .map_err(|e| format!("could not configure the ZAP handler socket: {e}"))?;
    socket
        .bind(ZAP_ENDPOINT)
        .map_err(|e| format!("could not bind the ZAP handler at {ZAP_ENDPOINT}: {e}"))?;
    std::thread::Builder::new()
        .name("zmq-zap".to_string())
        .spawn(move || handle(&socket))
        .map(|_| ())
        .map_err(|e| format!("could not start the ZAP handler thread: {e}"))
}

/// Answers ZAP requests for as long as the process lives (the context is never terminated).
fn handle(socket: &zmq::Socket) {
    loop {
        let request = match socket.recv_multipart(0) {
            Ok(request) => request,
            Err(zmq::Error::EINTR) => continue,
            Err(_) => return,
        };
        let request_id = request.get(1).cloned().unwrap_or_default();
        let (code, text): (&[u8], &[u8]) = if decide(&request) {
            (b"200", b"OK")
        } else {
            (b"400", b"no valid connection token for this peer")
        };
        let reply: [&[u8]; 6] = [b"1.0", &request_id, code, text, b"", b""];
        if socket.send_multipart(reply, 0).is_err() {
            return;
        }
    }
}

/// Whether a ZAP request (RFC 27 frames: version, request id, domain, address, routing id,
/// mechanism, credentials) carries a valid token for its domain.
fn decide(request: &[Vec<u8>]) -> bool {
    let [version, _id, domain, _address, _routing_id, mechanism, username, password] = request
    else {
        return false;
    };
    if version.as_slice() != b"1.0"
        || mechanism.as_slice() != b"PLAIN"
        || username.as_slice() != USERNAME.as_bytes()
    {
        return false;
    }
    let Ok(domain) = std::str::from_utf8(domain) else {
        return false;
    };
    let key = lock(domains()).get(domain).cloned();
    key.is_some_and(|key| key.accepts(password, unix_seconds()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: &str) -> TokenKey {
        TokenKey::of(&Secret::new(secret.as_bytes()))
    }

    #[test]
    fn a_token_is_accepted_by_its_key_within_its_lifetime_only() {
        let member = key("a cluster secret of some length");
        let now = 1_800_000_000;
        let token = member.token_at(now, [7; 8]);
        assert_eq!(token.len(), TOKEN_LEN);
        assert!(member.accepts(token.as_bytes(), now));
        assert!(member.accepts(token.as_bytes(), now + TOKEN_LIFETIME.as_secs()));
        assert!(member.accepts(token.as_bytes(), now - TOKEN_LIFETIME.as_secs()));
        assert!(!member.accepts(token.as_bytes(), now + TOKEN_LIFETIME.as_secs() + 1));
        assert!(!key("another cluster secret, guessed").accepts(token.as_bytes(), now));
        // Any changed byte (time, nonce, MAC) fails.
        for at in [0, 17, 40, TOKEN_LEN - 1] {
            let mut changed = token.clone().into_bytes();
            changed[at] = if changed[at] == b'0' { b'1' } else { b'0' };
            assert!(!member.accepts(&changed, now), "byte {at}");
        }
        for junk in [&b""[..], b"zz", &[b'g'; TOKEN_LEN]] {
            assert!(!member.accepts(junk, now));
        }
    }

    #[test]
    fn the_handler_decides_by_domain_mechanism_and_username() {
        let secret = Secret::new(b"a cluster secret of some length");
        let registration = Registration::new(&secret);
        let token = TokenKey::of(&secret).token().into_bytes();
        let request = |domain: &str, mechanism: &[u8], username: &[u8]| -> Vec<Vec<u8>> {
            vec![
                b"1.0".to_vec(),
                b"1".to_vec(),
                domain.as_bytes().to_vec(),
                b"127.0.0.1".to_vec(),
                Vec::new(),
                mechanism.to_vec(),
                username.to_vec(),
                token.clone(),
            ]
        };
        assert!(decide(&request(
            registration.domain(),
            b"PLAIN",
            USERNAME.as_bytes()
        )));
        assert!(!decide(&request("another", b"PLAIN", USERNAME.as_bytes())));
        assert!(!decide(&request(
            registration.domain(),
            b"CURVE",
            USERNAME.as_bytes()
        )));
        assert!(!decide(&request(registration.domain(), b"PLAIN", b"admin")));
        assert!(!decide(
            &request(registration.domain(), b"PLAIN", USERNAME.as_bytes())[..7]
        ));
        let domain = registration.domain().to_string();
        drop(registration);
        assert!(!decide(&request(&domain, b"PLAIN", USERNAME.as_bytes())));
    }
}
