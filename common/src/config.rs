//! `config.json`: the rules that discover new upstream tags, one per key.
//!
//! Each key names a rule: which images it covers, where versions come from (`versionSource`),
//! how tags are filtered (`versionConstraint`, `versionFilter`, `latest`), and what its images
//! get wherever they are mirrored from (`platforms`, `referrers`, `digestTags`; a rule with
//! `versionSource: "none"` only says that). Every value is
//! checked when the file is loaded, so a bad regex or constraint is reported with its key before
//! anything runs. Kinds of source this version cannot run are kept as
//! [`VersionSource::Unsupported`]: reported for their key, never a failure of the file.

use std::fmt;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use regex::Regex;
use semver::VersionReq;

use crate::helm_charts::{parse_helm_charts, HelmChart};

use crate::platform::Platforms;
use crate::reference::Repository;

/// A GitHub repository, `OWNER/REPO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubRepo {
    /// The user or organisation.
    pub owner: String,
    /// The repository name.
    pub name: String,
}

impl fmt::Display for GithubRepo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

impl std::str::FromStr for GithubRepo {
    type Err = String;

    /// `OWNER/REPO`: letters, digits, `-`, `_` and `.` on each side.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        };
        match s.split_once('/') {
            Some((owner, name)) if valid(owner) && valid(name) => Ok(Self {
                owner: owner.to_owned(),
                name: name.to_owned(),
            }),
            _ => Err(format!("{s:?}: expected OWNER/REPO")),
        }
    }
}

/// Where a rule's versions come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSource {
    /// `github-releases:OWNER/REPO`: every published, non-prerelease release.
    GithubReleases(GithubRepo),
    /// `github-latest-release:OWNER/REPO`: the release GitHub marks latest.
    GithubLatestRelease(GithubRepo),
    /// `registry`: the tag list of the rule's first image.
    Registry,
    /// `github-tagged-images-file:OWNER/REPO`: at each release tag, the file at
    /// `imagesFilePath` lists full image references (`image:tag`), one a line.
    GithubTaggedImagesFile(GithubRepo),
    /// `helm-latest:<chart repository URL>`: the images the latest version of each chart of
    /// `helmCharts` renders.
    HelmLatest(String),
    /// `none`: the rule discovers nothing; it only says what its images get (`platforms`,
    /// `referrers`, `digestTags`), whoever lists them.
    None,
    /// A kind this version does not run, such as `helm-latest`; `kind` is the part before the
    /// first `:`, `spec` the whole value.
    Unsupported {
        /// The kind, such as `helm-latest`.
        kind: String,
        /// The whole `versionSource` value.
        spec: String,
    },
}

/// One rule of config.json.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The key of the rule in the file.
    pub key: String,
    /// The images the found tags apply to.
    pub images: Vec<Repository>,
    /// Where versions come from.
    pub source: VersionSource,
    /// Semver requirement a version must meet.
    pub constraint: Option<VersionReq>,
    /// Regex searched in the raw tag.
    pub filter: Option<Regex>,
    /// Keep only the highest version after filtering.
    pub latest: bool,
    /// `imagesFilePath`, for sources that read image names from a file in a repository.
    pub images_file_path: Option<String>,
    /// `imageDenylist`, for sources that discover images.
    pub image_denylist: Vec<Repository>,
    /// `helmCharts`, for sources that render Helm charts.
    pub helm_charts: Vec<HelmChart>,
    /// `referrers`: the images' referrers (signatures, attestations, SBOMs) travel with them.
    pub referrers: bool,
    /// `digestTags`: cosign's `sha256-<hex>.sig/.att/.sbom` tags travel with them.
    pub digest_tags: bool,
    /// `platforms`: only these platforms of the images' indexes are mirrored.
    pub platforms: Option<Platforms>,
}

/// The loaded config.json, keys in file order.
#[derive(Debug, Clone, Default)]
pub struct Config {
    rules: Vec<Rule>,
}

