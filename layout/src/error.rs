//! Why a layout, a bundle or its lock could not be read or written. Every variant names the
//! file.

use std::path::PathBuf;

/// A failure of a layout, naming its file.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// The folder is not an OCI image layout.
    #[error("{}: not an OCI image layout ({why})", path.display())]
    NotALayout {
        /// The folder.
        path: PathBuf,
        /// What is missing or wrong.
        why: String,
    },
    /// A file of the layout does not read as what it must be.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column when JSON is.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl LayoutError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
