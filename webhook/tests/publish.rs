//! The real binary: `publish --dir` serves a directory to a real Envoy, and an edit on disk changes routing with no failed request; `bootstrap` prints what Envoy needs.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ambassador_e2e::backend::{Backend, Echo};
use ambassador_e2e::envoy::Envoy;
use ambassador_e2e::http::Client;
use ambassador_e2e::{free_port, poll};
use ambassador_webhook::bootstrap::Bootstrap;

const BIN: &str = env!("CARGO_BIN_EXE_ambassador-webhook");

/// The time an edit may take to reach Envoy: a 50 ms poll, a 20 ms debounce, a compile
/// and a push take well under a second; the bound leaves room for a loaded machine.
const EDIT_BOUND: Duration = Duration::from_secs(5);

/// The publisher process, killed on drop (its log printed if the test is failing).
struct Publish {
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for Publish {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- publisher log ---\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

fn mapping(to: &Backend) -> String {
    format!(
        "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata:\n  name: edit-me\nspec:\n  hostname: \"*\"\n  prefix: /d/\n  service: \"{}\"\n",
        to.addr()
    )
}

fn backend_of(r: &ambassador_e2e::http::Response) -> Option<String> {
    (r.status == 200)
        .then(|| r.json().ok())
        .flatten()
        .and_then(|v| serde_json::from_value::<Echo>(v).ok())
        .map(|e| e.backend)
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_a_manifest_reroutes_without_a_failed_request() {
    edit_reroutes(false).await;
}

/// The same through `serve`: admission and ADS in one process, from one watched directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_publishes_from_its_watched_view() {
    edit_reroutes(true).await;
}

async fn edit_reroutes(serve: bool) {
    let a = Backend::start("a").await.unwrap();
    let b = Backend::start("b").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    write(&manifests.join("route.yaml"), &mapping(&a));
    write(&manifests.join("README.txt"), "not a manifest");

    let ads_port = free_port();
    let http_port = free_port();
    let log = dir.path().join("publish.log");
    let mut command = Command::new(BIN);
    if serve {
        let certs = dir.path().join("certs");
        let generated = Command::new(BIN)
            .args(["cert", "generate", "--dns-name", "localhost", "--out"])
            .arg(&certs)
            .output()
            .unwrap();
        assert!(generated.status.success());
        command
            .args(["serve", "--tls-dir"])
            .arg(&certs)
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .arg("--watch-dir")
            .arg(&manifests)
            .args(["--ads-listen", &format!("127.0.0.1:{ads_port}")])
            .args(["--envoy-listen-address", "127.0.0.1"])
            .args(["--envoy-http-port", &http_port.to_string()])
            .args(["--envoy-https-port", &free_port().to_string()]);
    } else {
        command
            .args(["publish", "--dir"])
            .arg(&manifests)
            .args(["--ads-listen", &format!("127.0.0.1:{ads_port}")])
            .args(["--listen-address", "127.0.0.1"])
            .args(["--http-port", &http_port.to_string()])
            .args(["--poll-ms", "50", "--debounce-ms", "20"]);
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _publish = Publish { child, log };

    // The bootstrap command prints what Envoy is started with here.
    let printed = Command::new(BIN)
        .args([
            "bootstrap",
            "--ads-address",
            &format!("127.0.0.1:{ads_port}"),
            "--node-id",
            "edge-d",
            "--node-cluster",
            "e2e",
            "--admin-port",
        ])
        .arg(free_port().to_string())
        .output()
        .unwrap();
    assert!(printed.status.success());
    let yaml = String::from_utf8(printed.stdout).unwrap();
    let admin_port: u16 = yaml
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("socket_address: { address: \"127.0.0.1\", port_value: ")
        })
        .and_then(|rest| rest.trim_end_matches(" }").parse().ok())
        .expect("the admin address in the bootstrap");
    let bootstrap =
        Bootstrap::new("edge-d", "127.0.0.1", ads_port, admin_port).with_node_cluster("e2e");
    assert_eq!(yaml, bootstrap.to_yaml());
    // Envoy retries until the publisher listens.
    let _envoy = Envoy::start(&bootstrap).await.unwrap();

    let http = Client::new();
    let url = format!("http://127.0.0.1:{http_port}/d/x");
    let first = poll(
        Duration::from_secs(20),
        Duration::from_millis(20),
        || async {
            let r = http.get(&url).await.ok()?;
            (backend_of(&r).as_deref() == Some("a")).then_some(())
        },
    )
    .await;
    assert!(first.is_some(), "backend a never answered through Envoy");

    // A client loop runs through the edit.
    let stop = Arc::new(AtomicBool::new(false));
    let hammer = {
        let (http, url, stop) = (http.clone(), url.clone(), stop.clone());
        tokio::spawn(async move {
            let mut answers = Vec::new();
            let start = Instant::now();
            while !stop.load(Ordering::Relaxed)
                && answers.len() < 100_000
                && start.elapsed() < Duration::from_secs(30)
            {
                let r = http.get(&url).await;
                answers.push(r.ok().and_then(|r| backend_of(&r)));
            }
            answers
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let edited = Instant::now();
    write(&manifests.join("route.yaml"), &mapping(&b));
    let switched = poll(EDIT_BOUND, Duration::from_millis(5), || async {
        let r = http.get(&url).await.ok()?;
        (backend_of(&r).as_deref() == Some("b")).then_some(())
    })
    .await;
    let took = edited.elapsed();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let answers = hammer.await.unwrap();
    assert!(
        switched.is_some(),
        "routing did not change within {EDIT_BOUND:?}"
    );
    let failed = answers.iter().filter(|a| a.is_none()).count();
    let first_b = answers.iter().position(|a| a.as_deref() == Some("b"));
    eprintln!(
        "edit on disk served after {took:?}; {} requests during the edit, {failed} failed",
        answers.len()
    );
    assert_eq!(failed, 0);
    assert!(answers.len() > 10, "too few requests to tell");
    // Once b answers, a never answers again: the change is not undone by a stale read.
    let first_b = first_b.expect("b answered in the loop");
    assert!(answers[first_b..].iter().all(|a| a.as_deref() == Some("b")));

    // A broken edit is reported and changes nothing; the good routes keep serving.
    write(&manifests.join("broken.yaml"), "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata:\n  name: broken\nspec:\n  prefix: /broken/\n  service: \"127.0.0.1:99999\"\n");
    let logged = poll(EDIT_BOUND, Duration::from_millis(20), || async {
        let log = std::fs::read_to_string(dir.path().join("publish.log")).unwrap_or_default();
        log.contains("AMB205").then_some(())
    })
    .await;
    assert!(
        logged.is_some(),
        "the publisher did not report the broken Mapping"
    );
    let r = http.get(&url).await.unwrap();
    assert_eq!(backend_of(&r).as_deref(), Some("b"));
}

/// `publish --kube`: the publisher alone, on what the cluster holds (the in-process
/// stand-in for the API server), through a real Envoy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_kube_serves_what_the_cluster_holds() {
    use ambassador_e2e::apiserver::{write_kubeconfig, ApiServer, Config};

    let a = Backend::start("a").await.unwrap();
    let server = ApiServer::start(Config::default()).await;
    server.apply(serde_json::json!({
        "apiVersion": "getambassador.io/v3alpha1", "kind": "Mapping",
        "metadata": {"name": "d", "namespace": "default"},
        "spec": {"hostname": "*", "prefix": "/d/", "service": a.addr().to_string()},
    }));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    write_kubeconfig(
        &kubeconfig,
        &[server.context("stand-in", None)],
        Some("stand-in"),
    )
    .unwrap();
    let ads_port = free_port();
    let http_port = free_port();
    let log = dir.path().join("publish.log");
    let child = Command::new(BIN)
        .args(["publish", "--kube"])
        .args(["--ads-listen", &format!("127.0.0.1:{ads_port}")])
        .args(["--listen-address", "127.0.0.1"])
        .args(["--http-port", &http_port.to_string()])
        .env("KUBECONFIG", &kubeconfig)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _publish = Publish { child, log };
    let bootstrap = Bootstrap::new("edge-k", "127.0.0.1", ads_port, free_port());
    let _envoy = Envoy::start(&bootstrap).await.unwrap();
    let http = Client::new();
    let url = format!("http://127.0.0.1:{http_port}/d/x");
    let served = poll(
        Duration::from_secs(20),
        Duration::from_millis(20),
        || async {
            let r = http.get(&url).await.ok()?;
            (backend_of(&r).as_deref() == Some("a")).then_some(())
        },
    )
    .await;
    assert!(
        served.is_some(),
        "the cluster's Mapping never served through Envoy"
    );
}
