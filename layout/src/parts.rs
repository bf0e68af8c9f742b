//! A bundle file cut into parts (`export --split SIZE`: release assets and removable media have
//! size limits): `bundle.tar.000`, `bundle.tar.001`, … each at most SIZE bytes, and a
//! `SHA256SUMS` beside them (`sha256sum -c SHA256SUMS` checks them). Parts are written as the
//! tar streams, never from a whole copy, and read in place as one file: `import` and `serve`
//! take `bundle.tar` (or its first part) when only the parts are there.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::error::LayoutError;

/// Where a tar's bytes go: one file, or parts.
pub(crate) trait Sink: Write + Send {
    /// Flushes everything to disk; parts write their sums.
    fn finish(&mut self) -> std::io::Result<()>;
}

impl Sink for File {
    fn finish(&mut self) -> std::io::Result<()> {
        self.sync_all()
    }
}

/// Writes a stream into parts of at most `limit` bytes, hashing each.
pub(crate) struct PartWriter {
    base: PathBuf,
    limit: u64,
    current: Option<(File, Sha256, u64)>,
    sums: Vec<String>,
}

impl PartWriter {
    /// Parts `<base>.000`, `<base>.001`, … of at most `limit` bytes.
    pub(crate) fn new(base: &Path, limit: u64) -> Self {
        Self {
            base: base.to_owned(),
            limit: limit.max(1),
            current: None,
            sums: Vec::new(),
        }
    }

    fn part_name(&self, index: usize) -> PathBuf {
        let mut name = self.base.as_os_str().to_owned();
        name.push(format!(".{index:03}"));
        PathBuf::from(name)
    }

    /// Closes the part being written, keeping its sum.
    fn close_part(&mut self) -> std::io::Result<()> {
        if let Some((file, hasher, _)) = self.current.take() {
            file.sync_all()?;
            let path = self.part_name(self.sums.len());
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let hex: String = hasher
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            self.sums.push(format!("{hex}  {name}\n"));
        }
        Ok(())
    }
}

impl Write for PartWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self
            .current
            .as_ref()
            .is_some_and(|(_, _, n)| *n >= self.limit)
        {
            self.close_part()?;
        }
        if self.current.is_none() {
            let file = File::create(self.part_name(self.sums.len()))?;
            self.current = Some((file, Sha256::new(), 0));
        }
        let Some((file, hasher, written)) = self.current.as_mut() else {
            return Ok(0);
        };
        let room = usize::try_from(self.limit - *written).unwrap_or(usize::MAX);
        let n = file.write(&buf[..buf.len().min(room)])?;
        hasher.update(&buf[..n]);
        *written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.current.as_mut() {
            Some((file, _, _)) => file.flush(),
            None => Ok(()),
        }
    }
}

impl Sink for PartWriter {
    fn finish(&mut self) -> std::io::Result<()> {
        self.close_part()?;
        let dir = self.base.parent().unwrap_or(Path::new("."));
        std::fs::write(dir.join("SHA256SUMS"), self.sums.concat())
    }
}

/// A file, or the parts of one, read as one.
#[derive(Debug, Clone)]
pub struct PartFiles {
    files: Vec<(PathBuf, u64)>,
}

impl PartFiles {
    /// `path` itself when it is a file; else its parts (`path.000`, … or, for a first part
    /// named, the parts it begins).
    pub fn open(path: &Path) -> Result<Self, LayoutError> {
        let base = match path.extension().and_then(|e| e.to_str()) {
            Some("000") if !path.is_dir() => path.with_extension(""),
            _ if path.is_file() => {
                let len = std::fs::metadata(path)
                    .map_err(LayoutError::io(path))?
                    .len();
                return Ok(Self {
                    files: vec![(path.to_owned(), len)],
                });
            }
            _ => path.to_owned(),
        };
        let mut files = Vec::new();
        for index in 0.. {
            let mut name = base.as_os_str().to_owned();
            name.push(format!(".{index:03}"));
            let part = PathBuf::from(name);
            let Ok(meta) = std::fs::metadata(&part) else {
                break;
            };
            files.push((part, meta.len()));
        }
        if files.is_empty() {
            return Err(LayoutError::NotALayout {
                path: path.to_owned(),
                why: "neither a folder, a tar file, nor the parts of one".into(),
            });
        }
        Ok(Self { files })
    }

    /// Whether `path` names a tar file or its parts.
    pub fn exist(path: &Path) -> bool {
        Self::open(path).is_ok()
    }

    /// The total length.
    pub fn len(&self) -> u64 {
        self.files.iter().map(|(_, n)| n).sum()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The part holding byte `offset`, that offset within it, and the bytes left in it.
    pub fn locate(&self, offset: u64) -> Option<(&Path, u64, u64)> {
        let mut start = 0;
        for (path, len) in &self.files {
            if offset < start + len {
                return Some((path, offset - start, start + len - offset));
            }
            start += len;
        }
        None
    }

    /// `len` bytes at `offset`, across parts.
    pub fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, LayoutError> {
        self.reader().read_at(offset, len)
    }

    /// A reader that keeps the part it last read open, for many reads in a row.
    pub fn reader(&self) -> PartReader<'_> {
        PartReader {
            files: self,
            open: None,
        }
    }

    /// How the bundle is named in messages.
    pub fn name(&self) -> &Path {
        &self.files[0].0
    }
}

/// Reads of [`PartFiles`] that open each part once while they stay in it.
pub struct PartReader<'a> {
    files: &'a PartFiles,
    open: Option<(&'a Path, File)>,
}

impl PartReader<'_> {
    /// `len` bytes at `offset`, across parts.
    pub fn read_at(&mut self, mut offset: u64, len: u64) -> Result<Vec<u8>, LayoutError> {
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        while (bytes.len() as u64) < len {
            let Some((path, at, left)) = self.files.locate(offset) else {
                return Err(LayoutError::Invalid {
                    path: self.files.name().to_owned(),
                    message: "cut short".into(),
                });
            };
            let n = left.min(len - bytes.len() as u64);
            if self.open.as_ref().is_none_or(|(open, _)| *open != path) {
                let file = File::open(path).map_err(LayoutError::io(path))?;
                self.open = Some((path, file));
            }
            let Some((_, file)) = self.open.as_mut() else {
                continue;
            };
            let mut chunk = vec![0u8; usize::try_from(n).unwrap_or(0)];
            file.seek(SeekFrom::Start(at))
                .and_then(|_| file.read_exact(&mut chunk))
                .map_err(LayoutError::io(path))?;
            bytes.extend_from_slice(&chunk);
            offset += n;
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_cut_at_the_limit_summed_and_read_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("b.tar");
        let mut w = PartWriter::new(&base, 10);
        w.write_all(&(0u8..25).collect::<Vec<_>>()).unwrap();
        w.finish().unwrap();
        let parts = PartFiles::open(&base).unwrap();
        assert_eq!(parts.len(), 25);
        assert_eq!(parts.read_at(8, 5).unwrap(), vec![8, 9, 10, 11, 12]);
        assert_eq!(
            std::fs::metadata(dir.path().join("b.tar.002"))
                .unwrap()
                .len(),
            5
        );
        let checked = std::process::Command::new("sha256sum")
            .args(["-c", "SHA256SUMS"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            checked.status.success(),
            "{}",
            String::from_utf8_lossy(&checked.stdout)
        );
        assert!(PartFiles::open(&dir.path().join("b.tar.000")).is_ok());
    }
}
