//! Talking to the GitHub API through octocrab: releases, the latest release, and a file at a
//! tag for tag discovery. The base URL comes from `GITHUB_API_URL` (the variable GitHub
//! Actions sets; tests point it at a local fake) and the token from `GITHUB_TOKEN`.
//! Transient failures (network, 5xx, rate limits) are retried with backoff; the token never
//! appears in an error.

pub mod client;
pub mod error;
pub mod releases;

pub use client::GithubClient;
pub use error::GithubError;
pub use releases::Release;
