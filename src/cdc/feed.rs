//! Stream fan-out: one reader of the change log feeds every live stream consumer (SSE,
//! WebSocket), each through a bounded buffer.
//!
//! A consumer ([`Feed`]) starts at an offset. It first replays the log from the store on its
//! own, page by page, and joins the [`Hub`] only once it has read everything committed, so a
//! long replay holds no buffer. The hub reads each committed change once, filters it per
//! consumer and offers it to the consumer's buffer without waiting (`try_send`): writers are
//! never blocked, by the hub or by any consumer. A consumer whose buffer is full is dropped
//! from the hub and told to reconnect from its offset ([`Next::Overrun`]), which the store
//! still holds: no event is lost. Invariant: a feed yields each change that passes its filter
//! exactly once, in seq order, with no gap.
//!
//! A feed joins the hub under the hub's lock, and only if the hub has offered nothing the feed
//! has not read; otherwise it reads on from the store. While no feed is joined the hub reads
//! nothing: the first feed to join sets where it goes on, after what that feed has read. At
//! SIGTERM the server closes the hub ([`Hub::close`]) before its graceful shutdown, which the
//! streams would otherwise hold for the whole timeout.

use super::event::Event;
use super::filter::{Batch, Filter};
use crate::fhir::FhirError;
use crate::search::registry::Registry;
use crate::store::Store;
use crate::store::log::LogError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};

/// The most changes read from the store at once.
const PAGE: usize = 512;

/// The hub: follows the store's commits and offers each change to the live consumers.
pub struct Hub {
    store: Store,
    registry: &'static Registry,
    /// The events a consumer's buffer holds before the consumer is overrun.
    capacity: usize,
    /// The `source` of the events.
    source: String,
    state: Mutex<State>,
    closed: watch::Sender<bool>,
    /// Told when a feed joins.
    joined: Notify,
}

struct State {
    /// The seq of the next change the hub offers.
    next: u64,
    consumers: Vec<Consumer>,
    closed: bool,
}

struct Consumer {
    filter: Arc<Filter>,
    buffer: mpsc::Sender<Arc<Event>>,
    overrun: Arc<AtomicBool>,
}

impl Hub {
    /// A hub offering the changes after the store's current head, with `capacity` events of
    /// buffer per consumer, as events of `source`; [`Hub::run`] drives it.
    pub fn new(
        store: Store,
        registry: &'static Registry,
        capacity: usize,
        source: String,
    ) -> Arc<Hub> {
        let next = store.committed_seq() + 1;
        Arc::new(Hub {
            store,
            registry,
            capacity: capacity.max(1),
            source,
            state: Mutex::new(State {
                next,
                consumers: Vec::new(),
                closed: false,
            }),
            closed: watch::Sender::new(false),
            joined: Notify::new(),
        })
    }

