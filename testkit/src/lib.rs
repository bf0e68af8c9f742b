//! Real services for image-mirror's tests, so that every test talks to the same software users
//! run: a CNCF `docker-registry` per test on a free loopback port (plain, TLS, or behind a
//! Bearer token server as Docker Hub, GHCR and Quay use: [`token`]), RabbitMQ (the machine's,
//! or a private node when none runs), a real Prometheus ([`prometheus`]), skopeo, crane and a
//! private containerd ([`containerd`]) as independent clients, and synthetic images with
//! deterministic bytes pushed straight through the registry API.
//!
//! Stand-ins only for what no real part shows here: GitHub ([`github`]); a hostile registry
//! ([`hostile`]: redirects to other hosts, endless and trickling bodies, duplicate
//! manifests); fronts before real registries ([`front`]: request buffering, latency, Docker
//! Hub-style metering with 429 at a quota; [`fault_proxy`]: cut connections and canned
//! errors); the Sigstore authority and log ([`fulcio`]: an offline CA and log key).
//!
//! Its `tests/house_rules.rs` holds the rules of the whole workspace (function length, crate
//! shares, import cycles, no rules in the binary), read with a parser, as rust-analyzer's tidy
//! test does; they belong to no one crate.
//!
//! This crate is test code: it panics with a clear message when a service cannot be had.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod containerd;
pub mod cosign;
pub mod crane;
pub mod fault_proxy;
pub mod fleet;
pub mod front;
pub mod fulcio;
pub mod github;
pub mod hostile;
pub mod http;
pub mod images;
pub mod ports;
pub mod process;
pub mod prometheus;
pub mod push;
pub mod quirks;
pub mod rabbitmq;
pub mod rabbitmq_cluster;
pub mod referrers_api;
pub mod registry;
pub mod skopeo;
pub mod tls;
pub mod tls_front;
pub mod token;
pub mod tools;
pub mod workers;

pub use containerd::Containerd;
pub use fault_proxy::{FaultProxy, Faults};
pub use front::{Front, FrontOptions, Quota};
pub use github::FakeGithub;
pub use hostile::{HostileRegistry, Hostility};
pub use images::{Blob, Image, Manifest, Platform};
pub use prometheus::Prometheus;
pub use quirks::Quirk;
pub use registry::{Implementation, Registry, RegistryOptions};
pub use token::{Policy, TokenServer};
