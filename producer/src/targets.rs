//! Where a source image goes: for a new tag, the target that images-list already maps the
//! source to, as the original tool chose it; for a new image, a target derived by the rule
//! the original project asks new images to follow, `<org>/mirrored-<source path without its
//! registry, '/' replaced by '-'>` (`gcr.io/cloud-provider-vsphere/cpi/release/manager` ->
//! `rancher/mirrored-cloud-provider-vsphere-cpi-release-manager`).

use std::collections::HashMap;

use image_mirror_common::reference::ReferenceError;
use image_mirror_common::{ImagesList, Repository};

/// Why a source has no single target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// No line of images-list has this source.
    #[error("{0} is not in images-list: add a first line for it by hand, with its target")]
    Unknown(String),
    /// The `mirrored-` rule gives no valid name for it.
    #[error("{0}: no target can be derived ({1})")]
    Underivable(String, String),
    /// Several targets, and not exactly one `mirrored-` among them.
    #[error("{image} has several targets in images-list ({targets}) and no single `mirrored-` one to prefer")]
    Ambiguous {
        /// The source, as images-list writes it.
        image: String,
        /// Its targets, comma-separated.
        targets: String,
    },
}

/// Where new images go: a registry and an organisation, and the `mirrored-` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewImages {
    /// The target registry (`docker.io`).
    pub registry: String,
    /// The organisation (`rancher`).
    pub org: String,
}

impl NewImages {
    /// New images go where most of `list`'s targets are (`org`, when given, replaces that
    /// organisation); `None` for an empty list without an organisation.
    pub fn for_list(list: &ImagesList, org: Option<&str>) -> Option<Self> {
        let mut counts: HashMap<(String, String), usize> = HashMap::new();
        for e in list.entries() {
            let first = e.target.path().split('/').next().unwrap_or_default();
            *counts
                .entry((e.target.registry().to_owned(), first.to_owned()))
                .or_default() += 1;
        }
        let most = counts
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
            .map(|(k, _)| k);
        match (most, org) {
            (Some((registry, _)), Some(org)) => Some(Self {
                registry,
                org: org.to_owned(),
            }),
            (Some((registry, org)), None) => Some(Self { registry, org }),
            (None, Some(org)) => Some(Self {
                registry: image_mirror_common::reference::DOCKER_HUB.to_owned(),
                org: org.to_owned(),
            }),
            (None, None) => None,
        }
    }

    /// The target of a new image: `<registry>/<org>/mirrored-<path, '/' as '-'>`.
    pub fn target(&self, source: &Repository) -> Result<Repository, ReferenceError> {
        let name = source.path().replace('/', "-");
        format!("{}/{}/mirrored-{name}", self.registry, self.org).parse()
    }

    /// `source`'s target: the one images-list maps it to when it has one, else the derived
    /// one (`true` for a new image).
    pub fn target_of(
        &self,
        list: &ImagesList,
        source: &Repository,
    ) -> Result<(Repository, bool), TargetError> {
        match target_for(list, source) {
            Ok(t) => Ok((t, false)),
            Err(TargetError::Unknown(_)) => self
                .target(source)
                .map(|t| (t, true))
                .map_err(|e| TargetError::Underivable(source.short(), e.to_string())),
            Err(e) => Err(e),
        }
    }
}

/// The target of `source`: its only mapping in `list`, or, when it has several, the one
/// whose name starts with `mirrored-`.
pub fn target_for(list: &ImagesList, source: &Repository) -> Result<Repository, TargetError> {
    let targets = list.targets_of(source);
    match targets.as_slice() {
        [] => Err(TargetError::Unknown(source.short())),
        [only] => Ok((*only).clone()),
        several => {
            let mirrored: Vec<&&Repository> = several
                .iter()
                .filter(|t| {
                    t.path()
                        .rsplit('/')
                        .next()
                        .is_some_and(|name| name.starts_with("mirrored-"))
                })
                .collect();
            match mirrored.as_slice() {
                [one] => Ok((**one).clone()),
                _ => Err(TargetError::Ambiguous {
                    image: source.short(),
                    targets: several
                        .iter()
                        .map(|t| t.short())
                        .collect::<Vec<_>>()
                        .join(", "),
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &[u8] = b"a/one rancher/one v1\n\
b/two rancher/mirrored-b-two v1\nb/two rancher/two v1\n\
c/three rancher/x v1\nc/three rancher/y v1\n";

    fn repo(s: &str) -> Repository {
        s.parse().unwrap()
    }

    #[test]
    fn new_images_follow_the_mirrored_rule_for_every_kind_of_source() {
        let list = ImagesList::parse(LIST).unwrap();
        let rule = NewImages::for_list(&list, None).unwrap();
        assert_eq!(
            (rule.registry.as_str(), rule.org.as_str()),
            ("docker.io", "rancher")
        );
        for (source, target) in [
            ("library/traefik", "rancher/mirrored-library-traefik"),
            ("traefik", "rancher/mirrored-library-traefik"),
            ("flannel/flannel", "rancher/mirrored-flannel-flannel"),
            ("reg.example:5000/team/app", "rancher/mirrored-team-app"),
            (
                "gcr.io/cloud-provider-vsphere/cpi/release/manager",
                "rancher/mirrored-cloud-provider-vsphere-cpi-release-manager",
            ),
        ] {
            assert_eq!(
                rule.target(&repo(source)).unwrap(),
                repo(target),
                "{source}"
            );
        }
        let other = NewImages::for_list(&list, Some("acme")).unwrap();
        assert_eq!(
            other.target(&repo("a/b")).unwrap(),
            repo("acme/mirrored-a-b")
        );
        // A listed source keeps its mapping.
        assert_eq!(
            rule.target_of(&list, &repo("a/one")).unwrap(),
            (repo("rancher/one"), false)
        );
        assert_eq!(
            rule.target_of(&list, &repo("d/four")).unwrap(),
            (repo("rancher/mirrored-d-four"), true)
        );
    }

    #[test]
    fn single_mirrored_unknown_and_ambiguous() {
        let list = ImagesList::parse(LIST).unwrap();
        assert_eq!(
            target_for(&list, &repo("a/one")).unwrap(),
            repo("rancher/one")
        );
        assert_eq!(
            target_for(&list, &repo("b/two")).unwrap(),
            repo("rancher/mirrored-b-two")
        );
        assert_eq!(
            target_for(&list, &repo("d/four")),
            Err(TargetError::Unknown("d/four".into()))
        );
        let err = target_for(&list, &repo("c/three")).unwrap_err();
        assert!(err.to_string().contains("rancher/x, rancher/y"), "{err}");
    }
}
