//! An in-process channel: streams between threads of one process.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::pubsub::{Publisher, Subscriber};
use crate::error::{Error, Result};

/// An unbounded in-process channel: a publisher and a subscriber.
///
/// Both ends can be cloned: every publisher feeds one queue, and each message reaches one
/// subscriber (a work queue, as ProxyStore's queue publisher). When every publisher is
/// dropped or closed, a subscriber that has read everything gets
/// [`Error::StreamEnded`]; a consumer that has seen the end of the stream first never asks.
pub fn channel() -> (ChannelPublisher, ChannelSubscriber) {
    pair(crossbeam_channel::unbounded())
}

/// Like [`channel`], holding at most `capacity` messages: a publisher whose subscribers lag
/// waits in [`send_message`](Publisher::send_message) for room (backpressure).
pub fn bounded_channel(capacity: usize) -> (ChannelPublisher, ChannelSubscriber) {
    pair(crossbeam_channel::bounded(capacity))
}

type Message = (String, Bytes);

fn pair((tx, rx): (Sender<Message>, Receiver<Message>)) -> (ChannelPublisher, ChannelSubscriber) {
    (
        ChannelPublisher { tx: Some(tx) },
        ChannelSubscriber {
            rx,
            stash: Arc::default(),
        },
    )
}

/// The sending end of an in-process [`channel`].
#[derive(Debug, Clone)]
pub struct ChannelPublisher {
    tx: Option<Sender<Message>>,
}

impl Publisher for ChannelPublisher {
    fn send_message(&mut self, topic: &str, message: Bytes) -> Result<()> {
        let closed = |why: &str| Error::Closed {
            connector: format!("in-process stream channel ({why})"),
        };
        let Some(tx) = &self.tx else {
            return Err(closed("this publisher was closed"));
        };
        tx.send((topic.to_string(), message))
            .map_err(|_| closed("every subscriber was dropped"))
    }

    fn close(&mut self) -> Result<()> {
        self.tx = None;
        Ok(())
    }
}

/// The receiving end of an in-process [`channel`].
#[derive(Debug, Clone)]
pub struct ChannelSubscriber {
    rx: Receiver<Message>,
    /// Messages [`peek`](ChannelSubscriber::peek) took out of the channel, read first.
    stash: Arc<Mutex<VecDeque<Message>>>,
}

impl ChannelSubscriber {
    /// How many messages wait in the channel.
    pub fn len(&self) -> usize {
        self.stash().len() + self.rx.len()
    }

    /// Whether no message waits in the channel.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The messages waiting in the channel, in order, without taking them: each message's
    /// topic and bytes (for tests and diagnostics).
    pub fn peek(&self) -> Vec<(String, Bytes)> {
        let mut stash = self.stash();
        while let Ok(message) = self.rx.try_recv() {
            stash.push_back(message);
        }
        stash.iter().cloned().collect()
    }

    fn stash(&self) -> std::sync::MutexGuard<'_, VecDeque<Message>> {
        self.stash.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Subscriber for ChannelSubscriber {
    fn next_message(&mut self, wait: Option<Duration>) -> Result<Option<Bytes>> {
        if let Some((_, message)) = self.stash().pop_front() {
            return Ok(Some(message));
        }
        let received = match wait {
            None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(wait) => self.rx.recv_timeout(wait),
        };
        match received {
            Ok((_, message)) => Ok(Some(message)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(Error::StreamEnded {
                stream: self.source(),
                message: "every publisher was dropped or closed before the end of the stream"
                    .to_string(),
            }),
        }
    }

    fn source(&self) -> String {
        "in-process channel".to_string()
    }
}
