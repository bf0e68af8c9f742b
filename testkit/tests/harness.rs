//! The harness itself works: registries start and stop, synthetic images push and read back
//! with the same digests through skopeo, and RabbitMQ answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use image_mirror_testkit::images::{self, DOCKER_LIST, OCI_INDEX};
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::{rabbitmq, skopeo, Registry};

#[tokio::test]
async fn four_platform_index_reads_back_with_the_same_digest() {
    let registry = Registry::start();
    let image = images::oci_index(1);
    assert_eq!(image.top().media_type, OCI_INDEX);
    assert_eq!(image.manifests.len(), 5);
    push_image(&registry.url(), "org/multi", "v1.0.0", &image).await;

    let seen = skopeo::manifest_digest(&format!("{}/org/multi:v1.0.0", registry.host()));
    assert_eq!(&seen, image.digest());
    let raw = skopeo::raw_manifest(&format!("{}/org/multi:v1.0.0", registry.host()));
    assert_eq!(raw, image.top().bytes, "skopeo read other bytes");
    let index: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let windows = &index["manifests"][3]["platform"];
    assert_eq!(windows["os"], "windows");
    assert_eq!(windows["os.version"], "10.0.17763.5820");
    // Every child is there by digest.
    for child in &image.manifests[..4] {
        let r = format!("{}/org/multi@{}", registry.host(), child.digest);
        assert_eq!(skopeo::manifest_digest(&r), child.digest);
    }
}

#[tokio::test]
async fn oci_manifest_and_docker_manifest_list_read_back() {
    let registry = Registry::start();
    let single = images::oci_manifest(2);
    push_image(&registry.url(), "single", "1", &single).await;
    assert_eq!(
        &skopeo::manifest_digest(&format!("{}/single:1", registry.host())),
        single.digest()
    );
    let list = images::docker_manifest_list(3);
    assert_eq!(list.top().media_type, DOCKER_LIST);
    push_image(&registry.url(), "a/b/list", "2", &list).await;
    assert_eq!(
        &skopeo::manifest_digest(&format!("{}/a/b/list:2", registry.host())),
        list.digest()
    );
}

#[test]
fn synthetic_images_are_deterministic() {
    assert_eq!(images::oci_index(9).digest(), images::oci_index(9).digest());
    assert_ne!(
        images::oci_index(9).digest(),
        images::oci_index(10).digest()
    );
    assert_ne!(
        images::oci_index(9).digest(),
        images::docker_manifest_list(9).digest()
    );
}

#[test]
fn registries_are_private_and_stop_on_drop() {
    let a = Registry::start();
    let b = Registry::start();
    assert_ne!(a.host(), b.host());
    assert_ne!(a.storage(), b.storage());
    let addr: std::net::SocketAddr = a.host().parse().unwrap();
    assert!(std::net::TcpStream::connect(addr).is_ok());
    drop(a);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "registry still listening"
    );
}

#[test]
fn rabbitmq_answers_at_the_harness_url() {
    let url = rabbitmq::amqp_url();
    let hostport = url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap();
    assert!(
        rabbitmq::speaks_amqp(hostport.parse().unwrap()),
        "{hostport}"
    );
}

#[test]
fn private_rabbitmq_node_starts_when_asked() {
    let url = rabbitmq::private_node();
    assert!(url.contains(&format!(":{}/", rabbitmq::PRIVATE_PORT)));
    assert!(rabbitmq::speaks_amqp(
        ([127, 0, 0, 1], rabbitmq::PRIVATE_PORT).into()
    ));
}
