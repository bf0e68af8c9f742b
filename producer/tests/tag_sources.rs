//! Tag sources and filters against a GitHub API fake (wiremock), a real registry, and the
//! testkit's hostile registry for tag lists no real one here sends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use image_mirror_common::{Config, ImagesList, Repository};
use image_mirror_github::GithubClient;
use image_mirror_producer::{discover, Sources};
use image_mirror_registry::{ClientOptions, DockerConfig, RegistryClient};
use image_mirror_testkit::hostile::TagPaging;
use image_mirror_testkit::images;
use image_mirror_testkit::push::{push_image, push_manifest};
use image_mirror_testkit::{HostileRegistry, Hostility, Registry};
use serde_json::json;
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn registry_client(insecure: &[&str]) -> RegistryClient {
    RegistryClient::new(ClientOptions {
        insecure_hosts: insecure.iter().map(|s| (*s).to_owned()).collect(),
        docker_config: DockerConfig::default(),
        ..ClientOptions::default()
    })
    .unwrap()
}

fn release(tag: &str, draft: bool, prerelease: bool) -> serde_json::Value {
    json!({"tag_name": tag, "draft": draft, "prerelease": prerelease, "name": tag})
}

/// Two pages of releases of `o/r`: published semver ones, drafts, pre-releases, tags that are
/// not semver.
async fn github_with_releases() -> MockServer {
    let github = MockServer::start().await;
    let page1 = vec![
        release("v1.22.0", false, false),
        release("v1.22.1-rc.1", false, true),
        release("v1.23.0", true, false),
        release("v1.21.1", false, false),
        release("v1.21.0", false, false),
        release("nightly", false, false),
    ];
    let page2 = vec![
        release("v1.20.3", false, false),
        release("1.2.5", false, false),
        release("v1.2", false, false),
        release("v2.0.0", false, false),
        release("v0.9.0", false, false),
    ];
    let next = format!("{}/repos/o/r/releases?per_page=100&page=2", github.uri());
    Mock::given(method("GET"))
        .and(path("/repos/o/r/releases"))
        .and(query_param_is_missing("page"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("link", format!("<{next}>; rel=\"next\"").as_str())
                .set_body_json(page1),
        )
        .expect(1)
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/o/r/releases"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page2))
        .expect(1)
        .mount(&github)
        .await;
    github
}

async fn found_for(github: &MockServer, rule: serde_json::Value) -> Vec<String> {
    let config = json!({ "k": rule }).to_string();
    let config = Config::parse(config.as_bytes(), "config.json".as_ref()).unwrap();
    let list = ImagesList::parse(b"o/app mirror/app v1.0.0\n").unwrap();
    let registry = registry_client(&[]);
    let sources = Sources {
        github: GithubClient::new(&github.uri(), None).unwrap(),
        hub: image_mirror_registry::dockerhub::DockerHub::new("http://127.0.0.1:9", &registry)
            .unwrap(),
        registry,
        new_images: None,
        overrides: Default::default(),
        helm: image_mirror_producer::Helm::default(),
    };
    let report = discover(&config.rules()[0], &list, &sources).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    report.found
}

#[tokio::test]
async fn github_releases_select_by_constraint_filter_and_latest() {
    let cases: Vec<(serde_json::Value, Vec<&str>)> = vec![
        // Every published semver release, across both pages: no drafts, no pre-releases, no
        // `nightly`, no `v1.2` (not semver until a patch number is there).
        (
            json!({}),
            vec![
                "v1.22.0", "v1.21.1", "v1.21.0", "v1.20.3", "1.2.5", "v2.0.0", "v0.9.0",
            ],
        ),
        (
            json!({"versionConstraint": ">1.21.0"}),
            vec!["v1.22.0", "v1.21.1", "v2.0.0"],
        ),
        (
            json!({"versionConstraint": ">=1.2, <2"}),
            vec!["v1.22.0", "v1.21.1", "v1.21.0", "v1.20.3", "1.2.5"],
        ),
        (
            json!({"versionConstraint": ">1.21.0", "latest": true}),
            vec!["v2.0.0"],
        ),
        (
            json!({"versionConstraint": ">=1.2, <2", "latest": "true"}),
            vec!["v1.22.0"],
        ),
        // Not anchored: found anywhere in the tag.
        (
            json!({"versionFilter": "1\\.2"}),
            vec!["v1.22.0", "v1.21.1", "v1.21.0", "v1.20.3", "1.2.5"],
        ),
        // Anchored by the pattern itself.
        (json!({"versionFilter": "^1\\.2"}), vec!["1.2.5"]),
        (
            json!({"versionFilter": "^v1\\.2[0-9]\\.[0-9]+$", "latest": true}),
            vec!["v1.22.0"],
        ),
        (
            json!({"versionFilter": "^v", "versionConstraint": "<1.21.0"}),
            vec!["v1.20.3", "v0.9.0"],
        ),
    ];
    for (extra, expected) in cases {
        let github = github_with_releases().await;
        let mut rule = json!({"images": ["o/app"], "versionSource": "github-releases:o/r"});
        for (k, v) in extra.as_object().unwrap() {
            rule[k] = v.clone();
        }
        let found = found_for(&github, rule.clone()).await;
        assert_eq!(found, expected, "rule {rule}");
    }
}

#[tokio::test]
async fn latest_release_is_the_one_github_marks() {
    let github = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/o/r/releases/latest"))
        .respond_with(ResponseTemplate::new(200).set_body_json(release("v0.26.7", false, false)))
        .mount(&github)
        .await;
    let found = found_for(
        &github,
        json!({"images": ["o/app"], "versionSource": "github-latest-release:o/r"}),
    )
    .await;
    assert_eq!(found, vec!["v0.26.7"]);
}

/// Tag lists no real registry here sends (the testkit's hostile registry sends them).
fn hostile_with_tags(
    paging: TagPaging,
    tags: &[String],
) -> (HostileRegistry, RegistryClient, Repository) {
    let hostile = HostileRegistry::start(Hostility {
        tag_paging: Some(paging),
        ..Hostility::default()
    });
    let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    hostile.set_tags("team/app", &refs);
    let host = hostile.host();
    let client = registry_client(&[&host]);
    let repo: Repository = format!("{host}/team/app").parse().unwrap();
    (hostile, client, repo)
}

fn tag_pages_asked(hostile: &HostileRegistry) -> usize {
    hostile
        .requests()
        .iter()
        .filter(|r| r.target.starts_with("/v2/team/app/tags/list"))
        .count()
}

/// A registry that ignores `n` and `last`: every request gets all 300 tags, and a `Link` to a
/// "next" page that is the same list again.
#[tokio::test]
async fn a_registry_ignoring_n_and_last_is_listed_once() {
    let tags: Vec<String> = (0..300).map(|i| format!("1.{i}.0")).collect();
    let (hostile, client, repo) = hostile_with_tags(TagPaging::WholeListWithNext, &tags);
    assert_eq!(client.list_tags(&repo).await.unwrap(), tags);
    // The first page, then the "next" one that brought nothing new: then it stopped.
    assert_eq!(tag_pages_asked(&hostile), 2);

    // A Link back to the page just read ends the listing as well.
    let two = vec!["a".to_owned(), "b".to_owned()];
    let (hostile, client, repo) = hostile_with_tags(TagPaging::LinkToItself, &two);
    assert_eq!(client.list_tags(&repo).await.unwrap(), two);
    assert_eq!(tag_pages_asked(&hostile), 1);
}

/// A registry that pages properly: three pages of 100 linked by `Link`, all followed.
#[tokio::test]
async fn linked_pages_are_followed() {
    let tags: Vec<String> = (0..300).map(|i| format!("t{i:03}")).collect();
    let (hostile, client, repo) = hostile_with_tags(TagPaging::Proper(100), &tags);
    assert_eq!(client.list_tags(&repo).await.unwrap(), tags);
    assert_eq!(tag_pages_asked(&hostile), 3);
}

/// A real registry with 300 tags.
#[tokio::test]
async fn a_real_registry_with_300_tags_is_listed_completely() {
    let registry = Registry::start();
    let image = images::oci_manifest(77);
    push_image(&registry.url(), "team/app", "0.0.0", &image).await;
    let http = reqwest::Client::new();
    let top = image.top();
    let mut expected = vec!["0.0.0".to_owned()];
    for i in 1..300 {
        let tag = format!("0.{i}.0");
        push_manifest(&http, &registry.url(), "team/app", &tag, top).await;
        expected.push(tag);
    }
    let client = registry_client(&[registry.host()]);
    let repo: Repository = format!("{}/team/app", registry.host()).parse().unwrap();
    let mut listed = client.list_tags(&repo).await.unwrap();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);
}

