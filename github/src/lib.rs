//! Talking to the GitHub API through octocrab: releases, the latest release and a file at a
//! tag for tag discovery; files, branches and pull requests for the committer. The base URL
//! comes from `GITHUB_API_URL` (the variable GitHub Actions sets; tests point it at a local
//! fake) and the token from `GITHUB_TOKEN`. Transient failures (network, 5xx, rate limits) are
//! retried with backoff; the token never appears in an error. Every answer is read within a
//! cap ([`MAX_GITHUB_BODY`]) and a deadline, and page links are followed only on the API's
//! own origin.

pub mod client;
pub mod contents;
pub mod error;
pub mod pulls;
pub mod releases;
mod transport;

pub use client::GithubClient;
pub use contents::{FileAtRef, FileWrite};
pub use error::GithubError;
pub use pulls::{NewPullRequest, OpenPull, PullCreated, PullRequest};
pub use releases::Release;
pub use transport::{GITHUB_DEADLINE, MAX_GITHUB_BODY};

/// The GitHub answers this client reads (releases, a file's contents, pull requests), parsed
/// from arbitrary bytes as the client parses them: for the fuzz targets.
#[cfg(fuzzing)]
pub fn fuzz_answers(data: &[u8]) {
    let _ = client::parse::<Vec<releases::Release>>("fuzz", data);
    let _ = client::parse::<releases::Release>("fuzz", data);
    let _ = client::parse::<Vec<pulls::PullRequest>>("fuzz", data);
    contents::fuzz_contents(data);
}
