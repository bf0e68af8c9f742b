//! Keyless signatures (`--require-identity`, `--trusted-root`): images signed by the real
//! cosign with a certificate from an offline certificate authority standing in for Fulcio (a
//! root, an intermediate, a ten-minute leaf naming GitHub Actions' issuer and a workflow's
//! URI), in both of cosign's forms. Accepted for the matching identity; refused, with the
//! reason, for another subject, another issuer, another root, a signature moved to another
//! digest and an expired certificate, with nothing of a refused image written; a root with a
//! transparency log's key wants the log's promise, which is checked offline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use image_mirror_common::Digest;
use image_mirror_registry::referrers::fallback_tag;
use image_mirror_testkit::fulcio::{time, Leaf, TestFulcio, TestLog, GITHUB_ISSUER};
use image_mirror_testkit::images::{self, Blob};
use image_mirror_testkit::push::{push_image, push_manifest};
use image_mirror_testkit::{crane, Front, FrontOptions, Registry};
use serde_json::Value;

const WORKFLOW: &str = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main";
use image_mirror_testkit::cosign::HTTP;

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// cosign in `dir`, offline, with an empty key password.
fn cosign(dir: &Path, args: &[&str]) -> Output {
    image_mirror_testkit::cosign::run(dir, "", args)
}

fn cosign_ok(dir: &Path, args: &[&str]) {
    image_mirror_testkit::cosign::ok(dir, args);
}

/// A signer's folder: `leaf`'s certificate and the authority's chain, its key imported into
/// cosign's format, a signing config without services, and the roots.
fn signer(ca: &TestFulcio, leaf: &Leaf) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("leaf.pem"), &leaf.cert_pem).unwrap();
    std::fs::write(d.join("leaf.key"), &leaf.key_pem).unwrap();
    std::fs::write(d.join("chain.pem"), ca.chain_pem()).unwrap();
    std::fs::write(d.join("root.pem"), ca.root_pem()).unwrap();
    cosign_ok(d, &["import-key-pair", "--key", "leaf.key", "-y"]);
    cosign_ok(
        d,
        &["signing-config", "create", "--out", "signing-config.json"],
    );
    dir
}

/// `cosign sign` of `image` with the leaf's key and certificate: the legacy `.sig` tag, or
/// cosign 3's bundle referrer.
fn sign(dir: &Path, image: &str, legacy: bool) {
    let mut args = vec!["sign", "--key", "import-cosign.key", "-y"];
    args.extend([
        "--certificate",
        "leaf.pem",
        "--certificate-chain",
        "chain.pem",
    ]);
    args.extend(image_mirror_testkit::cosign::writing_flags(legacy));
    args.push(image);
    cosign_ok(dir, &args);
}

fn mirror(hosts: &[&str], dir: &Path, command: &[&str], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_image-mirror"))
        .arg("--insecure-registry")
        .arg(hosts.join(","))
        .args(command)
        .args(args)
        .env("DOCKER_CONFIG", dir)
        .env("COSIGN_PASSWORD", "")
        .env("IMAGE_MIRROR_CACHE_DIR", dir.join("cache"))
        .env_remove("AMQP_URL")
        .env_remove("IMAGE_MIRROR_INSECURE_REGISTRIES")
        .output()
        .unwrap()
}

fn gha(subject: &str) -> String {
    format!("{GITHUB_ISSUER}={subject}")
}

