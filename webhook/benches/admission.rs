//! Admission latency at a fixed request rate against watched views of growing size, and the server's memory.
//!
//! Run with `cargo bench -p ambassador-webhook --bench admission`. For each view size the
//! bench starts a fresh child process of itself that generates the view (annotated Services
//! and Mapping resources, as YAML texts), builds a [`CompilerValidator`] with `set_view`, and
//! serves the real HTTPS server on 127.0.0.1 with a generated CA. This process then sends
//! AdmissionReviews at a fixed rate on an open-loop schedule over a few keep-alive TLS
//! connections and measures each one from its *scheduled* send time to the end of the
//! response body, so a stalled server is charged for the requests it delayed (no
//! coordinated omission). Every answer is checked against what the mix expects.
//!
//! Settings, from the environment:
//! - `WHBENCH_SIZES`: Mappings in the view, comma-separated (default `0,1000,10000,50000`);
//! - `WHBENCH_SECONDS`: length of each run, including the warm-up (default 10);
//! - `WHBENCH_WARMUP`: seconds at the start whose requests are not counted (default 1);
//! - `WHBENCH_RATE`: requests per second (default 500);
//! - `WHBENCH_PROTO`: `h2` (default, what the API server negotiates) or `h1`;
//! - `WHBENCH_CONNECTIONS`: client connections (default 4);
//! - `WHBENCH_CHURN`: seconds between view rebuilds in the server while it is loaded (default
//!   0: the view does not change during the run);
//! - `WHBENCH_DUMP`: a path prefix; every request's timings are written to `<prefix>-<size>.csv`.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};

use ambassador_compiler::context::Context;
use ambassador_compiler::diag::Severity;
use ambassador_compiler::front::Options;
use ambassador_compiler::source::Sources;
use ambassador_webhook::certs;
use ambassador_webhook::metrics::{Metrics, RequestVerdict};
use ambassador_webhook::server::{self, AppState, Limits, Readiness};
use ambassador_webhook::telemetry::{self, LogFormat};
use ambassador_webhook::tls::{self, ReloadingCert};
use ambassador_webhook::validator::CompilerValidator;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use tokio_rustls::TlsConnector;

/// The argument that turns this binary into the server child.
const CHILD: &str = "__whbench-server";
/// Namespaces the generated applications are spread over.
const NAMESPACES: usize = 25;
/// Hostnames of the view's Hosts; v3alpha1 Mappings pick one.
const HOSTNAMES: [&str; 4] = [
    "*",
    "shop.example.com",
    "api.example.com",
    "admin.example.com",
];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

// The allocator the shipped binaries use, so the figures are theirs.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(CHILD) {
        let size: usize = args[2].parse().expect("view size");
        let churn: u64 = args[4].parse().expect("churn seconds");
        serve_child(size, Path::new(&args[3]), churn);
        return;
    }
    // `cargo bench` passes `--bench`; a name filter is not meaningful here.
    let settings = Settings::from_env();
    println!("{settings}");
    let dir = TempDir::new();
    let generated = certs::generate(&certs::Request {
        names: vec!["localhost".into(), "127.0.0.1".into()],
        valid_days: 1,
    })
    .expect("certificates");
    std::fs::write(dir.path().join(tls::CERT_FILE), &generated.cert_pem).unwrap();
    std::fs::write(dir.path().join(tls::KEY_FILE), &generated.key_pem).unwrap();

    let mut rows = Vec::new();
    for &size in &settings.sizes {
        let row = run_size(&settings, size, dir.path(), &generated.ca_cert_pem);
        rows.push(row);
    }
    println!();
    println!("{}", Row::header());
    for row in &rows {
        println!("{row}");
    }
}

// ---------------------------------------------------------------------------------------
// Settings and results

struct Settings {
    sizes: Vec<usize>,
    seconds: u64,
    warmup: u64,
    rate: u64,
    h2: bool,
    connections: usize,
    churn: u64,
}

impl Settings {
    fn from_env() -> Settings {
        let sizes = std::env::var("WHBENCH_SIZES")
            .unwrap_or_else(|_| "0,1000,10000,50000".into())
            .split(',')
            .filter_map(|s| s.trim().replace('_', "").parse().ok())
            .collect();
        Settings {
            sizes,
            seconds: env_or("WHBENCH_SECONDS", 10).max(2),
            warmup: env_or("WHBENCH_WARMUP", 1),
            rate: env_or("WHBENCH_RATE", 500).clamp(1, 20_000),
            h2: std::env::var("WHBENCH_PROTO").map_or(true, |p| p != "h1"),
            connections: env_or("WHBENCH_CONNECTIONS", 4).clamp(1, 256),
            churn: env_or("WHBENCH_CHURN", 0),
        }
    }

    fn total(&self) -> usize {
        (self.seconds * self.rate) as usize
    }
}

impl std::fmt::Display for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "admission bench: sizes {:?}, {} req/s for {} s ({} requests, first {} s discarded), {} over {} TLS connection(s){}",
            self.sizes,
            self.rate,
            self.seconds,
            self.total(),
            self.warmup,
            if self.h2 { "HTTP/2" } else { "HTTP/1.1" },
            self.connections,
            if self.churn > 0 { format!(", view rebuilt every {} s", self.churn) } else { String::new() }
        )
    }
}

