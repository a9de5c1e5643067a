//! TLS termination through the real pipeline and a real Envoy: Hosts with `tlsSecret`, the
//! certificates served to Envoy over SDS on the same ADS stream, picked by SNI; the
//! Route / Redirect / Reject matrix on TLS and cleartext (Emissary's `HostCRDDouble`); a
//! Host whose Secret is missing loses its TLS alone; a rotated certificate reaches new
//! handshakes while an open connection keeps working. Certificates are made at test time.

use std::sync::Arc;
use std::time::Duration;

use ambassador_e2e::backend::Backend;
use ambassador_e2e::http::Client;
use ambassador_e2e::poll;
use ambassador_e2e::stack::{options, Stack};
use ambassador_webhook::bootstrap::ApiType;
use ambassador_webhook::certs::{self, Generated, Request};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

fn cert(name: &str) -> Generated {
    certs::generate(&Request {
        names: vec![name.to_owned()],
        valid_days: 2,
    })
    .unwrap()
}

/// A `kubernetes.io/tls` Secret in `default`, with the PEM texts as `stringData`.
fn secret(name: &str, g: &Generated) -> String {
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: default}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(&g.cert_pem),
        indent(&g.key_pem)
    )
}

fn host(name: &str, hostname: &str, secret: &str, action: &str) -> String {
    format!(
        "---\napiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  hostname: {hostname}\n  tlsSecret: {{name: {secret}}}\n  requestPolicy: {{insecure: {{action: {action}}}}}\n"
    )
}

/// A root store trusting the CAs in these PEM texts.
fn roots<'a>(pems: impl IntoIterator<Item = &'a str>) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for pem in pems {
        for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
    }
    roots
}

