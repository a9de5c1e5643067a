//! A fleet of Envoys: from a change to one Mapping until every one of 1,000 ADS clients has ACKed the new route configuration; the publisher's memory per client.
//!
//! `cargo bench -p ambassador-e2e --bench fleet [-- --clients 1000 --changes 20 --mappings 100 --stalled 10]`
//!
//! The publisher (pipeline and ADS server, as `ambassador-webhook` runs them) lives in a
//! child process, this binary run again with `--publisher`, so that its resident set is its
//! own; it serves on a free loopback port and applies a change when the parent asks on its
//! standard input. The parent connects `--clients` simulated Envoys
//! (`ambassador_e2e::xds_client`, each on its own TCP connection, state of the world and
//! delta alternating) and `--stalled` clients that open a stream, ask for everything and
//! never read. Each change moves Mapping 0 to a new prefix: one route configuration
//! changes, nothing else.
//!
//! Printed:
//! - per change, from writing the change to the child until the last client's ACK of the
//!   new route configuration (the clients note when they queue each ACK); median, max;
//!   also the first ACK and the child's own `Pipeline::update` time to publication;
//! - the child's resident set (`VmRSS`) before the clients connect, once they all hold
//!   the configuration, and after the changes; the difference per connected client.
//!
//! 1,000 clients need about 2,000 file descriptors on each side: if the soft limit is
//! lower, the bench raises it to the hard limit by running itself again through
//! `sh -c 'ulimit -n ...'`, and says so.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use ambassador_e2e::stack::options;
use ambassador_e2e::xds_client::{digests, Stalled, XdsClient};
use ambassador_webhook::ads::{serve_with_shutdown, type_url, Protocol, Publisher};
use ambassador_webhook::pipeline::Pipeline;
use tokio::sync::mpsc;

struct Args {
    clients: usize,
    changes: usize,
    mappings: usize,
    stalled: usize,
    publisher: bool,
}

fn args() -> Args {
    let mut a = Args {
        clients: 1_000,
        changes: 20,
        mappings: 100,
        stalled: 10,
        publisher: false,
    };
    let mut it = std::env::args().skip(1);
    let num = |s: Option<String>, default: usize| {
        s.and_then(|s| s.replace('_', "").parse().ok())
            .unwrap_or(default)
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--clients" => a.clients = num(it.next(), a.clients),
            "--changes" => a.changes = num(it.next(), a.changes),
            "--mappings" => a.mappings = num(it.next(), a.mappings),
            "--stalled" => a.stalled = num(it.next(), a.stalled),
            "--publisher" => a.publisher = true,
            // `cargo bench` passes `--bench`; nothing else is expected.
            _ => {}
        }
    }
    a
}

/// `n` Mappings, each with an upstream of its own; Mapping 0's prefix names `version`.
fn config(n: usize, version: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            let prefix = if i == 0 {
                format!("/m0/v{version}/")
            } else {
                format!("/m{i}/")
            };
            (
                format!("m{i:05}.yaml"),
                format!(
                    "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata:\n  name: m{i}\n  namespace: bench\nspec:\n  hostname: \"*\"\n  prefix: {prefix}\n  service: \"127.0.0.1:{}\"\n",
                    20_000 + i
                ),
            )
        })
        .collect()
}

/// `name=digest;name=digest` of the route configurations of the publisher's snapshot.
fn route_line(pipeline: &Pipeline) -> String {
    digests(&pipeline.current(), type_url::ROUTE)
        .iter()
        .map(|(n, d)| format!("{n}={d}"))
        .collect::<Vec<_>>()
        .join(";")
}

fn parse_routes(s: &str) -> BTreeMap<String, u64> {
    s.split(';')
        .filter_map(|p| {
            let (n, d) = p.split_once('=')?;
            Some((n.to_owned(), d.parse().ok()?))
        })
        .collect()
}

