//! The Go programs the tests use as real peers (the distribution 3 registry, crane, regctl,
//! regsync, helm, cosign), as `scripts/go-tools` installs them: pinned versions in
//! `scripts/go-tools.txt`, binaries in `target/tools/bin` of the workspace (or the folder
//! `IMAGE_MIRROR_TOOLS_BIN` names).

use std::path::PathBuf;

/// The folder the Go tools are installed in.
pub fn bin_dir() -> PathBuf {
    match std::env::var_os("IMAGE_MIRROR_TOOLS_BIN") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tools/bin"),
    }
}

/// The path of the Go tool `name`; panics, naming the script that installs it, when it is
/// not there.
pub fn path(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/go-tools (scripts/test does) to install the pinned Go tools",
        path.display()
    );
    path
}
