//! Bundles across an air gap, against real registries, checked with skopeo, crane and cosign:
//! `export` stores each blob once in an OCI image layout with a lock, `--since` only what
//! changed; `import` pushes a bundle (or skopeo's and regctl's layouts) digest-exact, refuses
//! an incomplete one before writing anything, and fails only the image of a corrupt blob;
//! `serve` answers for a bundle as a read-only registry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use image_mirror_common::Digest;
use image_mirror_testkit::images::{self, Blob, Format, Image, Platform, OCI_LAYER};
use image_mirror_testkit::ports::free_port;
use image_mirror_testkit::process::{self, SpawnRunning};
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::registry::RegistryOptions;
use image_mirror_testkit::{crane, skopeo, tools, Implementation, Registry};
use serde_json::Value;

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

fn image_mirror(hosts: &[&str], dir: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_image-mirror"));
    if !hosts.is_empty() {
        c.arg("--insecure-registry").arg(hosts.join(","));
    }
    c.args(args)
        .current_dir(dir)
        .env("DOCKER_CONFIG", dir)
        .env("IMAGE_MIRROR_CACHE_DIR", dir.join("cache"))
        .env_remove("AMQP_URL")
        .env_remove("IMAGE_MIRROR_INSECURE_REGISTRIES")
        .output()
        .unwrap()
}

/// Two-platform images over one shared base layer, `n` of them.
fn sharing_base(n: u64, seed: u64) -> Vec<Image> {
    let base = Blob::new(OCI_LAYER, images::random_bytes(seed, 300_000));
    (0..n)
        .map(|i| {
            let children = [Platform::LINUX_AMD64, Platform::LINUX_ARM64]
                .into_iter()
                .enumerate()
                .map(|(p, platform)| {
                    let own = Blob::new(
                        OCI_LAYER,
                        images::random_bytes(seed + 10 * (i + 1) + p as u64, 50_000),
                    );
                    let image =
                        images::single_with_layers(Format::Oci, &platform, vec![base.clone(), own]);
                    (platform, image)
                })
                .collect();
            images::index_of(Format::Oci, children)
        })
        .collect()
}

/// A source with `images` at `up/app<i>:v1`, and an images-list naming targets in
/// `registry.example.com/mirror`.
async fn source_with(dir: &Path, images: &[Image]) -> Registry {
    let src = Registry::start();
    let mut lines = Vec::new();
    for (i, image) in images.iter().enumerate() {
        push_image(&src.url(), &format!("up/app{i}"), "v1", image).await;
        lines.push(format!(
            "{}/up/app{i} registry.example.com/mirror/app{i} v1",
            src.host()
        ));
    }
    std::fs::write(dir.join("images-list"), lines.join("\n") + "\n").unwrap();
    src
}

/// Every blob file of a layout.
fn blob_files(layout: &Path) -> BTreeSet<String> {
    std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
        .collect()
}

