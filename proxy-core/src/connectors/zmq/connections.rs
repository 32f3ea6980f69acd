//! `Connections`: the peer server's open connections, and the limit on how many it keeps.
//!
//! Each connection a peer accepts takes a file descriptor, and libzmq accepts every
//! connection it can: 1,008 idle connections from a client without the secret used up a
//! peer's 1,024 descriptors, and members' connections then waited in the listen backlog for
//! good. So the server counts its connections from a libzmq socket monitor (`ACCEPTED`,
//! `HANDSHAKE_SUCCEEDED` and `DISCONNECTED` carry the connection's descriptor: the patched
//! libzmq adds it to `HANDSHAKE_SUCCEEDED`, vendor/PATCHED.md patch 4) and, when more than its
//! limit are open, drops one: first the oldest connection that has not completed its ZeroMQ
//! handshake (with a secret: not shown a valid connection token, [`zap`](super::zap); without
//! one: not spoken ZMTP at all), else the newest, so that established members keep their
//! connections. Dropping is `shutdown(2)` on the descriptor: libzmq reads the end of the
//! stream and closes the connection as if the client had.
//!
//! The limit is [`ZmqOptions::with_max_connections`](super::ZmqOptions::with_max_connections),
//! and never more than the process's open-file limit less a reserve ([`effective_limit`]), so
//! that the peer keeps descriptors to accept members' connections with.
//!
//! libzmq sends monitor events with blocking sends from its I/O threads, so the receiving end
//! takes any number of events (`RCVHWM` 0) and the server thread reads them on every turn of
//! its loop; the monitor is stopped before that end closes ([`Connections::stop`]).

use std::collections::HashMap;
use std::os::raw::c_int;

use super::context;

/// Descriptors kept for everything but accepted connections: a quarter of the open-file
/// limit, at least this many.
const RESERVED_DESCRIPTORS: u64 = 64;

/// The connection limit a server applies: `configured`, but at most the soft open-file limit
/// `nofile` less a reserve (a quarter of it, at least [`RESERVED_DESCRIPTORS`]), and at least 1.
pub(crate) fn effective_limit(configured: usize, nofile: Option<u64>) -> usize {
    let Some(nofile) = nofile else {
        return configured.max(1);
    };
    let reserve = (nofile / 4).max(RESERVED_DESCRIPTORS);
    let room = usize::try_from(nofile.saturating_sub(reserve)).unwrap_or(usize::MAX);
    configured.min(room).max(1)
}

/// This process's soft open-file limit, if it has one.
pub(crate) fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes one `rlimit` into the place given.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    // `rlim_t` is `u64` on Linux, not on every platform.
    #[allow(clippy::unnecessary_cast)]
    let soft = limit.rlim_cur as u64;
    (rc == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(soft)
}

/// One open connection.
#[derive(Debug)]
struct Connection {
    /// The order it was accepted in.
    accepted: u64,
    /// Whether it completed the ZeroMQ handshake.
    member: bool,
    /// Its local and remote addresses when it was accepted (checked again before the
    /// descriptor is shut down, so that a descriptor libzmq closed and reused is left alone).
    addresses: Option<Vec<u8>>,
    /// Whether it was shut down and its `DISCONNECTED` is awaited.
    dropping: bool,
}

/// What happened to the server's connections since the last look.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    /// Connections dropped to stay within the limit.
    pub(crate) dropped: u64,
    /// Handshakes refused (no valid connection token, another mechanism).
    pub(crate) refused: u64,
    /// Whether the number of open connections changed.
    pub(crate) count_changed: bool,
}

/// The open connections of one server socket.
pub(crate) struct Connections {
    monitor: zmq::Socket,
    open: HashMap<c_int, Connection>,
    limit: usize,
    accepted: u64,
}

impl Connections {
    /// Starts monitoring `socket` (before it binds, so that no event is missed), keeping at
    /// most `limit` connections.
    pub(crate) fn watch(socket: &zmq::Socket, limit: usize) -> zmq::Result<Connections> {
        let endpoint = format!(
            "inproc://proxy-core-zmq-connections-{:032x}",
            crate::ids::new_id()
        );
        let events = zmq::SocketEvent::ACCEPTED as i32
            | zmq::SocketEvent::HANDSHAKE_SUCCEEDED as i32
            | zmq::SocketEvent::HANDSHAKE_FAILED_AUTH as i32
            | zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL as i32
            | zmq::SocketEvent::DISCONNECTED as i32;
        socket.monitor(&endpoint, events)?;
        let monitor = context().socket(zmq::PAIR)?;
        monitor.set_linger(0)?;
        monitor.set_rcvhwm(0)?;
        monitor.connect(&endpoint)?;
        Ok(Connections {
            monitor,
            open: HashMap::new(),
            limit: limit.max(1),
            accepted: 0,
        })
    }