/// Why config.json could not be loaded. Every variant names the file; the key-level ones name
/// the key as `rule.field`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Not UTF-8.
    #[error("{}:{line}: not valid UTF-8", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// Line of the first invalid byte.
        line: usize,
    },
    /// Not JSON of the expected shape (syntax, wrong type, unknown key).
    #[error("{}: key {key}: {message}", path.display())]
    Shape {
        /// The file.
        path: PathBuf,
        /// The key path, such as `traefik.latest`.
        key: String,
        /// serde's message, with line and column.
        message: String,
    },
    /// Values that are well-formed JSON but not valid rules; every one is listed.
    #[error("{}", render_invalid(path, .problems))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// `(key path, problem)` pairs.
        problems: Vec<(String, String)>,
    },
}

fn render_invalid(path: &Path, problems: &[(String, String)]) -> String {
    problems
        .iter()
        .map(|(key, p)| format!("{}: key {key}: {p}", path.display()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The keys a rule may have.
const RULE_KEYS: [&str; 11] = [
    "images",
    "versionSource",
    "versionConstraint",
    "versionFilter",
    "latest",
    "helmCharts",
    "imagesFilePath",
    "imageDenylist",
    "referrers",
    "digestTags",
    "platforms",
];

#[derive(Debug)]
struct RawRule {
    images: Vec<String>,
    version_source: String,
    version_constraint: Option<String>,
    version_filter: Option<String>,
    latest: Option<serde_json::Value>,
    helm_charts: Option<serde_json::Map<String, serde_json::Value>>,
    images_file_path: Option<String>,
    image_denylist: Vec<String>,
    referrers: Option<serde_json::Value>,
    digest_tags: Option<serde_json::Value>,
    platforms: Option<Platforms>,
}

impl RawRule {
    /// A rule's JSON object, each key read on its own: every unknown key and every value of
    /// the wrong type is a problem, named `rule.key`.
    fn read(key: &str, value: serde_json::Value) -> Result<Self, Vec<(String, String)>> {
        let serde_json::Value::Object(object) = value else {
            return Err(vec![(key.to_owned(), "a rule is a JSON object".to_owned())]);
        };
        let mut problems = Vec::new();
        for name in object.keys().filter(|k| !RULE_KEYS.contains(&k.as_str())) {
            problems.push((
                format!("{key}.{name}"),
                format!("unknown key (a rule's keys: {})", RULE_KEYS.join(", ")),
            ));
        }
        let mut field = Fields {
            key,
            object: &object,
            problems: &mut problems,
        };
        let version_source = field.get::<String>("versionSource");
        let raw = RawRule {
            images: field.get("images").unwrap_or_default(),
            version_constraint: field.get("versionConstraint"),
            version_filter: field.get("versionFilter"),
            latest: field.get("latest"),
            helm_charts: field.get("helmCharts"),
            images_file_path: field.get("imagesFilePath"),
            image_denylist: field.get("imageDenylist").unwrap_or_default(),
            referrers: field.get("referrers"),
            digest_tags: field.get("digestTags"),
            platforms: field.get("platforms"),
            version_source: version_source.unwrap_or_default(),
        };
        if !object.contains_key("versionSource") {
            problems.push((format!("{key}.versionSource"), "missing".to_owned()));
        }
        if problems.is_empty() {
            Ok(raw)
        } else {
            Err(problems)
        }
    }
}

/// Reading a rule's keys one by one, each problem kept.
struct Fields<'a> {
    key: &'a str,
    object: &'a serde_json::Map<String, serde_json::Value>,
    problems: &'a mut Vec<(String, String)>,
}

impl Fields<'_> {
    /// The value of `name`, when present and of the right type (else a problem is kept).
    fn get<T: serde::de::DeserializeOwned>(&mut self, name: &str) -> Option<T> {
        let value = self.object.get(name)?;
        serde_json::from_value(value.clone())
            .map_err(|e| {
                self.problems
                    .push((format!("{}.{name}", self.key), e.to_string()));
            })
            .ok()
    }
}

impl ConfigError {
    /// Whether a problem is about a key whose path ends with `suffix` (`.platforms`).
    pub fn names_key_ending(&self, suffix: &str) -> bool {
        match self {
            Self::Shape { key, .. } => key.ends_with(suffix),
            Self::Invalid { problems, .. } => problems.iter().any(|(k, _)| k.ends_with(suffix)),
            Self::Io { .. } | Self::NotUtf8 { .. } => false,
        }
    }
}

impl Config {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&bytes, path)
    }

    /// Parses config.json bytes; `path` is only used in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, ConfigError> {
        let text = std::str::from_utf8(bytes).map_err(|e| ConfigError::NotUtf8 {
            path: path.to_owned(),
            line: 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count(),
        })?;
        let de = &mut serde_json::Deserializer::from_str(text);
        let raw: IndexMap<String, serde_json::Value> = serde_path_to_error::deserialize(de)
            .map_err(|e| ConfigError::Shape {
                path: path.to_owned(),
                key: match e.path().to_string() {
                    p if p == "." => "(top level)".to_owned(),
                    p => p,
                },
                message: e.inner().to_string(),
            })?;
        // Every problem of every rule, not only the first: each rule's keys are read one by
        // one, so that a wrong type in one does not hide an unknown key in another.
        let mut problems = Vec::new();
        let mut rules = Vec::with_capacity(raw.len());
        for (key, value) in raw {
            let read = RawRule::read(&key, value).and_then(|raw| Rule::from_raw(&key, raw));
            match read {
                Ok(rule) => rules.push(rule),
                Err(mut p) => problems.append(&mut p),
            }
        }
        if problems.is_empty() {
            Ok(Self { rules })
        } else {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            })
        }
    }

    /// The rules in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule with this key.
    pub fn rule(&self, key: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.key == key)
    }

    /// `(key, kind)` of every rule whose source kind this version does not run.
    pub fn unsupported(&self) -> Vec<(&str, &str)> {
        self.rules
            .iter()
            .filter_map(|r| match &r.source {
                VersionSource::Unsupported { kind, .. } => Some((r.key.as_str(), kind.as_str())),
                _ => None,
            })
            .collect()
    }
}

