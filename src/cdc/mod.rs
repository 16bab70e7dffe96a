//! The change stream: the change log turned into events for consumers outside the server.
//!
//! - [`event`]: a committed version as a CloudEvents 1.0 event;
//! - [`checkpoint`]: a durable consumer's position, stored without a transaction per commit;
//! - [`filter`]: which changes a consumer wants (types, search criteria);
//! - [`feed`]: the fan-out to live stream consumers (SSE, WebSocket), each from its offset;
//! - [`subscriptions`]: FHIR R4 Subscriptions (rest-hook), with retries and durable positions;
//! - [`endpoints`]: where rest-hook notifications may go (no loopback, private or metadata
//!   addresses unless allowed);
//! - [`sink`]: the NATS JetStream sink;
//! - [`retention`]: trimming the log, never past a consumer's checkpoint.
//!
//! Every consumer reads the change log from the store (`store::log`) by its own offset, so
//! none can lose a change while it is away, and none slows the writers down.

pub mod checkpoint;
pub mod endpoints;
pub mod event;
pub mod feed;
pub mod filter;
pub mod retention;
pub mod sink;
pub mod subscriptions;
