//! The change stream over HTTP: `GET /fhir/$changes` (pull a page by offset),
//! `GET /fhir/$changes/stream` (Server-Sent Events) and `GET /fhir/$changes/websocket`.
//!
//! All three take `_type` (comma-separated, may repeat), `criteria` (`Type?params`, matched on
//! each change's own version) and `content` (`full`, the default, or `id-only`); the pull takes
//! `since` and `_count`, the streams `since` or (SSE) `Last-Event-ID`. An offset is a change's
//! seq, the `id` of its event: a consumer resumes from the last id it processed (an offset past
//! the last change is 400, one removed by retention 410). The SSE stream sends a keep-alive
//! comment, the WebSocket a ping, every [`KEEP_ALIVE`] (so a closed client is noticed at the
//! next write); a consumer that falls behind by more than its buffer gets `event: reconnect`
//! with the offset to resume from (SSE) or a close with code 1013 and `since=N` (WebSocket).
//!
//! The stream carries every version of every resource, so all three need read on every
//! resource of every type, unconfined (a scope such as `system/*.r`): 403 otherwise.

use super::http::{Format, header_str, negotiate, query_pairs};
use super::{ApiResult, AppState};
use crate::auth::Access;
use crate::auth::scope::Permission;
use crate::cdc::event::{Content, to_json};
use crate::cdc::feed::{Feed, Next};
use crate::cdc::filter::Filter;
use crate::fhir::{FhirError, IssueCode};
use crate::store::log::LogError;
use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use std::time::Duration;

type State = web::Data<AppState>;

/// How often an idle stream shows it is alive (and finds out whether its client is).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What a consumer asked for.
struct Query {
    since: u64,
    count: Option<usize>,
    filter: Filter,
    content: Content,
}

/// Reads the query of a change-stream request; `paged` requests (the pull) also take
/// `_count`. Unknown parameters are refused.
fn query(req: &HttpRequest, state: &AppState, paged: bool) -> Result<Query, FhirError> {
    let invalid = |text: String| FhirError::bad_request(IssueCode::Invalid, text);
    let number = |name: &str, value: &str| {
        value
            .parse::<u64>()
            .map_err(|_| invalid(format!("{name}={value} is not a whole number")))
    };
    let (mut since, mut count, mut content) = (0, None, Content::Full);
    let (mut types, mut criteria) = (Vec::new(), None);
    let pairs = query_pairs(req);
    for (name, value) in &pairs {
        match name.as_str() {
            "since" => since = number(name, value)?,
            "_count" if paged => count = Some(number(name, value)? as usize),
            "_type" => types.push(value.as_str()),
            "criteria" if criteria.is_none() => criteria = Some(value.as_str()),
            "criteria" => return Err(invalid("criteria may be given once".into())),
            "content" => content = Content::parse(value)?,
            "_format" => {}
            _ => {
                return Err(FhirError::bad_request(
                    IssueCode::NotSupported,
                    format!("{name} is not a parameter of {}", req.path()),
                ));
            }
        }
    }
    let filter = Filter::parse(state.search.registry, &types, criteria)?;
    let count = count.map(|c| c.clamp(1, state.config.max_count));
    Ok(Query {
        since,
        count,
        filter,
        content,
    })
}