impl Rule {
    fn from_raw(key: &str, raw: RawRule) -> Result<Self, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let mut problems_of_charts = Vec::new();
        let mut problem = |field: &str, msg: String| problems.push((format!("{key}.{field}"), msg));

        let source = parse_source(&raw.version_source).unwrap_or_else(|e| {
            problem("versionSource", e);
            VersionSource::Registry
        });
        let parse_images = |field: &str, list: &[String], problem: &mut dyn FnMut(&str, String)| {
            list.iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    s.parse::<Repository>()
                        .map_err(|e| problem(&format!("{field}[{i}]"), e.to_string()))
                        .ok()
                })
                .collect::<Vec<_>>()
        };
        let images = parse_images("images", &raw.images, &mut problem);
        let image_denylist = parse_images("imageDenylist", &raw.image_denylist, &mut problem);
        let helm_charts = match &raw.helm_charts {
            Some(map) => parse_helm_charts(map, &format!("{key}.helmCharts")).unwrap_or_else(|p| {
                problems_of_charts.extend(p);
                Vec::new()
            }),
            None => Vec::new(),
        };
        for (field, message) in needs_of(&source, &raw) {
            problem(field, message);
        }
        let constraint = raw.version_constraint.as_deref().and_then(|c| {
            parse_constraint(c)
                .map_err(|e| problem("versionConstraint", format!("{c:?}: {e}")))
                .ok()
        });
        let filter = raw.version_filter.as_deref().and_then(|f| {
            Regex::new(f)
                .map_err(|e| {
                    problem(
                        "versionFilter",
                        format!("{f:?} is not a valid regex: {}", one_line(&e)),
                    )
                })
                .ok()
        });
        let latest = flag("latest", raw.latest.as_ref(), &mut problem);
        let referrers = flag("referrers", raw.referrers.as_ref(), &mut problem);
        let digest_tags = flag("digestTags", raw.digest_tags.as_ref(), &mut problem);
        problems.extend(problems_of_charts);
        if problems.is_empty() {
            Ok(Self {
                key: key.to_owned(),
                images,
                source,
                constraint,
                filter,
                latest,
                images_file_path: raw.images_file_path,
                image_denylist,
                helm_charts,
                referrers,
                digest_tags,
                platforms: raw.platforms,
            })
        } else {
            Err(problems)
        }
    }
}

