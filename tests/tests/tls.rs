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

fn connector(cas: &[&Generated]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for g in cas {
        for c in CertificateDer::pem_slice_iter(g.ca_cert_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
    }
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
                host("a", "a.example.com", "a-cert", "Redirect"),
                host("b", "b.example.com", "b-cert", "Reject"),
                // Its Secret does not exist: its TLS is left out, and nothing else suffers.
                host("c", "c.example.com", "c-cert", "Route"),
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
    assert_eq!(report.errors().count(), 0, "{:#?}", report.findings);
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
    assert!(failures.is_empty(), "{}", failures.join("\n"));

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