/// `GET /fhir/$changes?since=N&_count=M`: `{"events": [...], "next": N}`, the events after
/// `since` oldest first, and the offset to ask from next (past the changes filtered out, so
/// `next` moves even when `events` is empty).
pub async fn pull(req: HttpRequest, state: State, access: Access) -> ApiResult {
    if negotiate(&req)? == Format::Xml {
        return Err(FhirError::new(
            406,
            IssueCode::NotSupported,
            "$changes answers in JSON (CloudEvents) only",
        )
        .into());
    }
    access.require_everything(Permission::Read)?;
    let query = query(&req, &state, true)?;
    check_offset(&state, query.since)?;
    let count = query.count.unwrap_or(state.config.default_count).max(1);
    let store = &state.store;
    let page = store
        .log_after(query.since, count, query.filter.types())
        .map_err(FhirError::from)?;
    let batch = crate::cdc::filter::Batch::new(page.entries.into_iter().map(Into::into).collect());
    let events = query.filter.select(&batch, store, state.search.registry)?;
    let mut body = b"{\"events\":[".to_vec();
    for (n, event) in events.iter().enumerate() {
        if n > 0 {
            body.push(b',');
        }
        body.extend(to_json(event, state.changes.source(), query.content));
    }
    body.extend(format!("],\"next\":{}}}", page.next).into_bytes());
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

/// An offset must be one this server gave out: at most the last committed change (a larger
/// one, from another data directory, would skip changes to come), and not removed by
/// retention (410).
fn check_offset(state: &AppState, after: u64) -> Result<(), FhirError> {
    let head = state.store.committed_seq();
    if after > head {
        return Err(FhirError::bad_request(
            IssueCode::Invalid,
            format!("offset {after} is after the last change of this server, {head}"),
        ));
    }
    let first = state.store.first_seq()?;
    if after + 1 < first {
        return Err(LogError::Trimmed { first }.into());
    }
    Ok(())
}

/// Checks the query of a stream and opens its feed from `since`, or from `Last-Event-ID`
/// when `sse`.
fn open(req: &HttpRequest, state: &AppState, sse: bool) -> Result<(Feed, Content), FhirError> {
    let query = query(req, state, false)?;
    let mut after = query.since;
    if sse
        && let Some(last) = header_str(
            req.headers(),
            header::HeaderName::from_static("last-event-id"),
        )
    {
        after = last.trim().parse().map_err(|_| {
            FhirError::bad_request(
                IssueCode::Invalid,
                format!("Last-Event-ID: {last} is not an event id of this stream"),
            )
        })?;
    }
    check_offset(state, after)?;
    Ok((state.changes.feed(query.filter, after), query.content))
}

/// `GET /fhir/$changes/stream`: Server-Sent Events, one per change (`id:` its seq, `data:`
/// the CloudEvent).
pub async fn stream(req: HttpRequest, state: State, access: Access) -> ApiResult {
    negotiate_sse(&req)?;
    access.require_everything(Permission::Read)?;
    let (feed, content) = open(&req, &state, true)?;
    let source = state.changes.source().to_string();
    let keep_alive = tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    // The first chunk tells EventSource clients to reconnect after one second.
    let start = futures_util::stream::once(async { Ok(Bytes::from_static(b"retry: 1000\n\n")) });
    let events = futures_util::stream::unfold(Some((feed, keep_alive)), move |state| {
        let source = source.clone();
        async move {
            let (mut feed, mut keep_alive) = state?;
            let (chunk, done) = tokio::select! {
                next = feed.next() => match next {
                    Ok(Next::Events(events)) => {
                        let mut chunk = Vec::new();
                        for event in &events {
                            chunk.extend(format!("id: {}\ndata: ", event.change.seq).into_bytes());
                            chunk.extend(to_json(event, &source, content));
                            chunk.extend(b"\n\n");
                        }
                        (chunk, false)
                    }
                    Ok(Next::Overrun { after }) => (
                        format!("event: reconnect\ndata: {{\"since\":{after}}}\n\n").into_bytes(),
                        true,
                    ),
                    Ok(Next::Closed) => return None,
                    Err(error) => {
                        let outcome = error.to_outcome().to_string();
                        (format!("event: error\ndata: {outcome}\n\n").into_bytes(), true)
                    }
                },
                _ = keep_alive.tick() => (b": keep-alive\n\n".to_vec(), false),
            };
            let next = (!done).then_some((feed, keep_alive));
            Some((Ok::<_, actix_web::Error>(Bytes::from(chunk)), next))
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(start.chain(events)))
}

/// SSE answers `text/event-stream`; an `Accept` that excludes it gets 406.
fn negotiate_sse(req: &HttpRequest) -> Result<(), FhirError> {
    let Some(accept) = header_str(req.headers(), header::ACCEPT) else {
        return Ok(());
    };
    let acceptable = accept.split(',').any(|range| {
        let media = range.split(';').next().unwrap_or("").trim();
        matches!(media, "" | "*/*" | "text/*" | "text/event-stream")
    });
    if acceptable {
        Ok(())
    } else {
        Err(FhirError::new(
            406,
            IssueCode::NotSupported,
            format!("Accept: {accept}: this stream is text/event-stream"),
        ))
    }
}

/// `GET /fhir/$changes/websocket`: one text message per change, the CloudEvent.
pub async fn websocket(
    req: HttpRequest,
    body: web::Payload,
    state: State,
    access: Access,
) -> ApiResult {
    access.require_everything(Permission::Read)?;
    let (mut feed, content) = open(&req, &state, false)?;
    let (response, mut session, messages) = actix_ws::handle(&req, body).map_err(|error| {
        FhirError::bad_request(
            IssueCode::Invalid,
            format!(
                "{}: this endpoint takes a WebSocket upgrade ({error})",
                req.path()
            ),
        )
    })?;
    let source = state.changes.source().to_string();
    let mut messages = messages.max_frame_size(64 * 1024);
    actix_web::rt::spawn(async move {
        let mut keep_alive =
            tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
        let reason = loop {
            tokio::select! {
                next = feed.next() => match next {
                    Ok(Next::Events(events)) => {
                        for event in &events {
                            let text = String::from_utf8(to_json(event, &source, content))
                                .expect("events are UTF-8 JSON");
                            if session.text(text).await.is_err() {
                                return;
                            }
                        }
                    }
                    Ok(Next::Overrun { after }) => break Some(actix_ws::CloseReason {
                        code: actix_ws::CloseCode::Again,
                        description: Some(format!("since={after}")),
                    }),
                    Ok(Next::Closed) => break Some(actix_ws::CloseCode::Restart.into()),
                    Err(error) => break Some(actix_ws::CloseReason {
                        code: actix_ws::CloseCode::Policy,
                        description: Some(error.diagnostics.chars().take(120).collect()),
                    }),
                },
                message = messages.next() => match message {
                    Some(Ok(actix_ws::Message::Ping(bytes))) => {
                        if session.pong(&bytes).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(actix_ws::Message::Close(_))) | None | Some(Err(_)) => break None,
                    Some(Ok(_)) => {}
                },
                _ = keep_alive.tick() => {
                    if session.ping(b"").await.is_err() {
                        return;
                    }
                }
            }
        };
        let _ = session.close(reason).await;
    });
    Ok(response)
}
