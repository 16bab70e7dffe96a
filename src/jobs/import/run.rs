//! The run of an import job: the submission's manifests read, then input after input loaded
//! line by line through `bulk::ndjson`, checkpoints as `jobs::import` describes.

use super::{CHECKPOINT_LINES, Input, Request, Resume, error_stem, line_id, request_of, resume_of};
use crate::bulk::input::{self, Sources};
use crate::bulk::ndjson::{self, Settled, Stopped, Target};
use crate::fhir::{FhirError, IssueCode};
use crate::jobs::sink::FileWriter;
use crate::jobs::{Content, Context, Output, Stop};
use crate::validate::Validator;
use serde_json::{Value, json};
use std::io::Read;
use std::time::Duration;

/// The largest manifest read (bytes).
const MAX_MANIFEST: u64 = 16 * 1024 * 1024;

/// The most `link` pages one manifest has.
const MAX_PAGES: usize = 1_000;

/// The files a manifest page lists: each one's type (when given) and absolute URL.
type Listed = Vec<(Option<String>, String)>;

/// What an import needs besides the store: the validator and where inputs may come from.
pub struct Imports {
    pub validator: std::sync::Arc<Validator>,
    pub sources: Sources,
}

/// Runs (or resumes) the import of the job in `context`.
pub fn run(context: &Context) -> Result<(), Stop> {
    let imports = context.imports.ok_or_else(|| {
        FhirError::internal("this server was started without what an import needs")
    })?;
    let job = context.job();
    let mut run = Run {
        context,
        imports,
        job: job.id.clone(),
        resume: resume_of(&job)?,
        errors: None,
        since_checkpoint: 0,
        pause: pause::Pause::from_env(),
    };
    loop {
        let request = request_of(&context.job())?;
        if let Some(submission) = &request.submission {
            while run.resume.manifests_read < submission.manifests.len() {
                context.check()?;
                let n = run.resume.manifests_read;
                run.read_manifest(&request, n, &submission.manifests[n])?;
                run.resume.manifests_read += 1;
                run.checkpoint()?;
            }
        }
        let inputs: Vec<Input> = request
            .inputs
            .iter()
            .chain(&run.resume.fetched)
            .cloned()
            .collect();
        while run.resume.input < inputs.len() {
            let n = run.resume.input;
            if !inputs[n].unread {
                run.load(&request, n, &inputs[n])?;
            }
            run.resume.input += 1;
            run.resume.line = 0;
            run.checkpoint()?;
        }
        match &request.submission {
            None => return Ok(()),
            Some(s) if s.completed && run.resume.manifests_read == s.manifests.len() => {
                return Ok(());
            }
            // Off the workers until the provider sends more.
            Some(_) => {
                context.progress(run.done(), "waiting for more manifests of the submission");
                context.park(|job| request_of(job).is_ok_and(|now| now == request))?;
            }
        }
    }
}

struct Run<'a> {
    context: &'a Context<'a>,
    imports: &'a Imports,
    job: String,
    resume: Resume,
    /// The error file being written (finished by the next checkpoint).
    errors: Option<FileWriter>,
    since_checkpoint: u64,
    pause: Option<pause::Pause>,
}

