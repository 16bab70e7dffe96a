//! FHIR R4 Subscriptions with a `rest-hook` channel: every change that matches a
//! Subscription's `criteria` is POSTed to its `channel.endpoint`, in seq order, at least once.
//!
//! - The manager follows the `Subscription` changes of the log from its checkpoint
//!   (`subscriptions`). A Subscription that is `requested`, `active` or `error` and can be
//!   delivered gets a worker, starting after the change that created (or re-enabled) it; the
//!   manager sets a `requested` one `active`; the worker's checkpoint and the manager's are
//!   stored in one transaction. One that cannot (criteria that do not plan, a channel other
//!   than rest-hook, ...) is set to `error` with the reason in `error`. One that is `off` or
//!   deleted loses its worker and its checkpoint.
//! - A worker reads the log from its checkpoint (`subscription/{id}`), keeps the changes its
//!   criteria match (on each change's own version), and POSTs each: the body is empty, or the
//!   resource when `channel.payload` is set (nothing for a delete); the headers are those of
//!   `channel.header` and the CloudEvents HTTP binding's (`ce-id` = seq, `ce-type`,
//!   `ce-subject`, ...), so a receiver can de-duplicate by `ce-id`. A failed POST (no 2xx) is
//!   retried after `--subscription-retry`, doubling up to `--subscription-retry-max`, forever:
//!   after [`ERROR_AFTER`] failures in a row the Subscription is set to `error` with the last
//!   reason, and back to `active` once a notification gets through. The checkpoint is stored
//!   after each notification (`cdc::checkpoint`), so after a restart delivery resumes after the
//!   last notification that got through.
//!
//! Endpoints are guarded ([`endpoints`]): a Subscription whose endpoint fhirlake may not POST
//! to (a loopback, private or link-local address, unless `--subscription-endpoints` lists
//! it) is refused as it is written (422, [`check_write`]; an `off` one is not checked), and a
//! notification that would go to such an address at delivery (the name now resolves
//! elsewhere, the list changed) fails like any other, with the reason in `error`. Writing a
//! Subscription also needs unconfined read on its criteria's type: it delivers every version
//! they match, whoever may read it (`Access::check_write`).
//!
//! The manager and the workers write status changes as new versions of the Subscription,
//! with `If-Match` on the version they judged, so a client's concurrent update wins.
//!
//! Not done: `end` (expiry), the websocket, email, sms and message channels, and the R4B/R5
//! topic-based backport (SubscriptionTopic, notification Bundles): it needs its own resources,
//! status endpoint and handshake, more than this machinery's filters and positions.

use super::checkpoint::{Checkpoint, EVERY};
use super::endpoints::{self, Clients, Prefix};
use super::event::{Event, has_data, http_headers};
use super::filter::{Batch, Filter};
use crate::fhir::{FhirError, IssueCode};
use crate::search::registry::Registry;
use crate::store::Store;
use crate::store::commit::{Action, Bookkeeping, Write};
use crate::store::log::LogError;
use crate::store::tables::Op;
use reqwest::Url;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The resource type.
const SUBSCRIPTION: &str = "Subscription";
/// The manager's checkpoint.
const MANAGER: &str = "subscriptions";
/// Failures in a row after which a Subscription's status is `error`.
pub const ERROR_AFTER: u32 = 3;
/// How long one notification may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The most changes read at once.
const PAGE: usize = 256;

/// How failed notifications are retried.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub first: Duration,
    pub max: Duration,
}

impl Retry {
    /// The wait after the `failures`th failure in a row: `first`, doubling, at most `max`,
    /// and never under 10 ms (a zero setting must not retry in a hot loop).
    fn wait(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(30));
        let wait = self.first.saturating_mul(factor).min(self.max);
        wait.max(Duration::from_millis(10))
    }
}

/// What a worker needs of a Subscription to deliver it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Channel {
    filter: Filter,
    /// An http(s) URL.
    endpoint: Url,
    headers: Vec<(String, String)>,
    /// Whether the body is the resource.
    payload: bool,
}

