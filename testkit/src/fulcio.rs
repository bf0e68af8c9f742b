//! An offline stand-in for Sigstore's certificate authority and transparency log, per test: a
//! root, an intermediate (code signing, as Fulcio's), and short-lived leaf certificates naming
//! an OIDC issuer (Fulcio's extensions 1.3.6.1.4.1.57264.1.1, raw, and .1.8, a UTF8String) and
//! a subject URI, as a GitHub workflow's; and a log key that signs entry timestamps as Rekor
//! does. Made with `rcgen`; the leaf's key is PKCS#8, for `cosign import-key-pair`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SigningKey as _,
    PKCS_ECDSA_P256_SHA256,
};
use serde_json::json;
use sha2::{Digest as _, Sha256};
pub use time;
use time::{Duration, OffsetDateTime};

/// GitHub Actions' OIDC issuer.
pub const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";

/// A root and an intermediate certificate authority.
pub struct TestFulcio {
    root_pem: String,
    intermediate_pem: String,
    intermediate: Issuer<'static, KeyPair>,
}

/// A leaf certificate and its key.
pub struct Leaf {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PKCS#8 PEM.
    pub key_pem: String,
}

fn ca_params(name: &str, path_len: Option<u8>) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "image-mirror tests");
    dn.push(DnType::CommonName, name);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(path_len.map_or(BasicConstraints::Unconstrained, |n| {
        BasicConstraints::Constrained(n)
    }));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::days(365);
    p.not_after = now + Duration::days(365);
    p
}

impl TestFulcio {
    /// A new authority; `name` goes into its certificates' names.
    pub fn new(name: &str) -> Self {
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("a P-256 key");
        let root_params = ca_params(&format!("{name} root"), None);
        let root = root_params.self_signed(&root_key).expect("the root");
        let root_issuer = Issuer::new(root_params, root_key);
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("a P-256 key");
        let mut params = ca_params(&format!("{name} intermediate"), Some(0));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        let intermediate = params
            .signed_by(&key, &root_issuer)
            .expect("the intermediate");
        Self {
            root_pem: root.pem(),
            intermediate_pem: intermediate.pem(),
            intermediate: Issuer::new(params, key),
        }
    }

    /// The root certificate, PEM (a `--trusted-root` PEM bundle).
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// The chain cosign attaches: the intermediate, then the root.
    pub fn chain_pem(&self) -> String {
        format!("{}{}", self.intermediate_pem, self.root_pem)
    }

    /// A leaf for `subject` (a URI) from `issuer`, valid from `not_before` to `not_after`.
    pub fn leaf_valid(
        &self,
        issuer: &str,
        subject: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Leaf {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("a P-256 key");
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.subject_alt_names = vec![SanType::URI(subject.try_into().expect("an IA5 subject"))];
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        let oid = |last: u64| [1, 3, 6, 1, 4, 1, 57264, 1, last];
        let mut utf8 = vec![0x0c, u8::try_from(issuer.len()).expect("a short issuer")];
        utf8.extend_from_slice(issuer.as_bytes());
        p.custom_extensions = vec![
            CustomExtension::from_oid_content(&oid(1), issuer.as_bytes().to_vec()),
            CustomExtension::from_oid_content(&oid(8), utf8),
        ];
        p.not_before = not_before;
        p.not_after = not_after;
        let cert = p.signed_by(&key, &self.intermediate).expect("the leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A leaf valid for ten minutes from a minute ago, as Fulcio issues them.
    pub fn leaf(&self, issuer: &str, subject: &str) -> Leaf {
        let now = OffsetDateTime::now_utc();
        self.leaf_valid(
            issuer,
            subject,
            now - Duration::minutes(1),
            now + Duration::minutes(10),
        )
    }

    /// Sigstore's `trusted_root.json` with this authority and, when given, `log`'s key.
    pub fn trusted_root_json(&self, log: Option<&TestLog>) -> String {
        let raw = |pem: &str| {
            let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            json!({"rawBytes": body})
        };
        let tlogs: Vec<_> = log
            .map(|l| {
                json!({
                    "baseUrl": "https://rekor.invalid",
                    "hashAlgorithm": "SHA2_256",
                    "publicKey": {
                        "rawBytes": STANDARD.encode(l.spki()),
                        "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                        "validFor": {"start": "2020-01-01T00:00:00Z"},
                    },
                    "logId": {"keyId": STANDARD.encode(l.id())},
                })
            })
            .into_iter()
            .collect();
        json!({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": tlogs,
            "certificateAuthorities": [{
                "uri": "https://fulcio.invalid",
                "certChain": {"certificates": [raw(&self.intermediate_pem), raw(&self.root_pem)]},
                "validFor": {"start": "2020-01-01T00:00:00Z"},
            }],
            "ctlogs": [],
            "timestampAuthorities": [],
        })
        .to_string()
    }
}

/// A transparency log's key, signing entry timestamps as Rekor does.
pub struct TestLog {
    key: KeyPair,
}

impl Default for TestLog {
    fn default() -> Self {
        Self::new()
    }
}

impl TestLog {
    /// A new log key.
    pub fn new() -> Self {
        Self {
            key: KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("a P-256 key"),
        }
    }

    fn spki(&self) -> Vec<u8> {
        rcgen::PublicKeyData::subject_public_key_info(&self.key)
    }

    fn id(&self) -> Vec<u8> {
        Sha256::digest(self.spki()).to_vec()
    }

    /// cosign's `dev.sigstore.cosign/bundle` annotation for a `hashedrekord` entry of
    /// `signature_b64` over `payload` by `cert_pem`, logged at `integrated_time`.
    pub fn promise_annotation(
        &self,
        signature_b64: &str,
        cert_pem: &str,
        payload: &[u8],
        integrated_time: i64,
    ) -> String {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let body = json!({
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": hex(&Sha256::digest(payload))}},
                "signature": {
                    "content": signature_b64,
                    "publicKey": {"content": STANDARD.encode(cert_pem)},
                },
            },
        })
        .to_string();
        let body = STANDARD.encode(body);
        let log_id = hex(&self.id());
        let signed = format!(
            r#"{{"body":"{body}","integratedTime":{integrated_time},"logID":"{log_id}","logIndex":1}}"#
        );
        let set = self.key.sign(signed.as_bytes()).expect("a signature");
        json!({
            "SignedEntryTimestamp": STANDARD.encode(set),
            "Payload": {
                "body": body,
                "integratedTime": integrated_time,
                "logIndex": 1,
                "logID": log_id,
            },
        })
        .to_string()
    }
}