impl Run<'_> {
    /// Lines settled so far.
    fn done(&self) -> u64 {
        self.resume.counts.values().sum::<u64>() + self.resume.rejected
    }

    /// Loads input `n` from the line after the checkpoint's.
    fn load(&mut self, request: &Request, n: usize, input: &Input) -> Result<(), Stop> {
        self.context.check()?;
        let mut reader = match input::open(&self.imports.sources, &input.url, &request.headers) {
            Ok(reader) => reader,
            Err(error) => return self.reject(n, &input.url, None, &error),
        };
        let job = self.job.clone();
        let writable = request.writable.clone();
        let may_write = move |resource_type: &str| writable.check(resource_type);
        let new_id = move |line: u64| (line_id(&job, n, line), true);
        let (context, imports) = (self.context, self.imports);
        let target = Target {
            store: context.store,
            validator: &imports.validator,
            resource_type: input.resource_type.as_deref(),
            may_write: &may_write,
            new_id: &new_id,
        };
        let wait = |pending: ndjson::Pending| context.block_on(pending);
        let skip = self.resume.line;
        let total = request.inputs.len() + self.resume.fetched.len();
        let mut settled = |line: u64, settled: Settled| -> Result<(), Stop> {
            match settled {
                Settled::Stored { resource_type, .. } => {
                    *self.resume.counts.entry(resource_type).or_default() += 1;
                }
                Settled::Rejected(error) => self.reject(n, &input.url, Some(line), &error)?,
            }
            self.resume.line = line;
            self.since_checkpoint += 1;
            let done = self.done();
            if self.since_checkpoint >= CHECKPOINT_LINES {
                self.checkpoint()?;
            }
            if done.is_multiple_of(1000) {
                self.context.progress(
                    done,
                    format!("input {} of {total}: {done} resources", n + 1),
                );
                self.context.check()?;
            }
            if let Some(pause) = &mut self.pause {
                pause.after(self.context, done)?;
            }
            Ok(())
        };
        match ndjson::load(&mut reader, skip, &target, &wait, &mut settled) {
            Ok(_) => Ok(()),
            Err(Stopped::Caller(stop)) => Err(stop),
            Err(Stopped::Read { line, error }) => {
                let error = FhirError::bad_request(
                    IssueCode::Exception,
                    format!("the input cannot be read after line {line}: {error}"),
                );
                self.reject(n, &input.url, Some(line + 1), &error)
            }
        }
    }

    /// Reports a rejected line (or a whole input, `line` `None`) of input `n` at `url`.
    fn reject(
        &mut self,
        n: usize,
        url: &str,
        line: Option<u64>,
        error: &FhirError,
    ) -> Result<(), Stop> {
        let mut rejection = error.to_outcome();
        let place = match line {
            Some(line) => format!("{url} line {line}"),
            None => url.to_string(),
        };
        if let Some(issue) = rejection["issue"].get_mut(0) {
            issue["diagnostics"] = json!(format!("{place}: {}", error.diagnostics));
        }
        rejection["extension"] = json!([{
            "url": "https://fhirlake.dev/fhir/StructureDefinition/import-source",
            "extension": [
                {"url": "input", "valueUri": url},
                {"url": "line", "valueInteger": line.unwrap_or(0).min(i32::MAX as u64)},
            ],
        }]);
        if self.errors.is_none() {
            let prefix = format!("errors-{n}-");
            let number = self
                .context
                .job()
                .outputs
                .iter()
                .filter(|o| o.content == Content::Error && o.name.starts_with(&prefix))
                .count()
                + 1;
            let name = self.context.sink.ndjson_name(&error_stem(n, number));
            self.errors = Some(self.context.sink.create(&self.job, &name)?);
        }
        let writer = self.errors.as_mut().expect("an error file");
        writer.line(rejection.to_string().as_bytes())?;
        self.resume.rejected += 1;
        Ok(())
    }

    /// Makes a checkpoint where the run is: the error file finished, the position and counts.
    fn checkpoint(&mut self) -> Result<(), Stop> {
        let finished = match self.errors.take() {
            Some(file) => {
                let count = file.lines();
                let name = file.name().to_string();
                let bytes = file.finish()?;
                Some(Output {
                    content: Content::Error,
                    resource_type: "OperationOutcome".into(),
                    name,
                    count,
                    bytes,
                })
            }
            None => None,
        };
        self.since_checkpoint = 0;
        let checkpoint = serde_json::to_value(&self.resume).expect("a checkpoint serializes");
        let done = self.done();
        self.context.progress(done, format!("{done} resources"));
        self.context.checkpoint(|job| {
            job.outputs.extend(finished);
            job.checkpoint = checkpoint;
            job.done = done;
        })
    }

    /// Reads the submission's manifest `n` at `url` (and its `link` pages): its files become
    /// inputs. A manifest that cannot be read is reported, and the submission goes on.
    fn read_manifest(&mut self, request: &Request, n: usize, url: &str) -> Result<(), Stop> {
        let mut next = Some(url.to_string());
        let mut pages = 0;
        while let Some(page) = next.take() {
            pages += 1;
            let read = if pages > MAX_PAGES {
                Err(FhirError::bad_request(
                    IssueCode::TooCostly,
                    format!("the manifest has more than {MAX_PAGES} pages"),
                ))
            } else {
                self.manifest_page(&page, &request.headers)
            };
            match read {
                Ok((files, link)) => {
                    self.resume
                        .fetched
                        .extend(files.into_iter().map(|(resource_type, url)| Input {
                            resource_type,
                            url,
                            manifest: Some(n),
                            unread: false,
                        }));
                    next = link;
                }
                // Listed as an input not to read, so that its report names its manifest.
                Err(error) => {
                    let place = request.inputs.len() + self.resume.fetched.len();
                    self.resume.fetched.push(Input {
                        resource_type: None,
                        url: page.clone(),
                        manifest: Some(n),
                        unread: true,
                    });
                    self.reject(place, &page, None, &error)?;
                }
            }
        }
        Ok(())
    }

    /// The files (type, absolute URL) and the `next` link of one manifest page.
    fn manifest_page(
        &self,
        url: &str,
        headers: &[(String, String)],
    ) -> Result<(Listed, Option<String>), FhirError> {
        let reader = input::open(&self.imports.sources, url, headers)?;
        let mut bytes = Vec::new();
        reader
            .take(MAX_MANIFEST + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| FhirError::bad_request(IssueCode::Exception, format!("{url}: {e}")))?;
        if bytes.len() as u64 > MAX_MANIFEST {
            return Err(FhirError::bad_request(
                IssueCode::TooCostly,
                format!("the manifest {url} is larger than {MAX_MANIFEST} bytes"),
            ));
        }
        let manifest: Value = serde_json::from_slice(&bytes).map_err(|e| {
            FhirError::bad_request(
                IssueCode::Structure,
                format!("the manifest {url} is not JSON: {e}"),
            )
        })?;
        let base = reqwest::Url::parse(url).ok();
        let absolute = |link: &str| -> Result<String, FhirError> {
            match &base {
                Some(base) => base.join(link).map(|u| u.to_string()),
                None => reqwest::Url::parse(link).map(|u| u.to_string()),
            }
            .map_err(|e| {
                FhirError::bad_request(
                    IssueCode::Invalid,
                    format!("the manifest {url} lists {link}, which is not a URL: {e}"),
                )
            })
        };
        let mut files = Vec::new();
        for output in manifest["output"].as_array().into_iter().flatten() {
            let link = output["url"].as_str().ok_or_else(|| {
                FhirError::bad_request(
                    IssueCode::Required,
                    format!("the manifest {url} has an output without a url"),
                )
            })?;
            let resource_type = output["type"].as_str().map(String::from);
            files.push((resource_type, absolute(link)?));
        }
        let next = manifest["link"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|link| link["relation"] == "next")
            .and_then(|link| link["url"].as_str())
            .map(absolute)
            .transpose()?;
        Ok((files, next))
    }
}

/// The test pause (`FHIRLAKE_TEST_IMPORT_PAUSE=K`, see `jobs`), in debug builds only.
mod pause {
    use super::*;

    pub struct Pause {
        /// Pause, until the job stops, once this many lines are settled.
        after: u64,
    }

    impl Pause {
        #[cfg(debug_assertions)]
        pub fn from_env() -> Option<Pause> {
            let after = std::env::var("FHIRLAKE_TEST_IMPORT_PAUSE").ok()?;
            Some(Pause {
                after: after.parse().ok()?,
            })
        }

        #[cfg(not(debug_assertions))]
        pub fn from_env() -> Option<Pause> {
            None
        }

        /// Pauses until the job stops when `settled` reached the count.
        pub fn after(&mut self, context: &Context, settled: u64) -> Result<(), Stop> {
            if settled < self.after {
                return Ok(());
            }
            tracing::warn!(settled, "import paused by FHIRLAKE_TEST_IMPORT_PAUSE");
            context.progress(settled, format!("paused at {settled} resources"));
            loop {
                context.check()?;
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}