/// A Subscription as stored: `None` when it is off, `Err` when it cannot be delivered.
fn channel(registry: &Registry, resource: &Value) -> Result<Option<Channel>, String> {
    let text = |value: &Value| value.as_str().map(str::to_string);
    match resource["status"].as_str() {
        Some("off") => return Ok(None),
        Some("requested" | "active" | "error") => {}
        other => return Err(format!("status {other:?} is not a Subscription status")),
    }
    let criteria = text(&resource["criteria"]).ok_or("the Subscription has no criteria")?;
    let filter = Filter::parse(registry, &[], Some(&criteria)).map_err(|e| e.diagnostics)?;
    let channel = &resource["channel"];
    match channel["type"].as_str() {
        Some("rest-hook") => {}
        other => {
            return Err(format!(
                "channel type {} is not supported: fhirlake delivers rest-hook channels",
                other.unwrap_or("(none)")
            ));
        }
    }
    let endpoint = text(&channel["endpoint"]).ok_or("a rest-hook channel needs an endpoint")?;
    let endpoint = Url::parse(&endpoint)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https"))
        .ok_or_else(|| format!("the endpoint {endpoint} is not an http(s) URL"))?;
    let payload = match channel["payload"].as_str() {
        None => false,
        Some("application/fhir+json" | "application/json" | "application/json+fhir") => true,
        Some(other) => {
            return Err(format!(
                "payload {other} is not supported: use application/fhir+json"
            ));
        }
    };
    let mut headers = Vec::new();
    for header in channel["header"].as_array().into_iter().flatten() {
        let line = header.as_str().unwrap_or_default();
        let (name, value) = line
            .split_once(':')
            .filter(|(name, _)| {
                reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()).is_ok()
            })
            .ok_or_else(|| format!("the header '{line}' is not 'Name: value'"))?;
        if reqwest::header::HeaderValue::from_str(value.trim()).is_err() {
            return Err(format!("the header '{line}' has a value HTTP cannot carry"));
        }
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    Ok(Some(Channel {
        filter,
        endpoint,
        headers,
        payload,
    }))
}

/// Refuses (422) the write of a rest-hook Subscription whose endpoint fhirlake may not POST
/// to ([`endpoints::check`], with the `allowed` prefixes), unless it is `off`: an off one
/// delivers nothing, and a client must be able to stop one whose endpoint became refused.
/// The rest of the channel is judged as the Subscription is delivered: one that cannot be is
/// set to `error`.
pub async fn check_write(allowed: &[Prefix], write: &Write) -> Result<(), FhirError> {
    let (SUBSCRIPTION, Action::Create(resource) | Action::Update(resource)) =
        (write.resource_type.as_str(), &write.action)
    else {
        return Ok(());
    };
    let channel = &resource["channel"];
    let endpoint = channel["endpoint"]
        .as_str()
        .and_then(|e| Url::parse(e).ok());
    match endpoint {
        Some(endpoint) if channel["type"] == "rest-hook" && resource["status"] != "off" => {
            endpoints::check(allowed, &endpoint).await.map_err(|why| {
                FhirError::new(422, IssueCode::BusinessRule, why)
                    .at("Subscription.channel.endpoint")
            })
        }
        _ => Ok(()),
    }
}

/// What the manager and the workers share.
struct Shared {
    store: Store,
    registry: &'static Registry,
    retry: Retry,
    source: String,
    clients: Clients,
}

/// Starts the manager on `runtime`; the returned receiver follows the lowest checkpoint of
/// the manager and every worker (the Subscriptions' lag, and the floor of retention).
/// Endpoints under the `allowed` prefixes may have any address; others public ones only.
pub fn start(
    runtime: &tokio::runtime::Handle,
    store: Store,
    registry: &'static Registry,
    retry: Retry,
    source: String,
    allowed: Vec<Prefix>,
) -> anyhow::Result<watch::Receiver<u64>> {
    let checkpoints = store.checkpoints()?;
    let checkpoint = Checkpoint::load(&store, MANAGER.into())?;
    let (floor, receiver) = watch::channel(checkpoint.position());
    let shared = Arc::new(Shared {
        store,
        registry,
        retry,
        source,
        clients: Clients::new(allowed, TIMEOUT)?,
    });
    let mut manager = Manager {
        shared,
        workers: HashMap::new(),
        checkpoint,
        floor,
    };
    // The Subscriptions being delivered at the last stop resume from their checkpoints.
    for (id, version) in manager.shared.store.current_of_type(SUBSCRIPTION)? {
        let (Some(checkpoint), Some(version)) = (checkpoints.get(&worker_name(&id)), version)
        else {
            continue;
        };
        let resource: Value = serde_json::from_slice(&version.body).unwrap_or_default();
        if let Ok(Some(channel)) = channel(registry, &resource) {
            let failing = resource["status"] == "error";
            manager.spawn(id, channel, *checkpoint, failing, runtime);
        }
    }
    runtime.spawn(manager.run());
    Ok(receiver)
}

