//! LogService and TracingService through the real pipeline, the publisher and a real Envoy:
//! a gRPC access log service receives one entry per request with the configured headers
//! (`http` driver) or connection entries (`tcp`), a zipkin collector receives the spans of
//! traced requests (with the custom tags, and the trace id the backend saw in its b3
//! headers), and both arrive over ADS alone: the bootstrap is the one every other test uses,
//! and tracing added to a running Envoy resends listeners and a cluster, no restart.

use std::time::Duration;

use ambassador_e2e::backend::{Backend, Echo};
use ambassador_e2e::http::Client;
use ambassador_e2e::observe::{AccessLogServer, LogEntry, ZipkinCollector};
use ambassador_e2e::poll;
use ambassador_e2e::stack::{options, sources, Stack};
use ambassador_webhook::ads::type_url;
use ambassador_webhook::bootstrap::ApiType;

/// Long enough for a buffered access log or a zipkin flush on a loaded machine; polled.
const WAIT: Duration = Duration::from_secs(20);
const EVERY: Duration = Duration::from_millis(100);

fn object(kind: &str, name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: getambassador.io/v3alpha1\nkind: {kind}\nmetadata: {{name: {name}, namespace: default}}\nspec:\n{spec}"
    )
}

fn mapping(backend: &Backend) -> String {
    object(
        "Mapping",
        "app",
        &format!(
            "  hostname: \"*\"\n  prefix: /app/\n  rewrite: \"\"\n  service: \"{}\"\n",
            backend.addr()
        ),
    )
}

async fn get(stack: &Stack, path: &str, headers: &[(&str, &str)]) -> (u16, Option<Echo>) {
    let r = Client::new()
        .request("GET", &stack.url(path), headers)
        .await
        .unwrap();
    let echo = r.json().ok().and_then(|v| serde_json::from_value(v).ok());
    (r.status, echo)
}

/// What the test reads of an entry: path, status, `x-user` with the request and with the
/// response, `x-backend` with the response.
type Seen = (String, u32, Option<String>, Option<String>, Option<String>);

fn log_service(als: &AccessLogServer, extra: &str) -> String {
    // A one-byte buffer flushes every entry at once, and the one-second interval bounds
    // the rest: the test never waits for Envoy's defaults.
    object(
        "LogService",
        "als",
        &format!(
            "  service: \"{}\"\n  driver: http\n  grpc: true\n  flush_interval_time: 1\n  flush_interval_byte_size: 1\n  driver_config:\n    additional_log_headers:\n    - header_name: x-user\n      during_response: false\n      during_trailer: false\n    - header_name: x-backend\n      during_request: false\n{extra}",
            als.addr()
        ),
    )
}

#[tokio::test]
async fn the_access_log_service_gets_one_entry_per_request_with_its_headers() {
    let app = Backend::start("app").await.unwrap();
    let als = AccessLogServer::start().await.unwrap();
    let (stack, report) = Stack::start_with(
        options(),
        sources([
            ("app.yaml", mapping(&app)),
            ("logs.yaml", log_service(&als, "  protocol_version: v3\n")),
        ]),
        ApiType::Grpc,
    )
    .await
    .unwrap();
    assert_eq!(report.findings.len(), 0, "{:?}", report.findings);

    let users = ["alice", "bob", "carol"];
    for (i, user) in users.iter().enumerate() {
        let (status, _) = get(&stack, &format!("/app/{i}"), &[("x-user", user)]).await;
        assert_eq!(status, 200);
    }
    assert_eq!(get(&stack, "/nowhere", &[("x-user", "dave")]).await.0, 404);

    let arrived = poll(WAIT, EVERY, || async {
        (als.entries().len() >= 4).then_some(())
    })
    .await;
    assert!(
        arrived.is_some(),
        "4 access log entries expected, got {:?}",
        als.entries()
    );
    // Let a late duplicate show itself before counting.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut entries: Vec<LogEntry> = als.entries();
    assert_eq!(entries.len(), 4, "{entries:?}");
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let seen: Vec<Seen> = entries
        .iter()
        .map(|e| {
            assert_eq!(e.log_name, "logservice");
            (
                e.path.clone(),
                e.status,
                e.request_headers.get("x-user").cloned(),
                // `during_response: false`: the user is not logged with the response,
                e.response_headers.get("x-user").cloned(),
                // and the backend's header only with the response.
                e.response_headers.get("x-backend").cloned(),
            )
        })
        .collect();
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        seen,
        vec![
            ("/app/0".into(), 200, s("alice"), None, s("app")),
            ("/app/1".into(), 200, s("bob"), None, s("app")),
            ("/app/2".into(), 200, s("carol"), None, s("app")),
            ("/nowhere".into(), 404, s("dave"), None, None),
        ]
    );
    assert!(entries
        .iter()
        .all(|e| !e.request_headers.contains_key("x-backend")));
}

