//! Bundles as the roles see them: `export` is a run whose targets are a bundle being
//! written, `import` a run whose source is a bundle read. Either way the bundle is a registry of
//! this process on a loopback port (`image_mirror_layout::server`), so that every rule of a
//! copy (digests checked as they stream, resumption, mounts, drift, platforms, what travels
//! with an image) holds for it unchanged. This module starts that registry, names the jobs'
//! ends on it, writes what an export leaves (`index.json`, the lock), and checks, before an
//! import writes anything, that every blob an image needs is in the bundle or at the target.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image_mirror_common::{
    Digest, JobEvent, MirrorJob, Outcome, Platform, Platforms, Repository, Tag,
};
use image_mirror_layout::catalog::sniff_media_type;
use image_mirror_layout::{serve, Bundle, Catalog, Held, Layout, Lock, LockedImage, LOCK_FORMAT};
use image_mirror_worker::CopyEngine;
use tokio::net::TcpListener;

/// Why a bundle could not be served, written or imported.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The bundle's files.
    #[error(transparent)]
    Layout(#[from] image_mirror_layout::LayoutError),
    /// Its names.
    #[error(transparent)]
    Catalog(#[from] image_mirror_layout::CatalogError),
    /// The loopback registry could not start.
    #[error("the bundle's registry could not listen on 127.0.0.1: {0}")]
    Listen(std::io::Error),
    /// A name does not make a repository.
    #[error("{0}")]
    Name(String),
    /// An image needs a blob neither the bundle nor the target holds; nothing was written.
    #[error("{image}: the bundle lacks {what} {digest} and the target does not hold it; nothing was imported (a delta bundle goes on top of the bundle it follows: import that first)")]
    Missing {
        /// The image (`repository:tag`).
        image: String,
        /// `blob` or `manifest`.
        what: &'static str,
        /// The digest.
        digest: Digest,
    },
    /// The target could not be asked.
    #[error("{0}")]
    Registry(#[from] image_mirror_registry::RegistryError),
}

/// A bundle served on a loopback port for as long as this value lives.
pub struct Served {
    /// The bundle.
    pub bundle: Arc<Bundle>,
    /// `127.0.0.1:PORT`: the registry host the jobs name.
    pub host: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(bundle: Arc<Bundle>) -> Result<Served, BundleError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(BundleError::Listen)?;
    let (addr, task) = serve(Arc::clone(&bundle), listener).map_err(BundleError::Listen)?;
    Ok(Served {
        bundle,
        host: addr.to_string(),
        task,
    })
}

/// A bundle being written: `export`.
pub struct Export {
    served: Served,
    base: Option<Lock>,
}

impl Export {
    /// Starts writing the bundle at `path` (a folder: one that is a layout already is gone on
    /// with; or a `.tar` file, written as a stream, in parts of at most `split` bytes when
    /// given); with `since`, only what that lock's bundle does not hold is written.
    pub async fn start(
        path: &Path,
        since: Option<&Path>,
        split: Option<u64>,
    ) -> Result<Self, BundleError> {
        let base = since.map(Lock::load).transpose()?;
        let layout = Layout::create_split(path, split)?;
        // A folder is gone on with; a tar is written anew, as a stream.
        let mut catalog = if path.extension().is_some_and(|e| e == "tar") {
            Catalog::default()
        } else {
            Catalog::of_layout(&layout, None)?
        };
        if let Some(base) = &base {
            follow(&mut catalog, base);
        }
        let served = start(Bundle::writable(layout, catalog)).await?;
        Ok(Self { served, base })
    }

    /// `127.0.0.1:PORT`, the host the jobs' targets are moved to.
    pub fn host(&self) -> &str {
        &self.served.host
    }

    /// `job` with each target moved into the bundle (its path kept), the listed target kept
    /// for the bundle's names.
    pub fn job(&self, job: &MirrorJob) -> Result<MirrorJob, BundleError> {
        let moved = |r: &Repository| {
            r.with_registry(&self.served.host)
                .map_err(|e| BundleError::Name(e.to_string()))
        };
        let mut into = job.clone();
        into.target = moved(&job.target)?;
        into.also_to = job.also_to.iter().map(moved).collect::<Result<_, _>>()?;
        into.listed_target = Some(
            job.listed_target
                .clone()
                .unwrap_or_else(|| job.target.clone()),
        );
        into.record = false;
        Ok(into)
    }

    /// Writes `index.json` and the lock of the images `events` ended with; what was written.
    pub fn finish(self, events: &[JobEvent]) -> Result<Exported, BundleError> {
        let bundle = &self.served.bundle;
        let layout = bundle.layout();
        let mut registries: HashMap<String, String> = HashMap::new();
        for e in events {
            let listed = e.listed_target.as_ref().unwrap_or(&e.target);
            registries.insert(e.target.path().to_owned(), listed.registry().to_owned());
        }
        let entries = bundle.with_catalog(|c| {
            c.index_entries(layout, &|repo: &str| {
                registries
                    .get(repo)
                    .cloned()
                    .unwrap_or_else(|| "localhost".to_owned())
            })
        });
        layout.write_index(&entries)?;
        let lock = lock_of(layout, self.base.as_ref(), events)?;
        lock.write_into(layout)?;
        layout.finish()?;
        let base = self.base.as_ref().map(Lock::holds).unwrap_or_default();
        let (mut written, mut bytes, mut skipped) = (0, 0, 0);
        for (digest, size) in &lock.blob_sizes {
            if layout.blob_size(digest).is_some() {
                written += 1;
                bytes += size;
            } else if base.contains(digest) {
                skipped += 1;
            }
        }
        Ok(Exported {
            path: layout.root().to_owned(),
            images: lock.images.len(),
            blobs: written,
            bytes,
            in_base: skipped,
        })
    }
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// The bundle.
    pub path: PathBuf,
    /// Images its lock lists.
    pub images: usize,
    /// Blobs it holds (layers and configs; each once).
    pub blobs: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Blobs left out because the bundle it follows holds them.
    pub in_base: usize,
}

/// Seeds `catalog` with what the bundle of `base` holds, so that it is answered as present.
fn follow(catalog: &mut Catalog, base: &Lock) {
    for (digest, m) in &base.manifests {
        catalog.base.insert(
            digest.clone(),
            Held {
                size: m.size,
                media_type: Some(m.media_type.clone()),
            },
        );
    }
    for (digest, size) in &base.blob_sizes {
        catalog.base.insert(
            digest.clone(),
            Held {
                size: *size,
                media_type: None,
            },
        );
    }
    for image in &base.images {
        if let Some(named) = image_mirror_layout::names::split_reference(&image.target) {
            if let Some(tag) = named.tag {
                catalog
                    .base_tags
                    .entry(named.repository)
                    .or_default()
                    .insert(tag, image.digest.clone());
            }
        }
    }
}

/// The lock of the images `events` copied or found present.
fn lock_of(layout: &Layout, base: Option<&Lock>, events: &[JobEvent]) -> Result<Lock, BundleError> {
    let mut lock = Lock {
        format: LOCK_FORMAT.to_owned(),
        ..Lock::default()
    };
    let mut seen = BTreeMap::new();
    for e in events {
        if !matches!(e.outcome, Outcome::Copied | Outcome::AlreadyPresent) {
            continue;
        }
        let Some(source_digest) = &e.digest else {
            continue;
        };
        let digest = e
            .platform_subset
            .as_ref()
            .and_then(|s| s.rewritten_digest.clone())
            .unwrap_or_else(|| source_digest.clone());
        let listed = e.listed_target.as_ref().unwrap_or(&e.target);
        let target = format!("{}/{}:{}", listed.registry(), listed.path(), e.tag);
        if seen.insert(target.clone(), ()).is_some() {
            continue;
        }
        let blobs = lock.record_tree(layout, base, &digest)?;
        let media_type = lock
            .manifests
            .get(&digest)
            .map(|m| m.media_type.clone())
            .or_else(|| {
                layout
                    .read_small(&digest)
                    .ok()
                    .and_then(|b| sniff_media_type(&b))
            })
            .unwrap_or_default();
        lock.images.push(LockedImage {
            source: format!("{}:{}", e.source, e.tag),
            target,
            digest,
            media_type,
            platforms: e.platforms.clone(),
            platform_subset: e.platform_subset.clone(),
            blobs,
        });
    }
    Ok(lock)
}

/// A bundle being read: `import` (and `serve`).
pub struct Import {
    served: Served,
    /// The bundle's lock, when it has one.
    lock: Option<Lock>,
}

impl Import {
    /// Serves the bundle at `path`; `repository` is where its tag-only entries go.
    pub async fn start(path: &Path, repository: Option<&str>) -> Result<Self, BundleError> {
        let layout = Layout::open(path)?;
        let catalog = Catalog::of_layout(&layout, repository)?;
        let lock = layout.read_lock()?;
        let served = start(Bundle::read_only(layout, catalog)).await?;
        Ok(Self { served, lock })
    }

    /// `127.0.0.1:PORT`, the source host of the jobs.
    pub fn host(&self) -> &str {
        &self.served.host
    }

    /// One job per tagged image of the bundle, to `registry` (under `org` when given).
    pub fn jobs(&self, registry: &str, org: Option<&str>) -> Result<Vec<MirrorJob>, BundleError> {
        let name =
            |e: image_mirror_common::reference::ReferenceError| BundleError::Name(e.to_string());
        let tags = self.served.bundle.with_catalog(|c| {
            c.tags
                .iter()
                .flat_map(|(repo, tags)| tags.keys().map(move |t| (repo.clone(), t.clone())))
                .collect::<Vec<_>>()
        });
        let mut jobs = Vec::new();
        for (repo, tag) in tags {
            let source: Repository = format!("{}/{repo}", self.served.host)
                .parse()
                .map_err(name)?;
            let mut target: Repository = format!("{registry}/{repo}").parse().map_err(name)?;
            if let Some(org) = org {
                target = target.with_org(org).map_err(name)?;
            }
            let platforms = self.platforms_of(&repo, &tag);
            let tag: Tag = tag
                .parse()
                .map_err(|e: image_mirror_common::reference::ReferenceError| name(e))?;
            let mut job = MirrorJob::new(
                source,
                target,
                tag,
                false,
                image_mirror_common::Requester::Sync,
            );
            job.platforms = platforms;
            jobs.push(job);
        }
        Ok(jobs)
    }

    /// The platforms the bundle's lock says `repo:tag` was exported with, when only some.
    fn platforms_of(&self, repo: &str, tag: &str) -> Option<Platforms> {
        let lock = self.lock.as_ref()?;
        let image = lock.images.iter().find(|i| {
            image_mirror_layout::names::split_reference(&i.target)
                .is_some_and(|n| n.repository == repo && n.tag.as_deref() == Some(tag))
        })?;
        image.platform_subset.as_ref()?;
        let chosen: Vec<Platform> = image
            .platforms
            .iter()
            .filter_map(|p| p.split(':').next()?.parse().ok())
            .collect();
        Platforms::new(chosen).ok()
    }

    /// Every manifest and blob each job's image needs is in the bundle or at its target (a
    /// blob in any repository of the import's targets, which `engine` is told to mount
    /// from); else the first one missing, before anything is written.
    pub async fn check_complete(
        &self,
        engine: &CopyEngine,
        jobs: &[MirrorJob],
    ) -> Result<(), BundleError> {
        let client = engine.client();
        let mut repos: Vec<&Repository> = jobs.iter().map(|j| &j.target).collect();
        repos.sort();
        repos.dedup();
        let bundle = &self.served.bundle;
        let layout = bundle.layout();
        for job in jobs {
            let image = format!("{}:{}", job.source.path(), job.tag);
            let Some(top) =
                bundle.with_catalog(|c| c.tag(job.source.path(), job.tag.as_str()).cloned())
            else {
                continue;
            };
            let mut stack = vec![(top.clone(), true)];
            while let Some((digest, is_manifest)) = stack.pop() {
                let here = layout.blob_size(&digest).is_some();
                // A bundle of some platforms holds a sparse index: the others are not read.
                if is_manifest && !here && digest != top && job.platforms.is_some() {
                    continue;
                }
                if is_manifest && here {
                    let bytes = layout.read_small(&digest)?;
                    stack.extend(listed(&bytes));
                    continue;
                }
                if here {
                    continue;
                }
                let there = if is_manifest {
                    client
                        .manifest_digest(&job.target, digest.as_str())
                        .await?
                        .as_ref()
                        == Some(&digest)
                } else {
                    blob_somewhere(engine, &job.target, &repos, &digest).await?
                };
                if !there {
                    let what = if is_manifest { "manifest" } else { "blob" };
                    return Err(BundleError::Missing {
                        image,
                        what,
                        digest,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Whether `target`, or another of the import's repositories in its registry, holds the
/// blob; where another does, the engine mounts it from there.
async fn blob_somewhere(
    engine: &CopyEngine,
    target: &Repository,
    repos: &[&Repository],
    digest: &Digest,
) -> Result<bool, BundleError> {
    let client = engine.client();
    if client.blob_exists(target, digest).await? {
        return Ok(true);
    }
    for repo in repos
        .iter()
        .filter(|r| **r != target && r.registry() == target.registry())
    {
        if client.blob_exists(repo, digest).await? {
            engine.blob_is_at(repo, digest);
            return Ok(true);
        }
    }
    Ok(false)
}

/// What a manifest lists: `(digest, is a manifest)` for its manifests, config and layers.
fn listed(bytes: &[u8]) -> Vec<(Digest, bool)> {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Vec::new();
    };
    let digest =
        |d: &serde_json::Value| d["digest"].as_str().and_then(|d| d.parse::<Digest>().ok());
    let mut out: Vec<(Digest, bool)> = body["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| digest(m).map(|d| (d, true)))
        .collect();
    if let Some(d) = digest(&body["config"]) {
        out.push((d, false));
    }
    out.extend(
        body["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| digest(l).map(|d| (d, false))),
    );
    out
}
