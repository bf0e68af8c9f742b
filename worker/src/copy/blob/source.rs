//! Reading a source blob from an offset: a broken or stalled download is resumed with a
//! `Range` request from the byte it stopped at, within the resume loop's bound
//! ([`Attempts`]). A body
//! longer than the blob's descriptor is always an error: the last bytes are handed out only
//! once the body has ended where the descriptor says.

use bytes::Bytes;
use image_mirror_common::Repository;
use image_mirror_registry::{BlobDownload, Descriptor, NetworkFailure, RegistryError};

use crate::copy::blob::attempts::{Attempts, Halt};
use crate::copy::error::CopyError;
use crate::copy::parts::Parts;
use crate::copy::report::Counters;

/// Reads a source blob from an offset, resuming broken downloads with `Range`.
pub(crate) struct SourceReader<'a> {
    parts: &'a Parts,
    repo: &'a Repository,
    blob: &'a Descriptor,
    download: Option<BlobDownload>,
    /// Pieces of a download shared with other targets, while it lasts.
    tee: Option<tokio::sync::mpsc::Receiver<Bytes>>,
    pending: Bytes,
    /// The next byte [`next`](Self::next) hands out.
    pub(crate) position: u64,
    attempts: Attempts<'a>,
}

impl<'a> SourceReader<'a> {
    pub(crate) fn new(
        parts: &'a Parts,
        repo: &'a Repository,
        blob: &'a Descriptor,
        position: u64,
        counters: &'a Counters,
    ) -> Self {
        Self {
            parts,
            repo,
            blob,
            download: None,
            tee: None,
            pending: Bytes::new(),
            position,
            attempts: Attempts::new(parts.client.retry_policy(), &counters.resumes, &parts.stop),
        }
    }

    /// Reads on from a download already under way at `position`.
    pub(crate) fn with_download(mut self, download: Option<BlobDownload>) -> Self {
        if download.as_ref().is_some_and(|d| d.offset == self.position) {
            self.download = download;
        }
        self
    }

    /// Reads from a download shared with other targets (from byte 0); when it ends early,
    /// reads on by itself.
    pub(crate) fn with_tee(mut self, tee: Option<tokio::sync::mpsc::Receiver<Bytes>>) -> Self {
        if self.position == 0 {
            self.tee = tee;
        }
        self
    }

    /// Ends the download in progress (and frees its request slot); the next read resumes
    /// from the same position.
    pub(crate) fn release(&mut self) {
        self.download = None;
        self.tee = None;
        self.pending = Bytes::new();
    }

    /// Up to `max` more bytes (at least one, while the blob has bytes left).
    pub(crate) async fn next(&mut self, max: usize) -> Result<Bytes, CopyError> {
        loop {
            if !self.pending.is_empty() {
                let n = max.min(self.pending.len());
                let piece = self.pending.split_to(n);
                self.position += n as u64;
                return Ok(piece);
            }
            if self.position >= self.blob.size {
                return Err(CopyError::Invalid(format!(
                    "read past the end of blob {}",
                    self.blob.digest
                )));
            }
            if let Some(tee) = &mut self.tee {
                match tee.recv().await {
                    Some(piece) if piece.len() as u64 <= self.blob.size - self.position => {
                        self.pending = piece;
                        continue;
                    }
                    // Cut off, or the shared download failed: read on by itself.
                    _ => self.tee = None,
                }
            }
            let download = match &mut self.download {
                Some(d) => d,
                None => {
                    let d = self
                        .parts
                        .client
                        .get_blob(self.repo, &self.blob.digest, self.position, self.blob.size)
                        .await?;
                    self.download.insert(d)
                }
            };
            let failure = match download.chunk().await {
                Ok(Some(bytes)) => {
                    let left = self.blob.size - self.position;
                    if bytes.len() as u64 > left {
                        return Err(self.too_long());
                    }
                    if bytes.len() as u64 == left {
                        // The whole blob is in: the body must end here.
                        self.expect_end().await?;
                    }
                    self.attempts.progressed();
                    self.pending = bytes;
                    continue;
                }
                Ok(None) => "the body ended early".to_owned(),
                Err(e) => e.to_string(),
            };
            self.resume_after(&failure).await?;
        }
    }

    /// After the last byte the descriptor allows, the body must end.
    async fn expect_end(&mut self) -> Result<(), CopyError> {
        let Some(download) = &mut self.download else {
            return Ok(());
        };
        match download.chunk().await {
            Ok(None) => {
                self.download = None;
                Ok(())
            }
            Ok(Some(extra)) if extra.is_empty() => Ok(()),
            Ok(Some(_)) => Err(self.too_long()),
            // Everything the blob needs has arrived; a broken tail changes nothing.
            Err(_) => {
                self.download = None;
                Ok(())
            }
        }
    }

    fn too_long(&self) -> CopyError {
        RegistryError::Protocol {
            registry: self.repo.registry().to_owned(),
            operation: format!("GET blob {}", self.blob.digest),
            message: format!(
                "the blob is longer than its descriptor's {} bytes",
                self.blob.size
            ),
        }
        .into()
    }

    /// The download broke: resume from here after a pause, or give up when it keeps breaking.
    async fn resume_after(&mut self, failure: &str) -> Result<(), CopyError> {
        self.download = None;
        let what = format!("GET blob {}", self.blob.digest);
        match self.attempts.broke(&what, self.position, failure).await {
            Ok(()) => Ok(()),
            Err(Halt::Stopped) => Err(CopyError::Interrupted),
            Err(Halt::GaveUp) => Err(RegistryError::Network {
                registry: self.repo.registry().to_owned(),
                operation: what,
                message: format!(
                    "download kept breaking at byte {} ({failure})",
                    self.position
                ),
                failure: NetworkFailure::Broken,
            }
            .into()),
        }
    }
}
