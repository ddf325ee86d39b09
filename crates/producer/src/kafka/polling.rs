//! Who serves the producer's delivery reports: a polling thread of the sink, except while a
//! sending thread takes them over ([`InlinePolling`]): a file read at full speed polls between
//! its batches, so librdkafka frees each message on the thread that allocated it instead of
//! handing every allocation across threads (with mimalloc that cut the producer's CPU by a few
//! percent and kept its memory flat when the queue is large).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::producer::BaseProducer;

use super::delivery::DeliveryContext;

/// How long the polling thread waits for delivery reports at a time (rdkafka's poll serves
/// reports until then): an inline poller takes over within this time.
const POLL_STEP: Duration = Duration::from_millis(20);
/// How often the polling thread checks whether inline polling ended.
const INLINE_CHECK: Duration = Duration::from_millis(5);

/// The polling thread's state: whether to stop, and how many threads poll inline.
#[derive(Debug, Default)]
struct State {
    stop: AtomicBool,
    inline: AtomicUsize,
}

/// The thread serving delivery reports; stopped and joined when dropped.
#[derive(Debug)]
pub(crate) struct PollingThread {
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl PollingThread {
    /// Starts serving `producer`'s delivery reports.
    pub(crate) fn start(producer: Arc<BaseProducer<DeliveryContext>>) -> std::io::Result<Self> {
        let state = Arc::new(State::default());
        let thread = {
            let state = Arc::clone(&state);
            std::thread::Builder::new()
                .name("producer polling".into())
                .spawn(move || {
                    while !state.stop.load(Ordering::Relaxed) {
                        if state.inline.load(Ordering::Relaxed) > 0 {
                            std::thread::sleep(INLINE_CHECK);
                        } else {
                            producer.poll(POLL_STEP);
                        }
                    }
                })?
        };
        Ok(Self {
            state,
            thread: Some(thread),
        })
    }

    /// Stops serving reports until the guard drops (within [`POLL_STEP`]).
    pub(crate) fn inline(&self) -> InlinePolling<'_> {
        self.state.inline.fetch_add(1, Ordering::SeqCst);
        InlinePolling { polling: self }
    }
}

impl Drop for PollingThread {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// While held, the polling thread leaves delivery reports to the holder
/// ([`Sink::poll_inline`](super::Sink::poll_inline)).
#[derive(Debug)]
pub(crate) struct InlinePolling<'a> {
    polling: &'a PollingThread,
}

impl Drop for InlinePolling<'_> {
    fn drop(&mut self) {
        self.polling.state.inline.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use testkit::mock::MockKafka;

    use crate::config::ProducerConfig;
    use crate::kafka::delivery::Tracker;
    use crate::kafka::Sink;

    use super::*;

    /// Sends `n` records for a new sealed tracker.
    fn send(sink: &Sink, n: usize) -> Arc<Tracker> {
        let tracker = Tracker::new();
        for i in 0..n {
            let value = format!(r#"{{"seq":{i}}}"#);
            sink.send(b"api", value.as_bytes(), &tracker).unwrap();
        }
        tracker.seal();
        tracker
    }

    /// Who serves delivery reports: the polling thread, or a sending thread that took them
    /// over (the file path at full speed), and the thread again once the guard is dropped. On
    /// librdkafka's mock cluster.
    #[test]
    fn inline_polling_takes_delivery_reports_over_until_the_guard_drops() {
        let mock = MockKafka::new(1).unwrap();
        mock.create_topic("logs", 3).unwrap();
        let mut config = ProducerConfig::default();
        config.kafka.bootstrap_servers = mock.bootstrap_servers().to_owned();
        let sink = Sink::new(&config).unwrap();
        // Warm up: the first delivery needs metadata and a producer id.
        let first = send(&sink, 10);
        assert!(first.wait_until(Instant::now() + Duration::from_secs(30)));

        let inline = sink.poll_inline();
        // The thread finishes the poll it is in (20 ms at most).
        std::thread::sleep(Duration::from_millis(200));
        let tracker = send(&sink, 100);
        // The mock cluster acknowledges within milliseconds (the warm-up above took as long as
        // it needed), but nobody polls: the reports wait. The old ThreadedProducer settled them
        // here.
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            !tracker.is_settled(),
            "the polling thread served reports while a caller polled inline"
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        // The caller serves them.
        while !tracker.is_settled() && Instant::now() < deadline {
            sink.poll(Duration::from_millis(10));
        }
        assert!(tracker.is_settled());
        assert_eq!(tracker.counts().delivered, 100);
        drop(inline);

        // The thread takes over again.
        let after = send(&sink, 100);
        assert!(after.wait_until(Instant::now() + Duration::from_secs(30)));
        assert_eq!(after.counts().delivered, 100);
    }
}
