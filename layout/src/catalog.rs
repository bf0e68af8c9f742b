//! What a served bundle holds under which name: each repository's tags, the manifests pushed
//! by digest, which manifests refer to which (the referrers API), and, for a delta export,
//! what the bundle it follows already holds (answered as present, never stored again).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use image_mirror_common::Digest;

use crate::layout::{IndexEntry, Layout};
use crate::names::{name_of, Named, Unnamed, CONTAINERD_NAME, REF_NAME};

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Something the bundle a delta follows holds: its size, and its media type for a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Bytes.
    pub size: u64,
    /// The media type of a manifest.
    pub media_type: Option<String>,
}

/// The names and links of a served bundle.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Each repository's tags.
    pub tags: BTreeMap<String, BTreeMap<String, Digest>>,
    /// Manifests pushed (or listed) by digest alone, per repository.
    pub untagged: BTreeMap<String, BTreeSet<Digest>>,
    /// The media type of each manifest known.
    pub media_types: HashMap<Digest, String>,
    /// The manifests whose `subject` is a digest.
    pub referrers: HashMap<Digest, BTreeSet<Digest>>,
    /// What the bundle a delta follows holds.
    pub base: HashMap<Digest, Held>,
    /// The tags of the bundle a delta follows, per repository.
    pub base_tags: BTreeMap<String, BTreeMap<String, Digest>>,
}

impl Catalog {
    /// The names of `layout`'s `index.json`; `repository` is where tag-only entries go.
    /// Each manifest below the named ones is read once, for its media type and referrers.
    pub fn of_layout(layout: &Layout, repository: Option<&str>) -> Result<Self, CatalogError> {
        let mut catalog = Self::default();
        for entry in layout.index()? {
            let Named { repository, tag } = name_of(&entry, repository)?;
            catalog.name(&entry, &repository, tag);
            if layout.blob_size(&entry.digest).is_none() {
                // A delta names images the bundle it follows holds: their tags are answered
                // from the entry, their content is the target's.
                catalog.base.insert(
                    entry.digest.clone(),
                    Held {
                        size: entry.size,
                        media_type: Some(entry.media_type.clone()),
                    },
                );
            }
            catalog.learn_tree(layout, &entry.digest, Some(&entry.media_type));
        }
        Ok(catalog)
    }

    fn name(&mut self, entry: &IndexEntry, repository: &str, tag: Option<String>) {
        match tag {
            Some(tag) => {
                self.tags
                    .entry(repository.to_owned())
                    .or_default()
                    .insert(tag, entry.digest.clone());
            }
            None => {
                self.untagged
                    .entry(repository.to_owned())
                    .or_default()
                    .insert(entry.digest.clone());
            }
        }
    }

