//! What a keyless signature's certificate must chain to (`--trusted-root FILE`): the
//! certificate authorities of Sigstore's `trusted_root.json` (each with the time it was valid
//! for) or of a PEM bundle; and the transparency logs' keys (from `trusted_root.json` alone)
//! that vouch for when a signature was made.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use image_mirror_common::Digest;
use p256::ecdsa::VerifyingKey;
use p256::pkcs8::DecodePublicKey as _;
use rustls_pki_types::{CertificateDer, TrustAnchor};
use serde::Deserialize;
use x509_cert::der::{DecodePem as _, Encode as _};

/// The largest root file read.
const MAX_ROOT_FILE: u64 = 4 * 1024 * 1024;

/// A span of time, in seconds since the epoch; open where a bound is absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Window {
    start: Option<i64>,
    end: Option<i64>,
}

impl Window {
    pub(crate) fn holds(self, at: i64) -> bool {
        self.start.is_none_or(|s| s <= at) && self.end.is_none_or(|e| at <= e)
    }
}

/// A certificate authority: the anchor a chain ends at, when it was valid.
#[derive(Debug, Clone)]
pub(crate) struct Authority {
    pub(crate) anchor: TrustAnchor<'static>,
    pub(crate) valid: Window,
}

/// A transparency log's key and when it signed.
#[derive(Debug, Clone)]
pub(crate) struct LogKey {
    /// The log's id: the SHA-256 of its key's DER SubjectPublicKeyInfo.
    pub(crate) id: Vec<u8>,
    pub(crate) key: VerifyingKey,
    pub(crate) valid: Window,
}

/// The roots of `--trusted-root`.
#[derive(Debug, Clone)]
pub struct TrustedRoot {
    pub(crate) authorities: Vec<Authority>,
    /// Certificates of the root's chains between a leaf and an anchor.
    pub(crate) intermediates: Vec<CertificateDer<'static>>,
    pub(crate) logs: Vec<LogKey>,
    /// Logs of the root whose keys are of another kind than ECDSA P-256.
    pub(crate) other_logs: usize,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RootFile {
    #[serde(default)]
    certificate_authorities: Vec<CaEntry>,
    #[serde(default)]
    tlogs: Vec<TlogEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CaEntry {
    cert_chain: CertChain,
    #[serde(default)]
    valid_for: Option<ValidFor>,
}

#[derive(Deserialize)]
struct CertChain {
    certificates: Vec<RawBytes>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBytes {
    raw_bytes: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TlogEntry {
    public_key: PublicKey,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PublicKey {
    raw_bytes: String,
    #[serde(default)]
    valid_for: Option<ValidFor>,
}

#[derive(Deserialize)]
struct ValidFor {
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    end: Option<String>,
}

impl TrustedRoot {
    /// Reads `path`: Sigstore's `trusted_root.json`, or PEM certificates (each one an anchor).
    /// An unreadable or malformed file names itself and what is wrong.
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let at = |e: String| format!("{}: {e}", path.display());
        let size = std::fs::metadata(path)
            .map_err(|e| at(format!("cannot read the trusted root: {e}")))?
            .len();
        if size > MAX_ROOT_FILE {
            return Err(at(format!("larger than {MAX_ROOT_FILE} bytes")));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| at(format!("cannot read the trusted root: {e}")))?;
        Self::parse(&text).map_err(at)
    }

    /// A root from the text of `trusted_root.json` or a PEM bundle.
    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.trim_start().starts_with('{') {
            return Self::from_pem(text);
        }
        if serde_json::from_str::<serde_json::Value>(text).is_ok() {
            return Self::from_json(text);
        }
        // JSON lines, one root each (what `gh attestation trusted-root` prints): all of them.
        let mut merged: Option<Self> = None;
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let root = Self::from_json(line).map_err(|e| format!("line {}: {e}", i + 1))?;
            match &mut merged {
                None => merged = Some(root),
                Some(m) => {
                    m.authorities.extend(root.authorities);
                    m.intermediates.extend(root.intermediates);
                    m.logs.extend(root.logs);
                    m.other_logs += root.other_logs;
                }
            }
        }
        merged.ok_or_else(|| "no trusted root in the file".into())
    }

    /// Whether signatures must show a transparency log's promise (the root has a log key).
    pub fn has_logs(&self) -> bool {
        !self.logs.is_empty() || self.other_logs > 0
    }

    fn from_pem(text: &str) -> Result<Self, String> {
        let certificates = x509_cert::Certificate::load_pem_chain(text.as_bytes())
            .map_err(|e| format!("not PEM certificates nor a trusted_root.json ({e})"))?;
        if certificates.is_empty() {
            return Err("no certificate in the PEM bundle".into());
        }
        let authorities = certificates
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let der = c
                    .to_der()
                    .map_err(|e| format!("certificate {}: {e}", i + 1))?;
                Ok(Authority {
                    anchor: anchor(der).map_err(|e| format!("certificate {}: {e}", i + 1))?,
                    valid: Window::default(),
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            authorities,
            intermediates: Vec::new(),
            logs: Vec::new(),
            other_logs: 0,
        })
    }

    fn from_json(text: &str) -> Result<Self, String> {
        let file: RootFile =
            serde_json::from_str(text).map_err(|e| format!("not a trusted_root.json: {e}"))?;
        let mut root = Self {
            authorities: Vec::new(),
            intermediates: Vec::new(),
            logs: Vec::new(),
            other_logs: 0,
        };
        for (i, ca) in file.certificate_authorities.iter().enumerate() {
            let at = |e: String| format!("certificateAuthorities[{i}]: {e}");
            let mut chain = ca
                .cert_chain
                .certificates
                .iter()
                .map(|c| decode(&c.raw_bytes).map(CertificateDer::from))
                .collect::<Result<Vec<_>, _>>()
                .map_err(at)?;
            // Leaf-most first: the last certificate is the authority's root.
            let last = chain.pop().ok_or_else(|| at("an empty certChain".into()))?;
            root.authorities.push(Authority {
                anchor: anchor(last.to_vec()).map_err(at)?,
                valid: window(ca.valid_for.as_ref()).map_err(at)?,
            });
            root.intermediates.extend(chain);
        }
        if root.authorities.is_empty() {
            return Err("no certificateAuthorities".into());
        }
        for (i, log) in file.tlogs.iter().enumerate() {
            let at = |e: String| format!("tlogs[{i}]: {e}");
            let der = decode(&log.public_key.raw_bytes).map_err(at)?;
            let Ok(key) = VerifyingKey::from_public_key_der(&der) else {
                // Another kind of key (Rekor v2's Ed25519): its log still counts, so that
                // signatures must show a promise, which this one cannot vouch for.
                tracing::debug!("tlogs[{i}]: not an ECDSA P-256 key; its entries are not read");
                root.other_logs += 1;
                continue;
            };
            root.logs.push(LogKey {
                id: hex_bytes(Digest::sha256_of(&der).encoded()),
                key,
                valid: window(log.public_key.valid_for.as_ref()).map_err(at)?,
            });
        }
        Ok(root)
    }
}

fn decode(b64: &str) -> Result<Vec<u8>, String> {
    STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("rawBytes is not base64 ({e})"))
}

fn anchor(der: Vec<u8>) -> Result<TrustAnchor<'static>, String> {
    let der = CertificateDer::from(der);
    webpki::anchor_from_trusted_cert(&der)
        .map(|a| a.to_owned())
        .map_err(|e| format!("not a usable CA certificate ({e})"))
}