fn connector(cas: &[&Generated]) -> TlsConnector {
    let roots = roots(cas.iter().map(|g| g.ca_cert_pem.as_str()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// A TLS connection to Envoy with `sni`, verified against the given CAs.
async fn tls(port: u16, sni: &str, c: &TlsConnector) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    c.connect(ServerName::try_from(sni.to_owned()).unwrap(), tcp)
        .await
}

/// The leaf certificate the server presented.
fn presented(s: &TlsStream<TcpStream>) -> Vec<u8> {
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn leaf_der(g: &Generated) -> Vec<u8> {
    CertificateDer::from_pem_slice(g.cert_pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// One keep-alive HTTP/1.1 GET on `s`: the status and the body.
async fn get(
    s: &mut TlsStream<TcpStream>,
    host: &str,
    path: &str,
) -> std::io::Result<(u16, String)> {
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // Reads until the headers and a body of `content-length` bytes are in (bounded).
    for _ in 0..1000 {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::other("read timed out"))??;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let status = text[9..12].parse().unwrap_or(0);
                return Ok((status, text[end + 4..end + 4 + len].to_string()));
            }
        }
    }
    Err(std::io::Error::other("incomplete response"))
}

async fn status_over_tls(port: u16, sni: &str, c: &TlsConnector, path: &str) -> String {
    match tls(port, sni, c).await {
        Ok(mut s) => match get(&mut s, sni, path).await {
            Ok((status, _)) => status.to_string(),
            Err(e) => format!("error: {e}"),
        },
        Err(e) => format!("handshake failed: {e}"),
    }
}

async fn cleartext(port: u16, host: &str, path: &str) -> String {
    let r = Client::new()
        .request(
            "GET",
            &format!("http://127.0.0.1:{port}{path}"),
            &[("host", host)],
        )
        .await
        .unwrap();
    let location = r
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("location"))
        .map(|(_, v)| format!(" {v}"))
        .unwrap_or_default();
    format!("{}{location}", r.status)
}

#[tokio::test]
async fn hosts_terminate_tls_with_certificates_over_sds() {
    let app = Backend::start("app").await.unwrap();
    let (a, b, a2) = (
        cert("a.example.com"),
        cert("b.example.com"),
        cert("a.example.com"),
    );
    let opts = options();
    let port = opts.lower.http_port;
    let config = |a_cert: &Generated| {
        vec![(
            "edge.yaml".to_string(),
            [
                format!(
                    "---\napiVersion: getambassador.io/v3alpha1\nkind: Listener\nmetadata: {{name: edge, namespace: default}}\nspec:\n  port: {port}\n  protocol: HTTPS\n  securityModel: XFP\n  hostBinding: {{namespace: {{from: ALL}}}}\n"
                ),
                host("a", "a.example.com", "a-cert", "Redirect")
                    + "  tls: {min_tls_version: v1.3}\n",
                host("b", "b.example.com", "b-cert", "Reject"),
                // Its Secret does not exist: its TLS is left out, and nothing else suffers.
                host("c", "c.example.com", "c-cert", "Route"),
                // Its Secret holds no certificate: the same.
                host("d", "d.example.com", "d-cert", "Route"),
                "---\napiVersion: v1\nkind: Secret\nmetadata: {name: d-cert, namespace: default}\ntype: kubernetes.io/tls\nstringData: {tls.crt: not a certificate, tls.key: not a key}\n".to_string(),
                secret("a-cert", a_cert),
                secret("b-cert", &b),
                format!(
                    "---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {{name: app, namespace: default}}\nspec:\n  hostname: \"*\"\n  prefix: /app/\n  rewrite: \"\"\n  service: \"{}\"\n",
                    app.addr()
                ),
            ]
            .concat(),
        )]
    };
    let (mut stack, report) = Stack::start_with(opts, config(&a), ApiType::Grpc)
        .await
        .unwrap();
    assert!(
        report.findings.iter().any(|f| f.code == "AMB417"),
        "the missing Secret is reported: {:#?}",
        report.findings
    );
    let errors: Vec<&str> = report.errors().map(|f| f.code).collect();
    assert_eq!(
        errors,
        ["AMB418"],
        "only the broken Secret: {:#?}",
        report.findings
    );
    let trust = connector(&[&a, &b, &a2]);

    // The right certificate per SNI.
    let s = tls(port, "a.example.com", &trust).await.unwrap();
    assert_eq!(presented(&s), leaf_der(&a));
    let s = tls(port, "b.example.com", &trust).await.unwrap();
    assert_eq!(presented(&s), leaf_der(&b));

    // HostCRDDouble's matrix: secure requests route on every Host; cleartext ones get the
    // Host's action (the 301 is per route: an unmapped path stays 404).
    let mut failures = Vec::new();
    let mut want = |what: &str, got: String, expected: &str| {
        if got != expected {
            failures.push(format!("{what}: expected {expected}, got {got}"));
        }
    };
    want(
        "https a",
        status_over_tls(port, "a.example.com", &trust, "/app/x").await,
        "200",
    );
    want(
        "https b (Reject)",
        status_over_tls(port, "b.example.com", &trust, "/app/x").await,
        "200",
    );
    want(
        "http a (Redirect)",
        cleartext(port, "a.example.com", "/app/x").await,
        "301 https://a.example.com/app/x",
    );
    want(
        "http a unmapped",
        cleartext(port, "a.example.com", "/nothing").await,
        "404",
    );
    want(
        "http b (Reject)",
        cleartext(port, "b.example.com", "/app/x").await,
        "404",
    );
    want(
        "http c (no certificate, Route)",
        cleartext(port, "c.example.com", "/app/x").await,
        "200",
    );
    want(
        "http d (broken certificate, Route)",
        cleartext(port, "d.example.com", "/app/x").await,
        "200",
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // `min_tls_version: v1.3` on `a`: a client that speaks only TLS 1.2 is refused there,
    // and served by `b`, which sets no version.
    let tls12 = {
        let roots = roots([a.ca_cert_pem.as_str(), b.ca_cert_pem.as_str()]);
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    };
    assert!(
        status_over_tls(port, "a.example.com", &tls12, "/app/x")
            .await
            .starts_with("handshake failed"),
        "a TLS 1.2 client reached a Host that requires TLS 1.3"
    );
    assert_eq!(
        status_over_tls(port, "b.example.com", &tls12, "/app/x").await,
        "200"
    );

    // Rotation: a connection opened with the old certificate keeps working; new handshakes
    // get the new one.
    let mut held = tls(port, "a.example.com", &trust).await.unwrap();
    assert_eq!(
        get(&mut held, "a.example.com", "/app/x").await.unwrap().0,
        200
    );
    let report = stack.apply(config(&a2)).await;
    let secrets: Vec<_> = report
        .changes
        .iter()
        .filter(|c| c.type_url.ends_with("Secret"))
        .collect();
    assert_eq!(secrets.len(), 1, "one Secret resent: {:#?}", report.changes);
    let rotated = poll(
        Duration::from_secs(10),
        Duration::from_millis(20),
        || async {
            let s = tls(port, "a.example.com", &trust).await.ok()?;
            (presented(&s) == leaf_der(&a2)).then_some(())
        },
    )
    .await;
    assert!(
        rotated.is_some(),
        "new handshakes never saw the rotated certificate"
    );
    assert_eq!(
        get(&mut held, "a.example.com", "/app/y").await.unwrap().0,
        200,
        "the connection opened before the rotation still serves"
    );
}

/// A CA and a certificate it signs for `name`, for a client (`client`) or a server.
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn pki(name: &str, client: bool) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} CA"));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn pem_secret(name: &str, crt: &str, key: &str) -> String {
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: default}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(crt),
        if key.is_empty() { "    \n".to_string() } else { indent(key) }
    )
}

