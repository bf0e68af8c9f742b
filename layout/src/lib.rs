//! Bundles: images carried across an air gap as files.
//!
//! This crate owns the OCI image layout on disk ([`Layout`]: `oci-layout`, `index.json`,
//! every blob once under `blobs/sha256/`; a folder, or one tar file written as a stream and
//! read in place, [`tar`]), the names its entries carry for each writer
//! ([`names`]), the bundle's lock ([`Lock`], `image-mirror.lock`), and a registry over a layout
//! ([`server`]): read-only for `image-mirror serve` and `import` (the bundle read by the copy
//! engine like any registry), taking pushes for `export` (the copy engine writing into it). It
//! knows nothing of how images are copied: the worker's engine does that, over HTTP to this
//! registry, so that a bundle gets every rule a copy has.

mod answers;
mod bundle;
pub mod catalog;
pub mod error;
pub mod layout;
pub mod lock;
pub mod names;
pub mod parts;
pub mod server;
pub mod tar;
mod uploads;

pub use bundle::Bundle;
pub use catalog::{Catalog, CatalogError, Held};
pub use error::LayoutError;
pub use layout::{IndexEntry, Layout};
pub use lock::{Lock, LockedImage, LOCK_FILE, LOCK_FORMAT};
pub use names::{name_of, Named};
pub use server::serve;