/// One line of the final table.
struct Row {
    size: usize,
    resources: usize,
    build_ms: Vec<f64>,
    measured: usize,
    achieved: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
    service_p99: f64,
    errors: usize,
    hwm_first_mib: f64,
    rss_view_mib: f64,
    hwm_view_mib: f64,
    rss_end_mib: f64,
    hwm_end_mib: f64,
    cpu_us_per_request: f64,
}

impl Row {
    fn header() -> String {
        format!(
            "{:>8} {:>9} {:>22} {:>6} {:>7} {:>6} {:>6} {:>6} {:>7} {:>7} {:>8} {:>4} {:>10} {:>9} {:>9} {:>8} {:>8} {:>8}",
            "mappings", "resources", "set_view ms (3 runs)", "n", "req/s", "p50", "p90", "p99", "p99.9", "max", "svc p99", "bad",
            "HWM 1st", "RSS view", "HWM view", "RSS end", "HWM end", "CPU/req"
        )
    }
}

impl std::fmt::Display for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let builds: Vec<String> = self.build_ms.iter().map(|b| format!("{b:.0}")).collect();
        write!(
            f,
            "{:>8} {:>9} {:>22} {:>6} {:>7.1} {:>6.2} {:>6.2} {:>6.2} {:>7.2} {:>7.2} {:>8.2} {:>4} {:>9.1}M {:>8.1}M {:>8.1}M {:>7.1}M {:>7.1}M {:>6.0}us",
            self.size,
            self.resources,
            builds.join(" / "),
            self.measured,
            self.achieved,
            self.p50,
            self.p90,
            self.p99,
            self.p999,
            self.max,
            self.service_p99,
            self.errors,
            self.hwm_first_mib,
            self.rss_view_mib,
            self.hwm_view_mib,
            self.rss_end_mib,
            self.hwm_end_mib,
            self.cpu_us_per_request,
        )
    }
}

/// Parses `key=value` words of a child's status line.
fn fields(line: &str) -> BTreeMap<String, String> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn kib_to_mib(m: &BTreeMap<String, String>, key: &str) -> f64 {
    m.get(key)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

// ---------------------------------------------------------------------------------------
// The parent: one child per size, the load, the figures

/// A child's stdout, read on a thread so that every wait is bounded.
struct ChildLines(std_mpsc::Receiver<String>);

impl ChildLines {
    fn next(&self, within: Duration, child: &mut Child) -> String {
        match self.0.recv_timeout(within) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                panic!("server child gave no status line within {within:?}: {e}");
            }
        }
    }
}

fn run_size(settings: &Settings, size: usize, dir: &Path, ca_pem: &str) -> Row {
    eprintln!("\n== {size} Mappings in the view");
    let objects = view_objects(size);
    let sources = sources_of(&objects.objects);
    // The view must compile cleanly, or the figures would be about something else.
    let started = Instant::now();
    let (ctx, findings) = Context::build_with_findings(&sources, &Options::default());
    let mut codes: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &findings {
        if d.severity != Severity::Info {
            *codes.entry(d.code.as_str()).or_default() += 1;
        }
    }
    assert!(
        codes.is_empty(),
        "the generated view has findings: {codes:?}"
    );
    eprintln!(
        "view: {} objects, {} Mappings, {} Ambassador resources, compiles cleanly (checked in {:.0} ms)",
        objects.objects.len(),
        objects.mappings,
        ctx.len(),
        started.elapsed().as_secs_f64() * 1e3
    );
    let resources = ctx.len();
    drop(ctx);
    drop(sources);

    let log = dir.join(format!("server-{size}.log"));
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            CHILD,
            &size.to_string(),
            dir.to_str().unwrap(),
            &settings.churn.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start the server child");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std_mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let lines = ChildLines(rx);
    let ready = lines.next(Duration::from_secs(600), &mut child);
    assert!(ready.starts_with("ready "), "{ready}");
    let ready = fields(&ready);
    eprintln!("server: {ready:?}");
    let port: u16 = ready["port"].parse().unwrap();
    let build_ms: Vec<f64> = ready["build_ms"]
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();

    let requests = requests(settings, &objects);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let samples = runtime.block_on(load(settings, port, ca_pem, &requests));
    // Closing the client's connections before the server is asked to stop.
    drop(runtime);

    let mut stdin: ChildStdin = child.stdin.take().unwrap();
    writeln!(stdin, "report").unwrap();
    stdin.flush().unwrap();
    let done = lines.next(Duration::from_secs(60), &mut child);
    assert!(done.starts_with("done "), "{done}");
    let done = fields(&done);
    eprintln!("server: {done:?}");
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "server child failed; see {}",
        log.display()
    );

    summarise(
        settings, size, resources, build_ms, &ready, &done, &samples, &requests,
    )
}

/// One request's result.
struct Sample {
    index: usize,
    scheduled: Duration,
    /// From the scheduled send time to the end of the response body.
    latency: Duration,
    /// From the actual send to the end of the response body.
    service: Duration,
    outcome: Result<(u16, Bytes), String>,
}

