//! Jobs: the long operations a client starts and polls (bulk `$export` and import; `$purge`
//! and `$bulk-delete`, [`erase`]; analytics is a further [`Kind`]), run by a bounded pool of worker threads,
//! resumed after a restart, and expired after their retention.
//!
//! A job is a record in the store's `jobs` table ([`record::Job`]) written by the writer
//! thread (`store::commit::Bookkeeping::Job`), and files in the [`Sink`]. Its kind's code
//! ([`export`], [`import`]) runs on a worker and makes checkpoints: each names the files finished so far
//! and where to go on from, in one durable record.
//!
//! Invariants:
//! - **Bounded.** At most `--job-workers` jobs run at once, each on a plain OS thread of its
//!   own (never an HTTP worker or the async runtime), reading the store through its own read
//!   transactions: a job never holds the writer's lock, and its own writes are one small
//!   record per checkpoint, in the writer's groups. More jobs wait, queued, in the order they
//!   were started.
//! - **Durable and resumable.** A job is acknowledged (202) only once its record is durable. A
//!   job that was queued or running when the server stopped (SIGTERM: the workers stop at their
//!   next step; a crash: wherever they were) is queued again at the next start and resumes
//!   from its last checkpoint: the files of earlier checkpoints are kept, the rest is done
//!   again. Its kind makes sure that doing it again gives the same files (an export reads a
//!   fixed snapshot).
//! - **Ordered records.** The record in memory is the last one sent to the writer, and records
//!   reach it in the order of their changes ([`Handle::update`] sends under the job's lock).
//!   A cancelled job is never written back to another state.
//! - **Owned.** A job and its files are seen by its owner only ([`record::Owner`]); to anyone
//!   else it does not exist (404), like a resource outside a token's view. An owner has at most
//!   [`MAX_UNFINISHED`] jobs queued or running (429 beyond).
//! - **Cancelled and expired.** A cancelled job (`DELETE` on its status URL) stops at its next
//!   step; its files are removed, and its status is 404 from then on. A finished job (completed,
//!   failed or cancelled) is removed with its files once `--job-retention` has passed since it
//!   finished. While a job is not finished, change-log retention keeps every change it needs
//!   ([`Jobs::floor`]).
//! - **Contained.** A panic in a job fails that job (500) and nothing else.
//!
//! Testing only: in a debug build, `FHIRLAKE_TEST_EXPORT_PAUSE=K:W` makes an export pause
//! once it has written K resources (0: before it reads anything), until W changes after its
//! snapshot are committed and indexed (`never`: until it is stopped), so that a test can write,
//! crash or stop the server while an export is under way, by counts rather than times;
//! `FHIRLAKE_TEST_ERASE_PAUSE=K` pauses an erasure job the same way ([`erase`]); and
//! `FHIRLAKE_TEST_IMPORT_PAUSE=K` makes an import pause, until it is stopped or cancelled, once
//! K of its lines are settled.

pub mod erase;
pub mod export;
pub mod import;
pub mod record;
pub mod sink;
pub mod views;

use crate::fhir::datetime::{self, Micros};
use crate::fhir::{FhirError, IssueCode};
use crate::search::Engine;
use crate::store::commit::{Booked, Bookkeeping};
use crate::store::{Store, StoreError};
pub use record::{Content, Job, Kind, Output, Owner, State};
use serde_json::Value;
pub use sink::Sink;
use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The most jobs one owner may have queued or running at once (without authorization, all
/// clients are one owner): more are refused with 429 until one finishes.
pub const MAX_UNFINISHED: usize = 10;

/// How jobs are run and kept.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How many jobs run at once.
    pub workers: usize,
    /// How long a finished job and its files are kept.
    pub retention: Duration,
    /// The wait a running job's status asks for between polls (`Retry-After`); a client that
    /// polls a job more often than every half of it gets 429.
    pub poll_interval: Duration,
    /// The most resources an export file holds.
    pub file_resources: usize,
}

