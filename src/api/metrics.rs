//! The Prometheus metrics of `GET /metrics` (OpenMetrics text, with `prometheus-client`, the
//! Prometheus project's own Rust client: typed label sets, no global registry).
//!
//! Request counts and latencies are counted as requests are answered ([`Metrics::observe`],
//! from the request log middleware); the store's size, the change-log head and each change-log
//! consumer's lag are read when the metrics are scraped, so they are never stale. A change-log
//! consumer (the indexer, the Subscriptions, the sink) is registered with a watch of its
//! checkpoint ([`Metrics::register_consumer`]); its lag is the head minus its checkpoint. The
//! jobs are counted by kind and state when scraped too ([`Metrics::register_jobs`]), and the
//! materialized views' rows ([`Metrics::register_views`]).

use super::interaction::Interaction;
use crate::jobs::views::materialized::Materializer;
use crate::store::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// The upper bounds of the latency buckets, in seconds: 250 µs to 10 s.
const LATENCY_BUCKETS: [f64; 15] = [
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    interaction: Interaction,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct InteractionLabels {
    interaction: Interaction,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ConsumerLabels {
    consumer: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ViewLabels {
    view: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct JobLabels {
    kind: &'static str,
    state: &'static str,
}

type U64Gauge = Gauge<u64, AtomicU64>;

/// Every metric fhirlake exports, all named `fhirlake_...`.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<InteractionLabels, Histogram, fn() -> Histogram>,
    store_size: U64Gauge,
    scrubs: Counter,
    scrubbed_pages: Counter,
    scrub_seconds: Counter<f64, AtomicU64>,
    head: U64Gauge,
    lag: Family<ConsumerLabels, U64Gauge>,
    /// Each consumer of the change log and its checkpoint (the last seq it has processed).
    consumers: Vec<(String, watch::Receiver<u64>)>,
    job_counts: Family<JobLabels, U64Gauge>,
    jobs: Option<std::sync::Arc<crate::jobs::Jobs>>,
    view_rows: Family<ViewLabels, U64Gauge>,
    views: Option<std::sync::Arc<Materializer>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("fhirlake");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by FHIR interaction and status code",
            requests.clone(),
        );
        let latency: Family<InteractionLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS));
        registry.register_with_unit(
            "http_request_duration",
            "Time from a request's arrival to its answer, by FHIR interaction",
            Unit::Seconds,
            latency.clone(),
        );
        let store_size = U64Gauge::default();
        registry.register_with_unit(
            "store_size",
            "Size of the redb store file",
            Unit::Bytes,
            store_size.clone(),
        );
        let scrubs = Counter::default();
        registry.register(
            "store_scrubs",
            "Scrubs of the store file's free pages after erasures (zeros written over them)",
            scrubs.clone(),
        );
        let scrubbed_pages = Counter::default();
        registry.register(
            "store_scrubbed_pages",
            "Free pages of the store file that scrubs wrote zeros over",
            scrubbed_pages.clone(),
        );
        let scrub_seconds = Counter::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "store_scrub",
            "The writer's time spent scrubbing free pages",
            Unit::Seconds,
            scrub_seconds.clone(),
        );
        let head = U64Gauge::default();
        registry.register(
            "changelog_head_seq",
            "Seq of the last durable change in the change log (0 when it is empty)",
            head.clone(),
        );
        let lag = Family::<ConsumerLabels, U64Gauge>::default();
        registry.register(
            "consumer_lag_changes",
            "Changes in the change log that a consumer has not processed yet",
            lag.clone(),
        );
        let job_counts = Family::<JobLabels, U64Gauge>::default();
        registry.register(
            "jobs",
            "Jobs (bulk exports) kept, by kind and state",
            job_counts.clone(),
        );
        let view_rows = Family::<ViewLabels, U64Gauge>::default();
        registry.register(
            "view_rows",
            "Rows of each materialized view, by the view's name",
            view_rows.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            store_size,
            scrubs,
            scrubbed_pages,
            scrub_seconds,
            head,
            lag,
            consumers: Vec::new(),
            job_counts,
            jobs: None,
            view_rows,
            views: None,
        }
    }
}

