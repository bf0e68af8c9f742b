//! A bundle as its registry holds it: the layout, the names (`catalog.rs`), whether it takes
//! pushes, and the uploads under way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use crate::catalog::Catalog;
use crate::layout::Layout;

/// An upload under way: its file in the layout's upload folder, what it holds so far.
pub(crate) struct Session {
    pub(crate) path: std::path::PathBuf,
    pub(crate) size: u64,
    pub(crate) hasher: sha2::Sha256,
}

/// A bundle as a registry serves it.
pub struct Bundle {
    pub(crate) layout: Layout,
    pub(crate) catalog: RwLock<Catalog>,
    pub(crate) writable: bool,
    pub(crate) sessions: Mutex<HashMap<String, Session>>,
}

impl Bundle {
    /// `layout`, served read-only under `catalog`'s names.
    pub fn read_only(layout: Layout, catalog: Catalog) -> Arc<Self> {
        Arc::new(Self {
            layout,
            catalog: RwLock::new(catalog),
            writable: false,
            sessions: Mutex::default(),
        })
    }

    /// `layout`, taking pushes (blobs stored once, manifests and tags recorded).
    pub fn writable(layout: Layout, catalog: Catalog) -> Arc<Self> {
        Arc::new(Self {
            layout,
            catalog: RwLock::new(catalog),
            writable: true,
            sessions: Mutex::default(),
        })
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Runs `f` over the catalog.
    pub fn with_catalog<T>(&self, f: impl FnOnce(&Catalog) -> T) -> T {
        let catalog = self
            .catalog
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&catalog)
    }

    pub(crate) fn catalog_mut<T>(&self, f: impl FnOnce(&mut Catalog) -> T) -> T {
        let mut catalog = self
            .catalog
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut catalog)
    }
}
