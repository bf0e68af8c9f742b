//! Image references: repositories, tags and `repository[:tag][@digest]`, parsed and normalised
//! the way the OCI distribution spec and Docker read them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::Digest;

/// The registry that names without a host belong to.
pub const DOCKER_HUB: &str = "docker.io";

/// Longest repository name, host included, that Docker accepts.
const NAME_MAX: usize = 255;
/// Longest tag the distribution spec allows.
const TAG_MAX: usize = 128;

/// Why a string is not a valid reference, repository or tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: {reason}")]
pub struct ReferenceError {
    what: &'static str,
    input: String,
    reason: String,
}

impl ReferenceError {
    fn new(what: &'static str, input: &str, reason: impl Into<String>) -> Self {
        Self {
            what,
            input: input.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    /// The tag as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| ReferenceError::new("tag", s, reason);
        let bytes = s.as_bytes();
        let Some(&first) = bytes.first() else {
            return Err(err("empty"));
        };
        if bytes.len() > TAG_MAX {
            return Err(err("longer than 128 characters"));
        }
        if !(first.is_ascii_alphanumeric() || first == b'_') {
            return Err(err("must start with a letter, a digit or '_'"));
        }
        if !bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err(err("only letters, digits, '_', '.' and '-' are allowed"));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A repository: a registry host (with optional port) and a path, normalised so that Docker Hub
/// is explicit (`flannel/flannel` is `docker.io/flannel/flannel`, `traefik` is
/// `docker.io/library/traefik`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repository {
    registry: String,
    path: String,
}

impl Repository {
    /// The registry host, with its port when one was given (`docker.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The path inside the registry (`library/traefik`, `coreos/etcd`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether this repository is on Docker Hub.
    pub fn is_docker_hub(&self) -> bool {
        self.registry == DOCKER_HUB
    }

    /// The form images-list uses: Docker Hub names without `docker.io/` (`library/traefik`),
    /// others with their host (`quay.io/coreos/etcd`).
    pub fn short(&self) -> String {
        if self.is_docker_hub() {
            self.path.clone()
        } else {
            format!("{}/{}", self.registry, self.path)
        }
    }

    /// The same path on another registry host.
    pub fn with_registry(&self, registry: &str) -> Result<Self, ReferenceError> {
        format!("{registry}/{}", self.path).parse()
    }

    /// The same repository under organisation `org`: the first path component is replaced
    /// (`rancher/mirrored-x` becomes `org/mirrored-x`); a one-component path gets `org/` in
    /// front.
    pub fn with_org(&self, org: &str) -> Result<Self, ReferenceError> {
        let rest = match self.path.split_once('/') {
            Some((_, rest)) => rest,
            None => &self.path,
        };
        format!("{}/{org}/{rest}", self.registry).parse()
    }

    /// A reference to this repository at `tag`.
    pub fn at_tag(&self, tag: Tag) -> ImageRef {
        ImageRef {
            repository: self.clone(),
            tag: Some(tag),
            digest: None,
        }
    }

    /// A reference to this repository at `digest`.
    pub fn at_digest(&self, digest: Digest) -> ImageRef {
        ImageRef {
            repository: self.clone(),
            tag: None,
            digest: Some(digest),
        }
    }
}

impl FromStr for Repository {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_repository(s, "repository")
    }
}

/// Splits `name` into registry and path and checks both.
fn parse_repository(name: &str, what: &'static str) -> Result<Repository, ReferenceError> {
    let err = |reason: &str| ReferenceError::new(what, name, reason);
    if name.is_empty() {
        return Err(err("empty"));
    }
    let (registry, path) = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            check_host(first).map_err(|r| err(&r))?;
            let host = if first == "index.docker.io" {
                DOCKER_HUB
            } else {
                first
            };
            (host.to_owned(), rest.to_owned())
        }
        _ => (DOCKER_HUB.to_owned(), name.to_owned()),
    };
    for component in path.split('/') {
        check_path_component(component).map_err(|r| err(&r))?;
    }
    let path = if registry == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    if registry.len() + 1 + path.len() > NAME_MAX {
        return Err(err("longer than 255 characters"));
    }
    Ok(Repository { registry, path })
}

/// `host[:port]`: DNS labels separated by dots, or a bracketed IPv6 address.
fn check_host(host: &str) -> Result<(), String> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (addr, after) = rest
            .split_once(']')
            .ok_or_else(|| "unclosed '[' in the registry host".to_owned())?;
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(format!("invalid IPv6 address {addr:?}"));
        }
        match after {
            "" => return Ok(()),
            _ => (
                None,
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| "junk after the IPv6 address".to_owned())?,
                ),
            ),
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => (Some(name), Some(port)),
            None => (Some(host), None),
        }
    };
    if let Some(name) = name {
        let label_ok = |l: &str| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        };
        if !name.split('.').all(label_ok) {
            return Err(format!("invalid registry host {name:?}"));
        }
    }
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || port.parse::<u16>().is_err() {
            return Err(format!("invalid port {port:?}"));
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn check_path_component(c: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "path component {c:?} must be lowercase letters and digits, separated by '.', '_', \
             '__' or dashes"
        )
    };
    let bytes = c.as_bytes();
    if bytes.is_empty() {
        return Err("empty path component".to_owned());
    }
    let mut i = 0;
    loop {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_lowercase() || bytes[i].is_ascii_digit()) {
            i += 1;
        }
        if i == start {
            return Err(bad());
        }
        if i == bytes.len() {
            return Ok(());
        }
        let sep_start = i;
        match bytes[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if bytes.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            b'-' => {
                while bytes.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return Err(bad()),
        }
        debug_assert!(i > sep_start);
    }
}