/// A `true`/`false` field (the strings `"true"` and `"false"` too, as the original tool took).
fn flag(
    field: &str,
    raw: Option<&serde_json::Value>,
    problem: &mut dyn FnMut(&str, String),
) -> bool {
    use serde_json::Value;
    match raw {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(t)) if t == "true" => true,
        Some(Value::String(t)) if t == "false" => false,
        Some(Value::String(t)) => {
            problem(field, format!("expected true or false, found {t:?}"));
            false
        }
        Some(other) => {
            problem(field, format!("expected true or false, found {other}"));
            false
        }
    }
}

/// What `source` needs that `raw` lacks, as `(field, problem)`: images for the kinds that
/// apply tags to them, a path for an images file, charts for helm-latest.
fn needs_of(source: &VersionSource, raw: &RawRule) -> Vec<(&'static str, String)> {
    let mut needs = Vec::new();
    let spec = &raw.version_source;
    match source {
        VersionSource::HelmLatest(_) if raw.helm_charts.is_none() => {
            needs.push((
                "helmCharts",
                format!("at least one chart is needed for {spec:?}"),
            ));
        }
        VersionSource::GithubTaggedImagesFile(_)
            if raw.images_file_path.as_deref().is_none_or(str::is_empty) =>
        {
            needs.push(("imagesFilePath", format!("a path is needed for {spec:?}")));
        }
        VersionSource::GithubReleases(_)
        | VersionSource::GithubLatestRelease(_)
        | VersionSource::Registry
            if raw.images.is_empty() =>
        {
            needs.push((
                "images",
                format!("at least one image is needed for {spec:?}"),
            ));
        }
        _ => {}
    }
    needs
}

/// The last line of a regex error ("unclosed group"), without its `error: ` label.
fn one_line(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    last.trim().trim_start_matches("error: ").to_owned()
}

/// Parses a `versionSource` value.
fn parse_source(spec: &str) -> Result<VersionSource, String> {
    let (kind, arg) = match spec.split_once(':') {
        Some((k, a)) => (k, Some(a)),
        None => (spec, None),
    };
    let github = |arg: Option<&str>| -> Result<GithubRepo, String> {
        arg.and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("{spec:?}: expected {kind}:OWNER/REPO"))
    };
    match kind {
        "github-releases" => Ok(VersionSource::GithubReleases(github(arg)?)),
        "github-latest-release" => Ok(VersionSource::GithubLatestRelease(github(arg)?)),
        "github-tagged-images-file" => Ok(VersionSource::GithubTaggedImagesFile(github(arg)?)),
        "helm-latest" => match arg {
            Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
                Ok(VersionSource::HelmLatest(url.to_owned()))
            }
            _ => Err(format!(
                "{spec:?}: expected helm-latest:https://… (a chart repository URL)"
            )),
        },
        "registry" if arg.is_none() => Ok(VersionSource::Registry),
        "registry" => Err(format!("{spec:?}: \"registry\" takes no argument")),
        "none" if arg.is_none() => Ok(VersionSource::None),
        "" => Err("empty versionSource".to_owned()),
        _ => Ok(VersionSource::Unsupported {
            kind: kind.to_owned(),
            spec: spec.to_owned(),
        }),
    }
}

