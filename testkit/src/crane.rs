//! crane (go-containerregistry) as a second independent client: what digest and manifest does
//! a client that shares no code with skopeo or image-mirror read at an image?

use std::process::Command;

use image_mirror_common::Digest;

fn crane(args: &[&str]) -> Vec<u8> {
    let out = Command::new(crate::tools::path("crane"))
        .args(args)
        .arg("--insecure")
        .output()
        .expect("crane runs");
    assert!(
        out.status.success(),
        "crane {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The digest crane reads for `image` (`HOST/REPO:TAG`, plain HTTP): `crane digest`.
pub fn digest(image: &str) -> Digest {
    String::from_utf8(crane(&["digest", image]))
        .expect("UTF-8")
        .trim()
        .parse()
        .expect("crane prints a digest")
}

/// The manifest bytes crane reads at `image`: `crane manifest`.
pub fn manifest(image: &str) -> Vec<u8> {
    crane(&["manifest", image])
}

/// The tags crane lists in `repo` (`HOST/REPO`): `crane ls`.
pub fn ls(repo: &str) -> Vec<String> {
    String::from_utf8(crane(&["ls", repo]))
        .expect("UTF-8")
        .lines()
        .map(str::to_owned)
        .collect()
}
