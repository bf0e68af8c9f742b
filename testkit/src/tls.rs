//! A certificate authority of its own per test, made with the `openssl` command line: a CA
//! certificate and a server certificate for `127.0.0.1` and `localhost` signed by it, for
//! registries served over TLS.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A test CA and one server certificate, as PEM files in a folder.
pub struct TestCa {
    /// The CA certificate (what a client must trust).
    pub ca_cert: PathBuf,
    /// The server certificate, signed by the CA.
    pub server_cert: PathBuf,
    /// The server certificate's private key.
    pub server_key: PathBuf,
}

impl TestCa {
    /// Makes the CA and the server certificate in `dir`; panics when openssl fails.
    pub fn new(dir: &Path) -> Self {
        let path = |name: &str| dir.join(name);
        let ca = Self {
            ca_cert: path("ca.pem"),
            server_cert: path("server.pem"),
            server_key: path("server.key"),
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            dir,
            &[
                &[
                    "req",
                    "-x509",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=image-mirror test CA",
                ],
                &ec[..],
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            ]
            .concat(),
        );
        openssl(
            dir,
            &[
                &["req", "-subj", "/CN=127.0.0.1"],
                &ec[..],
                &["-keyout", "server.key", "-out", "server.csr"],
            ]
            .concat(),
        );
        std::fs::write(
            path("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write the certificate extensions");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
        );
        ca
    }
}

/// Runs the `openssl` command line in `dir`; panics, with what it said, when it fails.
pub(crate) fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs (install the openssl package)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
