//! Work the loop hands off: a delivery task per batch ([`deliver`]) and a dead-letter write per
//! record that cannot go to Loki, each reporting one [`Completion`] on a channel the loop reads.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::batch::{Batch, Held};
use crate::deliver::{deliver, Completion, Shared};
use crate::dlq::DeadLetter;

/// Tasks started and not yet reported.
#[derive(Debug)]
pub(crate) struct InFlight {
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Completion>,
    rx: mpsc::UnboundedReceiver<Completion>,
    outstanding: usize,
}

impl InFlight {
    /// Nothing in flight.
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            shared,
            tx,
            rx,
            outstanding: 0,
        }
    }

    /// What the tasks share.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Tasks not yet reported.
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Starts delivering `batch`.
    pub(crate) fn deliver(&mut self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        self.outstanding += 1;
        let shared = self.shared.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let c = deliver(shared, batch).await;
            let _ = tx.send(c);
        });
    }

    /// Starts writing `letter` (which holds `bytes` of the buffer) to the dead-letter topic.
    pub(crate) fn dead_letter(&mut self, letter: DeadLetter, held: Held, bytes: usize) {
        self.outstanding += 1;
        let shared = self.shared.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let ok = shared
                .dlq
                .write(std::slice::from_ref(&letter), &shared.abandon)
                .await;
            let _ = tx.send(Completion {
                delivered: if ok { vec![held] } else { Vec::new() },
                records: 1,
                bytes,
            });
        });
    }

    /// The next completion (waits; `None` never happens while `self` holds a sender).
    pub(crate) async fn next(&mut self) -> Option<Completion> {
        let c = self.rx.recv().await;
        if c.is_some() {
            self.outstanding = self.outstanding.saturating_sub(1);
        }
        c
    }
}
