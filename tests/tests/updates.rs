//! Configuration changes under load, and configuration Envoy refuses, through the real pipeline and a real Envoy.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ambassador_e2e::backend::{Backend, Echo};
use ambassador_e2e::http::Client;
use ambassador_e2e::stack::{sources, Stack, APPLIED};
use ambassador_webhook::ads::{type_url, Resource};
use ambassador_webhook::bootstrap::ApiType;
use ambassador_webhook::pipeline::ChangeKind;
use bytes::Bytes;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as Hyper;
use hyper_util::rt::TokioExecutor;
use prost::Message as _;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// How many configuration changes the load test pushes.
const CHANGES: usize = 1_000;
/// The longest the change phase may take.
const CHANGE_BUDGET: Duration = Duration::from_secs(120);

fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn mapping(name: &str, fields: &[(&str, String)]) -> String {
    let mut out = format!(
        "---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata:\n  name: {name}\nspec:\n  hostname: \"*\"\n"
    );
    for (k, v) in fields {
        out.push_str(&format!("  {k}: {v}\n"));
    }
    out
}

/// The configuration of change `i`: a canary whose weight walks 0..=100, Mappings that
/// come and go (with their own clusters), and the routes the long-lived connections use,
/// which never change.
fn config(a: &Backend, b: &Backend, c: &Backend, i: usize) -> Vec<(String, String)> {
    let addr = |x: &Backend| q(&x.addr().to_string());
    let mut files = vec![
        (
            "main.yaml",
            mapping("main", &[("prefix", q("/u/")), ("service", addr(a))]),
        ),
        (
            "canary.yaml",
            mapping(
                "canary",
                &[
                    ("prefix", q("/u/")),
                    ("service", addr(b)),
                    ("weight", (i % 101).to_string()),
                ],
            ),
        ),
        (
            "long.yaml",
            mapping(
                "stream",
                &[
                    ("prefix", q("/long/")),
                    ("rewrite", q("/_")),
                    ("service", addr(a)),
                    ("timeout_ms", "0".into()),
                    ("allow_upgrade", "[websocket]".into()),
                ],
            ),
        ),
    ];
    // Every other change adds or removes one of ten Mappings, each with a cluster of its own.
    let extras = (i / 2) % 11;
    let mut extra = String::new();
    for n in 0..extras {
        extra += &mapping(
            &format!("extra-{n}"),
            &[
                ("prefix", q(&format!("/extra-{n}/"))),
                ("service", addr(c)),
                ("connect_timeout_ms", (1000 + n).to_string()),
            ],
        );
    }
    files.push(("extra.yaml", extra));
    sources(files)
}

/// What a client loop saw.
#[derive(Debug, Default)]
struct Tally {
    ok: usize,
    failed: Vec<String>,
}

/// Keep-alive GETs in a loop until `stop`, bounded in count and time.
fn client_loop(port: u16, path: &'static str, stop: Arc<AtomicBool>) -> JoinHandle<Tally> {
    tokio::spawn(async move {
        let client = Client::new();
        let mut t = Tally::default();
        let start = Instant::now();
        while !stop.load(Ordering::Relaxed)
            && t.ok + t.failed.len() < 500_000
            && start.elapsed() < CHANGE_BUDGET + Duration::from_secs(30)
        {
            match client.get(&format!("http://127.0.0.1:{port}{path}")).await {
                Ok(r) if r.status == 200 => t.ok += 1,
                Ok(r) => t.failed.push(format!("{} {}", r.status, r.text())),
                Err(e) => t.failed.push(e.to_string()),
            }
        }
        t
    })
}

/// A long streaming response: (lines read, time of the last line, the error that ended it).
type StreamEnd = (usize, Instant, Option<String>);

fn long_stream(port: u16, stop: Arc<AtomicBool>) -> JoinHandle<StreamEnd> {
    tokio::spawn(async move {
        let client: Hyper<_, Empty<Bytes>> = Hyper::builder(TokioExecutor::new()).build_http();
        let uri = format!("http://127.0.0.1:{port}/long/stream?seconds=110&interval_ms=50");
        let mut last = Instant::now();
        let response = match client.get(uri.parse().unwrap()).await {
            Ok(r) if r.status() == 200 => r,
            Ok(r) => return (0, last, Some(format!("status {}", r.status()))),
            Err(e) => return (0, last, Some(format!("{e:?}"))),
        };
        let mut body = response.into_body();
        let mut bytes = 0usize;
        loop {
            if stop.load(Ordering::Relaxed) {
                return (bytes, last, None);
            }
            match tokio::time::timeout(Duration::from_secs(2), body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        bytes += data.iter().filter(|b| **b == b'\n').count();
                        last = Instant::now();
                    }
                }
                Ok(Some(Err(e))) => return (bytes, last, Some(format!("{e:?}"))),
                Ok(None) => return (bytes, last, Some("the stream ended".into())),
                Err(_) => return (bytes, last, Some("no data for 2 s".into())),
            }
        }
    })
}

