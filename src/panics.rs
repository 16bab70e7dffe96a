//! Panics contained: what a caught panic said, the log line every panic writes, and the
//! panics the tests inject.
//!
//! A panic is a defect of fhirlake, never something a client may cause on purpose; when one
//! happens anyway, it costs the request (or the batch) it happened in and nothing else:
//! - a request handler: the HTTP middleware (`api::request_log`) catches it at the handler
//!   boundary and answers 500 with an OperationOutcome naming the request id;
//! - the writer thread (`store::commit`): the group of requests it was committing fails with
//!   500, nothing of it is stored, and the writer takes the next group;
//! - the indexer (`search::indexer`): a search parameter whose extraction panics is left out of
//!   that resource's document; a batch whose commit panics is rolled back and retried.
//!
//! This needs `panic = "unwind"`, which Cargo.toml's profiles set explicitly. The injected
//! panics exist in debug builds only, when `FHIRLAKE_TEST_FAULTS` is set.

use std::any::Any;

/// The message a panic was raised with (`panic!("...")`, `expect`, an index out of bounds).
pub fn message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a panic without a message)")
}

/// Makes every panic write one error log line (instead of the default text on stderr), with
/// its message and location, and the backtrace when `RUST_BACKTRACE` asks for one. The line
/// is written in the span that was current, so a panic inside a request names its request id.
pub fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(ToString::to_string).unwrap_or_default();
        let backtrace = std::backtrace::Backtrace::capture();
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            tracing::error!(
                panic = message(info.payload()),
                %location,
                thread,
                %backtrace,
                "panic"
            );
        } else {
            tracing::error!(panic = message(info.payload()), %location, thread, "panic");
        }
    }));
}

/// Where the tests inject a panic, and the key that triggers it there.
///
/// Testing only: [`inject`] does nothing in a release build (`debug_assertions` off, so a
/// client of a release binary cannot reach it at all), and in a debug build only when the
/// environment variable `FHIRLAKE_TEST_FAULTS` is set at start. The tests need it because every
/// real panic found is a defect that gets fixed, after which no request reaches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A request handler, on a request for an unknown path ending in `/fault-handler`.
    Handler,
    /// The writer thread, while it applies a write of a resource with the id `fault-writer`.
    Writer,
    /// The indexer, while it extracts the search parameters of a resource with the id
    /// `fault-extract`.
    Extract,
    /// The indexer, while it adds the resource with the id `fault-index-commit` to a batch,
    /// the first time only (a retry succeeds).
    IndexCommit,
}

impl Fault {
    /// The key (an id, or the last path segment) that triggers the fault.
    pub fn trigger(self) -> &'static str {
        match self {
            Fault::Handler => "fault-handler",
            Fault::Writer => "fault-writer",
            Fault::Extract => "fault-extract",
            Fault::IndexCommit => "fault-index-commit",
        }
    }
}

/// Panics when the tests enabled faults and `key` is `fault`'s trigger; see [`Fault`].
#[cfg(debug_assertions)]
pub fn inject(fault: Fault, key: &str) {
    use std::sync::LazyLock;
    use std::sync::atomic::{AtomicBool, Ordering};
    static ENABLED: LazyLock<bool> =
        LazyLock::new(|| std::env::var_os("FHIRLAKE_TEST_FAULTS").is_some());
    static INDEX_COMMIT_FIRED: AtomicBool = AtomicBool::new(false);
    if !*ENABLED || key != fault.trigger() {
        return;
    }
    if fault == Fault::IndexCommit && INDEX_COMMIT_FIRED.swap(true, Ordering::Relaxed) {
        return;
    }
    panic!("a fault injected by the tests: {fault:?}");
}

/// Release builds: nothing.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn inject(_fault: Fault, _key: &str) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_of_str_and_string_payloads() {
        let caught = std::panic::catch_unwind(|| panic!("plain")).unwrap_err();
        assert_eq!(message(&*caught), "plain");
        let caught = std::panic::catch_unwind(|| panic!("formatted {}", 7)).unwrap_err();
        assert_eq!(message(&*caught), "formatted 7");
        let caught = std::panic::catch_unwind(|| std::panic::panic_any(7u8)).unwrap_err();
        assert_eq!(message(&*caught), "(a panic without a message)");
    }
}
