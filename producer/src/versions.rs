//! Choosing tags by version: the `versionFilter`, `versionConstraint` and `latest` of a rule.
//!
//! Versions are read leniently: a leading `v` is dropped and missing minor or patch numbers
//! are zero (`v1.2` is 1.2.0), so constraints written for semver apply to the tags projects
//! really use. The tag itself is always kept as written.

use regex::Regex;
use semver::{Version, VersionReq};

/// The version a tag stands for, if it is one: `[v]MAJOR[.MINOR[.PATCH]][-PRE][+BUILD]`.
pub fn lenient_version(tag: &str) -> Option<Version> {
    let bare = tag
        .strip_prefix('v')
        .or_else(|| tag.strip_prefix('V'))
        .unwrap_or(tag);
    let split = bare.find(['-', '+']).unwrap_or(bare.len());
    let (core, rest) = bare.split_at(split);
    let parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty()
        || parts.len() > 3
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let mut numbers = [0_u64; 3];
    for (n, p) in numbers.iter_mut().zip(&parts) {
        *n = p.parse().ok()?;
    }
    Version::parse(&format!(
        "{}.{}.{}{rest}",
        numbers[0], numbers[1], numbers[2]
    ))
    .ok()
}

/// Whether a release tag is a semver version once a leading `v` is dropped (strictly: all
/// three numbers present).
pub fn is_semver_tag(tag: &str) -> bool {
    Version::parse(tag.strip_prefix('v').unwrap_or(tag)).is_ok()
}

/// The selection rules of one config.json entry.
#[derive(Debug, Clone, Default)]
pub struct Selection<'a> {
    /// Searched (not anchored unless it anchors itself) in the raw tag.
    pub filter: Option<&'a Regex>,
    /// Met by the tag's lenient version; tags that are not versions fail it.
    pub constraint: Option<&'a VersionReq>,
    /// Keep only the highest version left; tags that are not versions are left out.
    pub latest: bool,
}

impl Selection<'_> {
    /// The tags of `tags` that pass, in their order (at most one with `latest`).
    pub fn apply(&self, tags: &[String]) -> Vec<String> {
        let kept: Vec<&String> = tags
            .iter()
            .filter(|t| self.filter.is_none_or(|f| f.is_match(t)))
            .filter(|t| {
                self.constraint
                    .is_none_or(|c| lenient_version(t).is_some_and(|v| c.matches(&v)))
            })
            .collect();
        if !self.latest {
            return kept.into_iter().cloned().collect();
        }
        kept.into_iter()
            .filter_map(|t| lenient_version(t).map(|v| (v, t)))
            // Equal versions (`1.2` and `1.2.0`): the first listed wins.
            .fold(None::<(Version, &String)>, |best, (v, t)| match best {
                Some((bv, bt)) if bv >= v => Some((bv, bt)),
                _ => Some((v, t)),
            })
            .map(|(_, t)| vec![t.clone()])
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image_mirror_common::config::parse_constraint;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn lenient_versions() {
        let v = |s: &str| lenient_version(s).map(|v| v.to_string());
        assert_eq!(v("v1.2.3").as_deref(), Some("1.2.3"));
        assert_eq!(v("1.2").as_deref(), Some("1.2.0"));
        assert_eq!(v("v3").as_deref(), Some("3.0.0"));
        assert_eq!(v("1.2.3-rc.1").as_deref(), Some("1.2.3-rc.1"));
        assert_eq!(v("1.2-alpine").as_deref(), Some("1.2.0-alpine"));
        assert_eq!(v("latest"), None);
        assert_eq!(v("1.2.3.4"), None);
        assert_eq!(v("1..2"), None);
        assert_eq!(v(""), None);
        assert!(is_semver_tag("v1.2.3"));
        assert!(!is_semver_tag("v1.2"));
        assert!(!is_semver_tag("release-1"));
    }

    #[test]
    fn constraint_filter_and_latest() {
        let all = tags(&[
            "v1.21.0",
            "v1.21.1",
            "v1.22.0",
            "1.3",
            "v1.2.9",
            "latest",
            "v2.0.0",
            "v1.22.0-rc.1",
        ]);
        let gt = parse_constraint(">1.21.0").unwrap();
        let sel = Selection {
            constraint: Some(&gt),
            ..Selection::default()
        };
        assert_eq!(sel.apply(&all), tags(&["v1.21.1", "v1.22.0", "v2.0.0"]));

        let range = parse_constraint(">=1.2, <2").unwrap();
        let sel = Selection {
            constraint: Some(&range),
            ..Selection::default()
        };
        assert_eq!(
            sel.apply(&all),
            tags(&["v1.21.0", "v1.21.1", "v1.22.0", "1.3", "v1.2.9"])
        );

        let unanchored = Regex::new(r"1\.2").unwrap();
        let sel = Selection {
            filter: Some(&unanchored),
            ..Selection::default()
        };
        assert_eq!(
            sel.apply(&all),
            tags(&["v1.21.0", "v1.21.1", "v1.22.0", "v1.2.9", "v1.22.0-rc.1"])
        );
        let anchored = Regex::new(r"^v1\.2\.[0-9]+$").unwrap();
        let sel = Selection {
            filter: Some(&anchored),
            latest: true,
            ..Selection::default()
        };
        assert_eq!(sel.apply(&all), tags(&["v1.2.9"]));

        // latest ignores what is not a version instead of failing on it.
        let sel = Selection {
            latest: true,
            ..Selection::default()
        };
        assert_eq!(sel.apply(&all), tags(&["v2.0.0"]));
        assert!(sel.apply(&tags(&["latest", "stable"])).is_empty());
    }
}
