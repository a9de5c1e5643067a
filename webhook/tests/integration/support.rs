//! Test harness: a webhook on loopback with a generated CA, a kubelet-style
//! certificate directory, and a TLS client that trusts only that CA.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ambassador_webhook::admission::{Finding, Validate};
use ambassador_webhook::certs::{self, Generated};
use ambassador_webhook::metrics::Metrics;
use ambassador_webhook::server::{self, AppState, Limits, Readiness};
use ambassador_webhook::tls::{self, CertWatcher, ReloadingCert};
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "ambassador-webhook-test-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Generates a CA and a serving certificate for loopback.
pub fn generate_certs() -> Generated {
    certs::generate(&certs::Request {
        names: vec!["localhost".into(), "127.0.0.1".into()],
        valid_days: 1,
    })
    .unwrap()
}

/// Publishes `generated` into `dir` the way the kubelet updates a Secret volume:
/// files in a fresh `..<stamp>` directory, a `..data_tmp` symlink to it renamed
/// atomically over `..data`, and `tls.crt`/`tls.key` symlinks through `..data`.
pub fn kubelet_publish(dir: &Path, generated: &Generated) {
    static STAMP: AtomicU64 = AtomicU64::new(0);
    let stamp = format!(
        "..2026_01_01_00_00_{:02}.{}",
        STAMP.fetch_add(1, Ordering::Relaxed),
        std::process::id()
    );
    let data_dir = dir.join(&stamp);
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::write(data_dir.join("tls.crt"), &generated.cert_pem).unwrap();
    std::fs::write(data_dir.join("tls.key"), &generated.key_pem).unwrap();
    std::fs::write(data_dir.join("ca.crt"), &generated.ca_cert_pem).unwrap();
    let old = std::fs::read_link(dir.join("..data")).ok();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&stamp, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for name in ["tls.crt", "tls.key", "ca.crt"] {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
        }
    }
    if let Some(old) = old {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
}

/// Limits small enough that timeout tests finish quickly.
pub fn test_limits() -> Limits {
    Limits {
        max_body_bytes: 4 * 1024 * 1024,
        handshake_timeout: Duration::from_secs(1),
        header_read_timeout: Duration::from_secs(1),
        body_read_timeout: Duration::from_secs(1),
        max_connections: 512,
        shutdown_grace: Duration::from_secs(2),
    }
}

