//! A bundle as one `.tar` file: written as a stream (each blob appended once it has landed
//! and been checked, never held twice on disk), and read in place (an index of where each
//! member's bytes are, so that a blob is served straight from the file). The members are
//! those of an OCI image layout folder (`oci-layout`, `index.json`, `blobs/sha256/…`) in POSIX
//! ustar form, as `tar`, containerd and skopeo read it.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::LayoutError;
use crate::parts::{PartFiles, PartWriter, Sink};

const BLOCK: u64 = 512;
/// The largest member ustar's size field holds (11 octal digits).
pub const MAX_MEMBER: u64 = 8 * 1024 * 1024 * 1024 - 1;

/// A tar file being written.
pub(crate) struct TarWriter {
    path: PathBuf,
    file: Box<dyn Sink>,
}

impl TarWriter {
    /// A new, empty tar at `path` (an existing file is replaced); with `split`, written in
    /// parts of at most that many bytes instead.
    pub(crate) fn create(path: &Path, split: Option<u64>) -> Result<Self, LayoutError> {
        let file: Box<dyn Sink> = match split {
            Some(limit) => Box::new(PartWriter::new(path, limit)),
            None => Box::new(File::create(path).map_err(LayoutError::io(path))?),
        };
        Ok(Self {
            path: path.to_owned(),
            file,
        })
    }

    /// Appends a member `name` holding `bytes`.
    pub(crate) fn append_bytes(&mut self, name: &str, bytes: &[u8]) -> Result<(), LayoutError> {
        self.header(name, bytes.len() as u64)?;
        self.file
            .write_all(bytes)
            .map_err(LayoutError::io(&self.path))?;
        self.pad(bytes.len() as u64)
    }

    /// Appends a member `name` holding the file at `from`, `size` bytes.
    pub(crate) fn append_file(
        &mut self,
        name: &str,
        from: &Path,
        size: u64,
    ) -> Result<(), LayoutError> {
        self.header(name, size)?;
        let mut source = File::open(from).map_err(LayoutError::io(from))?;
        let copied =
            std::io::copy(&mut source, &mut self.file).map_err(LayoutError::io(&self.path))?;
        if copied != size {
            return Err(LayoutError::Invalid {
                path: from.to_owned(),
                message: format!("{copied} bytes, expected {size}"),
            });
        }
        self.pad(size)
    }

    /// Ends the archive (two zero blocks) and flushes it to disk.
    pub(crate) fn finish(&mut self) -> Result<(), LayoutError> {
        self.file
            .write_all(&[0u8; 2 * BLOCK as usize])
            .and_then(|()| self.file.finish())
            .map_err(LayoutError::io(&self.path))
    }

    fn header(&mut self, name: &str, size: u64) -> Result<(), LayoutError> {
        let invalid = |message: String| LayoutError::Invalid {
            path: self.path.clone(),
            message,
        };
        if name.len() > 100 {
            return Err(invalid(format!("member name {name:?} over 100 bytes")));
        }
        if size > MAX_MEMBER {
            return Err(invalid(format!(
                "{name}: {size} bytes, over the 8 GiB a tar member holds"
            )));
        }
        let mut h = [0u8; BLOCK as usize];
        h[..name.len()].copy_from_slice(name.as_bytes());
        put_octal(&mut h[100..108], 0o644);
        put_octal(&mut h[108..116], 0);
        put_octal(&mut h[116..124], 0);
        put_octal(&mut h[124..136], size);
        put_octal(&mut h[136..148], 0);
        h[148..156].copy_from_slice(b"        ");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        put_octal(&mut h[148..155], u64::from(sum));
        h[155] = b' ';
        self.file.write_all(&h).map_err(LayoutError::io(&self.path))
    }

    fn pad(&mut self, size: u64) -> Result<(), LayoutError> {
        let rest = (BLOCK - size % BLOCK) % BLOCK;
        self.file
            .write_all(&vec![0u8; rest as usize])
            .map_err(LayoutError::io(&self.path))
    }
}

/// Writes `value` in octal into `field`, zero-padded, NUL-terminated.
fn put_octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

/// Where each member of a tar is: its data's offset and size, by name (`./` dropped).
#[derive(Debug, Clone, Default)]
pub struct TarIndex {
    members: HashMap<String, (u64, u64)>,
}

impl TarIndex {
    /// Reads the headers of the tar in `files` (not its data).
    pub fn read(files: &PartFiles) -> Result<Self, LayoutError> {
        let path = files.name();
        let len = files.len();
        let mut reader = files.reader();
        let mut members = HashMap::new();
        let mut at = 0u64;
        let invalid = |message: String| LayoutError::Invalid {
            path: path.to_owned(),
            message,
        };
        while at + BLOCK <= len {
            let header = reader.read_at(at, BLOCK)?;
            if header.iter().all(|b| *b == 0) {
                break;
            }
            let name = cstr(&header[..100]);
            let prefix = cstr(&header[345..500]);
            let size = octal(&header[124..136])
                .ok_or_else(|| invalid(format!("not a tar file (bad header at byte {at})")))?;
            let kind = header[156];
            let data = at + BLOCK;
            if data + size > len {
                return Err(invalid(format!("{name}: cut short")));
            }
            if kind == b'0' || kind == 0 {
                let full = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                };
                let full = full.trim_start_matches("./").to_owned();
                members.insert(full, (data, size));
            }
            at = data + size.div_ceil(BLOCK) * BLOCK;
        }
        Ok(Self { members })
    }

    /// The data offset and size of member `name`.
    pub fn member(&self, name: &str) -> Option<(u64, u64)> {
        self.members.get(name).copied()
    }
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

fn octal(field: &[u8]) -> Option<u64> {
    let text = cstr(field);
    let text = text.trim_matches(|c: char| c == ' ' || c == '\0');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_is_found_again_and_read_by_tar() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.tar");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![7u8; 1000]).unwrap();
        let mut w = TarWriter::create(&path, None).unwrap();
        w.append_bytes("oci-layout", b"{}").unwrap();
        w.append_file("blobs/sha256/big", &big, 1000).unwrap();
        w.finish().unwrap();
        let files = PartFiles::open(&path).unwrap();
        let index = TarIndex::read(&files).unwrap();
        let (at, size) = index.member("blobs/sha256/big").unwrap();
        assert_eq!(size, 1000);
        assert_eq!(files.read_at(at, size).unwrap(), vec![7u8; 1000]);
        let at = index.member("oci-layout").unwrap().0;
        assert_eq!(files.read_at(at, 2).unwrap(), b"{}");
        let listed = std::process::Command::new("tar")
            .arg("-tf")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&listed.stdout),
            "oci-layout\nblobs/sha256/big\n"
        );
    }
}