fn worker_name(id: &str) -> String {
    format!("subscription/{id}")
}

struct Worker {
    channel: watch::Sender<Option<Channel>>,
    checkpoint: watch::Receiver<u64>,
}

struct Manager {
    shared: Arc<Shared>,
    workers: HashMap<String, Worker>,
    checkpoint: Checkpoint,
    floor: watch::Sender<u64>,
}

impl Manager {
    async fn run(mut self) {
        let runtime = tokio::runtime::Handle::current();
        let mut commits = self.shared.store.watch_commits();
        loop {
            let position = self.checkpoint.position();
            let store = &self.shared.store;
            let page = match store.log_kept_after(position, PAGE, &[SUBSCRIPTION.to_string()]) {
                Ok(page) => page,
                Err(error) => {
                    tracing::error!(%error, "the Subscription manager could not read the log");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let mut books = Vec::new();
            for entry in &page.entries {
                self.handle(entry, &mut books, &runtime).await;
            }
            self.checkpoint.moved(page.next);
            // Workers started or stopped: their checkpoints and this one in one transaction.
            let saved = if books.is_empty() {
                self.checkpoint.save_due(&self.shared.store).await
            } else {
                books.push(self.checkpoint.book());
                let saved = self.shared.store.keep_books(books).await;
                saved.map(|_| self.checkpoint.stored(page.next))
            };
            if let Err(error) = saved {
                tracing::error!(%error, "the Subscription manager could not keep its checkpoint");
            }
            self.workers.retain(|_, worker| !worker.channel.is_closed());
            let floor = self
                .workers
                .values()
                .map(|worker| *worker.checkpoint.borrow())
                .fold(self.checkpoint.stored_seq(), u64::min);
            self.floor.send_replace(floor);
            if page.next == position {
                tokio::select! {
                    changed = commits.changed() => if changed.is_err() { return },
                    // The workers' checkpoints move without commits of Subscriptions.
                    _ = tokio::time::sleep(EVERY) => {}
                }
            }
        }
    }

    /// Acts on one change of a Subscription.
    async fn handle(
        &mut self,
        entry: &Event,
        books: &mut Vec<Bookkeeping>,
        runtime: &tokio::runtime::Handle,
    ) {
        let change = &entry.change;
        let id = change.id.clone();
        let resource: Value = serde_json::from_slice(&entry.version.body).unwrap_or_default();
        if change.op == Op::Erased
            && self
                .shared
                .store
                .read(SUBSCRIPTION, &id)
                .ok()
                .flatten()
                .is_some()
        {
            return; // an earlier version was erased: the current one still stands
        }
        let judged = match change.op {
            Op::Delete | Op::Erased => Ok(None),
            _ => channel(self.shared.registry, &resource),
        };
        match judged {
            Ok(Some(channel)) => {
                if let Some(worker) = self.workers.get(&id) {
                    worker.channel.send_if_modified(|current| {
                        let modified = current.as_ref() != Some(&channel);
                        *current = Some(channel);
                        modified
                    });
                } else {
                    books.push(Bookkeeping::Checkpoint {
                        name: worker_name(&id),
                        seq: Some(change.seq),
                    });
                    let failing = resource["status"] == "error";
                    self.spawn(id.clone(), channel, change.seq, failing, runtime);
                }
                if resource["status"] == "requested" {
                    set_status(&self.shared.store, &id, change.vid, "active", None).await;
                }
            }
            judged => {
                if let Some(worker) = self.workers.remove(&id) {
                    worker.channel.send_replace(None);
                }
                books.push(Bookkeeping::Checkpoint {
                    name: worker_name(&id),
                    seq: None,
                });
                if let Err(reason) = judged
                    && (resource["status"] != "error" || resource["error"] != reason.as_str())
                {
                    tracing::warn!(subscription = %id, %reason, "a Subscription cannot be delivered");
                    set_status(&self.shared.store, &id, change.vid, "error", Some(&reason)).await;
                }
            }
        }
    }

    fn spawn(
        &mut self,
        id: String,
        channel: Channel,
        checkpoint: u64,
        failing: bool,
        runtime: &tokio::runtime::Handle,
    ) {
        let (channel_sender, channel_receiver) = watch::channel(Some(channel));
        let checkpoint = Checkpoint::new(worker_name(&id), checkpoint);
        let checkpoint_receiver = checkpoint.watch();
        let worker = Delivery {
            shared: self.shared.clone(),
            id: id.clone(),
            channel: channel_receiver,
            checkpoint,
            failures: if failing { ERROR_AFTER } else { 0 },
        };
        runtime.spawn(worker.run());
        self.workers.insert(
            id,
            Worker {
                channel: channel_sender,
                checkpoint: checkpoint_receiver,
            },
        );
    }
}

/// Sets the status (and `error`) of `Subscription/{id}` if it is still at version `vid`.
async fn set_status(store: &Store, id: &str, vid: u64, status: &str, error: Option<&str>) {
    let current = match store.read(SUBSCRIPTION, id) {
        Ok(Some((state, Some(version)))) if state.vid == vid => version,
        Ok(_) => return, // changed or deleted meanwhile: the next change is judged anew
        Err(error) => {
            tracing::error!(%error, "reading a Subscription failed");
            return;
        }
    };
    let Ok(Value::Object(mut resource)) = serde_json::from_slice(&current.body) else {
        return;
    };
    resource.insert("status".into(), status.into());
    match error {
        Some(error) => resource.insert("error".into(), error.into()),
        None => resource.remove("error"),
    };
    let write = Write {
        resource_type: SUBSCRIPTION.into(),
        id: id.into(),
        action: Action::Update(Value::Object(resource)),
        if_match: Some(vid),
    };
    if let Err(refused) = store.commit(vec![write]).await
        && refused.error.status != 412
    {
        tracing::error!(error = %refused.error, subscription = %id, "setting a Subscription's status failed");
    }
}

/// One Subscription's deliveries.
struct Delivery {
    shared: Arc<Shared>,
    id: String,
    channel: watch::Receiver<Option<Channel>>,
    checkpoint: Checkpoint,
    /// Failed tries in a row.
    failures: u32,
}

impl Delivery {
    async fn run(mut self) {
        let mut commits = self.shared.store.watch_commits();
        loop {
            let Some(channel) = self.channel.borrow_and_update().clone() else {
                return;
            };
            let position = self.checkpoint.position();
            let store = &self.shared.store;
            let page = match store.log_kept_after(position, PAGE, channel.filter.types()) {
                Ok(page) => page,
                Err(LogError::Trimmed { first }) => {
                    // Retention keeps what a worker needs; only a removed checkpoint gets here.
                    tracing::error!(subscription = %self.id, first, "changes this Subscription needed were trimmed");
                    self.checkpoint.moved(first - 1);
                    continue;
                }
                Err(LogError::Store(error)) => {
                    tracing::error!(%error, "a Subscription could not read the log");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if page.next == position {
                self.save(false).await;
                let unsaved = self.checkpoint.unsaved();
                tokio::select! {
                    changed = commits.changed() => if changed.is_err() { return },
                    changed = self.channel.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep(EVERY), if unsaved => {}
                }
                continue;
            }
            let batch = Batch::new(page.entries.into_iter().map(Arc::new).collect());
            let selected = match channel.filter.select(&batch, store, self.shared.registry) {
                Ok(selected) => selected,
                Err(error) => {
                    tracing::error!(error = %error.diagnostics, subscription = %self.id, "matching failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            for event in selected {
                if !self.deliver(&event).await {
                    return; // off or deleted
                }
                self.checkpoint.moved(event.change.seq);
                self.save(true).await;
            }
            self.checkpoint.moved(page.next);
            self.save(false).await;
        }
    }

    /// Stores the checkpoint: now after a notification (`delivered`), else when due.
    async fn save(&mut self, delivered: bool) {
        let store = &self.shared.store;
        let saved = if delivered {
            self.checkpoint.save(store).await
        } else {
            self.checkpoint.save_due(store).await
        };
        if let Err(error) = saved {
            tracing::error!(%error, subscription = %self.id, "a Subscription could not keep its checkpoint");
        }
    }

    /// POSTs `event` until it gets through; false when the Subscription stopped meanwhile.
    async fn deliver(&mut self, event: &Event) -> bool {
        loop {
            let Some(channel) = self.channel.borrow_and_update().clone() else {
                return false;
            };
            match self.post(&channel, event).await {
                Ok(()) => {
                    if self.failures >= ERROR_AFTER {
                        self.set_status("active", None).await;
                    }
                    self.failures = 0;
                    return true;
                }
                Err(reason) => {
                    self.failures += 1;
                    tracing::warn!(subscription = %self.id, seq = event.change.seq, failures = self.failures, %reason, "a notification failed");
                    if self.failures == ERROR_AFTER {
                        self.set_status("error", Some(&reason)).await;
                    }
                    let wait = self.shared.retry.wait(self.failures);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        changed = self.channel.changed() => if changed.is_err() { return false },
                    }
                }
            }
        }
    }

    async fn post(&self, channel: &Channel, event: &Event) -> Result<(), String> {
        let client = self.shared.clients.client(&channel.endpoint)?;
        let mut request = client.post(channel.endpoint.clone());
        for (name, value) in http_headers(event, &self.shared.source) {
            request = request.header(name, value);
        }
        for (name, value) in &channel.headers {
            request = request.header(name, value);
        }
        if channel.payload && has_data(event.change.op) {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/fhir+json")
                .body(event.version.body.clone());
        }
        let response = request.send().await.map_err(|e| {
            // The innermost cause says why: refused by the resolver, connection refused, ...
            let causes = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source());
            let cause = causes.last().map(ToString::to_string).unwrap_or_default();
            format!("POST {} failed: {cause}", channel.endpoint)
        })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("POST {} was answered {status}", channel.endpoint))
        }
    }

    async fn set_status(&self, status: &str, error: Option<&str>) {
        let vid = match self.shared.store.read(SUBSCRIPTION, &self.id) {
            Ok(Some((state, _))) => state.vid,
            _ => return,
        };
        set_status(&self.shared.store, &self.id, vid, status, error).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn subscription(channel: Value) -> Value {
        json!({"resourceType": "Subscription", "status": "requested",
            "reason": "test", "criteria": "Observation?code=1234-5", "channel": channel})
    }

    #[test]
    fn rest_hook_channels_are_read_and_others_refused() {
        let registry = Registry::r4_shared();
        let read = channel(
            registry,
            &subscription(
                json!({"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook",
                "payload": "application/fhir+json", "header": ["Authorization: Bearer x"]}),
            ),
        )
        .unwrap()
        .unwrap();
        assert!(read.payload);
        assert_eq!(
            read.headers,
            vec![("Authorization".to_string(), "Bearer x".to_string())]
        );
        assert_eq!(read.filter.types(), ["Observation"]);
        let off = json!({"resourceType": "Subscription", "status": "off"});
        assert_eq!(channel(registry, &off), Ok(None));
        for (bad, reason) in [
            (json!({"type": "websocket"}), "not supported"),
            (json!({"type": "rest-hook"}), "endpoint"),
            (json!({"type": "rest-hook", "endpoint": "ftp://x"}), "http"),
            (
                json!({"type": "rest-hook", "endpoint": "http://x", "payload": "application/fhir+xml"}),
                "payload",
            ),
            (
                json!({"type": "rest-hook", "endpoint": "http://x", "header": ["no colon"]}),
                "header",
            ),
        ] {
            let error = channel(registry, &subscription(bad)).unwrap_err();
            assert!(error.contains(reason), "{error}");
        }
        let mut bad_criteria = subscription(json!({"type": "rest-hook", "endpoint": "http://x"}));
        bad_criteria["criteria"] = json!("Observation?nope=1");
        assert!(
            channel(registry, &bad_criteria)
                .unwrap_err()
                .contains("nope")
        );
    }

    #[test]
    fn retries_back_off_exponentially_up_to_the_maximum() {
        let retry = Retry {
            first: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let waits: Vec<u128> = (1..=6).map(|n| retry.wait(n).as_millis()).collect();
        assert_eq!(waits, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(retry.wait(u32::MAX), Duration::from_secs(1));
        let zero = Retry {
            first: Duration::ZERO,
            max: Duration::ZERO,
        };
        assert_eq!(zero.wait(1), Duration::from_millis(10));
    }
}