async fn load(settings: &Settings, port: u16, ca_pem: &str, requests: &[Request]) -> Vec<Sample> {
    let connector = connector(ca_pem, settings.h2);
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let total = settings.total();
    let interval = Duration::from_nanos(1_000_000_000 / settings.rate);
    let (results_tx, mut results_rx) = tokio::sync::mpsc::unbounded_channel::<Sample>();
    let (jobs_tx, jobs_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();

    // Connections first, so handshakes are not charged to the first requests.
    let mut h2_senders = Vec::new();
    let mut h1_senders = Vec::new();
    for _ in 0..settings.connections {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let stream = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let io = TokioIo::new(stream);
        if settings.h2 {
            let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
            tokio::spawn(conn);
            h2_senders.push(sender);
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            h1_senders.push(sender);
        }
    }

    // The schedule is kept by a thread of its own: tokio's timer has a 1 ms granularity,
    // which would add up to a millisecond to every figure. A late tick is still charged to
    // the request, because latency counts from the scheduled time.
    let start = Instant::now() + Duration::from_millis(50);
    let ticker = std::thread::spawn(move || {
        for i in 0..total {
            let at = start + interval * i as u32;
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            if jobs_tx.send((i, at)).is_err() {
                break;
            }
        }
    });

    let requests: Arc<Vec<Bytes>> = Arc::new(requests.iter().map(|r| r.body.clone()).collect());
    let timeout = Duration::from_secs(10);
    if settings.h2 {
        // Open loop: each request is its own task on an HTTP/2 stream, round-robin over connections.
        let mut jobs_rx = jobs_rx;
        let mut next = 0;
        while let Some((index, at)) = jobs_rx.recv().await {
            let mut sender = h2_senders[next % h2_senders.len()].clone();
            next += 1;
            let body = requests[index % requests.len()].clone();
            let results = results_tx.clone();
            tokio::spawn(async move {
                let sent = Instant::now();
                let outcome = tokio::time::timeout(timeout, async {
                    sender.ready().await.map_err(|e| e.to_string())?;
                    let response = sender
                        .send_request(post(body))
                        .await
                        .map_err(|e| e.to_string())?;
                    let status = response.status().as_u16();
                    let body = response
                        .into_body()
                        .collect()
                        .await
                        .map_err(|e| e.to_string())?
                        .to_bytes();
                    Ok::<_, String>((status, body))
                })
                .await
                .unwrap_or_else(|_| Err("timed out".into()));
                let done = Instant::now();
                let _ = results.send(Sample {
                    index,
                    scheduled: at - start,
                    latency: done - at,
                    service: done - sent,
                    outcome,
                });
            });
        }
    } else {
        // HTTP/1.1 carries one request at a time per connection: workers take the next due
        // request from a shared queue; a request waiting for a free connection is charged.
        let queue = Arc::new(tokio::sync::Mutex::new(jobs_rx));
        for mut sender in h1_senders {
            let queue = Arc::clone(&queue);
            let requests = Arc::clone(&requests);
            let results = results_tx.clone();
            tokio::spawn(async move {
                loop {
                    let job = queue.lock().await.recv().await;
                    let Some((index, at)) = job else { break };
                    let body = requests[index % requests.len()].clone();
                    let sent = Instant::now();
                    let outcome = tokio::time::timeout(timeout, async {
                        sender.ready().await.map_err(|e| e.to_string())?;
                        let response = sender
                            .send_request(post(body))
                            .await
                            .map_err(|e| e.to_string())?;
                        let status = response.status().as_u16();
                        let body = response
                            .into_body()
                            .collect()
                            .await
                            .map_err(|e| e.to_string())?
                            .to_bytes();
                        Ok::<_, String>((status, body))
                    })
                    .await
                    .unwrap_or_else(|_| Err("timed out".into()));
                    let done = Instant::now();
                    let failed = outcome.is_err();
                    let _ = results.send(Sample {
                        index,
                        scheduled: at - start,
                        latency: done - at,
                        service: done - sent,
                        outcome,
                    });
                    if failed {
                        break;
                    }
                }
            });
        }
    }
    drop(results_tx);

    let mut samples = Vec::with_capacity(total);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(settings.seconds + 30);
    while samples.len() < total {
        match tokio::time::timeout_at(deadline, results_rx.recv()).await {
            Ok(Some(sample)) => samples.push(sample),
            Ok(None) | Err(_) => break,
        }
    }
    ticker.join().unwrap();
    samples
}

fn post(body: Bytes) -> http::Request<Full<Bytes>> {
    http::Request::post("https://localhost/validate")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(body))
        .unwrap()
}

