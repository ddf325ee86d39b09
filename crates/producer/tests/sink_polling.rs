//! Who serves delivery reports: the sink's polling thread, or a sending thread that took them
//! over with `Sink::poll_inline` (the file path at full speed), and the thread again once the
//! guard is dropped. On librdkafka's mock cluster.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::config;
use producer::sink::{Sink, Tracker};
use testkit::mock::MockKafka;

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

#[test]
fn inline_polling_takes_delivery_reports_over_until_the_guard_drops() {
    let mock = MockKafka::new(1).unwrap();
    mock.create_topic("logs", 3).unwrap();
    let sink = Sink::new(&config(mock.bootstrap_servers(), "logs")).unwrap();
    // Warm up: the first delivery needs metadata and a producer id.
    let first = send(&sink, 10);
    assert!(first.wait_until(Instant::now() + Duration::from_secs(30)));

    let inline = sink.poll_inline();
    // The thread finishes the poll it is in (20 ms at most).
    std::thread::sleep(Duration::from_millis(200));
    let tracker = send(&sink, 100);
    // The mock cluster acknowledges within milliseconds (the warm-up above took as long as it
    // needed), but nobody polls: the reports wait. The old ThreadedProducer settled them here.
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
