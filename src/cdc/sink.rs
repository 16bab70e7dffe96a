//! The NATS JetStream sink: every change, in seq order, published to a JetStream stream.
//!
//! Each change is its CloudEvent (JSON) on the subject `{stream}.{Type}.{action}`, with the
//! seq as `Nats-Msg-Id` (JetStream de-duplicates a repeated one) and the previous change's seq
//! as `Nats-Expected-Last-Msg-Id`: the stream refuses a message unless the one before it is
//! there, so the stream always holds a gap-free run of the log in seq order, whatever fails
//! mid-window. Publishes go out in windows of [`WINDOW`] and their acks are awaited per
//! window (JetStream allows 5,000 unacknowledged publishes and then waits forever).
//!
//! After any failure (broker down, a refused message, fhirlake restarted) the sink connects
//! again and asks the stream for its last message: it resumes after that message's seq (or
//! after its own checkpoint when the stream holds less, e.g. was recreated). Its checkpoint
//! (`sink/nats/{stream}` in the store, see `cdc::checkpoint`) follows the acknowledged
//! windows, for retention and the lag metric. The stream must be fhirlake's alone.
//!
//! An erasure's `erased` event is published like any change; then the message of the change
//! it erased is deleted from the stream (JetStream deletes by stream sequence: the run the
//! stream holds is gap-free, so the sequence is the change's seq plus the offset the last ack
//! showed, checked against the message's `Nats-Msg-Id` before it is deleted).

use super::checkpoint::{Checkpoint, EVERY};
use super::event::{Content, action, to_json};
use crate::store::Store;
use crate::store::log::LogError;
use async_nats::jetstream::{self, message::PublishMessage};
use std::time::Duration;
use tokio::sync::watch;

/// Publishes in flight at most.
pub const WINDOW: usize = 1000;
/// The longest wait between two attempts to reach the broker.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Where the sink publishes.
#[derive(Debug, Clone)]
pub struct Nats {
    /// `nats://host:port`
    pub url: String,
    /// The JetStream stream.
    pub stream: String,
    /// The events' `source`.
    pub source: String,
}

impl Nats {
    /// The name of its checkpoint and metric.
    pub fn consumer_name(&self) -> String {
        format!("sink/nats/{}", self.stream)
    }

    /// Starts publishing on `runtime`; the returned receiver follows the stored checkpoint.
    pub fn start(
        self,
        runtime: &tokio::runtime::Handle,
        store: Store,
    ) -> anyhow::Result<watch::Receiver<u64>> {
        let mut checkpoint = Checkpoint::load(&store, self.consumer_name())?;
        let receiver = checkpoint.watch();
        runtime.spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                let started = checkpoint.position();
                match self.session(&store, &mut checkpoint).await {
                    Ok(()) => return, // the store is closed
                    Err(error) => {
                        tracing::warn!(url = %self.url, stream = %self.stream, %error, "the NATS sink lost its broker; reconnecting");
                    }
                }
                backoff = if checkpoint.position() > started {
                    Duration::from_millis(100)
                } else {
                    (backoff * 2).min(MAX_BACKOFF)
                };
                tokio::time::sleep(backoff).await;
            }
        });
        Ok(receiver)
    }

    /// One connection: resumes after what the stream holds, then publishes until a failure
    /// (an error) or until the store closes (`Ok`).
    async fn session(&self, store: &Store, checkpoint: &mut Checkpoint) -> anyhow::Result<()> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(Duration::from_secs(5)))
            .max_reconnects(Some(0))
            .connect(self.url.as_str())
            .await?;
        let context = jetstream::new(client);
        let mut stream = context
            .get_or_create_stream(jetstream::stream::Config {
                name: self.stream.clone(),
                subjects: vec![format!("{}.>", self.stream)],
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await?;
        let last = stream.info().await?.state.last_sequence;
        let published = if last == 0 {
            None
        } else {
            let message = stream.get_raw_message(last).await?;
            message
                .headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .and_then(|id| id.as_str().parse::<u64>().ok())
        };
        // The message the next one must follow; none when the stream holds less than the
        // checkpoint (it was purged or recreated).
        let mut expected = published.filter(|&seq| seq >= checkpoint.position());
        if let Some(seq) = expected {
            checkpoint.moved(seq);
            checkpoint.save(store).await?;
        }
        // Stream sequence minus change seq: the same along the gap-free run the stream holds.
        let mut offset = published.map(|seq| last as i128 - seq as i128);
        let mut commits = store.watch_commits();
        loop {
            let page = match store.log_after(checkpoint.position(), WINDOW, &[]) {
                Ok(page) => page,
                Err(LogError::Trimmed { first }) => {
                    tracing::error!(first, stream = %self.stream, "changes the sink had not published were trimmed");
                    checkpoint.moved(first - 1);
                    expected = None;
                    continue;
                }
                Err(LogError::Store(error)) => return Err(error.into()),
            };
            if page.entries.is_empty() {
                checkpoint.save_due(store).await?;
                let unsaved = checkpoint.unsaved();
                tokio::select! {
                    changed = commits.changed() => if changed.is_err() { return Ok(()) },
                    _ = tokio::time::sleep(EVERY), if unsaved => {}
                }
                continue;
            }
            let mut acks = Vec::with_capacity(page.entries.len());
            let mut erased = Vec::new();
            for entry in &page.entries {
                let seq = entry.change.seq;
                let subject = format!(
                    "{}.{}.{}",
                    self.stream,
                    entry.change.resource_type,
                    action(entry)
                );
                let mut message = PublishMessage::build()
                    .payload(to_json(entry, &self.source, Content::Full).into())
                    .message_id(seq.to_string());
                if let Some(previous) = expected {
                    message = message.expected_last_message_id(previous.to_string());
                }
                acks.push((seq, context.send_publish(subject, message).await?));
                expected = Some(seq);
                if let Some(of) = entry.change.erased.filter(|&of| of != seq && of != 0) {
                    erased.push(of);
                }
            }
            for (seq, ack) in acks {
                let ack = ack.await?;
                offset = Some(ack.sequence as i128 - seq as i128);
            }
            for of in erased {
                remove(&stream, offset, of).await?;
            }
            checkpoint.moved(page.next);
            checkpoint.save_due(store).await?;
        }
    }
}

/// Deletes the message of change `seq` (an erased version's) from the stream, found at the
/// stream sequence `seq + offset` and checked by its `Nats-Msg-Id`. A message the stream no
/// longer holds (or never held: it was published before the stream was recreated) is left as
/// it is, with a warning.
async fn remove(
    stream: &jetstream::stream::Stream,
    offset: Option<i128>,
    seq: u64,
) -> anyhow::Result<()> {
    let at = offset.and_then(|offset| u64::try_from(seq as i128 + offset).ok());
    let held = match at {
        Some(at) if at > 0 => stream.get_raw_message(at).await.ok().filter(|message| {
            message
                .headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .is_some_and(|id| id.as_str() == seq.to_string())
        }),
        _ => None,
    };
    match (held, at) {
        (Some(_), Some(at)) => {
            stream.delete_message(at).await?;
            tracing::info!(target: "audit", event = "erasure", change = seq, stream_sequence = at, "the NATS sink deleted an erased version's message");
        }
        _ => {
            tracing::warn!(
                change = seq,
                "the NATS stream does not hold the message of an erased version; nothing to delete there"
            );
        }
    }
    Ok(())
}
