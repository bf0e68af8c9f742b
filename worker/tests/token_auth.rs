//! The copy engine against a real `docker-registry` with token auth, as Docker Hub, GHCR and
//! Quay speak it (the testkit's token server signs the tokens), checked with skopeo.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use image_mirror_common::ImageRef;
use image_mirror_registry::{
    ClientOptions, DockerConfig, RegistryClient, RetryPolicy, UploadSettings,
};
use image_mirror_testkit::front::Hook;
use image_mirror_testkit::http::{Reply, Response};
use image_mirror_testkit::images::{self, Blob, Format, Image, Platform, OCI_LAYER};
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::registry::RegistryOptions;
use image_mirror_testkit::{
    skopeo, FaultProxy, Faults, Front, FrontOptions, Implementation, Policy, Registry, TokenServer,
};
use image_mirror_worker::{CopyEngine, CopyOptions, CopyOutcome};

const USER: &str = "mirror";
const PASSWORD: &str = "token-push-6a0f";
const CREDS: &str = "mirror:token-push-6a0f";
const MIB: usize = 1024 * 1024;

/// A token server and a registry that trusts it.
struct World {
    tokens: TokenServer,
    registry: Registry,
    src: Registry,
    config: tempfile::TempDir,
}

impl World {
    fn new(policy: Policy) -> Self {
        Self::on(policy, Implementation::Distribution2)
    }

    /// A token registry of `implementation`.
    fn on(policy: Policy, implementation: Implementation) -> Self {
        let tokens = TokenServer::start(policy);
        let registry =
            Registry::start_with(&RegistryOptions::with_token(&tokens).on(implementation));
        Self {
            tokens,
            registry,
            src: Registry::start(),
            config: tempfile::tempdir().unwrap(),
        }
    }

    /// An engine with credentials for `hosts` (the registry's, or a front's).
    fn engine(&self, hosts: &[String], options: CopyOptions) -> CopyEngine {
        self.engine_sending(hosts, options, None)
    }

