//! TLS for the registry client: certificates verified by the platform verifier against the
//! system's certificate authorities, which are loaded at the first TLS handshake rather than
//! when the client is built.
//!
//! Loading them means reading every file of the system's certificate directory, several
//! milliseconds at each start of a short-lived `copy`, and a copy between plain-HTTP
//! registries (`--insecure-registry`) never needs them. Verification is the same as
//! reqwest's own: never switched off, TLS 1.2 and 1.3.
//!
//! ALPN offers HTTP/1.1 only. Blob transfers want a connection each (the per-host request
//! limit counts them), and over HTTP/2 eight concurrent streamed uploads to docker-registry
//! stalled for good once the shared connection window was used up (found by the TLS test
//! of `image-mirror copy`; hyper's HTTP/2 client against Go servers, hyperium/hyper#4003).

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, Error, SignatureScheme};
use rustls_platform_verifier::Verifier;

/// The TLS configuration of the registry client.
pub(crate) fn client_config() -> Result<rustls::ClientConfig, Error> {
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let verifier = LazyVerifier {
        provider: Arc::clone(&provider),
        verifier: OnceLock::new(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The platform verifier, made when a certificate is first to be checked.
#[derive(Debug)]
struct LazyVerifier {
    provider: Arc<CryptoProvider>,
    verifier: OnceLock<Result<Verifier, String>>,
}

impl LazyVerifier {
    fn verifier(&self) -> Result<&Verifier, Error> {
        let made = self
            .verifier
            .get_or_init(|| Verifier::new(Arc::clone(&self.provider)).map_err(|e| e.to_string()));
        made.as_ref().map_err(|e| {
            Error::General(format!("loading the system's certificate authorities: {e}"))
        })
    }
}

impl ServerCertVerifier for LazyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.verifier()?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.verifier()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.verifier()?.verify_tls13_signature(message, cert, dss)
    }

    /// The provider's schemes, which is what the platform verifier answers, without loading
    /// the certificate authorities for it.
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
