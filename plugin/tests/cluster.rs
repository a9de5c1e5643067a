//! The built plugin against the stand-in API server: `kubectl-ambassador lint|routes`
//! without `-f`, and `kubectl ambassador ...` through kubectl's plugin lookup.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ambassador_e2e::apiserver::{write_kubeconfig, ApiServer, Config, KubeContext};
use serde_json::{json, Value};

const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-ambassador");

/// A Service whose annotation holds a Mapping with a typo, as `kubectl apply` leaves it.
fn annotated_service() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "shop",
            "namespace": "shop",
            "annotations": {
                "getambassador.io/config": "---\napiVersion: getambassador.io/v2\nkind: Mapping\nname: shop\nprefix: /shop/\nservice: shop\ntimout_ms: 10\n",
                "kubectl.kubernetes.io/last-applied-configuration": "{\"huge\": true}",
            },
            "managedFields": [{"manager": "kubectl", "operation": "Update"}],
        },
        "spec": {"ports": [{"port": 80}]},
        "status": {"loadBalancer": {}},
    })
}

fn mapping(ns: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "getambassador.io/v3alpha1",
        "kind": "Mapping",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    })
}

fn service(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"ports": [{"port": 80}]},
    })
}

/// Two namespaces: `shop` with two errors, `other` with one, Hosts served only at v2 and
/// TCPMappings not at all.
async fn cluster() -> ApiServer {
    let server = ApiServer::start(
        Config::default()
            .serve_versions("hosts", &["v2"])
            .serve_versions("tcpmappings", &[]),
    )
    .await;
    server.apply(annotated_service());
    server.apply(service("shop", "cart"));
    server.apply(mapping(
        "shop",
        "cart",
        json!({"hostname": "*", "prefix": "/cart/", "service": "cart", "timout_ms": 10}),
    ));
    server.apply(service("other", "backend"));
    server.apply(mapping(
        "other",
        "backend",
        json!({"hostname": "*", "prefix": "/backend/", "service": "backend"}),
    ));
    server.apply(mapping(
        "other",
        "broken",
        json!({"hostname": "*", "prefix": "/broken/", "service": "backend:http"}),
    ));
    server.apply(json!({
        "apiVersion": "getambassador.io/v2", "kind": "Host",
        "metadata": {"name": "h", "namespace": "other"},
        "spec": {"hostname": "example.com"},
    }));
    server
}

struct Setup {
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    bin: PathBuf,
}

/// A kubeconfig with `main` (current, no namespace), `shop-ctx` (namespace `shop`) and
/// `down` (a port nothing listens on); a `kubectl-ambassador` link for kubectl to find.
async fn setup(server: &ApiServer) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let kubeconfig = dir.path().join("kubeconfig");
    write_kubeconfig(
        &kubeconfig,
        &[
            server.context("main", None),
            server.context("shop-ctx", Some("shop")),
            KubeContext {
                name: "down",
                server: format!("http://127.0.0.1:{closed}"),
                namespace: None,
            },
        ],
        Some("main"),
    )
    .unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(PLUGIN, bin.join("kubectl-ambassador")).unwrap();
    Setup {
        _dir: dir,
        kubeconfig,
        bin,
    }
}

