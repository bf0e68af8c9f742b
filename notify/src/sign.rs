//! The signature of a notice's body, as GitHub signs its webhooks: an HMAC-SHA256 of the exact
//! bytes sent, keyed with the shared secret (`--notify-secret`), in the header
//! `X-Image-Mirror-Signature-256: sha256=<hex>`. The receiver computes the same over the body it
//! read and compares in constant time (docs/operations.md has a snippet).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Image-Mirror-Signature-256";

/// `sha256=<hex HMAC-SHA256 of body keyed with secret>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // An HMAC takes a key of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_githubs_documented_example() {
        // docs.github.com, "Validating webhook deliveries": secret "It's a Secret to
        // Everybody", payload "Hello, World!".
        assert_eq!(
            signature(b"It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }
}
