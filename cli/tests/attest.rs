//! `--attest`: after a copy, a statement of it signed with cosign's key (sealed, its password
//! from COSIGN_PASSWORD) or a PKCS#8 one, stored in both of cosign's forms (the `.att` tag and
//! a Sigstore bundle referrer, in the fallback tag of a registry without the referrers API),
//! which the real `cosign verify-attestation --key` verifies at the target in each form
//! (distribution 2.8 and 3), its predicate as documented; a second copy adds none.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use base64::Engine as _;
use image_mirror_testkit::images;
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::{crane, Implementation, Registry, RegistryOptions};

const PREDICATE: &str = "https://github.com/example/image-mirror/attestations/mirror/v1";

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// cosign in `dir`, offline, with `password` for its key.
fn cosign(dir: &Path, password: &str, args: &[&str]) -> Output {
    image_mirror_testkit::cosign::run(dir, password, args)
}

fn copy(dir: &Path, hosts: &[&str], key: &str, password: &str, from: &str, to: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_image-mirror"))
        .args(["--insecure-registry", &hosts.join(",")])
        .args(["copy", from, to, "--attest", key])
        .current_dir(dir)
        .env("COSIGN_PASSWORD", password)
        .env("DOCKER_CONFIG", dir)
        .env("IMAGE_MIRROR_CACHE_DIR", dir.join("cache"))
        .output()
        .unwrap()
}

/// The statement `cosign verify-attestation` verified at `image` with `public`, in each form:
/// the bundle referrer (`--new-bundle-format`) and the `.att` tag; both the same.
fn verified_statement(dir: &Path, public: &str, image: &str) -> serde_json::Value {
    let referrer = verified_in(dir, public, image, true);
    let tag = verified_in(dir, public, image, false);
    assert_eq!(referrer, tag, "the two forms hold one statement");
    tag
}

