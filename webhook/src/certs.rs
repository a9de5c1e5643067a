//! Self-signed CA and serving certificate for local use and clusters without cert-manager.
//!
//! The output directory uses the key names of a `kubernetes.io/tls` Secret
//! (`tls.crt`, `tls.key`, `ca.crt`), so it can be mounted as the webhook's
//! `--tls-dir` directly, turned into a Secret with `kubectl create secret tls`,
//! or fed to the `self-signed` kustomize overlay. The CA's private key is never
//! written: nothing signs with it again, and a key that does not exist cannot leak.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// File holding the CA certificate (the webhook's `caBundle`).
pub const CA_FILE: &str = "ca.crt";

/// Failure to generate or write certificates.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// rcgen refused the parameters (for example an invalid DNS name).
    #[error("cannot generate certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// No DNS name or IP address was given.
    #[error("at least one --dns-name is required")]
    NoNames,
    /// Writing a file failed.
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// PEM texts of a freshly generated CA and serving certificate.
#[derive(Debug, Clone)]
pub struct Generated {
    pub ca_cert_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// What to put in the certificates.
#[derive(Debug, Clone)]
pub struct Request {
    /// Subject alternative names: DNS names or IP addresses (rcgen tells them apart).
    pub names: Vec<String>,
    /// Validity of both certificates from now, in days.
    pub valid_days: u32,
}

/// Generates a CA and a serving certificate for `request.names`, signed by it.
pub fn generate(request: &Request) -> Result<Generated, Error> {
    if request.names.is_empty() {
        return Err(Error::NoNames);
    }
    // Start slightly in the past: clocks in a cluster are rarely perfectly in step.
    let now = OffsetDateTime::now_utc();
    let not_before = now - Duration::minutes(5);
    let not_after = now + Duration::days(i64::from(request.valid_days));

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ambassador-webhook CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let mut params = CertificateParams::new(request.names.clone())?;
    params
        .distinguished_name
        .push(DnType::CommonName, request.names[0].clone());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before;
    params.not_after = not_after;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;

    Ok(Generated {
        ca_cert_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

impl Generated {
    /// Writes `ca.crt`, `tls.crt` and `tls.key` (mode 0600) into `dir`, creating it.
    pub fn write_to(&self, dir: &Path) -> Result<(), Error> {
        fs::create_dir_all(dir).map_err(|source| Error::Write {
            path: dir.to_owned(),
            source,
        })?;
        write_file(&dir.join(CA_FILE), &self.ca_cert_pem, false)?;
        write_file(&dir.join(crate::tls::CERT_FILE), &self.cert_pem, false)?;
        write_file(&dir.join(crate::tls::KEY_FILE), &self.key_pem, true)?;
        Ok(())
    }
}

fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), Error> {
    let err = |source| Error::Write {
        path: path.to_owned(),
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(err)?;
    file.write_all(contents.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)
}
