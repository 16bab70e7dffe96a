//! A job's status URL and files (the FHIR Asynchronous Bulk Interaction Pattern):
//! `GET [base]/_jobs/{id}` polls, `DELETE` cancels, `GET [base]/_jobs/{id}/files/{name}`
//! downloads a file of a completed job.
//!
//! Polling answers 202 with `X-Progress` and `Retry-After` while the job is queued or running,
//! 200 with the manifest (`application/json`, `Expires` when its files go) once it is complete,
//! the failure's status with its OperationOutcome when it failed, and 429 with `Retry-After`
//! when polled again within half the poll interval (`--job-poll-interval`). A job that does not
//! exist, is another owner's, or was cancelled or has expired is 404, whichever it is.
//!
//! A file is served to its job's owner only, with a token still allowed to read its type, as
//! `application/fhir+ndjson`: gzip-compressed (`Content-Encoding: gzip`) to a client whose
//! `Accept-Encoding` takes gzip, plain to the others, whichever way it is stored
//! (`--export-compression`), streamed from the file (never all in memory). Only names the job's
//! record lists are served: a name is never a path.
//!
//! With `--export-store` the files are objects in object storage, and they are still served
//! here, streamed from the store, rather than handed out as presigned URLs of the store: the
//! manifest keeps fhirlake's file URLs and `requiresAccessToken: true`. That is what a bulk
//! client of a SMART Backend Services server expects, and what the Bulk Data IG asks of such
//! files (protected the same way as the kick-off): each download checks the owner and that the
//! token may still read the type, where a presigned URL is a capability anyone holding it can
//! use until it expires, whatever became of the token. A presigned URL would also have to be
//! fetched without the token (S3 refuses a bearer token next to a query signature, so the
//! manifest would say `requiresAccessToken: false`), would expire after at most seven days
//! (SigV4) whatever `--job-retention` says, would need the bucket reachable from every client
//! (not a private bucket or endpoint), and would not negotiate gzip with `Accept-Encoding`.

use super::export::accepts;
use super::http::{FHIR_JSON, base_url, header_str};
use super::{ApiResult, AppState};
use crate::auth::Access;
use crate::auth::scope::Permission;
use crate::fhir::datetime::format_http_date;
use crate::fhir::outcome::outcome;
use crate::fhir::{FhirError, IssueCode, Severity};
use crate::jobs::export::NDJSON;
use crate::jobs::sink::Stored;
use crate::jobs::{Content, Job, Kind, Owner, Poll, State as JobState, is_job_id, no_job};
use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use std::io::Read;
use std::time::Duration;

type State = web::Data<AppState>;

