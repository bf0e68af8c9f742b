//! One blob's copy into one target repository, its states its steps, each a type of its own
//! that owns what the step holds:
//!
//! 1. **planned** ([`place`]): skipped when the target has the blob, mounted when another
//!    repository of the registry has it, else **unsent**;
//! 2. **claimed** ([`claim`]): in a fleet, the blob's lease (another worker holding it means
//!    waiting, then skipping or mounting what it landed); and where an upload of it was left,
//!    by another worker or by this machine before a stop or a crash ([`saved`]);
//! 3. **started** ([`start`]): the upload session taken over where it stood, or a new one, and
//!    the source download under way alongside ([`source`]; with several targets, one shared
//!    download, [`tee`]);
//! 4. **sent** ([`upload`]): every byte up, hashed to the blob's digest on the way, a
//!    checkpoint after each chunk the registry confirmed ([`checkpoint`]), a broken transfer
//!    resumed where the registry has it within one bound ([`attempts`]);
//! 5. **landed**: remembered for mounts, told to the fleet, counted ([`blob_copy`]).
//!
//! [`flight`] takes a blob through them, as the process's (and the fleet's) one flight of it.
//! This file only names the parts.

pub(crate) mod attempts;
pub(crate) mod blob_copy;
pub(crate) mod checkpoint;
pub(crate) mod claim;
pub(crate) mod flight;
pub(crate) mod place;
pub mod saved;
pub(crate) mod source;
pub(crate) mod start;
pub(crate) mod tee;
pub(crate) mod upload;