/// Why a job stopped before its end.
#[derive(Debug)]
pub enum Stop {
    /// Its client cancelled it.
    Cancelled,
    /// The server is stopping: the job resumes at the next start.
    Shutdown,
    /// The job waits for its client (a submission's next manifest): it stays running, off
    /// the workers, until [`Jobs::amend`] queues it again (or the next start does).
    Parked,
    /// It failed, for the reason its status gives.
    Failed(FhirError),
}

impl From<StoreError> for Stop {
    fn from(error: StoreError) -> Self {
        Stop::Failed(error.into())
    }
}

impl From<std::io::Error> for Stop {
    fn from(error: std::io::Error) -> Self {
        tracing::error!(%error, "a job's file could not be written");
        Stop::Failed(FhirError::internal(format!(
            "a file of the job could not be written: {error}"
        )))
    }
}

impl From<FhirError> for Stop {
    fn from(error: FhirError) -> Self {
        Stop::Failed(error)
    }
}

/// What a job has done since its last checkpoint, for its status.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Items done (resources, for an export).
    pub done: u64,
    /// What it is doing, in a few words.
    pub note: String,
}

/// A job known to the server: its record and what its worker shares with the API.
pub struct Handle {
    record: Mutex<Job>,
    /// Set by a cancel: the worker stops at its next step.
    cancelled: AtomicBool,
    progress: Mutex<Progress>,
    /// When its status was last polled (for 429).
    polled: Mutex<Option<Instant>>,
    /// Parked by its worker ([`Stop::Parked`]): whoever clears it queues the job.
    parked: AtomicBool,
}

impl Handle {
    fn new(job: Job) -> Arc<Handle> {
        Arc::new(Handle {
            cancelled: AtomicBool::new(job.state == State::Cancelled),
            progress: Mutex::new(Progress {
                done: job.done,
                note: String::new(),
            }),
            record: Mutex::new(job),
            polled: Mutex::new(None),
            parked: AtomicBool::new(false),
        })
    }

    /// The job's record as it is now.
    pub fn record(&self) -> Job {
        self.record.lock().expect("job record").clone()
    }

    /// The job's progress as its worker last reported it.
    pub fn progress(&self) -> Progress {
        self.progress.lock().expect("job progress").clone()
    }

    /// Changes the record with `change` and sends it to the writer, under the job's lock (so
    /// records reach the store in the order of their changes). `change` returns false to leave
    /// the record as it is (nothing is sent). The future resolves once the record is durable.
    fn update(
        &self,
        store: &Store,
        change: impl FnOnce(&mut Job) -> bool,
    ) -> Option<impl Future<Output = Result<Booked, StoreError>> + 'static> {
        let mut record = self.record.lock().expect("job record");
        if !change(&mut record) {
            return None;
        }
        let books = vec![Bookkeeping::Job {
            id: record.id.clone(),
            record: Some(record.encode()),
        }];
        Some(store.keep_books(books))
    }
}

/// What a worker gives the code of the job it runs.
pub struct Context<'a> {
    pub store: &'a Store,
    /// What imports need (`None`: this server runs no imports).
    pub imports: Option<&'a import::run::Imports>,
    pub search: &'a Engine,
    pub sink: &'a Sink,
    pub settings: &'a Settings,
    handle: &'a Handle,
    stopping: &'a AtomicBool,
    runtime: &'a tokio::runtime::Runtime,
}