fn connector(ca_pem: &str, h2: bool) -> TlsConnector {
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
    config.alpn_protocols = vec![if h2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    TlsConnector::from(Arc::new(config))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1e3
}

#[allow(clippy::too_many_arguments)]
fn summarise(
    settings: &Settings,
    size: usize,
    resources: usize,
    build_ms: Vec<f64>,
    ready: &BTreeMap<String, String>,
    done: &BTreeMap<String, String>,
    samples: &[Sample],
    requests: &[Request],
) -> Row {
    let warmup = Duration::from_secs(settings.warmup);
    let mut errors = 0;
    let mut shown = 0;
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for s in samples {
        let request = &requests[s.index % requests.len()];
        *by_kind.entry(request.label).or_default() += 1;
        if let Err(problem) = check_answer(request, &s.outcome) {
            errors += 1;
            if shown < 5 {
                shown += 1;
                eprintln!("request {} ({}): {problem}", s.index, request.label);
            }
        }
    }
    errors += settings.total() - samples.len();
    eprintln!("mix: {by_kind:?}");

    if let Ok(path) = std::env::var("WHBENCH_DUMP") {
        let mut csv = String::from("index,kind,scheduled_ms,latency_ms,service_ms\n");
        for s in samples {
            csv.push_str(&format!(
                "{},{},{:.3},{:.3},{:.3}\n",
                s.index,
                requests[s.index % requests.len()].label,
                s.scheduled.as_secs_f64() * 1e3,
                s.latency.as_secs_f64() * 1e3,
                s.service.as_secs_f64() * 1e3
            ));
        }
        let _ = std::fs::write(format!("{path}-{size}.csv"), csv);
    }
    let measured: Vec<&Sample> = samples.iter().filter(|s| s.scheduled >= warmup).collect();
    let mut latencies: Vec<Duration> = measured.iter().map(|s| s.latency).collect();
    let mut service: Vec<Duration> = measured.iter().map(|s| s.service).collect();
    latencies.sort();
    service.sort();
    let window = measured
        .iter()
        .map(|s| s.scheduled + s.latency)
        .max()
        .unwrap_or_default()
        .saturating_sub(warmup);
    let achieved = measured.len() as f64 / window.as_secs_f64().max(1e-9);
    let cpu_ms = done
        .get("cpu_ms")
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        - ready
            .get("cpu_ms")
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    Row {
        size,
        resources,
        build_ms,
        measured: measured.len(),
        achieved,
        p50: percentile(&latencies, 50.0),
        p90: percentile(&latencies, 90.0),
        p99: percentile(&latencies, 99.0),
        p999: percentile(&latencies, 99.9),
        max: latencies.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
        service_p99: percentile(&service, 99.0),
        errors,
        hwm_first_mib: kib_to_mib(ready, "hwm_first_kib"),
        rss_view_mib: kib_to_mib(ready, "rss_kib"),
        hwm_view_mib: kib_to_mib(ready, "hwm_kib"),
        rss_end_mib: kib_to_mib(done, "rss_kib"),
        hwm_end_mib: kib_to_mib(done, "hwm_kib"),
        cpu_us_per_request: cpu_ms * 1e3 / samples.len().max(1) as f64,
    }
}

fn check_answer(request: &Request, outcome: &Result<(u16, Bytes), String>) -> Result<(), String> {
    let (status, body) = outcome.as_ref().map_err(Clone::clone)?;
    if *status != 200 {
        return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(body)));
    }
    let body: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let response = &body["response"];
    if response["uid"] != request.uid {
        return Err(format!("uid {} for {}", response["uid"], request.uid));
    }
    let allowed = response["allowed"] == true;
    let warned = response["warnings"]
        .as_array()
        .is_some_and(|w| !w.is_empty());
    let ok = match request.expect {
        Expect::Allowed => allowed && !warned,
        Expect::Warned => allowed && warned,
        Expect::Admitted => allowed,
        Expect::Denied => !allowed,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("expected {:?}, got {response}", request.expect))
    }
}

// ---------------------------------------------------------------------------------------
// The server child

/// `VmRSS`, `VmHWM` (KiB) and the CPU time of the whole process (ms).
fn process_status() -> (u64, u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    // Fields 14 and 15 of /proc/self/stat, after the parenthesised command name, are user
    // and system time in clock ticks, which Linux reports at 100 per second.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|v| v.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    (kib("VmRSS:"), kib("VmHWM:"), ticks * 10)
}

