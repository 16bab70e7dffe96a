//! The run of an export job: type after type, batches of the snapshot judged by the
//! [`Selector`] and written to files, a checkpoint at each finished file.
//!
//! The checkpoint ([`Resume`]) is the type being exported and the last id whose line is in a
//! finished file; the record's outputs are the files finished. A run resumes there, numbering
//! the next files after those of the type already finished: the files it writes again are the
//! same, byte for byte, as the ones it was writing when it stopped.

use super::select::{Line, Population, Selector, deletion};
use super::{Request, request_of};
use crate::fhir::outcome::outcome;
use crate::fhir::{FhirError, IssueCode, Severity};
use crate::jobs::sink::FileWriter;
use crate::jobs::{Content, Context, Job, Output, Stop};
use crate::search::IndexSnapshot;
use crate::store::snapshot::Snapshot;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// How many resources are read and judged at once.
const BATCH: usize = 1000;

/// The longest wait for the search index to hold the snapshot's seq (a `_typeFilter`).
const INDEX_WAIT: Duration = Duration::from_secs(600);

/// Where a run resumes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// The position in the request's types of the type being exported.
    pub type_index: usize,
    /// The last id of that type whose line is in a finished file.
    pub after: Option<String>,
}

/// Runs (or resumes) the export of the job in `context`.
pub fn run(context: &Context) -> Result<(), Stop> {
    let job = context.job();
    let request = request_of(&job)?;
    context.sink.check(&job.id)?;
    let resume: Resume = match &job.checkpoint {
        serde_json::Value::Null => Resume::default(),
        checkpoint => serde_json::from_value(checkpoint.clone())
            .map_err(|e| FhirError::internal(format!("the export's checkpoint: {e}")))?,
    };
    let mut pause = pause::Pause::from_env();
    if let Some(pause) = &mut pause {
        pause.after(context, &request, job.done)?;
    }
    let index = if Selector::has_filters(&request) {
        Some(index_at_least(context, request.snapshot.seq)?)
    } else {
        None
    };
    // Opened after the index snapshot: every change the index holds is one it sees.
    let snapshot = context.store.snapshot(request.snapshot.seq)?;
    let population = Population::of(context.search.registry, &request, &snapshot)?;
    let selector = Selector::new(context.search, &request, population, index)?;
    let mut run = Run {
        context,
        request: &request,
        snapshot: &snapshot,
        selector: &selector,
        done: job.done,
        pause,
    };
    for (n, resource_type) in request.types.iter().enumerate().skip(resume.type_index) {
        let after = (n == resume.type_index)
            .then(|| resume.after.clone())
            .flatten();
        run.export_type(n, resource_type, after)?;
    }
    run.report_notes(&job)
}

struct Run<'a> {
    context: &'a Context<'a>,
    request: &'a Request,
    snapshot: &'a Snapshot,
    selector: &'a Selector<'a>,
    /// Resources written into finished files and the current ones.
    done: u64,
    pause: Option<pause::Pause>,
}

/// The files of one type being written.
struct Files {
    output: Option<FileWriter>,
    deleted: Option<FileWriter>,
}

