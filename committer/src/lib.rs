//! The committer role: turns [`JobEvent`](image_mirror_common::JobEvent)s of jobs that should be
//! recorded into `images-list` changes: batched, verified against the target registry, sorted,
//! deduplicated, and proposed as a pull request (or written in place without GitHub settings).
//!
//! It owns reading the events queue ([`collect`]), which is also the event sink of the
//! monolithic `run`, and writing recorded lines into a local images-list ([`local`]).

pub mod collect;
pub mod local;

pub use collect::collect_events;
pub use local::record_in_file;
