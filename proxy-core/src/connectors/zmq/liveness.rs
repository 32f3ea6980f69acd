//! `Liveness`: whether bytes are still moving on a client socket's TCP connection.
//!
//! A request's timeout measures silence, not the transfer: libzmq hands over a message only
//! once all of it has arrived, so a large reply (or a large put) can take longer than the
//! timeout while the peer is perfectly healthy. The client therefore waits in slices and,
//! when a slice passes without a reply, asks the kernel whether the connection moved data
//! since the last look (`TCP_INFO`: bytes received from the peer, bytes of ours the peer
//! acknowledged). Progress restarts the timeout; a peer that is dead, stopped (`SIGSTOP`) or
//! unreachable moves nothing, so the request fails one timeout after the last byte. Bytes are
//! not enough on their own: a peer that trickles a reply, or sends only ZMTP heartbeats,
//! moves a few bytes forever, so the client also holds the connection to a minimum rate
//! (`client::run`).
//!
//! The connection's file descriptor comes from a libzmq socket monitor (`CONNECTED`
//! carries it; `DISCONNECTED` and `CLOSED` retire it). libzmq sends monitor events from its
//! I/O thread with blocking sends, so the receiving end takes any number of events
//! (`RCVHWM` 0) and the monitor is stopped ([`Liveness::stop`]) before that end closes:
//! otherwise one event with nobody to take it would stall every socket of the process. Where `TCP_INFO` is not available
//! (not Linux) nothing counts as progress and the timeout bounds the whole exchange, as
//! before.

use std::os::raw::c_int;

use super::context;

/// Watches one `DEALER` socket's connection.
pub(crate) struct Liveness {
    monitor: zmq::Socket,
    fd: Option<c_int>,
    last: (u64, u64),
    /// Why the peer refused the last handshake, if it did.
    refused: Option<HandshakeRefusal>,
    /// Whether the current connection has not finished its handshake yet.
    handshaking: bool,
    /// Connections in a row that the peer dropped before their handshake finished.
    dropped_in_handshake: u32,
}

/// Connections in a row the peer may drop during the handshake before the client takes it
/// as a refusal ([`HandshakeRefusal::Dropped`]) instead of retrying until its timeout.
pub(crate) const DROPS_BEFORE_REFUSAL: u32 = 3;

/// Why a peer refused a client's ZeroMQ handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HandshakeRefusal {
    /// The peer refused the connection token (`HANDSHAKE_FAILED_AUTH`).
    Token,
    /// The peer speaks another security mechanism (`HANDSHAKE_FAILED_PROTOCOL`): one of
    /// the two has a secret and the other has none.
    Mechanism,
    /// The peer closed [`DROPS_BEFORE_REFUSAL`] connections in a row before their handshake
    /// finished, without saying why. A peer with a secret drops a client without one as
    /// soon as it reads the client's greeting, and libzmq reports the mismatch only when the
    /// peer's own greeting arrived first (0.05 s to over 3 s in a loop on a small machine);
    /// so the client does not wait for that report. The other reasons: a peer at its
    /// connection limit, or a service there that is no ZeroMQ peer.
    Dropped,
}

impl HandshakeRefusal {
    /// What the refusal means, for a client that has a secret (`with_secret`) or not.
    pub(crate) fn describe(self, with_secret: bool) -> String {
        match (self, with_secret) {
            (HandshakeRefusal::Token, _) => "the peer refused this client's connection token: the two have different cluster secrets (or clocks more than 10 minutes apart)".to_string(),
            (HandshakeRefusal::Mechanism, true) => "the peer has no cluster secret, and this client has one: it does not take the client's connection token".to_string(),
            (HandshakeRefusal::Mechanism, false) => "the peer requires the cluster secret: a connection needs a token made with it (set the secret with ZmqOptions::with_secret_file, PROXYSTORE_SECRET_FILE or PROXYSTORE_SECRET)".to_string(),
            (HandshakeRefusal::Dropped, true) => format!("the peer closed {DROPS_BEFORE_REFUSAL} connections in a row during the ZeroMQ handshake: it has no cluster secret or another one (the two must have the same), or it is at its connection limit, or no ProxyStore peer listens there"),
            (HandshakeRefusal::Dropped, false) => format!("the peer closed {DROPS_BEFORE_REFUSAL} connections in a row during the ZeroMQ handshake: it most likely requires the cluster secret (set it with ZmqOptions::with_secret_file, PROXYSTORE_SECRET_FILE or PROXYSTORE_SECRET), or it is at its connection limit, or no ProxyStore peer listens there"),
        }
    }
}

