#![no_main]

//! cosign signatures as registries hand them over: a Sigstore bundle and a simple signing
//! payload, verified against a fixed key (never verified: the key's private half is unknown);
//! and a `--trusted-root` file (trusted_root.json or PEM), read without a panic.

use image_mirror_common::Digest;
use image_mirror_trust::{verify_bundle, verify_simple_signing, TrustedKeys, TrustedRoot};

const KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEJw+jobGf9zqgb/B+p0DS7tPUV8Gl
XuBaN8JNnu39h+DodrL31REv04P+7LAqvwZqsLVpCGH4lLabREtRGU2Axg==
-----END PUBLIC KEY-----";

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let keys = TrustedKeys::from_pems(&[KEY]).expect("the fixed key parses");
    let digest = Digest::sha256_of(b"image");
    assert!(verify_bundle(&keys, data, &digest).is_none());
    let _ = TrustedRoot::parse(&String::from_utf8_lossy(data));
    if let Some(split) = data.iter().position(|b| *b == 0) {
        let (payload, sig) = data.split_at(split);
        let sig = String::from_utf8_lossy(&sig[1..]);
        assert!(verify_simple_signing(&keys, payload, &sig, &digest).is_none());
    }
});
