//! Bulk data in and out of a data directory.

pub mod import;
