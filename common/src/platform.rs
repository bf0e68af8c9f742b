//! The platforms a user mirrors (`--platforms linux/amd64,linux/arm64`, a config.json rule's
//! `platforms`): what a platform string is, which are known, and which entries of an index a
//! choice keeps.
//!
//! A platform is `os/architecture[/variant]`, lower case, with the names Go and the OCI image
//! spec use (`linux`, `windows`, `amd64`, `arm64`, `s390x`, ...): a misspelt one is refused by
//! name rather than silently matching nothing. A choice without a variant keeps every variant
//! of its architecture (`linux/arm` keeps `v6` and `v7`); `arm64` without a variant is `v8`.
//! A Windows entry's `os.version` never takes part: `windows/amd64` keeps every build.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::Digest;

/// Operating systems a platform may name (Go's `GOOS` values, as the OCI image spec lists).
const KNOWN_OS: [&str; 15] = [
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "illumos",
    "ios",
    "js",
    "linux",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
];

/// Architectures a platform may name (Go's `GOARCH` values, as the OCI image spec lists).
const KNOWN_ARCH: [&str; 15] = [
    "386", "amd64", "arm", "arm64", "loong64", "mips", "mips64", "mips64le", "mipsle", "ppc64",
    "ppc64le", "riscv64", "s390x", "wasm", "sparc64",
];

/// One platform: `os/architecture[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

/// A platform string that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    /// Not `os/architecture[/variant]`.
    #[error(
        "platform {0:?}: expected os/architecture[/variant], such as linux/amd64 or linux/arm/v7"
    )]
    Shape(String),
    /// An operating system nobody builds images for under that name.
    #[error("platform {platform:?}: unknown operating system {os:?} (known: {})", KNOWN_OS.join(", "))]
    UnknownOs {
        /// The whole string.
        platform: String,
        /// Its operating system.
        os: String,
    },
    /// An architecture nobody builds images for under that name.
    #[error("platform {platform:?}: unknown architecture {architecture:?} (known: {})", KNOWN_ARCH.join(", "))]
    UnknownArchitecture {
        /// The whole string.
        platform: String,
        /// Its architecture.
        architecture: String,
    },
    /// A list with no platform in it.
    #[error("no platform given (expected a comma-separated list such as linux/amd64,linux/arm64)")]
    Empty,
}

impl Platform {
    /// Its operating system.
    pub fn os(&self) -> &str {
        &self.os
    }

    /// Its architecture.
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// Whether an index entry's platform, as the registry crate writes it
    /// (`os/architecture[/variant][:os.version]`), is this one.
    pub fn keeps(&self, entry: &str) -> bool {
        let without_version = entry.split(':').next().unwrap_or(entry);
        let mut parts = without_version.split('/');
        let (Some(os), Some(architecture)) = (parts.next(), parts.next()) else {
            return false;
        };
        let variant = parts.next().filter(|v| !v.is_empty());
        if os != self.os || architecture != self.architecture {
            return false;
        }
        match &self.variant {
            None => true,
            Some(chosen) => {
                normal_variant(architecture, variant) == normal_variant(architecture, Some(chosen))
            }
        }
    }
}