/// A full image reference: a repository with a tag, a digest, or both.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    repository: Repository,
    tag: Option<Tag>,
    digest: Option<Digest>,
}

impl ImageRef {
    /// The repository part.
    pub fn repository(&self) -> &Repository {
        &self.repository
    }

    /// The tag, when the reference has one.
    pub fn tag(&self) -> Option<&Tag> {
        self.tag.as_ref()
    }

    /// The digest, when the reference has one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to ask the registry for: the digest when there is one, else the tag, else `latest`.
    pub fn reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_string(),
            (None, None) => "latest".to_owned(),
        }
    }

    /// The short form (Docker Hub host left out), with tag and digest.
    pub fn short(&self) -> String {
        self.with_suffix(self.repository.short())
    }

    fn with_suffix(&self, mut s: String) -> String {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t.as_str());
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d.as_str());
        }
        s
    }
}

/// skopeo's and containers-image's transports other than a registry's, by prefix, and what
/// each names.
const OTHER_TRANSPORTS: [(&str, &str); 8] = [
    ("oci:", "an OCI image layout on disk"),
    ("oci-archive:", "an OCI image layout in a tar file"),
    ("docker-archive:", "a `docker save` tar file"),
    ("docker-daemon:", "an image in a Docker engine"),
    ("containers-storage:", "an image in podman's storage"),
    ("dir:", "a folder of blobs"),
    ("ostree:", "an OSTree repository"),
    ("sif:", "a Singularity image"),
];

impl ImageRef {
    /// A reference as a person writes it on a command line: this project's form
    /// (`quay.io/coreos/etcd:v3.5.21`), or skopeo's registry transport `docker://` before it.
    /// A reference to anything but a registry (skopeo's `oci:`, `docker-archive:`, …) or a
    /// URL is refused, naming what it is.
    pub fn from_arg(text: &str) -> Result<Self, ReferenceError> {
        if let Some(rest) = text.strip_prefix("docker://") {
            return rest.parse();
        }
        for (prefix, what) in OTHER_TRANSPORTS {
            if text.starts_with(prefix) {
                return Err(ReferenceError::new(
                    "reference",
                    text,
                    format!(
                        "the {} transport ({what}) is not a registry: image-mirror copies \
                         between registries (write HOST/REPOSITORY:TAG, or docker://…)",
                        prefix.trim_end_matches(':')
                    ),
                ));
            }
        }
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(ReferenceError::new(
                "reference",
                text,
                format!(
                    "a reference is HOST/REPOSITORY:TAG without a scheme ({scheme}:// is not \
                     one); a registry over plain HTTP is named with --insecure-registry HOST"
                ),
            ));
        }
        text.parse()
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, digest) = match s.rsplit_once('@') {
            Some((name, d)) => (
                name,
                Some(
                    d.parse::<Digest>()
                        .map_err(|e| ReferenceError::new("reference", s, e.to_string()))?,
                ),
            ),
            None => (s, None),
        };
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                let tag = name[at + 1..]
                    .parse::<Tag>()
                    .map_err(|e| ReferenceError::new("reference", s, e.to_string()))?;
                (&name[..at], Some(tag))
            }
            None => (name, None),
        };
        let repository = parse_repository(name, "reference").map_err(|e| ReferenceError {
            input: s.to_owned(),
            ..e
        })?;
        Ok(Self {
            repository,
            tag,
            digest,
        })
    }
}

impl fmt::Display for Repository {
    /// The full form, host included: `docker.io/library/traefik`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.path)
    }
}

impl fmt::Display for ImageRef {
    /// The full form: `docker.io/library/traefik:v3.0@sha256:…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.with_suffix(self.repository.to_string()))
    }
}

macro_rules! string_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

