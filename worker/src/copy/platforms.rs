//! Some platforms of an index, not all: which of its entries a choice keeps, and the index a
//! target that refuses the original (a sparse index) gets instead.
//!
//! An entry is kept when its platform is chosen; an attestation manifest (BuildKit's
//! `vnd.docker.reference.type: attestation-manifest`) when the manifest it attests is kept;
//! an entry that names no platform (or `unknown/unknown` without saying what it attests) is
//! not platform-specific and always kept. A rewritten index is the original JSON with only the
//! kept entries, each entry's bytes as they were (a Windows entry keeps its `os.version`), and
//! two annotations saying what it was cut from and for which choice: that is how a later run
//! knows the target is up to date without reading the source.

use std::collections::HashSet;

use image_mirror_common::{Digest, PlatformSubset, Platforms};
use image_mirror_registry::{Descriptor, Manifest, ManifestKind};

use crate::copy::error::CopyError;

/// The annotation of a rewritten index that names the source index it was cut from.
pub const SOURCE_DIGEST_ANNOTATION: &str = "image-mirror.source-digest";
/// The annotation of a rewritten index that names the platforms it was cut for.
pub const PLATFORMS_ANNOTATION: &str = "image-mirror.platforms";

/// What a copy does when the target refuses the source index with only the chosen platforms
/// present (`--on-sparse-refused`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnSparseRefused {
    /// Push a new index listing only the chosen platforms (a new digest, recorded beside
    /// the source's).
    #[default]
    Rewrite,
    /// Fail the entry: the digest is kept or nothing is mirrored.
    Fail,
}

impl std::str::FromStr for OnSparseRefused {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "rewrite" => Ok(Self::Rewrite),
            "fail" => Ok(Self::Fail),
            _ => Err(format!("{s:?}: expected rewrite or fail")),
        }
    }
}

/// The entries of a top index a choice of platforms keeps, when it leaves some out.
#[derive(Debug, Clone)]
pub(crate) struct Choice {
    /// The platforms chosen.
    pub(crate) chosen: Platforms,
    /// The digests of the kept entries.
    pub(crate) keep: HashSet<Digest>,
    /// The platforms kept, each once, in the index's order.
    pub(crate) kept: Vec<String>,
    /// Every platform the index lists, each once, in its order.
    pub(crate) offered: Vec<String>,
    /// Chosen platforms the index does not list.
    pub(crate) absent: Vec<String>,
    /// Every entry is kept: the copy is whole.
    pub(crate) whole: bool,
}

impl Choice {
    /// What `chosen` keeps of `top`; `None` when nothing is chosen or `top` is not an index
    /// that names platforms. An index none of whose platforms is chosen is refused, naming
    /// what was chosen and what it offers.
    pub(crate) fn of(
        top: &Manifest,
        chosen: Option<&Platforms>,
    ) -> Result<Option<Self>, CopyError> {
        let Some(chosen) = chosen else {
            return Ok(None);
        };
        if top.kind() != ManifestKind::Index {
            return Ok(None);
        }
        let entries = top.children().map_err(CopyError::Invalid)?;
        let offered = each_once(entries.iter().filter_map(specific));
        if offered.is_empty() {
            return Ok(None);
        }
        let kept_images: HashSet<Digest> = entries
            .iter()
            .filter(|e| specific(e).is_some_and(|p| chosen.keeps(p)))
            .map(|e| e.digest.clone())
            .collect();
        if kept_images.is_empty() {
            return Err(CopyError::NoChosenPlatform {
                chosen: chosen.to_string(),
                offered: offered.join(", "),
            });
        }
        let keep: HashSet<Digest> = entries
            .iter()
            .filter(|e| match (&e.attests, specific(e)) {
                (Some(attested), _) => kept_images.contains(attested),
                (None, Some(_)) => kept_images.contains(&e.digest),
                (None, None) => true,
            })
            .map(|e| e.digest.clone())
            .collect();
        let kept = each_once(
            entries
                .iter()
                .filter(|e| keep.contains(&e.digest))
                .filter_map(specific),
        );
        let absent = chosen.absent_from(offered.iter().map(String::as_str));
        let whole = entries.iter().all(|e| keep.contains(&e.digest));
        Ok(Some(Self {
            chosen: chosen.clone(),
            keep,
            kept,
            offered,
            absent,
            whole,
        }))
    }

