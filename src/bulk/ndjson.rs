//! The line loop of every NDJSON import (`fhirlake import` and the import jobs): [`load`]
//! reads an input line by line, takes each line in as a resource (JSON, the expected type,
//! the writer's permission, the validation policy) and stores it through the normal write
//! path (change log, index) as an update-as-create when it has an id, else as a create with
//! the id [`Target::new_id`] gives.
//!
//! Invariants:
//! - **Streaming.** At most [`CHUNK`] lines are held while they are checked (on every core),
//!   each at most [`MAX_LINE`] bytes (a longer line is rejected, read past and never held),
//!   and at most [`WINDOW`] writes wait for their commit, so memory does not grow with the
//!   input. The writes of a window go to the writer together, so it groups them into few
//!   transactions. A chunk's lines are compared with their current versions before the
//!   earlier ones of the chunk are committed: the writer's check that the version compared is
//!   still current makes a repeated id a new version, never a lost one.
//! - **In order.** Each line with content is *settled* (stored, or rejected with why) exactly
//!   once, in line order: when line `n` is settled, every line before it is, so a caller may
//!   make a checkpoint there. Blank lines are counted (line numbers are those of the file) and
//!   skipped.
//! - **Resumable.** `skip` lines are read past unparsed: a resumed import gives the same line
//!   numbers. A line committed before a crash and loaded again is an update of the same
//!   content, which the write path keeps as the current version (no new version).

use crate::fhir::resource::{check_value, id_of, parse_json};
use crate::fhir::{FhirError, IssueCode};
use crate::store::Store;
use crate::store::commit::{Action, Applied, CommitError, Request, Write};
use crate::validate::Validator;
use rayon::prelude::*;
use serde_json::Value;
use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, BufRead};
use std::pin::Pin;

/// How many writes may wait for their commit at once.
pub const WINDOW: usize = 2_000;

/// How many lines are checked at once, on every core.
const CHUNK: usize = 64;

/// The longest line read (bytes): the server's default largest body.
pub const MAX_LINE: usize = 32 * 1024 * 1024;

/// A write sent to the writer, until it is committed or refused.
pub type Pending = Pin<Box<dyn Future<Output = Result<Vec<Applied>, CommitError>> + Send>>;

/// What became of a line.
#[derive(Debug)]
pub enum Settled {
    /// Stored (or found stored already, unchanged), with the validator's warnings.
    Stored {
        resource_type: String,
        warnings: usize,
    },
    Rejected(FhirError),
}

/// Where and how lines are stored.
pub struct Target<'a> {
    pub store: &'a Store,
    pub validator: &'a Validator,
    /// The type every line must be (an input's declared type), when there is one.
    pub resource_type: Option<&'a str>,
    /// Whether the importer may write a type: an error rejects the line.
    pub may_write: &'a (dyn Fn(&str) -> Result<(), FhirError> + Sync),
    /// The id of a resource of line `n` without one, and whether it is written as an update
    /// (an id that stays the same when the line is loaded again) or as a create.
    pub new_id: &'a (dyn Fn(u64) -> (String, bool) + Sync),
}

/// Why a load stopped before the end of its input.
#[derive(Debug)]
pub enum Stopped<E> {
    /// The input could not be read after line `line`.
    Read { line: u64, error: io::Error },
    /// The caller's `settled` asked to stop.
    Caller(E),
}

/// Loads the lines of `reader` after the first `skip` ones into `target`: each settled line
/// goes to `settled` (its number, from 1, and what became of it), in order. `wait` runs a
/// pending write to its end (on the caller's runtime). Returns the number of lines read.
pub fn load<E>(
    reader: &mut dyn BufRead,
    skip: u64,
    target: &Target,
    wait: &dyn Fn(Pending) -> Result<Vec<Applied>, CommitError>,
    settled: &mut dyn FnMut(u64, Settled) -> Result<(), E>,
) -> Result<u64, Stopped<E>> {
    let mut line = Vec::new();
    let mut number = 0u64;
    let mut failure = None;
    let mut lines = std::iter::from_fn(|| {
        loop {
            match next_line(reader, &mut line) {
                Ok(None) => return None,
                Err(error) => {
                    failure = Some(error);
                    return None;
                }
                Ok(Some(whole)) => {
                    number += 1;
                    if number <= skip || (whole && line.iter().all(u8::is_ascii_whitespace)) {
                        continue;
                    }
                    let value = if whole {
                        parse_json(&line)
                    } else {
                        Err(FhirError::new(
                            413,
                            IssueCode::TooCostly,
                            format!("the line is longer than {MAX_LINE} bytes"),
                        ))
                    };
                    return Some((number, value));
                }
            }
        }
    });
    store_all(&mut lines, target, wait, settled).map_err(Stopped::Caller)?;
    match failure {
        // What was read before is settled, so the caller knows how far it got.
        Some(error) => Err(Stopped::Read {
            line: number,
            error,
        }),
        None => Ok(number),
    }
}

