//! OCI artifacts, not only images: a Helm chart pushed by the real helm, and an artifact with
//! `artifactType`, the empty config and a `subject`; each copied byte for byte into
//! distribution 2.8 and distribution 3, and read back with crane.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use image_mirror_common::ImageRef;
use image_mirror_registry::{ClientOptions, RegistryClient};
use image_mirror_testkit::images;
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::registry::RegistryOptions;
use image_mirror_testkit::{crane, tools, Implementation, Registry};
use image_mirror_worker::{CopyEngine, CopyOptions, CopyOutcome};

fn engine(hosts: &[&str]) -> CopyEngine {
    let client = RegistryClient::new(ClientOptions {
        insecure_hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        ..ClientOptions::default()
    })
    .unwrap();
    CopyEngine::new(client, CopyOptions::default())
}

fn reference(s: &str) -> ImageRef {
    s.parse().unwrap()
}

/// Runs helm with its folders in `home`.
fn helm(home: &Path, args: &[&str]) {
    let out = Command::new(tools::path("helm"))
        .args(args)
        .current_dir(home)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env("DOCKER_CONFIG", home.join("docker"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Pushes a chart made by `helm create` to `host/charts/demo:0.1.0` with helm itself.
fn push_chart(host: &str) {
    let home = tempfile::tempdir().unwrap();
    helm(home.path(), &["create", "demo"]);
    helm(home.path(), &["package", "demo", "--destination", "out"]);
    helm(
        home.path(),
        &[
            "push",
            "out/demo-0.1.0.tgz",
            &format!("oci://{host}/charts"),
            "--plain-http",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helm_chart_copies_byte_for_byte_into_distribution_2_and_3() {
    let src = Registry::start();
    push_chart(src.host());
    let from = format!("{}/charts/demo:0.1.0", src.host());
    let manifest: serde_json::Value = serde_json::from_slice(&crane::manifest(&from)).unwrap();
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.cncf.helm.config.v1+json"
    );
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
    );
    let digest = crane::digest(&from);
    for implementation in Implementation::ALL {
        let dst = Registry::start_with(&RegistryOptions::default().on(implementation));
        let to = format!("{}/mirror/charts/demo:0.1.0", dst.host());
        let report = engine(&[src.host(), dst.host()])
            .copy(&reference(&from), &reference(&to))
            .await
            .unwrap();
        assert_eq!(report.outcome, CopyOutcome::Copied, "{implementation:?}");
        assert_eq!(report.digest, digest, "{implementation:?}");
        assert_eq!(crane::digest(&to), digest, "{implementation:?}: crane");
        assert_eq!(crane::manifest(&to), crane::manifest(&from));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_with_a_subject_and_the_empty_config_copies_byte_for_byte() {
    let src = Registry::start();
    let subject = images::oci_manifest(9800);
    push_image(&src.url(), "up/app", "v1", &subject).await;
    let sbom = images::artifact(9801, "application/spdx+json", Some(subject.top()));
    push_image(&src.url(), "up/app", "sbom", &sbom).await;
    for implementation in Implementation::ALL {
        let dst = Registry::start_with(&RegistryOptions::default().on(implementation));
        let engine = engine(&[src.host(), dst.host()]);
        for (tag, image) in [("v1", &subject), ("sbom", &sbom)] {
            let to = format!("{}/mirror/app:{tag}", dst.host());
            let report = engine
                .copy(
                    &reference(&format!("{}/up/app:{tag}", src.host())),
                    &reference(&to),
                )
                .await
                .unwrap();
            assert_eq!(&report.digest, image.digest(), "{implementation:?} {tag}");
            assert_eq!(
                &crane::digest(&to),
                image.digest(),
                "{implementation:?} {tag}"
            );
            assert_eq!(crane::manifest(&to), image.top().bytes);
        }
    }
}