/// A TLS backend on loopback that requires a client certificate from `client_ca` and answers
/// every request with the SNI it was sent and the subject it was shown.
async fn tls_backend(
    server: &Pki,
    client_ca: &str,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::server::WebPkiClientVerifier;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = roots([client_ca]);
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(server.cert_pem.as_bytes())
            .map(|c| c.unwrap())
            .collect();
    let key = PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                let (_, conn) = s.get_ref();
                let sni = conn.server_name().unwrap_or("-").to_owned();
                let client = conn.peer_certificates().map_or(0, <[_]>::len);
                let mut buf = vec![0u8; 8192];
                // One request per connection, bounded.
                let mut seen = Vec::new();
                for _ in 0..100 {
                    match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => {
                            seen.extend_from_slice(&buf[..n]);
                            if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                                break;
                            }
                        }
                        _ => return,
                    }
                }
                let body = format!("sni={sni} client_certs={client}");
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, task)
}

/// Mutual TLS: a Host with `ca_secret` and `cert_required` refuses a client without a
/// certificate and serves one with a certificate from that CA. Upstream TLS: a Mapping to
/// an `https://` service with a TLSContext sends its SNI and client certificate and checks
/// the backend's certificate against the context's CA.
#[tokio::test]
async fn client_certificates_and_upstream_tls() {
    let server = pki("m.example.com", false);
    let clients = pki("client.example.com", true);
    let backend = pki("backend.example.com", false);
    let upstream_client = pki("edge.example.com", true);
    let (backend_addr, backend_task) = tls_backend(&backend, &upstream_client.ca_pem).await;
    let opts = options();
    let port = opts.lower.http_port;
    let files = vec![(
        "mtls.yaml".to_string(),
        [
            format!(
                "---\napiVersion: getambassador.io/v3alpha1\nkind: Listener\nmetadata: {{name: edge, namespace: default}}\nspec:\n  port: {port}\n  protocol: HTTPS\n  securityModel: XFP\n  hostBinding: {{namespace: {{from: ALL}}}}\n"
            ),
            "---\napiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {name: m, namespace: default}\nspec:\n  hostname: m.example.com\n  tlsSecret: {name: m-cert}\n  tls: {ca_secret: client-ca, cert_required: true}\n  requestPolicy: {insecure: {action: Route}}\n".to_string(),
            pem_secret("m-cert", &server.cert_pem, &server.key_pem),
            pem_secret("client-ca", &clients.ca_pem, ""),
            // Upstream: the client certificate Envoy presents, and the CA it checks.
            pem_secret("edge-client", &upstream_client.cert_pem, &upstream_client.key_pem),
            pem_secret("backend-ca", &backend.ca_pem, ""),
            "---\napiVersion: getambassador.io/v3alpha1\nkind: TLSContext\nmetadata: {name: upstream, namespace: default}\nspec:\n  secret: edge-client\n  ca_secret: backend-ca\n  sni: backend.example.com\n".to_string(),
            format!(
                "---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {{name: up, namespace: default}}\nspec:\n  hostname: \"*\"\n  prefix: /up/\n  service: \"https://{backend_addr}\"\n  tls: upstream\n"
            ),
        ]
        .concat(),
    )];
    let (_stack, report) = Stack::start_with(opts, files, ApiType::Grpc).await.unwrap();
    assert_eq!(report.errors().count(), 0, "{:#?}", report.findings);

    let server_ca = Generated {
        ca_cert_pem: server.ca_pem.clone(),
        cert_pem: String::new(),
        key_pem: String::new(),
    };
    // Without a client certificate: refused (in TLS 1.3 the refusal arrives on first read).
    let anonymous = connector(&[&server_ca]);
    let refused = match tls(port, "m.example.com", &anonymous).await {
        Err(_) => true,
        Ok(mut s) => get(&mut s, "m.example.com", "/up/").await.is_err(),
    };
    assert!(refused, "a client without a certificate was served");

    // With one from the CA: served, and through to the TLS backend.
    let roots = roots([server.ca_pem.as_str()]);
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(clients.cert_pem.as_bytes())
            .map(|c| c.unwrap())
            .collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(clients.key_pem.as_bytes()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    let with_cert = TlsConnector::from(Arc::new(config));
    let mut s = tls(port, "m.example.com", &with_cert).await.unwrap();
    let (status, body) = get(&mut s, "m.example.com", "/up/").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "sni=backend.example.com client_certs=1");
    backend_task.abort();
}

