//! Send a dataflow's records to another program's stream.

use proxy_core::stream::StreamProducer;
use proxy_core::Codec;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::StreamVec;
use timely::progress::Timestamp;
use timely::ExchangeData;

use crate::error::Error;

/// Send a stream's records to a topic of a [`StreamProducer`].
pub trait StreamSink<D, C> {
    /// Sends every record to `topic` through `producer` (each object into the topic's
    /// store, its event to the producer's publisher), and closes the topic (an end-of-stream
    /// event) and the producer once the stream is complete.
    ///
    /// The records are gathered on worker 0, which sends them: give the producer to worker 0
    /// (`None` elsewhere), so that the topic gets one end of stream, after every record.
    /// Records go out as they arrive, in the order worker 0 receives them (batched as the
    /// producer's batch size says). A store or publisher error fails the worker with an
    /// [`Error::Stream`].
    ///
    /// # Examples
    /// ```
    /// use dataflow_plugin::StreamSink;
    /// use proxy_core::stream::{channel, StreamConsumer, StreamProducer};
    /// use proxy_core::{LocalConnector, Store};
    /// use timely::dataflow::operators::ToStream;
    ///
    /// let store = Store::new("stream-sink-doc", LocalConnector::new());
    /// let (publisher, subscriber) = channel();
    /// let producer = StreamProducer::<u64>::builder(publisher).with_default_store(&store).build();
    /// timely::example(move |scope| {
    ///     (0..5u64).to_stream(scope).stream_sink(Some(producer), "numbers");
    /// });
    /// let mut consumer = StreamConsumer::<u64>::new(subscriber).unwrap();
    /// let numbers: Vec<u64> = consumer.iter_objects().map(Result::unwrap).collect();
    /// assert_eq!(numbers, vec![0, 1, 2, 3, 4]); // then the end of the stream
    /// ```
    fn stream_sink(self, producer: Option<StreamProducer<D, C>>, topic: &str);
}

impl<T, D, C> StreamSink<D, C> for StreamVec<'_, T, D>
where
    T: Timestamp,
    D: ExchangeData,
    C: Codec<D>,
{
    fn stream_sink(self, producer: Option<StreamProducer<D, C>>, topic: &str) {
        let topic = topic.to_string();
        let mut producer = producer;
        let fail = move |topic: &str, source: proxy_core::Error| -> ! {
            let error = Error::Stream {
                operator: format!("stream_sink to topic `{topic}`"),
                source,
            };
            panic!("{error}")
        };
        self.sink(
            Exchange::new(|_: &D| 0),
            "StreamSink",
            move |(input, frontier)| {
                input.for_each(|_, data| {
                    let Some(producer) = producer.as_mut() else {
                        data.clear();
                        return;
                    };
                    for record in data.drain(..) {
                        if let Err(e) = producer.send(&topic, record) {
                            fail(&topic, e);
                        }
                    }
                });
                if frontier.is_empty() {
                    if let Some(mut producer) = producer.take() {
                        if let Err(e) = producer
                            .close_topics([topic.as_str()])
                            .and_then(|()| producer.close())
                        {
                            fail(&topic, e);
                        }
                    }
                }
            },
        );
    }
}
