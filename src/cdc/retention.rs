//! Retention of the change log (`--changes-retention`): changes older than the retention are
//! removed, but never one that a registered consumer (the search indexer, the Subscriptions,
//! the sink) has not processed yet (the Subscriptions' slowest; the same checkpoint watches
//! feed the lag metrics), and never the last one (the writer resumes from it). The trims are
//! made by the writer, in its group transactions (`store::commit::Bookkeeping`). Type and
//! system `_history` read the change log, so they too list only what is kept.
//!
//! Live stream consumers (SSE, WebSocket, pull) keep no checkpoint here: one that asks for an
//! offset already removed is answered 410 Gone.

use crate::fhir::datetime;
use crate::store::Store;
use crate::store::commit::{Booked, Bookkeeping};
use std::time::Duration;
use tokio::sync::watch;

/// The most changes one trim removes (one writer transaction).
const TRIM: usize = 10_000;

/// The highest seq every consumer has processed.
fn floor(store: &Store, consumers: &[(String, watch::Receiver<u64>)]) -> u64 {
    consumers
        .iter()
        .map(|(_, checkpoint)| *checkpoint.borrow())
        .fold(store.committed_seq(), u64::min)
}

/// Trims the log every `retention` (at most every minute, at least every second), forever.
pub async fn run(
    store: Store,
    retention: Duration,
    consumers: Vec<(String, watch::Receiver<u64>)>,
) {
    let every = retention.clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        tokio::time::sleep(every).await;
        let older_than = datetime::now() - retention.as_micros().min(i64::MAX as u128) as i64;
        let below = floor(&store, &consumers) + 1;
        loop {
            let books = vec![Bookkeeping::Trim {
                below,
                older_than,
                max: TRIM,
            }];
            match store.keep_books(books).await {
                Ok(Booked { trimmed, .. }) => {
                    if trimmed > 0 {
                        tracing::info!(trimmed, below, "changes removed by retention");
                    }
                    if trimmed < TRIM {
                        break;
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "trimming the change log failed");
                    break;
                }
            }
        }
    }
}