    /// What the copy's report and event say of the choice.
    pub(crate) fn subset(&self, rewritten: Option<Digest>) -> PlatformSubset {
        PlatformSubset {
            offered: self.offered.clone(),
            absent: self.absent.clone(),
            rewritten_digest: rewritten,
        }
    }

    /// The index listing only the kept entries, for a target that refuses the original:
    /// the original JSON less the other entries, annotated with the source digest and the
    /// choice.
    pub(crate) fn rewrite(&self, top: &Manifest) -> Result<Manifest, CopyError> {
        let invalid = |e: serde_json::Error| CopyError::Invalid(format!("invalid index: {e}"));
        let mut index: serde_json::Value = serde_json::from_slice(&top.bytes).map_err(invalid)?;
        let Some(object) = index.as_object_mut() else {
            return Err(CopyError::Invalid("an index is a JSON object".into()));
        };
        if let Some(serde_json::Value::Array(entries)) = object.get_mut("manifests") {
            entries.retain(|entry| {
                entry
                    .get("digest")
                    .and_then(|d| d.as_str())
                    .and_then(|d| d.parse::<Digest>().ok())
                    .is_some_and(|d| self.keep.contains(&d))
            });
        }
        let annotations = object
            .entry("annotations")
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
        if let Some(annotations) = annotations.as_object_mut() {
            annotations.insert(
                SOURCE_DIGEST_ANNOTATION.to_owned(),
                top.digest.to_string().into(),
            );
            annotations.insert(
                PLATFORMS_ANNOTATION.to_owned(),
                self.chosen.to_string().into(),
            );
        }
        let bytes = serde_json::to_vec_pretty(&index).map_err(invalid)?;
        Manifest::from_bytes(bytes.into(), Some(&top.media_type)).map_err(CopyError::Invalid)
    }
}

/// Whether `held` is the index [`Choice::rewrite`] cut from the source index `source` for
/// `chosen`: what a target that refused the sparse index holds when it is up to date.
pub(crate) fn is_rewrite_of(held: &Manifest, source: &Digest, chosen: &Platforms) -> bool {
    if held.kind() != ManifestKind::Index {
        return false;
    }
    let Ok(index) = serde_json::from_slice::<serde_json::Value>(&held.bytes) else {
        return false;
    };
    let annotation = |key: &str| {
        index
            .get("annotations")
            .and_then(|a| a.get(key))
            .and_then(|v| v.as_str())
    };
    annotation(SOURCE_DIGEST_ANNOTATION) == Some(source.as_str())
        && annotation(PLATFORMS_ANNOTATION) == Some(chosen.to_string().as_str())
}

/// The platforms a rewritten index lists, each once.
pub(crate) fn listed_platforms(index: &Manifest) -> Vec<String> {
    index
        .children()
        .map(|entries| each_once(entries.iter().filter_map(specific)))
        .unwrap_or_default()
}

/// The platform of an entry that is platform-specific: not an attestation, not
/// `unknown/unknown`.
fn specific(entry: &Descriptor) -> Option<&str> {
    if entry.attests.is_some() {
        return None;
    }
    entry
        .platform
        .as_deref()
        .filter(|p| !p.starts_with("unknown/unknown"))
}

