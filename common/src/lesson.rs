//! What a registry taught one process about what it takes (its upload limits, whether it keeps
//! a sparse index), in the form a fleet passes on: the
//! registry speaks through one worker's refusal, and the others adopt the limit without paying
//! for it again.

use serde::{Deserialize, Serialize};

/// What a registry taught one process of its uploads, as told to others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lesson {
    /// The registry host, with its port when not the default.
    pub registry: String,
    /// The largest request body it takes, when it refused a larger one.
    pub max_request: Option<u64>,
    /// Its upload `Range` does not advance after a chunk it accepted.
    pub stuck_range: bool,
    /// It refuses an index some of whose manifests it does not hold (a sparse index).
    #[serde(default)]
    pub refuses_sparse_index: bool,
}