impl Context<'_> {
    /// The job's record as it is now.
    pub fn job(&self) -> Job {
        self.handle.record()
    }

    /// `Err` when the job must stop now: cancelled, or the server is stopping.
    pub fn check(&self) -> Result<(), Stop> {
        if self.handle.cancelled.load(Ordering::Acquire) {
            return Err(Stop::Cancelled);
        }
        if self.stopping.load(Ordering::Acquire) {
            return Err(Stop::Shutdown);
        }
        Ok(())
    }

    /// Makes a checkpoint: `change` updates the record (the files finished, where to resume),
    /// which is durable when this returns. A cancelled job is not written back: it stops.
    pub fn checkpoint(&self, change: impl FnOnce(&mut Job)) -> Result<(), Stop> {
        let written = self.handle.update(self.store, |job| {
            if job.state == State::Cancelled {
                return false;
            }
            change(job);
            true
        });
        match written {
            Some(written) => {
                self.runtime.block_on(written)?;
                Ok(())
            }
            None => Err(Stop::Cancelled),
        }
    }

    /// Reports what the job is doing, for its status (not stored).
    pub fn progress(&self, done: u64, note: impl Into<String>) {
        *self.handle.progress.lock().expect("job progress") = Progress {
            done,
            note: note.into(),
        };
    }

    /// Parks the job until its record changes ([`Stop::Parked`]): `Ok` when it changed
    /// already (`unchanged` says whether the record is as the job last read it), and the job
    /// goes on on this worker. Whoever clears the mark first, this or [`Jobs::amend`], runs
    /// the job on: never both.
    pub fn park(&self, unchanged: impl Fn(&Job) -> bool) -> Result<(), Stop> {
        self.handle.parked.store(true, Ordering::Release);
        if !unchanged(&self.job()) && self.handle.parked.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        Err(Stop::Parked)
    }

    /// Runs a future to its end on the worker's own runtime.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }
}

/// What a poll of a job's status finds.
pub enum Poll {
    Found(Box<Job>, Progress),
    /// Polled again too soon: retry after this long.
    TooSoon(Duration),
}

/// The jobs of a server: their records, the queue, the workers and the expiry.
pub struct Jobs {
    shared: Arc<Shared>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

struct Shared {
    store: Store,
    search: Arc<Engine>,
    sink: Sink,
    settings: Settings,
    imports: Option<import::run::Imports>,
    jobs: Mutex<HashMap<String, Arc<Handle>>>,
    queue: Mutex<VecDeque<String>>,
    /// Wakes the workers (a job queued, the server stopping) and the expiry.
    wake: Condvar,
    stopping: AtomicBool,
    floor: watch::Sender<u64>,
}

impl Jobs {
    /// Loads the jobs of `store`, queues again those that were queued or running, removes the
    /// files of cancelled ones, and starts the workers and the expiry. Without `imports`,
    /// import jobs fail.
    pub fn start(
        store: Store,
        search: Arc<Engine>,
        sink: Sink,
        settings: Settings,
        imports: Option<import::run::Imports>,
    ) -> Result<Arc<Jobs>, StoreError> {
        let mut jobs = HashMap::new();
        let mut queued = Vec::new();
        let mut cancelled = Vec::new();
        for (id, bytes) in store.jobs()? {
            let job = match Job::decode(&bytes) {
                Ok(job) => job,
                Err(error) => {
                    tracing::error!(job = %id, %error, "a job record this build cannot read is kept, not run");
                    continue;
                }
            };
            match job.state {
                State::Queued | State::Running => queued.push((job.created, id.clone())),
                State::Cancelled => cancelled.push(id.clone()),
                State::Completed | State::Failed => {}
            }
            jobs.insert(id, Handle::new(job));
        }
        if !cancelled.is_empty() {
            // On a thread of its own: the server starts meanwhile (and may be on the async
            // runtime, where removing objects cannot wait on the object store).
            let sink = sink.clone();
            std::thread::Builder::new()
                .name("fhirlake-job-removal".into())
                .spawn(move || cancelled.iter().for_each(|id| remove_files(&sink, id)))
                .map_err(|e| StoreError::Schema(format!("cannot start the job removal: {e}")))?;
        }
        queued.sort();
        if !queued.is_empty() {
            tracing::info!(jobs = queued.len(), "resuming the jobs that were under way");
        }
        let shared = Arc::new(Shared {
            store,
            search,
            sink,
            settings,
            imports,
            jobs: Mutex::new(jobs),
            queue: Mutex::new(queued.into_iter().map(|(_, id)| id).collect()),
            wake: Condvar::new(),
            stopping: AtomicBool::new(false),
            floor: watch::Sender::new(u64::MAX),
        });
        shared.publish_floor();
        let mut threads = Vec::new();
        for n in 0..shared.settings.workers {
            let shared = shared.clone();
            let thread = std::thread::Builder::new()
                .name(format!("fhirlake-job-{n}"))
                .spawn(move || shared.work())
                .map_err(|e| StoreError::Schema(format!("cannot start a job worker: {e}")))?;
            threads.push(thread);
        }
        let expiry = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("fhirlake-job-expiry".into())
                .spawn(move || expiry.expire_forever())
                .map_err(|e| StoreError::Schema(format!("cannot start the job expiry: {e}")))?,
        );
        Ok(Arc::new(Jobs {
            shared,
            threads: Mutex::new(threads),
        }))
    }