/// `GET [base]/_jobs/{id}`: the job's status.
pub async fn status(
    req: HttpRequest,
    state: State,
    access: Access,
    path: web::Path<String>,
) -> ApiResult {
    let id = path.into_inner();
    let owner = Owner::of(&access);
    let poll = is_job_id(&id)
        .then(|| state.jobs.poll(&id, &owner))
        .flatten();
    let (job, progress) = match poll {
        None => return Err(no_job(&id).into()),
        Some(Poll::TooSoon(wait)) => {
            let error = FhirError::new(
                429,
                IssueCode::Transient,
                format!(
                    "this job was polled less than {} ms ago: poll at most every Retry-After \
                     seconds",
                    state.jobs.settings().poll_interval.as_millis() / 2
                ),
            );
            return Ok(too_many(&error, wait));
        }
        Some(Poll::Found(job, progress)) => (job, progress),
    };
    let retry_after = seconds(state.jobs.settings().poll_interval);
    match job.state {
        JobState::Queued | JobState::Running => {
            let note = match job.state {
                JobState::Queued => "queued".to_string(),
                _ if progress.note.is_empty() => "running".to_string(),
                _ => progress.note,
            };
            Ok(HttpResponse::Accepted()
                .insert_header(("X-Progress", progress_header(&note)))
                .insert_header((header::RETRY_AFTER, retry_after))
                .finish())
        }
        JobState::Completed => {
            let base = base_url(&req, &state);
            let manifest = match job.kind {
                Kind::Export => {
                    let request = crate::jobs::export::request_of(&job)?;
                    crate::jobs::export::manifest(&job, &request, &base)
                }
                Kind::Erasure => crate::jobs::erase::manifest(&job, &base)?,
                Kind::Import => {
                    let request = crate::jobs::import::request_of(&job)?;
                    crate::jobs::import::manifest(&job, &request, &base)
                }
                Kind::ViewExport => crate::jobs::views::view_export::result(&job, &base)?,
            };
            let mut response = HttpResponse::Ok();
            if let Some(expires) = expires(&job, state.jobs.settings().retention) {
                response.insert_header((header::EXPIRES, expires));
            }
            // A view export's result is a Parameters resource; the others are manifests.
            let media = match job.kind {
                Kind::ViewExport => FHIR_JSON,
                _ => "application/json",
            };
            Ok(response.content_type(media).body(manifest.to_string()))
        }
        JobState::Failed => {
            let failure = job.failure.unwrap_or_else(|| crate::jobs::record::Failure {
                status: 500,
                outcome: FhirError::internal("the job failed").to_outcome(),
            });
            Ok(HttpResponse::build(
                actix_web::http::StatusCode::from_u16(failure.status)
                    .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
            )
            .content_type(FHIR_JSON)
            .body(failure.outcome.to_string()))
        }
        JobState::Cancelled => Err(no_job(&id).into()),
    }
}

/// `DELETE [base]/_jobs/{id}`: cancels the job (or, finished, removes its files): 202.
pub async fn cancel(state: State, access: Access, path: web::Path<String>) -> ApiResult {
    let id = path.into_inner();
    if !is_job_id(&id) || !state.jobs.cancel(&id, &Owner::of(&access)).await? {
        return Err(no_job(&id).into());
    }
    let cancelled = outcome(
        Severity::Information,
        IssueCode::Informational,
        &format!("job {id} is cancelled and its files are removed"),
        None,
    );
    Ok(HttpResponse::Accepted()
        .content_type(FHIR_JSON)
        .body(cancelled.to_string()))
}

/// `GET [base]/_jobs/{id}/files/{name}`: a file of a completed job.
pub async fn file(
    req: HttpRequest,
    state: State,
    access: Access,
    path: web::Path<(String, String)>,
) -> ApiResult {
    let (id, name) = path.into_inner();
    let missing = || FhirError::not_found(format!("job {id} has no file {name}"));
    let job = is_job_id(&id)
        .then(|| state.jobs.get(&id, &Owner::of(&access)))
        .flatten()
        .filter(|job| job.state == JobState::Completed)
        .ok_or_else(|| no_job(&id))?;
    let output = job
        .outputs
        .iter()
        .find(|output| output.name == name)
        .ok_or_else(missing)?;
    if output.content == Content::Output {
        access.require(Permission::Read, Some(&output.resource_type))?;
    }
    // A view export's files are in the format it asked for (never gzip-encoded here: a
    // Parquet file compresses itself, and the others are stored plain).
    let media = match job.kind {
        Kind::ViewExport => crate::jobs::views::view_export::media_type(&output.name),
        _ => NDJSON,
    };
    if !accepts(&req, &[media, "application/ndjson", "ndjson"]) {
        return Err(FhirError::new(
            406,
            IssueCode::NotSupported,
            format!("the files of this job are {media}"),
        )
        .into());
    }
    // Off the HTTP workers: opening an object waits on the object store.
    let (sink, name) = (state.jobs.sink().clone(), output.name.clone());
    let stored = web::block(move || sink.open(&job.id, &name))
        .await
        .map_err(|e| FhirError::internal(format!("the file cannot be opened: {e}")))?
        .map_err(|e| FhirError::internal(format!("the file cannot be read: {e}")))?
        .ok_or_else(missing)?;
    let gzip = media == NDJSON && accepts_gzip(&req);
    let mut response = HttpResponse::Ok();
    response.content_type(media);
    if gzip {
        response.insert_header((header::CONTENT_ENCODING, "gzip"));
    }
    Ok(response.streaming(stream(stored, gzip)))
}

