//! Trust on the mirror: what a trusted key or identity signed, and nothing else.
//!
//! This crate owns the reading and verifying of cosign signatures of a source image, before
//! anything of it is written: what must have signed ([`TrustPolicy`]: trusted keys,
//! [`TrustedKeys`], from `--require-signature`; keyless identities, [`Keyless`], from
//! `--require-identity` and `--trusted-root`), the two signature forms cosign writes, and the
//! lookup of a digest's signatures at its registry ([`TrustPolicy::pin`]). It reads only
//! through the registry client, so every read is capped and every wait bounded as any other.
//!
//! The rule: before anything of an image is written, its source digest must carry a cosign
//! signature that names that digest and that either one of the given public keys verifies, or
//! whose certificate chains to the trusted root, was valid when it signed, and names an OIDC
//! issuer and subject one `--require-identity` accepts. Nothing but the source registry's
//! content and the trusted root is consulted: no network call to Sigstore. When the root has
//! a transparency log's key, the log's signed promise in the signature says when it was
//! signed (`--insecure-ignore-tlog` accepts signatures without one, at the current time).
//! Anything else is `unsigned`, with each signature's reason.
//!
//! Two forms are read, as cosign writes them:
//! - the legacy tag `sha256-<hex>.sig`: each layer is a *simple signing* payload
//!   (`critical.image.docker-manifest-digest` names the image), the annotation
//!   `dev.cosignproject.cosign/signature` its signature, and for a keyless signature
//!   `dev.sigstore.cosign/certificate`, `…/chain` and `…/bundle` (the log's promise);
//! - an OCI 1.1 referrer of artifact type `application/vnd.dev.sigstore.bundle.v0.3+json`
//!   (cosign 3): a Sigstore bundle whose DSSE envelope carries an in-toto statement of
//!   predicate type `https://sigstore.dev/cosign/sign/v1` with the image digest as subject;
//!   the signature is over the envelope's pre-authentication encoding; its verification
//!   material holds the certificate chain and the log entries.
//!
//! X.509 is read with `x509-cert` and chains are verified with `rustls-webpki`; signatures are
//! ECDSA P-256 (`p256`), ASN.1 DER over SHA-256.
//!
//! It also owns the key attestations are signed with (`--attest`, [`AttestKey`]): cosign's sealed
//! private key or a PKCS#8 one, signing DSSE envelopes as cosign does.
//!
//! Payloads and bundles are read within [`MAX_PAYLOAD`] bytes.

mod error;
mod identity;
mod keyless;
mod keys;
mod lookup;
mod refusal;
mod roots;
mod signer;
mod tlog;
mod trust_policy;
mod verify;

#[cfg(test)]
mod public_good_tests;

pub use error::TrustError;
pub use identity::IdentityPolicy;
pub use keyless::Keyless;
pub use keys::TrustedKeys;
pub use lookup::Pinned;
pub use roots::TrustedRoot;
pub use signer::AttestKey;
pub use trust_policy::{Signer, TrustPolicy};
pub use verify::{pae, verify_bundle, verify_simple_signing, BUNDLE_TYPE, MAX_PAYLOAD};
