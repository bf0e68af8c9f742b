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