/// Requests that wrote under `path` at the front.
fn writes_under(front: &Front, path: &str) -> Vec<String> {
    front
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET" && r.method != "HEAD" && r.target.contains(path))
        .map(|r| format!("{} {}", r.method, r.target))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_signature_lets_through_its_identity_and_nothing_else() {
    let (src, dst) = (Registry::start(), Registry::start());
    let front = Front::start(dst.host(), FrontOptions::default());
    let front_host = front.host();
    let hosts = [src.host(), front_host.as_str()];
    let ca = TestFulcio::new("fulcio");
    let now = time::OffsetDateTime::now_utc();
    let good = signer(&ca, &ca.leaf(GITHUB_ISSUER, WORKFLOW));
    let old = time::Duration::days(2);
    let expired = signer(
        &ca,
        &ca.leaf_valid(
            GITHUB_ISSUER,
            WORKFLOW,
            now - old,
            now - old + time::Duration::minutes(10),
        ),
    );
    // legacy: the .sig tag; bundle: cosign 3's referrer; moved: its tag then moved to other
    // content, the old signature copied to the new digest's .sig tag; expired: a certificate
    // that ended two days ago.
    for (repo, seed) in [
        ("legacy", 7600),
        ("bundle", 7601),
        ("moved", 7602),
        ("expired", 7603),
    ] {
        let image = images::oci_manifest(seed);
        push_image(&src.url(), &format!("team/{repo}"), "v1", &image).await;
        let at = format!("{}/team/{repo}@{}", src.host(), image.digest());
        match repo {
            "bundle" => sign(good.path(), &at, false),
            "expired" => sign(expired.path(), &at, true),
            _ => sign(good.path(), &at, true),
        }
    }
    let old_digest = crane::digest(&format!("{}/team/moved:v1", src.host()));
    let other = images::oci_manifest(7604);
    push_image(&src.url(), "team/moved", "v1", &other).await;
    let signature = crane::manifest(&format!(
        "{}/team/moved:{}.sig",
        src.host(),
        fallback_tag(&old_digest)
    ));
    let sig = Blob::new("application/vnd.oci.image.manifest.v1+json", signature);
    let http = reqwest::Client::new();
    let new_sig_tag = format!("{}.sig", fallback_tag(other.digest()));
    push_manifest(&http, &src.url(), "team/moved", &new_sig_tag, &sig).await;

    // cosign itself accepts the legacy signature for the identity (the authority is sound).
    let out = cosign(
        good.path(),
        &[
            &[
                "verify",
                "--ca-roots",
                "root.pem",
                "--ca-intermediates",
                "chain.pem",
            ][..],
            &["--certificate-identity-regexp", "^https://github.com/acme/"],
            &["--certificate-oidc-issuer", GITHUB_ISSUER],
            &["--insecure-ignore-tlog", "--insecure-ignore-sct"],
            &HTTP,
            &[&format!("{}/team/legacy:v1", src.host())],
        ]
        .concat(),
    );
    assert!(out.status.success(), "cosign verify: {}", text(&out));

    let dir = tempfile::tempdir().unwrap();
    cosign_ok(dir.path(), &["generate-key-pair"]);
    let root = good.path().join("root.pem");
    let list: String = ["bundle", "expired", "legacy", "moved"]
        .iter()
        .map(|r| format!("{}/team/{r} {}/mirror/{r} v1\n", src.host(), front.host()))
        .collect();
    std::fs::write(dir.path().join("images-list"), list).unwrap();
    let identity = gha("https://github.com/acme/.+");
    let out = mirror(
        &hosts,
        dir.path(),
        &[
            "--images-list",
            dir.path().join("images-list").to_str().unwrap(),
            "run",
        ],
        &[
            "--require-identity",
            &identity,
            "--trusted-root",
            root.to_str().unwrap(),
            "--report",
            dir.path().join("report.json").to_str().unwrap(),
            "--attest",
            dir.path().join("cosign.key").to_str().unwrap(),
        ],
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("2 copied, 0 already present, 2 failed (2 unsigned)")
            && said.contains("2 signatures verified (2 keyless identities)")
            && said.contains("2 attestations pushed"),
        "{said}"
    );
    assert!(
        said.contains("team/moved@sha256:") && said.contains("digest mismatch"),
        "{said}"
    );
    assert!(
        said.contains(old_digest.as_str()),
        "the digest it signs is named: {said}"
    );
    assert!(
        said.contains("team/expired@sha256:") && said.contains("expired: its certificate"),
        "{said}"
    );
    for repo in ["legacy", "bundle"] {
        assert_eq!(
            crane::digest(&format!("{}/mirror/{repo}:v1", dst.host())),
            crane::digest(&format!("{}/team/{repo}:v1", src.host()))
        );
    }
    for repo in ["moved", "expired"] {
        let written = writes_under(&front, &format!("/mirror/{repo}/"));
        assert!(written.is_empty(), "written for {repo}: {written:?}");
    }
    let report: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    let events = report.as_array().unwrap();
    let legacy = events
        .iter()
        .find(|e| e["source"].as_str().unwrap().ends_with("team/legacy"))
        .unwrap();
    assert_eq!(legacy["identity_verified"], true, "{legacy}");
    assert_eq!(legacy["attestation"], "pushed", "{legacy}");
    let signer = legacy["signed_by"].as_str().unwrap();
    assert!(
        signer.contains(WORKFLOW) && signer.contains(GITHUB_ISSUER),
        "{signer}"
    );

    // The mirror's statement names the identity that signed the source.
    let out = cosign(
        dir.path(),
        &[
            &[
                "verify-attestation",
                "--key",
                "cosign.pub",
                "--insecure-ignore-tlog=true",
            ][..],
            &[
                "--type",
                "https://github.com/example/image-mirror/attestations/mirror/v1",
            ],
            &HTTP,
            &[&format!("{}/mirror/legacy:v1", dst.host())],
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "cosign verify-attestation: {}",
        text(&out)
    );
    let statement: Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|e| {
            use base64::Engine as _;
            let p = base64::engine::general_purpose::STANDARD
                .decode(e["payload"].as_str()?)
                .ok()?;
            serde_json::from_slice(&p).ok()
        })
        .unwrap_or_else(|| panic!("no statement: {}", text(&out)));
    let predicate = &statement["predicate"];
    let signer = predicate["signer"].as_str().unwrap();
    assert!(signer.contains(WORKFLOW), "{predicate}");
    let list = std::fs::read(dir.path().join("images-list")).unwrap();
    assert_eq!(
        predicate["imagesList"]["digest"],
        Digest::sha256_of(&list).to_string(),
        "{predicate}"
    );

    // Another subject, another issuer, another root: refused, named, nothing written.
    let stranger = TestFulcio::new("stranger");
    std::fs::write(dir.path().join("stranger.pem"), stranger.root_pem()).unwrap();
    let cases = [
        (
            gha("https://github.com/other/.+"),
            root.clone(),
            "wrong identity",
        ),
        (
            "https://accounts.google.com=https://github.com/acme/.+".to_owned(),
            root.clone(),
            "wrong identity",
        ),
        (
            identity.clone(),
            dir.path().join("stranger.pem"),
            "untrusted chain",
        ),
    ];
    for (i, (policy, trusted, reason)) in cases.iter().enumerate() {
        let target = format!("{}/refused/{i}:v1", front.host());
        let out = mirror(
            &hosts,
            dir.path(),
            &["copy"],
            &[
                "--require-identity",
                policy,
                "--trusted-root",
                trusted.to_str().unwrap(),
                &format!("{}/team/legacy:v1", src.host()),
                &target,
            ],
        );
        let said = text(&out);
        assert_eq!(out.status.code(), Some(1), "{policy}: {said}");
        assert!(
            said.contains("unsigned") && said.contains(reason),
            "{policy}: {said}"
        );
        let written = writes_under(&front, &format!("/refused/{i}/"));
        assert!(written.is_empty(), "{policy}: written {written:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_with_a_log_key_wants_the_logs_promise_checked_offline() {
    let (src, dst) = (Registry::start(), Registry::start());
    let hosts = [src.host(), dst.host()];
    let ca = TestFulcio::new("fulcio");
    let log = TestLog::new();
    let leaf = ca.leaf(GITHUB_ISSUER, WORKFLOW);
    let good = signer(&ca, &leaf);
    let image = images::oci_manifest(7700);
    push_image(&src.url(), "team/app", "v1", &image).await;
    sign(
        good.path(),
        &format!("{}/team/app@{}", src.host(), image.digest()),
        true,
    );
    let root = good.path().join("trusted_root.json");
    std::fs::write(&root, ca.trusted_root_json(Some(&log))).unwrap();
    let identity = gha("https://github.com/acme/.+");
    let copy = |extra: &[&str], to: &str| {
        let mut args = vec![
            "--require-identity",
            &identity,
            "--trusted-root",
            root.to_str().unwrap(),
        ];
        args.extend(extra);
        let from = format!("{}/team/app:v1", src.host());
        let to = format!("{}/{to}:v1", dst.host());
        mirror(
            &hosts,
            good.path(),
            &["copy"],
            &[&args[..], &[&from, &to]].concat(),
        )
    };
    // cosign signed without a log: refused, then accepted when told to ignore the log.
    let out = copy(&[], "no-log");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no transparency log entry"),
        "{}",
        text(&out)
    );
    let out = copy(&["--insecure-ignore-tlog"], "ignored");
    assert!(out.status.success(), "{}", text(&out));

    // The log's promise of this very signature, added to its layer: accepted.
    let sig_tag = format!(
        "{}/team/app:{}.sig",
        src.host(),
        fallback_tag(image.digest())
    );
    let manifest: Value = serde_json::from_slice(&crane::manifest(&sig_tag)).unwrap();
    let layer = &manifest["layers"][0];
    let signature = layer["annotations"]["dev.cosignproject.cosign/signature"]
        .as_str()
        .unwrap()
        .to_owned();
    let layer_digest: Digest = layer["digest"].as_str().unwrap().parse().unwrap();
    let payload = blob(&src, "team/app", &layer_digest).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let promised =
        |log: &TestLog| log.promise_annotation(&signature, &leaf.cert_pem, &payload, now);
    let with_promise = |promise: String| {
        let mut m = manifest.clone();
        m["layers"][0]["annotations"]["dev.sigstore.cosign/bundle"] = Value::String(promise);
        Blob::new(
            "application/vnd.oci.image.manifest.v1+json",
            serde_json::to_vec(&m).unwrap(),
        )
    };
    let http = reqwest::Client::new();
    let tag = format!("{}.sig", fallback_tag(image.digest()));
    // A promise from a log the root does not name is not one.
    push_manifest(
        &http,
        &src.url(),
        "team/app",
        &tag,
        &with_promise(promised(&TestLog::new())),
    )
    .await;
    let out = copy(&[], "foreign-log");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("a log the trusted root does not name"),
        "{}",
        text(&out)
    );
    push_manifest(
        &http,
        &src.url(),
        "team/app",
        &tag,
        &with_promise(promised(&log)),
    )
    .await;
    let out = copy(&[], "logged");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(WORKFLOW), "{}", text(&out));
}

async fn blob(registry: &Registry, repo: &str, digest: &Digest) -> Vec<u8> {
    reqwest::get(format!("{}/v2/{repo}/blobs/{digest}", registry.url()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}
