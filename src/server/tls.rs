//! TLS: the server certificate and rustls config (SPEC §3.1).
//!
//! TLS 1.2+ (or 1.3 only), ALPN `h2` and `http/1.1`, aws-lc-rs as the crypto
//! provider. PEM is parsed with `rustls::pki_types::pem::PemObject`. A bad
//! certificate or key is an error naming the file, never a panic. For a first
//! run, `self_signed_if_missing` creates a localhost certificate and key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{self, TlsVersion};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read certificate chain: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("{path}: cannot read private key (PEM PKCS#8, PKCS#1 or SEC1 expected): {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("{cert} and {key}: {reason}")]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("{path}: cannot create self-signed certificate: {reason}")]
    SelfSigned { path: PathBuf, reason: String },
}

/// A ready rustls config and what the metrics say about its certificate.
pub struct Certified {
    pub config: Arc<rustls::ServerConfig>,
    /// The leaf certificate's notAfter, as a Unix timestamp.
    pub not_after: i64,
}

/// Loads the certificate and key of `tls` (creating them first if allowed and absent).
pub fn load(tls: &config::Tls) -> Result<Certified, TlsError> {
    if tls.self_signed_if_missing && (!tls.cert.exists() || !tls.key.exists()) {
        create_self_signed(&tls.cert, &tls.key)?;
        tracing::warn!(
            cert = %tls.cert.display(),
            key = %tls.key.display(),
            "created a self-signed certificate for localhost (tls.self_signed_if_missing): \
             browsers will warn; use a real certificate in production"
        );
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| TlsError::Cert {
            path: tls.cert.clone(),
            reason: e.to_string(),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::Cert {
            path: tls.cert.clone(),
            reason: "no CERTIFICATE block found".into(),
        });
    };
    let not_after = x509_parser::parse_x509_certificate(leaf)
        .map(|(_, cert)| cert.validity().not_after.timestamp())
        .map_err(|e| TlsError::Cert {
            path: tls.cert.clone(),
            reason: format!("not a valid X.509 certificate: {e}"),
        })?;
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| TlsError::Key {
        path: tls.key.clone(),
        reason: e.to_string(),
    })?;

    let versions: &[&rustls::SupportedProtocolVersion] = match tls.min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let pair_err = |reason: String| TlsError::Pair {
        cert: tls.cert.clone(),
        key: tls.key.clone(),
        reason,
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| pair_err(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            pair_err(format!(
                "certificate and key do not form a usable pair: {e}"
            ))
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Certified {
        config: Arc::new(config),
        not_after,
    })
}

/// Writes a self-signed certificate for `localhost`, `127.0.0.1` and `::1`;
/// the key file is created with mode 0600.
pub fn create_self_signed(cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let err = |path: &Path, reason: String| TlsError::SelfSigned {
        path: path.to_owned(),
        reason,
    };
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let certified =
        rcgen::generate_simple_self_signed(names).map_err(|e| err(cert_path, e.to_string()))?;
    for path in [cert_path, key_path] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(path, e.to_string()))?;
        }
    }
    crate::files::write_private(key_path, certified.signing_key.serialize_pem().as_bytes())
        .map_err(|e| err(key_path, e.to_string()))?;
    std::fs::write(cert_path, certified.cert.pem()).map_err(|e| err(cert_path, e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(dir: &Path, self_signed: bool) -> config::Tls {
        config::Tls {
            cert: dir.join("c.pem"),
            key: dir.join("k.pem"),
            min_version: TlsVersion::V1_2,
            hsts: None,
            self_signed_if_missing: self_signed,
        }
    }

    #[test]
    fn self_signed_certificate_is_created_and_loads() {
        let dir = tempfile::tempdir().expect("temp dir");
        let certified = load(&tls(dir.path(), true)).expect("self-signed certificate loads");
        assert!(certified.not_after > 1_700_000_000);
        assert_eq!(certified.config.alpn_protocols[0], b"h2");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("k.pem"))
                .expect("key file exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn missing_certificate_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = load(&tls(dir.path(), false))
            .err()
            .expect("a missing certificate is an error")
            .to_string();
        assert!(err.contains("c.pem"), "{err}");
    }

    #[test]
    fn garbage_key_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("temp dir");
        load(&tls(dir.path(), true)).expect("self-signed certificate loads");
        std::fs::write(
            dir.path().join("k.pem"),
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .expect("overwrite the key");
        assert!(load(&tls(dir.path(), false)).is_err());
    }
}
