//! The in-cluster server's memory at N Mappings, watching a cluster: `ambassador-webhook serve
//! --kube --ads-listen` against the in-process API stand-in, with a real Envoy attached.
//!
//! `cargo bench -p ambassador-webhook --bench serve_memory [-- --mappings 10000 --edits 20]`
//!
//! The stand-in holds N Mappings (one per object, as the API server stores them); the server
//! runs as the shipped binary, with `MIMALLOC_PURGE_DELAY=0` as `manifests/` deploys it.
//! Printed: the server's resident set and its high-water mark (`VmRSS`, `VmHWM`) once Envoy
//! routes the last Mapping, and again after `--edits` changes of one Mapping's prefix, each
//! waited for through Envoy. Loopback only; everything started is stopped at the end.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ambassador_e2e::apiserver::{write_kubeconfig, ApiServer, Config};
use ambassador_e2e::envoy::Envoy;
use ambassador_e2e::free_port;
use ambassador_e2e::http::Client;
use ambassador_webhook::bootstrap::Bootstrap;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_ambassador-webhook");

/// The server process, killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn mapping(i: usize, prefix: &str) -> Value {
    json!({
        "apiVersion": "getambassador.io/v3alpha1",
        "kind": "Mapping",
        "metadata": {"name": format!("m{i}"), "namespace": format!("ns{}", i % 25)},
        // Nothing listens on port 9: a routed path answers 503, an unrouted one 404.
        "spec": {"hostname": "*", "prefix": prefix, "service": "127.0.0.1:9", "timeout_ms": 5000},
    })
}

fn memory(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            / 1024
    };
    format!(
        "VmRSS {} MiB, VmHWM {} MiB",
        field("VmRSS:"),
        field("VmHWM:")
    )
}

/// Waits until `path` answers `status` through Envoy.
async fn routed(http: &Client, port: u16, path: &str, status: u16) {
    let url = format!("http://127.0.0.1:{port}{path}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = http.get(&url).await {
            if r.status == status {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{path} never answered {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = arg("--mappings", 10_000);
    let edits = arg("--edits", 20);
    let server = ApiServer::start(Config::default()).await;
    for i in 0..n {
        server.apply(mapping(i, &format!("/m{i}/")));
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let kubeconfig = dir.path().join("kubeconfig");
    write_kubeconfig(
        &kubeconfig,
        &[server.context("stand-in", None)],
        Some("stand-in"),
    )
    .expect("a kubeconfig");
    let tls = dir.path().join("tls");
    let made = Command::new(BIN)
        .args([
            "cert",
            "generate",
            "--dns-name",
            "localhost",
            "--log-level",
            "warn",
        ])
        .arg("--out")
        .arg(&tls)
        .stdout(Stdio::null())
        .status()
        .expect("cert generate runs");
    assert!(made.success(), "cert generate failed");
    let (ads, http_port) = (free_port(), free_port());
    let log = std::fs::File::create(dir.path().join("serve.log")).expect("a log file");
    let child = Command::new(BIN)
        .args([
            "serve",
            "--kube",
            "--log-level",
            "warn",
            "--shutdown-delay",
            "0",
        ])
        .arg("--tls-dir")
        .arg(&tls)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--ads-listen", &format!("127.0.0.1:{ads}")])
        .args(["--envoy-listen-address", "127.0.0.1"])
        .args(["--envoy-http-port", &http_port.to_string()])
        .env("KUBECONFIG", &kubeconfig)
        .env("MIMALLOC_PURGE_DELAY", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the server starts");
    let pid = child.id();
    let _server = Server(child);
    let bootstrap = Bootstrap::new("edge-mem", "127.0.0.1", ads, free_port());
    let _envoy = Envoy::start(&bootstrap).await.expect("Envoy starts");
    let http = Client::new();
    let started = Instant::now();
    routed(&http, http_port, &format!("/m{}/", n - 1), 503).await;
    println!(
        "serve --kube, {n} Mappings, routed after {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        memory(pid)
    );
    for k in 1..=edits {
        let prefix = format!("/m7/e{k}/");
        server.apply(mapping(7, &prefix));
        routed(&http, http_port, &prefix, 503).await;
    }
    println!(
        "serve --kube, {n} Mappings, after {edits} edits:    {}",
        memory(pid)
    );
}
