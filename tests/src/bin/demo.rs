//! The demo: `examples/demo/` served to a real Envoy, requests through it, a canary moved by editing a file, then everything stops.
//!
//! `cargo run -p ambassador-e2e --bin demo [-- DIR]` (default `examples/demo`). Loopback
//! only: the backends, the publisher and Envoy listen on 127.0.0.1, on free ports. The
//! manifests are copied to a temporary directory, next to an `endpoints.yaml` that gives
//! the demo's Services the addresses of its loopback backends; the publisher follows that
//! directory exactly as `ambassador-webhook publish --dir` does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ambassador_e2e::backend::{Backend, Echo};
use ambassador_e2e::envoy::Envoy;
use ambassador_e2e::free_port;
use ambassador_e2e::http::{Client, Response};
use ambassador_e2e::stack::{serve, NODE};
use ambassador_webhook::bootstrap::Bootstrap;
use ambassador_webhook::certs;
use ambassador_webhook::pipeline::dir::DirFeed;
use ambassador_webhook::pipeline::{follow, Feed, Pipeline, PipelineOptions};

/// The whole demo must finish within this.
const BUDGET: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/demo"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(async { tokio::time::timeout(BUDGET, demo(&dir)).await }) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("demo did not finish within {BUDGET:?}");
            ExitCode::FAILURE
        }
    }
}

type Error = Box<dyn std::error::Error>;

/// The Host the demo serves over TLS.
const SECURE_HOST: &str = "secure.demo.example.com";

/// A TLS Host with its Secret (insecure requests redirected to https, Emissary's default),
/// and a catch-all Host that routes cleartext.
fn tls_manifests(cert: &certs::Generated) -> String {
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    format!(
        "# Written by the demo: a certificate made at start.\n---\napiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {{name: secure, namespace: demo}}\nspec:\n  hostname: {SECURE_HOST}\n  tlsSecret: {{name: secure-cert}}\n---\napiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {{name: everything-else, namespace: demo}}\nspec:\n  hostname: \"*\"\n  requestPolicy: {{insecure: {{action: Route}}}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: secure-cert, namespace: demo}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(&cert.cert_pem),
        indent(&cert.key_pem)
    )
}

