//! Reconfiguration: from a change to one Mapping to the first request Envoy serves with it, at 10, 1,000 and 10,000 Mappings.
//!
//! `cargo bench -p ambassador-e2e --bench reconfigure [-- --sizes 10,1000,10000 --changes 20 --no-envoy]`
//!
//! Each size gets a fresh pipeline, publisher and Envoy. One Mapping per file (a
//! `getambassador.io/v3alpha1` resource), each to its own upstream (a static loopback
//! address, so each Mapping has a cluster of its own and nothing resolves DNS). The
//! measured change moves Mapping 0 between two backends whose clusters other Mappings keep
//! alive, so the change is one route: what a canary step or a retarget costs.
//!
//! Printed per size (medians over the changes):
//! - ours: `Pipeline::update` until the snapshot is published, split into front end (the
//!   changed file), lowering (the groups the change touches), emit (encoding them and
//!   assembling the route configuration), snapshot; then the route-table checks and the
//!   findings, which run after publishing;
//! - send to ACK: from the publisher sending the route configuration to Envoy's ACK;
//! - first request: from the start of `update` to the first request the new route served
//!   (polled every 200 µs);
//! - memory: the resident set of this process before the pipeline is made (runtime,
//!   backends, HTTP client) and after the size has been served (plus the pipeline, the
//!   publisher and the sources of the last change); Envoy is another process. Run with
//!   `MIMALLOC_PURGE_DELAY=0`, as the webhook Deployment does, to see memory that is in
//!   use rather than kept by the allocator for reuse.

use std::time::{Duration, Instant, SystemTime};

use ambassador_e2e::backend::{Backend, Echo};
use ambassador_e2e::envoy::Envoy;
use ambassador_e2e::free_port;
use ambassador_e2e::http::Client;
use ambassador_e2e::stack::{serve, NODE};
use ambassador_webhook::ads::type_url;
use ambassador_webhook::bootstrap::{ApiType, Bootstrap};
use ambassador_webhook::pipeline::{Pipeline, PipelineOptions, Timings};

struct Args {
    sizes: Vec<usize>,
    changes: usize,
    envoy: bool,
}

fn args() -> Args {
    let mut a = Args {
        sizes: vec![10, 1_000, 10_000],
        changes: 20,
        envoy: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--sizes" => {
                a.sizes = it
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .filter_map(|s| s.trim().replace('_', "").parse().ok())
                    .collect()
            }
            "--changes" => a.changes = it.next().and_then(|s| s.parse().ok()).unwrap_or(20),
            "--no-envoy" => a.envoy = false,
            // `cargo bench` passes `--bench`; nothing else is expected.
            _ => {}
        }
    }
    a
}

/// Mapping `i` as its own file. Mapping 0 goes to `target`; 1 and 2 keep the two real
/// backends' clusters alive; the rest go to loopback ports nobody listens on (Envoy only
/// connects when a request comes, and none does).
fn mapping(i: usize, target: &str, a: &str, b: &str) -> (String, String) {
    let service = match i {
        0 => target.to_owned(),
        1 => a.to_owned(),
        2 => b.to_owned(),
        _ => format!("127.0.0.1:{}", 20_000 + i),
    };
    (
        format!("m{i:05}.yaml"),
        format!(
            "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata:\n  name: m{i}\n  namespace: bench\nspec:\n  hostname: \"*\"\n  prefix: /m{i}/\n  service: \"{service}\"\n  timeout_ms: 5000\n"
        ),
    )
}