/// Parses a semver requirement, reading `==X` as `=X` in each comma-separated part.
pub fn parse_constraint(c: &str) -> Result<VersionReq, semver::Error> {
    let normalised: Vec<String> = c
        .split(',')
        .map(|part| {
            let p = part.trim();
            match p.strip_prefix("==") {
                Some(rest) => format!("={}", rest.trim_start()),
                None => p.to_owned(),
            }
        })
        .collect();
    VersionReq::parse(&normalised.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text.as_bytes(), Path::new("config.json"))
    }

    #[test]
    fn typed_rules() {
        let c = parse(
            r#"{
              "a": {"images": ["library/traefik"], "versionSource": "registry",
                    "versionFilter": "^2\\.", "latest": "true"},
              "b": {"images": ["quay.io/coreos/etcd"], "versionSource": "github-releases:etcd-io/etcd",
                    "versionConstraint": "==3.5.1"},
              "c": {"images": ["x/y"], "versionSource": "github-latest-release:o/r", "latest": false},
              "d": {"versionSource": "helm-latest:https://example.test", "helmCharts": {"x": {}}}
            }"#,
        )
        .unwrap();
        let keys: Vec<&str> = c.rules().iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c", "d"]);
        let a = c.rule("a").unwrap();
        assert!(a.latest);
        assert_eq!(a.source, VersionSource::Registry);
        assert!(a.filter.as_ref().unwrap().is_match("2.10.4"));
        assert_eq!(a.images[0].to_string(), "docker.io/library/traefik");
        let b = c.rule("b").unwrap();
        let req = b.constraint.as_ref().unwrap();
        assert!(req.matches(&"3.5.1".parse().unwrap()));
        assert!(!req.matches(&"3.5.2".parse().unwrap()));
        assert_eq!(
            b.source,
            VersionSource::GithubReleases(GithubRepo {
                owner: "etcd-io".into(),
                name: "etcd".into()
            })
        );
        assert!(!c.rule("c").unwrap().latest);
        assert!(c.unsupported().is_empty());
        let d = c.rule("d").unwrap();
        assert_eq!(
            d.source,
            VersionSource::HelmLatest("https://example.test".into())
        );
        assert_eq!(d.helm_charts[0].name, "x");
    }

    #[test]
    fn constraints() {
        let r = parse_constraint(">=1.2, <2").unwrap();
        assert!(r.matches(&"1.9.0".parse().unwrap()));
        assert!(!r.matches(&"2.0.0".parse().unwrap()));
        assert!(parse_constraint(">1.21.0").is_ok());
        assert!(parse_constraint("== 1.0.0").is_ok());
        assert!(parse_constraint(">>1").is_err());
    }

    fn error_of(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_key() {
        let e =
            error_of(r#"{"t": {"images": ["x/y"], "versionSource": "registry", "latst": true}}"#);
        assert!(e.contains("config.json: key t.latst"), "{e}");
        let e = error_of(r#"{"t": {"images": ["x/y"], "versionSource": "registry", "latest": 5}}"#);
        assert!(
            e.contains("key t.latest: expected true or false, found 5"),
            "{e}"
        );
        let e =
            error_of(r#"{"t": {"images": ["x/y"], "versionSource": "registry", "latest": "yes"}}"#);
        assert!(e.contains("key t.latest: expected true or false"), "{e}");
        let e = error_of(
            r#"{"t": {"images": ["x/y"], "versionSource": "registry", "versionFilter": "(["}}"#,
        );
        assert!(e.contains("key t.versionFilter"), "{e}");
        let e = error_of(
            r#"{"t": {"images": ["x/y"], "versionSource": "registry", "versionConstraint": "~>1"}}"#,
        );
        assert!(e.contains("key t.versionConstraint"), "{e}");
        let e = error_of(r#"{"t": {"images": ["Bad"], "versionSource": "registry"}}"#);
        assert!(e.contains("key t.images[0]"), "{e}");
        let e = error_of(r#"{"t": {"images": [], "versionSource": "registry"}}"#);
        assert!(e.contains("key t.images"), "{e}");
        let e = error_of(r#"{"t": {"images": ["x/y"], "versionSource": "github-releases:nope"}}"#);
        assert!(e.contains("key t.versionSource"), "{e}");
        let e = error_of(r#"{"t": {"images": ["x/y"]}}"#);
        assert!(e.contains("versionSource"), "{e}");
        let e = error_of("[1]");
        assert!(e.contains("(top level)"), "{e}");
        let e = Config::parse(b"{\n\"a\xff\": 1}", Path::new("c.json"))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "c.json:2: not valid UTF-8");
    }

    #[test]
    fn every_invalid_value_is_listed() {
        let e = error_of(
            r#"{"a": {"images": ["x/y"], "versionSource": "registry", "versionFilter": "("},
                "b": {"images": ["x/y"], "versionSource": "registry", "latest": "no"}}"#,
        );
        assert_eq!(e.lines().count(), 2, "{e}");
    }
}
