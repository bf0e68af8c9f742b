//! TLS before a plain-HTTP front or registry: a terminator that takes TLS connections with the
//! test CA's server certificate and passes their bytes to `upstream` unchanged, for clients
//! that speak only HTTPS (ocync) in front of the testkit's fronts. The registry behind must
//! answer relative `Location`s (`RegistryOptions::relative_urls`), since it sees plain HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::tls::TestCa;

/// A TLS terminator on 127.0.0.1 passing connections to a plain upstream.
pub struct TlsFront {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TlsFront {
    /// Terminates TLS (`ca`'s server certificate) for `upstream` (`HOST:PORT`, plain).
    pub fn start(upstream: &str, ca: &TestCa) -> Self {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&ca.server_cert)
            .expect("the server certificate")
            .collect::<Result<_, _>>()
            .expect("the server certificate");
        let key = PrivateKeyDer::from_pem_file(&ca.server_key).expect("the server key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("the server certificate and key");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the TLS front");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("the TLS front's address");
        let upstream = upstream.to_owned();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("the TLS front's runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("tokio listener");
                tokio::select! {
                    _ = stopped => {}
                    () = accept_loop(listener, acceptor, upstream) => {}
                }
            });
            rt.shutdown_background();
        });
        Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

async fn accept_loop(listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor, upstream: String) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let Ok(mut tls) = acceptor.accept(stream).await else {
                return;
            };
            let Ok(mut plain) = TcpStream::connect(&upstream).await else {
                return;
            };
            let _ = plain.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
        });
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