fn sources(n: usize, target: &str, a: &str, b: &str) -> Vec<(String, String)> {
    (0..n).map(|i| mapping(i, target, a, b)).collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[derive(Default)]
struct Row {
    size: usize,
    full: Timings,
    parts: Vec<Timings>,
    ack: Vec<Duration>,
    served: Vec<Duration>,
    /// Resident set before the pipeline was made (runtime, backends, client).
    base_rss: f64,
    rss: f64,
    envoy_rss: f64,
}

async fn backend_of(http: &Client, url: &str) -> Option<String> {
    let r = http.get(url).await.ok()?;
    let echo: Echo = serde_json::from_value(r.json().ok()?).ok()?;
    Some(echo.backend)
}

async fn run_size(n: usize, changes: usize, with_envoy: bool) -> Row {
    let a = Backend::start("a").await.unwrap();
    let b = Backend::start("b").await.unwrap();
    let (sa, sb) = (a.addr().to_string(), b.addr().to_string());
    let http_port = free_port();
    let options = PipelineOptions::default()
        .listen("127.0.0.1", http_port)
        .https_port(free_port());
    let base_rss = rss_mib().0;
    let (mut pipeline, snapshots) = Pipeline::new(options);
    let first = pipeline.update(sources(n, &sa, &sa, &sb));
    assert_eq!(first.errors().count(), 0, "{:?}", first.findings);
    let mut row = Row {
        base_rss,
        size: n,
        full: first.timings,
        ..Row::default()
    };

    let (publisher, ads, _stop, _task) = serve(snapshots).await.unwrap();
    let envoy = if with_envoy {
        let bootstrap =
            Bootstrap::new(NODE, "127.0.0.1", ads.port(), free_port()).with_api_type(ApiType::Grpc);
        Some(Envoy::start(&bootstrap).await.unwrap())
    } else {
        None
    };
    let http = Client::new();
    let url = format!("http://127.0.0.1:{http_port}/m0/x");
    if envoy.is_some() {
        let deadline = Instant::now() + Duration::from_secs(60);
        while backend_of(&http, &url).await.as_deref() != Some("a") {
            assert!(Instant::now() < deadline, "Envoy never served {n} Mappings");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    for c in 0..changes {
        let (target, want) = if c % 2 == 0 { (&sb, "b") } else { (&sa, "a") };
        let files = sources(n, target, &sa, &sb);
        let since = SystemTime::now();
        let started = Instant::now();
        let report = pipeline.update(files);
        assert!(
            report.published && report.files_read == 1 && !report.full,
            "{report:?}"
        );
        row.parts.push(report.timings);
        if envoy.is_none() {
            continue;
        }
        let deadline = started + Duration::from_secs(30);
        loop {
            if backend_of(&http, &url).await.as_deref() == Some(want) {
                row.served.push(started.elapsed());
                break;
            }
            assert!(Instant::now() < deadline, "change {c} never served");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        // Push to ACK, from the publisher's own records.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = publisher.status().into_iter().find(|s| s.node_id == NODE);
            let acked = status.as_ref().and_then(|s| {
                let st = s.type_status(type_url::ROUTE)?;
                let sent = s
                    .recent
                    .iter()
                    .rev()
                    .find(|r| r.type_url == type_url::ROUTE && r.at >= since)?;
                let at = st.acked_at.filter(|a| *a >= sent.at && st.in_flight == 0)?;
                at.duration_since(sent.at).ok()
            });
            if let Some(d) = acked {
                row.ack.push(d);
                break;
            }
            assert!(Instant::now() < deadline, "no ACK for change {c}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    row.rss = rss_mib().0;
    if let Some(envoy) = &envoy {
        row.envoy_rss = envoy_rss(envoy);
    }
    row
}

/// Envoy's resident set, from its admin API (`server.memory_physical_size`).
fn envoy_rss(envoy: &Envoy) -> f64 {
    let rt = tokio::runtime::Handle::current();
    let v = tokio::task::block_in_place(|| rt.block_on(envoy.stat("server.memory_physical_size")));
    v.ok()
        .flatten()
        .map_or(0.0, |b| b as f64 / (1024.0 * 1024.0))
}

// The allocator the shipped binaries use, so the figures are theirs.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args = args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "reconfigure: {} changes per size, envoy {}",
        args.changes,
        if args.envoy { "on" } else { "off" }
    );
    println!(
        "| Mappings | first update | ours per change: front | lower | emit | snapshot | **published** | findings, after | Envoy push→ACK | update→first request served | RSS (this process): before → after | Envoy RSS |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &n in &args.sizes {
        let row = runtime.block_on(run_size(n, args.changes, args.envoy));
        let part = |f: fn(&Timings) -> Duration| median(row.parts.iter().map(f).collect());
        println!(
            "| {} | {} | {} | {} | {} | {} | **{}** | {} | {} | {} | {:.0} → {:.0} MiB | {:.0} MiB |",
            row.size,
            ms(row.full.total),
            ms(part(|t| t.front)),
            ms(part(|t| t.lower)),
            ms(part(|t| t.emit)),
            ms(part(|t| t.snapshot)),
            ms(part(|t| t.published)),
            ms(part(|t| t.findings)),
            ms(median(row.ack)),
            ms(median(row.served)),
            row.base_rss,
            row.rss,
            row.envoy_rss,
        );
    }
    let (_, hwm) = rss_mib();
    println!("peak RSS of this process: {hwm:.0} MiB");
}