/// The child: pipeline and publisher; a change per line of standard input.
fn publisher(args: &Args) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (mut pipeline, snapshots) = Pipeline::new(options());
    let first = pipeline.update(config(args.mappings, 0));
    assert_eq!(first.errors().count(), 0, "{:?}", first.findings);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let publisher = Publisher::new(snapshots);
    runtime.spawn(serve_with_shutdown(
        publisher,
        listener,
        std::future::pending(),
    ));
    let mut out = std::io::stdout().lock();
    writeln!(out, "ads {addr}").unwrap();
    let snapshot = pipeline.current();
    let kib = |t: &str| {
        let bytes: usize = snapshot
            .resources(t)
            .values()
            .map(|r| r.any().value.len())
            .sum();
        bytes as f64 / 1024.0
    };
    writeln!(
        out,
        "sizes {} clusters {:.0} KiB, {} route configurations {:.0} KiB",
        snapshot.resources(type_url::CLUSTER).len(),
        kib(type_url::CLUSTER),
        snapshot.resources(type_url::ROUTE).len(),
        kib(type_url::ROUTE)
    )
    .unwrap();
    writeln!(out, "routes 0 {}", route_line(&pipeline)).unwrap();
    out.flush().unwrap();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let Some(k) = line
            .strip_prefix("change ")
            .and_then(|k| k.parse::<usize>().ok())
        else {
            break;
        };
        let report = pipeline.update(config(args.mappings, k));
        assert!(
            report.published && report.changes.iter().all(|c| c.type_url == type_url::ROUTE),
            "{report:?}"
        );
        writeln!(
            out,
            "routes {} {}",
            report.timings.published.as_micros(),
            route_line(&pipeline)
        )
        .unwrap();
        out.flush().unwrap();
    }
}

/// The child process that runs the publisher, and its lines.
struct PublisherProcess {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<String>,
}