/// A rate limit that resets in an hour is reported at once, naming it; a 502 is retried.
#[tokio::test]
async fn github_rate_limits_are_reported_and_server_errors_retried() {
    let github = MockServer::start().await;
    let reset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    Mock::given(method("GET"))
        .and(path("/repos/o/limited/releases/latest"))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", reset.to_string().as_str())
                .set_body_json(json!({"message": "API rate limit exceeded", "documentation_url": "https://docs.github.com"})),
        )
        .expect(1)
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/o/flaky/releases/latest"))
        .respond_with(ResponseTemplate::new(502).set_body_json(json!({"message": "Bad Gateway"})))
        .up_to_n_times(2)
        .expect(2)
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/o/flaky/releases/latest"))
        .respond_with(ResponseTemplate::new(200).set_body_json(release("v1.0.0", false, false)))
        .expect(1)
        .mount(&github)
        .await;
    let client = GithubClient::new(&github.uri(), None).unwrap();
    let repo = |name: &str| image_mirror_common::config::GithubRepo {
        owner: "o".into(),
        name: name.into(),
    };
    let err = client.latest_release(&repo("limited")).await.unwrap_err();
    assert!(err.transient);
    assert!(
        err.to_string()
            .contains("403 API rate limit exceeded (rate limited"),
        "{err}"
    );
    let ok = client.latest_release(&repo("flaky")).await.unwrap();
    assert_eq!(ok.tag_name, "v1.0.0");
}