fn serve_child(size: usize, dir: &Path, churn: u64) {
    // Logs as in a cluster: one JSON line per answered review, here into a file.
    telemetry::init(LogFormat::Json, "info");
    let (rss_start, _, _) = process_status();
    let started = Instant::now();
    let sources = sources_of(&view_objects(size).objects);
    let generate_ms = started.elapsed().as_secs_f64() * 1e3;
    let (rss_sources, hwm_sources, _) = process_status();

    let validator = Arc::new(CompilerValidator::new("default"));
    // The first build is the one at startup; the next two are what every change of the
    // watched view costs once the process is warm.
    let mut build_ms = Vec::new();
    let mut first = (0, 0);
    for n in 0..3 {
        let started = Instant::now();
        validator.set_view(&sources);
        build_ms.push(started.elapsed().as_secs_f64() * 1e3);
        if n == 0 {
            let (rss, hwm, _) = process_status();
            first = (rss, hwm);
        }
    }
    let resources = validator.view_size();
    // The watched objects belong to the view component; the validator keeps only its context.
    let sources = (churn > 0).then_some(sources);
    let (rss, hwm, cpu_ms) = process_status();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        tls::install_crypto_provider();
        let metrics = Arc::new(Metrics::new());
        let resolver = Arc::new(ReloadingCert::load(dir).unwrap());
        let config = Arc::new(tls::server_config(resolver).unwrap());
        let limits = Limits::default();
        let readiness = Readiness::new();
        readiness.set_ready(true);
        let app = server::router(AppState {
            validator: Arc::clone(&validator) as Arc<dyn ambassador_webhook::admission::Validate>,
            metrics: Arc::clone(&metrics),
            readiness,
            limits: limits.clone(),
        });
        let listener = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(server::serve(
            listener,
            config,
            app,
            limits,
            Arc::clone(&metrics),
            async move {
                let _ = stop_rx.await;
            },
        ));
        let builds: Vec<String> = build_ms.iter().map(|b| format!("{b:.1}")).collect();
        println!(
            "ready port={port} resources={resources} generate_ms={generate_ms:.0} build_ms={} rss_start_kib={rss_start} rss_sources_kib={rss_sources} hwm_sources_kib={hwm_sources} rss_first_kib={} hwm_first_kib={} rss_kib={rss} hwm_kib={hwm} cpu_ms={cpu_ms}",
            builds.join(","),
            first.0,
            first.1,
        );

        // Optional view churn: rebuild the same view periodically while serving, as a
        // cluster whose objects change would. The thread ends with the process.
        let rebuilds = Arc::new(AtomicUsize::new(0));
        if let Some(sources) = sources {
            let validator = Arc::clone(&validator);
            let rebuilds = Arc::clone(&rebuilds);
            std::thread::spawn(move || {
                // Bounded: the parent stops the child long before this runs out.
                for _ in 0..(900 / churn) {
                    std::thread::sleep(Duration::from_secs(churn));
                    validator.set_view(&sources);
                    rebuilds.fetch_add(1, Ordering::Relaxed);
                }
            });
        }

        let stdin_line = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            line
        });
        let _ = tokio::time::timeout(Duration::from_secs(900), stdin_line).await;
        let (rss, hwm, cpu_ms) = process_status();
        let _ = stop_tx.send(());
        let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
        println!(
            "done rss_kib={rss} hwm_kib={hwm} cpu_ms={cpu_ms} rebuilds={} allowed={} denied={} skipped={} malformed={} failed={}",
            rebuilds.load(Ordering::Relaxed),
            metrics.requests(RequestVerdict::Allowed),
            metrics.requests(RequestVerdict::Denied),
            metrics.requests(RequestVerdict::Skipped),
            metrics.requests(RequestVerdict::Malformed),
            metrics.requests(RequestVerdict::Failed),
        );
    });
}

// ---------------------------------------------------------------------------------------
// The view and the requests

/// Which shape an application of the view has; they repeat every ten applications.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// An annotated Service with one Mapping.
    Plain,
    /// An annotated Service with a Mapping and a header-matched variant of higher precedence.
    HeaderMatch,
    /// An annotated Service and a second, annotated canary Service with `weight: 10`.
    Canary,
    /// An annotated Service whose Mapping rewrites, retries and sets a timeout.
    Tuned,
    /// A Mapping custom resource and a Service without annotation.
    Resource,
}

fn shape_of(i: usize) -> Shape {
    match i % 10 {
        0..=4 => Shape::Plain,
        5 => Shape::HeaderMatch,
        6 => Shape::Canary,
        7 => Shape::Tuned,
        _ => Shape::Resource,
    }
}

fn mappings_of(shape: Shape) -> usize {
    match shape {
        Shape::HeaderMatch | Shape::Canary => 2,
        _ => 1,
    }
}

fn namespace_of(i: usize) -> String {
    format!("team-{:02}", i % NAMESPACES)
}

/// The view: its objects (as the watcher would hold them) and the applications in it.
struct View {
    objects: Vec<Value>,
    mappings: usize,
    /// `(application index, shape)` of every application in the view.
    apps: Vec<(usize, Shape)>,
}

fn metadata(name: &str, namespace: &str, i: usize, annotations: Value) -> Value {
    json!({
        "name": name,
        "namespace": namespace,
        "uid": format!("6f1c2a4e-{:04x}-4b8e-9c1d-{:012x}", i % 0xffff, i),
        "resourceVersion": (100_000 + i).to_string(),
        "generation": 1,
        "creationTimestamp": "2026-01-12T09:30:00Z",
        "labels": {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": namespace},
        "annotations": annotations,
    })
}

fn service_object(name: &str, namespace: &str, i: usize, annotation: Option<String>) -> Value {
    let spec = json!({
        "type": "ClusterIP",
        "selector": {"app.kubernetes.io/name": name},
        "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]
    });
    let mut annotations = json!({});
    if let Some(text) = annotation {
        annotations["getambassador.io/config"] = json!(text);
    }
    // What `kubectl apply` leaves on every object it writes.
    let applied = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace, "annotations": annotations.clone()}, "spec": spec.clone()});
    annotations["kubectl.kubernetes.io/last-applied-configuration"] = json!(applied.to_string());
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, namespace, i, annotations),
        "spec": spec,
    })
}

