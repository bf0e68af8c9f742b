//! Who signed, keyless: the OIDC issuer and subjects a Fulcio certificate names, and the
//! policies they must meet (`--require-identity ISSUER=SUBJECT_REGEX`).

use p256::ecdsa::VerifyingKey;
use p256::pkcs8::DecodePublicKey as _;
use regex::Regex;
use x509_cert::der::asn1::Utf8StringRef;
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;

/// Fulcio's issuer extension: the OIDC issuer, a DER UTF8String.
const ISSUER_V2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.8");
/// Fulcio's first issuer extension: the OIDC issuer, its raw bytes.
const ISSUER_V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.1");
const SUBJECT_ALT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");

/// One accepted identity: an exact OIDC issuer and a regex the whole subject must match.
#[derive(Debug, Clone)]
pub struct IdentityPolicy {
    issuer: String,
    subject: Regex,
    text: String,
}

impl IdentityPolicy {
    /// Parses `ISSUER=SUBJECT_REGEX` (split at the first `=`; the regex must match a subject
    /// whole).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (issuer, subject) = text
            .split_once('=')
            .filter(|(i, s)| !i.is_empty() && !s.is_empty())
            .ok_or_else(|| format!("{text:?}: expected ISSUER=SUBJECT_REGEX"))?;
        let subject = Regex::new(&format!("^(?:{subject})$"))
            .map_err(|e| format!("{text:?}: the subject is not a regex: {e}"))?;
        Ok(Self {
            issuer: issuer.to_owned(),
            subject,
            text: text.to_owned(),
        })
    }

    /// Whether `identity` meets this policy.
    pub(crate) fn admits(&self, identity: &Identity) -> bool {
        identity.issuer.as_deref() == Some(self.issuer.as_str())
            && identity.subjects.iter().any(|s| self.subject.is_match(s))
    }
}

impl std::fmt::Display for IdentityPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// What a certificate says of its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) issuer: Option<String>,
    /// The subject alternative names: URIs, email addresses, other names' text.
    pub(crate) subjects: Vec<String>,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let subjects = if self.subjects.is_empty() {
            "no subject".to_owned()
        } else {
            self.subjects.join(", ")
        };
        match &self.issuer {
            Some(issuer) => write!(f, "{subjects} (issuer {issuer})"),
            None => write!(f, "{subjects} (no OIDC issuer extension)"),
        }
    }
}

/// A leaf certificate read: its holder and its public key.
pub(crate) struct Leaf {
    pub(crate) identity: Identity,
    pub(crate) key: VerifyingKey,
}

impl Leaf {
    /// Reads a DER certificate; only ECDSA P-256 keys (what cosign and Fulcio make).
    pub(crate) fn parse(der: &[u8]) -> Result<Self, String> {
        let cert = x509_cert::Certificate::from_der(der)
            .map_err(|e| format!("the certificate does not parse ({e})"))?;
        let tbs = &cert.tbs_certificate;
        let spki = tbs
            .subject_public_key_info
            .to_der()
            .map_err(|e| e.to_string())?;
        let key = VerifyingKey::from_public_key_der(&spki)
            .map_err(|e| format!("the certificate's key is not ECDSA P-256 ({e})"))?;
        let mut identity = Identity {
            issuer: None,
            subjects: Vec::new(),
        };
        let mut v1 = None;
        for ext in tbs.extensions.iter().flatten() {
            let value = ext.extn_value.as_bytes();
            if ext.extn_id == ISSUER_V2 {
                identity.issuer = Utf8StringRef::from_der(value)
                    .ok()
                    .map(|s| s.as_str().to_owned());
            } else if ext.extn_id == ISSUER_V1 {
                v1 = std::str::from_utf8(value).ok().map(str::to_owned);
            } else if ext.extn_id == SUBJECT_ALT_NAME {
                let names = SubjectAltName::from_der(value)
                    .map_err(|e| format!("the subject alternative name does not parse ({e})"))?;
                identity.subjects = names.0.iter().filter_map(subject).collect();
            }
        }
        if identity.issuer.is_none() {
            identity.issuer = v1;
        }
        Ok(Self { identity, key })
    }
}

fn subject(name: &GeneralName) -> Option<String> {
    match name {
        GeneralName::UniformResourceIdentifier(uri) => Some(uri.as_str().to_owned()),
        GeneralName::Rfc822Name(mail) => Some(mail.as_str().to_owned()),
        GeneralName::OtherName(other) => other
            .value
            .decode_as::<Utf8StringRef<'_>>()
            .ok()
            .map(|s| s.as_str().to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(issuer: &str, subject: &str) -> Identity {
        Identity {
            issuer: Some(issuer.into()),
            subjects: vec![subject.into()],
        }
    }

    #[test]
    fn a_policy_wants_its_issuer_exactly_and_a_whole_subject() {
        let p = IdentityPolicy::parse(
            "https://token.actions.githubusercontent.com=https://github.com/acme/.+",
        )
        .unwrap();
        let gha = "https://token.actions.githubusercontent.com";
        assert!(p.admits(&identity(
            gha,
            "https://github.com/acme/app/x.yml@refs/heads/main"
        )));
        assert!(!p.admits(&identity(gha, "https://github.com/other/app")));
        // The regex is anchored: a subject containing a match is not one.
        assert!(!p.admits(&identity(
            gha,
            "https://evil.example/https://github.com/acme/x"
        )));
        assert!(!p.admits(&identity(
            "https://accounts.google.com",
            "https://github.com/acme/x"
        )));
        let no_issuer = Identity {
            issuer: None,
            subjects: vec!["https://github.com/acme/x".into()],
        };
        assert!(!p.admits(&no_issuer));
    }

    #[test]
    fn a_policy_that_does_not_parse_says_why() {
        assert!(IdentityPolicy::parse("no-equals")
            .unwrap_err()
            .contains("ISSUER=SUBJECT_REGEX"));
        assert!(IdentityPolicy::parse("=x").is_err());
        assert!(IdentityPolicy::parse("https://i=(")
            .unwrap_err()
            .contains("regex"));
    }
}
