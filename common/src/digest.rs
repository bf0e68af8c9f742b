//! Content digests (`algorithm:encoded`), as the OCI image spec defines them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// Why a string is not a valid digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest {input:?}: {reason}")]
pub struct DigestError {
    input: String,
    reason: &'static str,
}

/// A content digest such as `sha256:9f86d0…`.
///
/// The algorithm follows the OCI grammar `[a-z0-9]+([+._-][a-z0-9]+)*`; the encoded part is
/// lowercase hex. The registered algorithms have fixed lengths: 64 hex digits for `sha256`,
/// 128 for `sha512`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// The sha256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Self {
        Self::from_sha256_bytes(&Sha256::digest(bytes))
    }

    /// A sha256 digest from the 32 raw bytes of a finished hash.
    pub fn from_sha256_bytes(hash: &[u8]) -> Self {
        let mut s = String::with_capacity(7 + hash.len() * 2);
        s.push_str("sha256:");
        for b in hash {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        Self(s)
    }

    /// The algorithm part, such as `sha256`.
    pub fn algorithm(&self) -> &str {
        self.0.split_once(':').map_or("", |(a, _)| a)
    }

    /// The encoded (hex) part.
    pub fn encoded(&self) -> &str {
        self.0.split_once(':').map_or("", |(_, e)| e)
    }

    /// The whole digest as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| DigestError {
            input: s.to_owned(),
            reason,
        };
        let (algorithm, encoded) = s
            .split_once(':')
            .ok_or_else(|| err("expected algorithm:hex"))?;
        if !valid_algorithm(algorithm) {
            return Err(err("algorithm must match [a-z0-9]+([+._-][a-z0-9]+)*"));
        }
        if encoded.is_empty()
            || !encoded
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(err("encoded part must be lowercase hex"));
        }
        let expected_len = match algorithm {
            "sha256" => Some(64),
            "sha512" => Some(128),
            _ => None,
        };
        if expected_len.is_some_and(|n| n != encoded.len()) {
            return Err(err("wrong length for the algorithm"));
        }
        Ok(Self(s.to_owned()))
    }
}

fn valid_algorithm(a: &str) -> bool {
    // [a-z0-9]+([+._-][a-z0-9]+)*
    let bytes = a.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    let mut prev_sep = true;
    for &b in bytes {
        let alnum = b.is_ascii_lowercase() || b.is_ascii_digit();
        let sep = matches!(b, b'+' | b'.' | b'_' | b'-');
        if alnum {
            prev_sep = false;
        } else if sep && !prev_sep {
            prev_sep = true;
        } else {
            return false;
        }
    }
    !prev_sep
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_input() {
        let d = Digest::sha256_of(b"abc");
        assert_eq!(
            d.as_str(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.algorithm(), "sha256");
        assert_eq!(d.as_str().parse::<Digest>().unwrap(), d);
    }

    #[test]
    fn rejects_malformed_digests() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            ":abc",
            "sha256:ABCDEF",
            "sha256:abc",
            "SHA256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "sha256+:00",
            "sha512:00",
            "sha256:zz7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?} accepted");
        }
        assert!("multihash+base58:0a1b".parse::<Digest>().is_ok());
    }
}