    pub fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    pub fn sink(&self) -> &Sink {
        &self.shared.sink
    }

    /// Where imports may read from (nothing, without imports).
    pub fn sources(&self) -> crate::bulk::input::Sources {
        self.shared
            .imports
            .as_ref()
            .map(|imports| imports.sources.clone())
            .unwrap_or_default()
    }

    /// Records a new job of `kind` for `owner` asking `request`, durably, and queues it;
    /// returns its id. `keeps_changes_after`: the change-log seq it needs every later change
    /// of (see [`Job::keeps_changes_after`]). An owner with [`MAX_UNFINISHED`] jobs queued or
    /// running gets 429.
    pub async fn submit(
        &self,
        kind: Kind,
        owner: Option<Owner>,
        request: Value,
        keeps_changes_after: Option<u64>,
    ) -> Result<String, FhirError> {
        let id = uuid::Uuid::new_v4().to_string();
        let job = Job {
            id: id.clone(),
            kind,
            owner,
            request,
            state: State::Queued,
            created: datetime::now(),
            started: None,
            finished: None,
            done: 0,
            outputs: Vec::new(),
            failure: None,
            checkpoint: Value::Null,
            keeps_changes_after,
            place: Some(self.shared.sink.place()),
        };
        let owner = job.owner.clone();
        let handle = Handle::new(job);
        // Known (and keeping its changes) before it is durable; queued only once it is.
        {
            let mut jobs = self.shared.jobs.lock().expect("jobs");
            let unfinished = jobs
                .values()
                .filter(|other| {
                    let record = other.record.lock().expect("job record");
                    record.owner == owner && !record.state.is_finished()
                })
                .count();
            if unfinished >= MAX_UNFINISHED {
                return Err(FhirError::new(
                    429,
                    IssueCode::Transient,
                    format!(
                        "this client has {unfinished} jobs queued or running, the most it may \
                         have: start another once one has finished (or cancel one)"
                    ),
                ));
            }
            jobs.insert(id.clone(), handle.clone());
        }
        self.shared.publish_floor();
        let written = handle.update(&self.shared.store, |_| true);
        if let Some(written) = written
            && let Err(error) = written.await
        {
            self.shared.jobs.lock().expect("jobs").remove(&id);
            self.shared.publish_floor();
            return Err(error.into());
        }
        self.shared
            .queue
            .lock()
            .expect("queue")
            .push_back(id.clone());
        self.shared.wake.notify_all();
        Ok(id)
    }

    /// The job `id` if `owner` may see it (a cancelled job is gone).
    fn owned(&self, id: &str, owner: &Option<Owner>) -> Option<Arc<Handle>> {
        let handle = self.shared.jobs.lock().expect("jobs").get(id).cloned()?;
        let record = handle.record.lock().expect("job record");
        (record.owned_by(owner) && record.state != State::Cancelled).then(|| handle.clone())
    }