impl Run<'_> {
    /// Exports the resources of `resource_type` (the request's type `n`) after `after`.
    fn export_type(
        &mut self,
        n: usize,
        resource_type: &str,
        mut after: Option<String>,
    ) -> Result<(), Stop> {
        let changed = self.snapshot.changed(resource_type)?;
        let limit = self.context.settings.file_resources.max(1) as u64;
        let mut files = Files {
            output: None,
            deleted: None,
        };
        let mut written_in_type = 0u64;
        loop {
            self.context.check()?;
            let batch = self
                .snapshot
                .scan(resource_type, &changed, after.as_deref(), BATCH)?;
            let Some(last) = batch.last() else {
                break;
            };
            let lines = self
                .selector
                .lines(self.snapshot, resource_type, &changed, &batch)?;
            for (found, line) in batch.iter().zip(lines) {
                let Some(line) = line else {
                    continue;
                };
                let (file, content) = match line {
                    Line::Resource(_) => (&mut files.output, Content::Output),
                    Line::Deleted => (&mut files.deleted, Content::Deleted),
                };
                let writer = match file {
                    Some(writer) => writer,
                    None => file.insert(self.create(resource_type, content)?),
                };
                match &line {
                    Line::Resource(bytes) => writer.line(bytes)?,
                    Line::Deleted => writer.line(&deletion(resource_type, &found.id))?,
                }
                self.done += 1;
                written_in_type += 1;
                if writer.lines() >= limit {
                    let resume = Resume {
                        type_index: n,
                        after: Some(found.id.clone()),
                    };
                    self.finish(&mut files, resource_type, resume)?;
                }
                if let Some(pause) = &mut self.pause {
                    pause.after(self.context, self.request, self.done)?;
                }
            }
            after = Some(last.id.clone());
            self.context.progress(
                self.done,
                format!(
                    "{resource_type} ({} of {} types): {} resources written",
                    n + 1,
                    self.request.types.len(),
                    self.done
                ),
            );
        }
        if written_in_type > 0 || files.output.is_some() || files.deleted.is_some() {
            let resume = Resume {
                type_index: n + 1,
                after: None,
            };
            self.finish(&mut files, resource_type, resume)?;
        }
        Ok(())
    }

    /// A new file of `content` for `resource_type`, numbered after the type's finished ones.
    fn create(&self, resource_type: &str, content: Content) -> Result<FileWriter, Stop> {
        let job = self.context.job();
        let number = job
            .outputs
            .iter()
            .filter(|o| o.content == content && o.resource_type == resource_type)
            .count()
            + 1;
        let stem = match content {
            Content::Deleted => format!("{resource_type}-deleted-{number}"),
            Content::Output | Content::Error => format!("{resource_type}-{number}"),
        };
        let name = self.context.sink.ndjson_name(&stem);
        Ok(self.context.sink.create(&job.id, &name)?)
    }

    /// Finishes the open files of `resource_type` and makes a checkpoint: resume at `resume`.
    fn finish(
        &mut self,
        files: &mut Files,
        resource_type: &str,
        resume: Resume,
    ) -> Result<(), Stop> {
        let mut finished = Vec::new();
        for (file, content) in [
            (files.output.take(), Content::Output),
            (files.deleted.take(), Content::Deleted),
        ] {
            if let Some(file) = file {
                finished.push(finished_file(file, content, resource_type)?);
            }
        }
        let done = self.done;
        self.context.checkpoint(|job| {
            job.outputs.extend(finished);
            job.checkpoint = serde_json::to_value(&resume).expect("a checkpoint serializes");
            job.done = done;
        })
    }

    /// Writes the `error` file of the parameters ignored under lenient handling, once.
    fn report_notes(&mut self, job: &Job) -> Result<(), Stop> {
        let written = self
            .context
            .job()
            .outputs
            .iter()
            .any(|o| o.content == Content::Error);
        if self.request.notes.is_empty() || written {
            return Ok(());
        }
        let name = self.context.sink.ndjson_name("error-1");
        let mut file = self.context.sink.create(&job.id, &name)?;
        for note in &self.request.notes {
            let outcome = outcome(Severity::Warning, IssueCode::NotSupported, note, None);
            file.line(outcome.to_string().as_bytes())?;
        }
        let lines = file.lines();
        let bytes = file.finish()?;
        let output = Output {
            content: Content::Error,
            resource_type: "OperationOutcome".into(),
            name,
            count: lines,
            bytes,
        };
        self.context.checkpoint(|job| job.outputs.push(output))
    }
}

/// Finishes `file`: its output entry.
fn finished_file(file: FileWriter, content: Content, resource_type: &str) -> Result<Output, Stop> {
    let count = file.lines();
    let name = file.name().to_string();
    let bytes = file.finish()?;
    Ok(Output {
        content,
        resource_type: resource_type.to_string(),
        name,
        count,
        bytes,
    })
}

/// An index snapshot that holds change `seq`, once the index has caught up with it (at most
/// [`INDEX_WAIT`]; the job fails with 503 after that).
fn index_at_least(context: &Context, seq: u64) -> Result<IndexSnapshot, Stop> {
    let started = Instant::now();
    while context.search.indexed_seq() < seq {
        context.check()?;
        if started.elapsed() > INDEX_WAIT {
            return Err(Stop::Failed(FhirError::new(
                503,
                IssueCode::Transient,
                format!(
                    "the search index did not catch up with the export's snapshot (change \
                     {seq}) in {} s: run the export again later",
                    INDEX_WAIT.as_secs()
                ),
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(context.search.index_snapshot())
}

/// The test pause (`FHIRLAKE_TEST_EXPORT_PAUSE`, see `jobs`), in debug builds only.
mod pause {
    use super::*;

    pub struct Pause {
        /// Pause once this many resources are written (0: before the run reads anything)...
        after: u64,
        /// ...until this many changes are committed and indexed after the snapshot (`None`:
        /// until the job stops).
        writes: Option<u64>,
        done: bool,
    }

    impl Pause {
        #[cfg(debug_assertions)]
        pub fn from_env() -> Option<Pause> {
            let text = std::env::var("FHIRLAKE_TEST_EXPORT_PAUSE").ok()?;
            let (after, writes) = text.split_once(':')?;
            Some(Pause {
                after: after.parse().ok()?,
                writes: match writes {
                    "never" => None,
                    writes => Some(writes.parse().ok()?),
                },
                done: false,
            })
        }

        #[cfg(not(debug_assertions))]
        pub fn from_env() -> Option<Pause> {
            None
        }

        /// Pauses when `written` reached the count, the first time.
        pub fn after(
            &mut self,
            context: &Context,
            request: &Request,
            written: u64,
        ) -> Result<(), Stop> {
            if self.done || written < self.after {
                return Ok(());
            }
            self.done = true;
            tracing::warn!(written, "export paused by FHIRLAKE_TEST_EXPORT_PAUSE");
            loop {
                context.check()?;
                // Committed and indexed: the index then holds versions after the snapshot.
                let indexed = context
                    .search
                    .indexed_seq()
                    .min(context.store.committed_seq());
                let after = indexed.saturating_sub(request.snapshot.seq);
                if self.writes.is_some_and(|writes| after >= writes) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}