/// The bytes of `stored`, gzip-compressed when `gzip`, read off the HTTP workers.
fn stream(
    stored: Stored,
    gzip: bool,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    actix_web::rt::task::spawn_blocking(move || {
        let mut reader: Box<dyn Read> = match (stored.gzip, gzip) {
            (true, true) | (false, false) => stored.reader,
            (true, false) => Box::new(flate2::read::MultiGzDecoder::new(stored.reader)),
            (false, true) => Box::new(flate2::read::GzEncoder::new(
                stored.reader,
                flate2::Compression::fast(),
            )),
        };
        let mut buffer = vec![0u8; 1 << 16];
        loop {
            let chunk = match reader.read(&mut buffer) {
                Ok(0) => return,
                Ok(n) => Ok(Bytes::copy_from_slice(&buffer[..n])),
                Err(error) => Err(error),
            };
            let failed = chunk.is_err();
            // The client went away: stop reading.
            if sender.blocking_send(chunk).is_err() || failed {
                return;
            }
        }
    });
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    })
}

/// Whether `Accept-Encoding` takes gzip (by name or `*`, with a quality above 0).
fn accepts_gzip(req: &HttpRequest) -> bool {
    header_str(req.headers(), header::ACCEPT_ENCODING).is_some_and(|accepted| {
        accepted.split(',').any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let quality = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .map_or(1.0, |q| q.trim().parse::<f32>().unwrap_or(0.0));
            (name == "gzip" || name == "*") && quality > 0.0
        })
    })
}

/// The 202 of a kick-off: the job's status URL in `Content-Location`, and an
/// OperationOutcome saying so (`what`: the job's kind, for the message).
pub(super) fn accepted(base: &str, id: &str, what: &str) -> HttpResponse {
    let accepted = outcome(
        Severity::Information,
        IssueCode::Informational,
        &format!("{what} {id} accepted: poll its status at the Content-Location"),
        None,
    );
    HttpResponse::Accepted()
        .insert_header((header::CONTENT_LOCATION, crate::jobs::status_url(base, id)))
        .content_type(FHIR_JSON)
        .body(accepted.to_string())
}

/// A 429 with `Retry-After` (in whole seconds, at least 1).
pub(super) fn too_many(error: &FhirError, wait: Duration) -> HttpResponse {
    HttpResponse::TooManyRequests()
        .insert_header((header::RETRY_AFTER, seconds(wait)))
        .content_type(FHIR_JSON)
        .body(error.to_outcome().to_string())
}

/// `Retry-After` in whole seconds, at least 1.
fn seconds(wait: Duration) -> String {
    wait.as_secs_f64().ceil().max(1.0).to_string()
}

/// `X-Progress`: under 100 characters, printable ASCII.
fn progress_header(note: &str) -> String {
    note.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(99)
        .collect()
}

/// When a finished job's files go (`Expires`).
fn expires(job: &Job, retention: Duration) -> Option<String> {
    let retention = retention.as_micros().min(i64::MAX as u128) as i64;
    job.finished
        .map(|finished| format_http_date(finished.saturating_add(retention)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn gzip_is_served_to_those_who_take_it() {
        for (accepted, gzip) in [
            ("gzip", true),
            ("deflate, gzip;q=0.5", true),
            ("*", true),
            ("gzip;q=0", false),
            ("br", false),
        ] {
            let req = TestRequest::default()
                .insert_header(("Accept-Encoding", accepted))
                .to_http_request();
            assert_eq!(accepts_gzip(&req), gzip, "{accepted}");
        }
        assert!(!accepts_gzip(&TestRequest::default().to_http_request()));
        assert_eq!(seconds(Duration::from_millis(100)), "1");
        assert_eq!(seconds(Duration::from_millis(2500)), "3");
        assert_eq!(progress_header(&"é".repeat(200)), "");
        assert_eq!(progress_header(&"x".repeat(200)).len(), 99);
    }
}
