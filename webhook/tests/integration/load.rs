//! Load against a large view: a flood of concurrent reviews, checked by the compiler-backed
//! validator against 10,000 Mappings, is answered in full and in time.

use std::time::{Duration, Instant};

use ambassador_compiler::source::Sources;
use ambassador_webhook::metrics::RequestVerdict;
use ambassador_webhook::server::Limits;
use ambassador_webhook::validator::CompilerValidator;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};

use crate::support::*;

const VIEW_MAPPINGS: usize = 10_000;
const NAMESPACES: usize = 20;

/// 10,000 Mappings: annotated Services with one Mapping each, and every fifth application as
/// a Mapping resource with a plain Service.
fn view() -> Sources {
    let mut s = Sources::new();
    s.add(
        "hosts",
        "apiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {name: wildcard, namespace: ambassador}\nspec: {hostname: '*', requestPolicy: {insecure: {action: Route}}}\n---\napiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {name: shop, namespace: ambassador}\nspec: {hostname: shop.example.com, tlsSecret: {name: shop-cert}}\n",
    );
    for i in 0..VIEW_MAPPINGS {
        let ns = format!("team-{:02}", i % NAMESPACES);
        let host = if i.is_multiple_of(2) {
            "*"
        } else {
            "shop.example.com"
        };
        let text = if i % 5 == 4 {
            format!(
                "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {{name: app-{i}, namespace: {ns}}}\nspec: {{hostname: '{host}', prefix: /app-{i}/, service: 'app-{i}.{ns}:80'}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: app-{i}, namespace: {ns}}}\nspec: {{ports: [{{port: 80}}]}}\n"
            )
        } else {
            format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: app-{i}\n  namespace: {ns}\n  annotations:\n    getambassador.io/config: |\n      apiVersion: getambassador.io/v3alpha1\n      kind: Mapping\n      name: app-{i}\n      hostname: \"{host}\"\n      prefix: /app-{i}/\n      service: app-{i}.{ns}:80\nspec:\n  ports:\n  - port: 80\n"
            )
        };
        s.add(format!("{ns}/app-{i}"), text);
    }
    s
}

/// What the `n`-th review of the flood asks, and whether it must be admitted, warned or denied.
fn request(n: usize) -> (Value, &'static str) {
    let uid = format!("load-{n}");
    match n % 4 {
        // A new annotated Service.
        0 => {
            let annotation = format!("apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nname: new-{n}\nhostname: \"*\"\nprefix: /new-{n}/\nservice: new-{n}:80\n");
            let obj = service(&format!("new-{n}"), Some(&annotation));
            (review(&uid, "CREATE", obj, Value::Null), "allowed")
        }
        // An update of a Mapping of the view.
        1 => {
            let i = (n * 37) % VIEW_MAPPINGS / 5 * 5 + 4;
            let ns = format!("team-{:02}", i % NAMESPACES);
            let host = if i.is_multiple_of(2) {
                "*"
            } else {
                "shop.example.com"
            };
            let object = |timeout: u32| {
                json!({
                    "apiVersion": "getambassador.io/v3alpha1", "kind": "Mapping",
                    "metadata": {"name": format!("app-{i}"), "namespace": ns},
                    "spec": {"hostname": host, "prefix": format!("/app-{i}/"), "service": format!("app-{i}.{ns}:80"), "timeout_ms": timeout}
                })
            };
            (
                review(&uid, "UPDATE", object(4000), object(3000)),
                "allowed",
            )
        }
        // A prefix without `/`.
        2 => (
            review(
                &uid,
                "CREATE",
                mapping("v3alpha1", &format!("bad-{n}"), "bad"),
                Value::Null,
            ),
            "denied",
        ),
        // The route of a Mapping of the view, bound to another service.
        _ => {
            let i = (n * 53) % VIEW_MAPPINGS;
            let ns = format!("team-{:02}", i % NAMESPACES);
            let host = if i.is_multiple_of(2) {
                "*"
            } else {
                "shop.example.com"
            };
            let obj = json!({
                "apiVersion": "getambassador.io/v3alpha1", "kind": "Mapping",
                "metadata": {"name": format!("takeover-{n}"), "namespace": ns},
                "spec": {"hostname": host, "prefix": format!("/app-{i}/"), "service": format!("app-{}.{ns}:80", (i + NAMESPACES) % VIEW_MAPPINGS)}
            });
            (review(&uid, "CREATE", obj, Value::Null), "warned")
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_against_a_ten_thousand_mapping_view_is_answered_in_time() {
    const CONNECTIONS: usize = 8;
    const STREAMS: usize = 25;
    // The API server gives a review at most `timeoutSeconds` (5 in our manifests), and
    // this test runs unoptimised on a shared machine; the bound is generous but finite.
    const EACH_WITHIN: Duration = Duration::from_secs(20);

    let validator = CompilerValidator::new("default");
    let started = Instant::now();
    validator.set_view(&view());
    eprintln!(
        "view of {} resources built in {:?}",
        validator.view_size(),
        started.elapsed()
    );
    assert!(validator.view_size() >= VIEW_MAPPINGS);
    // The short read timeouts of `test_limits` are for the slow-client tests; here a loaded
    // 2-core machine (other tests run beside this one) may take longer than 1 s to hand
    // over a body, and that is not what this test is about.
    let limits = Limits {
        header_read_timeout: Duration::from_secs(10),
        body_read_timeout: Duration::from_secs(10),
        handshake_timeout: Duration::from_secs(10),
        ..test_limits()
    };
    let server = TestServer::start_with(validator, limits).await;

    // HTTP/2, as the API server speaks it: every connection carries its streams at once.
    let connector = connector_for(&server.ca.ca_cert_pem, &[b"h2"]);
    let mut senders = Vec::new();
    for _ in 0..CONNECTIONS {
        let stream = connect_with(server.addr, &connector).await.unwrap();
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        senders.push(sender);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..CONNECTIONS * STREAMS {
        let mut sender = senders[n % CONNECTIONS].clone();
        let (body, expect) = request(n);
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            sender.ready().await.unwrap();
            let request = http::Request::post("https://localhost/validate")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(serde_json::to_vec(&body).unwrap())))
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (n, expect, status, body, sent.elapsed())
        }));
    }
    let mut slowest = Duration::ZERO;
    for task in tasks {
        let (n, expect, status, body, took) = tokio::time::timeout(EACH_WITHIN, task)
            .await
            .expect("every review answered in time")
            .unwrap();
        slowest = slowest.max(took);
        assert!(took < EACH_WITHIN, "review {n} took {took:?}");
        assert_eq!(status, StatusCode::OK, "review {n}");
        let body: Value = serde_json::from_slice(&body).unwrap();
        let response = &body["response"];
        assert_eq!(response["uid"], format!("load-{n}"));
        let warned = response["warnings"]
            .as_array()
            .is_some_and(|w| !w.is_empty());
        let got = match (response["allowed"].as_bool(), warned) {
            (Some(false), _) => "denied",
            (Some(true), true) => "warned",
            _ => "allowed",
        };
        assert_eq!(got, expect, "review {n}: {response}");
    }
    let total = (CONNECTIONS * STREAMS) as u64;
    assert_eq!(
        server.metrics.requests(RequestVerdict::Allowed)
            + server.metrics.requests(RequestVerdict::Denied),
        total
    );
    eprintln!(
        "{total} concurrent reviews against {VIEW_MAPPINGS} Mappings answered in {:?} (slowest {slowest:?})",
        started.elapsed()
    );
    server.stop().await;
}
