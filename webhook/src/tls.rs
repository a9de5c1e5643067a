//! Serving certificate: loaded from a mounted Secret, swapped in place when it changes.
//!
//! The kubelet updates a Secret volume atomically: it writes the new files into
//! a fresh timestamped directory, points a `..data_tmp` symlink at it and renames
//! that over `..data`; `tls.crt` and `tls.key` are symlinks through `..data`.
//! We watch the directory (inotify sees the rename) and, as a safety net for
//! missed events, re-read it periodically. A reload builds a new
//! [`CertifiedKey`] and swaps it into the resolver: handshakes that start
//! afterwards see the new certificate, connections already established keep the
//! keys they negotiated, so in-flight requests finish undisturbed.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once, RwLock};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;

/// File names of a `kubernetes.io/tls` Secret.
pub const CERT_FILE: &str = "tls.crt";
/// Private key file in a `kubernetes.io/tls` Secret.
pub const KEY_FILE: &str = "tls.key";

/// Failure to load or serve the certificate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `tls.crt` holds no PEM certificate.
    #[error("{0} contains no PEM certificate")]
    NoCertificate(PathBuf),
    /// `tls.key` holds no usable PEM private key.
    #[error("{path} contains no usable PEM private key: {reason}")]
    BadKey { path: PathBuf, reason: String },
    /// The key is of a type rustls cannot sign with, or does not match the certificate.
    #[error("certificate and key in {dir} do not fit together: {source}")]
    Mismatch {
        dir: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// Building the rustls configuration failed.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The directory watcher could not be started.
    #[error("cannot watch {dir}: {source}")]
    Watch {
        dir: PathBuf,
        #[source]
        source: notify::Error,
    },
}

/// Installs ring as the process-wide rustls crypto provider, once. Other
/// libraries in the process (kube's client) then agree with the server on the
/// provider instead of panicking on an ambiguous choice.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another provider was installed first; ours are built with
        // an explicit provider anyway, so that is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Reads `tls.crt` and `tls.key` from `dir` into a checked [`CertifiedKey`].
pub fn load_certified_key(dir: &Path) -> Result<CertifiedKey, Error> {
    let cert_path = dir.join(CERT_FILE);
    let key_path = dir.join(KEY_FILE);
    let cert_pem = read(&cert_path)?;
    let key_pem = read(&key_path)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(Error::NoCertificate(cert_path));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| Error::BadKey {
        path: key_path.clone(),
        reason: e.to_string(),
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let certified =
        CertifiedKey::from_der(certs, key, &provider).map_err(|source| Error::Mismatch {
            dir: dir.to_owned(),
            source,
        })?;
    Ok(certified)
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

/// A [`ResolvesServerCert`] whose certificate can be replaced while serving.
pub struct ReloadingCert {
    dir: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("dir", &self.dir)
            .finish()
    }
}

impl ReloadingCert {
    /// Loads the certificate in `dir`; fails if there is none, so a pod with a
    /// missing Secret crashes loudly instead of serving handshake errors.
    pub fn load(dir: impl Into<PathBuf>) -> Result<Self, Error> {
        let dir = dir.into();
        let key = load_certified_key(&dir)?;
        Ok(ReloadingCert {
            dir,
            current: RwLock::new(Arc::new(key)),
        })
    }

    /// The watched directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Re-reads the directory. Returns `Ok(true)` when a different certificate
    /// was swapped in, `Ok(false)` when nothing changed. On error the current
    /// certificate stays: a half-written update must not take the server down.
    pub fn reload(&self) -> Result<bool, Error> {
        let fresh = load_certified_key(&self.dir)?;
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        // The key must match the certificate (checked on load), so equal chains mean
        // an equal key.
        if current.cert == fresh.cert {
            return Ok(false);
        }
        *current = Arc::new(fresh);
        Ok(true)
    }

    /// The certificate chain new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// rustls server configuration: TLS 1.2 and 1.3 only, ring, ALPN h2 and http/1.1.
pub fn server_config(resolver: Arc<ReloadingCert>) -> Result<rustls::ServerConfig, Error> {
    install_crypto_provider();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Watches the certificate directory and reloads on change until dropped.
pub struct CertWatcher {
    // Dropping the notify watcher stops inotify; the task ends when its channel closes.
    _watcher: notify::RecommendedWatcher,
    task: JoinHandle<()>,
}

impl Drop for CertWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CertWatcher {
    /// Starts watching `resolver.dir()`. `poll` is the safety-net interval.
    /// Must be called inside a tokio runtime.
    pub fn spawn(
        resolver: Arc<ReloadingCert>,
        metrics: Arc<Metrics>,
        poll: Duration,
    ) -> Result<Self, Error> {
        let (tx, mut rx) = mpsc::channel::<()>(1);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                // Reading the certificate is an event too: taking it as a change would
                // reload without end.
                if event.is_ok_and(|e| crate::fsevents::may_change(&e.kind)) {
                    // A full channel already holds a wake-up; dropping this one is fine.
                    let _ = tx.try_send(());
                }
            })
            .map_err(|source| Error::Watch {
                dir: resolver.dir().to_owned(),
                source,
            })?;
        watcher
            .watch(resolver.dir(), RecursiveMode::NonRecursive)
            .map_err(|source| Error::Watch {
                dir: resolver.dir().to_owned(),
                source,
            })?;

        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(poll);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    woke = rx.recv() => {
                        if woke.is_none() {
                            return;
                        }
                        // The kubelet's swap is several filesystem events in a row;
                        // let them settle, then read once.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        while rx.try_recv().is_ok() {}
                    }
                    _ = tick.tick() => {}
                }
                let dir = resolver.dir().display().to_string();
                match resolver.reload() {
                    Ok(true) => {
                        metrics.observe_tls_reload(true);
                        tracing::info!(dir, "serving certificate reloaded");
                    }
                    Ok(false) => {}
                    Err(error) => {
                        metrics.observe_tls_reload(false);
                        tracing::warn!(dir, %error, "serving certificate not reloaded; keeping the current one");
                    }
                }
            }
        });
        Ok(CertWatcher {
            _watcher: watcher,
            task,
        })
    }
}