/// Every digest an image is made of: its manifests and blobs.
fn digests_of(image: &Image) -> BTreeSet<String> {
    image
        .manifests
        .iter()
        .map(|m| m.digest.to_string())
        .chain(image.blobs.iter().map(|b| b.digest.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_stores_a_shared_base_once_and_skopeo_reads_each_image_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let images = sharing_base(2, 9100);
    let src = source_with(dir.path(), &images).await;
    let out = image_mirror(&[src.host()], dir.path(), &["export", "--output", "bundle"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("bundle: 2 images"), "{said}");
    let bundle = dir.path().join("bundle");

    // Each blob once: the files are exactly the distinct manifests and blobs of both.
    let distinct: BTreeSet<String> = images.iter().flat_map(digests_of).collect();
    let all: usize = images.iter().map(|i| digests_of(i).len()).sum();
    assert!(distinct.len() < all, "the images share a base");
    assert_eq!(blob_files(&bundle), distinct);

    // skopeo reads each image by its name, with the source digest.
    for (i, image) in images.iter().enumerate() {
        let name = format!("registry.example.com/mirror/app{i}:v1");
        let out = Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci:{}:{name}", bundle.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo: {}", text(&out));
        assert_eq!(&Digest::sha256_of(&out.stdout), image.digest(), "{name}");
    }

    // The lock says each image whole.
    let lock: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("image-mirror.lock")).unwrap()).unwrap();
    assert_eq!(lock["format"], "image-mirror.lock/1");
    let locked = lock["images"].as_array().unwrap();
    assert_eq!(locked.len(), 2);
    assert_eq!(locked[0]["digest"], images[0].digest().to_string());
    assert_eq!(locked[0]["target"], "registry.example.com/mirror/app0:v1");
    assert_eq!(
        locked[0]["blobs"].as_array().unwrap().len(),
        images[0].blobs.len()
    );

    // Again: nothing is written twice.
    let out = image_mirror(&[src.host()], dir.path(), &["export", "--output", "bundle"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("0 copied, 2 already present"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_into_an_empty_registry_is_digest_exact() {
    let dir = tempfile::tempdir().unwrap();
    let images = sharing_base(2, 9200);
    let src = source_with(dir.path(), &images).await;
    let out = image_mirror(&[src.host()], dir.path(), &["export", "--output", "bundle"]);
    assert!(out.status.success(), "{}", text(&out));
    drop(src);

    let dst = Registry::start_with(&RegistryOptions::default().on(Implementation::Distribution3));
    let args = ["import", "--input", "bundle", "--dest-registry", dst.host()];
    let out = image_mirror(&[dst.host()], dir.path(), &args);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("2 copied"), "{said}");
    for (i, image) in images.iter().enumerate() {
        let at = format!("{}/mirror/app{i}:v1", dst.host());
        assert_eq!(&crane::digest(&at), image.digest(), "{at}");
        assert_eq!(crane::manifest(&at), image.top().bytes, "{at}");
    }
    // Again: already present.
    let out = image_mirror(&[dst.host()], dir.path(), &args);
    assert!(
        text(&out).contains("0 copied, 2 already present"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_holds_only_what_changed_and_imports_only_on_top_of_its_base() {
    let dir = tempfile::tempdir().unwrap();
    let images = sharing_base(3, 9300);
    let src = source_with(dir.path(), &images[..2]).await;
    let out = image_mirror(&[src.host()], dir.path(), &["export", "--output", "full"]);
    assert!(out.status.success(), "{}", text(&out));

    // One new tag, sharing the base.
    push_image(&src.url(), "up/app2", "v1", &images[2]).await;
    let list = std::fs::read_to_string(dir.path().join("images-list")).unwrap();
    std::fs::write(
        dir.path().join("images-list"),
        format!(
            "{list}{}/up/app2 registry.example.com/mirror/app2 v1\n",
            src.host()
        ),
    )
    .unwrap();
    let args = [
        "export",
        "--output",
        "delta",
        "--since",
        "full/image-mirror.lock",
    ];
    let out = image_mirror(&[src.host()], dir.path(), &args);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    let old: BTreeSet<String> = images[..2].iter().flat_map(digests_of).collect();
    let new: BTreeSet<String> = digests_of(&images[2]).difference(&old).cloned().collect();
    assert_eq!(
        blob_files(&dir.path().join("delta")),
        new,
        "exactly what the full bundle lacks"
    );
    let lock: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("delta/image-mirror.lock")).unwrap())
            .unwrap();
    assert_eq!(
        lock["images"].as_array().unwrap().len(),
        3,
        "the whole new lock"
    );
    drop(src);

    // Alone, into an empty registry: refused before anything is written, naming the blob.
    let empty = Registry::start();
    let out = image_mirror(
        &[empty.host()],
        dir.path(),
        &[
            "import",
            "--input",
            "delta",
            "--dest-registry",
            empty.host(),
        ],
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("the bundle lacks"), "{said}");
    assert!(said.contains("sha256:"), "{said}");
    assert_eq!(empty.blob_writes(), 0, "something was written");
    assert!(
        !empty.requests().iter().any(|r| r.starts_with("PUT")),
        "{:?}",
        empty.requests()
    );

    // On top of the full bundle: the full set.
    let dst = Registry::start();
    for bundle in ["full", "delta"] {
        let out = image_mirror(
            &[dst.host()],
            dir.path(),
            &["import", "--input", bundle, "--dest-registry", dst.host()],
        );
        assert!(out.status.success(), "{bundle}: {}", text(&out));
    }
    for (i, image) in images.iter().enumerate() {
        let at = format!("{}/mirror/app{i}:v1", dst.host());
        assert_eq!(&skopeo::manifest_digest(&at), image.digest(), "{at}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_fails_its_image_naming_the_blob_and_the_others_import() {
    let dir = tempfile::tempdir().unwrap();
    let images: Vec<Image> = (0..2).map(|i| images::oci_manifest(9400 + i)).collect();
    let src = source_with(dir.path(), &images).await;
    let out = image_mirror(&[src.host()], dir.path(), &["export", "--output", "bundle"]);
    assert!(out.status.success(), "{}", text(&out));
    let layer = images[1]
        .blobs
        .iter()
        .max_by_key(|b| b.bytes.len())
        .unwrap();
    let path = dir
        .path()
        .join("bundle/blobs/sha256")
        .join(layer.digest.encoded());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();

    let dst = Registry::start();
    let out = image_mirror(
        &[dst.host()],
        dir.path(),
        &["import", "--input", "bundle", "--dest-registry", dst.host()],
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains(layer.digest.as_str()), "{said}");
    assert!(said.contains("1 copied"), "{said}");
    let at = format!("{}/mirror/app0:v1", dst.host());
    assert_eq!(&skopeo::manifest_digest(&at), images[0].digest());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layouts_written_by_skopeo_and_regctl_import_digest_exact() {
    let dir = tempfile::tempdir().unwrap();
    let src = Registry::start();
    let image = images::oci_index(9500);
    push_image(&src.url(), "up/app", "v1", &image).await;
    let from = format!("{}/up/app:v1", src.host());

    let skopeo_dir = dir.path().join("by-skopeo");
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--all",
            "--src-tls-verify=false",
            "--preserve-digests",
        ])
        .arg(format!("docker://{from}"))
        .arg(format!("oci:{}:team/app:v1", skopeo_dir.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo copy: {}", text(&out));

    let regctl_dir = dir.path().join("by-regctl");
    let config = dir.path().join("regctl");
    let regctl = |args: &[&str]| {
        let out = Command::new(tools::path("regctl"))
            .args(args)
            .env("REGCTL_CONFIG", config.join("config.json"))
            .env("HOME", dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "regctl {args:?}: {}", text(&out));
    };
    regctl(&["registry", "set", "--tls", "disabled", src.host()]);
    regctl(&[
        "image",
        "copy",
        &from,
        &format!("ocidir://{}:v1", regctl_dir.display()),
    ]);

    let dst = Registry::start();
    for (layout, extra) in [
        ("by-skopeo", vec![]),
        ("by-regctl", vec!["--repository", "team/other"]),
    ] {
        let mut args = vec!["import", "--input", layout, "--dest-registry", dst.host()];
        args.extend(extra);
        let out = image_mirror(&[dst.host()], dir.path(), &args);
        assert!(out.status.success(), "{layout}: {}", text(&out));
    }
    for repo in ["team/app", "team/other"] {
        let at = format!("{}/{repo}:v1", dst.host());
        assert_eq!(&crane::digest(&at), image.digest(), "{at}");
    }
    // Without --repository, a layout named by tags alone is refused, naming what to say.
    let out = image_mirror(
        &[dst.host()],
        dir.path(),
        &[
            "import",
            "--input",
            "by-regctl",
            "--dest-registry",
            dst.host(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--repository"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_for_a_bundle_and_refuses_pushes() {
    let dir = tempfile::tempdir().unwrap();
    let images = sharing_base(2, 9600);
    let src = source_with(dir.path(), &images).await;
    let out = image_mirror(&[src.host()], dir.path(), &["export", "--output", "bundle"]);
    assert!(out.status.success(), "{}", text(&out));
    drop(src);

    let addr = format!("127.0.0.1:{}", free_port());
    let mut server = Command::new(env!("CARGO_BIN_EXE_image-mirror"))
        .args(["serve", "--input", "bundle", "--addr", &addr])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .running();
    let mut said = std::io::BufReader::new(server.stdout.take().unwrap());
    process::wait_for_line(&mut said, "serving", "serve");

    for (i, image) in images.iter().enumerate() {
        let at = format!("{addr}/mirror/app{i}:v1");
        assert_eq!(&crane::digest(&at), image.digest(), "{at}");
        let pulled = Command::new(tools::path("crane"))
            .args(["pull", "--insecure", "--platform", "linux/arm64", &at])
            .arg(dir.path().join(format!("app{i}.tar")))
            .output()
            .unwrap();
        assert!(pulled.status.success(), "crane pull: {}", text(&pulled));
    }
    // containerd fetches them too, every platform, digests checked.
    let containerd = image_mirror_testkit::Containerd::start();
    for (i, image) in images.iter().enumerate() {
        let at = format!("{addr}/mirror/app{i}:v1");
        let fetched = containerd.fetch(&at, None);
        let said = image_mirror_testkit::containerd::text(&fetched);
        assert!(fetched.status.success(), "ctr content fetch {at}: {said}");
        let held = containerd.content();
        for d in digests_of(image) {
            assert!(held.contains(&d), "{at}: {d} not fetched");
        }
    }
    let tags = crane::ls(&format!("{addr}/mirror/app0"));
    assert_eq!(tags, ["v1"]);
    // A copy from it, by this tool, as from any registry.
    let dst = Registry::start();
    let out = image_mirror(
        &[&addr, dst.host()],
        dir.path(),
        &[
            "copy",
            &format!("{addr}/mirror/app1:v1"),
            &format!("{}/m/app1:v1", dst.host()),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        &crane::digest(&format!("{}/m/app1:v1", dst.host())),
        images[1].digest()
    );

    let push = Command::new(tools::path("crane"))
        .args(["copy", "--insecure"])
        .arg(format!("{}/m/app1:v1", dst.host()))
        .arg(format!("{addr}/mirror/new:v1"))
        .output()
        .unwrap();
    assert!(!push.status.success(), "a push was taken");
    assert!(
        text(&push).contains("405") || text(&push).contains("UNSUPPORTED"),
        "{}",
        text(&push)
    );
    process::terminate(&server);
}

#[test]
fn what_is_not_a_bundle_is_bad_input_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let import = |input: &str| {
        image_mirror(
            &[],
            d,
            &["import", "--input", input, "--dest-registry", "127.0.0.1:9"],
        )
    };

    std::fs::create_dir(d.join("empty")).unwrap();
    let out = import("empty");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("empty: not an OCI image layout (no oci-layout file)"),
        "{}",
        text(&out)
    );

    std::fs::create_dir(d.join("broken")).unwrap();
    std::fs::write(
        d.join("broken/oci-layout"),
        r#"{"imageLayoutVersion": "1.0.0"}"#,
    )
    .unwrap();
    let out = import("broken");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("index.json"), "{}", text(&out));
    std::fs::write(
        d.join("broken/index.json"),
        "{\"schemaVersion\": 2, \"manifests\": [",
    )
    .unwrap();
    let out = import("broken");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("broken/index.json: not an image index"),
        "{}",
        text(&out)
    );

    std::fs::write(d.join("images-list"), "a/b c/d 1\n").unwrap();
    std::fs::write(d.join("other.lock"), r#"{"format": "hauler/1"}"#).unwrap();
    let out = image_mirror(
        &[],
        d,
        &["export", "--output", "out", "--since", "other.lock"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("other.lock"), "{}", text(&out));
    assert!(!d.join("out").exists(), "a bundle was started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tar_bundle_imports_into_containerd_and_into_a_registry() {
    let dir = tempfile::tempdir().unwrap();
    let images = sharing_base(2, 9700);
    let src = source_with(dir.path(), &images).await;
    let out = image_mirror(
        &[src.host()],
        dir.path(),
        &["export", "--output", "bundle.tar"],
    );
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("bundle: 2 images"), "{said}");
    let tar = dir.path().join("bundle.tar");
    assert!(
        !dir.path().join("bundle.tar.uploads").exists(),
        "uploads left beside the tar"
    );
    // Written as a stream: one copy of each blob, nothing unpacked beside it.
    let distinct: BTreeSet<String> = images.iter().flat_map(digests_of).collect();
    let listed = Command::new("tar").arg("-tf").arg(&tar).output().unwrap();
    let members = String::from_utf8_lossy(&listed.stdout).to_string();
    for d in &distinct {
        let name = format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
        assert_eq!(members.matches(&name).count(), 1, "{name}");
    }
    drop(src);

    // containerd lists every image under its target name, with the source digest.
    let containerd = image_mirror_testkit::Containerd::start();
    let imported = containerd.import(&tar);
    assert!(imported.status.success(), "ctr import: {}", text(&imported));
    let held = containerd.images();
    for (i, image) in images.iter().enumerate() {
        let name = format!("registry.example.com/mirror/app{i}:v1");
        assert!(
            held.iter()
                .any(|(n, d)| *n == name && d == image.digest().as_str()),
            "{name} not held with its digest: {held:?}"
        );
    }

    // And the tar imports and serves as the folder does, read in place.
    let dst = Registry::start();
    let out = image_mirror(
        &[dst.host()],
        dir.path(),
        &[
            "import",
            "--input",
            "bundle.tar",
            "--dest-registry",
            dst.host(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    for (i, image) in images.iter().enumerate() {
        let at = format!("{}/mirror/app{i}:v1", dst.host());
        assert_eq!(&crane::digest(&at), image.digest(), "{at}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_killed_in_a_1_gib_blob_sends_at_most_one_chunk_again() {
    const MIB: u64 = 1024 * 1024;
    const BLOB: u64 = 1024 * MIB;
    const CHUNK: u64 = 16 * MIB;
    let dir = tempfile::tempdir().unwrap();
    let layer = Blob::new(OCI_LAYER, images::random_bytes(9800, BLOB as usize));
    let image = images::single_with_layers(Format::Oci, &Platform::LINUX_AMD64, vec![layer]);
    let src = source_with(dir.path(), std::slice::from_ref(&image)).await;
    let out = image_mirror(&[src.host()], dir.path(), &["export", "--output", "bundle"]);
    assert!(out.status.success(), "{}", text(&out));
    drop(src);

    // distribution 3 keeps an upload's parts; a slow link makes the blob take seconds.
    let dst = Registry::start_with(&RegistryOptions::default().on(Implementation::Distribution3));
    let link = image_mirror_testkit::FaultProxy::start(
        dst.host(),
        image_mirror_testkit::Faults {
            upload_rate: Some(200 * MIB),
            ..image_mirror_testkit::Faults::default()
        },
    );
    let import = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_image-mirror"));
        c.args(["--insecure-registry", &link.host()])
            .args([
                "import",
                "--input",
                "bundle",
                "--dest-registry",
                &link.host(),
            ])
            .current_dir(dir.path())
            .env("DOCKER_CONFIG", dir.path())
            .env("IMAGE_MIRROR_CACHE_DIR", dir.path().join("cache"))
            .env_remove("AMQP_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    let mut first = import().running().into_inner();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while link.bytes_up() < BLOB / 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "half the blob did not go up"
        );
        assert!(
            first.try_wait().unwrap().is_none(),
            "the import ended early"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    first.kill().unwrap(); // SIGKILL: no checkpoint, no goodbye
    first.wait().unwrap();
    let sent_first = link.bytes_up();

    let second = import().stderr(Stdio::piped()).output().unwrap();
    assert!(
        second.status.success(),
        "the second import failed: {}",
        String::from_utf8_lossy(&second.stderr)
    );
    let again = link.bytes_up().saturating_sub(BLOB);
    assert!(
        again <= CHUNK + MIB,
        "{} MiB sent again (first run {} MiB)",
        again / MIB,
        sent_first / MIB
    );
    let at = format!("{}/mirror/app0:v1", dst.host());
    assert_eq!(&crane::digest(&at), image.digest());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tar_cut_into_parts_is_checked_by_its_sums_and_imported_in_place() {
    const MIB: u64 = 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let layer = Blob::new(
        OCI_LAYER,
        images::random_bytes(9900, 3 * MIB as usize + 12345),
    );
    let image = images::single_with_layers(Format::Oci, &Platform::LINUX_AMD64, vec![layer]);
    let src = source_with(dir.path(), std::slice::from_ref(&image)).await;
    let args = ["export", "--output", "bundle.tar", "--split", "1MiB"];
    let out = image_mirror(&[src.host()], dir.path(), &args);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("parts"), "{said}");
    drop(src);
    assert!(!dir.path().join("bundle.tar").exists());
    let parts: Vec<u64> = (0..)
        .map(|i| dir.path().join(format!("bundle.tar.{i:03}")))
        .take_while(|p| p.exists())
        .map(|p| std::fs::metadata(p).unwrap().len())
        .collect();
    assert!(parts.len() >= 4, "{parts:?}");
    assert!(parts.iter().all(|n| *n <= MIB), "{parts:?}");
    let checked = Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(checked.status.success(), "{}", text(&checked));
    assert_eq!(
        String::from_utf8_lossy(&checked.stdout)
            .matches(": OK")
            .count(),
        parts.len()
    );

    // The parts are one bundle to import, read in place.
    let dst = Registry::start();
    let out = image_mirror(
        &[dst.host()],
        dir.path(),
        &[
            "import",
            "--input",
            "bundle.tar",
            "--dest-registry",
            dst.host(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let at = format!("{}/mirror/app0:v1", dst.host());
    assert_eq!(&crane::digest(&at), image.digest());

    // --split without a tar is refused.
    let out = image_mirror(
        &[],
        dir.path(),
        &["export", "--output", "d", "--split", "1MiB"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_of_some_platforms_keeps_the_index_digest_and_only_their_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let image = images::oci_index(9950);
    let src = source_with(dir.path(), std::slice::from_ref(&image)).await;
    let args = ["export", "--platforms", "linux/arm64", "--output", "bundle"];
    let out = image_mirror(&[src.host()], dir.path(), &args);
    assert!(out.status.success(), "{}", text(&out));
    let bundle = dir.path().join("bundle");
    let lock: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("image-mirror.lock")).unwrap()).unwrap();
    let locked = &lock["images"][0];
    assert_eq!(
        locked["digest"],
        image.digest().to_string(),
        "a bundle takes the sparse index"
    );
    assert_eq!(locked["platforms"], serde_json::json!(["linux/arm64/v8"]));
    assert_eq!(
        locked["platform_subset"]["offered"]
            .as_array()
            .unwrap()
            .len(),
        4
    );

    // Only the arm64 manifest and its blobs, and the index, are in the bundle.
    let index: Value = serde_json::from_slice(&image.top().bytes).unwrap();
    let arm = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["platform"]["architecture"] == "arm64")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let child = image
        .manifests
        .iter()
        .find(|m| m.digest.as_str() == arm)
        .unwrap();
    let manifest: Value = serde_json::from_slice(&child.bytes).unwrap();
    let mut expected: BTreeSet<String> = [image.digest().to_string(), arm.clone()].into();
    expected.insert(manifest["config"]["digest"].as_str().unwrap().to_owned());
    for layer in manifest["layers"].as_array().unwrap() {
        expected.insert(layer["digest"].as_str().unwrap().to_owned());
    }
    assert_eq!(blob_files(&bundle), expected);
    drop(src);

    // Imported, the platforms the bundle holds go on: the digest kept where the target takes
    // a sparse index, an index of them alone where it does not.
    let sparse = Registry::start_with(&RegistryOptions::sparse_indexes());
    let refusing = Registry::start();
    for (dst, kept) in [(&sparse, true), (&refusing, false)] {
        let args = ["import", "--input", "bundle", "--dest-registry", dst.host()];
        let out = image_mirror(&[dst.host()], dir.path(), &args);
        assert!(out.status.success(), "{}", text(&out));
        let at = format!("{}/mirror/app0:v1", dst.host());
        assert_eq!(&crane::digest(&at) == image.digest(), kept, "{at}");
        let held: Value = serde_json::from_slice(&crane::manifest(&at)).unwrap();
        let listed = held["manifests"].as_array().unwrap().len();
        assert_eq!(listed, if kept { 4 } else { 1 }, "{held}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_from_the_targets_reads_the_mirror_not_the_sources() {
    let dir = tempfile::tempdir().unwrap();
    let image = images::oci_index(9990);
    let mirror = Registry::start();
    push_image(&mirror.url(), "mirror/app0", "v1", &image).await;
    // The sources named here do not exist: only the targets are read.
    std::fs::write(
        dir.path().join("images-list"),
        format!("127.0.0.1:9/up/app0 {}/mirror/app0 v1\n", mirror.host()),
    )
    .unwrap();
    let args = ["export", "--from-target", "--output", "bundle"];
    let out = image_mirror(&[mirror.host(), "127.0.0.1:9"], dir.path(), &args);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(blob_files(&dir.path().join("bundle")), digests_of(&image));
}