    /// Reads the manifest `digest` and those below it (when the layout holds them): their
    /// media types and subjects.
    fn learn_tree(&mut self, layout: &Layout, digest: &Digest, media_type: Option<&str>) {
        let mut stack = vec![(digest.clone(), media_type.map(str::to_owned))];
        while let Some((digest, said)) = stack.pop() {
            if self.media_types.contains_key(&digest) {
                continue;
            }
            let Ok(bytes) = layout.read_small(&digest) else {
                continue;
            };
            let Some(media_type) = said.or_else(|| sniff_media_type(&bytes)) else {
                continue;
            };
            self.learn(&digest, &media_type, &bytes);
            if let Ok(body) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                for child in body["manifests"].as_array().into_iter().flatten() {
                    if let Some(d) = child["digest"].as_str().and_then(|d| d.parse().ok()) {
                        let mt = child["mediaType"].as_str().map(str::to_owned);
                        stack.push((d, mt));
                    }
                }
            }
        }
    }

    /// Records a manifest: its media type, and its subject's referrer.
    pub(crate) fn learn(&mut self, digest: &Digest, media_type: &str, bytes: &[u8]) {
        self.media_types
            .insert(digest.clone(), media_type.to_owned());
        let subject = serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|b| b["subject"]["digest"].as_str().and_then(|d| d.parse().ok()));
        if let Some(subject) = subject {
            self.referrers
                .entry(subject)
                .or_default()
                .insert(digest.clone());
        }
    }

    /// The digest `tag` names in `repository` (in the bundle, or the one a delta follows).
    pub fn tag(&self, repository: &str, tag: &str) -> Option<&Digest> {
        self.tags
            .get(repository)
            .and_then(|t| t.get(tag))
            .or_else(|| self.base_tags.get(repository).and_then(|t| t.get(tag)))
    }

    /// Whether `repository` holds anything.
    pub fn has_repository(&self, repository: &str) -> bool {
        self.tags.contains_key(repository)
            || self.untagged.contains_key(repository)
            || self.base_tags.contains_key(repository)
    }

    /// `repository`'s tags, sorted.
    pub fn tags_of(&self, repository: &str) -> Vec<String> {
        let mut tags: BTreeSet<String> = BTreeSet::new();
        for map in [self.tags.get(repository), self.base_tags.get(repository)]
            .into_iter()
            .flatten()
        {
            tags.extend(map.keys().cloned());
        }
        tags.into_iter().collect()
    }

    /// The entries `index.json` lists for what was pushed: every tag, each named both ways
    /// (`registry_of` gives the host a repository's full name carries), then every manifest
    /// pushed by digest alone that no other pushed manifest lists (a referrer), named by
    /// digest.
    pub fn index_entries(
        &self,
        layout: &Layout,
        registry_of: &dyn Fn(&str) -> String,
    ) -> Vec<IndexEntry> {
        let mut entries = Vec::new();
        let entry = |digest: &Digest, annotations: BTreeMap<String, String>| IndexEntry {
            media_type: self
                .media_types
                .get(digest)
                .or_else(|| self.base.get(digest).and_then(|h| h.media_type.as_ref()))
                .cloned()
                .unwrap_or_else(|| OCI_MANIFEST.to_owned()),
            digest: digest.clone(),
            size: layout
                .blob_size(digest)
                .or_else(|| self.base.get(digest).map(|h| h.size))
                .unwrap_or(0),
            annotations,
            platform: None,
        };
        // A delta lists every image of its lock, those the bundle it follows holds too.
        let mut named: BTreeMap<&String, BTreeMap<&String, &Digest>> = BTreeMap::new();
        for (repository, tags) in self.base_tags.iter().chain(&self.tags) {
            for (tag, digest) in tags {
                named.entry(repository).or_default().insert(tag, digest);
            }
        }
        for (repository, tags) in named {
            for (tag, digest) in tags {
                // The full reference under both names: skopeo's `oci:DIR:NAME` finds an
                // image by its `ref.name`, which must then tell apart images of one tag.
                let full = format!("{}/{repository}:{tag}", registry_of(repository));
                let annotations = BTreeMap::from([
                    (REF_NAME.to_owned(), full.clone()),
                    (CONTAINERD_NAME.to_owned(), full),
                ]);
                entries.push(entry(digest, annotations));
            }
        }
        let listed = self.listed_by_others(layout);
        for (repository, digests) in &self.untagged {
            for digest in digests.iter().filter(|d| !listed.contains(*d)) {
                let annotations = BTreeMap::from([(
                    CONTAINERD_NAME.to_owned(),
                    format!("{}/{repository}@{digest}", registry_of(repository)),
                )]);
                entries.push(entry(digest, annotations));
            }
        }
        entries
    }

    /// Every manifest some stored index lists.
    fn listed_by_others(&self, layout: &Layout) -> BTreeSet<Digest> {
        let mut listed = BTreeSet::new();
        for (digest, media_type) in &self.media_types {
            if media_type != OCI_INDEX && !media_type.contains("manifest.list") {
                continue;
            }
            let Ok(bytes) = layout.read_small(digest) else {
                continue;
            };
            let Ok(body) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                continue;
            };
            for child in body["manifests"].as_array().into_iter().flatten() {
                if let Some(d) = child["digest"].as_str().and_then(|d| d.parse().ok()) {
                    listed.insert(d);
                }
            }
        }
        listed
    }
}

/// A manifest's media type from its body: its `mediaType`, else an index when it lists
/// manifests, else an image manifest; `None` when it is not JSON.
pub fn sniff_media_type(bytes: &[u8]) -> Option<String> {
    let body: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if let Some(t) = body["mediaType"].as_str() {
        return Some(t.to_owned());
    }
    Some(if body.get("manifests").is_some() {
        OCI_INDEX.to_owned()
    } else {
        OCI_MANIFEST.to_owned()
    })
}

/// Why a layout's names could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The layout itself.
    #[error(transparent)]
    Layout(#[from] crate::error::LayoutError),
    /// An entry without a name a registry can serve.
    #[error(transparent)]
    Unnamed(#[from] Unnamed),
}