impl Liveness {
    /// Starts monitoring `socket` (before it connects, so that no event is missed).
    pub(crate) fn watch(socket: &zmq::Socket) -> zmq::Result<Liveness> {
        let endpoint = format!(
            "inproc://proxy-core-zmq-monitor-{:032x}",
            crate::ids::new_id()
        );
        let events = zmq::SocketEvent::CONNECTED as i32
            | zmq::SocketEvent::DISCONNECTED as i32
            | zmq::SocketEvent::CLOSED as i32
            | zmq::SocketEvent::HANDSHAKE_SUCCEEDED as i32
            | zmq::SocketEvent::HANDSHAKE_FAILED_AUTH as i32
            | zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL as i32;
        socket.monitor(&endpoint, events)?;
        let monitor = context().socket(zmq::PAIR)?;
        monitor.set_linger(0)?;
        monitor.set_rcvhwm(0)?;
        monitor.connect(&endpoint)?;
        Ok(Liveness {
            monitor,
            fd: None,
            last: (0, 0),
            refused: None,
            handshaking: false,
            dropped_in_handshake: 0,
        })
    }

    /// Stops monitoring `socket`; call before dropping this (and `socket`).
    pub(crate) fn stop(&mut self, socket: &mut zmq::Socket) {
        // SAFETY: `socket` is a live socket owned by this thread; a null endpoint stops its
        // monitor (libzmq closes its end of the monitor pair).
        unsafe {
            zmq_sys::zmq_socket_monitor(socket.as_mut_ptr(), std::ptr::null(), 0);
        }
        self.fd = None;
    }

    /// How many bytes the connection moved since the last call: received from the peer, plus
    /// (when `uploading`, i.e. a payload is on its way to the peer) those of ours the peer
    /// acknowledged. The acknowledgement of a small request alone is no sign that the peer
    /// is alive: its kernel sends it even when the peer process is stopped. The count
    /// includes ZMTP commands (heartbeats): the kernel cannot tell them from a reply, which
    /// is why the client also asks for a minimum rate (see `client`).
    pub(crate) fn moved(&mut self, uploading: bool) -> u64 {
        self.read_events();
        let Some(fd) = self.fd else { return 0 };
        let Some(now) = transferred(fd) else {
            return 0;
        };
        let acked = now.0.saturating_sub(self.last.0);
        let received = now.1.saturating_sub(self.last.1);
        self.last = now;
        if uploading {
            received.saturating_add(acked)
        } else {
            received
        }
    }

    /// Why the peer refused this socket's last handshake, if it did (and none succeeded
    /// since): the reason libzmq reported, or [`HandshakeRefusal::Dropped`] after
    /// [`DROPS_BEFORE_REFUSAL`] connections in a row closed during their handshakes.
    pub(crate) fn refused(&mut self) -> Option<HandshakeRefusal> {
        self.read_events();
        self.refused.or_else(|| {
            (self.dropped_in_handshake >= DROPS_BEFORE_REFUSAL).then_some(HandshakeRefusal::Dropped)
        })
    }

    fn read_events(&mut self) {
        while let Ok(frames) = self.monitor.recv_multipart(zmq::DONTWAIT) {
            let Some(event) = frames.first().filter(|f| f.len() >= 6) else {
                continue;
            };
            let kind = u16::from_ne_bytes([event[0], event[1]]);
            let value = i32::from_ne_bytes([event[2], event[3], event[4], event[5]]);
            match zmq::SocketEvent::from_raw(kind) {
                zmq::SocketEvent::CONNECTED => {
                    self.fd = Some(value);
                    self.last = transferred(value).unwrap_or((0, 0));
                    self.handshaking = true;
                }
                zmq::SocketEvent::DISCONNECTED | zmq::SocketEvent::CLOSED => {
                    self.fd = None;
                    if std::mem::take(&mut self.handshaking) {
                        self.dropped_in_handshake = self.dropped_in_handshake.saturating_add(1);
                    }
                }
                zmq::SocketEvent::HANDSHAKE_SUCCEEDED => {
                    self.refused = None;
                    self.handshaking = false;
                    self.dropped_in_handshake = 0;
                }
                zmq::SocketEvent::HANDSHAKE_FAILED_AUTH => {
                    self.refused = Some(HandshakeRefusal::Token);
                }
                zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL => {
                    self.refused = Some(HandshakeRefusal::Mechanism);
                }
                _ => {}
            }
        }
    }
}

/// Bytes the peer acknowledged and bytes received on TCP socket `fd`.
#[cfg(target_os = "linux")]
fn transferred(fd: c_int) -> Option<(u64, u64)> {
    // SAFETY: `tcp_info` is plain data; `getsockopt` writes at most `len` bytes into it and
    // fails harmlessly on a descriptor that is not a TCP socket.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        (rc == 0).then_some((info.tcpi_bytes_acked, info.tcpi_bytes_received))
    }
}

#[cfg(not(target_os = "linux"))]
fn transferred(_fd: c_int) -> Option<(u64, u64)> {
    None
}