#[tokio::test]
async fn a_log_service_without_v3_sends_nothing_and_says_so() {
    let app = Backend::start("app").await.unwrap();
    let als = AccessLogServer::start().await.unwrap();
    let (stack, report) = Stack::start_with(
        options(),
        sources([
            ("app.yaml", mapping(&app)),
            ("logs.yaml", log_service(&als, "")),
        ]),
        ApiType::Grpc,
    )
    .await
    .unwrap();
    assert!(
        report.errors().any(|f| f.code == "AMB542"),
        "{:?}",
        report.findings
    );
    for _ in 0..3 {
        assert_eq!(get(&stack, "/app/x", &[]).await.0, 200);
    }
    // Longer than the flush interval the LogService asked for.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(als.entries().is_empty(), "{:?}", als.entries());
}

#[tokio::test]
async fn the_zipkin_collector_gets_the_spans_of_traced_requests() {
    let app = Backend::start("app").await.unwrap();
    let zipkin = ZipkinCollector::start().await.unwrap();
    let tracing = object(
        "TracingService",
        "tracing",
        &format!(
            "  service: \"{}\"\n  driver: zipkin\n  config:\n    collector_endpoint: /api/v2/spans\n  sampling:\n    overall: 100\n  tag_headers: [x-team]\n  custom_tags:\n  - tag: user\n    request_header:\n      name: x-user\n      default_value: anonymous\n  - tag: edge\n    literal:\n      value: e2e\n",
            zipkin.addr()
        ),
    );
    let (stack, report) = Stack::start_with(
        options(),
        sources([("app.yaml", mapping(&app)), ("tracing.yaml", tracing)]),
        ApiType::Grpc,
    )
    .await
    .unwrap();
    assert_eq!(report.findings.len(), 0, "{:?}", report.findings);

    // Zipkin flushes every 5 spans (or every 5 s): three requests give six, a server span
    // and an upstream span each.
    let mut trace_ids = Vec::new();
    for user in ["alice", "bob", "carol"] {
        let (status, echo) = get(&stack, "/app/x", &[("x-user", user), ("x-team", "edge")]).await;
        assert_eq!(status, 200);
        let headers = echo.unwrap().headers;
        // Envoy started a trace and told the backend: b3 headers with a 128-bit trace id.
        let id = headers.get("x-b3-traceid").cloned().unwrap_or_default();
        assert_eq!(id.len(), 32, "{headers:?}");
        trace_ids.push((user, id));
    }
    let spans = poll(WAIT, EVERY, || async {
        let s = zipkin.spans();
        let all = trace_ids
            .iter()
            .all(|(_, id)| s.iter().filter(|sp| &sp.trace_id == id).count() >= 2);
        all.then_some(s)
    })
    .await
    .map(|(s, _)| s)
    .unwrap_or_else(|| panic!("spans for {trace_ids:?} expected, got {:?}", zipkin.spans()));

    for (user, id) in &trace_ids {
        let of_trace: Vec<_> = spans.iter().filter(|s| &s.trace_id == id).collect();
        let server = of_trace
            .iter()
            .find(|s| s.kind == "SERVER")
            .unwrap_or_else(|| panic!("no server span in {of_trace:?}"));
        assert_eq!(server.tags.get("user").map(String::as_str), Some(*user));
        assert_eq!(server.tags.get("edge").map(String::as_str), Some("e2e"));
        assert_eq!(server.tags.get("x-team").map(String::as_str), Some("edge"));
        // The router's call to the backend is a span of its own in the same trace.
        assert!(of_trace.iter().any(|s| s.kind == "CLIENT"), "{of_trace:?}");
    }
}

