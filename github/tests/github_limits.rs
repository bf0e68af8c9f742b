//! The GitHub client reads every answer within its cap and follows page links only on the
//! API's own origin, so the token goes nowhere else.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use image_mirror_common::config::GithubRepo;
use image_mirror_common::secret::Secret;
use image_mirror_github::{GithubClient, MAX_GITHUB_BODY};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn repo() -> GithubRepo {
    GithubRepo {
        owner: "o".into(),
        name: "r".into(),
    }
}

#[tokio::test]
async fn an_answer_over_the_cap_is_refused() {
    let api = MockServer::start().await;
    let huge = format!("[{}]", "\"x\",".repeat(MAX_GITHUB_BODY / 4) + "\"x\"");
    Mock::given(method("GET"))
        .and(path("/repos/o/r/releases"))
        .respond_with(ResponseTemplate::new(200).set_body_string(huge))
        .mount(&api)
        .await;
    let client = GithubClient::new(&api.uri(), None).unwrap();
    let err = client.releases(&repo()).await.unwrap_err();
    assert!(
        err.to_string().contains("the answer is over 16 MiB"),
        "{err}"
    );
    assert!(!err.transient);
}

#[tokio::test]
async fn a_next_page_on_another_origin_is_not_followed_and_gets_no_token() {
    let api = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/o/r/releases"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string(r#"[{"tag_name":"v1.0.0"}]"#)
                .insert_header(
                    "link",
                    format!(
                        "<{}/repos/o/r/releases?page=2>; rel=\"next\"",
                        elsewhere.uri()
                    ),
                ),
        )
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .mount(&elsewhere)
        .await;
    let token = Secret::new("ghp_secret_31f1");
    let client = GithubClient::new(&api.uri(), Some(&token)).unwrap();
    let err = client.releases(&repo()).await.unwrap_err();
    assert!(err.to_string().contains("points away from"), "{err}");
    assert!(elsewhere.received_requests().await.unwrap().is_empty());
    // The API itself got the token: the test is not passing for want of one.
    let asked = api.received_requests().await.unwrap();
    assert!(asked[0].headers.get("authorization").is_some());
}