fn window(valid: Option<&ValidFor>) -> Result<Window, String> {
    let at = |t: &Option<String>| {
        t.as_deref()
            .map(|t| {
                chrono::DateTime::parse_from_rfc3339(t)
                    .map(|t| t.timestamp())
                    .map_err(|e| format!("validFor: {t}: {e}"))
            })
            .transpose()
    };
    Ok(match valid {
        None => Window::default(),
        Some(v) => Window {
            start: at(&v.start)?,
            end: at(&v.end)?,
        },
    })
}

/// The bytes of a lowercase hexadecimal text (as a digest's).
pub(crate) fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// A certificate in PEM, as DER.
pub(crate) fn pem_to_der(pem: &str) -> Result<Vec<u8>, String> {
    x509_cert::Certificate::from_pem(pem.trim().as_bytes())
        .and_then(|c| c.to_der())
        .map_err(|e| format!("not a PEM certificate ({e})"))
}

/// Certificates in PEM, as DER.
pub(crate) fn pem_chain_to_der(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    x509_cert::Certificate::load_pem_chain(pem.trim().as_bytes())
        .map_err(|e| format!("not PEM certificates ({e})"))?
        .iter()
        .map(|c| {
            c.to_der()
                .map(CertificateDer::from)
                .map_err(|e| e.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_that_is_neither_json_nor_pem_is_refused_with_why() {
        assert!(TrustedRoot::parse("hello").unwrap_err().contains("not PEM"));
        let e = TrustedRoot::parse(r#"{"certificateAuthorities": []}"#).unwrap_err();
        assert!(e.contains("no certificateAuthorities"), "{e}");
        let e = TrustedRoot::parse(
            r#"{"certificateAuthorities": [{"certChain": {"certificates": [{"rawBytes": "!"}]}}]}"#,
        )
        .unwrap_err();
        assert!(
            e.contains("certificateAuthorities[0]") && e.contains("base64"),
            "{e}"
        );
    }

    #[test]
    fn a_log_with_another_kind_of_key_still_asks_for_a_promise() {
        // An Ed25519 key (Rekor v2's kind), DER SubjectPublicKeyInfo.
        let ed25519 = "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=";
        let mut doc: serde_json::Value =
            serde_json::from_str(include_str!("../testdata/public-good/trusted_root.json"))
                .unwrap();
        doc["tlogs"][0]["publicKey"]["rawBytes"] = ed25519.into();
        let root = TrustedRoot::parse(&doc.to_string()).unwrap();
        assert!(root.logs.is_empty() && root.has_logs());
    }

    #[test]
    fn json_lines_are_one_root_each_and_all_are_trusted() {
        let one = include_str!("../testdata/public-good/trusted_root.json");
        let line: serde_json::Value = serde_json::from_str(one).unwrap();
        let lines = format!("{line}\n{line}\n");
        let root = TrustedRoot::parse(&lines).unwrap();
        assert_eq!(root.authorities.len(), 2);
        assert_eq!(root.logs.len(), 2);
        let e = TrustedRoot::parse(&format!("{line}\n{{\"tlogs\": 1}}\n")).unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
    }

    #[test]
    fn a_window_holds_its_bounds() {
        let w = Window {
            start: Some(10),
            end: Some(20),
        };
        assert!(w.holds(10) && w.holds(20) && !w.holds(9) && !w.holds(21));
        assert!(Window::default().holds(0));
    }
}