fn verified_in(dir: &Path, public: &str, image: &str, bundle: bool) -> serde_json::Value {
    let form = format!("--new-bundle-format={bundle}");
    let out = cosign(
        dir,
        "",
        &[
            "verify-attestation",
            &form,
            "--key",
            public,
            "--type",
            PREDICATE,
            "--insecure-ignore-tlog=true",
            "--allow-insecure-registry",
            "--allow-http-registry",
            image,
        ],
    );
    assert!(
        out.status.success(),
        "cosign verify-attestation {form}: {}",
        text(&out)
    );
    let envelope: serde_json::Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no envelope printed: {}", text(&out)));
    let payload = base64::engine::general_purpose::STANDARD
        .decode(envelope["payload"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice(&payload).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_attested_with_cosigns_key_verifies_with_cosign_and_a_second_run_adds_none() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = cosign(d, "s3cret", &["generate-key-pair"]);
    assert!(out.status.success(), "{}", text(&out));
    let (src, dst) = (Registry::start(), Registry::start());
    let image = images::oci_index(6700);
    push_image(&src.url(), "team/app", "v1", &image).await;
    let hosts = [src.host(), dst.host()];
    let (from, to) = (
        format!("{}/team/app:v1", src.host()),
        format!("{}/mirror/app:v1", dst.host()),
    );

    // The wrong password: bad input, naming the flag, nothing copied.
    let out = copy(d, &hosts, "cosign.key", "wrong", &from, &to);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("--attest") && text(&out).contains("password"),
        "{}",
        text(&out)
    );

    let out = copy(d, &hosts, "cosign.key", "s3cret", &from, &to);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let statement = verified_statement(d, "cosign.pub", &to);
    assert_eq!(statement["predicateType"], PREDICATE);
    let hex = image.digest().encoded().to_owned();
    assert_eq!(statement["subject"][0]["digest"]["sha256"], hex);
    let p = &statement["predicate"];
    assert_eq!(p["source"]["reference"], from);
    assert_eq!(p["source"]["digest"], image.digest().to_string());
    assert_eq!(p["target"]["digest"], image.digest().to_string());
    assert_eq!(p["tool"]["name"], "image-mirror");
    assert!(p["mirroredAt"].as_str().unwrap().ends_with('Z'), "{p}");

    // Again, and to another tag of the same digest (a copy that writes): already
    // attested, and still one statement in each form.
    let out = copy(d, &hosts, "cosign.key", "s3cret", &from, &to);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let again = format!("{}/mirror/app:v2", dst.host());
    let out = copy(d, &hosts, "cosign.key", "s3cret", &from, &again);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("attested    present"), "{}", text(&out));
    let att = format!("{}/mirror/app:sha256-{hex}.att", dst.host());
    let manifest: serde_json::Value = serde_json::from_slice(&crane::manifest(&att)).unwrap();
    assert_eq!(
        manifest["layers"].as_array().unwrap().len(),
        1,
        "{manifest}"
    );
    let fallback = format!("{}/mirror/app:sha256-{hex}", dst.host());
    let index: serde_json::Value = serde_json::from_slice(&crane::manifest(&fallback)).unwrap();
    let bundles: Vec<_> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["annotations"]["dev.sigstore.bundle.predicateType"] == PREDICATE)
        .collect();
    assert_eq!(bundles.len(), 1, "{index}");

    // A copy to another repository with a PKCS#8 key, verified with its public half.
    let pkcs8 = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "p8.pem",
        ])
        .current_dir(d)
        .status()
        .unwrap();
    assert!(pkcs8.success());
    let public = Command::new("openssl")
        .args(["pkey", "-in", "p8.pem", "-pubout", "-out", "p8.pub"])
        .current_dir(d)
        .status()
        .unwrap();
    assert!(public.success());
    // Into distribution 3 this time.
    let dst3 = Registry::start_with(&RegistryOptions::default().on(Implementation::Distribution3));
    let other = format!("{}/mirror/other:v1", dst3.host());
    let out = copy(d, &[src.host(), dst3.host()], "p8.pem", "", &from, &other);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let statement = verified_statement(d, "p8.pub", &other);
    assert_eq!(statement["predicate"]["target"]["reference"], other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tags_of_one_digest_copied_at_once_leave_one_statement() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = cosign(d, "", &["generate-key-pair"]);
    assert!(out.status.success(), "{}", text(&out));
    let (src, dst) = (Registry::start(), Registry::start());
    let image = images::oci_manifest(6710);
    for tag in ["v1", "v2", "v3", "v4"] {
        push_image(&src.url(), "team/twin", tag, &image).await;
    }
    let list: String = ["v1", "v2", "v3", "v4"]
        .iter()
        .map(|t| format!("{}/team/twin {}/mirror/twin {t}\n", src.host(), dst.host()))
        .collect();
    std::fs::write(d.join("images-list"), list).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_image-mirror"))
        .arg("--images-list")
        .arg(d.join("images-list"))
        .args([
            "--insecure-registry",
            &format!("{},{}", src.host(), dst.host()),
        ])
        .args(["run", "--workers", "4", "--attest", "cosign.key"])
        .current_dir(d)
        .env("COSIGN_PASSWORD", "")
        .env("DOCKER_CONFIG", d)
        .env("IMAGE_MIRROR_CACHE_DIR", d.join("cache"))
        .env_remove("AMQP_URL")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("1 attestations pushed"),
        "{}",
        text(&out)
    );
    let hex = image.digest().encoded().to_owned();
    let att = format!("{}/mirror/twin:sha256-{hex}.att", dst.host());
    let manifest: serde_json::Value = serde_json::from_slice(&crane::manifest(&att)).unwrap();
    assert_eq!(
        manifest["layers"].as_array().unwrap().len(),
        1,
        "{manifest}"
    );
    let fallback = format!("{}/mirror/twin:sha256-{hex}", dst.host());
    let index: serde_json::Value = serde_json::from_slice(&crane::manifest(&fallback)).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1, "{index}");
}