fn mapping_doc(v3: bool, name: &str, fields: &str) -> String {
    let version = if v3 { "v3alpha1" } else { "v2" };
    format!("---\napiVersion: getambassador.io/{version}\nkind: Mapping\nname: {name}\n{fields}")
}

/// The `hostname:` line of a v3alpha1 Mapping; v2 ones default to `*`.
fn hostname_line(v3: bool, i: usize) -> String {
    if v3 {
        format!("hostname: \"{}\"\n", HOSTNAMES[i % HOSTNAMES.len()])
    } else {
        String::new()
    }
}

/// The objects of application `i`, with `timeout_ms` as given (UPDATEs change it).
fn app_objects(i: usize, shape: Shape, timeout_ms: u32) -> Vec<Value> {
    let ns = namespace_of(i);
    let name = format!("app-{i}");
    let v3 = !i.is_multiple_of(3);
    let host = hostname_line(v3, i);
    let svc = format!("{name}.{ns}:80");
    match shape {
        Shape::Plain => {
            let doc = mapping_doc(
                v3,
                &name,
                &format!("{host}prefix: /{name}/\nservice: {svc}\ntimeout_ms: {timeout_ms}\n"),
            );
            vec![service_object(&name, &ns, i, Some(doc))]
        }
        Shape::HeaderMatch => {
            let main = mapping_doc(
                v3,
                &name,
                &format!("{host}prefix: /{name}/\nservice: {svc}\ntimeout_ms: {timeout_ms}\n"),
            );
            let beta = mapping_doc(
                v3,
                &format!("{name}-beta"),
                &format!("{host}prefix: /{name}/\nservice: {svc}\nheaders:\n  x-beta: \"true\"\nprecedence: 1\nrewrite: /beta/\n"),
            );
            vec![service_object(&name, &ns, i, Some(main + &beta))]
        }
        Shape::Canary => {
            let main = mapping_doc(
                v3,
                &name,
                &format!("{host}prefix: /{name}/\nservice: {svc}\ntimeout_ms: {timeout_ms}\n"),
            );
            let canary = mapping_doc(
                v3,
                &format!("{name}-canary"),
                &format!("{host}prefix: /{name}/\nservice: {name}-canary.{ns}:80\ntimeout_ms: {timeout_ms}\nweight: 10\n"),
            );
            vec![
                service_object(&name, &ns, i, Some(main)),
                service_object(&format!("{name}-canary"), &ns, i, Some(canary)),
            ]
        }
        Shape::Tuned => {
            let doc = mapping_doc(
                v3,
                &name,
                &format!("{host}prefix: /{name}/\nservice: {svc}\nrewrite: /\ntimeout_ms: {timeout_ms}\nretry_policy:\n  retry_on: gateway-error\n  num_retries: 2\ncors:\n  origins:\n  - https://{name}.example.com\n  methods: [GET, POST]\n"),
            );
            vec![service_object(&name, &ns, i, Some(doc))]
        }
        Shape::Resource => vec![
            mapping_resource(
                &name,
                &ns,
                i,
                json!({
                    "hostname": HOSTNAMES[i % HOSTNAMES.len()],
                    "prefix": format!("/{name}/"),
                    "service": svc,
                    "timeout_ms": timeout_ms,
                }),
            ),
            service_object(&name, &ns, i, None),
        ],
    }
}

fn mapping_resource(name: &str, namespace: &str, i: usize, spec: Value) -> Value {
    json!({
        "apiVersion": "getambassador.io/v3alpha1",
        "kind": "Mapping",
        "metadata": metadata(name, namespace, i, json!({})),
        "spec": spec,
    })
}

/// Hosts, a TLSContext, the `ambassador` Module and a catch-all Mapping: what every
/// installation has besides its applications.
fn base_objects() -> Vec<Value> {
    let mut out = Vec::new();
    for (n, hostname) in HOSTNAMES.iter().enumerate() {
        let name = if *hostname == "*" {
            "wildcard".to_string()
        } else {
            hostname.split('.').next().unwrap().to_string()
        };
        let spec = if *hostname == "*" {
            json!({"hostname": "*", "requestPolicy": {"insecure": {"action": "Route"}}})
        } else {
            json!({"hostname": hostname, "tlsSecret": {"name": format!("{name}-cert")}})
        };
        out.push(json!({
            "apiVersion": "getambassador.io/v3alpha1",
            "kind": "Host",
            "metadata": metadata(&name, "ambassador", 900_000 + n, json!({})),
            "spec": spec,
        }));
    }
    out.push(json!({
        "apiVersion": "getambassador.io/v3alpha1",
        "kind": "TLSContext",
        "metadata": metadata("upstream", "ambassador", 900_010, json!({})),
        "spec": {"secret": "upstream-client-cert", "min_tls_version": "v1.2"},
    }));
    out.push(json!({
        "apiVersion": "getambassador.io/v3alpha1",
        "kind": "Module",
        "metadata": metadata("ambassador", "ambassador", 900_011, json!({})),
        "spec": {"config": {"cluster_request_timeout_ms": 5000, "use_remote_address": true}},
    }));
    out.push(mapping_resource(
        "storefront",
        "ambassador",
        900_012,
        json!({"hostname": "shop.example.com", "prefix": "/", "service": "storefront.ambassador:80"}),
    ));
    out.push(service_object("storefront", "ambassador", 900_012, None));
    out
}

