//! Keyless signatures verified offline (`--require-identity`, `--trusted-root`,
//! `--insecure-ignore-tlog`): the signature verifies with its certificate's key; the
//! certificate chains to the trusted root for code signing and was valid when the signature
//! was made (the time a transparency log vouches for, or now without one); the authority was
//! valid then too; and the certificate names an OIDC issuer and a subject one policy accepts.

use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::Signature;
use rustls_pki_types::{CertificateDer, UnixTime};
use webpki::{EndEntityCert, KeyUsage};

use crate::identity::{IdentityPolicy, Leaf};
use crate::refusal::Refusal;
use crate::roots::TrustedRoot;
use crate::tlog::{Promise, Signed};

/// The code signing extended key usage, 1.3.6.1.5.5.7.3.3, DER.
const CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

/// The identities to accept and what they must chain to.
#[derive(Debug, Clone)]
pub struct Keyless {
    root: TrustedRoot,
    policies: Vec<IdentityPolicy>,
    ignore_tlog: bool,
}

/// A certificate-carrying signature, as read from either of cosign's forms.
pub(crate) struct CertSignature<'a> {
    /// What was signed (a payload, or a DSSE envelope's pre-authentication encoding).
    pub(crate) message: &'a [u8],
    /// The signed payload itself.
    pub(crate) payload: &'a [u8],
    /// ASN.1 DER.
    pub(crate) signature: &'a [u8],
    pub(crate) leaf: &'a [u8],
    pub(crate) chain: &'a [CertificateDer<'static>],
    pub(crate) promises: &'a [Promise],
}

impl Keyless {
    /// Accepts what chains to `root` and meets one of `policies`; `ignore_tlog` accepts
    /// signatures without a log's promise even when the root has a log key.
    pub fn new(root: TrustedRoot, policies: Vec<IdentityPolicy>, ignore_tlog: bool) -> Self {
        Self {
            root,
            policies,
            ignore_tlog,
        }
    }

    /// The identity (`subject (issuer …)`) of an accepted signature; else why it is not.
    pub(crate) fn verify(&self, s: &CertSignature<'_>) -> Result<String, Refusal> {
        let leaf = Leaf::parse(s.leaf).map_err(Refusal::Unreadable)?;
        let signature = Signature::from_der(s.signature)
            .map_err(|_| Refusal::Unreadable("the signature is not ASN.1 DER".into()))?;
        leaf.key
            .verify(s.message, &signature)
            .map_err(|_| Refusal::BadSignature)?;
        let signed_at = self.signing_time(s)?;
        self.chain(s, signed_at)?;
        if self.policies.iter().any(|p| p.admits(&leaf.identity)) {
            Ok(leaf.identity.to_string())
        } else {
            Err(Refusal::WrongIdentity(leaf.identity.to_string()))
        }
    }

    /// When the signature was made: the log's time when the root has a log key (required
    /// unless `--insecure-ignore-tlog`), else now.
    fn signing_time(&self, s: &CertSignature<'_>) -> Result<i64, Refusal> {
        let now = chrono::Utc::now().timestamp();
        if !self.root.has_logs() {
            return Ok(now);
        }
        let signed = Signed {
            signature: s.signature,
            leaf: s.leaf,
            payload: s.payload,
        };
        let mut why = None;
        for promise in s.promises {
            match promise.verify(&self.root, &signed) {
                Ok(at) => return Ok(at),
                Err(e) => why = Some(e),
            }
        }
        match (why, self.ignore_tlog) {
            (_, true) => Ok(now),
            (Some(e), false) => Err(Refusal::Tlog(e)),
            (None, false) => Err(Refusal::Tlog(
                "no transparency log entry (the trusted root has a log key; \
                 --insecure-ignore-tlog accepts signatures without one)"
                    .into(),
            )),
        }
    }

