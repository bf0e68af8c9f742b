//! Where a new tag of a source image goes: the target that images-list already maps the
//! source to, as the original tool chose it.

use image_mirror_common::{ImagesList, Repository};

/// Why a source has no single target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// No line of images-list has this source.
    #[error("{0} is not in images-list: add a first line for it by hand, with its target")]
    Unknown(String),
    /// Several targets, and not exactly one `mirrored-` among them.
    #[error("{image} has several targets in images-list ({targets}) and no single `mirrored-` one to prefer")]
    Ambiguous {
        /// The source, as images-list writes it.
        image: String,
        /// Its targets, comma-separated.
        targets: String,
    },
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
