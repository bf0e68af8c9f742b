//! Docker Hub's web API goes through the registry client's transport: the Docker config's
//! `docker.io` credentials reach the API's own origin and no other (a redirect is not
//! followed), and an answer is read within its cap and the request deadline like any other.
//! The Hub API itself is a wiremock stand-in.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use image_mirror_registry::dockerhub::DockerHub;
use image_mirror_registry::{ClientOptions, DockerConfig, RegistryClient};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn client(request_timeout: Duration) -> RegistryClient {
    let auth = base64::engine::general_purpose::STANDARD.encode("hubuser:hubpass");
    let config = format!(r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{auth}"}}}}}}"#);
    RegistryClient::new(ClientOptions {
        docker_config: DockerConfig::parse(config.as_bytes(), Path::new("config.json")).unwrap(),
        request_timeout,
        ..ClientOptions::default()
    })
    .unwrap()
}

async fn hub_with_login() -> MockServer {
    let hub = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/users/login"))
        .and(body_json(
            serde_json::json!({"username": "hubuser", "password": "hubpass"}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"token": "t0k"})))
        .mount(&hub)
        .await;
    hub
}

#[tokio::test]
async fn the_hub_gets_the_docker_io_credentials_and_a_redirect_elsewhere_gets_nothing() {
    let hub = hub_with_login().await;
    let elsewhere = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/namespaces/acme/repositories/app/"))
        .and(header("authorization", "Bearer t0k"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"name": "app"})))
        .mount(&hub)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/namespaces/acme/repositories/moved/"))
        .respond_with(ResponseTemplate::new(302).insert_header(
            "location",
            format!("{}/v2/namespaces/acme/repositories/moved/", elsewhere.uri()),
        ))
        .mount(&hub)
        .await;
    let client = client(Duration::from_secs(10));
    let api = DockerHub::new(&hub.uri(), &client).unwrap();
    assert!(api
        .repository_exists(&"docker.io/acme/app".parse().unwrap())
        .await
        .unwrap());
    let err = api
        .repository_exists(&"docker.io/acme/moved".parse().unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("HTTP 302"), "{err}");
    assert!(
        elsewhere.received_requests().await.unwrap().is_empty(),
        "a redirect was followed"
    );
    // One login for both questions.
    let logins = hub
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/v2/users/login")
        .count();
    assert_eq!(logins, 1);
}

#[tokio::test]
async fn a_hub_answer_is_read_within_its_cap_and_the_request_deadline() {
    let hub = hub_with_login().await;
    Mock::given(method("GET"))
        .and(path("/v2/namespaces/acme/repositories/huge/"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(vec![b' '; 2 << 20]))
        .mount(&hub)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/namespaces/acme/repositories/slow/"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&hub)
        .await;
    let client = client(Duration::from_secs(1));
    let api = DockerHub::new(&hub.uri(), &client).unwrap();
    let err = api
        .repository_exists(&"docker.io/acme/huge".parse().unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("over the 1 MiB limit"), "{err}");
    let started = Instant::now();
    let err = api
        .repository_exists(&"docker.io/acme/slow".parse().unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");
    assert!(err.contains("1s"), "{err}");
}