/// Runs a program off the runtime (the API server lives on it) with a clean environment.
async fn run(program: &str, args: &[&str], path_first: Option<&Path>) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("NO_COLOR", "1");
    if let Some(dir) = path_first {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![dir.to_path_buf()];
        paths.extend(std::env::split_paths(&path));
        cmd.env("PATH", std::env::join_paths(paths).unwrap());
    }
    tokio::task::spawn_blocking(move || cmd.output().expect("running the program"))
        .await
        .unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lint_reads_one_namespace_with_positions_inside_annotations() {
    let server = cluster().await;
    let s = setup(&server).await;
    let kc = s.kubeconfig.to_str().unwrap();
    let out = run(PLUGIN, &["lint", "--kubeconfig", kc, "-n", "shop"], None).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    // The annotation's `timout_ms`: line 12 of the rendered Service, inside the literal block.
    assert!(
        stdout.contains("--> cluster:shop/Service/shop:12:7\n"),
        "{stdout}"
    );
    assert!(stdout.contains("12 |       timout_ms: 10\n"), "{stdout}");
    // The custom resource's `spec.timout_ms`.
    assert!(
        stdout.contains("--> cluster:shop/Mapping/cart:11:3\n"),
        "{stdout}"
    );
    assert!(stdout.contains("11 |   timout_ms: 10\n"), "{stdout}");
    // Nothing from the other namespace, and nothing of what was stripped.
    assert!(!stdout.contains("cluster:other/"), "{stdout}");
    assert!(!stdout.contains("last-applied"), "{stdout}");

    // Hosts were tried at v3alpha1, then read at v2; TCPMappings at neither.
    let requests = server.requests();
    let listed = |p: &str| requests.iter().any(|r| r.starts_with(&format!("GET {p}")));
    assert!(listed(
        "/apis/getambassador.io/v3alpha1/namespaces/shop/hosts"
    ));
    assert!(listed("/apis/getambassador.io/v2/namespaces/shop/hosts"));
    assert!(!listed(
        "/apis/getambassador.io/v2/namespaces/shop/mappings"
    ));
    assert!(listed(
        "/apis/getambassador.io/v2/namespaces/shop/tcpmappings"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_namespaces_json_and_context_namespace() {
    let server = cluster().await;
    let s = setup(&server).await;
    let kc = s.kubeconfig.to_str().unwrap();

    let out = run(
        PLUGIN,
        &["lint", "--kubeconfig", kc, "-A", "-o", "json"],
        None,
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let files: Vec<&str> = report["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["file"].as_str())
        .collect();
    assert!(files.contains(&"cluster:shop/Service/shop"), "{stdout}");
    assert!(files.contains(&"cluster:other/Mapping/broken"), "{stdout}");

    // `shop-ctx` defaults to namespace `shop`.
    let out = run(
        PLUGIN,
        &["lint", "--kubeconfig", kc, "--context", "shop-ctx"],
        None,
    )
    .await;
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("cluster:shop/Mapping/cart"), "{stdout}");
    assert!(!stdout.contains("cluster:other/"), "{stdout}");

    // `main` has no namespace: `default`, which is empty here.
    let out = run(PLUGIN, &["lint", "--kubeconfig", kc], None).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(server
        .requests()
        .iter()
        .any(|r| r.starts_with("GET /api/v1/namespaces/default/services")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_across_namespaces() {
    let server = cluster().await;
    let s = setup(&server).await;
    let kc = s.kubeconfig.to_str().unwrap();
    let out = run(
        PLUGIN,
        &["routes", "--kubeconfig", kc, "-A", "-o", "json"],
        None,
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let rows: Value = serde_json::from_str(&stdout).unwrap();
    let text = rows.to_string();
    assert!(text.contains("/backend/"), "{stdout}");
    assert!(text.contains("cluster:other/Mapping/backend"), "{stdout}");
    // Routes from annotations name the Service they live on.
    assert!(text.contains("cluster:shop/Service/shop"), "{stdout}");
    // There are errors in the configuration, and the user is told.
    assert!(stderr.contains("error(s) in the configuration"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_kubectl() {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        panic!("kubectl is not installed: install it (Debian package `kubectl`) to run this test");
    }
    let server = cluster().await;
    let s = setup(&server).await;
    let kc = s.kubeconfig.to_str().unwrap();
    let out = run(
        "kubectl",
        &["ambassador", "lint", "--kubeconfig", kc, "-n", "shop"],
        Some(&s.bin),
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("--> cluster:shop/Service/shop:12:7\n"),
        "{stdout}"
    );
    let out = run(
        "kubectl",
        &["ambassador", "routes", "--kubeconfig", kc, "-n", "other"],
        Some(&s.bin),
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("/backend/"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operational_failures_exit_2_and_say_what_failed() {
    let server = cluster().await;
    let s = setup(&server).await;
    let kc = s.kubeconfig.to_str().unwrap();

    let out = run(
        PLUGIN,
        &["lint", "--kubeconfig", kc, "--context", "down"],
        None,
    )
    .await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot reach the API server at http://127.0.0.1:"),
        "{stderr}"
    );
    assert!(stderr.contains("(listing services)"), "{stderr}");

    let out = run(
        PLUGIN,
        &["routes", "--kubeconfig", kc, "--context", "nope"],
        None,
    )
    .await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "context `nope` is not in the kubeconfig (contexts: `main`, `shop-ctx`, `down`)"
        ),
        "{stderr}"
    );

    let missing = s.kubeconfig.with_file_name("missing");
    let out = run(
        PLUGIN,
        &["lint", "--kubeconfig", missing.to_str().unwrap()],
        None,
    )
    .await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");

    server.forbid("mappings");
    let out = run(PLUGIN, &["lint", "--kubeconfig", kc, "-n", "shop"], None).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "forbidden: cannot list mappings.getambassador.io/v3alpha1 in namespace `shop`"
        ),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_kubeconfig_at_all() {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(PLUGIN);
    cmd.arg("lint")
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("HOME", home.path());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no kubeconfig"), "{stderr}");
}

/// `kubectl ambassador trace` without `-f` reads the cluster: a request reaches the Mapping
/// that takes it (here the Host's https redirect), named by its place in the cluster, and a
/// request for the Mapping with an error is a 404 that names it as left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_reads_the_cluster() {
    let server = cluster().await;
    let s = setup(&server).await;
    let kc = s.kubeconfig.to_str().unwrap();
    let out = run(
        "kubectl",
        &[
            "ambassador",
            "trace",
            "--kubeconfig",
            kc,
            "-A",
            "http://example.com/backend/x",
        ],
        Some(&s.bin),
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("result: 301 redirect to https://example.com/backend/x"),
        "{stdout}"
    );
    assert!(
        stdout.contains("from Mapping other/backend cluster:other/Mapping/backend:4"),
        "{stdout}"
    );
    let out = run(
        PLUGIN,
        &[
            "trace",
            "--kubeconfig",
            kc,
            "-A",
            "http://example.com/broken/x",
        ],
        None,
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("left out of the configuration"), "{stdout}");
    assert!(stdout.contains("AMB205"), "{stdout}");
}