fn each_once<'a>(platforms: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut seen = HashSet::new();
    platforms
        .filter(|p| seen.insert(*p))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(entries: &[(&str, Option<&str>, Option<&str>)]) -> Manifest {
        let manifests: Vec<serde_json::Value> = entries
            .iter()
            .map(|(digest_seed, platform, attests)| {
                let digest = Digest::sha256_of(digest_seed.as_bytes());
                let mut entry = serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest.to_string(),
                    "size": 100,
                });
                if let Some(p) = platform {
                    let mut parts = p.split('/');
                    entry["platform"] = serde_json::json!({
                        "os": parts.next().unwrap(),
                        "architecture": parts.next().unwrap(),
                    });
                    if let Some(v) = parts.next() {
                        entry["platform"]["variant"] = v.into();
                    }
                }
                if let Some(a) = attests {
                    entry["annotations"] = serde_json::json!({
                        "vnd.docker.reference.type": "attestation-manifest",
                        "vnd.docker.reference.digest": Digest::sha256_of(a.as_bytes()).to_string(),
                    });
                }
                entry
            })
            .collect();
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        });
        Manifest::from_bytes(
            serde_json::to_vec(&body).unwrap().into(),
            Some("application/vnd.oci.image.index.v1+json"),
        )
        .unwrap()
    }

    fn chosen(s: &str) -> Platforms {
        s.parse().unwrap()
    }

    #[test]
    fn a_choice_keeps_its_platforms_and_their_attestations_only() {
        let top = index(&[
            ("amd", Some("linux/amd64"), None),
            ("arm", Some("linux/arm64"), None),
            ("s390", Some("linux/s390x"), None),
            ("att-amd", Some("unknown/unknown"), Some("amd")),
            ("att-s390", Some("unknown/unknown"), Some("s390")),
        ]);
        let choice = Choice::of(&top, Some(&chosen("linux/amd64,linux/riscv64")))
            .unwrap()
            .unwrap();
        let digest = |s: &str| Digest::sha256_of(s.as_bytes());
        assert_eq!(
            choice.keep,
            HashSet::from([digest("amd"), digest("att-amd")])
        );
        assert_eq!(choice.kept, vec!["linux/amd64"]);
        assert_eq!(
            choice.offered,
            vec!["linux/amd64", "linux/arm64", "linux/s390x"]
        );
        assert_eq!(choice.absent, vec!["linux/riscv64"]);
        assert!(!choice.whole);
    }

    #[test]
    fn an_index_without_a_chosen_platform_is_refused_naming_both() {
        let top = index(&[("amd", Some("linux/amd64"), None)]);
        match Choice::of(&top, Some(&chosen("linux/arm64"))) {
            Err(CopyError::NoChosenPlatform { chosen, offered }) => {
                assert_eq!(chosen, "linux/arm64");
                assert_eq!(offered, "linux/amd64");
            }
            other => panic!("{other:?}"),
        }
        assert!(Choice::of(&top, None).unwrap().is_none());
    }

    #[test]
    fn a_rewrite_lists_the_kept_entries_and_says_what_it_was_cut_from() {
        let top = index(&[
            ("amd", Some("linux/amd64"), None),
            ("arm", Some("linux/arm64"), None),
        ]);
        let c = chosen("linux/arm64");
        let choice = Choice::of(&top, Some(&c)).unwrap().unwrap();
        let rewritten = choice.rewrite(&top).unwrap();
        assert_ne!(rewritten.digest, top.digest);
        assert_eq!(rewritten.media_type, top.media_type);
        let entries = rewritten.children().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].digest, Digest::sha256_of(b"arm"));
        assert_eq!(listed_platforms(&rewritten), vec!["linux/arm64"]);
        assert!(is_rewrite_of(&rewritten, &top.digest, &c));
        assert!(!is_rewrite_of(
            &rewritten,
            &top.digest,
            &chosen("linux/amd64")
        ));
        assert!(!is_rewrite_of(&rewritten, &rewritten.digest, &c));
        assert!(!is_rewrite_of(&top, &top.digest, &c));
        // The same choice of the same index is the same bytes: a rerun pushes nothing new.
        assert_eq!(choice.rewrite(&top).unwrap().digest, rewritten.digest);
    }
}