/// A websocket that sends a message every 50 ms and expects it back: (round trips, error).
fn long_websocket(port: u16, stop: Arc<AtomicBool>) -> JoinHandle<(usize, Option<String>)> {
    tokio::spawn(async move {
        let url = format!("ws://127.0.0.1:{port}/long/ws");
        let mut ws = match tokio_tungstenite::connect_async(url).await {
            Ok((ws, _)) => ws,
            Err(e) => return (0, Some(e.to_string())),
        };
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) && n < 100_000 {
            let text = format!("message {n}");
            if let Err(e) = ws.send(Message::text(text.clone())).await {
                return (n, Some(e.to_string()));
            }
            match tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
                Ok(Some(Ok(m))) if m == Message::text(text) => n += 1,
                other => return (n, Some(format!("{other:?}"))),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = ws.close(None).await;
        (n, None)
    })
}

/// Envoy's downstream connection counters of the HTTP listener, and listener changes.
async fn connection_stats(stack: &Stack) -> std::collections::BTreeMap<String, Value> {
    stack
        .envoy
        .stats("(downstream_cx_(destroy|drain|total|active|upgrades)|listener_modified|listener_removed|total_listeners_draining)")
        .await
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k.starts_with("http.ingress_") || k.starts_with("listener_manager."))
        .collect()
}

fn stat(stats: &std::collections::BTreeMap<String, Value>, suffix: &str) -> u64 {
    stats
        .iter()
        .filter(|(k, _)| k.ends_with(suffix))
        .filter_map(|(_, v)| v.as_u64())
        .sum()
}

