//! Payload frames without copies: `Bytes` into ZeroMQ frames and received frames into `Bytes`.
//!
//! Sending: a large [`Bytes`] is handed to libzmq by reference (`zmq_msg_init_data` with a
//! free callback that drops a boxed clone of the `Bytes`), so a stored object goes out of the
//! socket straight from the map's buffer. rust-zmq 0.10 can only wrap a uniquely owned
//! `Box<[u8]>` this way, which a shared `Bytes` is not, hence the few lines of `zmq-sys`.
//!
//! Receiving: a large [`zmq::Message`] becomes the owner of a `Bytes` ([`Bytes::from_owner`]),
//! so the buffer libzmq received into is the buffer the caller reads.
//!
//! Small payloads are copied: below [`ZERO_COPY_MIN`] bytes a copy is cheaper than the
//! allocations that sharing needs.

use std::os::raw::{c_int, c_void};

use bytes::Bytes;

/// Payloads at least this large are shared with libzmq instead of copied.
pub(crate) const ZERO_COPY_MIN: usize = 4096;

/// Sends `data` as one frame on `socket` (with `flags`, e.g. `zmq::SNDMORE`).
pub(crate) fn send_bytes(socket: &mut zmq::Socket, data: &Bytes, flags: i32) -> zmq::Result<()> {
    if data.len() < ZERO_COPY_MIN {
        return socket.send(&data[..], flags);
    }
    let len = data.len();
    let ptr = data.as_ptr() as *mut c_void;
    // The hint keeps the buffer alive until libzmq is done with it.
    let hint = Box::into_raw(Box::new(data.clone()));
    let mut msg = zmq_sys::zmq_msg_t::default();
    // SAFETY: `ptr`/`len` describe memory owned by the `Bytes` behind `hint`, which stays
    // alive (and unchanged: `Bytes` is immutable) until libzmq calls `release_bytes` once.
    // libzmq only reads the data of a message it sends.
    let rc = unsafe {
        zmq_sys::zmq_msg_init_data(
            &mut msg,
            ptr,
            len,
            Some(release_bytes),
            hint.cast::<c_void>(),
        )
    };
    if rc == -1 {
        let error = last_error();
        // SAFETY: initialisation failed, so libzmq did not take the hint: reclaim it here.
        drop(unsafe { Box::from_raw(hint) });
        return Err(error);
    }
    // SAFETY: `msg` is an initialised message and `socket` a live socket owned by this thread.
    let rc = unsafe { zmq_sys::zmq_msg_send(&mut msg, socket.as_mut_ptr(), flags as c_int) };
    let result = if rc == -1 { Err(last_error()) } else { Ok(()) };
    // After a successful send `msg` is empty and closing it does nothing; after a failed one
    // closing it releases the buffer through `release_bytes`.
    // SAFETY: `msg` was initialised above and is closed exactly once.
    unsafe { zmq_sys::zmq_msg_close(&mut msg) };
    result
}

/// libzmq's free callback for frames made by [`send_bytes`]: drops the boxed `Bytes`.
unsafe extern "C" fn release_bytes(_data: *mut c_void, hint: *mut c_void) {
    // SAFETY: `hint` is the `Box<Bytes>` leaked in `send_bytes`; libzmq calls this once.
    drop(unsafe { Box::from_raw(hint.cast::<Bytes>()) });
}

fn last_error() -> zmq::Error {
    // SAFETY: reads libzmq's thread-local errno; no preconditions.
    zmq::Error::from_raw(unsafe { zmq_sys::zmq_errno() })
}

/// A received frame as `Bytes`, sharing libzmq's buffer when the frame is large.
pub(crate) fn message_into_bytes(message: zmq::Message) -> Bytes {
    if message.len() < ZERO_COPY_MIN {
        Bytes::copy_from_slice(&message)
    } else {
        Bytes::from_owner(ReceivedFrame(message))
    }
}

/// Owns a received message so that a `Bytes` can point into it. `Bytes::from_owner` boxes the
/// owner before asking for the slice, so the slice stays put even for messages whose data
/// lives inside the `zmq_msg_t` itself (libzmq's small messages).
struct ReceivedFrame(zmq::Message);

impl AsRef<[u8]> for ReceivedFrame {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Over `inproc://`, libzmq passes the message itself from socket to socket, so pointer
    /// identity shows that neither side copied: the receiver reads the sender's buffer.
    #[test]
    fn large_frames_cross_a_socket_pair_without_a_copy() {
        let context = zmq::Context::new();
        let mut sender = context.socket(zmq::PAIR).expect("socket");
        let receiver = context.socket(zmq::PAIR).expect("socket");
        receiver.bind("inproc://frame-zero-copy").expect("bind");
        sender.connect("inproc://frame-zero-copy").expect("connect");

        let data = Bytes::from(vec![7u8; 1 << 20]);
        send_bytes(&mut sender, &data, 0).expect("send");
        let received = message_into_bytes(receiver.recv_msg(0).expect("recv"));
        assert_eq!(received.as_ptr(), data.as_ptr(), "a large frame was copied");
        assert!(received == data);
        drop(data);
        assert_eq!(
            received.len(),
            1 << 20,
            "the buffer outlives the sender's handle"
        );
        assert!(received.iter().all(|&b| b == 7));
    }

    #[test]
    fn small_frames_are_copied_and_round_trip() {
        let context = zmq::Context::new();
        let mut sender = context.socket(zmq::PAIR).expect("socket");
        let receiver = context.socket(zmq::PAIR).expect("socket");
        receiver.bind("inproc://frame-small").expect("bind");
        sender.connect("inproc://frame-small").expect("connect");
        for len in [0, 1, 31, 32, 33, ZERO_COPY_MIN - 1, ZERO_COPY_MIN] {
            let data = Bytes::from((0..len).map(|i| i as u8).collect::<Vec<u8>>());
            send_bytes(&mut sender, &data, 0).expect("send");
            let received = message_into_bytes(receiver.recv_msg(0).expect("recv"));
            assert_eq!(received, data, "{len} bytes");
        }
    }
}
