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

    let http_port = free_port();
    let options = PipelineOptions::default()
        .listen("127.0.0.1", http_port)
        .https_port(free_port());
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
