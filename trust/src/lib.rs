//! Trust on the mirror: what a trusted key signed, and nothing else (`--require-signature`).
//!
//! This crate owns the reading and verifying of cosign signatures of a source image, before
//! anything of it is written: its keys ([`TrustedKeys`]), the two signature forms cosign
//! writes ([`verify_bundle`], [`verify_simple_signing`]) and the lookup of a digest's
//! signatures at its registry ([`TrustedKeys::pin`]). It reads only through the registry
//! client, so every read is capped and every wait bounded as any other.
//!
//! The rule: before anything of an image is written, its source digest must carry a cosign
//! signature that one of the given public keys verifies, and that names that digest. Nothing else is asked for than the source
//! registry's own content (no transparency log, no certificate authority).
//!
//! Two forms are read, as cosign writes them:
//! - the legacy tag `sha256-<hex>.sig`: each layer is a *simple signing* payload
//!   (`critical.image.docker-manifest-digest` names the image) and the annotation
//!   `dev.cosignproject.cosign/signature` its signature;
//! - an OCI 1.1 referrer of artifact type `application/vnd.dev.sigstore.bundle.v0.3+json`
//!   (cosign 3): a Sigstore bundle whose DSSE envelope carries an in-toto statement of
//!   predicate type `https://sigstore.dev/cosign/sign/v1` with the image digest as subject;
//!   the signature is over the envelope's pre-authentication encoding.
//!
//! It also owns the key attestations are signed with (`--attest`, [`AttestKey`]): cosign's sealed
//! private key or a PKCS#8 one, signing DSSE envelopes as cosign does.
//!
//! Keys are ECDSA P-256 public keys in PEM (what `cosign generate-key-pair` writes); signatures
//! are ASN.1 DER, over SHA-256. Payloads and bundles are read within [`MAX_PAYLOAD`] bytes.

mod error;
mod keys;
mod lookup;
mod signer;
mod verify;

pub use error::TrustError;
pub use keys::TrustedKeys;
pub use lookup::Pinned;
pub use signer::AttestKey;
pub use verify::{pae, verify_bundle, verify_simple_signing, BUNDLE_TYPE, MAX_PAYLOAD};