/// (b) 1,000 changes (canary weights, Mappings and clusters added and removed) while client
/// loops send keep-alive requests and long streams and websockets stay open: no request
/// fails and no connection is closed.
async fn updates_under_load(api: ApiType) {
    let a = Backend::start("a").await.unwrap();
    let b = Backend::start("b").await.unwrap();
    let c = Backend::start("c").await.unwrap();
    let (mut stack, report) = Stack::start(config(&a, &b, &c, 0), api).await.unwrap();
    assert_eq!(report.errors().count(), 0, "{:#?}", report.findings);
    let port = stack.http_port;
    let before = connection_stats(&stack).await;

    let stop = Arc::new(AtomicBool::new(false));
    let loops: Vec<_> = (0..3)
        .map(|_| client_loop(port, "/u/x", stop.clone()))
        .collect();
    let streams: Vec<_> = (0..3).map(|_| long_stream(port, stop.clone())).collect();
    let sockets: Vec<_> = (0..2).map(|_| long_websocket(port, stop.clone())).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    let mut changed = [0usize; 4];
    let mut pushed = 0;
    for i in 1..=CHANGES {
        assert!(
            started.elapsed() < CHANGE_BUDGET,
            "only {i} changes in {CHANGE_BUDGET:?}"
        );
        let report = stack.apply(config(&a, &b, &c, i)).await;
        assert!(report.published, "change {i} published nothing");
        assert_eq!(report.errors().count(), 0, "{:#?}", report.findings);
        pushed += 1;
        for ch in &report.changes {
            let t = [
                type_url::CLUSTER,
                type_url::ENDPOINT,
                type_url::LISTENER,
                type_url::ROUTE,
            ]
            .iter()
            .position(|t| *t == ch.type_url)
            .unwrap();
            changed[t] += 1;
        }
    }
    let took = started.elapsed();
    // While the long-lived connections are open: three streams and two websockets.
    let during = connection_stats(&stack).await;
    // The extra Mappings are live at the end: the last change routes them.
    let last_extra = (CHANGES / 2) % 11;
    if last_extra > 0 {
        let r = stack.request("GET", "/extra-0/", &[]).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    stop.store(true, Ordering::Relaxed);

    let mut ok = 0;
    let mut failed = Vec::new();
    for l in loops {
        let t = l.await.unwrap();
        ok += t.ok;
        failed.extend(t.failed);
    }
    let now = Instant::now();
    let mut stream_lines = Vec::new();
    for s in streams {
        let (lines, last, error) = s.await.unwrap();
        assert!(
            error.is_none(),
            "a long stream ended: {error:?} after {lines} lines"
        );
        assert!(
            now.duration_since(last) < Duration::from_secs(1),
            "a stream stalled"
        );
        stream_lines.push(lines);
    }
    let mut round_trips = Vec::new();
    for w in sockets {
        let (n, error) = w.await.unwrap();
        assert!(
            error.is_none(),
            "a websocket failed: {error:?} after {n} round trips"
        );
        round_trips.push(n);
    }
    assert!(
        stat(&during, "downstream_cx_upgrades_active") >= 2,
        "{during:#?}"
    );
    assert!(stat(&during, "downstream_cx_active") >= 5, "{during:#?}");
    let after = connection_stats(&stack).await;
    eprintln!(
        "{api:?}: {pushed} changes in {took:?} ({:?} each); resources changed: {} clusters, {} endpoints, {} listeners, {} routes; {ok} requests ok, {} failed; stream lines {stream_lines:?}; websocket round trips {round_trips:?}",
        took / pushed as u32,
        changed[0], changed[1], changed[2], changed[3],
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} requests failed, e.g. {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 1000, "too few requests to tell: {ok}");
    assert_eq!(changed[2], 0, "no change should touch the listener");
    assert!(changed[0] > 100 && changed[3] >= CHANGES, "{changed:?}");
    // Envoy's side: no listener was modified or drained, and Envoy closed no connection.
    for counter in [
        "listener_modified",
        "listener_removed",
        "downstream_cx_destroy_local",
        "downstream_cx_destroy_local_active_rq",
        "downstream_cx_drain_close",
    ] {
        assert_eq!(
            stat(&before, counter),
            stat(&after, counter),
            "{counter} changed: before {before:#?} after {after:#?}"
        );
    }
    stack.stop_publisher().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_under_load_sotw() {
    updates_under_load(ApiType::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_under_load_delta() {
    updates_under_load(ApiType::DeltaGrpc).await;
}

fn echo_backend(r: &ambassador_e2e::http::Response) -> Option<String> {
    r.json()
        .ok()
        .and_then(|v| serde_json::from_value::<Echo>(v).ok())
        .map(|e| e.backend)
}

/// (c) A Mapping Envoy would refuse is reported and left out by the compiler while the rest
/// goes through; then a raw resource Envoy refuses, pushed into the snapshot next to the
/// compiled ones: the old routes keep serving and the publisher reports Envoy's error with
/// the resource, and taking it away recovers.
#[tokio::test]
async fn nack_keeps_old_routes_and_reports_the_error() {
    let a = Backend::start("a").await.unwrap();
    let b = Backend::start("b").await.unwrap();
    let route = |to: &Backend| {
        mapping(
            "route",
            &[("prefix", q("/n/")), ("service", q(&to.addr().to_string()))],
        )
    };
    let (mut stack, _) = Stack::start(sources([("route.yaml", route(&a))]), ApiType::Grpc)
        .await
        .unwrap();
    assert_eq!(backend_of(&stack).await.as_deref(), Some("a"));

    // `add_request_headers` of a pseudo-header: Envoy would refuse the whole route
    // configuration (":-prefixed or host headers may not be modified"). The compiler reports
    // it and leaves that Mapping out, so the good change in the same push goes through.
    let bad = mapping(
        "bad",
        &[
            ("prefix", q("/bad/")),
            ("service", q(&b.addr().to_string())),
            ("add_request_headers", "{\":path\": \"/elsewhere\"}".into()),
        ],
    );
    let report = stack
        .apply(sources([("route.yaml", route(&b)), ("bad.yaml", bad)]))
        .await;
    assert!(report.published);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.code == "AMB109" && f.file.as_deref() == Some("bad.yaml")),
        "{:?}",
        report.findings
    );
    poll_backend(&stack, "b").await;
    stack.wait_all_acked().await;

    // A raw resource: the compiled route configuration with its virtual host twice, which
    // Envoy refuses for the duplicate domain.
    let compiled = stack.snapshot();
    // The default listener's cleartext chain takes this route configuration.
    let routes_name = format!("ambassador-listener-{}-http", stack.http_port);
    let routes = compiled
        .get(type_url::ROUTE, &routes_name)
        .expect("the compiled route configuration");
    let mut twice = RouteConfiguration::decode(routes.any().value.as_slice()).unwrap();
    let mut copy = twice.virtual_hosts[0].clone();
    copy.name.push_str("-copy");
    twice.virtual_hosts.push(copy);
    stack
        .pipeline
        .set_extra(vec![Resource::pack(&routes_name, twice)]);
    let since = SystemTime::now();
    let report = stack.apply(sources([("route.yaml", route(&a))])).await;
    assert!(report
        .changes
        .iter()
        .any(|c| c.type_url == type_url::ROUTE && c.kind == ChangeKind::Changed));
    let status = stack
        .wait_node(APPLIED, |s| {
            s.type_status(type_url::ROUTE)
                .and_then(|t| t.last_nack.as_ref())
                .is_some_and(|n| n.at >= since)
        })
        .await
        .unwrap_or_else(|| panic!("no NACK: {:#?}", stack.publisher.status()));
    let nack = status
        .type_status(type_url::ROUTE)
        .unwrap()
        .last_nack
        .clone()
        .unwrap();
    eprintln!("Envoy refused {:?}: {}", nack.resource_names, nack.error);
    assert!(nack.error.contains("domain"), "{}", nack.error);
    assert_eq!(backend_of(&stack).await.as_deref(), Some("b"));
    stack.pipeline.set_extra(Vec::new());
    stack.apply(sources([("route.yaml", route(&a))])).await;
    poll_backend(&stack, "a").await;
    stack.wait_all_acked().await;
}

async fn backend_of(stack: &Stack) -> Option<String> {
    let r = stack.request("GET", "/n/x", &[]).await.ok()?;
    echo_backend(&r)
}

async fn poll_backend(stack: &Stack, want: &str) {
    let got = ambassador_e2e::poll(APPLIED, Duration::from_millis(5), || async {
        (backend_of(stack).await.as_deref() == Some(want)).then_some(())
    })
    .await;
    assert!(got.is_some(), "backend {want} never answered");
}