    /// [`engine`](Self::engine), uploading to `hosts` in requests of `chunk` bytes when set.
    fn engine_sending(
        &self,
        hosts: &[String],
        options: CopyOptions,
        chunk: Option<u64>,
    ) -> CopyEngine {
        let upload_settings = chunk.map_or_else(Default::default, |size| {
            hosts
                .iter()
                .map(|h| {
                    let sizes = UploadSettings {
                        chunk: Some(size),
                        blob_max: Some(size),
                    };
                    (h.clone(), sizes)
                })
                .collect()
        });
        let auth = base64::engine::general_purpose::STANDARD.encode(CREDS);
        let auths: Vec<String> = hosts
            .iter()
            .map(|h| format!(r#""{h}": {{"auth": "{auth}"}}"#))
            .collect();
        let path = self.config.path().join("config.json");
        std::fs::write(&path, format!(r#"{{"auths": {{{}}}}}"#, auths.join(","))).unwrap();
        let mut insecure = vec![self.src.host().to_owned(), self.tokens.host()];
        insecure.extend(hosts.iter().cloned());
        let client = RegistryClient::new(ClientOptions {
            insecure_hosts: insecure,
            docker_config: DockerConfig::load(&path).unwrap(),
            retry: RetryPolicy {
                min_delay: Duration::from_millis(50),
                max_delay: Duration::from_millis(500),
                max_retries: 5,
            },
            upload_settings,
            ..ClientOptions::default()
        })
        .unwrap();
        CopyEngine::new(client, options)
    }

    fn host(&self) -> String {
        self.registry.host().to_owned()
    }

    /// The distinct scope sets asked so far, and how many requests asked.
    fn scope_sets(&self) -> (usize, usize) {
        let asked = self.tokens.asked();
        let sets: HashSet<Vec<String>> = asked.iter().map(|a| a.scopes.clone()).collect();
        (sets.len(), asked.len())
    }
}

fn reference(s: &str) -> ImageRef {
    s.parse().unwrap()
}

fn policy() -> Policy {
    Policy::user(USER, PASSWORD)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_copies_into_a_token_registry_byte_for_byte() {
    every_kind_into_a_token_registry(Implementation::Distribution2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_copies_into_a_distribution_3_token_registry_byte_for_byte() {
    every_kind_into_a_token_registry(Implementation::Distribution3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_distribution_3_registry_with_htpasswd_takes_a_copy_with_basic_credentials() {
    let w = World::new(policy());
    let dir = tempfile::tempdir().unwrap();
    let basic = Registry::start_with(
        &RegistryOptions::with_user(dir.path(), USER, PASSWORD).on(Implementation::Distribution3),
    );
    let image = images::oci_index(1150);
    push_image(&w.src.url(), "up/basic", "v1", &image).await;
    let to = format!("{}/mirror/basic:v1", basic.host());
    let report = w
        .engine(&[basic.host().to_owned()], CopyOptions::default())
        .copy(
            &reference(&format!("{}/up/basic:v1", w.src.host())),
            &reference(&to),
        )
        .await
        .unwrap();
    assert_eq!(&report.digest, image.digest());
    assert_eq!(&skopeo::manifest_digest_as(&to, CREDS), image.digest());
}

async fn every_kind_into_a_token_registry(implementation: Implementation) {
    let w = World::on(policy(), implementation);
    let engine = w.engine(&[w.host()], CopyOptions::default());
    let kinds: [(&str, Image); 5] = [
        ("oci-manifest", images::oci_manifest(1101)),
        ("docker-manifest", images::docker_manifest(1102)),
        ("oci-index", images::oci_index(1103)),
        ("docker-list", images::docker_manifest_list(1104)),
        ("attested", images::oci_index_with_attestations(1105)),
    ];
    for (name, image) in &kinds {
        push_image(&w.src.url(), &format!("up/{name}"), "v1", image).await;
        let to = format!("{}/mirror/{name}:v1", w.host());
        let report = engine
            .copy(
                &reference(&format!("{}/up/{name}:v1", w.src.host())),
                &reference(&to),
            )
            .await
            .unwrap();
        assert_eq!(report.outcome, CopyOutcome::Copied, "{name}");
        // And back out, with a pull token.
        let back = format!("{}/back/{name}:v1", w.src.host());
        engine
            .copy(&reference(&to), &reference(&back))
            .await
            .unwrap();
        assert_eq!(&skopeo::manifest_digest(&back), image.digest(), "{name}");
    }
    // Every token request asked for a scope set not asked before (skopeo comes after).
    let (sets, asked) = w.scope_sets();
    assert_eq!(sets, asked, "{:?}", w.tokens.asked());
    for (name, image) in &kinds {
        let to = format!("{}/mirror/{name}:v1", w.host());
        assert_eq!(
            &skopeo::manifest_digest_as(&to, CREDS),
            image.digest(),
            "{name}"
        );
        for child in &image.manifests {
            let at = format!("{}/mirror/{name}@{}", w.host(), child.digest);
            assert_eq!(
                skopeo::manifest_digest_as(&at, CREDS),
                child.digest,
                "{name}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_asks_one_token_for_both_repositories_and_falls_back_when_refused() {
    let w = World::new(policy());
    let engine = w.engine(&[w.host()], CopyOptions::default());
    let image = images::oci_index(1201);
    push_image(&w.src.url(), "up/app", "v1", &image).await;
    let from = reference(&format!("{}/up/app:v1", w.src.host()));
    engine
        .copy(&from, &reference(&format!("{}/team-a/app:v1", w.host())))
        .await
        .unwrap();
    let second = engine
        .copy(&from, &reference(&format!("{}/team-b/app:v1", w.host())))
        .await
        .unwrap();
    assert_eq!(second.blobs_mounted as usize, image.blobs.len());
    let both = vec![
        "repository:team-b/app:pull,push".to_owned(),
        "repository:team-a/app:pull".to_owned(),
    ];
    assert!(
        w.tokens.asked().iter().any(|a| a.scopes == both),
        "{:?}",
        w.tokens.asked()
    );
    // Pull on the mount's sources refused: the bytes are sent instead.
    w.tokens.policy(|p| {
        p.no_pull.insert("team-a/app".into());
        p.no_pull.insert("team-b/app".into());
    });
    let third = engine
        .copy(&from, &reference(&format!("{}/team-c/app:v1", w.host())))
        .await
        .unwrap();
    assert_eq!(third.blobs_mounted, 0);
    assert_eq!(third.blobs_copied as usize, image.blobs.len());
    let at = format!("{}/team-c/app:v1", w.host());
    assert_eq!(&skopeo::manifest_digest_as(&at, CREDS), image.digest());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_concurrent_copies_fetch_one_token_per_scope_set() {
    let w = World::new(policy());
    let engine = w.engine(&[w.host()], CopyOptions::default());
    let mut images = Vec::new();
    for i in 0..10_u64 {
        let image = images::oci_manifest(1300 + i);
        push_image(&w.src.url(), "up/app", &format!("v1.{i}"), &image).await;
        images.push(image);
    }
    let copies = (0..10).map(|i| {
        let engine = engine.clone();
        let (src, dst) = (w.src.host().to_owned(), w.host());
        tokio::spawn(async move {
            engine
                .copy(
                    &reference(&format!("{src}/up/app:v1.{i}")),
                    &reference(&format!("{dst}/mirror/app:v1.{i}")),
                )
                .await
        })
    });
    for copy in futures_util::future::join_all(copies).await {
        copy.unwrap().unwrap();
    }
    let (sets, asked) = w.scope_sets();
    assert_eq!(asked, sets, "{:?}", w.tokens.asked());
    assert!(asked <= 2, "{:?}", w.tokens.asked());
    for (i, image) in images.iter().enumerate() {
        let at = format!("{}/mirror/app:v1.{i}", w.host());
        assert_eq!(&skopeo::manifest_digest_as(&at, CREDS), image.digest());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_in_the_middle_of_a_chunked_upload_renews_the_token_and_goes_on() {
    let w = World::new(policy());
    let layer = Blob::new(OCI_LAYER, images::random_bytes(1401, 3 * MIB));
    let image = images::single_with_layers(Format::Oci, &Platform::LINUX_AMD64, vec![layer]);
    push_image(&w.src.url(), "up/big", "v1", &image).await;
    // The second chunk is answered with a fresh challenge, as when a token expires.
    let patches = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&patches);
    let realm = w.tokens.realm();
    let hook: Hook = Arc::new(move |request| {
        if request.method != "PATCH" || seen.fetch_add(1, Ordering::SeqCst) != 1 {
            return None;
        }
        Some(Reply::from(
            Response::new(401)
                .header(
                    "WWW-Authenticate",
                    format!(
                        "Bearer realm=\"{realm}\",service=\"{}\"",
                        image_mirror_testkit::token::SERVICE
                    ),
                )
                .json(&serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": "token expired"}]})),
        ))
    });
    let front = Front::start(
        w.registry.host(),
        FrontOptions {
            hook: Some(hook),
            ..FrontOptions::default()
        },
    );
    let engine = w.engine_sending(&[front.host()], CopyOptions::default(), Some(MIB as u64));
    let to = format!("{}/mirror/big:v1", front.host());
    let issued = w.tokens.issued();
    let report = engine
        .copy(
            &reference(&format!("{}/up/big:v1", w.src.host())),
            &reference(&to),
        )
        .await
        .unwrap();
    assert!(report.resumes >= 1);
    assert!(w.tokens.issued() > issued + 1, "no new token after the 401");
    // One upload session for the big layer (not restarted), and every byte of it reached the
    // registry once: the refused chunk never got there, the next one went on from its offset.
    let sessions = front
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.target.ends_with("/blobs/uploads/"))
        .count();
    assert_eq!(sessions, image.blobs.len());
    let manifest_bytes = image.top().bytes.len() as u64;
    assert_eq!(
        front.bytes_up(),
        image.blob_bytes() as u64 + manifest_bytes,
        "bytes went up more than once"
    );
    assert_eq!(
        &skopeo::manifest_digest_as(&format!("{}/mirror/big:v1", w.host()), CREDS),
        image.digest()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_upload_and_429s_at_a_token_registry_are_ridden_out() {
    let w = World::new(policy());
    let layer = Blob::new(OCI_LAYER, images::random_bytes(1501, 40 * MIB));
    let image = images::single_with_layers(Format::Oci, &Platform::LINUX_AMD64, vec![layer]);
    push_image(&w.src.url(), "up/big", "v1", &image).await;
    let cut = FaultProxy::start(
        w.registry.host(),
        Faults {
            cut_upstream_after: Some(20 * MIB as u64),
            buffer_requests: true,
            ..Faults::default()
        },
    );
    let engine = w.engine(&[cut.host()], CopyOptions::default());
    let report = engine
        .copy(
            &reference(&format!("{}/up/big:v1", w.src.host())),
            &reference(&format!("{}/mirror/big:v1", cut.host())),
        )
        .await
        .unwrap();
    assert!(cut.cut_up_done() && report.resumes >= 1);
    let at = format!("{}/mirror/big:v1", w.host());
    assert_eq!(&skopeo::manifest_digest_as(&at, CREDS), image.digest());

    let busy = FaultProxy::start(w.registry.host(), Faults::too_many_requests(2, 1));
    let small = images::oci_manifest(1502);
    push_image(&w.src.url(), "up/small", "v1", &small).await;
    let engine = w.engine(&[busy.host()], CopyOptions::default());
    engine
        .copy(
            &reference(&format!("{}/up/small:v1", w.src.host())),
            &reference(&format!("{}/mirror/small:v1", busy.host())),
        )
        .await
        .unwrap();
    assert_eq!(busy.canned_served(), 2);
    let at = format!("{}/mirror/small:v1", w.host());
    assert_eq!(&skopeo::manifest_digest_as(&at, CREDS), small.digest());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_realm_is_retried_and_a_push_without_rights_names_the_repository() {
    let w = World::new(policy());
    let engine = w.engine(&[w.host()], CopyOptions::default());
    let image = images::oci_manifest(1601);
    push_image(&w.src.url(), "up/app", "v1", &image).await;
    w.tokens.fail_next(2);
    engine
        .copy(
            &reference(&format!("{}/up/app:v1", w.src.host())),
            &reference(&format!("{}/mirror/app:v1", w.host())),
        )
        .await
        .unwrap();
    w.tokens.policy(|p| {
        p.no_push.insert("mirror/denied".into());
    });
    let err = engine
        .copy(
            &reference(&format!("{}/up/app:v1", w.src.host())),
            &reference(&format!("{}/mirror/denied:v1", w.host())),
        )
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(!err.is_transient(), "{text}");
    assert!(text.contains("mirror/denied"), "{text}");
    assert!(text.contains("refuses pushes"), "{text}");
    assert_eq!(err.class(), "target_refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_renewed_before_it_expires() {
    let w = World::new(Policy {
        expires_in: 4,
        ..policy()
    });
    let engine = w.engine(&[w.host()], CopyOptions::default());
    for (i, seed) in [1701_u64, 1702].into_iter().enumerate() {
        let image = images::oci_manifest(seed);
        push_image(&w.src.url(), "up/app", &format!("v{i}"), &image).await;
        engine
            .copy(
                &reference(&format!("{}/up/app:v{i}", w.src.host())),
                &reference(&format!("{}/mirror/app:v{i}", w.host())),
            )
            .await
            .unwrap();
        if i == 0 {
            // Let the first tokens run out (what is under test is their lifetime).
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }
    // The second copy fetched fresh tokens instead of having the expired ones refused: the
    // registry challenged only the very first request.
    let refused = w
        .registry
        .log()
        .iter()
        .filter(|l| l.contains("\" 401 "))
        .count();
    assert_eq!(refused, 1, "{:#?}", w.registry.log());
    assert!(w.tokens.issued() >= 4, "{:?}", w.tokens.asked());
}

/// The first HEAD of blob `digest` gets a plain `429` with `Retry-After: 2`; when it was
/// answered.
fn one_burst_limit(
    digest: &image_mirror_common::Digest,
) -> (Hook, Arc<std::sync::Mutex<Option<std::time::Instant>>>) {
    let refused_at = Arc::new(std::sync::Mutex::new(None));
    let at = Arc::clone(&refused_at);
    let blob = format!("/blobs/{digest}");
    let hook: Hook = Arc::new(move |request| {
        let mut at = at.lock().unwrap();
        if request.method != "HEAD" || !request.path().ends_with(&blob) || at.is_some() {
            return None;
        }
        *at = Some(std::time::Instant::now());
        Some(Reply::Send(
            Response::new(429)
                .header("retry-after", "2")
                .json(&serde_json::json!({"errors": [{"code": "TOOMANYREQUESTS", "message": "slow down"}]})),
        ))
    });
    (hook, refused_at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_and_token_calls_wait_at_a_paused_registry() {
    use futures_util::stream;
    use image_mirror_common::{Digest, Repository};

    let w = World::new(policy());
    let bytes = images::random_bytes(1201, 64 * 1024);
    let digest = Digest::sha256_of(&bytes);
    let (hook, refused_at) = one_burst_limit(&digest);
    let front = Front::start(
        w.registry.host(),
        FrontOptions {
            hook: Some(hook),
            ..FrontOptions::default()
        },
    );
    let repo: Repository = format!("{}/mirror/paused", front.host()).parse().unwrap();
    // An upload session opened before the pause (by another client: the paused one holds only
    // a pull token, so its upload needs a token call too).
    let opener = w.engine(&[front.host()], CopyOptions::default());
    let upload = opener.client().start_upload(&repo).await.unwrap();
    let paused = w
        .engine(&[front.host()], CopyOptions::default())
        .client()
        .clone();
    let other = Digest::sha256_of(b"not there");
    assert!(!paused.blob_exists(&repo, &other).await.unwrap());
    let asking = paused.clone();
    let (r, d) = (repo.clone(), digest.clone());
    let head = tokio::spawn(async move { asking.blob_exists(&r, &d).await });
    // Once the client has paused the registry (its 429 read), the upload is sent.
    let host = front.host();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !paused
        .quotas()
        .iter()
        .any(|(registry, q)| *registry == host && q.pauses > 0)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the client never paused"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let tokens_before = w.tokens.requests().len();
    let slot = paused.upload_slot(&host).await.unwrap();
    let len = bytes.len() as u64;
    let body = stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(bytes))]);
    paused
        .put_blob_stream(&repo, &upload, &digest, body, len, &slot)
        .await
        .unwrap();
    // The refused HEAD was asked again after the pause (before or after the upload landed).
    head.await.unwrap().unwrap();
    assert!(paused.blob_exists(&repo, &digest).await.unwrap());
    let until = refused_at.lock().unwrap().unwrap() + Duration::from_millis(1900);
    let puts: Vec<_> = front
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.target.contains("/blobs/uploads/"))
        .collect();
    assert_eq!(puts.len(), 1);
    assert!(
        puts[0].at >= until,
        "the upload went {:?} before the pause ended",
        until - puts[0].at
    );
    let tokens = &w.tokens.requests()[tokens_before..];
    assert!(!tokens.is_empty(), "the paused client needed a token");
    for t in tokens {
        assert!(
            t.at >= until,
            "a token call went {:?} before the pause ended",
            until - t.at
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_copies_ask_the_token_service_once_per_scope_set_at_most() {
    let w = World::new(policy());
    let engine = w.engine(&[w.host()], CopyOptions::default());
    let (shared, _) = images::sharing_base(4, 256 * 1024, 1500);
    for (i, image) in shared.iter().enumerate() {
        push_image(&w.src.url(), &format!("up/app{i}"), "v1", image).await;
    }
    // One after another, into four repositories: the base is mounted from the first.
    for i in 0..shared.len() {
        let src = reference(&format!("{}/up/app{i}:v1", w.src.host()));
        let dst = reference(&format!("{}/mirror/app{i}:v1", w.host()));
        engine.copy(&src, &dst).await.unwrap();
    }
    let (sets, asked) = w.scope_sets();
    let scopes: Vec<Vec<String>> = w.tokens.asked().into_iter().map(|a| a.scopes).collect();
    // Three scope sets per repository at most (pull to resolve and verify, push to upload, a
    // mount's push and pull of the repository it mounts from), each asked once.
    assert!(asked <= 12, "{asked} token requests: {scopes:?}");
    assert_eq!(asked, sets, "a scope set asked twice: {scopes:?}");
    // Checked afterwards: skopeo asks the token service too.
    for (i, image) in shared.iter().enumerate() {
        let at = format!("{}/mirror/app{i}:v1", w.host());
        assert_eq!(&skopeo::manifest_digest_as(&at, CREDS), image.digest());
    }
}
