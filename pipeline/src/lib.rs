//! The roles in one process: what `run`, `add-tag` and `add-image` are.
//!
//! This crate owns the sum of the roles over one broker (the in-memory one, or RabbitMQ): the
//! producer's publish step, the worker loop with N jobs at once, and a run's committer, which
//! records exactly as a fleet's committer does and ends once every job has ended. It owns how
//! such a run stops: a stop asked for (Ctrl-C, SIGTERM, a closed stdout: the caller's future)
//! stops taking jobs and tells the copies to stop at their next checkpoint; what ended by then
//! is recorded and summed up as usual, the rest is counted as not finished.
//!
//! A bundle is one more end of such a run ([`bundle`]): `export` writes into one, `import`
//! reads from one, each served by a registry of the process.
//!
//! It shows nothing itself: the caller watches the engine's activity and is told of each job
//! that ends.

pub mod bundle;
mod mirror;

pub use mirror::{mirror, InProcess, Mirrored, PipelineError};
