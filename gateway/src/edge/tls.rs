//! TLS for the customer listeners: loading certificates, choosing one by SNI,
//! swapping the set on reload without touching open connections, and the
//! self-signed development certificate. Never logs or returns key material.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::model::Certificate;

/// Why a certificate could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read certificate file {0}: {1}")]
    CertFile(PathBuf, String),
    #[error("no PEM certificate found in {0}")]
    NoCert(PathBuf),
    #[error("cannot read private key {0}: {1}")]
    KeyFile(PathBuf, String),
    #[error("private key in {0} is of an unsupported type")]
    KeyType(PathBuf),
    #[error("private key {key} does not belong to certificate {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("cannot create development certificate in {0}: {1}")]
    DevCert(PathBuf, String),
}

/// Loads a PEM chain and its private key, checking that they belong together.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError::CertFile(cert.into(), e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::CertFile(cert.into(), e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::NoCert(cert.into()));
    }
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsError::KeyFile(key.into(), e.to_string()))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&der)
        .map_err(|_| TlsError::KeyType(key.into()))?;
    let ck = CertifiedKey::new(chain, signer);
    ck.keys_match().map_err(|_| TlsError::Mismatch {
        cert: cert.into(),
        key: key.into(),
    })?;
    Ok(ck)
}

/// DNS names in a certificate's subjectAltName (lower-cased).
fn dns_names(ck: &CertifiedKey) -> Vec<String> {
    use x509_parser::prelude::*;
    let Some(leaf) = ck.cert.first() else {
        return Vec::new();
    };
    let Ok((_, cert)) = X509Certificate::from_der(leaf.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// The certificates of one listener, by server name.
#[derive(Debug)]
pub struct CertTable {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the part after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl CertTable {
    /// Builds the table; names come from config, or from the certificate's SANs.
    /// The first certificate answers clients without SNI or with unknown names.
    pub fn build(certs: &[Certificate]) -> Result<Self, TlsError> {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut default = None;
        for c in certs {
            let ck = Arc::new(load_certified_key(&c.cert, &c.key)?);
            let names = if c.server_names.is_empty() {
                dns_names(&ck)
            } else {
                c.server_names.clone()
            };
            for n in names {
                match n.strip_prefix("*.") {
                    Some(rest) => wildcard
                        .entry(rest.to_string())
                        .or_insert_with(|| ck.clone()),
                    None => exact.entry(n).or_insert_with(|| ck.clone()),
                };
            }
            default.get_or_insert(ck);
        }
        let default = default
            .ok_or_else(|| TlsError::NoCert(PathBuf::from("(no certificate configured)")))?;
        Ok(CertTable {
            exact,
            wildcard,
            default,
        })
    }

    /// The certificate for `server_name` (exact, then wildcard, then default).
    pub fn lookup(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = server_name else {
            return self.default.clone();
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(ck) = self.exact.get(&name) {
            return ck.clone();
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(ck) = self.wildcard.get(parent) {
                return ck.clone();
            }
        }
        self.default.clone()
    }
}

/// SNI certificate resolver whose table is replaced atomically on reload.
#[derive(Debug)]
pub struct SniResolver {
    table: ArcSwap<CertTable>,
}

impl SniResolver {
    pub fn new(table: CertTable) -> Self {
        SniResolver {
            table: ArcSwap::from_pointee(table),
        }
    }

    /// New handshakes use `table`; established connections are untouched.
    pub fn replace(&self, table: CertTable) {
        self.table.store(Arc::new(table));
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.table.load().lookup(hello.server_name()))
    }
}

/// The certificates a TLS listener serves: those configured or, when none
/// are, a self-signed development certificate created once in `state_dir`.
pub fn listener_certificates(
    configured: &[Certificate],
    state_dir: &Path,
) -> Result<Vec<Certificate>, TlsError> {
    if !configured.is_empty() {
        return Ok(configured.to_vec());
    }
    let cert = state_dir.join("dev-cert.pem");
    let key = state_dir.join("dev-key.pem");
    if !(cert.is_file() && key.is_file()) {
        create_dev_certificate(&cert, &key)?;
        tracing::warn!(
            cert = %cert.display(),
            "no TLS certificate configured: created a self-signed development certificate; browsers will warn"
        );
    }
    Ok(vec![Certificate {
        cert,
        key,
        server_names: Vec::new(),
    }])
}

fn create_dev_certificate(cert: &Path, key: &Path) -> Result<(), TlsError> {
    let dir = cert.parent().unwrap_or(Path::new("."));
    let fail = |e: String| TlsError::DevCert(dir.to_path_buf(), e);
    std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let ck = rcgen::generate_simple_self_signed(names).map_err(|e| fail(e.to_string()))?;
    write_private(key, ck.signing_key.serialize_pem().as_bytes())
        .map_err(|e| fail(e.to_string()))?;
    std::fs::write(cert, ck.cert.pem()).map_err(|e| fail(e.to_string()))?;
    Ok(())
}

/// Writes a file readable by the owner only.
pub(crate) fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

/// Parses a PEM CA bundle into the form Pingora's upstream connector takes.
pub fn load_ca(path: &Path) -> Result<Arc<pingora_core::protocols::tls::CaType>, TlsError> {
    use pingora_core::utils::tls::{parse_x509, WrappedX509};
    let certs: Vec<WrappedX509> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::CertFile(path.into(), e.to_string()))?
        .map(|c| c.map(|c| WrappedX509::new(c.to_vec(), parse_x509)))
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::CertFile(path.into(), e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCert(path.into()));
    }
    Ok(Arc::from(certs.into_boxed_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_for(dir: &Path, name: &str) -> Certificate {
        let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
        Certificate {
            cert,
            key,
            server_names: vec![],
        }
    }

    #[test]
    fn picks_by_sni_with_wildcards_and_default() {
        let dir = tempfile::tempdir().unwrap();
        let a = cert_for(dir.path(), "shop.test");
        let b = cert_for(dir.path(), "*.brand.test");
        let t = CertTable::build(&[a, b]).unwrap();
        let shop = t.lookup(Some("shop.test"));
        let brand = t.lookup(Some("Loyalty.Brand.test"));
        assert!(!Arc::ptr_eq(&shop, &brand));
        assert!(Arc::ptr_eq(&t.lookup(None), &shop));
        assert!(Arc::ptr_eq(&t.lookup(Some("other.test")), &shop));
        // A wildcard covers exactly one label.
        assert!(Arc::ptr_eq(&t.lookup(Some("a.b.brand.test")), &shop));
    }

    #[test]
    fn mismatched_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = cert_for(dir.path(), "a.test");
        let b = cert_for(dir.path(), "b.test");
        let err = load_certified_key(&a.cert, &b.key).unwrap_err();
        assert!(matches!(err, TlsError::Mismatch { .. }), "{err}");
    }
}