/// One HTTPS GET through Envoy with SNI [`SECURE_HOST`], trusting the demo's CA: the name
/// the served certificate was issued for, and the status line.
async fn https_get(
    port: u16,
    cert: &certs::Generated,
    path: &str,
) -> Result<(String, String), Error> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(cert.ca_cert_pem.as_bytes()) {
        roots.add(c?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut s = connector
        .connect(ServerName::try_from(SECURE_HOST)?, tcp)
        .await?;
    // The handshake verified the certificate against the CA and the name.
    let subject = SECURE_HOST.to_owned();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: {SECURE_HOST}\r\nconnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await??;
    let text = String::from_utf8_lossy(&out);
    let status = text.lines().next().unwrap_or_default().to_owned();
    let backend = text
        .split("\r\n\r\n")
        .nth(1)
        .and_then(|b| serde_json::from_str::<Echo>(b).ok())
        .map_or_else(String::new, |e| format!(" from {}", e.backend));
    Ok((subject, format!("{status}{backend}")))
}

fn endpoints(services: &[(&str, &Backend)]) -> String {
    let mut out = String::from("# Written by the demo: the loopback backends it started.\n");
    for (name, backend) in services {
        out += &format!(
            "---\napiVersion: v1\nkind: Endpoints\nmetadata:\n  name: {name}\n  namespace: demo\nsubsets:\n- addresses:\n  - ip: {}\n  ports:\n  - name: http\n    port: {}\n",
            backend.addr().ip(),
            backend.addr().port()
        );
    }
    out
}

fn who(r: &Response) -> String {
    match r
        .json()
        .ok()
        .and_then(|v| serde_json::from_value::<Echo>(v).ok())
    {
        Some(e) => format!("{} saw {} {}", e.backend, e.method, e.path),
        None => match r.header("location") {
            Some(l) => format!("{} redirect to {l}", r.status),
            None => format!("{} {}", r.status, r.text().trim()),
        },
    }
}

async fn demo(source: &Path) -> Result<(), Error> {
    let quote = Backend::start("quote").await?;
    let quote_v2 = Backend::start("quote-v2").await?;
    let echo = Backend::start("echo").await?;
    let work = tempfile::tempdir()?;
    for entry in std::fs::read_dir(source)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(
                &path,
                work.path().join(path.file_name().unwrap_or_default()),
            )?;
        }
    }
    std::fs::write(
        work.path().join("endpoints.yaml"),
        endpoints(&[("quote", &quote), ("quote-v2", &quote_v2), ("echo", &echo)]),
    )?;
    // HTTPS: a Host for `secure.demo.example.com` with a certificate made now, and a Host for
    // every other name that routes cleartext, as the demo's other requests come as
    // `127.0.0.1`.
    let cert = certs::generate(&certs::Request {
        names: vec![SECURE_HOST.to_owned()],
        valid_days: 1,
    })?;
    std::fs::write(work.path().join("tls.yaml"), tls_manifests(&cert))?;

    let http_port = free_port();
    let https_port = free_port();
    let options = PipelineOptions::default()
        .listen("127.0.0.1", http_port)
        .https_port(https_port);
    let (mut pipeline, snapshots) = Pipeline::new(options);
    let mut feed = DirFeed::new(
        work.path(),
        Duration::from_millis(100),
        Duration::from_millis(20),
    );
    let first = pipeline.update(feed.next().await?);
    println!(
        "compiled {} files from {}: {} clusters, {} routes configuration(s); findings:",
        first.files_read,
        source.display(),
        first.counts[0].1,
        first.counts[3].1
    );
    for f in &first.findings {
        println!("  {f}");
    }
    let reloads = tokio::spawn(async move {
        let _ = follow(&mut pipeline, &mut feed, |r| {
            if r.published {
                println!(
                    "  reloaded: {} file(s) read again, {} resource(s) changed, {:.2} ms",
                    r.files_read,
                    r.changes.len(),
                    r.timings.total.as_secs_f64() * 1000.0
                );
            }
        })
        .await;
    });

    let (_publisher, ads, _stop, _task) = serve(snapshots).await?;
    let bootstrap = Bootstrap::new(NODE, "127.0.0.1", ads.port(), free_port());
    let started = Instant::now();
    let envoy = Envoy::start(&bootstrap).await?;
    println!(
        "envoy is ready after {:?}; publisher on {ads}, envoy on 127.0.0.1:{http_port}",
        started.elapsed()
    );

    let http = Client::new();
    let url = |path: &str| format!("http://127.0.0.1:{http_port}{path}");
    for (path, headers) in [
        ("/quote/today", vec![]),
        ("/echo/hello", vec![]),
        ("/echo/hello", vec![("x-beta", "yes")]),
        ("/old-docs/install", vec![]),
        ("/broken/", vec![]),
    ] {
        let r = http.request("GET", &url(path), &headers).await?;
        println!("GET {path} {headers:?} -> {}", who(&r));
    }
    let split = |http: Client, n: usize| async move {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for _ in 0..n {
            let r = http.get(&url("/quote/")).await?;
            let name = r
                .json()
                .ok()
                .and_then(|v| serde_json::from_value::<Echo>(v).ok())
                .map_or_else(|| r.status.to_string(), |e| e.backend);
            *counts.entry(name).or_default() += 1;
        }
        Ok::<_, Error>(counts)
    };
    let r = http
        .request("GET", &url("/quote/today"), &[("host", SECURE_HOST)])
        .await?;
    println!("GET http://{SECURE_HOST}/quote/today -> {}", who(&r));
    let (subject, status) = https_get(https_port, &cert, "/quote/today").await?;
    println!(
        "GET https://{SECURE_HOST}/quote/today (SNI {SECURE_HOST}, port {https_port}) -> {status}, certificate served for {subject}"
    );
    println!(
        "100 requests to /quote/ (canary at 20 %): {:?}",
        split(http.clone(), 100).await?
    );

    println!("editing quote-v2.yaml on disk: weight 20 -> 100");
    let canary = work.path().join("quote-v2.yaml");
    let text = std::fs::read_to_string(&canary)?.replace("weight: 20", "weight: 100");
    let edited = Instant::now();
    std::fs::write(&canary, text)?;
    let deadline = edited + Duration::from_secs(10);
    loop {
        let counts = split(http.clone(), 10).await?;
        if counts.keys().all(|k| k == "quote-v2") {
            break;
        }
        if Instant::now() > deadline {
            return Err("the edit was not applied within 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("  routed by the edit after {:?}", edited.elapsed());
    println!(
        "100 requests to /quote/ (canary at 100 %): {:?}",
        split(http.clone(), 100).await?
    );

    reloads.abort();
    drop(envoy);
    println!("stopped envoy, the publisher and the backends");
    Ok(())
}
