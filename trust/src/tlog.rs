//! A transparency log's promise, checked offline: the signed entry timestamp Rekor gives a
//! signature (cosign's `dev.sigstore.cosign/bundle` annotation, or a Sigstore bundle's
//! `inclusionPromise`), verified with a log key of the trusted root, and tied to this
//! signature: its entry names the same signature, certificate and payload. It says when the
//! signature was made, which is when its short-lived certificate must have been valid.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use image_mirror_common::Digest;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::Signature;
use serde_json::Value;

use crate::roots::{hex_bytes, pem_to_der, TrustedRoot};

/// A log entry's promise, as either form carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Promise {
    /// The entry's body, as the log canonicalised it.
    body: Vec<u8>,
    integrated_time: i64,
    log_index: i64,
    log_id: Vec<u8>,
    /// The signed entry timestamp: the log key's signature.
    set: Vec<u8>,
}

/// What the entry must be about.
pub(crate) struct Signed<'a> {
    /// The signature, DER.
    pub(crate) signature: &'a [u8],
    /// The signing certificate, DER.
    pub(crate) leaf: &'a [u8],
    /// The signed payload (for a DSSE envelope, its payload, not the encoding signed).
    pub(crate) payload: &'a [u8],
}

impl Promise {
    /// cosign's `dev.sigstore.cosign/bundle` annotation of a `.sig` layer.
    pub(crate) fn from_annotation(text: &str) -> Option<Self> {
        let v: Value = serde_json::from_str(text).ok()?;
        let p = v.get("Payload")?;
        Some(Self {
            body: STANDARD.decode(p.get("body")?.as_str()?).ok()?,
            integrated_time: p.get("integratedTime")?.as_i64()?,
            log_index: p.get("logIndex")?.as_i64()?,
            log_id: hex_bytes(p.get("logID")?.as_str()?),
            set: STANDARD
                .decode(v.get("SignedEntryTimestamp")?.as_str()?)
                .ok()?,
        })
    }

    /// The entries of a Sigstore bundle's `verificationMaterial.tlogEntries` with a promise.
    pub(crate) fn from_bundle(material: &Value) -> Vec<Self> {
        let entries = material.get("tlogEntries").and_then(Value::as_array);
        entries
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let number = |key: &str| -> Option<i64> {
                    let v = e.get(key)?;
                    v.as_i64().or_else(|| v.as_str()?.parse().ok())
                };
                Some(Self {
                    body: STANDARD
                        .decode(e.get("canonicalizedBody")?.as_str()?)
                        .ok()?,
                    integrated_time: number("integratedTime")?,
                    log_index: number("logIndex")?,
                    log_id: STANDARD.decode(e.pointer("/logId/keyId")?.as_str()?).ok()?,
                    set: STANDARD
                        .decode(
                            e.pointer("/inclusionPromise/signedEntryTimestamp")?
                                .as_str()?,
                        )
                        .ok()?,
                })
            })
            .collect()
    }

    /// What the log signed: the canonical JSON of the entry's body, time, log and index.
    fn signed_text(&self) -> String {
        let id: String = self.log_id.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            r#"{{"body":"{}","integratedTime":{},"logID":"{id}","logIndex":{}}}"#,
            STANDARD.encode(&self.body),
            self.integrated_time,
            self.log_index
        )
    }

    /// When the signature was logged, in seconds since the epoch, if a log key of `root`
    /// signed this promise and its entry is about `signed`; else why not.
    pub(crate) fn verify(&self, root: &TrustedRoot, signed: &Signed<'_>) -> Result<i64, String> {
        let at = self.vouched(root)?;
        if !entry_names(&self.body, signed) {
            return Err("its log entry is about another signature".into());
        }
        Ok(at)
    }

    /// When the entry was logged, if a log key of `root` signed this promise (whatever the
    /// entry is about).
    pub(crate) fn vouched(&self, root: &TrustedRoot) -> Result<i64, String> {
        let log = root
            .logs
            .iter()
            .find(|l| l.id == self.log_id)
            .ok_or("its log entry is from a log the trusted root does not name (or not with an ECDSA P-256 key)")?;
        let set = Signature::from_der(&self.set)
            .map_err(|_| "its signed entry timestamp is not a signature")?;
        log.key
            .verify(self.signed_text().as_bytes(), &set)
            .map_err(|_| "its signed entry timestamp does not verify with the log's key")?;
        if !log.valid.holds(self.integrated_time) {
            return Err("it was logged outside the log key's validity".into());
        }
        Ok(self.integrated_time)
    }
}

/// Whether a Rekor entry (`hashedrekord` or `dsse`) names this signature, certificate and
/// payload.
fn entry_names(body: &[u8], signed: &Signed<'_>) -> bool {
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    let payload_hash = Digest::sha256_of(signed.payload);
    let b64_is = |v: Option<&Value>, bytes: &[u8]| {
        v.and_then(Value::as_str)
            .and_then(|s| STANDARD.decode(s).ok())
            .is_some_and(|d| d == bytes)
    };
    let cert_is = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .and_then(|s| STANDARD.decode(s).ok())
            .and_then(|pem| pem_to_der(&String::from_utf8_lossy(&pem)).ok())
            .is_some_and(|der| der == signed.leaf)
    };
    let hash_is = |v: Option<&Value>| v.and_then(Value::as_str) == Some(payload_hash.encoded());
    let spec = body.get("spec");
    match body.get("kind").and_then(Value::as_str) {
        Some("hashedrekord") => {
            let spec = |p: &str| spec.and_then(|s| s.pointer(p));
            b64_is(spec("/signature/content"), signed.signature)
                && cert_is(spec("/signature/publicKey/content"))
                && hash_is(spec("/data/hash/value"))
        }
        Some("dsse") => {
            let signatures = spec
                .and_then(|s| s.get("signatures"))
                .and_then(Value::as_array);
            hash_is(spec.and_then(|s| s.pointer("/payloadHash/value")))
                && signatures.into_iter().flatten().any(|s| {
                    b64_is(s.get("signature"), signed.signature) && cert_is(s.get("verifier"))
                })
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn the_signed_text_is_canonical_json_with_sorted_keys() {
        let p = Promise {
            body: b"{}".to_vec(),
            integrated_time: 1,
            log_index: 2,
            log_id: vec![0xab, 0x01],
            set: Vec::new(),
        };
        assert_eq!(
            p.signed_text(),
            r#"{"body":"e30=","integratedTime":1,"logID":"ab01","logIndex":2}"#
        );
    }

    #[test]
    fn both_forms_of_a_promise_read_the_same() {
        let annotation = serde_json::json!({
            "SignedEntryTimestamp": "AQI=",
            "Payload": {"body": "e30=", "integratedTime": 5, "logIndex": 9, "logID": "ab01"},
        });
        let material = serde_json::json!({"tlogEntries": [{
            "logIndex": "9", "logId": {"keyId": "qwE="}, "integratedTime": "5",
            "inclusionPromise": {"signedEntryTimestamp": "AQI="}, "canonicalizedBody": "e30=",
        }]});
        let a = Promise::from_annotation(&annotation.to_string()).unwrap();
        assert_eq!(Promise::from_bundle(&material), vec![a]);
    }
}
