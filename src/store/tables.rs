//! The redb tables of a data directory and the byte layout of their records.
//!
//! Schema version 6 (see `migrations/`):
//! - `versions` (type, id, vid) -> [`VersionRecord`]: every version of every resource;
//! - `current` (type, id) -> [`CurrentRecord`]: the latest version and whether it is deleted;
//! - `changes` seq -> [`ChangeRecord`]: the change log, one entry per version, seq gap-free
//!   from 1; an erased version's entry is an [`Op::Erased`] entry, and each erasure appends
//!   one more (schema 5);
//! - `type_changes` (type, seq) -> (): the change log by resource type, for type history;
//! - `meta` name -> u64: the schema version;
//! - `checkpoints` consumer name -> seq: the last change a durable consumer of the change log
//!   (a Subscription, a sink) has processed; it needs every change after it (schema 2);
//! - `jobs` job id -> the job's record, JSON that the jobs layer (`src/jobs/`) reads and
//!   writes: the store keeps it opaque (schema 3).
//! - `backend_clients` client id -> JSON: the registered SMART backend clients (schema 4; the
//!   record is `auth::clients::Client`'s, the store keeps its bytes);
//! - `assertion_jtis` (client id, jti) -> [`JtiRecord`]: the client assertions used at the
//!   token endpoint, kept until they lapse, and `assertion_lapses` (lapse, client id, jti) ->
//!   (): the same by the time they lapse, so the lapsed ones are found without a scan
//!   (schema 4).
//!
//! - `erased` seq -> type: the seq of every [`Op::Erased`] entry of `changes`, with its type,
//!   so that history totals leave them out without reading the log (schema 6).
//!
//! All integers are little-endian. Invariant: for every `changes` entry there is one
//! `type_changes` entry with its (type, seq), and for every one that is not [`Op::Erased`]
//! exactly one `versions` entry with its (type, id, vid), and for every one that is, one
//! `erased` entry with its seq and type, all written in the same write transaction; `current`
//! points at the highest vid, and is gone when every version is.

use crate::fhir::datetime::Micros;
use redb::TableDefinition;

pub const VERSIONS: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("versions");
pub const CURRENT: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("current");
pub const CHANGES: TableDefinition<u64, &[u8]> = TableDefinition::new("changes");
pub const TYPE_CHANGES: TableDefinition<(&str, u64), ()> = TableDefinition::new("type_changes");
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub const CHECKPOINTS: TableDefinition<&str, u64> = TableDefinition::new("checkpoints");
pub const ERASED: TableDefinition<u64, &str> = TableDefinition::new("erased");
pub const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
pub const BACKEND_CLIENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("backend_clients");
pub const ASSERTION_JTIS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("assertion_jtis");
pub const ASSERTION_LAPSES: TableDefinition<(u64, &str, &str), ()> =
    TableDefinition::new("assertion_lapses");

/// The key of the schema version in `meta`.
pub const SCHEMA_VERSION_KEY: &str = "schema_version";
/// The `meta` entry of the last `erased` entry whose version's pages a scrub has reached
/// (`store::scrub`); none before the first scrub.
pub const SCRUBBED_THROUGH_KEY: &str = "scrubbed_through";

/// What a version did to its resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The resource came into existence (first version, or the first after a delete).
    Create,
    /// A new version of a live resource.
    Update,
    /// A tombstone.
    Delete,
    /// An erasure (schema 5): the change log's record of a version whose bytes are gone. Both
    /// the entry that wrote the version (rewritten in place, without its version) and the
    /// event appended when it was erased have it; versions never do.
    Erased,
}

/// The interaction that wrote a version, as history's `entry.request.method` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Post,
    Put,
    Delete,
}

impl Op {
    fn to_byte(self) -> u8 {
        match self {
            Op::Create => 1,
            Op::Update => 2,
            Op::Delete => 3,
            Op::Erased => 4,
        }
    }

    fn from_byte(byte: u8) -> Op {
        match byte {
            1 => Op::Create,
            2 => Op::Update,
            4 => Op::Erased,
            _ => Op::Delete,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Erased => "erased",
        }
    }
}

impl Method {
    fn to_byte(self) -> u8 {
        match self {
            Method::Post => 1,
            Method::Put => 2,
            Method::Delete => 3,
        }
    }