/// A view with `size` Mappings besides the base objects' catch-all (none at all for 0).
fn view_objects(size: usize) -> View {
    let mut objects = Vec::new();
    let mut apps = Vec::new();
    let mut mappings = 0;
    if size > 0 {
        objects = base_objects();
        mappings = 1;
    }
    let mut i = 0;
    while mappings < size {
        let mut shape = shape_of(i);
        if mappings + mappings_of(shape) > size {
            shape = Shape::Plain;
        }
        objects.extend(app_objects(i, shape, 3000));
        mappings += mappings_of(shape);
        apps.push((i, shape));
        i += 1;
    }
    View {
        objects,
        mappings,
        apps,
    }
}

/// The view as the texts a watcher would hand to the compiler, one file per object.
fn sources_of(objects: &[Value]) -> Sources {
    let mut sources = Sources::new();
    for o in objects {
        let name = format!(
            "{}/{}/{}",
            o["kind"].as_str().unwrap_or_default(),
            o["metadata"]["namespace"].as_str().unwrap_or_default(),
            o["metadata"]["name"].as_str().unwrap_or_default()
        );
        sources.add(name, serde_yaml_ng::to_string(o).unwrap());
    }
    sources
}

/// What a request's answer must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Admitted without warnings.
    Allowed,
    /// Admitted with at least one warning.
    Warned,
    /// Admitted, with or without warnings.
    Admitted,
    Denied,
}

struct Request {
    label: &'static str,
    uid: String,
    expect: Expect,
    body: Bytes,
}

/// An AdmissionReview as the API server sends it.
fn review(uid: &str, operation: &str, object: &Value, old: Option<&Value>) -> Value {
    let (group, version) = object["apiVersion"]
        .as_str()
        .unwrap()
        .split_once('/')
        .unwrap_or(("", "v1"));
    let kind = object["kind"].as_str().unwrap();
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
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"],
            "operation": operation,
            "userInfo": {
                "username": "system:serviceaccount:argocd:argocd-application-controller",
                "uid": "4d7f3c1a-0000-4000-8000-000000000001",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:argocd", "system:authenticated"]
            },
            "object": object,
            "oldObject": old.cloned().unwrap_or(Value::Null),
            "dryRun": false,
            "options": {
                "apiVersion": "meta.k8s.io/v1",
                "kind": if operation == "UPDATE" { "UpdateOptions" } else { "CreateOptions" },
                "fieldManager": "argocd-controller"
            }
        }
    })
}