    /// The job `id` and its progress, if `owner` may see it; [`Poll::TooSoon`] when it was
    /// polled less than half the poll interval ago.
    pub fn poll(&self, id: &str, owner: &Option<Owner>) -> Option<Poll> {
        let handle = self.owned(id, owner)?;
        let interval = self.shared.settings.poll_interval;
        let now = Instant::now();
        let mut polled = handle.polled.lock().expect("poll time");
        if let Some(last) = *polled
            && now.duration_since(last) < interval / 2
        {
            return Some(Poll::TooSoon(
                interval.saturating_sub(now.duration_since(last)),
            ));
        }
        *polled = Some(now);
        drop(polled);
        Some(Poll::Found(Box::new(handle.record()), handle.progress()))
    }

    /// The job `id` as it is now, if `owner` may see it (not a poll).
    pub fn get(&self, id: &str, owner: &Option<Owner>) -> Option<Job> {
        self.owned(id, owner).map(|handle| handle.record())
    }

    /// The first job of `owner` (not cancelled) whose record `matches`.
    pub fn find(&self, owner: &Option<Owner>, matches: impl Fn(&Job) -> bool) -> Option<Job> {
        let jobs = self.shared.jobs.lock().expect("jobs");
        jobs.values().find_map(|handle| {
            let record = handle.record.lock().expect("job record");
            (record.owned_by(owner) && record.state != State::Cancelled && matches(&record))
                .then(|| record.clone())
        })
    }

    /// Changes the record of the unfinished job `id` of `owner` with `change` (which returns
    /// false to leave it as it is), durably. `Ok(false)` when there is no such job, it is
    /// finished, or `change` left it. Its worker sees the change at its next look at the
    /// record (a submission's new manifests).
    pub async fn amend(
        &self,
        id: &str,
        owner: &Option<Owner>,
        change: impl FnOnce(&mut Job) -> bool,
    ) -> Result<bool, FhirError> {
        let Some(handle) = self.owned(id, owner) else {
            return Ok(false);
        };
        let mut changed = false;
        let written = handle.update(&self.shared.store, |job| {
            changed = !job.state.is_finished() && change(job);
            changed
        });
        if let Some(written) = written {
            written.await?;
        }
        if changed && handle.parked.swap(false, Ordering::AcqRel) {
            self.shared
                .queue
                .lock()
                .expect("queue")
                .push_back(id.to_string());
            self.shared.wake.notify_all();
        }
        Ok(changed)
    }

    /// Cancels the job `id` of `owner`: false when there is no such job. A queued or finished
    /// job's files are removed now, a running job's by its worker once it has stopped.
    pub async fn cancel(&self, id: &str, owner: &Option<Owner>) -> Result<bool, FhirError> {
        let Some(handle) = self.owned(id, owner) else {
            return Ok(false);
        };
        let mut running = false;
        let written = handle.update(&self.shared.store, |job| {
            if job.state == State::Cancelled {
                return false;
            }
            running = job.state == State::Running && !handle.parked.load(Ordering::Acquire);
            job.state = State::Cancelled;
            job.finished = Some(datetime::now());
            true
        });
        handle.cancelled.store(true, Ordering::Release);
        if let Some(written) = written {
            written.await?;
        }
        if !running {
            // Off the async runtime: removing objects waits on the object store.
            let (sink, id) = (self.shared.sink.clone(), id.to_string());
            let removed = tokio::task::spawn_blocking(move || remove_files(&sink, &id)).await;
            if let Err(error) = removed {
                tracing::error!(%error, "removing a cancelled job's files panicked");
            }
        }
        self.shared.publish_floor();
        Ok(true)
    }