    fn from_byte(byte: u8) -> Method {
        match byte {
            1 => Method::Post,
            2 => Method::Put,
            _ => Method::Delete,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// A stored version: `[op][method][lastUpdated: i64][body]`; the body is the resource's JSON,
/// empty for a delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRecord {
    pub op: Op,
    pub method: Method,
    pub last_updated: Micros,
    pub body: Vec<u8>,
}

impl VersionRecord {
    pub fn encode(op: Op, method: Method, last_updated: Micros, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(10 + body.len());
        out.push(op.to_byte());
        out.push(method.to_byte());
        out.extend_from_slice(&last_updated.to_le_bytes());
        out.extend_from_slice(body);
        out
    }

    pub fn decode(bytes: &[u8]) -> VersionRecord {
        VersionRecord {
            op: Op::from_byte(bytes[0]),
            method: Method::from_byte(bytes[1]),
            last_updated: u64_at(bytes, 2) as Micros,
            body: bytes[10..].to_vec(),
        }
    }

    /// The lastUpdated of an encoded record, without copying its body.
    pub fn last_updated_of(bytes: &[u8]) -> Micros {
        u64_at(bytes, 2) as Micros
    }
}

/// The current state of a resource: `[vid][deleted: 0|1][lastUpdated: i64]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurrentRecord {
    pub vid: u64,
    pub deleted: bool,
    pub last_updated: Micros,
}

impl CurrentRecord {
    pub fn encode(&self) -> [u8; 17] {
        let mut out = [0u8; 17];
        out[..8].copy_from_slice(&self.vid.to_le_bytes());
        out[8] = self.deleted as u8;
        out[9..].copy_from_slice(&self.last_updated.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> CurrentRecord {
        CurrentRecord {
            vid: u64_at(bytes, 0),
            deleted: bytes[8] == 1,
            last_updated: u64_at(bytes, 9) as Micros,
        }
    }
}

/// One change-log entry: `[txid][vid][lastUpdated: i64][op][erased: u64, for an erasure only]
/// [type length: u8][type][id]`. `txid` is the seq of the first change of the transaction it
/// belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRecord {
    pub seq: u64,
    pub txid: u64,
    pub resource_type: String,
    pub id: String,
    pub vid: u64,
    pub op: Op,
    pub last_updated: Micros,
    /// For [`Op::Erased`] only: the seq of the change that wrote the erased version. It is
    /// `seq` itself for that change, rewritten in place when its version was erased (it keeps
    /// its lastUpdated and txid); an earlier seq for the event appended by the erasure (its
    /// lastUpdated and txid are the erasure's).
    pub erased: Option<u64>,
}

impl ChangeRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(34 + self.resource_type.len() + self.id.len());
        out.extend_from_slice(&self.txid.to_le_bytes());
        out.extend_from_slice(&self.vid.to_le_bytes());
        out.extend_from_slice(&self.last_updated.to_le_bytes());
        out.push(self.op.to_byte());
        if self.op == Op::Erased {
            out.extend_from_slice(&self.erased.unwrap_or(self.seq).to_le_bytes());
        }
        out.push(self.resource_type.len() as u8);
        out.extend_from_slice(self.resource_type.as_bytes());
        out.extend_from_slice(self.id.as_bytes());
        out
    }

    pub fn decode(seq: u64, bytes: &[u8]) -> ChangeRecord {
        let op = Op::from_byte(bytes[24]);
        let (erased, at) = match op {
            Op::Erased => (Some(u64_at(bytes, 25)), 33),
            _ => (None, 25),
        };
        let type_len = bytes[at] as usize;
        let text =
            |range: std::ops::Range<usize>| String::from_utf8_lossy(&bytes[range]).into_owned();
        ChangeRecord {
            seq,
            txid: u64_at(bytes, 0),
            vid: u64_at(bytes, 8),
            last_updated: u64_at(bytes, 16) as Micros,
            op,
            resource_type: text(at + 1..at + 1 + type_len),
            id: text(at + 1 + type_len..bytes.len()),
            erased,
        }
    }

    /// The entry of an erasure: this change with its op [`Op::Erased`], erasing `erased`.
    pub fn erasure(&self, erased: u64) -> ChangeRecord {
        ChangeRecord {
            op: Op::Erased,
            erased: Some(erased),
            ..self.clone()
        }
    }
}

/// A used client assertion: `[lapses: u64][nonce: u64]`. `lapses` is when it stops being
/// accepted (Unix seconds: its `exp` plus the clock skew tolerated); `nonce` is the random
/// number of the token request that recorded it, by which that request knows, once the
/// record is durable, that it was the first to use the assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JtiRecord {
    pub lapses: u64,
    pub nonce: u64,
}

impl JtiRecord {
    pub fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.lapses.to_le_bytes());
        out[8..].copy_from_slice(&self.nonce.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> JtiRecord {
        JtiRecord {
            lapses: u64_at(bytes, 0),
            nonce: u64_at(bytes, 8),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn records_round_trip(
            vid in any::<u64>(), txid in any::<u64>(), seq in any::<u64>(),
            time in any::<i64>(), deleted in any::<bool>(),
            resource_type in "[A-Z][A-Za-z]{0,40}", id in "[A-Za-z0-9.-]{1,64}",
            body in proptest::collection::vec(any::<u8>(), 0..64),
            op in prop_oneof![Just(Op::Create), Just(Op::Update), Just(Op::Delete)],
            erased in any::<u64>(),
            method in prop_oneof![Just(Method::Post), Just(Method::Put), Just(Method::Delete)],
        ) {
            let jti = JtiRecord { lapses: vid, nonce: txid };
            prop_assert_eq!(JtiRecord::decode(&jti.encode()), jti);
            let current = CurrentRecord { vid, deleted, last_updated: time };
            prop_assert_eq!(CurrentRecord::decode(&current.encode()), current);
            let change = ChangeRecord {
                seq, txid, resource_type, id, vid, op, last_updated: time, erased: None,
            };
            prop_assert_eq!(ChangeRecord::decode(seq, &change.encode()), change.clone());
            let erasure = change.erasure(erased);
            prop_assert_eq!(ChangeRecord::decode(seq, &erasure.encode()), erasure);
            let version = VersionRecord::encode(op, method, time, &body);
            prop_assert_eq!(VersionRecord::last_updated_of(&version), time);
            prop_assert_eq!(
                VersionRecord::decode(&version),
                VersionRecord { op, method, last_updated: time, body }
            );
        }
    }
}