/// The request mix, in a cycle of 20:
/// - 8 CREATE of a new annotated Service with one or two Mappings (admitted);
/// - 4 UPDATE of an application of the view, with its old object (admitted);
/// - 2 CREATE of a new Mapping resource (admitted);
/// - 1 UPDATE of a Service without annotation (out of scope, admitted unvalidated);
/// - 2 invalid: a typo in an annotation, a prefix without `/` (denied);
/// - 2 conflicting: an existing route bound to another service (admitted with a warning);
/// - 1 UPDATE of the catch-all Mapping `/`, which every other route of its host is
///   compared with.
fn requests(settings: &Settings, view: &View) -> Vec<Request> {
    let total = settings.total();
    let empty = view.apps.is_empty();
    // Applications whose route a new unweighted Mapping can collide with (not canaries,
    // whose weighted member makes a newcomer a legitimate third member).
    let collidable: Vec<usize> = view
        .apps
        .iter()
        .filter(|(_, s)| *s != Shape::Canary)
        .map(|(i, _)| *i)
        .collect();
    let pick = |k: usize, n: usize| -> usize { (k.wrapping_mul(2_654_435_761) >> 7) % n.max(1) };
    let mut out = Vec::with_capacity(total);
    for k in 0..total {
        let uid = format!("b3f0c9de-{k:08x}-4000-8000-bench0000000");
        let fresh = 1_000_000 + k;
        let (label, expect, body) = match k % 20 {
            0..=7 => {
                let shape = if k % 2 == 0 {
                    Shape::Plain
                } else {
                    Shape::HeaderMatch
                };
                let objects = app_objects(fresh, shape, 3000);
                (
                    "create annotated Service",
                    Expect::Allowed,
                    review(&uid, "CREATE", &objects[0], None),
                )
            }
            8..=11 => {
                // Without a view, update an application that is not in it: still admitted.
                let (i, shape) = if empty {
                    // Not a lone canary, whose weight would have nothing to add up with.
                    let shapes = [
                        Shape::Plain,
                        Shape::HeaderMatch,
                        Shape::Tuned,
                        Shape::Resource,
                    ];
                    (fresh, shapes[(k / 20) % shapes.len()])
                } else {
                    view.apps[pick(k, view.apps.len())]
                };
                let old = app_objects(i, shape, 3000);
                let new = app_objects(i, shape, 4000);
                // A Resource application is the Mapping and its plain Service: update the Mapping.
                let which = if shape == Shape::Resource {
                    0
                } else {
                    k % old.len()
                };
                let mut object = new[which].clone();
                object["metadata"]["resourceVersion"] = json!("999999999");
                let (label, expect) = match shape {
                    Shape::Resource if empty => ("update Mapping", Expect::Warned),
                    Shape::Resource => ("update Mapping", Expect::Allowed),
                    // Known gap: the canary Service is compiled without the group's other
                    // member, which lives in another Service, so its `weight: 10` alone reads
                    // as AMB303 (an error, ratcheted to a warning because the old object has
                    // it too). Admitted is what matters here; the warning is not asserted.
                    Shape::Canary if which == 1 => ("update canary Service", Expect::Admitted),
                    _ => ("update annotated Service", Expect::Allowed),
                };
                (
                    label,
                    expect,
                    review(&uid, "UPDATE", &object, Some(&old[which])),
                )
            }
            12 | 13 => {
                // A new route for an application of the view; without a view its Service is
                // missing, which is a warning (AMB409).
                let (expect, service) = match view.apps.get(pick(k, view.apps.len())) {
                    Some(&(i, _)) => (Expect::Allowed, format!("app-{i}.{}:80", namespace_of(i))),
                    None => (
                        Expect::Warned,
                        format!("app-{fresh}.{}:80", namespace_of(fresh)),
                    ),
                };
                let name = format!("route-{fresh}");
                let object = mapping_resource(
                    &name,
                    &namespace_of(fresh),
                    fresh,
                    json!({
                        "hostname": HOSTNAMES[k % HOSTNAMES.len()],
                        "prefix": format!("/{name}/"),
                        "service": service,
                        "timeout_ms": 3000,
                    }),
                );
                (
                    "create Mapping",
                    expect,
                    review(&uid, "CREATE", &object, None),
                )
            }
            14 => {
                let name = format!("plain-{}", pick(k, 5000));
                let old = service_object(&name, &namespace_of(k), k, None);
                let mut object = old.clone();
                object["spec"]["ports"][0]["port"] = json!(8080);
                (
                    "update unannotated Service",
                    Expect::Allowed,
                    review(&uid, "UPDATE", &object, Some(&old)),
                )
            }
            15 => {
                let name = format!("app-{fresh}");
                let ns = namespace_of(fresh);
                let doc = mapping_doc(true, &name, &format!("hostname: \"*\"\nprefix: /{name}/\nservice: {name}.{ns}:80\ntimout_ms: 3000\n"));
                let object = service_object(&name, &ns, fresh, Some(doc));
                (
                    "invalid annotated Service",
                    Expect::Denied,
                    review(&uid, "CREATE", &object, None),
                )
            }
            16 => {
                let name = format!("app-{fresh}");
                let ns = namespace_of(fresh);
                let object = mapping_resource(
                    &name,
                    &ns,
                    fresh,
                    json!({"hostname": "*", "prefix": format!("{name}/"), "service": format!("{name}.{ns}:80")}),
                );
                (
                    "invalid Mapping",
                    Expect::Denied,
                    review(&uid, "CREATE", &object, None),
                )
            }
            17 | 18 => {
                if collidable.is_empty() {
                    let objects = app_objects(fresh, Shape::Resource, 3000);
                    (
                        "create Mapping",
                        Expect::Warned,
                        review(&uid, "CREATE", &objects[0], None),
                    )
                } else {
                    // Bind an existing route (same host, same prefix) to another existing service.
                    let i = collidable[pick(k, collidable.len())];
                    let v3 = !i.is_multiple_of(3);
                    let hostname = if v3 {
                        HOSTNAMES[i % HOSTNAMES.len()]
                    } else {
                        "*"
                    };
                    let other = view.apps[(pick(k, view.apps.len()) + 1) % view.apps.len()].0;
                    let other = if other == i { view.apps[0].0 } else { other };
                    let ns = namespace_of(i);
                    let object = mapping_resource(
                        &format!("app-{i}-takeover"),
                        &ns,
                        fresh,
                        json!({
                            "hostname": hostname,
                            "prefix": format!("/app-{i}/"),
                            "service": format!("app-{other}.{}:80", namespace_of(other)),
                        }),
                    );
                    (
                        "conflicting Mapping",
                        Expect::Warned,
                        review(&uid, "CREATE", &object, None),
                    )
                }
            }
            _ => {
                let spec = |t: u32| json!({"hostname": "shop.example.com", "prefix": "/", "service": "storefront.ambassador:80", "timeout_ms": t});
                let old = mapping_resource("storefront", "ambassador", 900_012, spec(3000));
                let object = mapping_resource("storefront", "ambassador", 900_012, spec(4000));
                let expect = if empty {
                    Expect::Warned
                } else {
                    Expect::Allowed
                };
                (
                    "update catch-all Mapping",
                    expect,
                    review(&uid, "UPDATE", &object, Some(&old)),
                )
            }
        };
        out.push(Request {
            label,
            uid,
            expect,
            body: Bytes::from(serde_json::to_vec(&body).unwrap()),
        });
    }
    out
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let path =
            std::env::temp_dir().join(format!("ambassador-webhook-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