    /// How many jobs there are of each kind and state (every pair, zeros included).
    pub fn counts(&self) -> Vec<(Kind, State, u64)> {
        let jobs = self.shared.jobs.lock().expect("jobs");
        let mut counts: HashMap<(Kind, State), u64> = HashMap::new();
        for handle in jobs.values() {
            let record = handle.record.lock().expect("job record");
            *counts.entry((record.kind, record.state)).or_default() += 1;
        }
        Kind::ALL
            .iter()
            .flat_map(|kind| State::ALL.iter().map(move |state| (*kind, *state)))
            .map(|(kind, state)| {
                (
                    kind,
                    state,
                    counts.get(&(kind, state)).copied().unwrap_or(0),
                )
            })
            .collect()
    }

    /// The lowest change-log seq whose later changes some unfinished job needs (`u64::MAX`
    /// when none does): change-log retention keeps them.
    pub fn floor(&self) -> watch::Receiver<u64> {
        self.shared.floor.subscribe()
    }

    /// Stops the workers at their next step (their jobs resume at the next start) and the
    /// expiry, and waits for them.
    pub fn stop(&self) {
        self.shared.stopping.store(true, Ordering::Release);
        {
            // Taken so that no worker misses the wake-up between its check and its wait.
            let _queue = self.shared.queue.lock().expect("queue");
            self.shared.wake.notify_all();
        }
        for thread in self.threads.lock().expect("threads").drain(..) {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    fn publish_floor(&self) {
        let floor = self
            .jobs
            .lock()
            .expect("jobs")
            .values()
            .filter_map(|handle| {
                let record = handle.record.lock().expect("job record");
                (!record.state.is_finished())
                    .then_some(record.keeps_changes_after)
                    .flatten()
            })
            .min()
            .unwrap_or(u64::MAX);
        self.floor.send_replace(floor);
    }

    /// A worker: runs queued jobs one after the other until the server stops.
    fn work(self: Arc<Self>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a job worker's runtime");
        loop {
            let id = {
                let mut queue = self.queue.lock().expect("queue");
                loop {
                    if self.stopping() {
                        return;
                    }
                    if let Some(id) = queue.pop_front() {
                        break id;
                    }
                    queue = self.wake.wait(queue).expect("queue");
                }
            };
            let Some(handle) = self.jobs.lock().expect("jobs").get(&id).cloned() else {
                continue;
            };
            self.run(&handle, &runtime);
            self.publish_floor();
        }
    }

    /// Runs one job to its end, its failure, its cancellation or the server's stop.
    fn run(&self, handle: &Handle, runtime: &tokio::runtime::Runtime) {
        let started = handle.update(&self.store, |job| {
            if job.state != State::Queued && job.state != State::Running {
                return false;
            }
            job.state = State::Running;
            job.started.get_or_insert_with(datetime::now);
            true
        });
        let Some(started) = started else {
            return;
        };
        if let Err(error) = runtime.block_on(started) {
            tracing::error!(%error, "a job could not be started; it is tried again at the next start");
            return;
        }
        let job = handle.record();
        let span = tracing::info_span!("job", id = %job.id, kind = job.kind.as_str());
        let _entered = span.enter();
        tracing::info!("job running");
        let context = Context {
            store: &self.store,
            imports: self.imports.as_ref(),
            search: &self.search,
            sink: &self.sink,
            settings: &self.settings,
            handle,
            stopping: &self.stopping,
            runtime,
        };
        let result = catch_unwind(AssertUnwindSafe(|| match job.kind {
            _ if job.kind.writes_files() && !self.resumes_here(&job) => {
                Err(Stop::Failed(FhirError::new(
                    500,
                    IssueCode::Exception,
                    format!(
                        "this job began with its files in {}, and the server now puts them in {} \
                         (--export-store changed): it cannot go on in two places; start it again",
                        job.place.as_deref().unwrap_or_default(),
                        self.sink.place()
                    ),
                )))
            }
            Kind::Export => export::run(&context),
            Kind::Erasure => erase::run(&context),
            Kind::Import => import::run(&context),
            Kind::ViewExport => views::view_export::run(&context),
        }))
        .unwrap_or_else(|panic| {
            Err(Stop::Failed(FhirError::internal(format!(
                "the job failed on an internal error (a panic): {}",
                crate::panics::message(&*panic)
            ))))
        });
        let end = match result {
            Ok(()) => Some((State::Completed, None)),
            Err(Stop::Shutdown) => {
                tracing::info!("job paused by the server's stop; it resumes at the next start");
                return;
            }
            Err(Stop::Parked) => {
                tracing::info!("job parked until its client sends more");
                return;
            }
            Err(Stop::Cancelled) => None,
            Err(Stop::Failed(error)) => {
                tracing::warn!(status = error.status, error = %error, "job failed");
                remove_files(&self.sink, &job.id);
                let failure = record::Failure {
                    status: error.status,
                    outcome: error.to_outcome(),
                };
                Some((State::Failed, Some(failure)))
            }
        };
        let ended = end.and_then(|(state, failure)| {
            handle.update(&self.store, move |job| {
                if job.state == State::Cancelled {
                    return false;
                }
                job.state = state;
                job.finished = Some(datetime::now());
                if failure.is_some() {
                    job.outputs.clear();
                }
                job.failure = failure;
                true
            })
        });
        match ended {
            Some(ended) => {
                if let Err(error) = runtime.block_on(ended) {
                    tracing::error!(%error, "a job's end could not be recorded; it runs again at the next start");
                }
                tracing::info!(state = handle.record().state.as_str(), "job ended");
            }
            // Cancelled while it ran: its files go now that nothing writes them.
            None => {
                remove_files(&self.sink, &job.id);
                tracing::info!("job cancelled");
            }
        }
    }

    /// Whether `job`'s files go where it began to put them (a record without a place is
    /// taken at its word).
    fn resumes_here(&self, job: &Job) -> bool {
        job.place
            .as_ref()
            .is_none_or(|place| *place == self.sink.place())
    }

    /// Removes finished jobs past their retention, with their files, until the server stops.
    fn expire_forever(self: Arc<Self>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("the job expiry's runtime");
        let every = (self.settings.retention / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(60));
        loop {
            {
                let queue = self.queue.lock().expect("queue");
                if self.stopping() {
                    return;
                }
                let _ = self.wake.wait_timeout(queue, every).expect("queue");
            }
            if self.stopping() {
                return;
            }
            self.expire(&runtime, datetime::now());
        }
    }

    /// Removes the jobs finished before `now` minus the retention, and their files.
    fn expire(&self, runtime: &tokio::runtime::Runtime, now: Micros) {
        let retention = self.settings.retention.as_micros().min(i64::MAX as u128) as i64;
        let expired: Vec<String> = self
            .jobs
            .lock()
            .expect("jobs")
            .values()
            .filter_map(|handle| {
                let record = handle.record.lock().expect("job record");
                let finished = record.finished.filter(|_| record.state.is_finished())?;
                (finished.saturating_add(retention) <= now).then(|| record.id.clone())
            })
            .collect();
        for id in expired {
            remove_files(&self.sink, &id);
            let books = vec![Bookkeeping::Job {
                id: id.clone(),
                record: None,
            }];
            match runtime.block_on(self.store.keep_books(books)) {
                Ok(_) => {
                    self.jobs.lock().expect("jobs").remove(&id);
                    tracing::info!(job = %id, "job expired");
                }
                Err(error) => {
                    tracing::error!(job = %id, %error, "an expired job could not be removed")
                }
            }
        }
    }
}

/// Removes a job's files; a failure is logged (the files stay until the job expires).
fn remove_files(sink: &Sink, id: &str) {
    if let Err(error) = sink.remove(id) {
        tracing::error!(job = %id, %error, "a job's files could not be removed");
    }
}

/// The status URL of job `id` under the FHIR base URL `base` (`[base]/_jobs/{id}`).
pub fn status_url(base: &str, id: &str) -> String {
    format!("{base}/_jobs/{id}")
}

/// The URL of the file `name` of job `id` (`[base]/_jobs/{id}/files/{name}`).
pub fn file_url(base: &str, id: &str, name: &str) -> String {
    format!("{base}/_jobs/{id}/files/{name}")
}

/// A job id as the status URL gives it: 36 characters of hex digits and dashes (a UUID).
pub fn is_job_id(id: &str) -> bool {
    id.len() == 36 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// The 404 of a job that does not exist, is not the client's, or was cancelled or expired.
pub fn no_job(id: &str) -> FhirError {
    let shown: String = id.chars().take(64).collect();
    FhirError::new(
        404,
        IssueCode::NotFound,
        format!("there is no job {shown}: it never existed, was cancelled or has expired"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn started(dir: &std::path::Path, store: &Store, search: &Arc<Engine>) -> Arc<Jobs> {
        let settings = Settings {
            // No worker: the jobs stay queued.
            workers: 0,
            retention: Duration::from_secs(60),
            poll_interval: Duration::from_secs(2),
            file_resources: 10,
        };
        let sink = Sink::local(dir, sink::Compression::None);
        Jobs::start(store.clone(), search.clone(), sink, settings, None).unwrap()
    }

    /// Unfinished jobs hold change-log retention at their snapshot, are found again after a
    /// restart, are their owners' only, are counted, and go once expired.
    #[test]
    fn jobs_keep_their_changes_survive_a_restart_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let search = Arc::new(
            Engine::open(
                &store,
                &dir.path().join("index"),
                None,
                crate::search::Limits::default(),
            )
            .unwrap(),
        );
        let jobs = started(dir.path(), &store, &search);
        let floor = jobs.floor();
        assert_eq!(*floor.borrow(), u64::MAX);
        let owner = Some(Owner {
            subject: Some("s".into()),
            client: None,
            patient: None,
        });
        let submit = |keeps: u64| {
            runtime
                .block_on(jobs.submit(Kind::Export, owner.clone(), json!({}), Some(keeps)))
                .unwrap()
        };
        let (first, second) = (submit(7), submit(5));
        assert_eq!(*floor.borrow(), 5);
        assert!(jobs.get(&first, &owner).is_some());
        assert!(jobs.get(&first, &None).is_none(), "another owner's");
        // Ten under way at most.
        for _ in 2..MAX_UNFINISHED {
            submit(9);
        }
        let refused = runtime.block_on(jobs.submit(Kind::Export, owner.clone(), json!({}), None));
        assert_eq!(refused.unwrap_err().status, 429);
        assert!(runtime.block_on(jobs.cancel(&second, &owner)).unwrap());
        assert_eq!(*floor.borrow(), 7);
        assert!(jobs.get(&second, &owner).is_none(), "cancelled: gone");
        let count = |jobs: &Jobs, state: State| {
            jobs.counts()
                .into_iter()
                .find(|(kind, s, _)| *kind == Kind::Export && *s == state)
                .unwrap()
                .2
        };
        assert_eq!(count(&jobs, State::Queued), MAX_UNFINISHED as u64 - 1);
        assert_eq!(count(&jobs, State::Cancelled), 1);
        jobs.stop();
        drop(jobs);
        // After a restart: the same jobs, the same floor.
        let jobs = started(dir.path(), &store, &search);
        assert_eq!(*jobs.floor().borrow(), 7);
        assert_eq!(jobs.get(&first, &owner).unwrap().state, State::Queued);
        assert_eq!(count(&jobs, State::Cancelled), 1);
        // The cancelled job expires with its retention; the queued ones never do.
        let later = datetime::now() + 61_000_000;
        jobs.shared.expire(&runtime, later);
        assert_eq!(count(&jobs, State::Cancelled), 0);
        assert_eq!(count(&jobs, State::Queued), MAX_UNFINISHED as u64 - 1);
        jobs.stop();
        drop(jobs);
        let jobs = started(dir.path(), &store, &search);
        assert_eq!(count(&jobs, State::Cancelled), 0, "removed from the store");
        jobs.stop();
        store.close();
    }
}