impl PublisherProcess {
    fn start(args: &Args) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--publisher", "--mappings", &args.mappings.to_string()])
            // Memory in use rather than kept by the allocator for reuse, as the webhook
            // Deployment runs it.
            .env("MIMALLOC_PURGE_DELAY", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdin,
            lines,
        }
    }

    async fn line(&mut self) -> String {
        tokio::time::timeout(Duration::from_secs(120), self.lines.recv())
            .await
            .expect("the publisher answers")
            .expect("the publisher is running")
    }

    /// `routes <published µs> <digests>`.
    async fn routes(&mut self) -> (Duration, BTreeMap<String, u64>) {
        let line = self.line().await;
        let mut parts = line.splitn(3, ' ');
        assert_eq!(parts.next(), Some("routes"), "{line}");
        let us: u64 = parts.next().and_then(|s| s.parse().ok()).unwrap();
        (
            Duration::from_micros(us),
            parse_routes(parts.next().unwrap_or_default()),
        )
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// `VmRSS` of the child, MiB.
    fn rss(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

impl Drop for PublisherProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until every client holds exactly `want`; the latest of their ACKs.
async fn converged(clients: &[XdsClient], want: &BTreeMap<String, u64>) -> (Instant, Instant) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let acks: Option<Vec<Instant>> = clients
            .iter()
            .map(|c| c.holds_exactly(type_url::ROUTE, want))
            .collect();
        if let Some(acks) = acks {
            let first = acks.iter().min().copied().unwrap();
            let last = acks.iter().max().copied().unwrap();
            return (first, last);
        }
        if Instant::now() > deadline {
            let behind = clients
                .iter()
                .filter(|c| c.holds_exactly(type_url::ROUTE, want).is_none())
                .count();
            panic!("{behind} clients never held the route configuration");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

async fn run(args: &Args) {
    let mut child = PublisherProcess::start(args);
    let addr: SocketAddr = child
        .line()
        .await
        .strip_prefix("ads ")
        .and_then(|a| a.parse().ok())
        .expect("the publisher's address");
    let sizes = child.line().await;
    let (_, mut want) = child.routes().await;
    // Let the child settle before its memory is read.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = child.rss();

    let connecting = Instant::now();
    let mut stalled = Vec::with_capacity(args.stalled);
    for i in 0..args.stalled {
        let routes = want.keys().cloned().collect();
        stalled.push(
            Stalled::connect(addr, &format!("stalled-{i}"), Vec::new(), routes)
                .await
                .unwrap(),
        );
    }
    let mut clients = Vec::with_capacity(args.clients);
    let ids: Vec<usize> = (0..args.clients).collect();
    for batch in ids.chunks(50) {
        let connects = batch.iter().map(|&i| {
            let protocol = if i % 2 == 0 {
                Protocol::StateOfTheWorld
            } else {
                Protocol::Delta
            };
            async move { XdsClient::connect(addr, &format!("envoy-{i}"), protocol).await }
        });
        for c in futures::future::join_all(connects).await {
            clients.push(c.unwrap());
        }
    }
    converged(&clients, &want).await;
    let connected = connecting.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_connected = child.rss();
    let sotw = clients
        .iter()
        .filter(|c| c.protocol() == Protocol::StateOfTheWorld)
        .count();
    println!(
        "fleet: {} clients ({sotw} state of the world, {} delta) and {} that never read, {} Mappings; connected and configured in {}",
        clients.len(),
        clients.len() - sotw,
        args.stalled,
        args.mappings,
        ms(connected)
    );
    println!(
        "configuration: {}",
        sizes.strip_prefix("sizes ").unwrap_or(&sizes)
    );

    let mut last = Vec::new();
    let mut first = Vec::new();
    let mut published = Vec::new();
    for k in 1..=args.changes {
        let start = Instant::now();
        child.send(&format!("change {k}"));
        let (p, routes) = child.routes().await;
        assert_ne!(routes, want, "change {k} changed no route configuration");
        want = routes;
        let (f, l) = converged(&clients, &want).await;
        published.push(p);
        first.push(f.saturating_duration_since(start));
        last.push(l.saturating_duration_since(start));
        // Let the fleet go quiet between changes.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_after = child.rss();
    let ended = clients.iter().filter(|c| c.ended().is_some()).count();
    assert_eq!(ended, 0, "streams ended during the run");
    let max = last.iter().max().copied().unwrap_or_default();
    println!(
        "change → last client's ACK over {} changes: median {}, max {} (first ACK: median {}; the child's update to publication: median {})",
        args.changes,
        ms(median(last.clone())),
        ms(max),
        ms(median(first)),
        ms(median(published)),
    );
    println!(
        "every change, ms: {:?}",
        last.iter()
            .map(|d| (d.as_secs_f64() * 10_000.0).round() / 10.0)
            .collect::<Vec<_>>()
    );
    let per_client =
        (rss_connected - rss_idle) * 1024.0 / (clients.len() + args.stalled).max(1) as f64;
    println!(
        "publisher RSS: {rss_idle:.1} MiB serving nobody, {rss_connected:.1} MiB with every client configured ({per_client:.1} KiB per connected client), {rss_after:.1} MiB after the changes"
    );
    drop(stalled);
    child.send("quit");
}

/// The soft limit on open files, and the hard one, from `/proc/self/limits`.
fn nofile() -> Option<(u64, String)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut f = line.split_whitespace().skip(3);
    let soft = f.next()?.parse().ok()?;
    Some((soft, f.next()?.to_owned()))
}

// The allocator the shipped binaries use, so the figures are theirs.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args = args();
    if args.publisher {
        return publisher(&args);
    }
    let needed = 2 * (args.clients + args.stalled) as u64 + 256;
    if let Some((soft, hard)) = nofile() {
        if soft < needed && std::env::var_os("FLEET_RAISED_NOFILE").is_none() {
            eprintln!(
                "open files: soft limit {soft} < {needed}; running again with `ulimit -n {hard}`"
            );
            let status = Command::new("sh")
                .arg("-c")
                .arg(format!("ulimit -n {hard} && exec \"$0\" \"$@\""))
                .arg(std::env::current_exe().unwrap())
                .args(std::env::args().skip(1))
                .env("FLEET_RAISED_NOFILE", "1")
                .status()
                .unwrap();
            std::process::exit(status.code().unwrap_or(1));
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(&args));
}
