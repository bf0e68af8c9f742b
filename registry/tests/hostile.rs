//! The registry client against a registry that is out to get it (the testkit's hostile
//! registry): credentials go only to the registry's own origin, every answer is read within
//! its cap, and every request without a blob body within its deadline. What the binary says
//! of these is shown in `cli/tests/hostile_*.rs`; the rules are held here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use image_mirror_common::{Digest, Repository};
use image_mirror_registry::{ClientOptions, DockerConfig, RegistryClient, RegistryError};
use image_mirror_testkit::hostile::{Auth, BadBody};
use image_mirror_testkit::images;
use image_mirror_testkit::{HostileRegistry, Hostility, Registry};

const USER: &str = "mirror";
const PASSWORD: &str = "push-rights-7c1d2e";
const MIB: u64 = 1024 * 1024;

fn basic() -> Auth {
    Auth::Basic {
        user: USER.into(),
        password: PASSWORD.into(),
    }
}

fn bearer() -> Auth {
    Auth::Bearer {
        user: USER.into(),
        password: PASSWORD.into(),
    }
}

/// A client holding credentials for `host`, plain HTTP allowed to `insecure`.
fn client_for(
    host: &str,
    insecure: &[String],
    tune: impl FnOnce(&mut ClientOptions),
) -> RegistryClient {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let config = format!(r#"{{"auths": {{"{host}": {{"auth": "{auth}"}}}}}}"#);
    let mut options = ClientOptions {
        insecure_hosts: insecure.to_vec(),
        docker_config: DockerConfig::parse(config.as_bytes(), Path::new("config.json")).unwrap(),
        ..ClientOptions::default()
    };
    tune(&mut options);
    RegistryClient::new(options).unwrap()
}

fn repo(host: &str, path: &str) -> Repository {
    format!("{host}/{path}").parse().unwrap()
}

/// Every request that reached the other host carried no `Authorization`.
fn no_credentials_elsewhere(hostile: &HostileRegistry) {
    for r in hostile.requests_elsewhere() {
        assert_eq!(
            r.header("authorization"),
            None,
            "{} {} reached {} with credentials",
            r.method,
            r.target,
            hostile.other_host()
        );
    }
}

/// The registry itself did get credentials: the test is not passing for want of any.
fn credentials_were_used(hostile: &HostileRegistry) {
    assert!(
        hostile
            .requests()
            .iter()
            .any(|r| r.header("host") == Some(hostile.host().as_str())
                && r.header("authorization").is_some()),
        "no request to the registry itself carried credentials"
    );
}

/// Sends `bytes` as one blob into `repo`, in one request.
async fn upload(
    client: &RegistryClient,
    repo: &Repository,
    bytes: &[u8],
) -> Result<(), RegistryError> {
    let digest = Digest::sha256_of(bytes);
    let session = client.start_upload(repo).await?;
    let slot = client.upload_slot(repo.registry()).await?;
    let body = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::copy_from_slice(bytes))]);
    client
        .put_blob_stream(repo, &session, &digest, body, bytes.len() as u64, &slot)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_location_on_another_host_gets_no_credentials() {
    for auth in [basic(), bearer()] {
        let hostile = HostileRegistry::start(Hostility {
            auth: auth.clone(),
            upload_elsewhere: true,
            ..Hostility::default()
        });
        // The other host listed as insecure: asked, but without credentials, which it wants.
        let insecure = [hostile.host(), hostile.other_host()];
        let client = client_for(&hostile.host(), &insecure, |_| {});
        let e = upload(&client, &repo(&hostile.host(), "mirror/web"), b"layer")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("which go only to the registry itself"),
            "{auth:?}: {e}"
        );
        assert!(!hostile.requests_elsewhere().is_empty(), "{e}");
        no_credentials_elsewhere(&hostile);
        credentials_were_used(&hostile);
        assert!(!e.contains(PASSWORD), "{e}");

        // Not listed: plain HTTP to it is refused, and nothing goes there.
        let fresh = HostileRegistry::start(Hostility {
            auth,
            upload_elsewhere: true,
            ..Hostility::default()
        });
        let client = client_for(&fresh.host(), &[fresh.host()], |_| {});
        let e = upload(&client, &repo(&fresh.host(), "mirror/web"), b"layer")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("refusing plain HTTP to {}", fresh.other_host())),
            "{e}"
        );
        assert!(fresh.requests_elsewhere().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_list_link_to_another_host_fails_naming_it() {
    for auth in [basic(), bearer()] {
        let hostile = HostileRegistry::start(Hostility {
            auth: auth.clone(),
            tags_link_elsewhere: true,
            ..Hostility::default()
        });
        hostile.set_tags("app", &["v1.0.0", "v1.1.0"]);
        // Even with the other host listed as insecure, the foreign page is not followed.
        let client = client_for(
            &hostile.host(),
            &[hostile.host(), hostile.other_host()],
            |_| {},
        );
        let e = client
            .list_tags(&repo(&hostile.host(), "app"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!(
                "Link points to another origin (http://{})",
                hostile.other_host()
            )),
            "{auth:?}: {e}"
        );
        assert!(hostile.requests_elsewhere().is_empty());
        credentials_were_used(&hostile);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_redirect_to_another_host_is_followed_without_credentials() {
    let image = images::oci_manifest(702);
    for auth in [basic(), bearer()] {
        let hostile = HostileRegistry::start(Hostility {
            auth,
            blob_redirect_elsewhere: true,
            ..Hostility::default()
        });
        hostile.push("app/web", "v1", &image);
        let client = client_for(
            &hostile.host(),
            &[hostile.host(), hostile.other_host()],
            |_| {},
        );
        let web = repo(&hostile.host(), "app/web");
        for blob in &image.blobs {
            let size = blob.bytes.len() as u64;
            let mut download = client.get_blob(&web, &blob.digest, 0, size).await.unwrap();
            let mut read = Vec::new();
            while let Some(chunk) = download.chunk().await.unwrap() {
                read.extend_from_slice(&chunk);
            }
            assert_eq!(read, blob.bytes);
        }
        assert_eq!(hostile.requests_elsewhere().len(), image.blobs.len());
        no_credentials_elsewhere(&hostile);
        credentials_were_used(&hostile);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_go_to_a_plain_http_realm_only_on_a_host_listed_as_insecure() {
    let port_holder = HostileRegistry::start(Hostility::default());
    // The realm is the other host's name for another hostile registry.
    let hostile = HostileRegistry::start(Hostility {
        auth: bearer(),
        realm: Some(format!("http://{}/token", port_holder.other_host())),
        ..Hostility::default()
    });
    hostile.push("app", "v1", &images::oci_manifest(710));
    let client = client_for(&hostile.host(), &[hostile.host()], |_| {});
    let e = client
        .get_manifest(&repo(&hostile.host(), "app"), "v1")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!(
            "refusing plain HTTP to {}",
            port_holder.other_host()
        )),
        "{e}"
    );
    assert!(port_holder.requests().is_empty(), "the realm was asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_realm_with_an_untrusted_certificate_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let ca = image_mirror_testkit::tls::TestCa::new(dir.path());
    let realm_host = Registry::start_with(
        &image_mirror_testkit::registry::RegistryOptions::with_tls(&ca),
    );
    let hostile = HostileRegistry::start(Hostility {
        auth: bearer(),
        realm: Some(format!("{}/token", realm_host.url())),
        ..Hostility::default()
    });
    hostile.push("app", "v1", &images::oci_manifest(709));
    let client = client_for(&hostile.host(), &[hostile.host()], |_| {});
    let started = Instant::now();
    // The realm's CA is not trusted: the handshake fails, which no retry can change.
    let e = client
        .get_manifest(&repo(&hostile.host(), "app"), "v1")
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("TLS: invalid peer certificate"),
        "{e}"
    );
    assert_eq!(e.kind(), "tls", "{e}");
    assert!(started.elapsed() < Duration::from_secs(10), "{e}");
    // The registry writes its log as it goes: read it until the handshake is there.
    let handshakes = || {
        realm_host
            .log()
            .iter()
            .filter(|l| l.contains("TLS handshake error"))
            .count()
    };
    let logged_by = Instant::now() + Duration::from_secs(10);
    while handshakes() == 0 && Instant::now() < logged_by {
        tokio::task::yield_now().await;
    }
    assert_eq!(handshakes(), 1, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_and_huge_answers_are_cut_off_at_their_cap() {
    let bad = [
        BadBody::Endless,
        BadBody::Huge(100 * MIB),
        BadBody::HugeUnannounced(100 * MIB),
    ];
    for body in bad {
        let token = HostileRegistry::start(Hostility {
            auth: bearer(),
            token_body: Some(body),
            ..Hostility::default()
        });
        token.push("app", "v1", &images::oci_manifest(703));
        let tags = HostileRegistry::start(Hostility {
            tags_body: Some(body),
            ..Hostility::default()
        });
        tags.set_tags("app", &["v1"]);
        let error = HostileRegistry::start(Hostility {
            error_body: Some(body),
            ..Hostility::default()
        });
        let started = Instant::now();
        let client = client_for(&token.host(), &[token.host()], |_| {});
        let e = client
            .get_manifest(&repo(&token.host(), "app"), "v1")
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("fetch token: the answer is over the 1 MiB limit for it"),
            "{body:?}: {e}"
        );
        let client = client_for(&tags.host(), &[tags.host()], |_| {});
        let e = client
            .list_tags(&repo(&tags.host(), "app"))
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("list tags of app: the answer is over the 16 MiB limit for it"),
            "{body:?}: {e}"
        );
        let client = client_for(&error.host(), &[error.host()], |_| {});
        let e = client
            .get_manifest(&repo(&error.host(), "app"), "missing")
            .await
            .unwrap_err();
        assert!(matches!(e, RegistryError::NotFound { .. }), "{body:?}: {e}");
        assert!(started.elapsed() < Duration::from_secs(30), "{body:?}");
    }
}

#[test]
fn a_trickling_manifest_and_a_silent_server_time_out_with_the_default_settings() {
    let default_deadline = ClientOptions::default().request_timeout;
    assert_eq!(default_deadline, Duration::from_secs(30));
    let runs = [
        Hostility {
            trickle_manifests: Some(Duration::from_secs(20)),
            ..Hostility::default()
        },
        Hostility {
            hang: true,
            ..Hostility::default()
        },
    ]
    .map(|hostility| {
        std::thread::spawn(move || {
            let hostile = HostileRegistry::start(hostility);
            hostile.push("app", "v1", &images::oci_manifest(704));
            let runtime = tokio::runtime::Runtime::new().unwrap();
            let started = Instant::now();
            let e = runtime.block_on(async {
                let client = client_for(&hostile.host(), &[hostile.host()], |_| {});
                client
                    .get_manifest(&repo(&hostile.host(), "app"), "v1")
                    .await
            });
            (e.map(|_| ()).unwrap_err().to_string(), started.elapsed())
        })
    });
    for run in runs {
        let (e, took) = run.join().unwrap();
        assert!(
            e.contains("no whole answer within 30s (the request timeout)"),
            "{e}"
        );
        // Three tries of 30 s (a timeout is tried again twice at most) and their pauses.
        assert!(took < Duration::from_secs(120), "took {took:?}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_deadline_is_the_client_s() {
    let hostile = HostileRegistry::start(Hostility {
        hang: true,
        ..Hostility::default()
    });
    let client = client_for(&hostile.host(), &[hostile.host()], |o| {
        o.request_timeout = Duration::from_secs(1);
    });
    let started = Instant::now();
    let e = client
        .get_manifest(&repo(&hostile.host(), "app"), "v1")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("no whole answer within 1s"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(15), "{e}");
}