/// A variant as containerd compares it: `arm64` without one is `v8`.
fn normal_variant<'a>(architecture: &str, variant: Option<&'a str>) -> Option<&'a str> {
    match (architecture, variant) {
        ("arm64", None) => Some("v8"),
        (_, v) => v,
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Self, PlatformError> {
        let shape = || PlatformError::Shape(s.to_owned());
        let parts: Vec<&str> = s.split('/').collect();
        let well_formed = |p: &&str| {
            !p.is_empty()
                && p.len() <= 32
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(well_formed) {
            return Err(shape());
        }
        if !KNOWN_OS.contains(&parts[0]) {
            return Err(PlatformError::UnknownOs {
                platform: s.to_owned(),
                os: parts[0].to_owned(),
            });
        }
        if !KNOWN_ARCH.contains(&parts[1]) {
            return Err(PlatformError::UnknownArchitecture {
                platform: s.to_owned(),
                architecture: parts[1].to_owned(),
            });
        }
        Ok(Self {
            os: parts[0].to_owned(),
            architecture: parts[1].to_owned(),
            variant: parts.get(2).map(|v| (*v).to_owned()),
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The platforms chosen for an image: at least one, each once, in a canonical order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platforms(Vec<Platform>);

impl Platforms {
    /// The choice of `platforms` (at least one; duplicates dropped).
    pub fn new(mut platforms: Vec<Platform>) -> Result<Self, PlatformError> {
        platforms.sort();
        platforms.dedup();
        if platforms.is_empty() {
            return Err(PlatformError::Empty);
        }
        Ok(Self(platforms))
    }

    /// Each chosen platform.
    pub fn iter(&self) -> impl Iterator<Item = &Platform> {
        self.0.iter()
    }

    /// Whether an index entry's platform (`os/architecture[/variant][:os.version]`) is one
    /// of the chosen.
    pub fn keeps(&self, entry: &str) -> bool {
        self.0.iter().any(|p| p.keeps(entry))
    }

    /// The chosen platforms that none of `entries` is.
    pub fn absent_from<'a>(&self, entries: impl Iterator<Item = &'a str> + Clone) -> Vec<String> {
        self.0
            .iter()
            .filter(|p| !entries.clone().any(|e| p.keeps(e)))
            .map(ToString::to_string)
            .collect()
    }
}

impl FromStr for Platforms {
    type Err = PlatformError;

    /// A comma-separated list, blanks around each entry ignored.
    fn from_str(s: &str) -> Result<Self, PlatformError> {
        let platforms = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<Platform>, _>>()?;
        Self::new(platforms)
    }
}

impl fmt::Display for Platforms {
    /// The canonical list: sorted, comma-separated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl Serialize for Platforms {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(ToString::to_string))
    }
}

impl<'de> Deserialize<'de> for Platforms {
    /// A list of platform strings (`["linux/amd64", "linux/arm64"]`).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let listed = Vec::<String>::deserialize(d)?;
        let platforms = listed
            .iter()
            .map(|p| p.parse())
            .collect::<Result<Vec<Platform>, _>>()
            .map_err(serde::de::Error::custom)?;
        Self::new(platforms).map_err(serde::de::Error::custom)
    }
}

/// What became of an index when only some of its platforms were chosen. The platforms kept
/// are the copy's `platforms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformSubset {
    /// Every platform the source index lists, each once, in its order.
    pub offered: Vec<String>,
    /// Chosen platforms the source index does not list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub absent: Vec<String>,
    /// The target refused the source's index with only the chosen platforms present, and
    /// holds a new index listing only them instead: its digest (the source digest is the
    /// copy's `digest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewritten_digest: Option<Digest>,
}

impl PlatformSubset {
    /// How summaries say it, given the platforms kept: `2 of 6 (linux/amd64, linux/arm64)`,
    /// then what the source lacked (`; not in the source: linux/riscv64`).
    pub fn describe(&self, kept: &[String]) -> String {
        let mut text = if self.offered.is_empty() {
            kept.join(", ")
        } else {
            format!(
                "{} of {} ({})",
                kept.len(),
                self.offered.len(),
                kept.join(", ")
            )
        };
        if !self.absent.is_empty() {
            text.push_str(&format!("; not in the source: {}", self.absent.join(", ")));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chosen(s: &str) -> Platforms {
        s.parse().unwrap()
    }

    #[test]
    fn a_platform_names_known_systems_and_architectures() {
        assert_eq!(
            "linux/arm/v7".parse::<Platform>().unwrap().to_string(),
            "linux/arm/v7"
        );
        assert!(matches!(
            "linux/amd65".parse::<Platform>(),
            Err(PlatformError::UnknownArchitecture { architecture, .. }) if architecture == "amd65"
        ));
        assert!(matches!(
            "linus/amd64".parse::<Platform>(),
            Err(PlatformError::UnknownOs { os, .. }) if os == "linus"
        ));
        for bad in [
            "linux",
            "linux/",
            "Linux/AMD64",
            "linux/amd64/v1/x",
            "linux amd64",
        ] {
            assert!(
                matches!(bad.parse::<Platform>(), Err(PlatformError::Shape(_))),
                "{bad}"
            );
        }
        assert_eq!(" , ".parse::<Platforms>(), Err(PlatformError::Empty));
    }

    #[test]
    fn a_choice_keeps_every_variant_and_windows_build_of_its_platform() {
        let c = chosen("linux/arm64, linux/arm, windows/amd64");
        assert!(c.keeps("linux/arm64"));
        assert!(c.keeps("linux/arm64/v8"));
        assert!(c.keeps("linux/arm/v6"));
        assert!(c.keeps("linux/arm/v7"));
        assert!(c.keeps("windows/amd64:10.0.17763.5458"));
        assert!(!c.keeps("linux/amd64"));
        assert!(!c.keeps("unknown/unknown"));
        let v7 = chosen("linux/arm/v7,linux/arm64/v8");
        assert!(v7.keeps("linux/arm/v7"));
        assert!(!v7.keeps("linux/arm/v6"));
        assert!(v7.keeps("linux/arm64"), "arm64 without a variant is v8");
    }

    #[test]
    fn a_choice_is_canonical_and_says_what_an_index_lacks() {
        let c = chosen("linux/arm64,linux/amd64,linux/arm64");
        assert_eq!(c.to_string(), "linux/amd64,linux/arm64");
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"["linux/amd64","linux/arm64"]"#
        );
        let back: Platforms = serde_json::from_str(r#"["linux/arm64","linux/amd64"]"#).unwrap();
        assert_eq!(back, c);
        assert!(serde_json::from_str::<Platforms>(r#"["linux/amd46"]"#).is_err());
        let listed = ["linux/amd64", "linux/s390x"];
        assert_eq!(c.absent_from(listed.iter().copied()), vec!["linux/arm64"]);
    }

    #[test]
    fn a_subset_is_told_as_so_many_of_so_many() {
        let subset = PlatformSubset {
            offered: ["linux/amd64", "linux/arm64", "linux/s390x"]
                .map(String::from)
                .to_vec(),
            absent: vec!["linux/riscv64".into()],
            rewritten_digest: None,
        };
        let kept = ["linux/amd64".to_owned(), "linux/arm64".to_owned()];
        assert_eq!(
            subset.describe(&kept),
            "2 of 3 (linux/amd64, linux/arm64); not in the source: linux/riscv64"
        );
    }
}
