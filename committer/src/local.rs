//! Local mode: the lines of recorded jobs go straight into the images-list file, in `sort -V`
//! order, without duplicates, replacing the file atomically. Lines are never removed.

use std::path::Path;

use image_mirror_common::{Entry, ImagesList, ImagesListError};

/// Adds the `entries` that `path` lacks and returns them. The file is rewritten
/// (atomically) only when something was added.
pub fn record_in_file(path: &Path, entries: &[Entry]) -> Result<Vec<Entry>, ImagesListError> {
    let mut list = ImagesList::load(path)?;
    let mut added = Vec::new();
    for entry in entries {
        if list.insert(entry.clone()) {
            added.push(entry.clone());
        }
    }
    if !added.is_empty() {
        list.save(path)?;
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(line: &str) -> Entry {
        let list = ImagesList::parse(format!("{line}\n").as_bytes()).unwrap();
        let first = list.entries().next().unwrap().clone();
        first
    }

    #[test]
    fn adds_in_order_once_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("images-list");
        std::fs::write(&path, "# header\na/x b/x v1.2.0\na/x b/x v1.10.0\n").unwrap();
        let new = [
            entry("a/x b/x v1.9.0"),
            entry("a/x b/x v1.2.0"),
            entry("a/x b/x v1.9.0"),
        ];
        let added = record_in_file(&path, &new).unwrap();
        assert_eq!(added, vec![entry("a/x b/x v1.9.0")]);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "# header\na/x b/x v1.2.0\na/x b/x v1.9.0\na/x b/x v1.10.0\n"
        );
        let again = record_in_file(&path, &new).unwrap();
        assert!(again.is_empty());
    }
}