    /// The certificate's chain to an authority valid at `at`, checked at `at`.
    pub(crate) fn chain(&self, s: &CertSignature<'_>, at: i64) -> Result<(), Refusal> {
        let leaf = CertificateDer::from(s.leaf);
        let cert = EndEntityCert::try_from(&leaf)
            .map_err(|e| Refusal::Unreadable(format!("the certificate: {e}")))?;
        let mut intermediates: Vec<CertificateDer<'_>> = s.chain.to_vec();
        intermediates.extend(self.root.intermediates.iter().cloned());
        let anchors: Vec<_> = self
            .root
            .authorities
            .iter()
            .map(|a| a.anchor.clone())
            .collect();
        let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(at).unwrap_or(0),
        ));
        let path = cert
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &anchors,
                &intermediates,
                time,
                KeyUsage::required(CODE_SIGNING),
                None,
                None,
            )
            .map_err(|e| match e {
                webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. } => {
                    Refusal::Expired(at_text(at))
                }
                other => Refusal::UntrustedChain(format!("{other:?}")),
            })?;
        let anchor = path.anchor();
        let authority_valid = self
            .root
            .authorities
            .iter()
            .filter(|a| a.anchor.subject_public_key_info == anchor.subject_public_key_info)
            .any(|a| a.valid.holds(at));
        if authority_valid {
            Ok(())
        } else {
            Err(Refusal::Expired(format!(
                "{} (its authority was not valid then)",
                at_text(at)
            )))
        }
    }
}

