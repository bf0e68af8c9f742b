//! Synthetic images with deterministic bytes: OCI manifests and indexes, Docker schema2
//! manifests and manifest lists, with the platforms that matter (Windows with `os.version`).
//!
//! Manifests are written with a three-space indent on purpose: any client that re-serialises
//! them changes their digest, so a byte-exact copy is visible as such.

use image_mirror_common::Digest;
use serde_json::{json, Value};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// A blob: bytes and their digest.
#[derive(Debug, Clone)]
pub struct Blob {
    pub digest: Digest,
    pub media_type: &'static str,
    pub bytes: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &'static str, bytes: Vec<u8>) -> Self {
        Self {
            digest: Digest::sha256_of(&bytes),
            media_type,
            bytes,
        }
    }

    fn descriptor(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len()})
    }
}

/// A manifest: its exact bytes, their digest and its media type.
pub type Manifest = Blob;

/// A platform of a multi-platform image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: &'static str,
    pub architecture: &'static str,
    pub variant: Option<&'static str>,
    pub os_version: Option<&'static str>,
}

impl Platform {
    pub const LINUX_AMD64: Self = Self::linux("amd64", None);
    pub const LINUX_ARM64: Self = Self::linux("arm64", Some("v8"));
    pub const LINUX_ARM_V7: Self = Self::linux("arm", Some("v7"));
    pub const WINDOWS_AMD64: Self = Self {
        os: "windows",
        architecture: "amd64",
        variant: None,
        os_version: Some("10.0.17763.5820"),
    };

    const fn linux(architecture: &'static str, variant: Option<&'static str>) -> Self {
        Self {
            os: "linux",
            architecture,
            variant,
            os_version: None,
        }
    }

    /// The four platforms of the test index: linux amd64, arm64, arm/v7, and windows/amd64
    /// with `os.version`.
    pub fn four() -> [Self; 4] {
        [
            Self::LINUX_AMD64,
            Self::LINUX_ARM64,
            Self::LINUX_ARM_V7,
            Self::WINDOWS_AMD64,
        ]
    }

    fn json(&self) -> Value {
        let mut p = json!({"architecture": self.architecture, "os": self.os});
        if let Some(v) = self.variant {
            p["variant"] = v.into();
        }
        if let Some(v) = self.os_version {
            p["os.version"] = v.into();
        }
        p
    }
}

/// Which manifest family to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Oci,
    Docker,
}

impl Format {
    fn manifest(self) -> &'static str {
        match self {
            Self::Oci => OCI_MANIFEST,
            Self::Docker => DOCKER_MANIFEST,
        }
    }
    fn index(self) -> &'static str {
        match self {
            Self::Oci => OCI_INDEX,
            Self::Docker => DOCKER_LIST,
        }
    }
    fn config(self) -> &'static str {
        match self {
            Self::Oci => OCI_CONFIG,
            Self::Docker => DOCKER_CONFIG,
        }
    }
    fn layer(self) -> &'static str {
        match self {
            Self::Oci => OCI_LAYER,
            Self::Docker => DOCKER_LAYER,
        }
    }
}

/// An image ready to push: its blobs, its manifests children first, the top-level one last.
#[derive(Debug, Clone)]
pub struct Image {
    pub blobs: Vec<Blob>,
    pub manifests: Vec<Manifest>,
}

impl Image {
    /// The top-level manifest (the one a tag points at).
    pub fn top(&self) -> &Manifest {
        self.manifests.last().expect("an image has a manifest")
    }

    /// The top-level digest.
    pub fn digest(&self) -> &Digest {
        &self.top().digest
    }

    /// Total bytes of all blobs.
    pub fn blob_bytes(&self) -> usize {
        self.blobs.iter().map(|b| b.bytes.len()).sum()
    }
}

/// `len` deterministic pseudo-random bytes for `seed` (splitmix64).
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn pretty(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"   ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    serde::Serialize::serialize(value, &mut ser).expect("serialise JSON");
    out
}

/// A single-platform image whose layers are the given blobs (shared layers make shared bases).
pub fn single_with_layers(format: Format, platform: &Platform, layers: Vec<Blob>) -> Image {
    labelled_with_layers(format, platform, layers, &[])
}

/// An OCI image for linux/amd64 whose config carries `labels`.
pub fn oci_manifest_labelled(seed: u64, labels: &[(&str, &str)]) -> Image {
    let layers = vec![Blob::new(Format::Oci.layer(), random_bytes(seed, 2048))];
    labelled_with_layers(Format::Oci, &Platform::LINUX_AMD64, layers, labels)
}

fn labelled_with_layers(
    format: Format,
    platform: &Platform,
    layers: Vec<Blob>,
    labels: &[(&str, &str)],
) -> Image {
    let mut config = json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>()},
    });
    if let Some(v) = platform.variant {
        config["variant"] = v.into();
    }
    if let Some(v) = platform.os_version {
        config["os.version"] = v.into();
    }
    if !labels.is_empty() {
        let labels: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).into()))
            .collect();
        config["config"]["Labels"] = labels.into();
    }
    let config = Blob::new(format.config(), pretty(&config));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": format.manifest(),
        "config": config.descriptor(),
        "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
    });
    let manifest = Blob::new(format.manifest(), pretty(&manifest));
    let mut blobs = vec![config];
    blobs.extend(layers);
    Image {
        blobs,
        manifests: vec![manifest],
    }
}

/// A single-platform image of two small layers, deterministic for `seed`.
pub fn single(format: Format, seed: u64, platform: &Platform) -> Image {
    let layers = vec![
        Blob::new(format.layer(), random_bytes(seed, 2048)),
        Blob::new(
            format.layer(),
            random_bytes(seed.wrapping_add(1), 4096 + (seed % 512) as usize),
        ),
    ];
    single_with_layers(format, platform, layers)
}