    /// The monitor's socket, to poll with the server's.
    pub(crate) fn monitor(&self) -> &zmq::Socket {
        &self.monitor
    }

    /// How many connections are open (those being dropped included: they hold a descriptor
    /// until libzmq closes them).
    pub(crate) fn open(&self) -> usize {
        self.open.len()
    }

    /// The most connections kept.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Reads the monitor's events and drops connections beyond the limit.
    pub(crate) fn update(&mut self) -> Changes {
        let mut changes = Changes::default();
        while let Ok(frames) = self.monitor.recv_multipart(zmq::DONTWAIT) {
            let Some(event) = frames.first().filter(|f| f.len() >= 6) else {
                continue;
            };
            let kind = u16::from_ne_bytes([event[0], event[1]]);
            let fd = i32::from_ne_bytes([event[2], event[3], event[4], event[5]]);
            match zmq::SocketEvent::from_raw(kind) {
                zmq::SocketEvent::ACCEPTED => {
                    self.accepted += 1;
                    self.open.insert(
                        fd,
                        Connection {
                            accepted: self.accepted,
                            member: false,
                            addresses: addresses(fd),
                            dropping: false,
                        },
                    );
                    changes.count_changed = true;
                    changes.dropped += self.enforce();
                }
                zmq::SocketEvent::HANDSHAKE_SUCCEEDED => {
                    if let Some(connection) = self.open.get_mut(&fd) {
                        connection.member = true;
                    }
                }
                zmq::SocketEvent::HANDSHAKE_FAILED_AUTH
                | zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL => changes.refused += 1,
                zmq::SocketEvent::DISCONNECTED => {
                    changes.count_changed |= self.open.remove(&fd).is_some();
                }
                _ => {}
            }
        }
        changes
    }

    /// Drops connections while more than the limit are open; returns how many.
    fn enforce(&mut self) -> u64 {
        let mut dropped = 0;
        loop {
            let live = self.open.values().filter(|c| !c.dropping).count();
            if live <= self.limit {
                return dropped;
            }
            let Some(fd) = self.victim() else {
                return dropped;
            };
            if let Some(connection) = self.open.get_mut(&fd) {
                connection.dropping = true;
                if connection.addresses.is_some() && connection.addresses == addresses(fd) {
                    // SAFETY: `fd` is a connected TCP socket of this server (same local and
                    // remote address as when it was accepted); shutting it down makes
                    // libzmq read the end of the stream and close it.
                    unsafe {
                        libc::shutdown(fd, libc::SHUT_RDWR);
                    }
                    dropped += 1;
                }
            }
        }
    }

    /// The connection to drop: the oldest that has not completed its handshake, else the
    /// newest.
    fn victim(&self) -> Option<c_int> {
        let live = self.open.iter().filter(|(_, c)| !c.dropping);
        let stranger = live
            .clone()
            .filter(|(_, c)| !c.member)
            .min_by_key(|(_, c)| c.accepted);
        stranger
            .or_else(|| live.max_by_key(|(_, c)| c.accepted))
            .map(|(fd, _)| *fd)
    }

    /// Stops monitoring `socket`; call before dropping this (and `socket`).
    pub(crate) fn stop(&mut self, socket: &mut zmq::Socket) {
        // SAFETY: `socket` is a live socket owned by this thread; a null endpoint stops its
        // monitor (libzmq closes its end of the monitor pair).
        unsafe {
            zmq_sys::zmq_socket_monitor(socket.as_mut_ptr(), std::ptr::null(), 0);
        }
        self.open.clear();
    }
}

/// The local and remote addresses of socket `fd`, or `None` if it is not a connected socket.
fn addresses(fd: c_int) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(2 * std::mem::size_of::<libc::sockaddr_storage>());
    for get in [libc::getsockname, libc::getpeername] {
        // SAFETY: `sockaddr_storage` is plain data; the call writes at most `len` bytes of
        // it and fails harmlessly on a descriptor that is not a socket.
        unsafe {
            let mut address: libc::sockaddr_storage = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            if get(
                fd,
                (&mut address as *mut libc::sockaddr_storage).cast(),
                &mut len,
            ) != 0
            {
                return None;
            }
            let bytes = std::slice::from_raw_parts(
                (&address as *const libc::sockaddr_storage).cast::<u8>(),
                (len as usize).min(std::mem::size_of::<libc::sockaddr_storage>()),
            );
            out.extend_from_slice(bytes);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_keeps_a_reserve_of_descriptors() {
        assert_eq!(effective_limit(4096, None), 4096);
        assert_eq!(effective_limit(4096, Some(1024)), 768);
        assert_eq!(effective_limit(4096, Some(256)), 192);
        assert_eq!(effective_limit(4096, Some(100)), 36);
        assert_eq!(effective_limit(4096, Some(10)), 1);
        assert_eq!(effective_limit(4096, Some(1 << 20)), 4096);
        assert_eq!(effective_limit(0, Some(1 << 20)), 1);
    }
}