#[tokio::test]
async fn the_tcp_driver_streams_connection_entries() {
    let app = Backend::start("app").await.unwrap();
    let als = AccessLogServer::start().await.unwrap();
    let logs = object(
        "LogService",
        "als",
        &format!(
            "  service: \"{}\"\n  driver: tcp\n  grpc: true\n  protocol_version: v3\n  flush_interval_time: 1\n  flush_interval_byte_size: 1\n",
            als.addr()
        ),
    );
    let (stack, report) = Stack::start_with(
        options(),
        sources([("app.yaml", mapping(&app)), ("logs.yaml", logs)]),
        ApiType::Grpc,
    )
    .await
    .unwrap();
    assert_eq!(report.findings.len(), 0, "{:?}", report.findings);
    for _ in 0..2 {
        assert_eq!(get(&stack, "/app/x", &[]).await.0, 200);
    }
    let arrived = poll(WAIT, EVERY, || async {
        (als.tcp_entries() >= 2).then_some(())
    })
    .await;
    assert!(
        arrived.is_some(),
        "2 connection entries expected, got {}",
        als.tcp_entries()
    );
    // The tcp driver sends connection entries only.
    assert!(als.entries().is_empty(), "{:?}", als.entries());
}

/// Tracing added to a running Envoy: the listeners and the collector's cluster are resent
/// over ADS (no route configuration, no restart, the same bootstrap), and the next requests
/// are traced.
#[tokio::test]
async fn tracing_added_later_arrives_over_ads_alone() {
    let app = Backend::start("app").await.unwrap();
    let zipkin = ZipkinCollector::start().await.unwrap();
    let (mut stack, _) = Stack::start_with(
        options(),
        sources([("app.yaml", mapping(&app))]),
        ApiType::Grpc,
    )
    .await
    .unwrap();
    let (_, echo) = get(&stack, "/app/x", &[]).await;
    assert!(!echo.unwrap().headers.contains_key("x-b3-traceid"));

    let tracing = object(
        "TracingService",
        "tracing",
        &format!("  service: \"{}\"\n  driver: zipkin\n", zipkin.addr()),
    );
    let report = stack
        .apply(sources([
            ("app.yaml", mapping(&app)),
            ("tracing.yaml", tracing),
        ]))
        .await;
    assert_eq!(report.findings.len(), 0, "{:?}", report.findings);
    let changed: Vec<&str> = report.changes.iter().map(|c| c.type_url).collect();
    assert!(changed.contains(&type_url::LISTENER), "{changed:?}");
    assert!(changed.contains(&type_url::CLUSTER), "{changed:?}");
    assert!(!changed.contains(&type_url::ROUTE), "{changed:?}");

    // The new listener takes new connections once Envoy has warmed it: bounded.
    let traced = poll(WAIT, EVERY, || async {
        let (_, echo) = get(&stack, "/app/x", &[]).await;
        echo.and_then(|e| e.headers.get("x-b3-traceid").cloned())
    })
    .await
    .map(|(id, _)| id)
    .expect("requests are traced after the update");
    // Enough requests for zipkin to flush (every 5 spans).
    for _ in 0..3 {
        assert_eq!(get(&stack, "/app/x", &[]).await.0, 200);
    }
    let got = poll(WAIT, EVERY, || async {
        zipkin
            .spans()
            .iter()
            .any(|s| s.trace_id == traced && s.kind == "SERVER")
            .then_some(())
    })
    .await;
    assert!(got.is_some(), "no span of {traced}: {:?}", zipkin.spans());
}
