//! skopeo as an independent check: what digest does another client see for an image?

use std::process::Command;

use image_mirror_common::Digest;

/// The digest skopeo computes for the manifest it reads at `image` (`HOST/REPO:TAG`, plain
/// HTTP), using `skopeo inspect --raw` and `skopeo manifest-digest`.
pub fn manifest_digest(image: &str) -> Digest {
    digest_of(&raw_manifest(image))
}

/// Like [`manifest_digest`], with `user:password` for a registry that wants them.
pub fn manifest_digest_as(image: &str, creds: &str) -> Digest {
    digest_of(&raw_manifest_as(image, Some(creds)))
}

fn digest_of(raw: &[u8]) -> Digest {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("manifest.json");
    std::fs::write(&file, raw).expect("write manifest");
    let out = Command::new("skopeo")
        .arg("manifest-digest")
        .arg(&file)
        .output()
        .expect("skopeo runs (install the skopeo package)");
    assert!(
        out.status.success(),
        "skopeo manifest-digest: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .parse()
        .expect("skopeo prints a digest")
}

/// The manifest bytes skopeo reads at `image`.
pub fn raw_manifest(image: &str) -> Vec<u8> {
    raw_manifest_as(image, None)
}

fn raw_manifest_as(image: &str, creds: Option<&str>) -> Vec<u8> {
    let mut command = Command::new("skopeo");
    command.args(["inspect", "--raw", "--tls-verify=false"]);
    if let Some(c) = creds {
        command.arg("--creds").arg(c);
    }
    let out = command
        .arg(format!("docker://{image}"))
        .output()
        .expect("skopeo runs (install the skopeo package)");
    assert!(
        out.status.success(),
        "skopeo inspect {image}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