fn at_text(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0).map_or_else(|| at.to_string(), |t| t.to_rfc3339())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::TrustedKeys;
    use crate::trust_policy::TrustPolicy;
    use crate::verify::{Candidate, LayerNotes};
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use image_mirror_common::Digest;
    use image_mirror_testkit::fulcio::{
        time, Leaf as TestLeaf, TestFulcio, TestLog, GITHUB_ISSUER,
    };
    use p256::ecdsa::signature::Signer as _;
    use p256::ecdsa::SigningKey;
    use p256::pkcs8::DecodePrivateKey as _;

    const WORKFLOW: &str =
        "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main";

    fn payload(digest: &Digest) -> Vec<u8> {
        serde_json::json!({
            "critical": {
                "identity": {"docker-reference": "example.com/acme/app"},
                "image": {"docker-manifest-digest": digest.to_string()},
                "type": "cosign container image signature",
            },
            "optional": null,
        })
        .to_string()
        .into_bytes()
    }

    /// A simple signing payload of `digest` signed with `leaf`'s key, with its certificate.
    fn signed(ca: &TestFulcio, leaf: &TestLeaf, digest: &Digest) -> (LayerNotes, Vec<u8>) {
        let key = SigningKey::from_pkcs8_pem(&leaf.key_pem).unwrap();
        let payload = payload(digest);
        let sig: Signature = key.sign(&payload);
        let notes = LayerNotes {
            signature: Some(STANDARD.encode(sig.to_der().as_bytes())),
            certificate: Some(leaf.cert_pem.clone()),
            chain: Some(ca.chain_pem()),
            bundle: None,
        };
        (notes, payload)
    }

    fn policy(root: &str, identity: &str, ignore_tlog: bool) -> TrustPolicy {
        let keyless = Keyless::new(
            TrustedRoot::parse(root).unwrap(),
            vec![IdentityPolicy::parse(identity).unwrap()],
            ignore_tlog,
        );
        TrustPolicy::new(TrustedKeys::default(), Some(keyless))
    }

    fn judge(
        p: &TrustPolicy,
        notes: &LayerNotes,
        payload: &[u8],
        d: &Digest,
    ) -> Result<String, String> {
        let c = Candidate::from_simple_signing(payload, notes).unwrap();
        p.judge(&c, d).map(|s| s.name).map_err(|r| r.to_string())
    }

    fn gha(subject: &str) -> String {
        format!("{GITHUB_ISSUER}={subject}")
    }

    #[test]
    fn a_keyless_signature_is_accepted_only_for_its_identity_root_and_digest() {
        let ca = TestFulcio::new("fulcio");
        let leaf = ca.leaf(GITHUB_ISSUER, WORKFLOW);
        let d = Digest::sha256_of(b"image");
        let (notes, payload) = signed(&ca, &leaf, &d);
        let ok = policy(ca.root_pem(), &gha("https://github.com/acme/.+"), false);
        let who = judge(&ok, &notes, &payload, &d).unwrap();
        assert!(
            who.contains(WORKFLOW) && who.contains(GITHUB_ISSUER),
            "{who}"
        );

        let other_subject = policy(ca.root_pem(), &gha("https://github.com/other/.+"), false);
        let e = judge(&other_subject, &notes, &payload, &d).unwrap_err();
        assert!(
            e.starts_with("wrong identity") && e.contains(WORKFLOW),
            "{e}"
        );
        let other_issuer = policy(ca.root_pem(), "https://accounts.google.com=.+", false);
        let e = judge(&other_issuer, &notes, &payload, &d).unwrap_err();
        assert!(e.starts_with("wrong identity"), "{e}");

        let stranger = TestFulcio::new("another");
        let elsewhere = policy(stranger.root_pem(), &gha(".+"), false);
        let e = judge(&elsewhere, &notes, &payload, &d).unwrap_err();
        assert!(e.starts_with("untrusted chain"), "{e}");

        let other = Digest::sha256_of(b"other image");
        let e = judge(&ok, &notes, &payload, &other).unwrap_err();
        assert!(
            e.starts_with("digest mismatch") && e.contains(d.as_str()),
            "{e}"
        );

        let mut forged = notes.clone();
        let (theirs, _) = signed(&ca, &ca.leaf(GITHUB_ISSUER, WORKFLOW), &d);
        forged.signature = theirs.signature;
        let e = judge(&ok, &forged, &payload, &d).unwrap_err();
        assert!(e.starts_with("bad signature"), "{e}");
    }

    #[test]
    fn a_certificate_is_judged_at_the_time_the_log_vouches_for() {
        let ca = TestFulcio::new("fulcio");
        let log = TestLog::new();
        let now = time::OffsetDateTime::now_utc();
        let then = now - time::Duration::days(3);
        let leaf = ca.leaf_valid(
            GITHUB_ISSUER,
            WORKFLOW,
            then,
            then + time::Duration::minutes(10),
        );
        let d = Digest::sha256_of(b"image");
        let (mut notes, payload) = signed(&ca, &leaf, &d);
        let identity = gha("https://github.com/acme/.+");

        // A PEM root has no log: the certificate is judged now, and it has expired.
        let pem = policy(ca.root_pem(), &identity, false);
        let e = judge(&pem, &notes, &payload, &d).unwrap_err();
        assert!(e.starts_with("expired"), "{e}");

        // The root has a log key: without the log's promise, refused unless told to.
        let root = ca.trusted_root_json(Some(&log));
        let e = judge(&policy(&root, &identity, false), &notes, &payload, &d).unwrap_err();
        assert!(e.contains("no transparency log entry"), "{e}");
        let e = judge(&policy(&root, &identity, true), &notes, &payload, &d).unwrap_err();
        assert!(e.starts_with("expired"), "ignoring the log judges now: {e}");

        // The promise says it was signed within the certificate's ten minutes.
        let signature = notes.signature.clone().unwrap();
        let at = (then + time::Duration::minutes(2)).unix_timestamp();
        notes.bundle = Some(log.promise_annotation(&signature, &leaf.cert_pem, &payload, at));
        let who = judge(&policy(&root, &identity, false), &notes, &payload, &d).unwrap();
        assert!(who.contains(WORKFLOW), "{who}");

        // Logged after the certificate expired: refused.
        let late = (then + time::Duration::hours(1)).unix_timestamp();
        let mut late_notes = notes.clone();
        late_notes.bundle =
            Some(log.promise_annotation(&signature, &leaf.cert_pem, &payload, late));
        let e = judge(&policy(&root, &identity, false), &late_notes, &payload, &d).unwrap_err();
        assert!(e.starts_with("expired"), "{e}");

        // A promise from a log the root does not name, or about another payload: refused.
        let stranger = TestLog::new();
        let mut foreign = notes.clone();
        foreign.bundle =
            Some(stranger.promise_annotation(&signature, &leaf.cert_pem, &payload, at));
        let e = judge(&policy(&root, &identity, false), &foreign, &payload, &d).unwrap_err();
        assert!(e.contains("log the trusted root does not name"), "{e}");
        let mut elsewhere = notes;
        elsewhere.bundle = Some(log.promise_annotation(&signature, &leaf.cert_pem, b"other", at));
        let e = judge(&policy(&root, &identity, false), &elsewhere, &payload, &d).unwrap_err();
        assert!(e.contains("about another signature"), "{e}");
    }
}