/// Stores `items` (numbered resources, or why one is not) into `target`, [`WINDOW`] writes
/// waiting at most, each settled in order through `settled`: the loop of [`load`], and of
/// `fhirlake import`'s Bundles of resources.
pub fn store_all<E>(
    items: &mut dyn Iterator<Item = (u64, Result<Value, FhirError>)>,
    target: &Target,
    wait: &dyn Fn(Pending) -> Result<Vec<Applied>, CommitError>,
    settled: &mut dyn FnMut(u64, Settled) -> Result<(), E>,
) -> Result<(), E> {
    let mut in_flight: VecDeque<(u64, Slot)> = VecDeque::with_capacity(WINDOW + CHUNK);
    let settle = |slot: Slot| match slot {
        Slot::Done(done) => done,
        Slot::Pending {
            write,
            resource_type,
            warnings,
        } => match wait(write) {
            Ok(_) => Settled::Stored {
                resource_type,
                warnings,
            },
            Err(refused) => Settled::Rejected(refused.error),
        },
    };
    loop {
        let chunk: Vec<(u64, Result<Value, FhirError>)> = (&mut *items).take(CHUNK).collect();
        if chunk.is_empty() {
            break;
        }
        // Checking and validating is most of a line's cost on this side of the writer: on
        // every core; the writes are then sent in line order.
        let taken: Vec<(u64, Result<Taken, FhirError>)> = chunk
            .into_par_iter()
            .map(|(number, value)| (number, value.and_then(|value| take(target, value, number))))
            .collect();
        for (number, taken) in taken {
            let slot = match taken {
                Ok(taken) => Slot::Pending {
                    write: Box::pin(target.store.submit_request(taken.request)),
                    resource_type: taken.resource_type,
                    warnings: taken.warnings,
                },
                Err(error) => Slot::Done(Settled::Rejected(error)),
            };
            in_flight.push_back((number, slot));
            if in_flight.len() > WINDOW {
                let (n, slot) = in_flight.pop_front().expect("a full window");
                settled(n, settle(slot))?;
            }
        }
    }
    for (n, slot) in in_flight {
        settled(n, settle(slot))?;
    }
    Ok(())
}

/// A line on its way.
enum Slot {
    Done(Settled),
    Pending {
        write: Pending,
        resource_type: String,
        warnings: usize,
    },
}

/// A resource taken in: its write's request, ready to send.
struct Taken {
    request: Request,
    resource_type: String,
    warnings: usize,
}

/// Takes resource `number` in (checked, validated, compared with its current version) and
/// makes its write.
fn take(target: &Target, value: Value, number: u64) -> Result<Taken, FhirError> {
    let intake = check_value(value, target.resource_type)?;
    let resource_type = intake.resource["resourceType"]
        .as_str()
        .expect("a checked resource has a type")
        .to_string();
    (target.may_write)(&resource_type)?;
    let warnings = target
        .validator
        .check_write(&intake.resource, &intake.dropped)?
        .len();
    let resource = intake.resource;
    let (id, action) = match id_of(&resource).map(String::from) {
        Some(id) => (id, Action::Update(resource)),
        None => match (target.new_id)(number) {
            (id, true) => (id, Action::Update(resource)),
            (id, false) => (id, Action::Create(resource)),
        },
    };
    let write = Write {
        resource_type: resource_type.clone(),
        id,
        action,
        if_match: None,
    };
    Ok(Taken {
        request: target.store.request(vec![write]),
        resource_type,
        warnings,
    })
}

/// Reads the next line into `line` (without its `\n` or `\r\n`): `Some(true)` when it was
/// read whole, `Some(false)` when it was longer than [`MAX_LINE`] (read past, not kept),
/// `None` at the end.
fn next_line(reader: &mut dyn BufRead, line: &mut Vec<u8>) -> io::Result<Option<bool>> {
    line.clear();
    let mut overlong = false;
    let mut any = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if available.is_empty() {
            break;
        }
        any = true;
        let (chunk, used, end) = match available.iter().position(|b| *b == b'\n') {
            Some(at) => (&available[..at], at + 1, true),
            None => (available, available.len(), false),
        };
        if !overlong {
            if line.len() + chunk.len() > MAX_LINE {
                overlong = true;
                line.clear();
                line.shrink_to(1 << 16);
            } else {
                line.extend_from_slice(chunk);
            }
        }
        reader.consume(used);
        if end {
            break;
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(any.then_some(!overlong))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn lines_are_read_whole_numbered_and_bounded() {
        let long = "x".repeat(MAX_LINE + 10);
        let text = format!("a\r\n\n{long}\nb\nc");
        let mut reader = Cursor::new(text.into_bytes());
        let mut line = Vec::new();
        let mut seen = Vec::new();
        while let Some(whole) = next_line(&mut reader, &mut line).unwrap() {
            seen.push((String::from_utf8(line.clone()).unwrap(), whole));
        }
        assert_eq!(
            seen,
            [
                ("a".to_string(), true),
                (String::new(), true),
                (String::new(), false),
                ("b".into(), true),
                ("c".into(), true),
            ]
        );
        assert!(line.capacity() <= MAX_LINE, "the long line is not kept");
    }
}