/// A running webhook.
pub struct TestServer {
    pub addr: SocketAddr,
    pub ca: Generated,
    pub dir: TempDir,
    pub metrics: Arc<Metrics>,
    pub readiness: Readiness,
    pub resolver: Arc<ReloadingCert>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _watcher: CertWatcher,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(TestValidator, test_limits()).await
    }

    pub async fn start_with(validator: impl Validate, limits: Limits) -> Self {
        tls::install_crypto_provider();
        let dir = TempDir::new("certs");
        let ca = generate_certs();
        kubelet_publish(dir.path(), &ca);
        let metrics = Arc::new(Metrics::new());
        let readiness = Readiness::new();
        let resolver = Arc::new(ReloadingCert::load(dir.path()).unwrap());
        let watcher = CertWatcher::spawn(
            Arc::clone(&resolver),
            Arc::clone(&metrics),
            Duration::from_secs(60),
        )
        .unwrap();
        let config = Arc::new(tls::server_config(Arc::clone(&resolver)).unwrap());
        let app = server::router(AppState {
            validator: Arc::new(validator),
            metrics: Arc::clone(&metrics),
            readiness: readiness.clone(),
            limits: limits.clone(),
        });
        let listener = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(
            listener,
            config,
            app,
            limits,
            Arc::clone(&metrics),
            async move {
                let _ = stopped.await;
            },
        ));
        TestServer {
            addr,
            ca,
            dir,
            metrics,
            readiness,
            resolver,
            stop: Some(stop),
            task: Some(task),
            _watcher: watcher,
        }
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("server stops within its grace period")
                .unwrap();
        }
    }

    /// A TLS client trusting only the CA the server started with.
    pub fn connector(&self) -> TlsConnector {
        connector_for(&self.ca.ca_cert_pem, &[b"http/1.1"])
    }

    pub async fn connect(&self) -> TlsStream<TcpStream> {
        connect_with(self.addr, &self.connector()).await.unwrap()
    }

    /// One request on a fresh HTTP/1.1 connection.
    pub async fn request(&self, method: &str, path: &str, body: Vec<u8>) -> Reply {
        let stream = self.connect().await;
        send(stream, method, path, body).await
    }

    pub async fn post_review(&self, review: &Value) -> Reply {
        self.request("POST", "/validate", serde_json::to_vec(review).unwrap())
            .await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn connector_for(ca_pem: &str, alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

pub async fn connect_with(
    addr: SocketAddr,
    connector: &TlsConnector,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await
}

/// The leaf certificate the server presented on `stream`.
pub fn peer_leaf(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// The DER of the leaf in a PEM chain.
pub fn leaf_der(pem: &str) -> Vec<u8> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one HTTP/1.1 request over an established TLS stream.
pub async fn send(stream: TlsStream<TcpStream>, method: &str, path: &str, body: Vec<u8>) -> Reply {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

/// An AdmissionReview of the shape the API server sends.
pub fn review(uid: &str, operation: &str, object: Value, old_object: Value) -> Value {
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("v1");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let reference = if object.is_null() {
        &old_object
    } else {
        &object
    };
    let name = reference
        .pointer("/metadata/name")
        .cloned()
        .unwrap_or(Value::Null);
    let namespace = reference
        .pointer("/metadata/namespace")
        .cloned()
        .unwrap_or(Value::Null);
    let kind = if kind.is_empty() {
        reference
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    } else {
        kind
    };
    let resource = format!("{}s", kind.to_lowercase());
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "requestResource": {"group": group, "version": version, "resource": resource},
            "name": name,
            "namespace": namespace,
            "operation": operation,
            "userInfo": {
                "username": "kubernetes-admin",
                "groups": ["kubeadm:cluster-admins", "system:authenticated"]
            },
            "object": object,
            "oldObject": old_object,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": if operation == "UPDATE" { "UpdateOptions" } else { "CreateOptions" }, "fieldManager": "kubectl-client-side-apply"}
        }
    })
}

pub fn mapping(version: &str, name: &str, prefix: &str) -> Value {
    json!({
        "apiVersion": format!("getambassador.io/{version}"),
        "kind": "Mapping",
        "metadata": {"name": name, "namespace": "default", "uid": "0b6a7f5e-1111-2222-3333-444455556666", "generation": 1},
        "spec": {"prefix": prefix, "service": "quote:80"}
    })
}

pub fn service(name: &str, annotation: Option<&str>) -> Value {
    let mut metadata = json!({"name": name, "namespace": "default"});
    if let Some(text) = annotation {
        metadata["annotations"] = json!({ "getambassador.io/config": text });
    }
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}
    })
}

/// A test-only stand-in for the compiler: reports a `prefix` that does not
/// start with `/` (with its line and column inside an annotation), warns about
/// `timout_ms`, and panics on an object named `panic` so containment can be tested.
pub struct TestValidator;

impl Validate for TestValidator {
    fn validate(&self, object: &Value) -> Vec<Finding> {
        if object.pointer("/metadata/name") == Some(&json!("panic")) {
            panic!("test validator asked to panic");
        }
        let mut findings = Vec::new();
        if let Some(text) = object
            .pointer("/metadata/annotations/getambassador.io~1config")
            .and_then(Value::as_str)
        {
            for (i, line) in text.lines().enumerate() {
                let trimmed = line.trim_start();
                let indent = line.len() - trimmed.len();
                if let Some(value) = trimmed.strip_prefix("prefix:") {
                    let value_trimmed = value.trim_start();
                    if !value_trimmed.starts_with('/') {
                        let column =
                            indent + "prefix:".len() + (value.len() - value_trimmed.len()) + 1;
                        findings.push(
                            Finding::error("E0101", "`prefix` must start with `/`")
                                .with_field("prefix")
                                .at(i as u32 + 1, column as u32),
                        );
                    }
                }
                if trimmed.starts_with("timout_ms:") {
                    findings.push(
                        Finding::warning(
                            "W0001",
                            "unknown field `timout_ms`; did you mean `timeout_ms`?",
                        )
                        .with_field("timout_ms")
                        .at(i as u32 + 1, indent as u32 + 1),
                    );
                }
            }
        }
        if let Some(spec) = object.get("spec") {
            if let Some(prefix) = spec.get("prefix").and_then(Value::as_str) {
                if !prefix.starts_with('/') {
                    findings.push(
                        Finding::error("E0101", "`prefix` must start with `/`")
                            .with_field("spec.prefix"),
                    );
                }
            }
            if spec.get("timout_ms").is_some() {
                findings.push(
                    Finding::warning(
                        "W0001",
                        "unknown field `timout_ms`; did you mean `timeout_ms`?",
                    )
                    .with_field("spec.timout_ms"),
                );
            }
        }
        findings
    }
}