/// A TCPMapping with `host` terminates TLS for that SNI with the certificate of the
/// TLSContext that lists it, as Emissary does, and the backend gets the decrypted bytes (a
/// passthrough would hand it the ClientHello); another SNI on the port, with nothing to
/// terminate it with, is left out (AMB313) and refused.
#[tokio::test]
async fn tcpmappings_with_host_terminate_tls() {
    let echo = ambassador_e2e::backend::TcpEcho::start().await.unwrap();
    let queue = cert("queue.example.com");
    let port = ambassador_e2e::free_port();
    let tcp = |name: &str, host: &str| {
        format!(
            "---\napiVersion: getambassador.io/v3alpha1\nkind: TCPMapping\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  port: {port}\n  host: {host}\n  service: \"{}\"\n",
            echo.addr()
        )
    };
    let config = vec![(
        "tcp.yaml".to_string(),
        [
            "---\napiVersion: getambassador.io/v3alpha1\nkind: TLSContext\nmetadata: {name: queue, namespace: default}\nspec:\n  hosts: [queue.example.com]\n  secret: queue-cert\n".to_string(),
            secret("queue-cert", &queue),
            tcp("queue", "queue.example.com"),
            tcp("lost", "lost.example.com"),
        ]
        .concat(),
    )];
    let (_stack, report) = Stack::start_with(options(), config, ApiType::Grpc)
        .await
        .unwrap();
    let errors: Vec<&str> = report.errors().map(|f| f.code).collect();
    assert_eq!(errors, ["AMB313"], "{:#?}", report.findings);

    let trust = connector(&[&queue]);
    // The listener may still be warming for its certificate: retried, bounded.
    let echoed = poll(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            let mut s = tls(port, "queue.example.com", &trust).await.ok()?;
            s.write_all(b"cleartext to the backend").await.ok()?;
            let mut buf = [0u8; 24];
            tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut buf))
                .await
                .ok()?
                .ok()?;
            Some((presented(&s), buf.to_vec()))
        },
    )
    .await;
    let ((leaf, bytes), _) = echoed.expect("no echo through the TLS TCPMapping");
    assert_eq!(leaf, leaf_der(&queue), "the TLSContext's certificate");
    assert_eq!(bytes, b"cleartext to the backend");

    // No chain takes the other SNI: the connection is refused.
    let lost = cert("lost.example.com");
    let refused = match tls(port, "lost.example.com", &connector(&[&lost])).await {
        Err(_) => true,
        Ok(mut s) => {
            let mut buf = [0u8; 1];
            !matches!(
                tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await,
                Ok(Ok(1))
            )
        }
    };
    assert!(refused, "a TCPMapping left out still took connections");
}
