//! Talking to the GitHub API through octocrab: releases, the latest release and a file at a
//! tag for tag discovery; files, branches and pull requests for the committer. The base URL
//! comes from `GITHUB_API_URL` (the variable GitHub Actions sets; tests point it at a local
//! fake) and the token from `GITHUB_TOKEN`. Transient failures (network, 5xx, rate limits) are
//! retried with backoff; the token never appears in an error.

pub mod client;
pub mod contents;
pub mod error;
pub mod pulls;
pub mod releases;

pub use client::GithubClient;
pub use contents::FileAtRef;
pub use error::GithubError;
pub use pulls::{NewPullRequest, PullRequest};
pub use releases::Release;