string_serde!(Tag);
string_serde!(Repository);
string_serde!(ImageRef);

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(s: &str) -> Repository {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_hub_is_implicit() {
        let r = repo("flannel/flannel");
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.path(), "flannel/flannel");
        assert_eq!(r.to_string(), "docker.io/flannel/flannel");
        assert_eq!(r.short(), "flannel/flannel");

        let t = repo("traefik");
        assert_eq!(t.to_string(), "docker.io/library/traefik");
        assert_eq!(t.short(), "library/traefik");
        assert_eq!(repo("library/traefik"), t);
        assert_eq!(repo("docker.io/traefik"), t);
        assert_eq!(repo("index.docker.io/library/traefik"), t);
    }

    #[test]
    fn hosts_ports_and_nested_paths() {
        let r = repo("registry.k8s.io/sig-storage/csi-attacher");
        assert_eq!(r.registry(), "registry.k8s.io");
        assert_eq!(r.path(), "sig-storage/csi-attacher");
        assert_eq!(r.short(), "registry.k8s.io/sig-storage/csi-attacher");

        let r = repo("127.0.0.1:5000/a/b/c");
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.path(), "a/b/c");

        let r = repo("localhost/x");
        assert_eq!(r.registry(), "localhost");
        let r = repo("[::1]:5000/x");
        assert_eq!(r.registry(), "[::1]:5000");
        // A first component without '.' or ':' is a path, not a host.
        assert_eq!(repo("myhost/x").registry(), "docker.io");
    }

    #[test]
    fn registry_and_org_overrides() {
        let r = repo("rancher/mirrored-coreos-etcd");
        assert_eq!(
            r.with_registry("registry.example.com:5000")
                .unwrap()
                .to_string(),
            "registry.example.com:5000/rancher/mirrored-coreos-etcd"
        );
        assert_eq!(
            r.with_org("acme").unwrap().to_string(),
            "docker.io/acme/mirrored-coreos-etcd"
        );
        assert_eq!(
            repo("quay.io/a/b/c").with_org("acme").unwrap().to_string(),
            "quay.io/acme/b/c"
        );
        assert!(r.with_org("Bad Org").is_err());
    }

    #[test]
    fn path_grammar() {
        for good in ["a", "a.b", "a_b", "a__b", "a---b", "a0/b-1/c.d_e"] {
            repo(good);
        }
        for bad in [
            "",
            "A",
            "a/",
            "/a",
            "a//b",
            "a.",
            ".a",
            "a___b",
            "a-",
            "a..b",
            "a_.b",
            "a b",
            "quay.io/",
            "host:port/x",
            "ho_st.io/x",
            "-h.io/x",
            "h.io:99999/x",
            "[zz]/x",
        ] {
            assert!(bad.parse::<Repository>().is_err(), "{bad:?} accepted");
        }
        let long = format!("a/{}", "b".repeat(250));
        assert!(long.parse::<Repository>().is_err());
    }

    #[test]
    fn tags() {
        for good in ["v1.2.3", "latest", "_x", "1", &"a".repeat(128)] {
            assert!(good.parse::<Tag>().is_ok(), "{good:?} refused");
        }
        for bad in ["", ".v1", "-v1", "v1+build", "a/b", &"a".repeat(129), "é"] {
            assert!(bad.parse::<Tag>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn references_with_tag_and_digest() {
        let d = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let r: ImageRef = format!("traefik:v3.0@{d}").parse().unwrap();
        assert_eq!(r.repository().to_string(), "docker.io/library/traefik");
        assert_eq!(r.tag().map(Tag::as_str), Some("v3.0"));
        assert_eq!(r.digest().map(Digest::as_str), Some(d));
        assert_eq!(r.reference(), d);
        assert_eq!(r.to_string(), format!("docker.io/library/traefik:v3.0@{d}"));
        assert_eq!(r.short(), format!("library/traefik:v3.0@{d}"));

        let r: ImageRef = "127.0.0.1:5000/x/y:1.0".parse().unwrap();
        assert_eq!(r.repository().registry(), "127.0.0.1:5000");
        assert_eq!(r.reference(), "1.0");
        let r: ImageRef = "127.0.0.1:5000/x/y".parse().unwrap();
        assert_eq!(
            ImageRef::from_arg("docker://127.0.0.1:5000/x/y").unwrap(),
            r
        );
        assert_eq!(r.tag(), None);
        assert_eq!(r.reference(), "latest");

        for bad in [
            "traefik:",
            "traefik:.x",
            "traefik@sha256:00",
            "Traefik:v1",
            "x:y:z",
        ] {
            assert!(bad.parse::<ImageRef>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn other_transports_and_urls_are_refused_by_name() {
        for (text, named) in [
            ("oci:/dir:tag", "the oci transport"),
            ("oci-archive:/tmp/x.tar", "the oci-archive transport"),
            ("docker-archive:x.tar", "a `docker save` tar file"),
            ("containers-storage:x", "podman"),
            ("http://127.0.0.1:5000/x/y:1", "http:// is not one"),
            ("https://quay.io/x/y", "https:// is not one"),
        ] {
            let err = ImageRef::from_arg(text).unwrap_err().to_string();
            assert!(err.contains(named), "{text}: {err}");
            assert!(!err.contains("invalid port"), "{text}: {err}");
        }
        assert!(ImageRef::from_arg("docker://quay.io/coreos/etcd:v3").is_ok());
    }

    #[test]
    fn serde_uses_the_full_form() {
        let r = repo("flannel/flannel");
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, "\"docker.io/flannel/flannel\"");
        assert_eq!(serde_json::from_str::<Repository>(&json).unwrap(), r);
        assert!(serde_json::from_str::<Repository>("\"Bad\"").is_err());
    }
}