impl Metrics {
    /// Counts an answered request.
    pub fn observe(&self, interaction: Interaction, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                interaction,
                status,
            })
            .inc();
        self.latency
            .get_or_create(&InteractionLabels { interaction })
            .observe(elapsed.as_secs_f64());
    }

    /// Exports the lag of a change-log consumer (the search indexer, a sink) as
    /// `fhirlake_consumer_lag_changes{consumer="NAME"}`: the change-log head minus the
    /// consumer's checkpoint, the last seq it has processed, which `checkpoint` follows.
    pub fn register_consumer(&mut self, name: &str, checkpoint: watch::Receiver<u64>) {
        self.consumers.push((name.to_string(), checkpoint));
    }

    /// Exports how many jobs there are of each kind and state as
    /// `fhirlake_jobs{kind="export",state="running"}`.
    pub fn register_jobs(&mut self, jobs: std::sync::Arc<crate::jobs::Jobs>) {
        self.jobs = Some(jobs);
    }

    /// Exports the rows of each materialized view as `fhirlake_view_rows{view="NAME"}` (its
    /// lag is its consumer's, `views`).
    pub fn register_views(&mut self, views: std::sync::Arc<Materializer>) {
        self.views = Some(views);
    }

    /// The metrics in the OpenMetrics text format, with the store's values as of now.
    pub fn render(&self, store: &Store) -> std::io::Result<String> {
        self.store_size.set(store.file_size()?);
        // Counters only go up: each is raised to the store's own count.
        let done = store.scrubs();
        let raise =
            |counter: &Counter, total: u64| counter.inc_by(total.saturating_sub(counter.get()));
        raise(&self.scrubs, done.count.load(Ordering::Relaxed));
        raise(&self.scrubbed_pages, done.pages.load(Ordering::Relaxed));
        let seconds = done.micros.load(Ordering::Relaxed) as f64 / 1e6;
        self.scrub_seconds
            .inc_by((seconds - self.scrub_seconds.get()).max(0.0));
        let head = store.committed_seq();
        self.head.set(head);
        for (name, checkpoint) in &self.consumers {
            self.lag
                .get_or_create(&ConsumerLabels {
                    consumer: name.clone(),
                })
                .set(head.saturating_sub(*checkpoint.borrow()));
        }
        for (kind, state, count) in self.jobs.iter().flat_map(|jobs| jobs.counts()) {
            self.job_counts
                .get_or_create(&JobLabels {
                    kind: kind.as_str(),
                    state: state.as_str(),
                })
                .set(count);
        }
        // A view no longer materialized leaves the family.
        self.view_rows.clear();
        for (view, rows) in self.views.iter().flat_map(|views| views.rows()) {
            self.view_rows
                .get_or_create(&ViewLabels { view })
                .set(rows as u64);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::commit::{Action, Write};

    #[test]
    fn consumer_lag_is_head_minus_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for id in ["a", "b", "c"] {
            let patient = serde_json::json!({"resourceType": "Patient", "id": id});
            let write = Write {
                resource_type: "Patient".into(),
                id: id.into(),
                action: Action::Update(patient),
                if_match: None,
            };
            store.commit_blocking(vec![write]).unwrap();
        }
        let (checkpoint, watched) = watch::channel(1);
        let mut metrics = Metrics::default();
        metrics.register_consumer("indexer", watched);
        let text = metrics.render(&store).unwrap();
        assert!(text.contains("fhirlake_changelog_head_seq 3\n"), "{text}");
        assert!(
            text.contains("fhirlake_consumer_lag_changes{consumer=\"indexer\"} 2\n"),
            "{text}"
        );
        checkpoint.send_replace(3);
        let text = metrics.render(&store).unwrap();
        assert!(
            text.contains("fhirlake_consumer_lag_changes{consumer=\"indexer\"} 0\n"),
            "{text}"
        );
        store.close();
    }
}