/// An index (OCI) or manifest list (Docker) over the given single-platform images.
pub fn index_of(format: Format, children: Vec<(Platform, Image)>) -> Image {
    let mut blobs: Vec<Blob> = Vec::new();
    let mut manifests = Vec::new();
    let mut entries = Vec::new();
    for (platform, child) in children {
        for b in child.blobs {
            if !blobs.iter().any(|x| x.digest == b.digest) {
                blobs.push(b);
            }
        }
        let top = child.manifests.last().expect("child manifest").clone();
        let mut entry = top.descriptor();
        entry["platform"] = platform.json();
        entries.push(entry);
        manifests.extend(child.manifests);
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": format.index(),
        "manifests": entries,
    });
    manifests.push(Blob::new(format.index(), pretty(&index)));
    Image { blobs, manifests }
}

/// An OCI image manifest for linux/amd64.
pub fn oci_manifest(seed: u64) -> Image {
    single(Format::Oci, seed, &Platform::LINUX_AMD64)
}

/// A Docker schema2 manifest for linux/amd64.
pub fn docker_manifest(seed: u64) -> Image {
    single(Format::Docker, seed, &Platform::LINUX_AMD64)
}

/// An OCI index of the four platforms of [`Platform::four`].
pub fn oci_index(seed: u64) -> Image {
    multi(Format::Oci, seed)
}

/// A Docker schema2 manifest list of the four platforms of [`Platform::four`].
pub fn docker_manifest_list(seed: u64) -> Image {
    multi(Format::Docker, seed)
}

fn multi(format: Format, seed: u64) -> Image {
    let children = Platform::four()
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let image = single(format, seed.wrapping_mul(16).wrapping_add(i as u64), &p);
            (p, image)
        })
        .collect();
    index_of(format, children)
}

/// A buildx-style index: two platforms, each with an attestation manifest (in-toto layers,
/// platform `unknown/unknown`, annotations naming the image it describes).
pub fn oci_index_with_attestations(seed: u64) -> Image {
    let platforms = [Platform::LINUX_AMD64, Platform::LINUX_ARM64];
    let mut blobs: Vec<Blob> = Vec::new();
    let mut manifests = Vec::new();
    let mut entries = Vec::new();
    for (i, p) in platforms.iter().enumerate() {
        let image = single(Format::Oci, seed.wrapping_mul(16).wrapping_add(i as u64), p);
        let image_top = image.top().clone();
        let mut entry = image_top.descriptor();
        entry["platform"] = p.json();
        entries.push(entry);
        blobs.extend(image.blobs);
        manifests.push(image_top.clone());

        let statement = Blob::new(
            "application/vnd.in-toto+json",
            pretty(
                &json!({"_type": "https://in-toto.io/Statement/v0.1", "subject": [{"digest": {"sha256": image_top.digest.encoded()}}]}),
            ),
        );
        let config = Blob::new(
            OCI_CONFIG,
            pretty(
                &json!({"architecture": "unknown", "os": "unknown", "rootfs": {"type": "layers", "diff_ids": [statement.digest.to_string()]}}),
            ),
        );
        let mut layer = statement.descriptor();
        layer["annotations"] =
            json!({"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"});
        let attestation = Blob::new(
            OCI_MANIFEST,
            pretty(
                &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config.descriptor(), "layers": [layer]}),
            ),
        );
        let mut entry = attestation.descriptor();
        entry["platform"] = json!({"architecture": "unknown", "os": "unknown"});
        entry["annotations"] = json!({
            "vnd.docker.reference.digest": image_top.digest.to_string(),
            "vnd.docker.reference.type": "attestation-manifest",
        });
        entries.push(entry);
        blobs.push(config);
        blobs.push(statement);
        manifests.push(attestation);
    }
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
    manifests.push(Blob::new(OCI_INDEX, pretty(&index)));
    Image { blobs, manifests }
}

/// `n` single-platform images sharing one `base_size`-byte base layer, each with a small
/// layer of its own; and the bytes of their distinct blobs (the base counted once).
pub fn sharing_base(n: u64, base_size: usize, seed: u64) -> (Vec<Image>, u64) {
    let base = Blob::new(OCI_LAYER, random_bytes(seed, base_size));
    let mut distinct = base.bytes.len() as u64;
    let mut out = Vec::new();
    for i in 0..n {
        let own = Blob::new(OCI_LAYER, random_bytes(seed + 1 + i, 64 * 1024));
        let image =
            single_with_layers(Format::Oci, &Platform::LINUX_AMD64, vec![base.clone(), own]);
        distinct += image
            .blobs
            .iter()
            .filter(|b| b.digest != base.digest)
            .map(|b| b.bytes.len() as u64)
            .sum::<u64>();
        out.push(image);
    }
    (out, distinct)
}

/// The OCI empty descriptor's media type and bytes (`{}`), the config of artifacts without one.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// An OCI artifact (an SBOM, say): `artifactType` set, the empty config, one layer, and, when
/// `subject` is given, the manifest it refers to (as signatures and attestations do).
pub fn artifact(seed: u64, artifact_type: &str, subject: Option<&Manifest>) -> Image {
    let config = Blob::new(OCI_EMPTY, b"{}".to_vec());
    let layer = Blob::new(
        "application/spdx+json",
        pretty(&json!({"spdxVersion": "SPDX-2.3", "name": format!("sbom-{seed}"), "seed": seed})),
    );
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": config.descriptor(),
        "layers": [layer.descriptor()],
        "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
    });
    if let Some(s) = subject {
        manifest["subject"] = s.descriptor();
    }
    Image {
        blobs: vec![config, layer],
        manifests: vec![Blob::new(OCI_MANIFEST, pretty(&manifest))],
    }
}
