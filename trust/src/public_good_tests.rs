//! The crate against what Sigstore's public-good Fulcio and Rekor really issued
//! (`testdata/public-good`): a Fulcio leaf's identity is read, its chain to the published
//! root holds at the time it was valid and not now, and a real signed entry timestamp verifies
//! with Rekor's published key.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rustls_pki_types::CertificateDer;

use crate::identity::{IdentityPolicy, Leaf};
use crate::keyless::{CertSignature, Keyless};
use crate::refusal::Refusal;
use crate::roots::TrustedRoot;
use crate::tlog::Promise;

const ROOT: &str = include_str!("../testdata/public-good/trusted_root.json");
const LEAF: &str = include_str!("../testdata/public-good/fulcio-leaf.b64");
const BUNDLE: &str = include_str!("../testdata/public-good/bundle-publish.json");
const WORKFLOW: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
/// 2023-07-12T15:56:36Z, within the leaf's ten minutes.
const SIGNED_AT: i64 = 1_689_177_396;

fn leaf() -> Vec<u8> {
    STANDARD.decode(LEAF.trim()).unwrap()
}

#[test]
fn a_real_fulcio_certificate_names_its_issuer_and_workflow() {
    let leaf = Leaf::parse(&leaf()).unwrap();
    assert_eq!(
        leaf.identity.issuer.as_deref(),
        Some("https://token.actions.githubusercontent.com")
    );
    assert_eq!(leaf.identity.subjects, vec![WORKFLOW.to_owned()]);
    let policy = IdentityPolicy::parse(
        "https://token.actions.githubusercontent.com=https://github.com/sigstore-conformance/.+",
    )
    .unwrap();
    assert!(policy.admits(&leaf.identity));
}

#[test]
fn a_real_fulcio_chain_holds_when_the_certificate_was_valid_and_not_now() {
    let root = TrustedRoot::parse(ROOT).unwrap();
    assert!(root.has_logs());
    let keyless = Keyless::new(root, Vec::new(), false);
    let leaf = leaf();
    let chain: Vec<CertificateDer<'static>> = Vec::new();
    let signed = CertSignature {
        message: b"",
        payload: b"",
        signature: b"",
        leaf: &leaf,
        chain: &chain,
        promises: &[],
    };
    keyless.chain(&signed, SIGNED_AT).unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(matches!(
        keyless.chain(&signed, now),
        Err(Refusal::Expired(_))
    ));
    // Before the authority's validity began: refused too.
    let before = 1_600_000_000;
    assert!(keyless.chain(&signed, before).is_err());
}

#[test]
fn a_real_signed_entry_timestamp_verifies_with_rekors_key() {
    let root = TrustedRoot::parse(ROOT).unwrap();
    let bundle: serde_json::Value = serde_json::from_str(BUNDLE).unwrap();
    let promises = Promise::from_bundle(&bundle["verificationMaterial"]);
    assert_eq!(promises.len(), 1);
    assert_eq!(promises[0].vouched(&root), Ok(1_681_839_916));
    // Another time than the one Rekor signed: no longer its promise.
    let mut material = bundle["verificationMaterial"].clone();
    material["tlogEntries"][0]["integratedTime"] = "1681839917".into();
    let forged = Promise::from_bundle(&material);
    assert!(forged[0].vouched(&root).is_err());
}