    /// Offers every change committed from now on to the consumers, until [`Hub::close`].
    pub async fn run(self: Arc<Hub>) {
        let mut commits = self.store.watch_commits();
        let mut closed = self.closed.subscribe();
        loop {
            let (next, idle) = {
                let state = self.state.lock().expect("hub");
                (state.next, state.consumers.is_empty())
            };
            if idle {
                tokio::select! {
                    _ = self.joined.notified() => {}
                    _ = closed.wait_for(|closed| *closed) => return,
                }
                continue;
            }
            if self.store.committed_seq() < next {
                tokio::select! {
                    changed = commits.changed() => if changed.is_err() { return },
                    _ = closed.wait_for(|closed| *closed) => return,
                }
                continue;
            }
            let store = self.store.clone();
            let page = tokio::task::spawn_blocking(move || store.log_after(next - 1, PAGE, &[]))
                .await
                .expect("the log reader does not panic");
            match page {
                Ok(page) => {
                    let events = page.entries.into_iter().map(Arc::new).collect();
                    self.offer(Batch::new(events), page.next + 1);
                }
                // Retention removed changes no live consumer was promised (they replay on
                // their own, and each says so when it reads a trimmed offset).
                Err(LogError::Trimmed { first }) => self.state.lock().expect("hub").next = first,
                Err(LogError::Store(error)) => {
                    tracing::error!(%error, "the change stream could not read the log; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Offers `batch` to every consumer; `next` is the seq after it.
    fn offer(&self, batch: Batch, next: u64) {
        let mut state = self.state.lock().expect("hub");
        state.consumers.retain(|consumer| {
            let selected = match consumer.filter.select(&batch, &self.store, self.registry) {
                Ok(selected) => selected,
                Err(error) => {
                    tracing::error!(%error, "a stream consumer's filter failed; it must reconnect");
                    consumer.overrun.store(true, Ordering::SeqCst);
                    return false;
                }
            };
            for event in selected {
                match consumer.buffer.try_send(event) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        consumer.overrun.store(true, Ordering::SeqCst);
                        return false;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            true
        });
        state.next = next;
    }

    /// Ends every feed (at shutdown): they yield [`Next::Closed`].
    pub fn close(&self) {
        let mut state = self.state.lock().expect("hub");
        state.closed = true;
        state.consumers.clear();
        self.closed.send_replace(true);
    }

    /// A feed of the changes after `after` that pass `filter`.
    pub fn feed(self: &Arc<Hub>, filter: Filter, after: u64) -> Feed {
        Feed {
            hub: self.clone(),
            filter: Arc::new(filter),
            position: after,
            live: None,
        }
    }

    /// The `source` of the events.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// What a feed yields next.
pub enum Next {
    /// Changes that pass the filter, oldest first.
    Events(Vec<Arc<Event>>),
    /// The consumer fell behind by more than its buffer: it must reconnect from `after`, the
    /// seq of the last change it was given (or its starting offset).
    Overrun { after: u64 },
    /// The server is shutting down.
    Closed,
}

/// One consumer's way through the log. See the module's documentation.
pub struct Feed {
    hub: Arc<Hub>,
    filter: Arc<Filter>,
    /// Every change up to it that passes the filter has been yielded.
    position: u64,
    live: Option<(mpsc::Receiver<Arc<Event>>, Arc<AtomicBool>)>,
}

impl Feed {
    /// The next changes; waits for commits when there are none. Fails with 410 when
    /// retention removed changes the feed has not read, or 500.
    pub async fn next(&mut self) -> Result<Next, FhirError> {
        loop {
            if *self.hub.closed.borrow() {
                return Ok(Next::Closed);
            }
            if let Some((buffer, overrun)) = &mut self.live {
                let Some(first) = buffer.recv().await else {
                    return Ok(if overrun.load(Ordering::SeqCst) {
                        Next::Overrun {
                            after: self.position,
                        }
                    } else {
                        Next::Closed
                    });
                };
                let mut events = vec![first];
                while events.len() < PAGE {
                    match buffer.try_recv() {
                        Ok(event) => events.push(event),
                        Err(_) => break,
                    }
                }
                // The hub may offer changes this feed replayed before it joined.
                events.retain(|event| event.change.seq > self.position);
                if let Some(last) = events.last() {
                    self.position = last.change.seq;
                    return Ok(Next::Events(events));
                }
                continue;
            }
            let hub = &self.hub;
            let page = hub
                .store
                .log_after(self.position, PAGE, self.filter.types())?;
            if page.next > self.position {
                let batch = Batch::new(page.entries.into_iter().map(Arc::new).collect());
                let events = self.filter.select(&batch, &hub.store, hub.registry)?;
                self.position = page.next;
                if !events.is_empty() {
                    return Ok(Next::Events(events));
                }
                // A long run of changes the filter leaves out must not hold the thread.
                tokio::task::yield_now().await;
                continue;
            }
            // Everything committed is read: join the hub, unless it has offered changes this
            // feed has not read yet (committed since the page was read).
            let mut state = hub.state.lock().expect("hub");
            if state.closed {
                return Ok(Next::Closed);
            }
            if state.next > self.position + 1 {
                continue;
            }
            if state.consumers.is_empty() {
                // The hub, idle, offers what this feed has not read.
                state.next = self.position + 1;
                hub.joined.notify_one();
            }
            let (sender, receiver) = mpsc::channel(hub.capacity);
            let overrun = Arc::new(AtomicBool::new(false));
            state.consumers.push(Consumer {
                filter: self.filter.clone(),
                buffer: sender,
                overrun: overrun.clone(),
            });
            self.live = Some((receiver, overrun));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::commit::{Action, Write};
    use serde_json::json;

    async fn put(store: &Store, resource_type: &str, id: &str, code: &str) {
        let resource = json!({"resourceType": resource_type, "id": id, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]}});
        let write = Write {
            resource_type: resource_type.into(),
            id: id.into(),
            action: Action::Update(resource),
            if_match: None,
        };
        store.commit(vec![write]).await.unwrap();
    }

    async fn seqs(feed: &mut Feed) -> Vec<u64> {
        match tokio::time::timeout(Duration::from_secs(10), feed.next()).await {
            Ok(Ok(Next::Events(events))) => events.iter().map(|e| e.change.seq).collect(),
            Ok(Ok(Next::Overrun { after })) => panic!("overrun after {after}"),
            Ok(Ok(Next::Closed)) => panic!("closed"),
            Ok(Err(error)) => panic!("{error}"),
            Err(_) => panic!("no events"),
        }
    }

    /// The hub reads nothing while no feed is joined; feeds that join after such a spell, at
    /// the start or after the last feed left, get every change once, without a gap.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_feed_joining_an_idle_hub_misses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let hub = Hub::new(store.clone(), Registry::r4_shared(), 64, "/fhir".into());
        tokio::spawn(hub.clone().run());
        for n in 1..=3 {
            put(&store, "Patient", &format!("p{n}"), "x").await;
        }
        let mut first = hub.feed(Filter::default(), 0);
        assert_eq!(seqs(&mut first).await, vec![1, 2, 3]);
        // Joins (nothing more is committed), then follows live.
        let waiting = tokio::time::timeout(Duration::from_millis(100), first.next()).await;
        assert!(waiting.is_err());
        put(&store, "Patient", "p4", "x").await;
        assert_eq!(seqs(&mut first).await, vec![4]);
        drop(first);
        // Unheard: the hub drops the feed that left at its next offer, then idles.
        for n in 5..=7 {
            put(&store, "Patient", &format!("p{n}"), "x").await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut second = hub.feed(Filter::default(), 5);
        let mut seen = seqs(&mut second).await;
        let waiting = tokio::time::timeout(Duration::from_millis(100), second.next()).await;
        assert!(waiting.is_err());
        for n in 8..=9 {
            put(&store, "Patient", &format!("p{n}"), "x").await;
        }
        while seen.last() != Some(&9) {
            seen.extend(seqs(&mut second).await);
        }
        assert_eq!(seen, vec![6, 7, 8, 9]);
        hub.close();
        store.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn feeds_replay_then_follow_live_filtered_and_overrun_slow_consumers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        put(&store, "Patient", "p1", "x").await;
        put(&store, "Observation", "o1", "1234-5").await;
        let hub = Hub::new(store.clone(), Registry::r4_shared(), 2, "/fhir".into());
        tokio::spawn(hub.clone().run());

        // Replay from 0, then live.
        let mut all = hub.feed(Filter::default(), 0);
        assert_eq!(seqs(&mut all).await, vec![1, 2]);
        let registry = Registry::r4_shared();
        let criteria = Filter::parse(registry, &[], Some("Observation?code=1234-5")).unwrap();
        let mut matching = hub.feed(criteria, 0);
        assert_eq!(seqs(&mut matching).await, vec![2]);
        let mut slow = hub.feed(Filter::default(), 2);
        // Joins the hub: nothing more is committed yet.
        let waiting = tokio::time::timeout(Duration::from_millis(100), slow.next()).await;
        assert!(waiting.is_err());
        put(&store, "Observation", "o2", "9999-9").await;
        put(&store, "Observation", "o3", "1234-5").await;
        let mut seen = Vec::new();
        while seen.len() < 2 {
            seen.extend(seqs(&mut all).await);
        }
        assert_eq!(seen, vec![3, 4]);
        assert_eq!(seqs(&mut matching).await, vec![4]);

        // `slow` joined with a buffer of 2 and has not read since: the next change overruns
        // it, and it is told to resume after the last change it was given.
        let mut slow = hub.feed(Filter::default(), 4);
        let waiting = tokio::time::timeout(Duration::from_millis(100), slow.next()).await;
        assert!(waiting.is_err());
        for n in 5..8 {
            put(&store, "Patient", &format!("p{n}"), "x").await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut given = Vec::new();
        let resume = loop {
            match slow.next().await.unwrap() {
                Next::Events(events) => given.extend(events.iter().map(|e| e.change.seq)),
                Next::Overrun { after } => {
                    assert_eq!(after, *given.last().unwrap_or(&4));
                    break after;
                }
                Next::Closed => panic!("closed"),
            }
        };
        assert!(given.len() <= 2, "{given:?}");
        // Resuming from there replays the rest from the store.
        let mut resumed = hub.feed(Filter::default(), resume);
        let mut rest = Vec::new();
        while rest.last() != Some(&7) {
            rest.extend(seqs(&mut resumed).await);
        }
        given.extend(rest);
        assert_eq!(given, vec![5, 6, 7]);

        // Closing ends every feed at once, whatever its buffer holds.
        hub.close();
        assert!(matches!(all.next().await.unwrap(), Next::Closed));
        assert!(matches!(resumed.next().await.unwrap(), Next::Closed));
        store.close();
    }
}
